"""Beam search as vLLM's `LLM.beam_search` runs it, and what it returns.

vLLM drives the engine one token per step: every live beam is submitted as a prompt (its
prompt plus generated tokens) with `logprobs=2 * beam_width, max_tokens=1`; the returned
logprobs dict (the sampled token plus the top 2 * beam_width, raw log-softmax) lists the
beam's candidates. Candidates ending in EOS are finished (unless ignore_eos); the others,
sorted by `get_beam_search_score`, give the next beam_width beams. After max_tokens steps
the finished and the live beams are sorted together and the best beam_width returned.

How this differs from HF transformers' beam search (`generate(num_beams=...)`), by design
of vLLM's algorithm rather than by accident:
- vLLM finishes every EOS candidate among each beam's top 2 * beam_width; HF only those
  ranked within the top num_beams of all of a step's candidates, and HF keeps at most
  num_beams finished hypotheses.
- vLLM's length penalty divides by the whole sequence (prompt included, a final EOS not);
  HF's by the generated tokens (a final EOS included).
- vLLM always runs max_tokens steps; HF stops early once no live beam can beat the finished
  ones (early_stopping).
Without EOS (ignore_eos here, no eos_token_id in HF) all beams have one length at every
step, none of the above applies, and the two return the same sequences in the same order.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from octavo.outputs import Logprob, RequestOutput
from octavo.sampling_params import BeamSearchParams, SamplingParams


@dataclass
class BeamSearchSequence:
    """One beam. tokens include the prompt; text (set on return) decodes all of them.

    logprobs: per generated position, the logprobs dict that step returned for the beam's
    parent (its candidates). cum_logprob: sum of the generated tokens' logprobs.
    finish_reason: "stop" (ended in EOS) or "length" (max_tokens or max_model_len), set on
    return; stop_reason: None (beam search has no stop strings or stop ids).
    """

    tokens: list[int]
    logprobs: list[dict[int, Logprob]]
    lora_request: Any | None = None
    cum_logprob: float = 0.0
    text: str | None = None
    finish_reason: str | None = None
    stop_reason: int | str | None = None


@dataclass
class BeamSearchOutput:
    """The best beam_width sequences of one prompt, best first."""

    sequences: list[BeamSearchSequence]


@dataclass
class BeamSearchInstance:
    """One prompt's search state: the live beams and the finished ones."""

    beams: list[BeamSearchSequence]
    completed: list[BeamSearchSequence] = field(default_factory=list)

    @classmethod
    def from_prompt(cls, prompt_token_ids: list[int]) -> BeamSearchInstance:
        return cls(beams=[BeamSearchSequence(tokens=list(prompt_token_ids), logprobs=[])])


def get_beam_search_score(
    tokens: list[int], cumulative_logprob: float, eos_token_id: int | None, length_penalty: float = 1.0
) -> float:
    """cumulative_logprob / seq_len ** length_penalty, seq_len counting the prompt and not a
    final EOS (vLLM's score, adapted there from HF's)."""
    seq_len = len(tokens)
    if eos_token_id is not None and tokens and tokens[-1] == eos_token_id:
        seq_len -= 1
    return cumulative_logprob / (seq_len**length_penalty)


def create_sort_beams_key_function(eos_token_id: int | None, length_penalty: float):
    """A sort key giving each beam its get_beam_search_score."""

    def sort_beams_key(beam: BeamSearchSequence) -> float:
        return get_beam_search_score(beam.tokens, beam.cum_logprob, eos_token_id, length_penalty)

    return sort_beams_key


def check_beam_search_params(params: BeamSearchParams, max_logprobs: int,
                             concurrency_limit: int | None = None) -> None:
    """Raises TypeError / ValueError naming the bad value, before any work starts."""
    if not isinstance(params, BeamSearchParams):
        raise TypeError(f"params must be BeamSearchParams, got {type(params).__name__}")
    for name in ("beam_width", "max_tokens"):
        value = getattr(params, name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {value!r}")
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}.")
    if 2 * params.beam_width > max_logprobs:
        raise ValueError(
            f"Requested sample logprobs of {2 * params.beam_width}, which is greater than max allowed: "
            f"{max_logprobs} (beam search asks for 2 * beam_width; raise max_logprobs or lower "
            f"beam_width={params.beam_width})")
    if not params.temperature >= 0.0:
        raise ValueError(f"temperature must be non-negative (>= 0), got {params.temperature}.")
    if not math.isfinite(params.length_penalty):
        raise ValueError(f"length_penalty must be finite, got {params.length_penalty}.")
    if concurrency_limit is not None and (isinstance(concurrency_limit, bool) or
                                          not isinstance(concurrency_limit, int) or concurrency_limit < 1):
        raise ValueError(f"concurrency_limit must be a positive int or None, got {concurrency_limit!r}")


