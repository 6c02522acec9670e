"""Output types: vLLM's fields, finished(), streaming merge and repr."""

from __future__ import annotations

import dataclasses

from octavo.outputs import CompletionOutput, Logprob, RequestOutput


def _completion(index=0, text="", token_ids=(), logprobs=None, finish_reason=None):
    return CompletionOutput(
        index=index,
        text=text,
        token_ids=list(token_ids),
        cumulative_logprob=None,
        logprobs=logprobs,
        finish_reason=finish_reason,
    )


def test_logprob_defaults():
    assert Logprob(-0.5) == Logprob(logprob=-0.5, rank=None, decoded_token=None)


def test_field_names_follow_vllm():
    assert [f.name for f in dataclasses.fields(CompletionOutput)] == [
        "index", "text", "token_ids", "cumulative_logprob", "logprobs", "finish_reason",
        "stop_reason", "lora_request", "kv_transfer_params",
    ]
    init = [f.name for f in dataclasses.fields(RequestOutput) if f.init]
    assert init == [
        "request_id", "prompt", "prompt_token_ids", "prompt_logprobs", "outputs", "finished",
        "metrics", "lora_request", "encoder_prompt", "encoder_prompt_token_ids",
        "num_cached_tokens",
    ]


def test_completion_is_finished_once_it_has_a_reason():
    assert not _completion().finished()
    assert _completion(finish_reason="length").finished()


def test_add_aggregates_deltas_into_one_cumulative_output():
    logprobs = [{10: Logprob(-1.0)}, {11: Logprob(-2.0)}]
    first_part = _completion(0, "ab", [10, 11], logprobs)
    first = RequestOutput("7", "hi", [1, 5], None, [first_part], False)
    last = _completion(0, "c", [12], [{12: Logprob(-3.0)}], "stop")
    delta = RequestOutput("7", "hi", [1, 5], None, [last], True)
    first.add(delta, aggregate=True)
    (out,) = first.outputs
    assert out.text == "abc"
    assert out.token_ids == [10, 11, 12]
    assert [next(iter(d)) for d in out.logprobs] == [10, 11, 12]
    assert out.finish_reason == "stop"
    assert first.finished


def test_add_without_aggregate_replaces_and_appends_new_indices():
    first = RequestOutput("1", None, [1], None, [_completion(0, "a", [4])], False)
    newer = [_completion(0, "ab", [4, 5]), _completion(1, "z", [9])]
    first.add(RequestOutput("1", None, [1], None, newer, False), aggregate=False)
    assert [o.text for o in first.outputs] == ["ab", "z"]
    assert not first.finished


def test_kv_transfer_params_collects_from_outputs():
    outputs = [_completion(0), _completion(1)]
    assert RequestOutput("x", None, [], None, outputs, True).kv_transfer_params is None
    outputs[1].kv_transfer_params = {"k": 1}
    assert RequestOutput("x", None, [], None, outputs, True).kv_transfer_params == {"k": 1}


def test_repr_shows_prompt_and_outputs():
    outputs = [_completion(0, "x", [7], None, "length")]
    text = repr(RequestOutput("3", "Hello", [1, 2], None, outputs, True))
    assert text.startswith("RequestOutput(request_id=3, prompt='Hello', prompt_token_ids=[1, 2]")
    assert "CompletionOutput(index=0, text='x', token_ids=[7]" in text
    assert "finish_reason=length" in text
    assert "finished=True" in text
