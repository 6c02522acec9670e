"""SamplingParams.n > 1: the prompt's KV blocks are shared by the n samples (copy-on-write of
the last partial block), each sample draws from its own seeded stream as vLLM v1 does
(sample i of a request seeded s draws as a request seeded s + i), outputs come back as n
CompletionOutputs with index 0..n-1.
"""

from __future__ import annotations

import pytest

from octavo import LLM, SamplingParams
from octavo.testing.tiny_models import hf_greedy, random_prompts

VOCAB = 384
BLOCK = 16


def token_prompts(prompts: list[list[int]]) -> list[dict]:
    return [{"prompt_token_ids": p} for p in prompts]


def sampled(**kw) -> SamplingParams:
    kw.setdefault("max_tokens", 8)
    return SamplingParams(temperature=1.0, ignore_eos=True, **kw)


@pytest.fixture(scope="module")
def model(make_model) -> str:
    return make_model("llama")


@pytest.fixture(scope="module")
def prompts() -> list[list[int]]:
    return random_prompts(4, VOCAB, min_len=5, max_len=40, seed=61)


def run_native(llm: LLM, prompt: list[int], sp: SamplingParams, on_step=None) -> dict[int, list[int]]:
    """Runs one request through the engine directly; returns {sample index: tokens}."""
    engine = llm._engine
    engine.add_request(10_000, prompt, llm._native_params(sp, len(prompt)))
    out: dict[int, list[int]] = {}
    while engine.has_unfinished():
        for o in engine.step():
            out[o.index] = list(o.token_ids)
        if on_step is not None:
            on_step(engine)
    return out


def test_n_samples_come_back_with_indices_and_seeded_streams_as_vllm(model, prompts):
    llm = LLM(model, max_model_len=128)
    outputs = llm.generate(token_prompts(prompts), sampled(n=4, seed=100), use_tqdm=False)
    for prompt, out in zip(prompts, outputs):
        assert [c.index for c in out.outputs] == [0, 1, 2, 3]
        assert out.prompt_token_ids == prompt
        # Sample i equals a lone request seeded 100 + i.
        alone = [llm.generate(token_prompts([prompt]), sampled(seed=100 + i), use_tqdm=False)[0].outputs[0]
                 for i in range(4)]
        assert [list(c.token_ids) for c in out.outputs] == [list(a.token_ids) for a in alone]
        assert len({tuple(c.token_ids) for c in out.outputs}) > 1  # the streams differ


def test_unseeded_samples_differ_and_follow_the_llm_seed(model, prompts):
    sp = sampled(n=3)
    a = LLM(model, max_model_len=128, seed=3).generate(token_prompts(prompts[:2]), sp, use_tqdm=False)
    b = LLM(model, max_model_len=128, seed=3).generate(token_prompts(prompts[:2]), sp, use_tqdm=False)
    tokens = [[list(c.token_ids) for c in o.outputs] for o in a]
    assert tokens == [[list(c.token_ids) for c in o.outputs] for o in b]
    assert all(len({tuple(t) for t in per_prompt}) > 1 for per_prompt in tokens)


def test_top_k_1_samples_all_equal_greedy_and_hf(model, prompts):
    ref = hf_greedy(model, prompts, 8)
    llm = LLM(model, max_model_len=128)
    outputs = llm.generate(token_prompts(prompts), sampled(n=4, top_k=1), use_tqdm=False)
    assert [[list(c.token_ids) for c in o.outputs] for o in outputs] == [[r] * 4 for r in ref]


def test_greedy_n_above_one_in_the_engine_gives_n_copies_of_the_greedy_output(model, prompts):
    # vLLM's SamplingParams refuses n > 1 with temperature 0; the engine itself takes it.
    with pytest.raises(ValueError, match="greedy"):
        SamplingParams(n=2, temperature=0.0)
    ref = hf_greedy(model, prompts[:1], 8)[0]
    llm = LLM(model, max_model_len=128)
    sp = SamplingParams(temperature=0.0, max_tokens=8, ignore_eos=True)
    native = llm._native_params(sp, len(prompts[0]))
    native.n = 3
    llm._engine.add_request(7, prompts[0], native)
    out = {}
    while llm._engine.has_unfinished():
        for o in llm._engine.step():
            out[o.index] = list(o.token_ids)
    assert out == {0: ref, 1: ref, 2: ref}


@pytest.mark.parametrize("caching", [True, False])
def test_n8_on_a_long_prompt_holds_one_prompt_plus_eight_tails(model, caching):
    prompt = random_prompts(1, VOCAB, min_len=200, max_len=200, seed=62)[0]
    llm = LLM(model, max_model_len=256, enable_prefix_caching=caching)
    total = llm._engine.info.num_kv_blocks
    used = []
    run_native(llm, prompt, sampled(n=8, max_tokens=8, seed=1),
               on_step=lambda e: used.append((e.stats().num_running, total - e.stats().num_free_blocks)))
    # 200 tokens = 12 full blocks + 8 tokens; 8 samples of at most 8 tokens stay within
    # block 12. Sharing: 12 prompt blocks + 8 private last blocks. Without: 8 x 13 = 104.
    with_all_running = [u for running, u in used if running == 8]
    assert with_all_running and max(with_all_running) == 12 + 8
    assert max(u for _, u in used) == 12 + 8
    single = LLM(model, max_model_len=256, enable_prefix_caching=caching)
    one = []
    run_native(single, prompt, sampled(max_tokens=8, seed=1),
               on_step=lambda e: one.append(total - e.stats().num_free_blocks))
    assert max(one) == 13


