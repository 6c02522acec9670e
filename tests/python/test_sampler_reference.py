"""The native sampler's transform and draw against the float64 reference in reference_sampling."""

from __future__ import annotations

import numpy as np
import pytest

from octavo._native import _C
from reference_sampling import reference_probs

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
]


@pytest.mark.parametrize("case", CASES, ids=[",".join(f"{k}={v}" for k, v in c.items()) or "plain" for c in CASES])
@pytest.mark.parametrize("vocab", [50, 1000])
def test_sampling_distribution_matches_reference(case, vocab):
    rng = np.random.default_rng(hash((vocab, tuple(sorted(case.items())))) % 2**32)
    for _ in range(5):
        logits = (rng.standard_normal(vocab) * 3).astype(np.float32)
        prompt = rng.integers(0, vocab, size=12).tolist()
        output = rng.integers(0, vocab, size=9).tolist()
        got = _C.testing.sampling_distribution(logits=logits, prompt_tokens=prompt, output_tokens=output, **case)
        want = reference_probs(logits.astype(np.float64), prompt_token_ids=prompt, output_token_ids=output, **case)
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
