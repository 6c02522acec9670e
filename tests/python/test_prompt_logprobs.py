"""prompt_logprobs against HF transformers' log_softmax of the whole prompt's logits (fp32).

Per prompt position vLLM returns None for the first token, then {prompt token: Logprob,
top N tokens: Logprob}. The engine runs the LM head on every prompt row of the requests
that ask, so the same values must come out however the prompt is split into chunks,
preempted and recomputed, or batched with requests that do not ask.
"""

from __future__ import annotations

import numpy as np
import pytest

from octavo import LLM, SamplingParams
from octavo.testing.tiny_models import hf_logprobs, random_prompts

VOCAB = 384
MAX_TOKENS = 4
TOP_N = 5


@pytest.fixture(scope="module")
def model_dir(make_model) -> str:
    return make_model("llama")


@pytest.fixture(scope="module")
def prompts() -> list[list[int]]:
    # 1 to 45 tokens: a one-token prompt (no logprobs but the leading None) and prompts
    # spanning several 8-token chunks and 4-token blocks.
    return [[42]] + random_prompts(6, VOCAB, min_len=2, max_len=45, seed=3)


@pytest.fixture(scope="module")
def references(model_dir, prompts):
    return hf_logprobs(model_dir, prompts, MAX_TOKENS)


def params(n: int | None = TOP_N) -> SamplingParams:
    return SamplingParams(temperature=0.0, max_tokens=MAX_TOKENS, ignore_eos=True, prompt_logprobs=n)


def check_prompt_logprobs(output, ref, n: int, tokenizer=None) -> None:
    prompt = ref.prompt_token_ids
    got = output.prompt_logprobs
    assert len(got) == len(prompt) and got[0] is None
    for j, position in enumerate(got[1:]):
        expected = ref.prompt_logprobs[j]  # the distribution over prompt token j + 1
        token = prompt[j + 1]
        top = np.argsort(-expected, kind="stable")[:n].tolist()
        assert list(position)[0] == token
        assert set(position) == {token, *top}
        assert position[token].logprob == pytest.approx(expected[token], abs=1e-4)
        assert position[token].rank == int(np.sum(expected >= expected[token]))
        for rank, t in enumerate(top, start=1):
            assert position[t].logprob == pytest.approx(expected[t], abs=1e-4)
            if t != token:
                assert position[t].rank == rank
        if tokenizer is not None:
            assert all(lp.decoded_token == tokenizer.decode([t]) for t, lp in position.items())


def test_prompt_logprobs_match_hf_within_1e_4(model_dir, prompts, references):
    llm = LLM(model_dir, max_model_len=128)
    outputs = llm.generate([{"prompt_token_ids": p} for p in prompts], params(), use_tqdm=False)
    for out, ref in zip(outputs, references):
        check_prompt_logprobs(out, ref, TOP_N, llm.get_tokenizer())
        assert out.outputs[0].token_ids == ref.token_ids


def test_prompt_logprobs_zero_gives_the_prompt_token_alone(model_dir, prompts, references):
    llm = LLM(model_dir, max_model_len=128)
    out = llm.generate({"prompt_token_ids": prompts[3]}, params(0), use_tqdm=False)[0]
    assert all(len(position) == 1 for position in out.prompt_logprobs[1:])
    check_prompt_logprobs(out, references[3], 0)


def test_prompt_logprobs_with_chunked_prefill_and_more_rows_than_max_num_seqs(model_dir, prompts, references):
    # 8 tokens a step: long prompts arrive in chunks; with max_num_seqs 2 a step's prompt
    # rows outnumber the logits buffer's rows, so the LM head runs in slices.
    llm = LLM(model_dir, max_model_len=128, max_num_batched_tokens=8, max_num_seqs=2)
    outputs = llm.generate([{"prompt_token_ids": p} for p in prompts], params(), use_tqdm=False)
    for out, ref in zip(outputs, references):
        check_prompt_logprobs(out, ref, TOP_N)
        assert out.outputs[0].token_ids == ref.token_ids
    wide = LLM(model_dir, max_model_len=128, max_num_seqs=2)
    outputs = wide.generate([{"prompt_token_ids": p} for p in prompts], params(), use_tqdm=False)
    for out, ref in zip(outputs, references):
        check_prompt_logprobs(out, ref, TOP_N)


def test_prompt_logprobs_survive_preemption_without_repeats(model_dir, prompts, references):
    probe = LLM(model_dir, max_model_len=64, block_size=4)
    bytes_per_block = probe._engine.info.kv_cache_bytes // probe._engine.info.num_kv_blocks
    # 16 blocks of 4 tokens: one 64-token sequence fits, the batch does not.
    llm = LLM(model_dir, max_model_len=64, block_size=4, kv_cache_memory_bytes=16 * bytes_per_block,
              max_num_batched_tokens=16, max_num_seqs=4)
    outputs = llm.generate([{"prompt_token_ids": p} for p in prompts], params(), use_tqdm=False)
    assert llm._engine.stats().num_preemptions > 0
    for out, ref in zip(outputs, references):
        check_prompt_logprobs(out, ref, TOP_N)
        assert out.outputs[0].token_ids == ref.token_ids


def test_requests_without_prompt_logprobs_are_unaffected_in_the_same_batch(model_dir, prompts, references):
    llm = LLM(model_dir, max_model_len=128, max_num_batched_tokens=16, max_num_seqs=8)
    mixed = [params() if i % 2 else params(None) for i in range(len(prompts))]
    outputs = llm.generate([{"prompt_token_ids": p} for p in prompts], mixed, use_tqdm=False)
    for i, (out, ref) in enumerate(zip(outputs, references)):
        assert out.outputs[0].token_ids == ref.token_ids
        if i % 2:
            check_prompt_logprobs(out, ref, TOP_N)
        else:
            assert out.prompt_logprobs is None


def test_prompt_logprobs_of_a_text_prompt_without_detokenize_have_no_text(model_dir):
    llm = LLM(model_dir, max_model_len=128)
    sp = SamplingParams(temperature=0.0, max_tokens=2, prompt_logprobs=2, detokenize=False)
    out = llm.generate("Return the value", sp, use_tqdm=False)[0]
    ids = llm.get_tokenizer().encode("Return the value")
    ref = hf_logprobs(model_dir, [ids], 1)[0]
    check_prompt_logprobs(out, ref, 2)
    assert all(lp.decoded_token is None for position in out.prompt_logprobs[1:] for lp in position.values())


def test_prompt_logprobs_of_a_prompt_already_in_the_prefix_cache(model_dir, prompts, references):
    """A request asking prompt_logprobs reuses no cached blocks (as vLLM), so every position
    is still scored, while the same prompt without prompt_logprobs does hit the cache."""
    llm = LLM(model_dir, max_model_len=64, block_size=4, enable_prefix_caching=True)
    long_prompt, ref = prompts[-1], references[-1]
    assert len(long_prompt) >= 9
    plain = SamplingParams(temperature=0.0, max_tokens=MAX_TOKENS, ignore_eos=True)
    llm.generate({"prompt_token_ids": long_prompt}, plain, use_tqdm=False)  # fills the cache
    out = llm.generate({"prompt_token_ids": long_prompt}, params(), use_tqdm=False)[0]
    assert out.num_cached_tokens == 0
    check_prompt_logprobs(out, ref, TOP_N)
    again = llm.generate({"prompt_token_ids": long_prompt}, plain, use_tqdm=False)[0]
    assert again.num_cached_tokens > 0
    assert again.outputs[0].token_ids == out.outputs[0].token_ids
