"""The sampling oracle against hand-worked examples.

Most cases use logits = log([1, 2, 3, 4]), whose softmax is exactly [0.1, 0.2, 0.3, 0.4].
"""

from __future__ import annotations

import numpy as np
import pytest

from reference_sampling import (
    bad_word_bans,
    position_logprobs,
    apply_penalties,
    logprob_rank,
    raw_logprobs,
    reference_probs,
    softmax,
)

LOGITS = np.log([1.0, 2.0, 3.0, 4.0])


def close(actual, expected):
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-12)


def test_plain_softmax():
    close(reference_probs(LOGITS), [0.1, 0.2, 0.3, 0.4])


def test_temperature_two_takes_square_roots():
    expected = np.sqrt([1, 2, 3, 4]) / np.sqrt([1, 2, 3, 4]).sum()
    close(reference_probs(LOGITS, temperature=2.0), expected)


def test_penalties_hand_worked():
    logits = np.array([2.0, -1.0, 0.5, 3.0])
    out = apply_penalties(
        logits, prompt_token_ids=[0], output_token_ids=[1, 1, 2],
        repetition_penalty=2.0, frequency_penalty=0.5, presence_penalty=0.25,
    )
    # 0: prompt only -> 2 / 2.            1: -1 * 2, then - 0.5 * 2 - 0.25.
    # 2: 0.5 / 2, then - 0.5 * 1 - 0.25.  3: untouched.
    close(out, [1.0, -3.25, -0.5, 3.0])


def test_repetition_penalty_counts_each_id_once():
    out = apply_penalties(np.array([4.0, -4.0]), [0, 0, 1], [0, 1, 1], repetition_penalty=2.0)
    close(out, [2.0, -8.0])


def test_greedy_is_one_hot_on_the_penalised_argmax():
    # Token 3 leads, but it was generated twice: 3 - 2 * 1.0 = 1 < log 3.
    probs = reference_probs(LOGITS, temperature=0.0, output_token_ids=[3, 3], frequency_penalty=1.0)
    close(probs, [0, 0, 1, 0])


def test_greedy_ignores_top_p_top_k_min_p():
    close(reference_probs(LOGITS, temperature=0.0, top_p=0.1, top_k=3, min_p=0.9), [0, 0, 0, 1])


def test_min_p_drops_tokens_below_fraction_of_max():
    # max prob 0.4: min_p 0.5 drops p < 0.2 (token 0); min_p 0.6 drops p < 0.24 (0 and 1).
    close(reference_probs(LOGITS, min_p=0.5), [0, 2 / 9, 3 / 9, 4 / 9])
    close(reference_probs(LOGITS, min_p=0.6), [0, 0, 3 / 7, 4 / 7])


def test_top_k_keeps_k_largest():
    close(reference_probs(LOGITS, top_k=2), [0, 0, 3 / 7, 4 / 7])
    close(reference_probs(LOGITS, top_k=4), [0.1, 0.2, 0.3, 0.4])
    close(reference_probs(LOGITS, top_k=10), [0.1, 0.2, 0.3, 0.4])


def test_top_k_keeps_ties_at_the_boundary():
    close(reference_probs(np.array([1.0, 1.0, 1.0, 0.0]), top_k=1), [1 / 3, 1 / 3, 1 / 3, 0])


def test_top_p_drops_the_tail_below_one_minus_p():
    # Ascending cumulative sums: 0.1, 0.3, 0.6, 1.0.
    close(reference_probs(LOGITS, top_p=0.95), [0.1, 0.2, 0.3, 0.4])  # drop <= 0.05: none
    close(reference_probs(LOGITS, top_p=0.85), [0, 2 / 9, 3 / 9, 4 / 9])  # drop <= 0.15
    close(reference_probs(LOGITS, top_p=0.65), [0, 0, 3 / 7, 4 / 7])  # drop <= 0.35
    close(reference_probs(LOGITS, top_p=0.35), [0, 0, 0, 1])  # drop <= 0.65


def test_top_p_always_keeps_the_most_likely_token():
    close(reference_probs(LOGITS, top_p=1e-9), [0, 0, 0, 1])


def test_top_p_applies_to_the_top_k_renormalised_distribution():
    # After top_k=2: [3/7, 4/7]; cumulative 3/7 <= 1 - 0.5 drops token 2.
    # (On the original distribution top_p=0.5 would keep tokens 2 and 3.)
    close(reference_probs(LOGITS, top_k=2, top_p=0.5), [0, 0, 0, 1])


def test_min_p_applies_after_temperature():
    # temperature 0.5 squares the odds: probs [1, 4, 9, 16] / 30; min_p 0.3 -> drop < 4.8/30.
    close(reference_probs(LOGITS, temperature=0.5, min_p=0.3), [0, 0, 9 / 25, 16 / 25])


def test_logit_bias_allowed_and_banned_tokens():
    # Bias log 4 multiplies token 0's weight by 4: weights [4, 2, 3, 4] / 13.
    close(reference_probs(LOGITS, logit_bias={0: np.log(4.0)}), np.array([4, 2, 3, 4]) / 13)
    close(reference_probs(LOGITS, allowed_token_ids=[0, 2]), [0.25, 0, 0.75, 0])
    close(reference_probs(LOGITS, banned_token_ids=[3]), [1 / 6, 2 / 6, 3 / 6, 0])


def test_everything_banned_raises():
    with pytest.raises(ValueError, match="-inf"):
        reference_probs(LOGITS, allowed_token_ids=[1], banned_token_ids=[1])


def test_raw_logprobs_and_vllm_rank():
    logprobs = raw_logprobs(np.array([1.0, 3.0, 3.0, 0.0]))
    close(np.exp(logprobs).sum(), 1.0)
    close(logprobs, np.log(softmax(np.array([1.0, 3.0, 3.0, 0.0]))))
    assert [logprob_rank(logprobs, t) for t in range(4)] == [3, 2, 2, 4]


def test_logit_bias_comes_before_the_repetition_penalty():
    # Token 1 was generated: -1 + 1.5 = 0.5 is positive, so the penalty halves it (0.25);
    # penalising first would have given -2 + 1.5 = -0.5.
    logits = np.array([0.0, -1.0, -3.0, 0.1])
    got = reference_probs(logits, output_token_ids=[1], repetition_penalty=2.0, logit_bias={1: 1.5})
    close(got, softmax(np.array([0.0, 0.25, -3.0, 0.1])))


def test_position_logprobs_has_the_token_then_the_top_n():
    logits = np.array([1.0, 3.0, 3.0, 0.0, 2.0])
    logprobs = raw_logprobs(logits)
    entry = position_logprobs(logits, 3, 2)
    assert list(entry) == [3, 1, 2]
    assert entry[3] == (pytest.approx(logprobs[3]), 5)
    assert entry[1][1] == 1 and entry[2][1] == 2  # top-N ranks are positions, lower id first
    assert list(position_logprobs(logits, 2, 2)) == [2, 1]  # the token already in the top N
    assert list(position_logprobs(logits, 4, 0)) == [4]


def test_bad_word_bans_hand_worked():
    words = [[7], [4, 5, 6], [5, 9]]
    assert bad_word_bans(words, []) == [7]
    assert bad_word_bans(words, [4]) == [7]
    assert bad_word_bans(words, [1, 4, 5]) == [7, 6, 9]
    assert bad_word_bans(words, [4, 5, 1]) == [7]
