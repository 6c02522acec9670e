"""load_format="dummy": random weights of the config's shapes, from a folder with no weights.

The folders here hold config.json and the tokenizer files of the tiny Llama, copied without
its safetensors; a test that needs the weights to be read would fail on them.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from octavo import LLM, SamplingParams

PROMPTS = [{"prompt_token_ids": [1, 40, 41, 42]}, {"prompt_token_ids": [1, 100, 7]}, "def sorted list"]


def _copy_without_weights(model_dir: str, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    for f in Path(model_dir).iterdir():
        if f.is_file() and ".safetensors" not in f.name:
            shutil.copy(f, out / f.name)
    return out


@pytest.fixture(scope="module")
def config_only_dir(make_model, tmp_path_factory: pytest.TempPathFactory) -> str:
    """config.json, generation_config.json and the tokenizer of the tiny Llama; no weights."""
    out = _copy_without_weights(make_model("llama"), tmp_path_factory.mktemp("dummy-llama"))
    assert not list(out.glob("*.safetensors*")) and (out / "config.json").is_file()
    return str(out)


def _llm(model: str, **kwargs) -> LLM:
    return LLM(model, load_format="dummy", kv_cache_memory_bytes=1 << 20, max_num_seqs=4, **kwargs)


def _greedy(llm: LLM, max_tokens: int = 12) -> list[list[int]]:
    params = SamplingParams(temperature=0.0, max_tokens=max_tokens, ignore_eos=True)
    return [list(o.outputs[0].token_ids) for o in llm.generate(PROMPTS, params, use_tqdm=False)]


def _top_logprobs(llm: LLM) -> list[list[float]]:
    """Each prompt's first-position top-5 logprobs: a fingerprint of the weights."""
    params = SamplingParams(temperature=0.0, max_tokens=1, logprobs=5)
    outputs = llm.generate(PROMPTS, params, use_tqdm=False)
    return [sorted(lp.logprob for lp in o.outputs[0].logprobs[0].values()) for o in outputs]


def test_config_only_folder_generates_the_requested_tokens(config_only_dir):
    llm = _llm(config_only_dir)
    outputs = llm.generate(PROMPTS, SamplingParams(temperature=1.0, max_tokens=9, ignore_eos=True, seed=3),
                           use_tqdm=False)
    vocab = json.loads((Path(config_only_dir) / "config.json").read_text())["vocab_size"]
    assert len(outputs) == len(PROMPTS)
    for out in outputs:
        completion = out.outputs[0]
        assert len(completion.token_ids) == 9
        assert completion.finish_reason == "length"
        assert all(0 <= t < vocab for t in completion.token_ids)
        assert isinstance(completion.text, str)  # the tokenizer came from the folder
    assert llm.get_tokenizer() is not None


def test_same_seed_gives_the_same_weights_and_outputs(config_only_dir):
    a, b = _llm(config_only_dir, seed=7), _llm(config_only_dir, seed=7)
    assert _greedy(a) == _greedy(b)
    assert _top_logprobs(a) == _top_logprobs(b)


def test_different_seeds_give_different_weights(config_only_dir):
    a, b = _llm(config_only_dir, seed=7), _llm(config_only_dir, seed=8)
    # Logprobs are continuous in the weights: equal only if the weights are.
    assert _top_logprobs(a) != _top_logprobs(b)
    assert _greedy(a) != _greedy(b)


def test_weights_in_the_dummy_range_give_nearly_flat_logits(config_only_dir):
    """Weights in [-1e-3, 1e-3] make logits far below 1e-3: every token about 1/vocab likely.

    (Weights of order 1, as in a real model, would spread the logprobs by whole units.)
    """
    llm = _llm(config_only_dir)
    vocab = llm._info.vocab_size
    for row in _top_logprobs(llm):
        for logprob in row:
            assert logprob == pytest.approx(-math.log(vocab), abs=1e-3)


@pytest.mark.parametrize("load_format", ["pt", "gguf", "bitsandbytes", "Dummy"])
def test_other_load_formats_raise_value_error_naming_the_accepted_ones(config_only_dir, load_format):
    with pytest.raises(ValueError) as excinfo:
        LLM(config_only_dir, load_format=load_format)
    message = str(excinfo.value)
    assert "load_format" in message and repr(load_format) in message
    for accepted in ("'auto'", "'safetensors'", "'dummy'"):
        assert accepted in message


def test_start_up_reads_no_safetensors_file(config_only_dir, tmp_path):
    model = _copy_without_weights(config_only_dir, tmp_path / "corrupt")
    (model / "model.safetensors").write_bytes(b"\xff" * 64)  # a header length far past the end
    assert len(_greedy(_llm(str(model)), max_tokens=3)[0]) == 3
    # The same folder with real loading does read the file, and refuses it.
    with pytest.raises(ValueError, match="model.safetensors"):
        LLM(str(model), kv_cache_memory_bytes=1 << 20)


def test_skip_tokenizer_init_needs_only_config_json(config_only_dir, tmp_path):
    shutil.copy(Path(config_only_dir) / "config.json", tmp_path / "config.json")
    llm = _llm(str(tmp_path), skip_tokenizer_init=True)
    assert llm.get_tokenizer() is None
    out = llm.generate({"prompt_token_ids": [1, 2, 3]}, SamplingParams(max_tokens=5, ignore_eos=True,
                                                                      detokenize=False), use_tqdm=False)
    assert len(out[0].outputs[0].token_ids) == 5


def test_native_engine_runs_from_config_json_alone(config_only_dir):
    from octavo._native import _C

    cfg = _C.EngineConfig()
    cfg.model_dir = ""
    cfg.config_json = (Path(config_only_dir) / "config.json").read_text()
    cfg.load_format = "dummy"
    cfg.kv_cache_memory_bytes = 1 << 20
    cfg.max_num_seqs = 2
    engine = _C.Engine(cfg)
    params = _C.SamplingParams()
    params.max_tokens = 4
    params.ignore_eos = True
    engine.add_request(request_id=0, prompt_token_ids=[1, 5, 9], params=params)
    done = []
    while engine.has_unfinished():
        done += engine.step()
    assert len(done) == 1 and len(done[0].token_ids) == 4

    cfg.load_format = "npz"
    with pytest.raises(ValueError, match="'auto', 'safetensors' or 'dummy'"):
        _C.Engine(cfg)


def test_hub_id_with_dummy_does_not_download_weights(monkeypatch, config_only_dir):
    import huggingface_hub

    from octavo.hf import resolve_model_path

    calls: list[list[str]] = []

    def fake_snapshot_download(repo_id, **kwargs):
        calls.append(kwargs["allow_patterns"])
        return config_only_dir

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    assert resolve_model_path("org/model", weights=False) == config_only_dir
    assert resolve_model_path("org/model") == config_only_dir
    assert "*.safetensors" not in calls[0] and "*.json" in calls[0]
    assert "*.safetensors" in calls[1]
    llm = _llm("org/model")
    assert "*.safetensors" not in calls[2]
    assert len(_greedy(llm, max_tokens=2)[0]) == 2
