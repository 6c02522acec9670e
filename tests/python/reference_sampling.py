"""A float64 numpy reference of vLLM's sampling transform: the oracle for octavo's sampler.

`reference_probs` takes one position's raw logits and a request's settings and returns the
distribution the next token is drawn from. The steps, in vLLM's order (v1 Sampler):

  1. allowed_token_ids: every other token gets -inf.
  2. banned_token_ids (EOS and stop ids while fewer than min_tokens are generated): -inf.
  3. logit_bias: added.
  4. penalties: repetition_penalty on every distinct id in prompt + output (a positive
     logit is divided by it, a negative one multiplied); then frequency_penalty times the
     id's count in the output, and presence_penalty once if the id is in the output, both
     subtracted. The prompt counts only for the repetition penalty.
  5. temperature < 1e-5: greedy; the result is one-hot on the argmax (lowest id on a tie).
     Otherwise logits / temperature.
  6. min_p: drop tokens whose probability is below min_p * the largest probability.
  7. top_k: keep tokens whose logit is >= the k-th largest (ties at the boundary stay).
  8. top_p: sort the surviving probabilities ascending, drop every token whose cumulative
     sum (itself included) is <= 1 - top_p; the most likely token always stays.
  9. softmax over what is left.

Also: `raw_logprobs` (what vLLM reports as logprobs: log_softmax of the raw logits, before
any of the above), `logprob_rank` (vLLM's rank: how many tokens are at least as likely),
`position_logprobs` (vLLM's per-position {token: (logprob, rank)} dict) and `bad_word_bans`
(the tokens vLLM's bad_words forbid after a given output).
Everything is written for clarity, one position at a time; speed does not matter here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

import numpy as np

SAMPLING_EPS = 1e-5


def softmax(logits: np.ndarray) -> np.ndarray:
    """exp(logits) normalised; -inf entries get probability 0."""
    logits = np.asarray(logits, dtype=np.float64)
    finite_max = np.max(logits)
    if not np.isfinite(finite_max):
        raise ValueError("every logit is -inf: no token can be sampled")
    exp = np.exp(logits - finite_max)
    return exp / exp.sum()


def raw_logprobs(logits: np.ndarray) -> np.ndarray:
    """log_softmax of the raw logits, in float64."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - np.max(logits)
    return shifted - np.log(np.exp(shifted).sum())


def logprob_rank(logprobs: np.ndarray, token_id: int) -> int:
    """1-based rank as vLLM reports it: the number of tokens with logprob >= the token's."""
    logprobs = np.asarray(logprobs)
    return int(np.sum(logprobs >= logprobs[token_id]))


def position_logprobs(logits: np.ndarray, token_id: int, num_logprobs: int) -> dict[int, tuple[float, int]]:
    """vLLM's logprobs at one position: {token: (raw logprob, rank)} for `token_id` (the
    sampled or prompt token) and the top `num_logprobs` tokens (rank 1..N, lower id first
    on ties)."""
    logprobs = raw_logprobs(logits)
    entry = {int(token_id): (float(logprobs[token_id]), logprob_rank(logprobs, token_id))}
    order = np.argsort(-logprobs, kind="stable")[:num_logprobs]
    for rank, token in enumerate(order, start=1):
        entry.setdefault(int(token), (float(logprobs[token]), rank))
    return entry


def bad_word_bans(bad_words_token_ids: Iterable[Iterable[int]], output_token_ids: Iterable[int]) -> list[int]:
    """The last token of each bad word whose other tokens end the output (vLLM v1's rule:
    the prompt is not looked at; a one-token word is always banned)."""
    output = [int(t) for t in output_token_ids]
    banned = []
    for word in bad_words_token_ids:
        word = [int(t) for t in word]
        prefix = word[:-1]
        if len(prefix) <= len(output) and output[len(output) - len(prefix):] == prefix:
            banned.append(word[-1])
    return banned


def mask_all_but(logits: np.ndarray, allowed_token_ids: Iterable[int]) -> np.ndarray:
    out = np.full_like(logits, -np.inf)
    allowed = list(allowed_token_ids)
    out[allowed] = logits[allowed]
    return out


