"""SamplingParams: vLLM's defaults, its validation messages, and its normalisations."""

from __future__ import annotations

import dataclasses
import warnings

import pytest

from octavo.sampling_params import RequestOutputKind, SamplingParams

# vLLM's defaults, after its __post_init__ (stop, stop_token_ids and bad_words become []).
VLLM_DEFAULTS = {
    "n": 1,
    "best_of": None,
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
    "repetition_penalty": 1.0,
    "temperature": 1.0,
    "top_p": 1.0,
    "top_k": 0,
    "min_p": 0.0,
    "seed": None,
    "stop": [],
    "stop_token_ids": [],
    "bad_words": [],
    "ignore_eos": False,
    "max_tokens": 16,
    "min_tokens": 0,
    "logprobs": None,
    "prompt_logprobs": None,
    "detokenize": True,
    "skip_special_tokens": True,
    "spaces_between_special_tokens": True,
    "include_stop_str_in_output": False,
    "logit_bias": None,
    "allowed_token_ids": None,
    "truncate_prompt_tokens": None,
    "output_kind": RequestOutputKind.CUMULATIVE,
    "extra_args": None,
}


def test_defaults_equal_vllm():
    params = SamplingParams()
    for name, expected in VLLM_DEFAULTS.items():
        assert getattr(params, name) == expected, name
    assert not params.is_greedy
    assert params.output_text_buffer_length == 0


def test_constructor_fields_in_vllm_order():
    init_fields = [f.name for f in dataclasses.fields(SamplingParams) if f.init]
    assert init_fields == list(VLLM_DEFAULTS)


@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [
        ("n", 0, "at least 1"),
        ("n", -3, "at least 1"),
        ("presence_penalty", 2.5, "[-2, 2]"),
        ("presence_penalty", -2.01, "[-2, 2]"),
        ("frequency_penalty", -3.0, "[-2, 2]"),
        ("frequency_penalty", 2.1, "[-2, 2]"),
        ("repetition_penalty", 0.0, "greater than zero"),
        ("repetition_penalty", -1.0, "greater than zero"),
        ("temperature", -0.5, ">= 0"),
        ("top_p", 0.0, "(0, 1]"),
        ("top_p", 1.5, "(0, 1]"),
        ("top_p", -0.1, "(0, 1]"),
        ("top_k", -2, "at least 1"),
        ("min_p", -0.1, "[0, 1]"),
        ("min_p", 1.1, "[0, 1]"),
        ("max_tokens", 0, "at least 1"),
        ("max_tokens", -5, "at least 1"),
        ("min_tokens", -1, "greater than or equal to 0"),
        ("logprobs", -2, "non-negative"),
        ("prompt_logprobs", -5, "non-negative"),
        ("truncate_prompt_tokens", 0, "at least 1"),
        ("truncate_prompt_tokens", -2, "at least 1"),
    ],
)
def test_out_of_range_value_raises_value_error_naming_field_value_and_range(field, value, allowed):
    with pytest.raises(ValueError) as excinfo:
        SamplingParams(**{field: value})
    message = str(excinfo.value)
    assert field in message
    assert str(value) in message
    assert allowed in message


@pytest.mark.parametrize(
    "field", ["presence_penalty", "frequency_penalty", "repetition_penalty", "temperature",
              "top_p", "min_p"]
)
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_float_raises_value_error(field, value):
    with pytest.raises(ValueError, match=field):
        SamplingParams(**{field: value})


def test_min_tokens_above_max_tokens_raises():
    with pytest.raises(ValueError, match=r"min_tokens.*max_tokens=4.*got 5"):
        SamplingParams(max_tokens=4, min_tokens=5)
    assert SamplingParams(max_tokens=4, min_tokens=4).min_tokens == 4
    assert SamplingParams(max_tokens=None, min_tokens=1000).max_tokens is None


def test_best_of_below_n_raises():
    with pytest.raises(ValueError, match="best_of"):
        SamplingParams(n=3, best_of=2)
    assert SamplingParams(n=2, best_of=4).best_of == 4


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("n", 1.5),
        ("n", "2"),
        ("best_of", 2.0),
        ("top_k", 2.0),
        ("max_tokens", 8.0),
        ("min_tokens", "1"),
        ("seed", 1.5),
        ("seed", "42"),
        ("temperature", "0.5"),
        ("top_p", None),
        ("logprobs", 1.0),
        ("stop", 5),
        ("stop", ["ok", 3]),
        ("stop_token_ids", ["a"]),
        ("stop_token_ids", [1.0]),
        ("stop_token_ids", 7),
        ("bad_words", [None]),
        ("ignore_eos", "yes"),
        ("detokenize", 1),
        ("logit_bias", [1, 2]),
        ("logit_bias", {"x": 1.0}),
        ("allowed_token_ids", [0.5]),
        ("output_kind", 0),
        ("extra_args", ["a"]),
    ],
)
def test_wrong_type_raises_type_error_that_is_also_value_error(field, value):
    with pytest.raises(TypeError, match=field):
        SamplingParams(**{field: value})
    with pytest.raises(ValueError, match=field):
        SamplingParams(**{field: value})


def test_bool_is_not_accepted_as_a_count():
    with pytest.raises(TypeError, match="n"):
        SamplingParams(n=True)
    with pytest.raises(TypeError, match="max_tokens"):
        SamplingParams(max_tokens=False)


def test_empty_stop_string_and_bad_word_raise():
    with pytest.raises(ValueError, match="stop"):
        SamplingParams(stop=["a", ""])
    with pytest.raises(ValueError, match="bad_words"):
        SamplingParams(bad_words=[""])


