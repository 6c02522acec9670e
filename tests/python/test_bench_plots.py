"""`octavo bench ... --sweep-* --compare-hf --plot`: one JSON entry per sweep point, a valid PNG.

Tiny sweeps on the tiny Llama (2 points, a few prompts, a few tokens). No timing is
asserted. The plot tests are skipped when matplotlib is not installed (it is optional).
"""

from __future__ import annotations

import importlib.util
import json
import struct
import sys
from pathlib import Path

import pytest

from octavo.__main__ import main as octavo_main
from octavo.bench.plots import PNG_MAGIC

needs_matplotlib = pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None,
                                      reason="--plot needs matplotlib, which is not installed (optional)")
needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                 reason="--compare-hf needs torch for the hf backend")

THROUGHPUT = ["throughput", "--input-len", "8", "--output-len", "3", "--num-prompts", "4", "--disable-tqdm"]
LATENCY = ["latency", "--input-len", "8", "--output-len", "3", "--num-iters-warmup", "1", "--num-iters", "2"]


def _bench(argv: list[str], tmp_path: Path) -> dict:
    out = tmp_path / "result.json"
    octavo_main(["bench", *argv, "--output-json", str(out)])
    return json.loads(out.read_text())


def _assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 400 and height > 300


def _assert_throughput_points(points: list[dict], backends: list[str], values: list[int]) -> None:
    assert [(p["backend"], p["max_num_seqs"]) for p in points] == [(b, v) for b in backends for v in values]
    for p in points:
        assert p["num_requests"] == 4
        assert p["total_prompt_tokens"] == 4 * 8 and p["total_output_tokens"] == 4 * 3
        assert p["requests_per_second"] == pytest.approx(4 / p["elapsed_time"])
        assert p["output_tokens_per_second"] == pytest.approx(12 / p["elapsed_time"])


@needs_matplotlib
def test_throughput_sweep_writes_one_entry_per_point_and_a_png(make_model, capsys, tmp_path):
    model = make_model("llama")
    result = _bench([*THROUGHPUT, "--model", model, "--sweep-max-num-seqs", "1,2",
                     "--plot", str(tmp_path / "tput.png")], tmp_path)
    out = capsys.readouterr().out
    assert out.count("Throughput: ") == 2
    assert "== max_num_seqs 2, backend octavo ==" in out
    assert f"Plot written to {tmp_path / 'tput.png'}" in out
    assert result["sweep_parameter"] == "max_num_seqs"
    assert result["args"]["sweep_max_num_seqs"] == [1, 2]
    _assert_throughput_points(result["sweep"], ["octavo"], [1, 2])
    _assert_png(tmp_path / "tput.png")


@needs_matplotlib
def test_latency_sweep_writes_one_entry_per_batch_size_and_a_png(make_model, capsys, tmp_path):
    model = make_model("llama")
    result = _bench([*LATENCY, "--model", model, "--sweep-batch-size", "1,3",
                     "--plot", str(tmp_path / "lat.png")], tmp_path)
    out = capsys.readouterr().out
    assert out.count("Avg latency: ") == 2
    assert "(batch of 3, 8 in / 3 out" in out
    assert result["sweep_parameter"] == "batch_size"
    points = result["sweep"]
    assert [(p["backend"], p["batch_size"]) for p in points] == [("octavo", 1), ("octavo", 3)]
    for p in points:
        assert len(p["latencies"]) == 2
        assert sorted(p["percentiles"], key=int) == ["10", "25", "50", "75", "90", "99"]
        assert p["ms_per_output_token"] == pytest.approx(p["avg_latency"] * 1000 / 3)
    _assert_png(tmp_path / "lat.png")


@needs_matplotlib
@needs_torch
@pytest.mark.parametrize("which", ["throughput", "latency"])
def test_compare_hf_runs_the_sweep_for_both_backends(which, make_model, capsys, tmp_path):
    model = make_model("llama")
    sweep = ["--sweep-max-num-seqs", "1,4"] if which == "throughput" else ["--sweep-batch-size", "1,2"]
    argv = THROUGHPUT if which == "throughput" else LATENCY
    result = _bench([*argv, "--model", model, *sweep, "--compare-hf", "--plot", str(tmp_path / "cmp.png")],
                    tmp_path)
    capsys.readouterr()
    if which == "throughput":
        _assert_throughput_points(result["sweep"], ["octavo", "hf"], [1, 4])
    else:
        assert [(p["backend"], p["batch_size"]) for p in result["sweep"]] == [
            ("octavo", 1), ("octavo", 2), ("hf", 1), ("hf", 2)]
    _assert_png(tmp_path / "cmp.png")


@needs_matplotlib
def test_plot_without_a_sweep_draws_the_one_run_and_keeps_the_json(make_model, capsys, tmp_path):
    model = make_model("llama")
    result = _bench([*THROUGHPUT, "--model", model, "--plot", str(tmp_path / "one.png")], tmp_path)
    capsys.readouterr()
    assert "sweep" not in result and result["num_requests"] == 4 and result["backend"] == "octavo"
    _assert_png(tmp_path / "one.png")


def test_a_sweep_without_plot_needs_no_matplotlib(make_model, capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    result = _bench([*LATENCY, "--model", make_model("llama"), "--sweep-batch-size", "2,1"], tmp_path)
    capsys.readouterr()
    assert [p["batch_size"] for p in result["sweep"]] == [2, 1]


def test_plot_without_matplotlib_fails_before_running(make_model, capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(SystemExit) as e:
        octavo_main(["bench", *LATENCY, "--model", make_model("llama"), "--plot", str(tmp_path / "x.png")])
    assert "octavo bench latency: error: ImportError: --plot needs matplotlib" in str(e.value)
    assert "pip install matplotlib" in str(e.value)
    assert "Avg latency" not in capsys.readouterr().out
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("argv, message", [
    (["throughput", "--max-num-seqs", "4", "--sweep-max-num-seqs", "1,2"],
     "give --max-num-seqs or --sweep-max-num-seqs, not both"),
    (["latency", "--compare-hf", "--backend", "hf"], "--compare-hf runs both octavo and hf"),
    (["latency", "--plot", "/nonexistent-octavo-dir/x.png"], "the folder /nonexistent-octavo-dir does not exist"),
])
def test_refused_sweep_and_plot_options(argv, message, make_model, capsys):
    with pytest.raises(SystemExit) as e:
        octavo_main(["bench", *argv, "--model", make_model("llama")])
    assert message in str(e.value)
    assert "Throughput" not in capsys.readouterr().out


@pytest.mark.parametrize("values", ["1,x", "0,2", "2,2", ","])
def test_bad_sweep_values_are_usage_errors(values, capsys):
    with pytest.raises(SystemExit) as e:
        octavo_main(["bench", "throughput", "--model", "m", "--sweep-max-num-seqs", values])
    assert e.value.code == 2
    assert "--sweep-max-num-seqs" in capsys.readouterr().err
