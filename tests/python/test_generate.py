"""LLM.generate against HF transformers on tiny random checkpoints of every architecture.

The oracle is octavo.testing.tiny_models.hf_logprobs: HF's forward in float32, one prompt
at a time, recomputing the whole sequence each step (no KV cache, no padding).
"""

from __future__ import annotations

import numpy as np
import pytest

from octavo import LLM, SamplingParams
from octavo.testing.tiny_models import hf_greedy, hf_logprobs, random_prompts

ARCHS = ["llama", "llama3", "mistral", "qwen2", "qwen3"]
VOCAB = 384
MAX_TOKENS = 16


def token_prompts(prompts: list[list[int]]) -> list[dict]:
    return [{"prompt_token_ids": p} for p in prompts]


def greedy(max_tokens: int = MAX_TOKENS, **kw) -> SamplingParams:
    return SamplingParams(temperature=0.0, max_tokens=max_tokens, ignore_eos=True, **kw)


def generated(outputs) -> list[list[int]]:
    return [o.outputs[0].token_ids for o in outputs]


@pytest.fixture(scope="module")
def prompts() -> list[list[int]]:
    # 8 prompts, 3 to 40 tokens: longer than mistral's 24-token window, several blocks of 16.
    return random_prompts(8, VOCAB, min_len=3, max_len=40, seed=7)


@pytest.mark.parametrize("arch", ARCHS)
def test_greedy_batch_matches_hf_token_for_token(make_model, prompts, arch):
    model = make_model(arch)
    llm = LLM(model, max_model_len=128)
    outputs = llm.generate(token_prompts(prompts), greedy(), use_tqdm=False)
    assert generated(outputs) == hf_greedy(model, prompts, MAX_TOKENS)


@pytest.mark.parametrize("arch", ["llama", "qwen3"])
def test_logprobs_match_hf_within_1e_4(make_model, prompts, arch):
    model = make_model(arch)
    llm = LLM(model, max_model_len=128)
    outputs = llm.generate(token_prompts(prompts), greedy(logprobs=5), use_tqdm=False)
    refs = hf_logprobs(model, prompts, MAX_TOKENS)
    for out, ref in zip(outputs, refs):
        completion = out.outputs[0]
        assert completion.token_ids == ref.token_ids
        assert len(completion.logprobs) == MAX_TOKENS
        total = 0.0
        for step, (token, position) in enumerate(zip(completion.token_ids, completion.logprobs)):
            expected = ref.logprobs[step]
            assert position[token].rank == 1
            assert position[token].logprob == pytest.approx(expected[token], abs=1e-4)
            top5 = np.argsort(-expected, kind="stable")[:5]
            ranked = sorted((lp.rank, t) for t, lp in position.items())
            assert [t for _, t in ranked][:5] == list(top5)
            for t in top5:
                assert position[int(t)].logprob == pytest.approx(expected[t], abs=1e-4)
            total += expected[token]
        assert completion.cumulative_logprob == pytest.approx(total, abs=1e-3)


def test_sampled_token_rank_and_logprob_are_from_the_raw_distribution(make_model, prompts):
    model = make_model("llama")
    llm = LLM(model, max_model_len=128)
    sp = SamplingParams(temperature=1.0, max_tokens=8, ignore_eos=True, seed=3, logprobs=2)
    out = llm.generate(token_prompts(prompts[:1]), sp, use_tqdm=False)[0].outputs[0]
    # Replay the sampled continuation through HF, one step at a time.
    import torch

    from octavo.testing.tiny_models import load_hf_model

    hf = load_hf_model(model)
    ids = list(prompts[0])
    for token, position in zip(out.token_ids, out.logprobs):
        with torch.no_grad():
            logits = hf(input_ids=torch.tensor([ids]), use_cache=False).logits[0, -1].double()
        ref = torch.log_softmax(logits, -1).numpy()
        assert position[token].logprob == pytest.approx(ref[token], abs=1e-4)
        assert position[token].rank == 1 + int((ref > ref[token]).sum())
        ids.append(token)


@pytest.fixture(scope="module")
def llama_reference(make_model, prompts):
    model = make_model("llama")
    return model, hf_greedy(model, prompts, MAX_TOKENS)


def test_same_tokens_alone_and_batched(llama_reference, prompts):
    model, ref = llama_reference
    llm = LLM(model, max_model_len=128)
    alone = [generated(llm.generate(token_prompts([p]), greedy(), use_tqdm=False))[0] for p in prompts]
    assert alone == ref


