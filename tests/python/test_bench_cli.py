"""`octavo bench throughput|latency` on the tiny Llama: output format, JSON fields, token counts.

No timing is asserted; the counts are checked against numbers worked out here (requests x
lengths, or the tokenizer run on the ShareGPT file the test writes).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from octavo.__main__ import main as octavo_main
from octavo.bench.datasets import random_requests, sharegpt_requests, usable_token_ids

THROUGHPUT_LINE = re.compile(
    r"^Throughput: (\d+\.\d{2}) requests/s, (\d+\.\d{2}) total tokens/s, (\d+\.\d{2}) output tokens/s$", re.M)
FLOAT = r"(\d+(?:\.\d+)?(?:e-?\d+)?)"
THROUGHPUT_FIELDS = {"elapsed_time", "num_requests", "total_num_tokens", "requests_per_second",
                     "tokens_per_second", "output_tokens_per_second", "backend", "args"}

BACKENDS = ["octavo", pytest.param("hf", marks=pytest.mark.skipif(
    __import__("importlib").util.find_spec("torch") is None, reason="the hf backend needs torch"))]


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCTAVO_LOG", "quiet")


def _run(argv: list[str], capsys: pytest.CaptureFixture[str], out: Path) -> tuple[str, dict]:
    octavo_main(["bench", *argv, "--output-json", str(out)])
    return capsys.readouterr().out, json.loads(out.read_text())


@pytest.mark.parametrize("backend", BACKENDS)
def test_throughput_random_counts_every_prompt_and_output_token(backend, make_model, capsys, tmp_path):
    model = make_model("llama")
    out, result = _run(["throughput", "--model", model, "--backend", backend, "--num-prompts", "4",
                        "--input-len", "8", "--output-len", "4", "--max-num-seqs", "3", "--disable-tqdm"],
                       capsys, tmp_path / "t.json")
    match = THROUGHPUT_LINE.search(out)
    assert match, out
    assert THROUGHPUT_FIELDS <= set(result)
    assert result["backend"] == backend
    assert result["num_requests"] == 4
    assert result["total_num_tokens"] == 4 * (8 + 4)
    assert result["total_output_tokens"] == 4 * 4
    assert result["args"]["input_len"] == 8 and result["args"]["backend"] == backend
    elapsed = result["elapsed_time"]
    assert elapsed > 0
    assert result["requests_per_second"] == pytest.approx(4 / elapsed)
    assert result["tokens_per_second"] == pytest.approx(48 / elapsed)
    assert result["output_tokens_per_second"] == pytest.approx(16 / elapsed)
    printed = [float(g) for g in match.groups()]
    expected = [result["requests_per_second"], result["tokens_per_second"], result["output_tokens_per_second"]]
    assert printed == pytest.approx(expected, abs=0.006)


@pytest.mark.parametrize("backend", BACKENDS)
def test_latency_prints_average_and_percentiles(backend, make_model, capsys, tmp_path):
    model = make_model("llama")
    out, result = _run(["latency", "--model", model, "--backend", backend, "--batch-size", "3",
                        "--input-len", "8", "--output-len", "4", "--num-iters-warmup", "1", "--num-iters", "2"],
                       capsys, tmp_path / "l.json")
    avg = re.search(rf"^Avg latency: {FLOAT} seconds$", out, re.M)
    assert avg, out
    for p in (10, 25, 50, 75, 90, 99):
        assert re.search(rf"^{p}% percentile latency: {FLOAT} seconds$", out, re.M), out
    assert re.search(rf"^Avg time per output token: {FLOAT} ms", out, re.M), out
    assert result["backend"] == backend
    assert len(result["latencies"]) == 2
    assert result["avg_latency"] == pytest.approx(np.mean(result["latencies"]))
    assert float(avg.group(1)) == pytest.approx(result["avg_latency"])
    assert sorted(result["percentiles"], key=int) == ["10", "25", "50", "75", "90", "99"]
    assert result["percentiles"]["50"] == pytest.approx(np.median(result["latencies"]))
    assert result["ms_per_output_token"] == pytest.approx(result["avg_latency"] * 1000 / 4)


def _config_only(model_dir: str, out: Path) -> Path:
    """A copy of the model folder without its weights (config, tokenizer, generation config)."""
    out.mkdir()
    for f in Path(model_dir).iterdir():
        if f.is_file() and ".safetensors" not in f.name:
            shutil.copy(f, out / f.name)
    assert not list(out.glob("*.safetensors*"))
    return out


def test_dummy_weights_need_only_config_and_tokenizer(make_model, capsys, tmp_path):
    model = _config_only(make_model("llama"), tmp_path / "config-only")
    out, result = _run(["throughput", "--model", str(model), "--load-format", "dummy", "--num-prompts", "3",
                        "--input-len", "6", "--output-len", "5", "--disable-tqdm"], capsys, tmp_path / "t.json")
    assert THROUGHPUT_LINE.search(out), out
    assert result["args"]["load_format"] == "dummy"
    assert result["num_requests"] == 3
    assert result["total_num_tokens"] == 3 * (6 + 5)
    assert result["total_output_tokens"] == 3 * 5

    out, result = _run(["latency", "--model", str(model), "--load-format", "dummy", "--batch-size", "2",
                        "--input-len", "6", "--output-len", "3", "--num-iters-warmup", "0", "--num-iters", "1"],
                       capsys, tmp_path / "l.json")
    assert result["ms_per_output_token"] == pytest.approx(result["avg_latency"] * 1000 / 3)



@pytest.mark.skipif(__import__("importlib").util.find_spec("torch") is None, reason="the hf backend needs torch")
def test_hf_backend_dummy_weights_build_the_configured_model(make_model, capsys, tmp_path):
    from octavo.bench.hf_backend import HFRunner

    model = _config_only(make_model("llama"), tmp_path / "config-only")
    runner = HFRunner(str(model), device="cpu", load_format="dummy")
    config = json.loads((model / "config.json").read_text())
    assert runner.model.config.num_hidden_layers == config["num_hidden_layers"]
    assert runner.model.get_input_embeddings().weight.shape == (config["vocab_size"], config["hidden_size"])
    assert runner.model.get_input_embeddings().weight.std().item() > 0  # initialised, not zeros
    out, result = _run(["throughput", "--model", str(model), "--load-format", "dummy", "--backend", "hf",
                        "--num-prompts", "2", "--input-len", "5", "--output-len", "3", "--disable-tqdm"],
                       capsys, tmp_path / "h.json")
    assert result["backend"] == "hf"
    assert result["total_output_tokens"] == 2 * 3
    with pytest.raises(ValueError, match="load_format must be"):
        HFRunner(str(model), device="cpu", load_format="pt")


def test_make_bench_model_writes_a_dummy_loadable_folder(tmp_path):
    script = Path(__file__).resolve().parents[2] / "bench" / "make_bench_model.py"
    subprocess.run([sys.executable, str(script), "llama3-8b", str(tmp_path / "m")], check=True,
                   capture_output=True)
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["hidden_size"] == 4096 and config["vocab_size"] == 128256
    from transformers import AutoTokenizer

    assert len(AutoTokenizer.from_pretrained(str(tmp_path / "m"))) == 1024


def _sharegpt_file(path: Path) -> list[tuple[str, str]]:
    """Writes a small ShareGPT file; returns the (prompt, reply) pairs the benchmark should use."""
    usable = [
        ("Return a new list containing all items from the iterable in ascending order.",
         "The sorted function returns a new sorted list from the items in iterable."),
        ("Raise an exception if the path does not exist.",
         "Use os.path.exists to check the path first, then raise FileNotFoundError."),
    ]
    gpt_first = ("Split the string at the first occurrence of sep, and return a 3-tuple.",
                 "This is str.partition: the part before the separator, the separator, the part after.")
    data = [{"conversations": [{"from": "human", "value": p}, {"from": "gpt", "value": r}]} for p, r in usable]
    data += [
        # A greeting before the first human turn is skipped; the reply after it is used.
        {"conversations": [{"from": "gpt", "value": "Hello, how can I help?"},
                           {"from": "human", "value": gpt_first[0]}, {"from": "gpt", "value": gpt_first[1]},
                           {"from": "human", "value": "Thanks, and for bytes?"}]},
        {"conversations": [{"from": "human", "value": "A question nobody answered."}]},  # no reply
        {"conversations": [{"from": "human", "value": "Is this too short?"}, {"from": "gpt", "value": "No"}]},
        {"conversations": []},
    ]
    path.write_text(json.dumps(data))
    return [*usable, gpt_first]


@pytest.mark.parametrize("backend", BACKENDS)
def test_throughput_sharegpt_uses_first_human_turn_and_reply_length(backend, make_model, capsys, tmp_path):
    from transformers import AutoTokenizer

    model = make_model("llama")
    pairs = _sharegpt_file(tmp_path / "sharegpt.json")
    tokenizer = AutoTokenizer.from_pretrained(model)
    prompt_tokens = sum(len(tokenizer(p).input_ids) for p, _ in pairs)
    output_tokens = sum(len(tokenizer(r, add_special_tokens=False).input_ids) for _, r in pairs)
    # "No" is below vLLM's 4-token minimum, so that conversation is dropped.
    assert len(tokenizer("No", add_special_tokens=False).input_ids) < 4

    out, result = _run(["throughput", "--model", model, "--backend", backend, "--dataset-name", "sharegpt",
                        "--dataset-path", str(tmp_path / "sharegpt.json"), "--num-prompts", str(len(pairs)),
                        "--disable-tqdm"], capsys, tmp_path / "t.json")
    assert THROUGHPUT_LINE.search(out), out
    assert result["num_requests"] == len(pairs)
    assert result["total_prompt_tokens"] == prompt_tokens
    assert result["total_output_tokens"] == output_tokens
    assert result["total_num_tokens"] == prompt_tokens + output_tokens


def test_sharegpt_repeats_requests_when_the_file_has_too_few(make_model, tmp_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(make_model("llama"))
    pairs = _sharegpt_file(tmp_path / "sharegpt.json")
    requests = sharegpt_requests(tmp_path / "sharegpt.json", tokenizer, 7, seed=3)
    assert len(requests) == 7
    assert {r.prompt for r in requests} == {p for p, _ in pairs}
    fixed = sharegpt_requests(tmp_path / "sharegpt.json", tokenizer, 3, output_len=5)
    assert [r.expected_output_len for r in fixed] == [5, 5, 5]


@pytest.mark.parametrize("caching", [True, False])
def test_throughput_shared_prefix_is_computed_once_with_prefix_caching(make_model, capsys, tmp_path, caching):
    model = make_model("llama")
    flag = "--enable-prefix-caching" if caching else "--no-enable-prefix-caching"
    _, result = _run(["throughput", "--model", model, "--num-prompts", "6", "--input-len", "5", "--output-len", "2",
                      "--prefix-len", "32", "--max-num-seqs", "2", flag, "--disable-tqdm"],
                     capsys, tmp_path / "p.json")
    assert result["total_num_tokens"] == 6 * (32 + 5 + 2)
    if caching:
        # The first request computes the two full prefix blocks; the five others find them.
        assert result["prefix_cache_hits"] == 5 * 32
        assert result["prompt_tokens_computed"] == 6 * 37 - 5 * 32
    else:
        assert result["prefix_cache_hits"] == 0
        assert result["prompt_tokens_computed"] == 6 * 37


def test_random_requests_share_the_prefix_and_keep_their_own_tokens():
    token_ids = np.arange(4, 1000)
    requests = random_requests(4, 6, 3, token_ids=token_ids, seed=1, prefix_len=10)
    assert all(r.prompt_len == 16 for r in requests)
    assert len({tuple(r.prompt_token_ids[:10]) for r in requests}) == 1
    assert len({tuple(r.prompt_token_ids[10:]) for r in requests}) == 4
    with pytest.raises(ValueError, match="prefix_len"):
        random_requests(4, 6, 3, token_ids=token_ids, prefix_len=-1)


def test_random_requests_lengths_stay_in_range_and_repeat_with_the_seed():
    token_ids = np.arange(4, 100)
    requests = random_requests(200, 20, 10, token_ids=token_ids, range_ratio=0.5, seed=7)
    prompt_lens = [r.prompt_len for r in requests]
    output_lens = [r.expected_output_len for r in requests]
    assert min(prompt_lens) >= 10 and max(prompt_lens) <= 30 and len(set(prompt_lens)) > 10
    assert min(output_lens) >= 5 and max(output_lens) <= 15 and len(set(output_lens)) > 5
    assert all(4 <= t < 100 for r in requests for t in r.prompt_token_ids)
    assert requests == random_requests(200, 20, 10, token_ids=token_ids, range_ratio=0.5, seed=7)
    assert requests != random_requests(200, 20, 10, token_ids=token_ids, range_ratio=0.5, seed=8)
    exact = random_requests(5, 20, 10, token_ids=token_ids, seed=0)
    assert [(r.prompt_len, r.expected_output_len) for r in exact] == [(20, 10)] * 5


def test_random_prompts_hold_no_special_tokens(make_model):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(make_model("llama"))
    ids = usable_token_ids(tokenizer, vocab_size=1000)
    assert ids.min() == 4 and ids.max() == len(tokenizer) - 1  # <unk> <s> </s> <pad> are 0..3
    assert len(ids) == len(tokenizer) - 4


@pytest.mark.skipif(__import__("importlib").util.find_spec("torch") is None, reason="needs torch")
def test_hf_runner_left_padded_batch_matches_one_prompt_at_a_time(make_model):
    from octavo.bench.hf_backend import HFRunner
    from octavo.testing.tiny_models import hf_greedy, random_prompts

    model = make_model("llama")
    prompts = random_prompts(5, 384, min_len=3, max_len=12, seed=11)
    runner = HFRunner(model, device="cpu", pad_token_id=0)
    got = runner.generate(prompts, [6, 2, 6, 4, 6], max_batch_size=3)
    want = hf_greedy(model, prompts, 6)
    assert got == [w[:n] for w, n in zip(want, [6, 2, 6, 4, 6])]


def test_cli_entry_points_run_as_subprocesses(make_model, tmp_path):
    model = make_model("llama")
    env = dict(os.environ, OCTAVO_LOG="quiet")
    out = tmp_path / "l.json"
    done = subprocess.run(
        [sys.executable, "-m", "octavo.bench", "latency", "--model", model, "--batch-size", "2", "--input-len", "8",
         "--output-len", "4", "--num-iters-warmup", "1", "--num-iters", "2", "--output-json", str(out)],
        capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert re.search(rf"^Avg latency: {FLOAT} seconds$", done.stdout, re.M), done.stdout
    assert len(json.loads(out.read_text())["latencies"]) == 2

    refused = subprocess.run(
        [sys.executable, "-m", "octavo", "bench", "throughput", "--model", str(tmp_path / "missing"),
         "--num-prompts", "2"], capture_output=True, text=True, env=env, timeout=300)
    assert refused.returncode == 1
    assert "octavo bench throughput: error: FileNotFoundError" in refused.stderr
