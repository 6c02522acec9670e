"""logit_bias, allowed_token_ids, bad_words and cumulative_logprob through LLM.generate.

The oracle replays each request in HF transformers (float32 forward, whole sequence each
step) and picks the next token with the float64 reference sampler (reference_sampling),
which applies allowed ids, bans, bias and penalties in vLLM v1's order. Logprobs stay the
raw model's, whatever the options.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from octavo import LLM, SamplingParams
from octavo.testing.tiny_models import hf_logprobs, load_hf_model, random_prompts
from reference_sampling import bad_word_bans, raw_logprobs, reference_probs

VOCAB = 384
MAX_TOKENS = 10


@pytest.fixture(scope="module")
def model_dir(make_model) -> str:
    return make_model("llama")


@pytest.fixture(scope="module")
def llm(model_dir) -> LLM:
    return LLM(model_dir, max_model_len=128, max_num_seqs=8)


@pytest.fixture(scope="module")
def prompts() -> list[list[int]]:
    return random_prompts(4, VOCAB, min_len=3, max_len=30, seed=11)


def reference_greedy(model_dir: str, prompt: list[int], max_tokens: int, *,
                     bad_words_token_ids=(), **options) -> tuple[list[int], list[np.ndarray]]:
    """HF logits + the reference sampler, greedy: the tokens and each step's raw logprobs."""
    hf = load_hf_model(model_dir)
    ids, out, step_logprobs = list(prompt), [], []
    with torch.no_grad():
        for _ in range(max_tokens):
            logits = hf(input_ids=torch.tensor([ids]), use_cache=False).logits[0, -1].double().numpy()
            probs = reference_probs(logits, prompt_token_ids=prompt, output_token_ids=out, temperature=0.0,
                                    banned_token_ids=bad_word_bans(bad_words_token_ids, out), **options)
            token = int(np.argmax(probs))
            step_logprobs.append(raw_logprobs(logits))
            out.append(token)
            ids.append(token)
    return out, step_logprobs


def greedy(max_tokens: int = MAX_TOKENS, **kw) -> SamplingParams:
    return SamplingParams(temperature=0.0, max_tokens=max_tokens, ignore_eos=True, **kw)


def test_logit_bias_and_repetition_penalty_follow_the_reference(llm, model_dir, prompts):
    rng = np.random.default_rng(0)
    for prompt in prompts:
        # Biases large enough to move the argmax, on ids the prompt and output may repeat.
        bias = {int(t): float(b) for t, b in zip(rng.choice(VOCAB, 40, replace=False), rng.uniform(-8, 8, 40))}
        options = {"logit_bias": bias, "repetition_penalty": 1.6}
        out = llm.generate({"prompt_token_ids": prompt}, greedy(logprobs=1, **options), use_tqdm=False)[0]
        tokens, step_logprobs = reference_greedy(model_dir, prompt, MAX_TOKENS, **options)
        plain = hf_logprobs(model_dir, [prompt], MAX_TOKENS)[0].token_ids
        assert out.outputs[0].token_ids == tokens
        assert tokens != plain  # the options did change the output
        for token, position, ref in zip(tokens, out.outputs[0].logprobs, step_logprobs):
            assert position[token].logprob == pytest.approx(ref[token], abs=1e-4)  # raw, unbiased


def test_allowed_token_ids_restrict_greedy_and_sampled_tokens(llm, model_dir, prompts):
    allowed = [9, 40, 41, 97, 200, 383]
    for prompt in prompts[:2]:
        out = llm.generate({"prompt_token_ids": prompt}, greedy(allowed_token_ids=allowed, logprobs=0),
                           use_tqdm=False)[0].outputs[0]
        tokens, step_logprobs = reference_greedy(model_dir, prompt, MAX_TOKENS, allowed_token_ids=allowed)
        assert out.token_ids == tokens
        for token, position, ref in zip(tokens, out.logprobs, step_logprobs):
            assert position[token].logprob == pytest.approx(ref[token], abs=1e-4)
            assert position[token].rank == int(np.sum(ref >= ref[token]))
    sampled = llm.generate([{"prompt_token_ids": p} for p in prompts],
                           SamplingParams(temperature=1.5, max_tokens=30, seed=4, allowed_token_ids=allowed,
                                          ignore_eos=True), use_tqdm=False)
    seen = {t for o in sampled for t in o.outputs[0].token_ids}
    assert seen <= set(allowed) and len(seen) > 2


