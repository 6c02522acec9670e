"""GPU tests: tiny checkpoints as in tests/python, and a skip when no CUDA device is usable."""

from __future__ import annotations

import json

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "gpu: needs a CUDA device and octavo's CUDA backend")


def _cuda_ready() -> bool:
    try:
        from octavo._native import _C
    except ImportError:
        return False
    return bool(_C.cuda_available())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not _cuda_ready():
        skip = pytest.mark.skip(reason="needs a CUDA device and a CUDA build of octavo")
        for item in items:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def make_model(tmp_path_factory: pytest.TempPathFactory):
    from octavo.testing.tiny_models import make_tiny_model, train_tiny_tokenizer

    tokenizer = train_tiny_tokenizer(tmp_path_factory.mktemp("tokenizer"))
    cache: dict[str, str] = {}

    def build(arch: str = "llama", **kwargs) -> str:
        kwargs.setdefault("tokenizer_dir", tokenizer)
        key = json.dumps({"arch": arch, **kwargs}, sort_keys=True, default=str)
        if key not in cache:
            cache[key] = make_tiny_model(tmp_path_factory.mktemp(f"model-{arch}"), arch, **kwargs)
        return cache[key]

    return build
