"""Token ids to text: the batch decode at the end of a request, and the incremental one
that stop strings need.

Most requests are decoded once, when they finish, in one `batch_decode` per set of
decoding options. A request with stop strings is decoded as it runs (`StopStringChecker`),
one token per step, so it can be ended as soon as a stop string shows up in its text.

Both decode only the request's output tokens, so the text of a request whose stop string
never appears is the same as without one. The incremental decode emits text only once it
is complete: a character whose UTF-8 bytes span several tokens (byte-level BPE, or a
sentencepiece byte fallback) appears when its last byte arrives, so a stop string is never
matched against a half-decoded character.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# What tokenizers put in place of bytes that are not (yet) valid UTF-8.
REPLACEMENT_CHAR = "\ufffd"


def decode(tokenizer: Any, token_ids: Sequence[int], skip_special_tokens: bool,
           spaces_between_special_tokens: bool = True) -> str:
    """The text of token_ids, as vLLM's detokenizer gives it.

    spaces_between_special_tokens=False (with skip_special_tokens=False) joins an added
    token that follows another added token without the separator the tokenizer's decoder
    may put before it, as vLLM does for fast tokenizers; it needs a per-token walk, so only
    requests asking for it pay for one.
    """
    if spaces_between_special_tokens or skip_special_tokens or not _added_tokens(tokenizer):
        return tokenizer.decode(list(token_ids), skip_special_tokens=skip_special_tokens)
    detok = IncrementalDetokenizer(tokenizer, skip_special_tokens, spaces_between_special_tokens)
    detok.add(token_ids)
    return detok.text + detok.pending_text()


def batch_decode(tokenizer: Any, sequences: list[Sequence[int]], skip_special_tokens: bool,
                 spaces_between_special_tokens: bool = True) -> list[str]:
    """`decode` of several sequences that share decoding options, in one tokenizer call."""
    if spaces_between_special_tokens or skip_special_tokens or not _added_tokens(tokenizer):
        return tokenizer.batch_decode([list(s) for s in sequences], skip_special_tokens=skip_special_tokens)
    return [decode(tokenizer, s, skip_special_tokens, False) for s in sequences]


def _added_tokens(tokenizer: Any) -> dict[int, str]:
    """{id: text} of the tokenizer's added tokens (the specials among them), cached on it."""
    cached = getattr(tokenizer, "_octavo_added_tokens", None)
    if cached is None:
        cached = {i: str(t) for i, t in tokenizer.added_tokens_decoder.items()}
        try:
            tokenizer._octavo_added_tokens = cached
        except AttributeError:  # a tokenizer object that takes no new attributes
            pass
    return cached