GenerateStep = Callable[[list[list[int]], SamplingParams], list[RequestOutput]]


def run_beam_search(prompt_token_ids: list[list[int]], params: BeamSearchParams, *, generate_step: GenerateStep,
                    eos_token_id: int | None, max_model_len: int, decode: Callable[[list[int]], str],
                    use_tqdm: bool = False, concurrency_limit: int | None = None) -> list[BeamSearchOutput]:
    """vLLM's beam search (module doc) over already-checked prompts.

    generate_step(token_lists, sampling_params) runs one engine pass over every live beam
    and returns a RequestOutput per beam with one generated position's logprobs.
    """
    sort_key = create_sort_beams_key_function(eos_token_id, params.length_penalty)
    # vLLM, after HF, ranks twice the width so that EOS candidates never starve the live beams.
    step_params = SamplingParams(logprobs=2 * params.beam_width, max_tokens=1, temperature=params.temperature)
    instances = [BeamSearchInstance.from_prompt(ids) for ids in prompt_token_ids]
    limit = concurrency_limit or max(1, len(instances))
    for start in range(0, len(instances), limit):
        batch = instances[start:start + limit]
        steps: Any = range(params.max_tokens)
        if use_tqdm and concurrency_limit is None:  # as vLLM: no bar with a concurrency limit
            from tqdm.auto import tqdm

            steps = tqdm(steps, desc="Beam search", unit="token", unit_scale=False)
        for _ in steps:
            if not _extend_beams(batch, params, step_params, generate_step, eos_token_id, max_model_len, sort_key):
                break
    outputs = []
    for instance in instances:
        best = sorted(instance.completed + instance.beams, key=sort_key, reverse=True)[:params.beam_width]
        for beam in best:
            beam.text = decode(beam.tokens)
            ended_in_eos = not params.ignore_eos and eos_token_id is not None and beam.tokens[-1] == eos_token_id
            beam.finish_reason = "stop" if ended_in_eos else "length"
        outputs.append(BeamSearchOutput(sequences=best))
    return outputs


def _extend_beams(instances: list[BeamSearchInstance], params: BeamSearchParams, step_params: SamplingParams,
                  generate_step: GenerateStep, eos_token_id: int | None, max_model_len: int, sort_key) -> bool:
    """Extends every live beam of `instances` by one token; False when none was live."""
    for instance in instances:
        # A beam as long as the model allows cannot grow: it is finished, by length. (vLLM
        # drops such a beam, finished or not; keeping it returns what was found.)
        instance.completed.extend(b for b in instance.beams if len(b.tokens) >= max_model_len)
        instance.beams = [b for b in instance.beams if len(b.tokens) < max_model_len]
    live = [(instance, beam) for instance in instances for beam in instance.beams]
    if not live:
        return False
    results = generate_step([beam.tokens for _, beam in live], step_params)
    candidates: dict[int, list[BeamSearchSequence]] = {id(instance): [] for instance in instances}
    for (instance, beam), result in zip(live, results):
        step_logprobs = result.outputs[0].logprobs[0]
        for token, logprob in step_logprobs.items():
            child = BeamSearchSequence(tokens=beam.tokens + [token], logprobs=beam.logprobs + [step_logprobs],
                                       lora_request=beam.lora_request, cum_logprob=beam.cum_logprob + logprob.logprob)
            if token == eos_token_id and not params.ignore_eos:
                instance.completed.append(child)
            else:
                candidates[id(instance)].append(child)
    for instance in instances:
        instance.beams = sorted(candidates[id(instance)], key=sort_key, reverse=True)[:params.beam_width]
    return True
