"""Automatic prefix caching: same outputs as without it (HF transformers is the oracle),
shared prefixes computed once, LRU eviction and reset_prefix_cache, as vLLM's.
"""

from __future__ import annotations

import pytest

from octavo import LLM, SamplingParams
from octavo.testing.tiny_models import hf_greedy, random_prompts

VOCAB = 384
BLOCK = 16


def greedy(max_tokens: int = 8, **kw) -> SamplingParams:
    return SamplingParams(temperature=0.0, max_tokens=max_tokens, ignore_eos=True, **kw)


def token_prompts(prompts: list[list[int]]) -> list[dict]:
    return [{"prompt_token_ids": p} for p in prompts]


def generated(outputs) -> list[list[int]]:
    return [list(o.outputs[0].token_ids) for o in outputs]


@pytest.fixture(scope="module")
def shared_prompts() -> list[list[int]]:
    """A 37-token 'system prompt' (two full blocks and a bit) before 8 different questions."""
    system = random_prompts(1, VOCAB, min_len=37, max_len=37, seed=21)[0]
    tails = random_prompts(8, VOCAB, min_len=1, max_len=12, seed=22)
    return [system + tail for tail in tails]


@pytest.fixture(scope="module")
def reference(make_model, shared_prompts):
    model = make_model("llama")
    return model, hf_greedy(model, shared_prompts, 8)


def test_prefix_caching_is_on_by_default_and_hits_a_shared_system_prompt(reference, shared_prompts):
    model, ref = reference
    llm = LLM(model, max_model_len=128)
    outputs = llm.generate(token_prompts(shared_prompts), greedy(), use_tqdm=False)
    assert generated(outputs) == ref
    stats = llm._engine.stats()
    # The first request computes the system prompt; the other seven find its two full blocks.
    assert stats.num_prefix_cache_hits == 7 * 2 * BLOCK
    assert stats.num_prefix_cache_queries == sum(len(p) for p in shared_prompts)
    assert [o.num_cached_tokens for o in outputs] == [0] + [2 * BLOCK] * 7
    assert stats.num_prompt_tokens_computed == sum(len(p) for p in shared_prompts) - 7 * 2 * BLOCK