def test_same_tokens_with_chunked_prefill_forced(llama_reference, prompts):
    model, ref = llama_reference
    # A budget of 8 tokens a step: every prompt over 8 tokens is prefilled in chunks,
    # and chunks share steps with other requests' decode rows.
    llm = LLM(model, max_model_len=128, max_num_batched_tokens=8, max_num_seqs=4)
    assert generated(llm.generate(token_prompts(prompts), greedy(), use_tqdm=False)) == ref
    assert llm._engine.stats().num_steps > MAX_TOKENS * 2


def test_same_tokens_with_preemption_forced(llama_reference, prompts):
    model, ref = llama_reference
    probe = LLM(model, max_model_len=64, block_size=4)
    bytes_per_block = probe._engine.info.kv_cache_bytes // probe._engine.info.num_kv_blocks
    # 20 blocks of 4 tokens: one 64-token sequence fits, the batch of 8 does not.
    llm = LLM(model, max_model_len=64, block_size=4, kv_cache_memory_bytes=20 * bytes_per_block)
    assert llm._engine.info.num_kv_blocks == 20
    outputs = llm.generate(token_prompts(prompts), greedy(), use_tqdm=False)
    assert llm._engine.stats().num_preemptions > 0
    assert generated(outputs) == ref
    assert llm._engine.stats().num_free_blocks == 20


def test_sequence_stops_at_max_model_len(make_model, prompts):
    model = make_model("llama")
    llm = LLM(model, max_model_len=32)
    prompt = prompts[0][:20]
    out = llm.generate(token_prompts([prompt]), greedy(max_tokens=100), use_tqdm=False)[0].outputs[0]
    assert len(prompt) + len(out.token_ids) == 32
    assert out.finish_reason == "length"
    assert out.token_ids == hf_greedy(model, [prompt], 12)[0]


def test_eos_stops_generation_unless_ignored(make_model, prompts):
    model = make_model("llama")
    llm = LLM(model, max_model_len=128)
    eos = llm.get_tokenizer().eos_token_id
    # Pick a prompt whose greedy continuation reaches some token, then call it EOS.
    ref = hf_greedy(model, prompts[:1], MAX_TOKENS)[0]
    stop_at = ref[5]
    first = ref.index(stop_at)
    out = llm.generate(token_prompts(prompts[:1]), SamplingParams(temperature=0, max_tokens=MAX_TOKENS,
                                                                  stop_token_ids=[stop_at]), use_tqdm=False)
    completion = out[0].outputs[0]
    assert completion.token_ids == ref[: first + 1]
    assert completion.finish_reason == "stop" and completion.stop_reason == stop_at
    # min_tokens suppresses the stop id until reached: the token can't appear before it.
    out = llm.generate(token_prompts(prompts[:1]), SamplingParams(
        temperature=0, max_tokens=MAX_TOKENS, min_tokens=first + 2, stop_token_ids=[stop_at]), use_tqdm=False)
    assert stop_at not in out[0].outputs[0].token_ids[: first + 2]
    assert len(out[0].outputs[0].token_ids) >= first + 2
    assert eos in llm._engine.info.eos_token_ids


def test_model_eos_ends_with_stop_and_no_stop_reason(make_model, prompts):
    model = make_model("llama")
    ref = hf_greedy(model, prompts[:1], MAX_TOKENS)[0]
    # The random model rarely emits its real EOS: declare a token it does emit to be EOS
    # through the config, as a checkpoint with that eos_token_id would.
    eos = ref[6]
    first = ref.index(eos)
    llm = LLM(model, max_model_len=128, hf_overrides={"eos_token_id": eos})
    assert eos in llm._engine.info.eos_token_ids
    out = llm.generate(token_prompts(prompts[:1]), SamplingParams(temperature=0, max_tokens=MAX_TOKENS),
                       use_tqdm=False)[0].outputs[0]
    assert out.token_ids == ref[: first + 1]
    assert out.finish_reason == "stop" and out.stop_reason is None
    ignored = llm.generate(token_prompts(prompts[:1]), greedy(), use_tqdm=False)[0].outputs[0]
    assert ignored.token_ids == ref and ignored.finish_reason == "length"


def test_text_prompt_is_tokenized_like_hf(make_model):
    from transformers import AutoTokenizer

    model = make_model("llama")
    tok = AutoTokenizer.from_pretrained(model)
    llm = LLM(model, max_model_len=128)
    text = "Return a new list containing all items"
    out = llm.generate(text, greedy(max_tokens=8), use_tqdm=False)[0]
    ids = tok.encode(text)
    assert out.prompt == text and out.prompt_token_ids == ids
    assert out.outputs[0].token_ids == hf_greedy(model, [ids], 8)[0]
    assert out.outputs[0].text == tok.decode(out.outputs[0].token_ids, skip_special_tokens=True)