def mask_tokens(logits: np.ndarray, banned_token_ids: Iterable[int]) -> np.ndarray:
    out = logits.copy()
    for token_id in banned_token_ids:
        out[token_id] = -np.inf
    return out


def add_logit_bias(logits: np.ndarray, logit_bias: Mapping[int, float]) -> np.ndarray:
    out = logits.copy()
    for token_id, bias in logit_bias.items():
        out[token_id] += bias
    return out


def apply_penalties(
    logits: np.ndarray,
    prompt_token_ids: Iterable[int],
    output_token_ids: Iterable[int],
    *,
    repetition_penalty: float = 1.0,
    frequency_penalty: float = 0.0,
    presence_penalty: float = 0.0,
) -> np.ndarray:
    out = logits.copy()
    output_counts = Counter(int(t) for t in output_token_ids)
    seen = set(int(t) for t in prompt_token_ids) | set(output_counts)
    for token_id in seen:
        if out[token_id] > 0:
            out[token_id] /= repetition_penalty
        else:
            out[token_id] *= repetition_penalty
    for token_id, count in output_counts.items():
        out[token_id] -= frequency_penalty * count
        out[token_id] -= presence_penalty
    return out


def apply_min_p(logits: np.ndarray, min_p: float) -> np.ndarray:
    probs = softmax(logits)
    out = logits.copy()
    out[probs < min_p * probs.max()] = -np.inf
    return out


def apply_top_k(logits: np.ndarray, top_k: int) -> np.ndarray:
    if top_k <= 0 or top_k >= logits.size:
        return logits.copy()
    kth_largest = np.sort(logits)[::-1][top_k - 1]
    out = logits.copy()
    out[logits < kth_largest] = -np.inf
    return out


def apply_top_p(logits: np.ndarray, top_p: float) -> np.ndarray:
    probs = softmax(logits)
    order = np.argsort(probs, kind="stable")  # ascending; on ties the lower id comes first
    cumulative = np.cumsum(probs[order])
    drop = cumulative <= 1.0 - top_p
    drop[-1] = False  # the most likely token always stays
    out = logits.copy()
    out[order[drop]] = -np.inf
    return out


def reference_probs(
    logits: np.ndarray,
    *,
    prompt_token_ids: Iterable[int] = (),
    output_token_ids: Iterable[int] = (),
    presence_penalty: float = 0.0,
    frequency_penalty: float = 0.0,
    repetition_penalty: float = 1.0,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
    min_p: float = 0.0,
    logit_bias: Mapping[int, float] | None = None,
    allowed_token_ids: Iterable[int] | None = None,
    banned_token_ids: Iterable[int] = (),
) -> np.ndarray:
    """The probabilities of the next token under vLLM's sampling rules (see module doc).

    logits: the model's raw logits at one position, shape [vocab_size].
    Returns float64 probabilities summing to 1, zero for every excluded token.
    """
    x = np.asarray(logits, dtype=np.float64).copy()
    if x.ndim != 1:
        raise ValueError(f"logits must be 1-D [vocab_size], got shape {x.shape}")
    if allowed_token_ids is not None:
        x = mask_all_but(x, allowed_token_ids)
    x = mask_tokens(x, banned_token_ids)
    if logit_bias:
        x = add_logit_bias(x, logit_bias)
    x = apply_penalties(
        x,
        prompt_token_ids,
        output_token_ids,
        repetition_penalty=repetition_penalty,
        frequency_penalty=frequency_penalty,
        presence_penalty=presence_penalty,
    )
    if temperature < SAMPLING_EPS:
        if not np.isfinite(np.max(x)):
            raise ValueError("every logit is -inf: no token can be sampled")
        one_hot = np.zeros_like(x)
        one_hot[int(np.argmax(x))] = 1.0
        return one_hot
    x = x / temperature
    if min_p > 0.0:
        x = apply_min_p(x, min_p)
    if top_k > 0:
        x = apply_top_k(x, top_k)
    if top_p < 1.0:
        x = apply_top_p(x, top_p)
    return softmax(x)
