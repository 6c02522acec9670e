"""Model resolution: local directories, the Hub cache offline_hub_cache, and reading config files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from huggingface_hub import constants as hub_constants

from octavo.hf import (
    hub_offline,
    load_generation_config,
    load_hf_config,
    resolve_model_path,
)

COMMIT = "0123456789abcdef0123456789abcdef01234567"
OTHER_COMMIT = "fedcba9876543210fedcba9876543210fedcba98"


def _write_cached_snapshot(
    cache: Path, repo_id: str, commit: str, ref: str | None = "main"
) -> Path:
    """The Hub cache layout: models--org--name/{refs/<ref>, snapshots/<commit>/...}."""
    repo_dir = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(json.dumps({"model_type": "llama", "commit": commit}))
    (snapshot / "model.safetensors").write_bytes(b"")
    if ref is not None:
        (repo_dir / "refs").mkdir(exist_ok=True)
        (repo_dir / "refs" / ref).write_text(commit)
    return snapshot


def test_existing_directory_is_returned_as_is(tmp_path):
    assert resolve_model_path(str(tmp_path)) == str(tmp_path)
    assert resolve_model_path(tmp_path) == str(tmp_path)


def test_home_relative_directory_is_expanded(tmp_path, monkeypatch):
    (tmp_path / "models" / "m").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_model_path("~/models/m") == str(tmp_path / "models" / "m")


@pytest.mark.parametrize("relative", [False, True])
def test_missing_local_directory_raises_os_error_naming_it(
    tmp_path, monkeypatch, offline_hub_cache, relative
):
    monkeypatch.chdir(tmp_path)
    missing = "./no-such-model" if relative else str(tmp_path / "no" / "such" / "model")
    with pytest.raises(OSError) as excinfo:
        resolve_model_path(missing)
    assert missing in str(excinfo.value)
    assert "does not exist" in str(excinfo.value)


def test_path_under_existing_local_directory_counts_as_local(tmp_path, monkeypatch, offline_hub_cache):
    (tmp_path / "checkpoints").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="checkpoints/llama"):
        resolve_model_path("checkpoints/llama")


def test_existing_file_raises_os_error_naming_it(tmp_path):
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"")
    with pytest.raises(OSError, match="model.safetensors.*not a directory"):
        resolve_model_path(str(weights))


def test_hub_id_not_cached_offline_raises_os_error_naming_id_revision_and_mode(offline_hub_cache):
    with pytest.raises(OSError) as excinfo:
        resolve_model_path("octavo-test/not-cached", cache_dir=offline_hub_cache)
    message = str(excinfo.value)
    assert "'octavo-test/not-cached'" in message
    assert "revision 'main'" in message
    assert "offline mode is ON" in message
    assert excinfo.value.__cause__ is not None


def test_hub_id_not_cached_uses_the_hub_cache_constant_when_no_cache_dir(offline_hub_cache):
    with pytest.raises(OSError, match=r"octavo-test/elsewhere.*revision 'v2'.*offline mode is ON"):
        resolve_model_path("octavo-test/elsewhere", revision="v2")


def test_offline_environment_variable_alone_turns_on_offline_mode(monkeypatch, tmp_path):
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "true")
    assert hub_offline()
    with pytest.raises(OSError, match="offline mode is ON"):
        resolve_model_path("octavo-test/env-only", cache_dir=tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert not hub_offline()


def test_cached_hub_id_resolves_offline_to_its_snapshot(offline_hub_cache):
    snapshot = _write_cached_snapshot(offline_hub_cache, "octavo-test/tiny", COMMIT)
    path = resolve_model_path("octavo-test/tiny", cache_dir=offline_hub_cache)
    assert Path(path) == snapshot
    assert load_hf_config(path)["commit"] == COMMIT
    # Same, through the Hub's default cache (the patched constant).
    assert Path(resolve_model_path("octavo-test/tiny")) == snapshot


def test_cached_hub_id_resolves_branch_and_commit_revisions(offline_hub_cache):
    main = _write_cached_snapshot(offline_hub_cache, "octavo-test/tiny", COMMIT)
    dev = _write_cached_snapshot(offline_hub_cache, "octavo-test/tiny", OTHER_COMMIT, ref="dev")
    assert Path(resolve_model_path("octavo-test/tiny", revision="dev", cache_dir=offline_hub_cache)) == dev
    assert Path(resolve_model_path("octavo-test/tiny", revision=COMMIT, cache_dir=offline_hub_cache)) == main


def test_cached_hub_id_with_unknown_revision_raises_naming_it(offline_hub_cache):
    _write_cached_snapshot(offline_hub_cache, "octavo-test/tiny", COMMIT)
    with pytest.raises(OSError, match=r"octavo-test/tiny.*revision 'v9'"):
        resolve_model_path("octavo-test/tiny", revision="v9", cache_dir=offline_hub_cache)


def test_invalid_hub_id_raises_os_error(offline_hub_cache):
    with pytest.raises(OSError, match="not a valid id"):
        resolve_model_path("not a valid id", cache_dir=offline_hub_cache)


# ---- config files --------------------------------------------------------------------


def test_load_hf_config_of_missing_file_raises_os_error_naming_it(tmp_path):
    with pytest.raises(OSError, match=r"config\.json"):
        load_hf_config(tmp_path)


def test_load_hf_config_of_invalid_json_raises_value_error(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"config\.json is not valid JSON"):
        load_hf_config(tmp_path)
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        load_hf_config(tmp_path)


def test_hf_overrides_dict_updates_top_level_keys(tmp_path):
    config = {"model_type": "llama", "rope_scaling": {"factor": 8.0, "rope_type": "llama3"}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    overrides = {"max_position_embeddings": 99, "rope_scaling": {"factor": 2.0}}
    result = load_hf_config(tmp_path, overrides)
    assert result == {
        "model_type": "llama",
        "rope_scaling": {"factor": 2.0},
        "max_position_embeddings": 99,
    }


def test_hf_overrides_callable_returns_the_config(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"num_hidden_layers": 4}))

    def halve_layers(config):
        return {**config, "num_hidden_layers": config["num_hidden_layers"] // 2}

    assert load_hf_config(tmp_path, halve_layers) == {"num_hidden_layers": 2}
    with pytest.raises(TypeError, match="return the config dict"):
        load_hf_config(tmp_path, lambda config: None)
    with pytest.raises(TypeError, match="hf_overrides"):
        load_hf_config(tmp_path, [("num_hidden_layers", 1)])


def test_load_generation_config(tmp_path):
    assert load_generation_config(tmp_path) == {}
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": [2, 7]}))
    assert load_generation_config(tmp_path) == {"eos_token_id": [2, 7]}
    (tmp_path / "generation_config.json").write_text("oops")
    with pytest.raises(ValueError, match="generation_config.json"):
        load_generation_config(tmp_path)


def test_tiny_checkpoint_resolves_and_reads(tiny_model_dir):
    path = resolve_model_path(tiny_model_dir)
    assert path == tiny_model_dir
    config = load_hf_config(path)
    assert config["model_type"] == "llama"
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert load_generation_config(path)["eos_token_id"] == config["eos_token_id"] == 2
    assert os.path.isfile(os.path.join(path, "model.safetensors"))
