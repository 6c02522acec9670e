"""What `LLM.generate` returns, with vLLM's class and field names.

One RequestOutput per prompt; it holds one CompletionOutput per sampled sequence (n of
them). Logprobs, when asked for, come as one {token id: Logprob} dict per position.
"""

from __future__ import annotations

from collections.abc import MutableSequence, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Logprob:
    """The log-probability of one token at one position.

    logprob: natural log of the probability under the model's raw distribution.
    rank: 1-based rank of the token in that distribution (1 = most likely).
    decoded_token: the token's text, when detokenizing.
    """

    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


# Per generated position: the sampled token and the top-N tokens.
SampleLogprobs = list[dict[int, Logprob]]
# Per prompt position; the first entry is None (nothing predicts the first token).
PromptLogprobs = list[dict[int, Logprob] | None]


@dataclass
class CompletionOutput:
    """One generated sequence of a request.

    index: position of this sequence among the request's n.
    text: the generated text ('' when detokenize=False).
    token_ids: the generated token ids.
    cumulative_logprob: sum of the sampled tokens' logprobs (None unless logprobs requested).
    logprobs: per-position logprobs, if requested.
    finish_reason: "stop" (EOS, stop string or stop token), "length" (max_tokens or
        max_model_len) or "abort"; None while unfinished.
    stop_reason: the stop string or stop token id that ended it; None for EOS and
        other reasons.
    """

    index: int
    text: str
    token_ids: Sequence[int]
    cumulative_logprob: float | None
    logprobs: SampleLogprobs | None
    finish_reason: str | None = None
    stop_reason: int | str | None = None
    lora_request: Any | None = None
    kv_transfer_params: dict[str, Any] | None = None

    def finished(self) -> bool:
        return self.finish_reason is not None

    def __repr__(self) -> str:
        return (
            f"CompletionOutput(index={self.index}, "
            f"text={self.text!r}, "
            f"token_ids={self.token_ids}, "
            f"cumulative_logprob={self.cumulative_logprob}, "
            f"logprobs={self.logprobs}, "
            f"finish_reason={self.finish_reason}, "
            f"stop_reason={self.stop_reason})"
        )


@dataclass
class RequestOutput:
    """The result of one prompt.

    request_id: the id the request was given.
    prompt: the prompt text (None when the prompt was given as token ids).
    prompt_token_ids: the prompt's token ids.
    prompt_logprobs: per prompt position, if requested.
    outputs: one CompletionOutput per sequence.
    finished: whether the whole request is done.
    metrics: timing of the request, when recorded.
    num_cached_tokens: prompt tokens found in the prefix cache.
    encoder_prompt, encoder_prompt_token_ids: None (decoder-only models).
    """

    request_id: str
    prompt: str | None
    prompt_token_ids: list[int] | None
    prompt_logprobs: PromptLogprobs | None
    outputs: list[CompletionOutput]
    finished: bool
    metrics: Any | None = None
    lora_request: Any | None = None
    encoder_prompt: str | None = None
    encoder_prompt_token_ids: list[int] | None = None
    num_cached_tokens: int | None = None
    kv_transfer_params_list: list[dict[str, Any]] = field(
        default_factory=list, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        self.kv_transfer_params_list = [
            o.kv_transfer_params for o in self.outputs if o.kv_transfer_params
        ]

    @property
    def kv_transfer_params(self) -> dict[str, Any] | list[dict[str, Any]] | None:
        """The outputs' KV-transfer parameters: one dict, a list for several, or None."""
        if len(self.kv_transfer_params_list) == 1:
            return self.kv_transfer_params_list[0]
        return self.kv_transfer_params_list or None

    def add(self, next_output: RequestOutput, aggregate: bool) -> None:
        """Merges a later output of the same request into this one (streaming).

        aggregate=True appends the new text, token ids and logprobs to the matching
        completion (a DELTA stream made cumulative); False replaces it. Completions with a
        new index are appended.
        """
        self.finished |= next_output.finished
        for completion in next_output.outputs:
            for i, mine in enumerate(self.outputs):
                if mine.index != completion.index:
                    continue
                if aggregate:
                    mine.text += completion.text
                    if not isinstance(mine.token_ids, MutableSequence):
                        mine.token_ids = list(mine.token_ids)
                    mine.token_ids.extend(completion.token_ids)
                    if completion.logprobs:
                        if mine.logprobs is None:
                            mine.logprobs = []
                        mine.logprobs.extend(completion.logprobs)
                    mine.cumulative_logprob = completion.cumulative_logprob
                    mine.finish_reason = completion.finish_reason
                    mine.stop_reason = completion.stop_reason
                    mine.kv_transfer_params = completion.kv_transfer_params
                else:
                    self.outputs[i] = completion
                break
            else:
                self.outputs.append(completion)
        self.kv_transfer_params_list = [
            o.kv_transfer_params for o in self.outputs if o.kv_transfer_params
        ]

    def __repr__(self) -> str:
        return (
            f"RequestOutput(request_id={self.request_id}, "
            f"prompt={self.prompt!r}, "
            f"prompt_token_ids={self.prompt_token_ids}, "
            f"encoder_prompt={self.encoder_prompt!r}, "
            f"encoder_prompt_token_ids={self.encoder_prompt_token_ids}, "
            f"prompt_logprobs={self.prompt_logprobs}, "
            f"outputs={self.outputs}, "
            f"finished={self.finished}, "
            f"metrics={self.metrics}, "
            f"lora_request={self.lora_request}, "
            f"num_cached_tokens={self.num_cached_tokens})"
        )