def test_stop_strings_need_detokenize():
    with pytest.raises(ValueError, match="detokenize"):
        SamplingParams(stop=["x"], detokenize=False)


def test_negative_or_empty_token_id_lists_raise():
    with pytest.raises(ValueError, match="stop_token_ids"):
        SamplingParams(stop_token_ids=[3, -1])
    with pytest.raises(ValueError, match="allowed_token_ids"):
        SamplingParams(allowed_token_ids=[])
    with pytest.raises(ValueError, match="allowed_token_ids"):
        SamplingParams(allowed_token_ids=[-4])
    with pytest.raises(ValueError, match="logit_bias"):
        SamplingParams(logit_bias={-1: 1.0})


def test_zero_temperature_is_greedy_and_resets_truncation():
    params = SamplingParams(temperature=0.0, top_p=0.5, top_k=7, min_p=0.3)
    assert params.is_greedy
    assert (params.top_p, params.top_k, params.min_p) == (1.0, 0, 0.0)


def test_greedy_rejects_several_sequences():
    with pytest.raises(ValueError, match=r"n must be 1 when using greedy sampling, got 2"):
        SamplingParams(temperature=0.0, n=2)
    with pytest.raises(ValueError, match="best_of"):
        SamplingParams(temperature=0.0, best_of=2)


def test_tiny_positive_temperature_is_raised_to_min_with_warning():
    # vLLM: 0 < temperature < 0.01 becomes 0.01 (not greedy); only exactly 0 is greedy.
    with pytest.warns(UserWarning, match="temperature"):
        params = SamplingParams(temperature=1e-7, top_k=5)
    assert params.temperature == 0.01
    assert not params.is_greedy
    assert params.top_k == 5


def test_sampling_keeps_truncation_settings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        params = SamplingParams(temperature=0.8, top_p=0.9, top_k=40, min_p=0.05, seed=3)
    assert (params.temperature, params.top_p, params.top_k, params.min_p) == (0.8, 0.9, 40, 0.05)
    assert params.seed == 3


def test_minus_one_means_disabled_for_top_k_and_seed():
    params = SamplingParams(top_k=-1, seed=-1)
    assert params.top_k == 0
    assert params.seed is None


def test_stop_string_becomes_list_and_sets_buffer_length():
    params = SamplingParams(stop="END")
    assert params.stop == ["END"]
    assert params.output_text_buffer_length == 2
    params = SamplingParams(stop=("ab", "wxyz"))
    assert params.stop == ["ab", "wxyz"]
    assert params.output_text_buffer_length == 3
    params = SamplingParams(stop=["ab"], include_stop_str_in_output=True)
    assert params.output_text_buffer_length == 0


def test_stop_token_ids_are_deduplicated_in_order():
    params = SamplingParams(stop_token_ids=[5, 3, 5, 9, 3])
    assert params.stop_token_ids == [5, 3, 9]
    assert params.all_stop_token_ids == {3, 5, 9}


def test_logprobs_accepts_minus_one_and_true():
    assert SamplingParams(logprobs=-1, prompt_logprobs=-1).logprobs == -1
    params = SamplingParams(logprobs=True, prompt_logprobs=0)
    assert params.logprobs == 1
    assert params.prompt_logprobs == 0


def test_numpy_integers_are_accepted():
    np = pytest.importorskip("numpy")
    params = SamplingParams(n=np.int64(2), top_k=np.int32(4), stop_token_ids=[np.int64(7)])
    assert params.n == 2 and type(params.n) is int
    assert params.stop_token_ids == [7] and type(params.stop_token_ids[0]) is int


def test_clone_is_deep_and_equal():
    params = SamplingParams(temperature=0.7, stop=["x"], stop_token_ids=[4], logit_bias={1: 2.0})
    copy = params.clone()
    assert copy == params
    assert copy is not params
    copy.stop.append("y")
    copy.stop_token_ids.append(5)
    copy.logit_bias[1] = -1.0
    assert params.stop == ["x"]
    assert params.stop_token_ids == [4]
    assert params.logit_bias == {1: 2.0}


def test_from_optional_fills_none_with_defaults_and_clips_logit_bias():
    params = SamplingParams.from_optional(
        n=None, temperature=None, top_p=None, presence_penalty=None,
        frequency_penalty=None, repetition_penalty=None, logit_bias={"5": 250.0, 6: -300},
    )
    assert params.n == 1
    assert params.temperature == 1.0
    assert params.top_p == 1.0
    assert params.repetition_penalty == 1.0
    assert params.logit_bias == {5: 100.0, 6: -100.0}


def test_update_from_generation_config_adds_extra_eos_ids():
    params = SamplingParams(stop_token_ids=[9])
    params.update_from_generation_config({"eos_token_id": [2, 7, 8]}, eos_token_id=2)
    assert params.eos_token_id == 2
    assert params.stop_token_ids == [9, 7, 8]
    assert params.all_stop_token_ids == {2, 7, 8, 9}


def test_update_from_generation_config_with_ignore_eos_keeps_stop_ids():
    params = SamplingParams(ignore_eos=True)
    params.update_from_generation_config({"eos_token_id": 7}, eos_token_id=2)
    assert params.eos_token_id is None
    assert params.stop_token_ids == []
    # min_tokens still holds back every EOS id.
    assert params.all_stop_token_ids == {2, 7}


def test_repr_names_the_main_fields():
    text = repr(SamplingParams(temperature=0.5, top_k=3, max_tokens=7))
    assert text.startswith("SamplingParams(n=1, ")
    for part in ("temperature=0.5", "top_k=3", "max_tokens=7", "stop=[]"):
        assert part in text
