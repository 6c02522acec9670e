"""LLM constructor options and output fields behave as vLLM documents them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from octavo import CompletionOutput, RequestOutput, SamplingParams
from octavo.testing.tiny_models import hf_greedy

EOS = 2  # the tiny tokenizer's </s>
PROMPT = [5, 6, 7, 8]
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def model_dir(make_model) -> str:
    return make_model("llama")


@pytest.fixture(scope="module")
def model_config(model_dir) -> dict:
    return json.loads((Path(model_dir) / "config.json").read_text())


@pytest.fixture(scope="module")
def llm(model_dir):
    from octavo import LLM

    return LLM(model_dir, max_num_seqs=8, kv_cache_memory_bytes=1 << 20)


@pytest.fixture(scope="module")
def reference(model_dir) -> list[int]:
    """HF greedy continuation of PROMPT, 6 tokens, not stopping at EOS."""
    return hf_greedy(model_dir, [PROMPT], 6)[0]


def _greedy(max_tokens: int, **kwargs) -> SamplingParams:
    return SamplingParams(temperature=0.0, max_tokens=max_tokens, **kwargs)


def _copy_model(model_dir: str, tmp_path: Path) -> Path:
    dest = tmp_path / "model"
    shutil.copytree(model_dir, dest)
    return dest


# ---- lengths and memory --------------------------------------------------------------


def test_max_model_len_defaults_to_max_position_embeddings(model_dir, model_config):
    from octavo import LLM

    llm = LLM(model_dir, kv_cache_memory_bytes=1 << 20)
    assert llm._engine.info.max_model_len == model_config["max_position_embeddings"]


def test_max_model_len_above_max_position_embeddings_raises_naming_both(model_dir, model_config):
    from octavo import LLM

    limit = model_config["max_position_embeddings"]
    with pytest.raises(ValueError, match=rf"\b{limit + 1}\b.*\b{limit}\b"):
        LLM(model_dir, max_model_len=limit + 1)


def test_smaller_max_model_len_limits_prompts_and_generation(model_dir):
    from octavo import LLM

    llm = LLM(model_dir, max_model_len=32, kv_cache_memory_bytes=1 << 20)
    assert llm._engine.info.max_model_len == 32
    with pytest.raises(ValueError, match=r"\b33\b.*\b32\b"):
        llm.generate({"prompt_token_ids": [5] * 33}, use_tqdm=False)
    # Generation stops at max_model_len, with finish_reason "length".
    out = llm.generate({"prompt_token_ids": [5] * 30}, _greedy(10, ignore_eos=True), use_tqdm=False)
    assert len(out[0].outputs[0].token_ids) == 2
    assert out[0].outputs[0].finish_reason == "length"


def test_scheduler_and_memory_options_reach_the_engine(model_dir, model_config):
    from octavo import LLM

    block_size = 8
    head_dim = model_config["head_dim"]
    # K and V, every layer, every KV head, float32.
    bytes_per_block = (2 * model_config["num_hidden_layers"] * model_config["num_key_value_heads"]
                       * head_dim * block_size * 4)
    kv_bytes = 40 * bytes_per_block + 123
    llm = LLM(model_dir, max_num_seqs=3, max_num_batched_tokens=48, block_size=block_size,
              kv_cache_memory_bytes=kv_bytes, max_model_len=64)
    info = llm._engine.info
    assert info.max_model_len == 64
    assert info.max_num_seqs == 3
    assert info.max_num_batched_tokens == 48
    assert info.block_size == block_size
    assert info.num_kv_blocks == 40
    assert info.kv_cache_bytes == 40 * bytes_per_block
    assert llm._engine.stats().num_free_blocks == 40


def test_max_num_batched_tokens_defaults_to_vllm_offline_budget(model_dir):
    from octavo import LLM

    llm = LLM(model_dir, max_num_seqs=4, kv_cache_memory_bytes=1 << 20)
    assert llm._engine.info.max_num_batched_tokens == 8192


def test_max_num_seqs_and_token_budget_bound_each_step(model_dir):
    from octavo import LLM
    from octavo._native import _C

    llm = LLM(model_dir, max_num_seqs=2, max_num_batched_tokens=16, kv_cache_memory_bytes=1 << 20,
              max_model_len=64)
    engine = llm._engine
    params = _C.SamplingParams()
    params.temperature = 0.0
    params.max_tokens = 3
    params.ignore_eos = True
    for rid in range(5):
        engine.add_request(1000 + rid, [5 + rid] * 6, params)
    max_running = 0
    last_computed = 0
    finished = []
    while engine.has_unfinished():
        finished.extend(engine.step())
        stats = engine.stats()
        max_running = max(max_running, stats.num_running)
        # prompt tokens computed in this step stay within the per-step budget
        assert stats.num_prompt_tokens_computed - last_computed <= 16
        last_computed = stats.num_prompt_tokens_computed
    assert max_running == 2
    assert sorted(out.request_id for out in finished) == [1000 + i for i in range(5)]
    assert all(len(out.token_ids) == 3 for out in finished)
    assert engine.stats().num_prompt_tokens_computed >= 30


# ---- hf_overrides --------------------------------------------------------------------


def test_hf_overrides_dict_changes_the_config_the_engine_sees(model_dir):
    from octavo import LLM

    llm = LLM(model_dir, hf_overrides={"max_position_embeddings": 96}, kv_cache_memory_bytes=1 << 20)
    assert llm._engine.info.max_model_len == 96
    with pytest.raises(ValueError, match=r"\b97\b.*\b96\b"):
        llm.generate({"prompt_token_ids": [5] * 97}, use_tqdm=False)


def test_hf_overrides_callable_changes_the_config_the_engine_sees(model_dir):
    from octavo import LLM

    seen = {}

    def shorten(config):
        seen.update(config)
        return {**config, "max_position_embeddings": 40}

    llm = LLM(model_dir, hf_overrides=shorten, kv_cache_memory_bytes=1 << 20)
    assert seen["architectures"] == ["LlamaForCausalLM"]
    assert llm._engine.info.max_model_len == 40


def test_hf_overrides_eos_token_id_ends_generation_with_stop_reason_none(model_dir, reference):
    from octavo import LLM

    k = 2
    eos = reference[k]
    assert eos not in reference[:k]
    llm = LLM(model_dir, hf_overrides={"eos_token_id": eos}, kv_cache_memory_bytes=1 << 20)
    assert eos in llm._engine.info.eos_token_ids
    completion = llm.generate({"prompt_token_ids": PROMPT}, _greedy(6), use_tqdm=False)[0].outputs[0]
    assert list(completion.token_ids) == reference[:k + 1]
    assert completion.finish_reason == "stop"
    assert completion.stop_reason is None
    # ignore_eos keeps going past it
    completion = llm.generate({"prompt_token_ids": PROMPT}, _greedy(6, ignore_eos=True),
                              use_tqdm=False)[0].outputs[0]
    assert list(completion.token_ids) == reference
    assert completion.finish_reason == "length"


# ---- tokenizer -----------------------------------------------------------------------


def test_skip_tokenizer_init_takes_token_prompts_only_and_returns_empty_text(model_dir, reference):
    from octavo import LLM

    llm = LLM(model_dir, skip_tokenizer_init=True, kv_cache_memory_bytes=1 << 20)
    assert llm.get_tokenizer() is None
    out = llm.generate({"prompt_token_ids": PROMPT}, _greedy(4, ignore_eos=True), use_tqdm=False)
    assert list(out[0].outputs[0].token_ids) == reference[:4]
    assert out[0].outputs[0].text == ""
    with pytest.raises(ValueError, match="skip_tokenizer_init"):
        llm.generate("hello", use_tqdm=False)
    with pytest.raises(ValueError, match="skip_tokenizer_init"):
        llm.generate({"prompt": "hello"}, use_tqdm=False)


def test_get_tokenizer_returns_the_models_hf_tokenizer(llm, model_dir):
    from transformers import AutoTokenizer, PreTrainedTokenizerBase

    tokenizer = llm.get_tokenizer()
    assert isinstance(tokenizer, PreTrainedTokenizerBase)
    expected = AutoTokenizer.from_pretrained(model_dir)
    assert tokenizer.encode("hello world") == expected.encode("hello world")
    assert len(tokenizer) == len(expected)


def test_separate_tokenizer_path_is_used(model_dir, tmp_path):
    from octavo import LLM

    with pytest.raises(OSError, match="no-tokenizer-here"):
        LLM(model_dir, tokenizer=str(tmp_path / "no-tokenizer-here"))
    llm = LLM(model_dir, tokenizer=model_dir, kv_cache_memory_bytes=1 << 20)
    assert llm.get_tokenizer() is not None


# ---- hub ids -------------------------------------------------------------------------


def test_hub_id_from_a_hand_made_cache_works_offline_end_to_end(model_dir, reference, offline_hub_cache):
    from octavo import LLM

    repo = offline_hub_cache / "models--octavo-test--tiny-llama"
    snapshot = repo / "snapshots" / COMMIT
    shutil.copytree(model_dir, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)

    llm = LLM("octavo-test/tiny-llama", kv_cache_memory_bytes=1 << 20)
    assert Path(llm._model_dir) == snapshot
    out = llm.generate({"prompt_token_ids": PROMPT}, _greedy(4, ignore_eos=True), use_tqdm=False)
    assert list(out[0].outputs[0].token_ids) == reference[:4]
    # text prompts go through the tokenizer from the same snapshot
    text_out = llm.generate("hello", _greedy(2), use_tqdm=False)
    assert text_out[0].prompt_token_ids == llm.get_tokenizer().encode("hello")


# ---- generation_config.json ----------------------------------------------------------


@pytest.fixture
def model_with_generation_config(model_dir, tmp_path) -> str:
    dest = _copy_model(model_dir, tmp_path)
    path = dest / "generation_config.json"
    config = json.loads(path.read_text())
    config.update({"temperature": 0.6, "top_p": 0.9, "max_new_tokens": 7, "do_sample": True})
    path.write_text(json.dumps(config))
    return str(dest)


def test_default_sampling_params_come_from_generation_config(model_with_generation_config):
    from octavo import LLM

    llm = LLM(model_with_generation_config, kv_cache_memory_bytes=1 << 20)
    sp = llm.get_default_sampling_params()
    assert isinstance(sp, SamplingParams)
    assert sp.temperature == pytest.approx(0.6)
    assert sp.top_p == pytest.approx(0.9)
    assert sp.max_tokens == 7
    assert sp.top_k == SamplingParams().top_k


def test_generate_without_sampling_params_uses_generation_config(model_with_generation_config):
    from octavo import LLM

    llm = LLM(model_with_generation_config, kv_cache_memory_bytes=1 << 20, seed=1)
    outputs = llm.generate([{"prompt_token_ids": [5 + i, 9, 11]} for i in range(4)], use_tqdm=False)
    for out in outputs:
        completion = out.outputs[0]
        if completion.finish_reason == "length":
            assert len(completion.token_ids) == 7
        else:
            assert completion.finish_reason == "stop"
            assert completion.token_ids[-1] == EOS
            assert len(completion.token_ids) < 7
    assert any(len(out.outputs[0].token_ids) == 7 for out in outputs)


def test_generation_config_vllm_ignores_the_models_defaults(model_with_generation_config):
    from octavo import LLM

    llm = LLM(model_with_generation_config, generation_config="vllm", kv_cache_memory_bytes=1 << 20)
    assert llm.get_default_sampling_params() == SamplingParams()


def test_default_sampling_params_without_generation_values_are_vllms(llm):
    sp = llm.get_default_sampling_params()
    assert sp == SamplingParams()
    assert sp.max_tokens == 16 and sp.temperature == 1.0


# ---- outputs -------------------------------------------------------------------------


def test_outputs_come_back_in_input_order_with_their_own_max_tokens(llm, model_dir):
    prompts = [[5, 6, 7, 8, 9, 10, 11, 12, 13], [20, 21, 22], [30, 31, 32, 33, 34, 35]]
    max_tokens = [2, 5, 3]
    params = [_greedy(m, ignore_eos=True) for m in max_tokens]
    outputs = llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
    assert [out.prompt_token_ids for out in outputs] == prompts
    assert [len(out.outputs[0].token_ids) for out in outputs] == max_tokens
    expected = hf_greedy(model_dir, prompts, max(max_tokens))
    for out, ref, m in zip(outputs, expected, max_tokens):
        assert list(out.outputs[0].token_ids) == ref[:m]
        assert out.outputs[0].finish_reason == "length"


def test_request_output_fields_for_a_text_prompt(llm):
    tokenizer = llm.get_tokenizer()
    text = "hello world"
    outputs = llm.generate([text, {"prompt": text}], _greedy(3, ignore_eos=True), use_tqdm=False)
    for out in outputs:
        assert isinstance(out, RequestOutput)
        assert isinstance(out.request_id, str)
        assert out.prompt == text
        assert out.prompt_token_ids == tokenizer.encode(text)
        assert out.finished is True
        assert len(out.outputs) == 1
        completion = out.outputs[0]
        assert isinstance(completion, CompletionOutput)
        assert completion.index == 0
        assert len(completion.token_ids) == 3
        assert completion.text == tokenizer.decode(completion.token_ids, skip_special_tokens=True)
        assert completion.finish_reason == "length"
        assert completion.stop_reason is None
        assert completion.cumulative_logprob is None and completion.logprobs is None
    assert outputs[0].request_id != outputs[1].request_id
    later = llm.generate(text, _greedy(1), use_tqdm=False)
    assert later[0].request_id not in {outputs[0].request_id, outputs[1].request_id}


def test_token_prompt_output_has_no_prompt_text(llm):
    out = llm.generate({"prompt_token_ids": PROMPT}, _greedy(2), use_tqdm=False)[0]
    assert out.prompt is None
    assert out.prompt_token_ids == PROMPT


def test_stop_token_id_ends_generation_with_stop_reason(llm, reference):
    k = 3
    stop = reference[k]
    first = reference.index(stop)
    out = llm.generate({"prompt_token_ids": PROMPT}, _greedy(6, stop_token_ids=[stop], ignore_eos=True),
                       use_tqdm=False)[0]
    completion = out.outputs[0]
    assert list(completion.token_ids) == reference[:first + 1]
    assert completion.token_ids[-1] == stop  # vLLM keeps the stop token id in token_ids
    assert completion.finish_reason == "stop"
    assert completion.stop_reason == stop


def test_use_tqdm_true_runs_and_returns_the_same_outputs(llm, reference):
    prompts = [{"prompt_token_ids": PROMPT}, {"prompt_token_ids": [9, 10]}]
    with_bar = llm.generate(prompts, _greedy(3, ignore_eos=True), use_tqdm=True)
    without = llm.generate(prompts, _greedy(3, ignore_eos=True), use_tqdm=False)
    assert [list(o.outputs[0].token_ids) for o in with_bar] == [list(o.outputs[0].token_ids) for o in without]
    assert list(with_bar[0].outputs[0].token_ids) == reference[:3]


def test_detokenize_false_leaves_text_empty(llm, reference):
    assert llm.get_tokenizer().decode(reference[:3], skip_special_tokens=True) != ""
    out = llm.generate({"prompt_token_ids": PROMPT}, _greedy(3, ignore_eos=True, detokenize=False),
                       use_tqdm=False)[0]
    assert out.outputs[0].text == ""
    assert list(out.outputs[0].token_ids) == reference[:3]
    # detokenize=True on the same LLM gives the text
    out = llm.generate({"prompt_token_ids": PROMPT}, _greedy(3, ignore_eos=True), use_tqdm=False)[0]
    assert out.outputs[0].text == llm.get_tokenizer().decode(reference[:3], skip_special_tokens=True)
