"""The C++ example (examples/generate.cc) generates HF's greedy tokens and fails cleanly.

The binary's path comes from OCTAVO_EXAMPLE_BIN (CI sets it; locally:
cmake -S . -B build/dev -G Ninja -DOCTAVO_EXAMPLES=ON && cmake --build build/dev,
then OCTAVO_EXAMPLE_BIN=build/dev/octavo_generate).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess

import pytest

from octavo.testing.tiny_models import hf_greedy

EOS = 2  # the tiny tokenizer's </s>, the checkpoint's eos_token_id


@pytest.fixture(scope="module")
def example_bin() -> str:
    path = os.environ.get("OCTAVO_EXAMPLE_BIN")
    if not path:
        pytest.skip("OCTAVO_EXAMPLE_BIN is not set: build the octavo_generate example "
                    "(-DOCTAVO_EXAMPLES=ON) and point OCTAVO_EXAMPLE_BIN at it")
    assert os.path.isfile(path) and os.access(path, os.X_OK), \
        f"OCTAVO_EXAMPLE_BIN={path!r} is not an executable file"
    return path


def _run(example_bin: str, *args: object) -> subprocess.CompletedProcess:
    env = dict(os.environ, OCTAVO_LOG="quiet")
    return subprocess.run([example_bin, *map(str, args)], capture_output=True, text=True,
                          errors="replace", timeout=120, env=env)


def _describe(proc: subprocess.CompletedProcess) -> str:
    status = (f"signal {signal.Signals(-proc.returncode).name}" if proc.returncode < 0
              else f"exit {proc.returncode}")
    return f"{status}; stdout={proc.stdout!r}; stderr={proc.stderr!r}"


def _hf_greedy_one_thread(*args, **kwargs) -> list[list[int]]:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a busy 2-core machine makes torch's thread pool crawl
    try:
        return hf_greedy(*args, **kwargs)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("prompt, max_tokens", [([5, 6, 7, 8], 6), ([42], 3)])
def test_example_prints_hf_greedy_token_ids(example_bin, make_model, prompt, max_tokens):
    model_dir = make_model("llama")
    proc = _run(example_bin, model_dir, max_tokens, *prompt)
    assert proc.returncode == 0, _describe(proc)
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, _describe(proc)
    generated = [int(tok) for tok in lines[0].split()]
    expected = _hf_greedy_one_thread(model_dir, [prompt], max_tokens, eos_token_id=EOS)[0]
    assert generated == expected
    assert 1 <= len(generated) <= max_tokens


def test_example_with_missing_model_dir_exits_non_zero_with_error(example_bin, tmp_path):
    missing = tmp_path / "no-such-model"
    proc = _run(example_bin, missing, 4, 5, 6)
    assert proc.returncode > 0, _describe(proc)
    assert "error" in proc.stderr and str(missing) in proc.stderr, _describe(proc)
    assert proc.stdout.strip() == ""


def test_example_with_truncated_weights_exits_non_zero_naming_the_file(example_bin, make_model,
                                                                         tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(make_model("llama"), model_dir)
    weights = model_dir / "model.safetensors"
    os.truncate(weights, weights.stat().st_size // 2)
    proc = _run(example_bin, model_dir, 4, 5, 6)
    assert proc.returncode > 0, _describe(proc)
    assert "error" in proc.stderr and str(weights) in proc.stderr, _describe(proc)


def test_example_with_token_outside_vocabulary_exits_non_zero_naming_it(example_bin, make_model):
    proc = _run(example_bin, make_model("llama"), 4, 5, 99999)
    assert proc.returncode > 0, _describe(proc)
    assert "99999" in proc.stderr, _describe(proc)


def test_example_without_arguments_prints_usage(example_bin):
    proc = _run(example_bin)
    assert proc.returncode > 0, _describe(proc)
    assert "usage" in proc.stderr.lower(), _describe(proc)


@pytest.mark.parametrize("args", [("4", "five"), ("four", "5")], ids=["token_id", "max_tokens"])
def test_example_with_non_numeric_argument_exits_non_zero_without_crashing(example_bin, make_model,
                                                                            args):
    proc = _run(example_bin, make_model("llama"), *args)
    assert proc.returncode > 0, _describe(proc)
    assert "error" in proc.stderr, _describe(proc)