@pytest.mark.parametrize("variant", [
    {"dtype": "bfloat16"},
    {"shard_size": "20KB"},
    {"tie_word_embeddings": True},
    {"num_kv_heads": 1},
    {"legacy_rope_config": True},
])
def test_checkpoint_variants_match_hf(make_model, prompts, variant):
    arch = "llama3" if variant.get("legacy_rope_config") else "llama"
    model = make_model(arch, **variant)
    llm = LLM(model, max_model_len=128)
    outputs = llm.generate(token_prompts(prompts[:4]), greedy(max_tokens=8), use_tqdm=False)
    # bf16 weights: HF upcast to float32, as octavo's CPU backend does at load.
    assert generated(outputs) == hf_greedy(model, prompts[:4], 8, dtype="float32")


def test_sharded_checkpoint_has_an_index(make_model):
    import os

    model = make_model("llama", shard_size="20KB")
    assert os.path.exists(os.path.join(model, "model.safetensors.index.json"))


def test_seeded_sampling_is_reproducible_and_independent_of_the_batch(make_model, prompts):
    model = make_model("llama")
    llm = LLM(model, max_model_len=128)
    seeded = SamplingParams(temperature=1.0, top_p=0.9, max_tokens=12, ignore_eos=True, seed=1234)
    alone = generated(llm.generate(token_prompts([prompts[2]]), seeded, use_tqdm=False))[0]
    again = generated(llm.generate(token_prompts([prompts[2]]), seeded, use_tqdm=False))[0]
    others = SamplingParams(temperature=1.0, max_tokens=12, ignore_eos=True)
    batch = llm.generate(token_prompts(prompts), [others, others, seeded] + [others] * 5, use_tqdm=False)
    assert alone == again == batch[2].outputs[0].token_ids
    # A different seed gives a different continuation (the draw is not constant).
    other_seed = SamplingParams(temperature=1.0, top_p=0.9, max_tokens=12, ignore_eos=True, seed=99)
    assert generated(llm.generate(token_prompts([prompts[2]]), other_seed, use_tqdm=False))[0] != alone


def test_seeded_sampling_survives_preemption(make_model, prompts):
    model = make_model("llama")
    seeded = [SamplingParams(temperature=1.0, max_tokens=16, ignore_eos=True, seed=i) for i in range(8)]
    roomy = LLM(model, max_model_len=64, block_size=4)
    expected = generated(roomy.generate(token_prompts(prompts), seeded, use_tqdm=False))
    per_block = roomy._engine.info.kv_cache_bytes // roomy._engine.info.num_kv_blocks
    tight = LLM(model, max_model_len=64, block_size=4, kv_cache_memory_bytes=20 * per_block)
    assert generated(tight.generate(token_prompts(prompts), seeded, use_tqdm=False)) == expected
    assert tight._engine.stats().num_preemptions > 0


def test_unseeded_sampling_follows_the_llm_seed(make_model, prompts):
    model = make_model("llama")
    sp = SamplingParams(temperature=1.0, max_tokens=10, ignore_eos=True)
    a = generated(LLM(model, max_model_len=128, seed=5).generate(token_prompts(prompts), sp, use_tqdm=False))
    b = generated(LLM(model, max_model_len=128, seed=5).generate(token_prompts(prompts), sp, use_tqdm=False))
    c = generated(LLM(model, max_model_len=128, seed=6).generate(token_prompts(prompts), sp, use_tqdm=False))
    assert a == b and a != c


def test_penalties_change_greedy_output_as_hf_processors_do(make_model, prompts):
    """repetition_penalty through the engine equals HF's RepetitionPenaltyLogitsProcessor."""
    import torch
    from transformers import RepetitionPenaltyLogitsProcessor

    from octavo.testing.tiny_models import load_hf_model

    model = make_model("llama")
    llm = LLM(model, max_model_len=128)
    penalty = 1.8
    out = llm.generate(token_prompts(prompts[:2]), greedy(max_tokens=10, repetition_penalty=penalty),
                       use_tqdm=False)
    hf = load_hf_model(model)
    processor = RepetitionPenaltyLogitsProcessor(penalty)
    for prompt, o in zip(prompts[:2], out):
        ids = list(prompt)
        for _ in range(10):
            with torch.no_grad():
                logits = hf(input_ids=torch.tensor([ids]), use_cache=False).logits[:, -1]
            ids.append(int(processor(torch.tensor([ids]), logits).argmax()))
        assert o.outputs[0].token_ids == ids[len(prompt):]
