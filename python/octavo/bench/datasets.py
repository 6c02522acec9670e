"""Benchmark workloads: random token prompts, and ShareGPT conversations read from disk.

Both give `SampleRequest`s holding the prompt's token ids and the number of tokens to
generate for it, so every backend runs the same work and the token counts are exact.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# vLLM's ShareGPT filter: pairs with fewer than 4 prompt or reply tokens are dropped, and
# so are prompts over 1024 tokens or prompt + reply over 2048 tokens.
SHAREGPT_MIN_LEN = 4
SHAREGPT_MAX_PROMPT_LEN = 1024
SHAREGPT_MAX_TOTAL_LEN = 2048


@dataclass(frozen=True)
class SampleRequest:
    """One benchmark request: the prompt's token ids and how many tokens to generate."""

    prompt_token_ids: list[int]
    expected_output_len: int
    prompt: str | None = None

    @property
    def prompt_len(self) -> int:
        return len(self.prompt_token_ids)


def usable_token_ids(tokenizer: Any, vocab_size: int) -> np.ndarray:
    """Ids below both the model's and the tokenizer's vocabulary size, special tokens left out.

    Random prompts are drawn from these, so they hold no BOS, EOS or pad. `tokenizer` may be
    None: then every id in [0, vocab_size) is usable.
    """
    limit = vocab_size if tokenizer is None else min(vocab_size, len(tokenizer))
    ids = np.arange(limit, dtype=np.int64)
    special = set(getattr(tokenizer, "all_special_ids", None) or [])
    if special:
        ids = ids[~np.isin(ids, sorted(special))]
    if ids.size == 0:
        raise ValueError(f"no usable token ids below vocab_size={vocab_size}")
    return ids


def _lengths(rng: np.random.Generator, n: int, length: int, range_ratio: float) -> np.ndarray:
    """n lengths uniform in [length * (1 - r), length * (1 + r)], at least 1 (vLLM's rule)."""
    low = max(1, int(length * (1.0 - range_ratio)))
    high = max(low, int(length * (1.0 + range_ratio)))
    return rng.integers(low, high + 1, size=n)


def random_requests(
    num_requests: int,
    input_len: int,
    output_len: int,
    *,
    token_ids: np.ndarray,
    range_ratio: float = 0.0,
    seed: int = 0,
    prefix_len: int = 0,
) -> list[SampleRequest]:
    """`num_requests` prompts of ids drawn uniformly from `token_ids`, seeded by `seed`.

    With prefix_len > 0 every prompt starts with the same prefix_len random ids (a shared
    system prompt, as vLLM's --prefix-len), then its own input_len ids.

    Prompt and output lengths are uniform in [len * (1 - range_ratio), len * (1 + range_ratio)];
    with range_ratio 0 every request has exactly input_len prompt tokens and output_len to
    generate. Raises ValueError for non-positive sizes or range_ratio outside [0, 1).
    """
    for name, value in (("num_requests", num_requests), ("input_len", input_len), ("output_len", output_len)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if not 0.0 <= range_ratio < 1.0:
        raise ValueError(f"random_range_ratio must be in [0, 1), got {range_ratio}")
    if prefix_len < 0:
        raise ValueError(f"prefix_len must be >= 0, got {prefix_len}")
    rng = np.random.default_rng(seed)
    prefix = rng.choice(token_ids, size=prefix_len).tolist() if prefix_len else []
    input_lens = _lengths(rng, num_requests, input_len, range_ratio)
    output_lens = _lengths(rng, num_requests, output_len, range_ratio)
    flat = rng.choice(token_ids, size=int(input_lens.sum()))
    starts = np.concatenate(([0], np.cumsum(input_lens)[:-1]))
    return [SampleRequest(prefix + flat[s:s + n].tolist(), int(o)) for s, n, o in zip(starts, input_lens, output_lens)]


def _first_exchange(conversation: Sequence[dict[str, Any]]) -> tuple[str, str] | None:
    """The first human turn and the first gpt turn after it, or None if either is missing."""
    human = None
    for turn in conversation:
        speaker = turn.get("from")
        if human is None and speaker == "human":
            human = turn.get("value")
        elif human is not None and speaker == "gpt":
            reply = turn.get("value")
            if isinstance(human, str) and isinstance(reply, str):
                return human, reply
            return None
    return None


def sharegpt_requests(
    path: str | os.PathLike,
    tokenizer: Any,
    num_requests: int,
    *,
    output_len: int | None = None,
    max_model_len: int | None = None,
    seed: int = 0,
) -> list[SampleRequest]:
    """`num_requests` prompts from a ShareGPT JSON file, as vLLM's throughput benchmark takes them.

    The file is a list of {"conversations": [{"from": "human" | "gpt", "value": str}, ...]}.
    Each entry gives its first human turn as the prompt (tokenized with the tokenizer's
    special tokens, as LLM.generate would) and the token count of the first gpt reply after
    it (no special tokens) as the output length, unless `output_len` fixes it. Entries are
    shuffled with `seed`; pairs outside vLLM's limits (SHAREGPT_*) or longer than
    max_model_len are dropped. When fewer than num_requests remain, some are repeated
    (chosen with the same seed), as vLLM oversamples.

    Raises OSError if the file cannot be read, ValueError if it is not a list or no entry is usable.
    """
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, list):
        raise ValueError(f"{path}: a ShareGPT file is a JSON list of {{'conversations': [...]}}")
    rng = np.random.default_rng(seed)
    max_total = SHAREGPT_MAX_TOTAL_LEN if max_model_len is None else min(SHAREGPT_MAX_TOTAL_LEN, max_model_len)
    requests: list[SampleRequest] = []
    for index in rng.permutation(len(data)):
        if len(requests) == num_requests:
            break
        entry = data[int(index)]
        exchange = _first_exchange(entry.get("conversations") or []) if isinstance(entry, dict) else None
        if exchange is None:
            continue
        prompt, reply = exchange
        prompt_ids = list(tokenizer(prompt).input_ids)
        reply_len = output_len if output_len is not None else len(tokenizer(reply, add_special_tokens=False).input_ids)
        if len(prompt_ids) < SHAREGPT_MIN_LEN or reply_len < SHAREGPT_MIN_LEN:
            continue
        if len(prompt_ids) > SHAREGPT_MAX_PROMPT_LEN or len(prompt_ids) + reply_len > max_total:
            continue
        requests.append(SampleRequest(prompt_ids, reply_len, prompt))
    if not requests:
        raise ValueError(f"{path}: no usable human/gpt exchange within the length limits")
    if len(requests) < num_requests:
        extra = rng.integers(0, len(requests), size=num_requests - len(requests))
        requests.extend(requests[int(i)] for i in extra)
    return requests