class IncrementalDetokenizer:
    """Turns a growing list of output token ids into text, a token at a time.

    Keeps a short window of tokens (from `prefix_offset`) whose decode is the context for
    the next ones: the new text of a token is decode(window + token) minus decode(window),
    which keeps decoders that depend on their neighbours (spaces, byte pieces) right. Text
    that ends in an incomplete character is held back until the character completes.
    """

    def __init__(self, tokenizer: Any, skip_special_tokens: bool = True,
                 spaces_between_special_tokens: bool = True) -> None:
        self._tokenizer = tokenizer
        self._skip = skip_special_tokens
        self.token_ids: list[int] = []
        self.text = ""
        self._prefix_offset = 0  # start of the context window
        self._read_offset = 0  # tokens before this are in self.text
        # vLLM's rule for spaces_between_special_tokens=False: an added token right after
        # another one is emitted as its bare text.
        self._added = None if (skip_special_tokens or spaces_between_special_tokens) else _added_tokens(tokenizer)
        self._last_added = False

    def _decode(self, ids: list[int]) -> str:
        return self._tokenizer.decode(ids, skip_special_tokens=self._skip)

    def add(self, token_ids: Sequence[int]) -> int:
        """Appends tokens; returns how many characters of text became complete."""
        before = len(self.text)
        for token in token_ids:
            self.token_ids.append(token)
            if self._added is not None and self._bare_added_token(token):
                continue
            prefix = self._decode(self.token_ids[self._prefix_offset:self._read_offset])
            full = self._decode(self.token_ids[self._prefix_offset:])
            if len(full) > len(prefix) and not full.endswith(REPLACEMENT_CHAR):
                self.text += full[len(prefix):]
                self._prefix_offset = self._read_offset
                self._read_offset = len(self.token_ids)
        return len(self.text) - before

    def _bare_added_token(self, token: int) -> bool:
        """Emits `token` bare if it is an added token following another; True if it did."""
        content = self._added.get(token)
        follows_added = self._last_added
        self._last_added = content is not None
        if content is None or not follows_added or self._read_offset != len(self.token_ids) - 1:
            return False
        self.text += content
        # The bare token starts a fresh window: it is its own context.
        self._prefix_offset = len(self.token_ids) - 1
        self._read_offset = len(self.token_ids)
        return True

    def pending_text(self) -> str:
        """Text of the held-back tail (an incomplete character decodes as U+FFFD)."""
        if self._read_offset == len(self.token_ids):
            return ""
        prefix = self._decode(self.token_ids[self._prefix_offset:self._read_offset])
        return self._decode(self.token_ids[self._prefix_offset:])[len(prefix):]


def find_stop_string(text: str, num_new_chars: int, stop: Sequence[str],
                     include_in_output: bool) -> tuple[str, int] | None:
    """The stop string that the last `num_new_chars` characters of text complete, if any.

    As vLLM: stop strings are tried in the order given and the first found wins; only a
    match ending in the new characters counts. Returns (stop string, the length to cut
    the text to), the length being -1 when nothing needs cutting.
    """
    if num_new_chars <= 0:
        return None
    for s in stop:
        start = max(0, len(text) - num_new_chars - len(s) + 1)
        index = text.find(s, start)
        if index < 0:
            continue
        if include_in_output:
            index += len(s)
            if index >= len(text):
                return s, -1
        return s, index
    return None


class StopStringChecker:
    """One request's stop strings, checked on its text as each step's tokens arrive.

    `min_tokens` holds the check back as vLLM does: text produced by the first min_tokens
    tokens can end no match.
    """

    def __init__(self, tokenizer: Any, stop: Sequence[str], include_stop_str_in_output: bool,
                 min_tokens: int, skip_special_tokens: bool, spaces_between_special_tokens: bool) -> None:
        self.stop = list(stop)
        self.include = include_stop_str_in_output
        self.min_tokens = min_tokens
        self.detokenizer = IncrementalDetokenizer(tokenizer, skip_special_tokens, spaces_between_special_tokens)
        self.stop_string: str | None = None
        self.text = ""  # the output text so far, cut at the stop string once one is found
        self.num_tokens = 0  # output tokens seen, the skipped stop token included

    def update(self, new_token_ids: Sequence[int], stopped_by_token: bool = False) -> str | None:
        """Feeds one step's tokens; returns the stop string they complete, or None.

        stopped_by_token: the engine ended the request on EOS or a stop token id with the
        last of these tokens; its text is left out unless include_stop_str_in_output.
        """
        to_decode = list(new_token_ids)
        if stopped_by_token and not self.include and to_decode:
            to_decode.pop()
        detok = self.detokenizer
        check_from = len(detok.text)
        for token in to_decode:
            detok.add((token,))
            self.num_tokens += 1
            if self.num_tokens <= self.min_tokens:
                check_from = len(detok.text)
        self.num_tokens += len(new_token_ids) - len(to_decode)
        self.text = detok.text
        if self.num_tokens <= self.min_tokens:
            return None
        found = find_stop_string(detok.text, len(detok.text) - check_from, self.stop, self.include)
        if found is None:
            return None
        self.stop_string, cut = found
        if cut >= 0:
            self.text = detok.text[:cut]
        return self.stop_string
