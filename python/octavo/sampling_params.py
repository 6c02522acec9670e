"""Sampling parameters for text generation, with vLLM's names, defaults and checks.

`SamplingParams()` with no arguments behaves as vLLM's: n=1, temperature=1.0, top_p=1.0,
top_k=0 (off), max_tokens=16. Bad values raise ValueError naming the field, the value and
the allowed range; values of the wrong type raise a TypeError that is also a ValueError
(vLLM raises one or the other depending on the field, so either `except` catches it).

Checks that need the model (token ids inside the vocabulary, logprobs <= max_logprobs,
max_tokens within max_model_len) are the engine's, when a request is added.
"""

from __future__ import annotations

import copy
import enum
import math
import numbers
import warnings
from dataclasses import dataclass, field
from typing import Any

# Temperatures below this mean greedy decoding (vLLM's _SAMPLING_EPS).
SAMPLING_EPS = 1e-5
# vLLM raises temperatures in (0, MIN_TEMPERATURE) to MIN_TEMPERATURE, with a warning, to
# keep logits / temperature finite; only exactly 0 is greedy.
MIN_TEMPERATURE = 1e-2


class RequestOutputKind(enum.Enum):
    """What each RequestOutput of a streaming request carries."""

    CUMULATIVE = 0  # everything generated so far
    DELTA = 1  # only what is new since the previous output
    FINAL_ONLY = 2  # no intermediate outputs, only the finished one


class SamplingParamsTypeError(TypeError, ValueError):
    """A sampling parameter of the wrong type (both a TypeError and a ValueError)."""


def _int(name: str, value: Any, *, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        expected = "an int or None" if optional else "an int"
        raise SamplingParamsTypeError(
            f"{name} must be {expected}, got {value!r} of type {type(value).__name__}"
        )
    return int(value)


def _float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise SamplingParamsTypeError(
            f"{name} must be a number, got {value!r} of type {type(value).__name__}"
        )
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}.")
    return value


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise SamplingParamsTypeError(
            f"{name} must be a bool, got {value!r} of type {type(value).__name__}"
        )
    return value


def _int_list(name: str, value: Any) -> list[int]:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise SamplingParamsTypeError(
            f"{name} must be a list of ints, got {value!r} of type {type(value).__name__}"
        )
    items = list(value)
    for item in items:
        if isinstance(item, bool) or not isinstance(item, numbers.Integral):
            raise SamplingParamsTypeError(f"{name} must contain only ints, got {items!r}.")
    return [int(item) for item in items]


def _str_list(name: str, value: Any, *, dedupe: bool) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise SamplingParamsTypeError(
            f"{name} must be a str or a list of str, got {value!r} of type "
            f"{type(value).__name__}"
        )
    items = list(value)
    for item in items:
        if not isinstance(item, str):
            raise SamplingParamsTypeError(f"{name} must contain only strings, got {items!r}.")
        if not item:
            raise ValueError(f"{name} cannot contain an empty string, got {items!r}.")
    return list(dict.fromkeys(items)) if dedupe else items


def _logprobs_count(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):  # vLLM: True means 1; False is 0
        return int(value)
    value = _int(name, value)
    if value < -1:
        raise ValueError(
            f"{name} must be non-negative, or -1 for the whole vocabulary, got {value}."
        )
    return value