def test_samples_compute_the_prompt_once(model):
    prompt = random_prompts(1, VOCAB, min_len=100, max_len=100, seed=63)[0]
    llm = LLM(model, max_model_len=128, enable_prefix_caching=False)
    out = llm.generate(token_prompts([prompt]), sampled(n=5, seed=9), use_tqdm=False)[0]
    # Sample 0 computes the 100 prompt tokens; each of the 4 others forks 99 of them and
    # computes the last one itself, for its own logits.
    assert llm._engine.stats().num_prompt_tokens_computed == 100 + 4
    assert out.num_cached_tokens == 0


def test_forked_samples_survive_preemption(model, prompts):
    sps = [sampled(n=3, max_tokens=12, seed=20 + i) for i in range(len(prompts))]
    roomy = LLM(model, max_model_len=64, block_size=4)
    expected = [[list(c.token_ids) for c in o.outputs] for o in
                roomy.generate(token_prompts(prompts), sps, use_tqdm=False)]
    per_block = roomy._engine.info.kv_cache_bytes // roomy._engine.info.num_kv_blocks
    for caching in (True, False):
        tight = LLM(model, max_model_len=64, block_size=4, kv_cache_memory_bytes=20 * per_block,
                    enable_prefix_caching=caching)
        got = [[list(c.token_ids) for c in o.outputs] for o in
               tight.generate(token_prompts(prompts), sps, use_tqdm=False)]
        assert got == expected
        stats = tight._engine.stats()
        assert stats.num_preemptions > 0
        assert stats.num_free_blocks == 20


def test_n_with_logprobs_gives_each_sample_its_own(model, prompts):
    llm = LLM(model, max_model_len=128)
    out = llm.generate(token_prompts(prompts[:1]), sampled(n=3, seed=4, logprobs=2), use_tqdm=False)[0]
    for c in out.outputs:
        assert len(c.logprobs) == len(c.token_ids) == 8
        assert [c.token_ids[i] in c.logprobs[i] for i in range(8)] == [True] * 8
        assert c.cumulative_logprob == pytest.approx(sum(p[t].logprob for p, t in zip(c.logprobs, c.token_ids)),
                                                     abs=1e-3)


def test_sample_zero_ending_at_its_first_token_does_not_stop_the_others(model, prompts):
    llm = LLM(model, max_model_len=128)
    first = llm.generate(token_prompts(prompts[:1]), sampled(seed=50), use_tqdm=False)[0].outputs[0].token_ids[0]
    # Sample 0 (seed 50) draws `first` and stops on it; samples 1 and 2 carry on.
    out = llm.generate(token_prompts(prompts[:1]), sampled(n=3, seed=50, stop_token_ids=[first]),
                       use_tqdm=False)[0]
    assert list(out.outputs[0].token_ids) == [first]
    assert out.outputs[0].finish_reason == "stop"
    for i in (1, 2):
        alone = llm.generate(token_prompts(prompts[:1]), sampled(seed=50 + i, stop_token_ids=[first]),
                             use_tqdm=False)[0].outputs[0]
        assert list(out.outputs[i].token_ids) == list(alone.token_ids)


def test_abort_of_a_request_with_n_samples_reports_each_and_frees_every_block(model, prompts):
    llm = LLM(model, max_model_len=128)
    engine = llm._engine
    engine.add_request(5, prompts[0], llm._native_params(sampled(n=4, max_tokens=50), len(prompts[0])))
    engine.step()
    engine.step()  # samples 1..3 admitted
    assert engine.stats().num_running == 4
    assert engine.abort(5)
    reports = engine.step()
    assert sorted(o.index for o in reports) == [0, 1, 2, 3]
    assert {o.finish_reason for o in reports} == {type(reports[0].finish_reason).ABORT}
    assert not engine.has_unfinished()
    assert engine.stats().num_free_blocks == engine.info.num_kv_blocks


def test_best_of_equal_to_n_is_accepted(model):
    llm = LLM(model, max_model_len=128)
    out = llm.generate({"prompt_token_ids": [5, 6]}, SamplingParams(n=2, best_of=2), use_tqdm=False)[0]
    assert [c.index for c in out.outputs] == [0, 1]


def test_n_with_enqueue_and_the_priority_policy(model, prompts):
    sps = [sampled(n=2, seed=70 + i) for i in range(len(prompts))]
    fcfs = LLM(model, max_model_len=128)
    expected = [[list(c.token_ids) for c in o.outputs] for o in fcfs.generate(token_prompts(prompts), sps,
                                                                              use_tqdm=False)]
    llm = LLM(model, max_model_len=128, scheduling_policy="priority")
    llm.enqueue(token_prompts(prompts), sps, priority=[3, 2, 1, 0], use_tqdm=False)
    got = [[list(c.token_ids) for c in o.outputs] for o in llm.wait_for_completion(use_tqdm=False)]
    assert got == expected


def test_each_sample_is_checked_for_stop_strings_on_its_own(model, prompts):
    llm = LLM(model, max_model_len=128)
    free = llm.generate(token_prompts(prompts[:1]), sampled(seed=80, max_tokens=16), use_tqdm=False)[0].outputs[0]
    stop = free.text[4:6]
    assert stop.strip()
    sp = sampled(n=3, seed=80, max_tokens=16, stop=[stop])
    out = llm.generate(token_prompts(prompts[:1]), sp, use_tqdm=False)[0]
    assert out.outputs[0].finish_reason == "stop" and out.outputs[0].stop_reason == stop
    for i, c in enumerate(out.outputs):
        alone = llm.generate(token_prompts(prompts[:1]), sampled(seed=80 + i, max_tokens=16, stop=[stop]),
                             use_tqdm=False)[0].outputs[0]
        assert (c.text, list(c.token_ids), c.finish_reason, c.stop_reason) == \
            (alone.text, list(alone.token_ids), alone.finish_reason, alone.stop_reason)
        assert stop not in c.text
