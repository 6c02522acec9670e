"""Bad input gets a clear Python exception naming the value and the limit, never a crash.

Bad requests are refused before any of them runs, and the same LLM keeps serving good
requests afterwards: the generate-time tests share one module-scoped LLM and each ends by
checking that a greedy generate still matches HF transformers.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from octavo import SamplingParams
from octavo.testing.tiny_models import hf_greedy

EOS = 2  # the tiny tokenizer's </s>
PROBE = [5, 6, 7, 8]  # the good request run after each bad one
PROBE_TOKENS = 4
SUPPORTED = ["LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM"]


@pytest.fixture(scope="module")
def model_dir(make_model) -> str:
    return make_model("llama")


@pytest.fixture(scope="module")
def llm(model_dir):
    from octavo import LLM

    return LLM(model_dir, max_num_seqs=8, kv_cache_memory_bytes=1 << 20)


@pytest.fixture(scope="module")
def probe_reference(model_dir) -> list[int]:
    return hf_greedy(model_dir, [PROBE], PROBE_TOKENS, eos_token_id=EOS)[0]


@pytest.fixture
def still_serves(llm, probe_reference):
    """Call it at the end of a test: the shared LLM is idle and still generates correctly."""

    def check() -> None:
        assert not llm._engine.has_unfinished()
        stats = llm._engine.stats()
        assert stats.num_running == 0 and stats.num_waiting == 0
        out = llm.generate({"prompt_token_ids": PROBE},
                           SamplingParams(temperature=0.0, max_tokens=PROBE_TOKENS), use_tqdm=False)
        assert list(out[0].outputs[0].token_ids) == probe_reference
        assert not llm._engine.has_unfinished()

    return check


def _copy_model(model_dir: str, tmp_path: Path) -> Path:
    dest = tmp_path / "model"
    shutil.copytree(model_dir, dest)
    return dest


# ---- prompts ------------------------------------------------------------------------


def test_too_long_prompt_in_a_batch_raises_before_any_request_runs(llm, still_serves):
    limit = llm._engine.info.max_model_len
    steps_before = llm._engine.stats().num_steps
    prompts = [{"prompt_token_ids": [5, 6, 7]}, {"prompt_token_ids": [9] * 4},
               {"prompt_token_ids": [10] * (limit + 7)}, {"prompt_token_ids": [11, 12]}]
    with pytest.raises(ValueError) as excinfo:
        llm.generate(prompts, SamplingParams(temperature=0.0, max_tokens=3), use_tqdm=False)
    message = str(excinfo.value)
    assert str(limit + 7) in message and str(limit) in message
    assert "max_model_len" in message
    assert llm._engine.stats().num_steps == steps_before
    assert not llm._engine.has_unfinished()
    still_serves()


def test_too_long_text_prompt_raises_naming_both_lengths(llm, still_serves):
    limit = llm._engine.info.max_model_len
    text = "hello world " * limit
    length = len(llm.get_tokenizer().encode(text))
    assert length > limit
    with pytest.raises(ValueError, match=rf"\b{length}\b.*\b{limit}\b"):
        llm.generate(text, use_tqdm=False)
    still_serves()


def test_empty_token_prompt_raises(llm, still_serves):
    with pytest.raises(ValueError, match="empty"):
        llm.generate({"prompt_token_ids": []}, use_tqdm=False)
    still_serves()


def test_empty_text_prompt_without_special_tokens_raises(llm, still_serves):
    assert llm.get_tokenizer().encode("", add_special_tokens=False) == []
    with pytest.raises(ValueError, match="empty"):
        llm.generate("", use_tqdm=False, tokenization_kwargs={"add_special_tokens": False})
    still_serves()


@pytest.mark.parametrize("which", ["negative", "equal_to_vocab_size", "far_above_vocab_size"])
def test_token_id_outside_vocabulary_raises_naming_id_and_vocab_size(llm, still_serves, which):
    vocab = llm._engine.info.vocab_size
    bad = {"negative": -1, "equal_to_vocab_size": vocab, "far_above_vocab_size": vocab * 1000}[which]
    with pytest.raises(ValueError) as excinfo:
        llm.generate({"prompt_token_ids": [5, bad, 6]}, use_tqdm=False)
    message = str(excinfo.value)
    assert re.search(rf"(?<![\d-]){re.escape(str(bad))}(?!\d)", message), message
    assert str(vocab) in message
    still_serves()


def test_prompt_of_wrong_type_raises_type_error(llm, still_serves):
    with pytest.raises(TypeError):
        llm.generate([12345], use_tqdm=False)
    with pytest.raises(TypeError):
        llm.generate({"prompt_token_ids": [5, "6"]}, use_tqdm=False)
    still_serves()


# ---- SamplingParams ------------------------------------------------------------------

# (constructor kwargs, substrings the message must hold: the field, the value, the limit)
BAD_SAMPLING_PARAMS = {
    "temperature_negative": ({"temperature": -0.5}, ["temperature", "-0.5", "0"]),
    "top_p_zero": ({"top_p": 0.0}, ["top_p", "0.0", "(0, 1]"]),
    "top_p_above_one": ({"top_p": 1.5}, ["top_p", "1.5", "(0, 1]"]),
    "min_p_negative": ({"min_p": -0.1}, ["min_p", "-0.1", "[0, 1]"]),
    "min_p_above_one": ({"min_p": 1.1}, ["min_p", "1.1", "[0, 1]"]),
    "max_tokens_zero": ({"max_tokens": 0}, ["max_tokens", "0", "at least 1"]),
    "n_zero": ({"n": 0}, ["n must", "0", "at least 1"]),
    "top_k_minus_two": ({"top_k": -2}, ["top_k", "-2", "-1"]),
    "repetition_penalty_zero": ({"repetition_penalty": 0.0}, ["repetition_penalty", "0.0", "zero"]),
    "presence_penalty_three": ({"presence_penalty": 3.0}, ["presence_penalty", "3.0", "[-2, 2]"]),
    "frequency_penalty_minus_three": ({"frequency_penalty": -3.0},
                                      ["frequency_penalty", "-3.0", "[-2, 2]"]),
    "min_tokens_above_max_tokens": ({"min_tokens": 5, "max_tokens": 3},
                                    ["min_tokens", "5", "max_tokens=3"]),
}


@pytest.mark.parametrize("case", sorted(BAD_SAMPLING_PARAMS))
def test_invalid_sampling_params_raise_value_error_at_construction(case):
    kwargs, needles = BAD_SAMPLING_PARAMS[case]
    with pytest.raises(ValueError) as excinfo:
        SamplingParams(**kwargs)
    message = str(excinfo.value)
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"


def test_logprobs_above_max_logprobs_raises_at_generate(llm, still_serves):
    with pytest.raises(ValueError) as excinfo:
        llm.generate({"prompt_token_ids": PROBE}, SamplingParams(logprobs=21), use_tqdm=False)
    message = str(excinfo.value)
    assert "21" in message and "20" in message
    still_serves()


def test_logprobs_at_max_logprobs_is_accepted(llm, still_serves):
    out = llm.generate({"prompt_token_ids": PROBE},
                       SamplingParams(temperature=0.0, max_tokens=2, logprobs=20), use_tqdm=False)
    assert len(out[0].outputs[0].logprobs) == 2
    still_serves()


@pytest.mark.parametrize("num_params", [1, 3])
def test_sampling_params_list_of_wrong_length_raises_naming_both_lengths(llm, still_serves, num_params):
    prompts = [{"prompt_token_ids": [5, 6]}, {"prompt_token_ids": [7, 8]}]
    params = [SamplingParams(max_tokens=2)] * num_params
    with pytest.raises(ValueError, match=rf"\(2\).*\({num_params}\)"):
        llm.generate(prompts, params, use_tqdm=False)
    still_serves()


def test_logit_bias_ids_outside_the_vocabulary_raise_naming_them(llm, still_serves):
    bias = {5: 1.0, 384: 2.0, 1000: -1.0}
    with pytest.raises(ValueError, match=r"\[384, 1000\].*logit_bias.*384"):
        llm.generate({"prompt_token_ids": PROBE}, SamplingParams(logit_bias=bias), use_tqdm=False)
    still_serves()


def test_empty_allowed_token_ids_raises(llm, still_serves):
    with pytest.raises(ValueError, match="allowed_token_ids"):
        llm.generate({"prompt_token_ids": PROBE}, SamplingParams(allowed_token_ids=[]), use_tqdm=False)
    still_serves()


def test_allowed_token_ids_outside_the_vocabulary_raise_naming_them(llm, still_serves):
    with pytest.raises(ValueError, match=r"allowed_token_ids.*\[400\].*384"):
        llm.generate({"prompt_token_ids": PROBE}, SamplingParams(allowed_token_ids=[5, 400]), use_tqdm=False)
    still_serves()


@pytest.mark.parametrize("prompt_logprobs,named", [(21, 21), (-1, 384)])
def test_prompt_logprobs_above_max_logprobs_raises(llm, still_serves, prompt_logprobs, named):
    with pytest.raises(ValueError, match=rf"prompt logprobs of {named}\b.*\b20\b"):
        llm.generate({"prompt_token_ids": PROBE}, SamplingParams(prompt_logprobs=prompt_logprobs),
                     use_tqdm=False)
    still_serves()


def test_bad_params_in_a_later_prompt_run_nothing(llm, still_serves):
    steps_before = llm._engine.stats().num_steps
    params = [SamplingParams(max_tokens=2), SamplingParams(max_tokens=2, logit_bias={999: 1.0})]
    with pytest.raises(ValueError, match="999"):
        llm.generate([{"prompt_token_ids": [5]}, {"prompt_token_ids": [6]}], params, use_tqdm=False)
    assert llm._engine.stats().num_steps == steps_before
    still_serves()


@pytest.mark.parametrize("beam_width", [0, -1])
def test_beam_width_below_one_raises_naming_it(llm, still_serves, beam_width):
    from octavo import BeamSearchParams

    with pytest.raises(ValueError, match=rf"beam_width.*{beam_width}"):
        llm.beam_search([{"prompt_token_ids": PROBE}], BeamSearchParams(beam_width=beam_width, max_tokens=2))
    still_serves()


def test_beam_search_bad_max_tokens_and_width_above_max_logprobs_raise(llm, still_serves):
    from octavo import BeamSearchParams

    with pytest.raises(ValueError, match=r"max_tokens.*0"):
        llm.beam_search([{"prompt_token_ids": PROBE}], BeamSearchParams(beam_width=2, max_tokens=0))
    with pytest.raises(ValueError, match=r"\b22\b.*\b20\b.*beam_width=11"):
        llm.beam_search([{"prompt_token_ids": PROBE}], BeamSearchParams(beam_width=11, max_tokens=2))
    with pytest.raises(ValueError, match="out of vocabulary"):
        llm.beam_search([{"prompt_token_ids": PROBE}, {"prompt_token_ids": [5, 999]}],
                        BeamSearchParams(beam_width=2, max_tokens=2))
    with pytest.raises(TypeError, match="BeamSearchParams"):
        llm.beam_search([{"prompt_token_ids": PROBE}], SamplingParams())
    still_serves()


def test_beam_search_with_queued_requests_raises_and_leaves_them_queued(llm, still_serves, probe_reference):
    from octavo import BeamSearchParams

    [queued] = llm.enqueue({"prompt_token_ids": PROBE}, SamplingParams(temperature=0.0, max_tokens=PROBE_TOKENS),
                           use_tqdm=False)
    with pytest.raises(ValueError, match=r"1 request\(s\) queued.*wait_for_completion"):
        llm.beam_search([{"prompt_token_ids": PROBE}], BeamSearchParams(beam_width=2, max_tokens=2))
    [out] = llm.wait_for_completion(use_tqdm=False)
    assert out.request_id == queued and list(out.outputs[0].token_ids) == probe_reference
    still_serves()


# ---- generate() options octavo refuses rather than ignores --------------------------


def test_best_of_above_n_raises_naming_it(llm, still_serves):
    with pytest.raises(ValueError, match="best_of=3"):
        llm.generate({"prompt_token_ids": PROBE}, SamplingParams(n=2, best_of=3), use_tqdm=False)
    still_serves()


@pytest.mark.parametrize("stop", ["", ["then", ""]])
def test_empty_stop_string_raises(still_serves, stop):
    with pytest.raises(ValueError, match="stop cannot contain an empty string"):
        SamplingParams(stop=stop)
    still_serves()


@pytest.mark.parametrize("stop", [5, ["then", 3], b"then", {"then": 1}])
def test_stop_of_wrong_type_raises_type_error(still_serves, stop):
    with pytest.raises(TypeError, match="stop"):
        SamplingParams(stop=stop)
    still_serves()


def test_stop_strings_without_detokenize_raise(still_serves):
    with pytest.raises(ValueError, match="detokenize"):
        SamplingParams(stop=["then"], detokenize=False)
    still_serves()


def test_stop_strings_without_a_tokenizer_raise_at_generate(model_dir):
    from octavo import LLM

    llm = LLM(model_dir, skip_tokenizer_init=True, kv_cache_memory_bytes=1 << 20)
    with pytest.raises(ValueError, match="skip_tokenizer_init"):
        llm.generate({"prompt_token_ids": PROBE}, SamplingParams(stop=["then"]), use_tqdm=False)
    out = llm.generate({"prompt_token_ids": PROBE}, SamplingParams(temperature=0.0, max_tokens=2),
                       use_tqdm=False)
    assert len(out[0].outputs[0].token_ids) <= 2


@pytest.mark.parametrize("value", [0, -2])
def test_truncate_prompt_tokens_below_range_raises_at_construction(still_serves, value):
    with pytest.raises(ValueError, match=rf"truncate_prompt_tokens.*{value}"):
        SamplingParams(truncate_prompt_tokens=value)
    still_serves()


def test_truncate_prompt_tokens_above_max_model_len_raises_naming_both(llm, still_serves):
    limit = llm._engine.info.max_model_len
    steps_before = llm._engine.stats().num_steps
    params = [SamplingParams(max_tokens=2), SamplingParams(max_tokens=2, truncate_prompt_tokens=limit + 1)]
    with pytest.raises(ValueError, match=rf"\({limit + 1}\).*max_model_len \({limit}\)"):
        llm.generate([{"prompt_token_ids": PROBE}, {"prompt_token_ids": PROBE}], params, use_tqdm=False)
    assert llm._engine.stats().num_steps == steps_before
    still_serves()


def test_priority_without_the_priority_policy_raises(llm, still_serves):
    with pytest.raises(ValueError, match="Got priority 1 but Priority scheduling is not enabled"):
        llm.generate({"prompt_token_ids": PROBE}, SamplingParams(max_tokens=2), priority=[1],
                     use_tqdm=False)
    still_serves()


def test_priority_list_of_the_wrong_length_raises(llm, still_serves):
    with pytest.raises(ValueError, match=r"prompts \(1\) and priority \(2\)"):
        llm.generate({"prompt_token_ids": PROBE}, SamplingParams(max_tokens=2), priority=[0, 0],
                     use_tqdm=False)
    still_serves()


def test_lora_request_raises(llm, still_serves):
    with pytest.raises(ValueError, match="lora_request"):
        llm.generate({"prompt_token_ids": PROBE}, SamplingParams(max_tokens=2),
                     lora_request=object(), use_tqdm=False)
    still_serves()


def test_unsupported_option_in_second_prompt_params_runs_nothing(llm, still_serves):
    steps_before = llm._engine.stats().num_steps
    params = [SamplingParams(max_tokens=2), SamplingParams(max_tokens=2, n=2, best_of=3)]
    with pytest.raises(ValueError, match="best_of=3"):
        llm.generate([{"prompt_token_ids": [5]}, {"prompt_token_ids": [6]}], params, use_tqdm=False)
    assert llm._engine.stats().num_steps == steps_before
    still_serves()


# ---- finding the model ---------------------------------------------------------------


def test_missing_model_path_raises_os_error_naming_it(tmp_path):
    from octavo import LLM

    missing = str(tmp_path / "no-such-model")
    with pytest.raises(OSError) as excinfo:
        LLM(missing)
    assert missing in str(excinfo.value)


def test_hub_id_not_cached_while_offline_raises_os_error_naming_it(offline_hub_cache):
    from octavo import LLM

    with pytest.raises(OSError) as excinfo:
        LLM("octavo-test/not-in-cache")
    assert "octavo-test/not-in-cache" in str(excinfo.value)
    assert "offline" in str(excinfo.value).lower()


def test_model_dir_without_config_raises_os_error_naming_config(model_dir, tmp_path):
    from octavo import LLM

    dest = _copy_model(model_dir, tmp_path)
    (dest / "config.json").unlink()
    with pytest.raises(OSError, match=r"config\.json"):
        LLM(str(dest))


def test_model_dir_without_weights_raises_os_error_naming_dir(model_dir, tmp_path):
    from octavo import LLM

    dest = _copy_model(model_dir, tmp_path)
    (dest / "model.safetensors").unlink()
    with pytest.raises(OSError) as excinfo:
        LLM(str(dest))
    assert str(dest) in str(excinfo.value) and "safetensors" in str(excinfo.value)


# ---- bad checkpoints -----------------------------------------------------------------


@pytest.mark.parametrize("arch", ["GPT2LMHeadModel", "FalconForCausalLM"])
def test_unsupported_architecture_raises_listing_supported_ones(model_dir, tmp_path, arch):
    from octavo import LLM

    dest = _copy_model(model_dir, tmp_path)
    config = json.loads((dest / "config.json").read_text())
    config["architectures"] = [arch]
    (dest / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError) as excinfo:
        LLM(str(dest))
    message = str(excinfo.value)
    assert arch in message
    for supported in SUPPORTED:
        assert supported in message


def test_truncated_safetensors_raises_value_error_naming_the_file(model_dir, tmp_path):
    from octavo import LLM

    dest = _copy_model(model_dir, tmp_path)
    weights = dest / "model.safetensors"
    os.truncate(weights, weights.stat().st_size // 2)
    with pytest.raises(ValueError) as excinfo:
        LLM(str(dest))
    assert str(weights) in str(excinfo.value)


def test_safetensors_shorter_than_its_length_field_raises_value_error(model_dir, tmp_path):
    from octavo import LLM

    dest = _copy_model(model_dir, tmp_path)
    weights = dest / "model.safetensors"
    os.truncate(weights, 3)
    with pytest.raises(ValueError) as excinfo:
        LLM(str(dest))
    assert str(weights) in str(excinfo.value)


def test_safetensors_with_garbage_header_length_raises_value_error(model_dir, tmp_path):
    from octavo import LLM

    dest = _copy_model(model_dir, tmp_path)
    weights = dest / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[:8] = b"\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8"
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError) as excinfo:
        LLM(str(dest))
    assert str(weights) in str(excinfo.value)
    assert "header" in str(excinfo.value)


def test_safetensors_with_ascii_garbage_in_header_json_raises_value_error(model_dir, tmp_path):
    from octavo import LLM

    dest = _copy_model(model_dir, tmp_path)
    weights = dest / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[8:40] = b"#" * 32
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError) as excinfo:
        LLM(str(dest))
    assert str(weights) in str(excinfo.value)
    assert "JSON" in str(excinfo.value)


def test_safetensors_with_binary_garbage_in_header_json_raises_value_error_naming_the_file(
        model_dir, tmp_path):
    from octavo import LLM

    dest = _copy_model(model_dir, tmp_path)
    weights = dest / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[8:40] = b"\xff" * 32
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError) as excinfo:
        LLM(str(dest))
    assert str(weights) in str(excinfo.value)


def test_config_json_that_is_not_json_raises_value_error_naming_it(model_dir, tmp_path):
    from octavo import LLM

    dest = _copy_model(model_dir, tmp_path)
    (dest / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"config\.json"):
        LLM(str(dest))


# ---- memory plan ---------------------------------------------------------------------


def test_kv_cache_too_small_for_one_sequence_raises_with_numbers_and_option(model_dir):
    from octavo import LLM

    with pytest.raises(ValueError) as excinfo:
        LLM(model_dir, kv_cache_memory_bytes=1000, max_model_len=128, block_size=16)
    message = str(excinfo.value)
    assert "1000" in message  # what was given
    assert "8 blocks" in message  # what one 128-token sequence needs: 128 / 16
    assert "128" in message  # max_model_len
    assert "kv_cache_memory_bytes" in message  # the option to change


def test_kv_cache_of_exactly_one_sequence_is_accepted(model_dir):
    from octavo import LLM

    probe = LLM(model_dir, kv_cache_memory_bytes=1 << 20, max_model_len=64, block_size=16)
    bytes_per_block = probe._engine.info.kv_cache_bytes // probe._engine.info.num_kv_blocks
    llm = LLM(model_dir, kv_cache_memory_bytes=4 * bytes_per_block, max_model_len=64, block_size=16)
    assert llm._engine.info.num_kv_blocks == 4
    with pytest.raises(ValueError, match="kv_cache_memory_bytes"):
        LLM(model_dir, kv_cache_memory_bytes=4 * bytes_per_block - 1, max_model_len=64, block_size=16)


# ---- constructor options -------------------------------------------------------------


def test_unknown_llm_keyword_raises_type_error_naming_it(model_dir):
    from octavo import LLM

    with pytest.raises(TypeError, match="no_such_option"):
        LLM(model_dir, no_such_option=1)


def test_swap_space_warns_deprecation_and_llm_works(model_dir, probe_reference):
    from octavo import LLM

    with pytest.warns(DeprecationWarning, match="swap_space"):
        llm = LLM(model_dir, swap_space=4, kv_cache_memory_bytes=1 << 20)
    out = llm.generate({"prompt_token_ids": PROBE},
                       SamplingParams(temperature=0.0, max_tokens=PROBE_TOKENS), use_tqdm=False)
    assert list(out[0].outputs[0].token_ids) == probe_reference


@pytest.mark.parametrize(
    "option, value",
    [("tensor_parallel_size", 2), ("quantization", "awq"),
     ("scheduling_policy", "lottery"), ("load_format", "pt"), ("pipeline_parallel_size", 2)],
)
def test_known_but_unsupported_option_raises_value_error_naming_it(model_dir, option, value):
    from octavo import LLM

    with pytest.raises(ValueError) as excinfo:
        LLM(model_dir, **{option: value})
    assert option in str(excinfo.value)
    assert repr(value) in str(excinfo.value) or str(value) in str(excinfo.value)


def test_enable_prefix_caching_must_be_a_bool_or_none(model_dir):
    from octavo import LLM

    with pytest.raises(ValueError, match="enable_prefix_caching.*'yes'"):
        LLM(model_dir, enable_prefix_caching="yes")


@pytest.mark.parametrize("option", ["max_num_seqs", "block_size", "max_model_len",
                                    "max_num_batched_tokens", "kv_cache_memory_bytes"])
def test_non_positive_size_option_raises_value_error_naming_it(model_dir, option):
    from octavo import LLM

    with pytest.raises(ValueError, match=rf"{option}.*-3"):
        LLM(model_dir, **{option: -3})


# ---- the native layer ----------------------------------------------------------------


def _native_config(model_dir: str):
    from octavo._native import _C

    config = _C.EngineConfig()
    config.model_dir = model_dir
    config.max_num_seqs = 4
    config.kv_cache_memory_bytes = 1 << 20
    return config


def test_native_engine_with_config_json_that_is_not_json_raises_value_error(model_dir):
    from octavo._native import _C

    config = _native_config(model_dir)
    config.config_json = "this is not JSON"
    with pytest.raises(ValueError, match="not valid JSON"):
        _C.Engine(config)


def test_native_engine_with_missing_model_dir_raises_os_error_naming_it(tmp_path):
    from octavo._native import _C

    missing = str(tmp_path / "gone")
    with pytest.raises(OSError, match=re.escape(missing)):
        _C.Engine(_native_config(missing))


def test_native_engine_with_unknown_device_raises_value_error(model_dir):
    from octavo._native import _C

    config = _native_config(model_dir)
    config.device = "tpu"
    with pytest.raises(ValueError, match="tpu"):
        _C.Engine(config)


def test_native_add_request_errors_are_value_errors_and_the_engine_keeps_working(model_dir,
                                                                                 probe_reference):
    from octavo._native import _C

    engine = _C.Engine(_native_config(model_dir))
    params = _C.SamplingParams()
    params.temperature = 0.0
    params.max_tokens = PROBE_TOKENS
    engine.add_request(1, PROBE, params)
    with pytest.raises(ValueError, match="request id 1"):
        engine.add_request(1, PROBE, params)
    with pytest.raises(ValueError, match="empty"):
        engine.add_request(2, [], params)
    with pytest.raises(ValueError, match=r"token id 999 .*\[0, 384\)"):
        engine.add_request(3, [5, 999], params)
    with pytest.raises(ValueError, match=r"\b300\b.*\b256\b"):
        engine.add_request(4, [5] * 300, params)
    bad = _C.SamplingParams()
    bad.max_tokens = 0
    with pytest.raises(ValueError, match="max_tokens"):
        engine.add_request(5, PROBE, bad)
    bad = _C.SamplingParams()
    bad.logprobs = 21
    with pytest.raises(ValueError, match="21"):
        engine.add_request(6, PROBE, bad)
    bad = _C.SamplingParams()
    bad.prompt_logprobs = 21
    with pytest.raises(ValueError, match="prompt_logprobs 21"):
        engine.add_request(7, PROBE, bad)
    bad = _C.SamplingParams()
    bad.logit_bias = {3: 1.0, 384: 1.0}
    with pytest.raises(ValueError, match=r"\[384\] in logit_bias"):
        engine.add_request(8, PROBE, bad)
    bad = _C.SamplingParams()
    bad.allowed_token_ids = []
    with pytest.raises(ValueError, match="allowed_token_ids"):
        engine.add_request(9, PROBE, bad)
    bad.allowed_token_ids = [-1, 2]
    with pytest.raises(ValueError, match=r"\[-1\]"):
        engine.add_request(10, PROBE, bad)
    bad = _C.SamplingParams()
    bad.bad_words_token_ids = [[5, 500]]
    with pytest.raises(ValueError, match=r"bad: \[500\]"):
        engine.add_request(11, PROBE, bad)
    finished = []
    while engine.has_unfinished():
        finished.extend(engine.step())
    assert [out.request_id for out in finished] == [1]
    assert list(finished[0].token_ids) == probe_reference