@dataclass
class SamplingParams:
    """Sampling parameters for text generation (vLLM's `SamplingParams`).

    n: completions returned per prompt, >= 1 (1 when greedy).
    best_of: completions generated, of which the n with the highest cumulative logprob
        are returned; None means n. >= n.
    presence_penalty, frequency_penalty: in [-2, 2]; subtracted from the logits of tokens
        already generated (once, or once per occurrence). Positive values discourage repeats.
    repetition_penalty: > 0; logits of tokens in the prompt or the output are divided by it
        when positive and multiplied when negative. 1 disables it.
    temperature: >= 0; 0 is greedy. Values in (0, 0.01) are raised to 0.01 (with a warning).
    top_p: in (0, 1]; keep the smallest set of top tokens whose probability reaches top_p.
    top_k: keep the k most likely tokens; 0 (or -1, stored as 0) keeps all.
    min_p: in [0, 1]; drop tokens less likely than min_p times the most likely one.
    seed: per-request random seed; None (or -1) uses the engine's generator.
    stop: strings that end generation; not included in the output text unless
        include_stop_str_in_output. A str is stored as a one-element list.
    stop_token_ids: token ids that end generation; they are kept in token_ids.
    bad_words: words whose last token may not complete them.
    ignore_eos: keep generating after EOS.
    max_tokens: tokens generated per completion, >= 1; None: up to max_model_len.
    min_tokens: EOS and stop_token_ids cannot be generated before this many tokens,
        0 <= min_tokens <= max_tokens.
    logprobs: return the sampled token's logprob and the top `logprobs` ones per position;
        None: none; -1: the whole vocabulary (bounded by the engine's max_logprobs, as the
        engine checks). True means 1.
    prompt_logprobs: the same for each prompt token.
    detokenize, skip_special_tokens, spaces_between_special_tokens: output text options.
    include_stop_str_in_output: keep the matched stop string in the text.
    logit_bias: {token id: bias} added to the logits.
    allowed_token_ids: only these ids may be sampled; must not be empty.
    truncate_prompt_tokens: keep only the last k prompt tokens (k >= 1; -1: max_model_len).
    output_kind: what streamed outputs carry (offline generate() returns final outputs).
    extra_args: free-form arguments for custom samplers; unused by octavo.
    """

    n: int = 1
    best_of: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    seed: int | None = None
    stop: str | list[str] | None = None
    stop_token_ids: list[int] | None = None
    bad_words: list[str] | None = None
    ignore_eos: bool = False
    max_tokens: int | None = 16
    min_tokens: int = 0
    logprobs: int | None = None
    prompt_logprobs: int | None = None
    detokenize: bool = True
    skip_special_tokens: bool = True
    spaces_between_special_tokens: bool = True
    include_stop_str_in_output: bool = False
    logit_bias: dict[int, float] | None = None
    allowed_token_ids: list[int] | None = None
    truncate_prompt_tokens: int | None = None
    output_kind: RequestOutputKind = RequestOutputKind.CUMULATIVE
    extra_args: dict[str, Any] | None = None

    # Derived in __post_init__ and update_from_generation_config; not arguments.
    # Characters of output text held back while a stop string may still be matching.
    output_text_buffer_length: int = field(default=0, init=False, compare=False)
    _eos_token_id: int | None = field(default=None, init=False, repr=False, compare=False)
    _all_stop_token_ids: set[int] = field(
        default_factory=set, init=False, repr=False, compare=False
    )
    _bad_words_token_ids: list[list[int]] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        self.n = _int("n", self.n)
        self.best_of = _int("best_of", self.best_of, optional=True)
        self.presence_penalty = _float("presence_penalty", self.presence_penalty)
        self.frequency_penalty = _float("frequency_penalty", self.frequency_penalty)
        self.repetition_penalty = _float("repetition_penalty", self.repetition_penalty)
        self.temperature = _float("temperature", self.temperature)
        self.top_p = _float("top_p", self.top_p)
        self.top_k = _int("top_k", self.top_k)
        self.min_p = _float("min_p", self.min_p)
        self.seed = _int("seed", self.seed, optional=True)
        self.stop = [] if self.stop is None else _str_list("stop", self.stop, dedupe=False)
        self.stop_token_ids = (
            []
            if self.stop_token_ids is None
            else list(dict.fromkeys(_int_list("stop_token_ids", self.stop_token_ids)))
        )
        self.bad_words = (
            [] if self.bad_words is None else _str_list("bad_words", self.bad_words, dedupe=True)
        )
        self.ignore_eos = _bool("ignore_eos", self.ignore_eos)
        self.max_tokens = _int("max_tokens", self.max_tokens, optional=True)
        self.min_tokens = _int("min_tokens", self.min_tokens)
        self.logprobs = _logprobs_count("logprobs", self.logprobs)
        self.prompt_logprobs = _logprobs_count("prompt_logprobs", self.prompt_logprobs)
        self.detokenize = _bool("detokenize", self.detokenize)
        self.skip_special_tokens = _bool("skip_special_tokens", self.skip_special_tokens)
        self.spaces_between_special_tokens = _bool(
            "spaces_between_special_tokens", self.spaces_between_special_tokens
        )
        self.include_stop_str_in_output = _bool(
            "include_stop_str_in_output", self.include_stop_str_in_output
        )
        if self.logit_bias is not None:
            self.logit_bias = self._checked_logit_bias(self.logit_bias)
        if self.allowed_token_ids is not None:
            self.allowed_token_ids = _int_list("allowed_token_ids", self.allowed_token_ids)
        self.truncate_prompt_tokens = _int(
            "truncate_prompt_tokens", self.truncate_prompt_tokens, optional=True
        )
        if not isinstance(self.output_kind, RequestOutputKind):
            raise SamplingParamsTypeError(
                f"output_kind must be a RequestOutputKind, got {self.output_kind!r}"
            )
        if self.extra_args is not None and not isinstance(self.extra_args, dict):
            raise SamplingParamsTypeError(
                f"extra_args must be a dict or None, got {type(self.extra_args).__name__}"
            )

        if self.seed == -1:
            self.seed = None
        if self.top_k == -1:
            self.top_k = 0
        if 0.0 < self.temperature < MIN_TEMPERATURE:
            warnings.warn(
                f"temperature {self.temperature} is below {MIN_TEMPERATURE}, which may give "
                f"inf or nan logits; raised to {MIN_TEMPERATURE}.",
                stacklevel=3,
            )
            self.temperature = MIN_TEMPERATURE

        self._verify_args()

        if self.stop and not self.include_stop_str_in_output:
            self.output_text_buffer_length = max(len(s) for s in self.stop) - 1
        if self.is_greedy:
            # Greedy ignores the truncation knobs: reset them so the engine sees one case.
            self.top_p = 1.0
            self.top_k = 0
            self.min_p = 0.0
            self._verify_greedy_sampling()
        self._all_stop_token_ids = set(self.stop_token_ids)

    @staticmethod
    def _checked_logit_bias(logit_bias: Any) -> dict[int, float]:
        if not isinstance(logit_bias, dict):
            raise SamplingParamsTypeError(
                f"logit_bias must be a dict of token id to bias, got "
                f"{type(logit_bias).__name__}"
            )
        checked: dict[int, float] = {}
        for token, bias in logit_bias.items():
            try:
                token_id = int(token)
            except (TypeError, ValueError):
                raise SamplingParamsTypeError(
                    f"logit_bias keys must be token ids, got {token!r}"
                ) from None
            if token_id < 0:
                raise ValueError(f"logit_bias keys must be token ids >= 0, got {token_id}.")
            checked[token_id] = _float(f"logit_bias[{token_id}]", bias)
        return checked

    def _verify_args(self) -> None:
        if self.n < 1:
            raise ValueError(f"n must be at least 1, got {self.n}.")
        if self.best_of is not None and self.best_of < self.n:
            raise ValueError(
                f"best_of must be greater than or equal to n (n={self.n}), got {self.best_of}."
            )
        if not -2.0 <= self.presence_penalty <= 2.0:
            raise ValueError(f"presence_penalty must be in [-2, 2], got {self.presence_penalty}.")
        if not -2.0 <= self.frequency_penalty <= 2.0:
            raise ValueError(
                f"frequency_penalty must be in [-2, 2], got {self.frequency_penalty}."
            )
        if self.repetition_penalty <= 0.0:
            raise ValueError(
                f"repetition_penalty must be greater than zero, got {self.repetition_penalty}."
            )
        if self.temperature < 0.0:
            raise ValueError(f"temperature must be non-negative (>= 0), got {self.temperature}.")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}.")
        if self.top_k < 0:
            raise ValueError(f"top_k must be 0 or -1 (disabled), or at least 1, got {self.top_k}.")
        if not 0.0 <= self.min_p <= 1.0:
            raise ValueError(f"min_p must be in [0, 1], got {self.min_p}.")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {self.max_tokens}.")
        if self.min_tokens < 0:
            raise ValueError(
                f"min_tokens must be greater than or equal to 0, got {self.min_tokens}."
            )
        if self.max_tokens is not None and self.min_tokens > self.max_tokens:
            raise ValueError(
                f"min_tokens must be less than or equal to max_tokens={self.max_tokens}, "
                f"got {self.min_tokens}."
            )
        negative = [t for t in self.stop_token_ids if t < 0]
        if negative:
            raise ValueError(f"stop_token_ids must be token ids >= 0, got {self.stop_token_ids}.")
        if self.stop and not self.detokenize:
            raise ValueError(
                "stop strings are only supported when detokenize is True; "
                f"got stop={self.stop} with detokenize=False."
            )
        if self.allowed_token_ids is not None:
            if not self.allowed_token_ids:
                raise ValueError("allowed_token_ids must not be empty (None allows all tokens).")
            if any(t < 0 for t in self.allowed_token_ids):
                raise ValueError(
                    f"allowed_token_ids must be token ids >= 0, got {self.allowed_token_ids}."
                )
        if self.truncate_prompt_tokens is not None and (
            self.truncate_prompt_tokens < 1 and self.truncate_prompt_tokens != -1
        ):
            raise ValueError(
                "truncate_prompt_tokens must be at least 1, or -1 for max_model_len, got "
                f"{self.truncate_prompt_tokens}."
            )

    def _verify_greedy_sampling(self) -> None:
        if self.n > 1:
            raise ValueError(f"n must be 1 when using greedy sampling, got {self.n}.")
        if self.best_of is not None and self.best_of > 1:
            raise ValueError(
                f"best_of must be 1 when using greedy sampling, got {self.best_of}."
            )

    @staticmethod
    def from_optional(
        n: int | None = 1,
        best_of: int | None = None,
        presence_penalty: float | None = 0.0,
        frequency_penalty: float | None = 0.0,
        repetition_penalty: float | None = 1.0,
        temperature: float | None = 1.0,
        top_p: float | None = 1.0,
        top_k: int = 0,
        min_p: float = 0.0,
        seed: int | None = None,
        stop: str | list[str] | None = None,
        stop_token_ids: list[int] | None = None,
        bad_words: list[str] | None = None,
        ignore_eos: bool = False,
        max_tokens: int | None = 16,
        min_tokens: int = 0,
        logprobs: int | None = None,
        prompt_logprobs: int | None = None,
        detokenize: bool = True,
        skip_special_tokens: bool = True,
        spaces_between_special_tokens: bool = True,
        include_stop_str_in_output: bool = False,
        logit_bias: dict[int, float] | dict[str, float] | None = None,
        allowed_token_ids: list[int] | None = None,
        truncate_prompt_tokens: int | None = None,
        output_kind: RequestOutputKind = RequestOutputKind.CUMULATIVE,
        extra_args: dict[str, Any] | None = None,
    ) -> SamplingParams:
        """SamplingParams from request fields that may be None (an OpenAI-style request).

        None stands for the default of n, the penalties, temperature and top_p. logit_bias
        keys may be strings of ints; biases are clipped to [-100, 100], as vLLM does.
        """
        if logit_bias is not None:
            if not isinstance(logit_bias, dict):
                raise SamplingParamsTypeError(
                    f"logit_bias must be a dict of token id to bias, got "
                    f"{type(logit_bias).__name__}"
                )
            logit_bias = {
                token: min(100.0, max(-100.0, _float(f"logit_bias[{token}]", bias)))
                for token, bias in logit_bias.items()
            }
        return SamplingParams(
            n=1 if n is None else n,
            best_of=best_of,
            presence_penalty=0.0 if presence_penalty is None else presence_penalty,
            frequency_penalty=0.0 if frequency_penalty is None else frequency_penalty,
            repetition_penalty=1.0 if repetition_penalty is None else repetition_penalty,
            temperature=1.0 if temperature is None else temperature,
            top_p=1.0 if top_p is None else top_p,
            top_k=top_k,
            min_p=min_p,
            seed=seed,
            stop=stop,
            stop_token_ids=stop_token_ids,
            bad_words=bad_words,
            ignore_eos=ignore_eos,
            max_tokens=max_tokens,
            min_tokens=min_tokens,
            logprobs=logprobs,
            prompt_logprobs=prompt_logprobs,
            detokenize=detokenize,
            skip_special_tokens=skip_special_tokens,
            spaces_between_special_tokens=spaces_between_special_tokens,
            include_stop_str_in_output=include_stop_str_in_output,
            logit_bias=logit_bias,
            allowed_token_ids=allowed_token_ids,
            truncate_prompt_tokens=truncate_prompt_tokens,
            output_kind=output_kind,
            extra_args=extra_args,
        )

    @property
    def is_greedy(self) -> bool:
        """True when decoding picks the most likely token (temperature 0)."""
        return self.temperature < SAMPLING_EPS

    @property
    def eos_token_id(self) -> int | None:
        """The EOS id that ends generation (None with ignore_eos, or before the engine sets it)."""
        return self._eos_token_id

    @property
    def all_stop_token_ids(self) -> set[int]:
        """stop_token_ids plus every EOS id: the ids min_tokens holds back."""
        return self._all_stop_token_ids

    def update_from_generation_config(
        self, generation_config: dict[str, Any], eos_token_id: int | None = None
    ) -> None:
        """Adds the model's EOS ids, as vLLM does when a request is added.

        eos_token_id (the tokenizer's) becomes `eos_token_id` unless ignore_eos. Other EOS
        ids from generation_config["eos_token_id"] (an int or a list) join stop_token_ids
        unless ignore_eos; all of them join `all_stop_token_ids` regardless.
        """
        if not self.ignore_eos:
            self._eos_token_id = eos_token_id
        if eos_token_id is not None:
            self._all_stop_token_ids.add(eos_token_id)
        eos_ids = generation_config.get("eos_token_id")
        if eos_ids is None:
            return
        extra = {eos_ids} if isinstance(eos_ids, int) else set(eos_ids)
        extra.discard(eos_token_id)
        if not extra:
            return
        self._all_stop_token_ids.update(extra)
        if not self.ignore_eos:
            self.stop_token_ids = self.stop_token_ids + sorted(
                extra.difference(self.stop_token_ids)
            )

    def update_from_tokenizer(self, tokenizer: Any) -> None:
        """Tokenizes bad_words as vLLM does, into `bad_words_token_ids`.

        Each word (leading whitespace stripped) is encoded without special tokens as is,
        and again after one space, so that it is banned at the start of the text and in the
        middle; the spaced form is kept only when it is a different token sequence of the
        same length. Raises ValueError naming the ids outside the tokenizer's vocabulary.
        """
        if not self.bad_words:
            return
        sequences: list[list[int]] = []
        for word in self.bad_words:
            plain = list(tokenizer.encode(word.lstrip(), add_special_tokens=False))
            spaced = list(tokenizer.encode(" " + word.lstrip(), add_special_tokens=False))
            if plain:
                sequences.append(plain)
            if spaced and (not plain or (spaced[0] != plain[0] and len(spaced) == len(plain))):
                sequences.append(spaced)
        max_token_id = max(tokenizer.get_vocab().values(), default=-1)
        invalid = [t for seq in sequences for t in seq if t < 0 or t > max_token_id]
        if invalid:
            raise ValueError(
                f"The model vocabulary size is {max_token_id + 1}, but the following tokens "
                f"were specified as bad: {invalid}. All token id values should be integers "
                f"satisfying: 0 <= token_id <= {max_token_id}."
            )
        self._bad_words_token_ids = sequences

    @property
    def bad_words_token_ids(self) -> list[list[int]] | None:
        """bad_words as token sequences, once update_from_tokenizer has run (else None)."""
        return self._bad_words_token_ids

    def clone(self) -> SamplingParams:
        """A deep copy: changing the copy (or its lists) leaves this one alone."""
        return copy.deepcopy(self)

    def __repr__(self) -> str:
        return (
            f"SamplingParams(n={self.n}, "
            f"presence_penalty={self.presence_penalty}, "
            f"frequency_penalty={self.frequency_penalty}, "
            f"repetition_penalty={self.repetition_penalty}, "
            f"temperature={self.temperature}, "
            f"top_p={self.top_p}, "
            f"top_k={self.top_k}, "
            f"min_p={self.min_p}, "
            f"seed={self.seed}, "
            f"stop={self.stop}, "
            f"stop_token_ids={self.stop_token_ids}, "
            f"bad_words={self.bad_words}, "
            f"include_stop_str_in_output={self.include_stop_str_in_output}, "
            f"ignore_eos={self.ignore_eos}, "
            f"max_tokens={self.max_tokens}, "
            f"min_tokens={self.min_tokens}, "
            f"logprobs={self.logprobs}, "
            f"prompt_logprobs={self.prompt_logprobs}, "
            f"skip_special_tokens={self.skip_special_tokens}, "
            f"spaces_between_special_tokens={self.spaces_between_special_tokens}, "
            f"truncate_prompt_tokens={self.truncate_prompt_tokens}, "
            f"extra_args={self.extra_args})"
        )


@dataclass
class BeamSearchParams:
    """Beam search parameters for `LLM.beam_search` (vLLM's `BeamSearchParams`).

    beam_width: beams kept per prompt, >= 1 (also the number of sequences returned).
    max_tokens: tokens generated per beam, >= 1.
    ignore_eos: keep extending a beam past EOS instead of finishing it.
    temperature: 0 ranks candidates only by logprob; above 0 each step also samples one
        token per beam, which joins that beam's candidates (as vLLM).
    length_penalty: a finished sequence scores cum_logprob / len ** length_penalty, where
        len counts the prompt and the generated tokens, less a final EOS (vLLM's rule).
    include_stop_str_in_output: accepted for vLLM compatibility; beam search stops only on
        EOS, so it changes nothing.
    Bad values raise ValueError when beam_search is called.
    """

    beam_width: int
    max_tokens: int
    ignore_eos: bool = False
    temperature: float = 0.0
    length_penalty: float = 1.0
    include_stop_str_in_output: bool = False
