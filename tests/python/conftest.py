"""Shared fixtures: tiny tokenizers and checkpoints, built offline once per session.

`make_model(arch, **kwargs)` builds a checkpoint with octavo.testing.tiny_models and caches
it by its arguments, so every test asking for the same model shares one directory.
Tests marked `gpu` are skipped when torch sees no CUDA device.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

_REPO = Path(__file__).resolve().parents[2]
# Use the working tree's package when octavo is not installed.
if importlib.util.find_spec("octavo") is None:
    sys.path.insert(0, str(_REPO / "python"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "gpu: needs a CUDA device; skipped without one")


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if any("gpu" in item.keywords for item in items) and not _cuda_available():
        skip = pytest.mark.skip(reason="needs a CUDA device")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(autouse=True)
def _quiet_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine's start-up line goes to stderr; keep test output readable."""
    monkeypatch.setenv("OCTAVO_LOG", "quiet")


@pytest.fixture
def offline_hub_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """HF_HUB_OFFLINE on (the environment and the constant huggingface_hub read at import),
    and an empty hub cache in tmp_path; returns the cache folder."""
    from huggingface_hub import constants as hub_constants

    cache = tmp_path / "hub-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    return cache


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A trained byte-level BPE tokenizer (vocab 384, <unk> <s> </s> <pad> = 0..3)."""
    from octavo.testing.tiny_models import train_tiny_tokenizer

    return train_tiny_tokenizer(tmp_path_factory.mktemp("tokenizer"))


@pytest.fixture(scope="session")
def make_model(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer_dir: str):
    """make_model(arch="llama", **kwargs) -> model dir, built once per distinct arguments.

    kwargs are make_tiny_model's; the session tokenizer is used unless tokenizer_dir is given.
    """
    from octavo.testing.tiny_models import make_tiny_model

    cache: dict[str, str] = {}

    def build(arch: str = "llama", **kwargs) -> str:
        kwargs.setdefault("tokenizer_dir", tiny_tokenizer_dir)
        key = json.dumps({"arch": arch, **kwargs}, sort_keys=True, default=str)
        if key not in cache:
            out = tmp_path_factory.mktemp(f"model-{arch}")
            cache[key] = make_tiny_model(out, arch, **kwargs)
        return cache[key]

    return build


@pytest.fixture(scope="session")
def tiny_model_dir(make_model) -> str:
    """The default tiny Llama checkpoint (float32, 2 layers, hidden 64)."""
    return make_model("llama")