def test_bad_words_are_tokenized_with_and_without_a_leading_space(llm):
    tokenizer = llm.get_tokenizer()
    words = ["the", " value", "module"]
    sp = SamplingParams(bad_words=words)
    sp.update_from_tokenizer(tokenizer)
    expected = []
    for word in words:
        plain = tokenizer.encode(word.lstrip(), add_special_tokens=False)
        spaced = tokenizer.encode(" " + word.lstrip(), add_special_tokens=False)
        expected.append(plain)
        if spaced[0] != plain[0] and len(spaced) == len(plain):
            expected.append(spaced)
    assert sp.bad_words_token_ids == expected
    assert any(len(seq) > 1 for seq in expected) and len(expected) > len(words)


def _word_at(tokenizer, tokens: list[int], length: int, start: int) -> str:
    """The text of the first window of `length` tokens from `start` that encodes back to
    those tokens (random models emit byte pieces that do not round-trip)."""
    for i in range(start, len(tokens) - length + 1):
        text = tokenizer.decode(tokens[i:i + length])
        if text.strip() and tokenizer.encode(text.lstrip(), add_special_tokens=False) == tokens[i:i + length]:
            return text
    raise AssertionError(f"no {length}-token window of {tokens} round-trips through the tokenizer")


def test_bad_words_never_complete_and_follow_the_reference(llm, model_dir):
    tokenizer = llm.get_tokenizer()
    prompt = tokenizer.encode("Return the value of the")
    plain = llm.generate({"prompt_token_ids": prompt}, greedy(max_tokens=30), use_tqdm=False)[0].outputs[0]
    # Ban words the unconstrained continuation produces: a two-token one and a single token.
    words = [_word_at(tokenizer, plain.token_ids, 2, 1), _word_at(tokenizer, plain.token_ids, 1, 4)]
    sp = greedy(bad_words=words)
    out = llm.generate({"prompt_token_ids": prompt}, sp, use_tqdm=False)[0].outputs[0]
    checked = sp.clone()
    checked.update_from_tokenizer(tokenizer)
    sequences = checked.bad_words_token_ids
    tokens, _ = reference_greedy(model_dir, prompt, MAX_TOKENS, bad_words_token_ids=sequences)
    assert out.token_ids == tokens != plain.token_ids[:MAX_TOKENS]
    for seq in sequences:
        n = len(seq)
        assert all(out.token_ids[i:i + n] != seq for i in range(len(out.token_ids) - n + 1)), seq
    assert sp.bad_words_token_ids is None  # the caller's params are left as given


def test_cumulative_logprob_is_none_without_logprobs_and_the_raw_sum_with(llm, model_dir, prompts):
    outputs = llm.generate([{"prompt_token_ids": p} for p in prompts[:2]],
                           [greedy(), greedy(logprobs=0)], use_tqdm=False)
    assert outputs[0].outputs[0].cumulative_logprob is None
    assert outputs[0].outputs[0].logprobs is None
    ref = hf_logprobs(model_dir, [prompts[1]], MAX_TOKENS)[0]
    with_logprobs = outputs[1].outputs[0]
    assert with_logprobs.token_ids == ref.token_ids
    assert all(len(position) == 1 for position in with_logprobs.logprobs)  # logprobs=0: the token alone
    expected = sum(ref.logprobs[i][t] for i, t in enumerate(ref.token_ids))
    assert with_logprobs.cumulative_logprob == pytest.approx(expected, abs=1e-3)


def test_options_of_one_request_leave_its_batch_neighbours_alone(llm, model_dir, prompts):
    params = [greedy(), greedy(logit_bias={50: 30.0}), greedy(allowed_token_ids=[7, 8]), greedy(bad_words=["the"])]
    outputs = llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
    assert outputs[0].outputs[0].token_ids == hf_logprobs(model_dir, [prompts[0]], MAX_TOKENS)[0].token_ids
    assert outputs[1].outputs[0].token_ids == [50] * MAX_TOKENS
    assert set(outputs[2].outputs[0].token_ids) <= {7, 8}
