"""The native sampler's transform and draw against the float64 reference in reference_sampling."""

from __future__ import annotations

import numpy as np
import pytest

from octavo._native import _C
from reference_sampling import position_logprobs, reference_probs

CASES = [
    {},
    {"temperature": 0.7},
    {"temperature": 1.3, "top_k": 5},
    {"top_k": 1},
    {"top_p": 0.9},
    {"top_p": 0.3, "temperature": 0.5},
    {"min_p": 0.1},
    {"min_p": 0.05, "top_k": 20, "top_p": 0.8},
    {"repetition_penalty": 1.5},
    {"repetition_penalty": 0.7, "temperature": 0.9},
    {"presence_penalty": 1.0, "frequency_penalty": 0.5},
    {"presence_penalty": -0.5, "frequency_penalty": -1.0, "top_p": 0.95},
    {"repetition_penalty": 1.2, "presence_penalty": 0.3, "frequency_penalty": 0.2, "min_p": 0.02,
     "top_k": 40, "top_p": 0.9, "temperature": 0.8},
    {"logit_bias": True},
    {"logit_bias": True, "repetition_penalty": 1.5, "temperature": 0.7},
    {"allowed_token_ids": True},
    {"allowed_token_ids": True, "top_p": 0.8, "presence_penalty": 0.5},
    {"banned_tokens": True, "frequency_penalty": 0.5},
    {"logit_bias": True, "allowed_token_ids": True, "banned_tokens": True, "repetition_penalty": 0.8,
     "top_k": 10, "min_p": 0.05},
    {"logit_bias": True, "allowed_token_ids": True, "repetition_penalty": 1.3, "temperature": 0.0},
]


def _token_lists(case: dict, rng: np.random.Generator, vocab: int) -> dict:
    """Replaces the True flags of a case with random lists over ids the history also uses,
    so biases and masks meet the penalties."""
    out = dict(case)
    if case.get("logit_bias"):
        ids = rng.choice(min(vocab, 60), size=12, replace=False)
        out["logit_bias"] = {int(t): float(b) for t, b in zip(ids, rng.uniform(-5, 5, size=12))}
    if case.get("allowed_token_ids"):
        out["allowed_token_ids"] = [int(t) for t in rng.choice(min(vocab, 80), size=25, replace=False)]
    if case.get("banned_tokens"):
        out["banned_tokens"] = [int(t) for t in rng.choice(min(vocab, 80), size=5, replace=False)]
    return out


@pytest.mark.parametrize("case", CASES, ids=[",".join(f"{k}={v}" for k, v in c.items()) or "plain" for c in CASES])
@pytest.mark.parametrize("vocab", [50, 1000])
def test_sampling_distribution_matches_reference(case, vocab):
    rng = np.random.default_rng(hash((vocab, tuple(sorted(case.items())))) % 2**32)
    for _ in range(5):
        logits = (rng.standard_normal(vocab) * 3).astype(np.float32)
        prompt = rng.integers(0, min(vocab, 60), size=12).tolist()
        output = rng.integers(0, min(vocab, 60), size=9).tolist()
        kw = _token_lists(case, rng, vocab)
        got = _C.testing.sampling_distribution(logits=logits, prompt_tokens=prompt, output_tokens=output, **kw)
        if "banned_tokens" in kw:
            kw["banned_token_ids"] = kw.pop("banned_tokens")
        want = reference_probs(logits.astype(np.float64), prompt_token_ids=prompt, output_token_ids=output, **kw)
        np.testing.assert_allclose(got, want, atol=2e-6, rtol=1e-4)
        assert np.array_equal(got > 0, want > 0)


def test_draws_follow_the_distribution_and_stay_in_its_support():
    rng = np.random.default_rng(3)
    logits = (rng.standard_normal(12) * 1.5).astype(np.float32)
    params = {"temperature": 0.9, "top_k": 6, "top_p": 0.9}
    probs = reference_probs(logits.astype(np.float64), **params)
    n = 20000
    tokens = np.array(_C.testing.sample_tokens(logits=logits, seed=42, draw_indices=list(range(n)), **params))
    counts = np.bincount(tokens, minlength=len(logits))
    assert counts[probs == 0].sum() == 0
    support = probs > 0
    expected = probs[support] * n
    chi2 = ((counts[support] - expected) ** 2 / expected).sum()
    # 99.9th percentile of chi-square with <= 5 degrees of freedom is 20.5.
    assert chi2 < 20.5


def test_a_draw_depends_only_on_seed_and_index():
    rng = np.random.default_rng(5)
    logits = rng.standard_normal(64).astype(np.float32)
    first = _C.testing.sample_tokens(logits=logits, seed=7, draw_indices=[3, 10, 11])
    again = _C.testing.sample_tokens(logits=logits, seed=7, draw_indices=[11, 3, 99, 10])
    assert [first[0], first[1], first[2]] == [again[1], again[3], again[0]]
    other_seed = _C.testing.sample_tokens(logits=logits, seed=8, draw_indices=list(range(50)))
    same_seed = _C.testing.sample_tokens(logits=logits, seed=7, draw_indices=list(range(50)))
    assert other_seed != same_seed


def test_compute_logprobs_matches_reference_position_logprobs():
    rng = np.random.default_rng(9)
    logits = (rng.standard_normal((6, 300)) * 2.5).astype(np.float32)
    tokens = rng.integers(0, 300, size=6).tolist()
    for num_logprobs in (0, 3, 20):
        got = _C.testing.logprobs(logits=logits, tokens=tokens, num_logprobs=num_logprobs)
        for row, token, (logprob, rank, top_tokens, top_logprobs) in zip(logits, tokens, got):
            want = position_logprobs(row.astype(np.float64), token, num_logprobs)
            assert logprob == pytest.approx(want[token][0], abs=1e-5)
            assert rank == want[token][1]
            assert top_tokens == np.argsort(-row.astype(np.float64), kind="stable")[:num_logprobs].tolist()
            for t, value in zip(top_tokens, top_logprobs):
                assert want[t][0] == pytest.approx(value, abs=1e-5)