def test_outputs_and_logprobs_identical_with_and_without_prefix_caching(reference, shared_prompts):
    model, ref = reference
    sampled = SamplingParams(temperature=1.0, top_p=0.9, max_tokens=8, ignore_eos=True, seed=5, logprobs=3)
    runs = {}
    for caching in (True, False):
        llm = LLM(model, max_model_len=128, enable_prefix_caching=caching)
        first = llm.generate(token_prompts(shared_prompts), greedy(logprobs=3), use_tqdm=False)
        # Run again: with caching every prompt now starts from its cached full blocks.
        second = llm.generate(token_prompts(shared_prompts), greedy(logprobs=3), use_tqdm=False)
        seeded = llm.generate(token_prompts(shared_prompts), sampled, use_tqdm=False)
        runs[caching] = (first, second, seeded, llm._engine.stats())
    cached, uncached = runs[True], runs[False]
    assert generated(cached[0]) == generated(cached[1]) == generated(uncached[0]) == ref
    assert generated(cached[2]) == generated(uncached[2])
    for a, b in zip(cached[1] + cached[2], uncached[1] + uncached[2]):
        for pa, pb in zip(a.outputs[0].logprobs, b.outputs[0].logprobs):
            assert pa.keys() == pb.keys()
            for token in pa:
                assert pa[token].logprob == pytest.approx(pb[token].logprob, abs=1e-4)
    assert [o.num_cached_tokens for o in cached[1]] == [(len(p) - 1) // BLOCK * BLOCK for p in shared_prompts]
    assert uncached[3].num_prefix_cache_hits == 0 and uncached[3].num_prefix_cache_queries == 0
    assert cached[3].num_prompt_tokens_computed < uncached[3].num_prompt_tokens_computed


def test_same_outputs_with_prefix_caching_and_preemption(reference, shared_prompts):
    model, ref = reference
    probe = LLM(model, max_model_len=64, block_size=4)
    per_block = probe._engine.info.kv_cache_bytes // probe._engine.info.num_kv_blocks
    # 20 blocks of 4 tokens: one 64-token sequence fits, the batch does not.
    llm = LLM(model, max_model_len=64, block_size=4, kv_cache_memory_bytes=20 * per_block)
    outputs = llm.generate(token_prompts(shared_prompts), greedy(), use_tqdm=False)
    stats = llm._engine.stats()
    assert stats.num_preemptions > 0
    assert stats.num_prefix_cache_hits > 0
    assert generated(outputs) == ref
    assert stats.num_free_blocks == 20


def test_same_outputs_with_prefix_caching_and_chunked_prefill(reference, shared_prompts):
    model, ref = reference
    # 8 tokens a step: prompts are prefilled in chunks, and later requests start from the
    # blocks that earlier chunks of the first request filled.
    llm = LLM(model, max_model_len=128, max_num_batched_tokens=8, max_num_seqs=4)
    outputs = llm.generate(token_prompts(shared_prompts), greedy(), use_tqdm=False)
    assert generated(outputs) == ref
    assert llm._engine.stats().num_prefix_cache_hits > 0


def test_cached_prefix_ending_on_a_block_boundary_and_one_token_after(make_model):
    model = make_model("llama")
    base = random_prompts(1, VOCAB, min_len=2 * BLOCK, max_len=2 * BLOCK, seed=31)[0]
    exact, one_after = list(base), base + [base[3]]
    ref = hf_greedy(model, [exact, one_after], 8)
    llm = LLM(model, max_model_len=128)
    first = llm.generate(token_prompts([exact]), greedy(), use_tqdm=False)[0]
    # The same 32 tokens: its second block holds the last token, which is always recomputed
    # (its logits are sampled), so only the first block is reused.
    again = llm.generate(token_prompts([exact]), greedy(), use_tqdm=False)[0]
    # One token more: both blocks are reused and only that token is computed.
    after = llm.generate(token_prompts([one_after]), greedy(), use_tqdm=False)[0]
    assert [first.num_cached_tokens, again.num_cached_tokens, after.num_cached_tokens] == [0, BLOCK, 2 * BLOCK]
    assert [list(o.outputs[0].token_ids) for o in (first, again, after)] == [ref[0], ref[0], ref[1]]


def test_a_1000_token_shared_prefix_is_computed_once_for_many_requests(make_model):
    model = make_model("llama", max_position_embeddings=2048)
    prefix = random_prompts(1, VOCAB, min_len=1000, max_len=1000, seed=41)[0]
    tails = random_prompts(8, VOCAB, min_len=8, max_len=8, seed=42)
    prompts = [prefix + tail for tail in tails]
    sp = greedy(max_tokens=4)
    cached = LLM(model, max_model_len=1100)
    outputs = cached.generate(token_prompts(prompts), sp, use_tqdm=False)
    stats = cached._engine.stats()
    # 1000 = 62 full blocks of 16 + 8 tokens: every request after the first finds the 62
    # blocks (992 tokens) and computes its last 16 prompt tokens.
    shared = 1000 // BLOCK * BLOCK
    assert stats.num_prefix_cache_hits == 7 * shared
    assert stats.num_prefix_cache_queries == 8 * 1008
    assert stats.num_prompt_tokens_computed == 1008 + 7 * (1008 - shared)
    uncached = LLM(model, max_model_len=1100, enable_prefix_caching=False)
    plain = uncached.generate(token_prompts(prompts), sp, use_tqdm=False)
    assert uncached._engine.stats().num_prompt_tokens_computed == 8 * 1008
    assert generated(outputs) == generated(plain)
    assert generated(outputs)[:2] == hf_greedy(model, prompts[:2], 4)


def test_least_recently_used_blocks_are_evicted_first_and_a_prompts_tail_before_its_head(make_model):
    model = make_model("llama")
    probe = LLM(model, max_model_len=64)
    per_block = probe._engine.info.kv_cache_bytes // probe._engine.info.num_kv_blocks
    llm = LLM(model, max_model_len=64, kv_cache_memory_bytes=12 * per_block)
    a, b, c1, c2 = random_prompts(4, VOCAB, min_len=33, max_len=33, seed=51)
    one = greedy(max_tokens=1)
    llm.generate(token_prompts([a]), one, use_tqdm=False)  # blocks 0-2; 0 and 1 cached
    llm.generate(token_prompts([b]), one, use_tqdm=False)  # blocks 3-5; 3 and 4 cached
    assert llm._engine.stats().num_cached_blocks == 4
    # 7 unused blocks are free first, then a's (freed earlier, tail first), then b's. Two
    # 48-token prompts need 6 blocks, then 2 more: a's partial block and a's second block.
    c = [c1 + c2[:15], c2 + c1[:15]]
    llm.generate(token_prompts(c), SamplingParams(temperature=0, max_tokens=2, ignore_eos=True), use_tqdm=False)
    # a's first block and both of b's survived: a's first 17 tokens, then b, find them (each
    # taking one more block from the free queue's head, blocks nobody will look for).
    assert llm.generate(token_prompts([a[:17]]), one, use_tqdm=False)[0].num_cached_tokens == BLOCK
    assert llm.generate(token_prompts([b]), one, use_tqdm=False)[0].num_cached_tokens == 2 * BLOCK
    # a's second block was the one evicted.
    assert llm.generate(token_prompts([a]), one, use_tqdm=False)[0].num_cached_tokens == BLOCK


def test_reset_prefix_cache_empties_it(reference, shared_prompts):
    model, ref = reference
    llm = LLM(model, max_model_len=128)
    llm.generate(token_prompts(shared_prompts), greedy(), use_tqdm=False)
    assert llm._engine.stats().num_cached_blocks > 0
    assert llm.reset_prefix_cache() is True
    assert llm._engine.stats().num_cached_blocks == 0
    outputs = llm.generate(token_prompts(shared_prompts[:1]), greedy(), use_tqdm=False)
    assert outputs[0].num_cached_tokens == 0
    assert generated(outputs) == ref[:1]


def test_reset_prefix_cache_is_refused_while_requests_hold_blocks_unless_they_are_preempted(reference, shared_prompts):
    model, ref = reference
    llm = LLM(model, max_model_len=128)
    engine = llm._engine
    engine.add_request(0, shared_prompts[0], llm._native_params(greedy(), len(shared_prompts[0])))
    engine.step()
    assert engine.reset_prefix_cache() is False
    assert engine.stats().num_cached_blocks == len(shared_prompts[0]) // BLOCK
    assert llm.reset_prefix_cache(reset_running_requests=True) is True
    assert engine.stats().num_cached_blocks == 0
    assert engine.stats().num_preemptions == 1
    done = []
    while engine.has_unfinished():
        done += engine.step()
    assert [list(d.token_ids) for d in done] == ref[:1]
