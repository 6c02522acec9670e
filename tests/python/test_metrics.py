"""LLM.get_metrics(): vLLM's metric objects, counted against workloads whose totals are
known by construction (prompt lengths, max_tokens with ignore_eos, a KV cache too small
for every request at once)."""

from __future__ import annotations

import math
import time

import pytest

from octavo import LLM, SamplingParams
from octavo.metrics import Counter, Gauge, Histogram
from octavo.testing.tiny_models import random_prompts

VOCAB = 384
BLOCK = 16
MAX_TOKENS = 6


def greedy(max_tokens: int) -> SamplingParams:
    return SamplingParams(temperature=0.0, max_tokens=max_tokens, ignore_eos=True)


def tokens(prompts: list[list[int]]) -> list[dict]:
    return [{"prompt_token_ids": p} for p in prompts]


def by_name(metrics) -> dict:
    out = {}
    for m in metrics:
        key = m.name if "finished_reason" not in m.labels else (m.name, m.labels["finished_reason"])
        assert key not in out, key
        out[key] = m
    return out


@pytest.fixture(scope="module")
def model(make_model) -> str:
    return make_model("llama")


@pytest.fixture(scope="module")
def prompts() -> list[list[int]]:
    return random_prompts(5, VOCAB, min_len=4, max_len=40, seed=3)


def test_metric_types_names_and_labels_follow_vllm(model):
    llm = LLM(model)
    m = by_name(llm.get_metrics())
    for name in ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc"):
        assert isinstance(m[name], Gauge)
    for name in ("vllm:prompt_tokens", "vllm:generation_tokens", "vllm:num_preemptions",
                 "vllm:prefix_cache_queries", "vllm:prefix_cache_hits", "octavo:num_steps"):
        assert isinstance(m[name], Counter) and m[name].value == 0
    for name in ("vllm:time_to_first_token_seconds", "vllm:inter_token_latency_seconds",
                 "vllm:e2e_request_latency_seconds", "vllm:iteration_tokens_total"):
        assert isinstance(m[name], Histogram) and m[name].count == 0 and m[name].buckets["+Inf"] == 0
    assert m["vllm:num_requests_running"].labels == {"model_name": model, "engine": "0"}
    # vLLM's bucket bounds, as Prometheus writes them.
    assert list(m["vllm:time_to_first_token_seconds"].buckets)[:3] == ["0.001", "0.005", "0.01"]
    assert list(m["vllm:e2e_request_latency_seconds"].buckets)[-2:] == ["7680.0", "+Inf"]
    assert llm.llm_engine.get_metrics() == llm.get_metrics()


def test_counts_match_a_known_workload(model, prompts):
    llm = LLM(model, max_model_len=128, block_size=BLOCK)
    start = time.monotonic()
    llm.generate(tokens(prompts), greedy(MAX_TOKENS), use_tqdm=False)
    wall = time.monotonic() - start
    m = by_name(llm.get_metrics())
    n = len(prompts)
    lengths = [len(p) for p in prompts]

    assert m["vllm:prompt_tokens"].value == sum(lengths)
    assert m["vllm:generation_tokens"].value == n * MAX_TOKENS
    assert m[("vllm:request_success", "length")].value == n
    assert m[("vllm:request_success", "stop")].value == 0
    assert m[("vllm:request_success", "abort")].value == 0
    assert m["vllm:num_preemptions"].value == 0
    for name in ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc"):
        assert m[name].value == 0.0

    for name in ("vllm:time_to_first_token_seconds", "vllm:e2e_request_latency_seconds",
                 "vllm:request_queue_time_seconds", "vllm:request_prompt_tokens",
                 "vllm:request_generation_tokens"):
        assert m[name].count == n, name
    # Every token after a request's first has one inter-token gap.
    assert m["vllm:inter_token_latency_seconds"].count == n * (MAX_TOKENS - 1)
    assert m["vllm:request_prompt_tokens"].sum == sum(lengths)
    assert m["vllm:request_generation_tokens"].sum == n * MAX_TOKENS
    # Cumulative buckets against the lengths counted here: 1-2-5 bounds up to max_model_len.
    prompt_hist = m["vllm:request_prompt_tokens"].buckets
    assert list(prompt_hist) == ["1.0", "2.0", "5.0", "10.0", "20.0", "50.0", "100.0", "+Inf"]
    for bound in (5, 10, 20, 50):
        assert prompt_hist[f"{bound}.0"] == sum(1 for x in lengths if x <= bound)
    # One step computes every prompt (the budget holds them all), then one token per
    # request per step: MAX_TOKENS steps, sum(lengths) + n * (MAX_TOKENS - 1) tokens.
    steps = m["vllm:iteration_tokens_total"]
    assert steps.count == m["octavo:num_steps"].value == llm._engine.stats().num_steps == MAX_TOKENS
    assert steps.sum == sum(lengths) + n * (MAX_TOKENS - 1)

    ttft, e2e = m["vllm:time_to_first_token_seconds"], m["vllm:e2e_request_latency_seconds"]
    assert 0.0 < ttft.sum <= e2e.sum <= n * wall
    for h in m.values():
        if isinstance(h, Histogram):
            values = list(h.buckets.values())
            assert values == sorted(values) and values[-1] == h.count, h.name


def test_preemption_counts_and_prompt_tokens_counted_once(model):
    # Three requests that each end up needing 4 blocks share 6: some must be preempted and
    # recomputed; vllm:prompt_tokens still counts each prompt once.
    long_prompts = random_prompts(3, VOCAB, min_len=BLOCK, max_len=BLOCK, seed=5)
    max_tokens = 4 * BLOCK - BLOCK - 2
    probe = LLM(model, max_model_len=4 * BLOCK, block_size=BLOCK, kv_cache_memory_bytes=1 << 22)
    block_bytes = probe._engine.info.kv_cache_bytes // probe._engine.info.num_kv_blocks
    llm = LLM(model, max_model_len=4 * BLOCK, block_size=BLOCK, kv_cache_memory_bytes=6 * block_bytes)
    assert llm._engine.info.num_kv_blocks == 6
    llm.generate(tokens(long_prompts), greedy(max_tokens), use_tqdm=False)
    m = by_name(llm.get_metrics())
    stats = llm._engine.stats()
    assert stats.num_preemptions > 0
    assert m["vllm:num_preemptions"].value == stats.num_preemptions
    assert m["vllm:prompt_tokens"].value == 3 * BLOCK
    assert stats.num_prompt_tokens_computed > 3 * BLOCK  # the recomputation, not counted above
    assert m["vllm:generation_tokens"].value == 3 * max_tokens
    assert m["vllm:time_to_first_token_seconds"].count == 3
    assert m["vllm:e2e_request_latency_seconds"].count == 3


def test_gauges_while_requests_run_and_wait(model, prompts):
    llm = LLM(model, max_model_len=128, block_size=BLOCK, max_num_seqs=2)
    llm.enqueue(tokens(prompts), greedy(MAX_TOKENS), use_tqdm=False)
    llm._engine.step()
    m = by_name(llm.get_metrics())
    assert m["vllm:num_requests_running"].value == 2.0
    assert m["vllm:num_requests_waiting"].value == float(len(prompts) - 2)
    # The two running requests hold the blocks their computed prompts fill.
    used = sum(math.ceil(len(p) / BLOCK) for p in prompts[:2])
    total = llm._engine.info.num_kv_blocks
    stats = llm._engine.stats()
    assert total - stats.num_free_blocks >= used
    assert m["vllm:kv_cache_usage_perc"].value == pytest.approx(1.0 - stats.num_free_blocks / total)
    assert m["vllm:kv_cache_usage_perc"].value >= used / total
    llm.wait_for_completion(use_tqdm=False)


def test_aborted_and_stopped_requests_count_by_reason(model, prompts):
    llm = LLM(model, max_model_len=128)
    ids = llm.enqueue(tokens(prompts[:2]), greedy(MAX_TOKENS), use_tqdm=False)
    llm.llm_engine.abort_request(ids[0])
    # A stop token the request meets: its first greedy token, found by a first run (which
    # also hands back the enqueued request still running, first).
    first = llm.generate(tokens(prompts[2:3]), greedy(1), use_tqdm=False)[-1].outputs[0].token_ids[0]
    llm.generate(tokens(prompts[2:3]), SamplingParams(temperature=0.0, max_tokens=MAX_TOKENS,
                                                      stop_token_ids=[first]), use_tqdm=False)
    llm.wait_for_completion(use_tqdm=False)
    m = by_name(llm.get_metrics())
    assert m[("vllm:request_success", "abort")].value == 1
    assert m[("vllm:request_success", "stop")].value == 1
    assert m[("vllm:request_success", "length")].value == 2  # the other enqueued one, the probe
    assert m["vllm:e2e_request_latency_seconds"].count == 4


def test_prefix_cache_queries_and_hits_count_tokens(model):
    # B shares A's first three full blocks; A has finished, so its blocks stay cached.
    [a] = random_prompts(1, VOCAB, min_len=3 * BLOCK + 2, max_len=3 * BLOCK + 2, seed=8)
    b = a[:3 * BLOCK] + random_prompts(1, VOCAB, min_len=5, max_len=5, seed=9)[0]
    llm = LLM(model, max_model_len=128, block_size=BLOCK)
    llm.generate(tokens([a]), greedy(2), use_tqdm=False)
    llm.generate(tokens([b]), greedy(2), use_tqdm=False)
    m = by_name(llm.get_metrics())
    assert m["vllm:prefix_cache_queries"].value == len(a) + len(b)
    assert m["vllm:prefix_cache_hits"].value == 3 * BLOCK

    off = LLM(model, max_model_len=128, block_size=BLOCK, enable_prefix_caching=False)
    off.generate(tokens([a]), greedy(2), use_tqdm=False)
    off.generate(tokens([b]), greedy(2), use_tqdm=False)
    assert by_name(off.get_metrics())["vllm:prefix_cache_hits"].value == 0


def test_n_samples_count_as_requests(model, prompts):
    llm = LLM(model, max_model_len=128)
    llm.generate(tokens(prompts[:2]), SamplingParams(n=3, temperature=1.0, seed=1, max_tokens=MAX_TOKENS,
                                                     ignore_eos=True), use_tqdm=False)
    m = by_name(llm.get_metrics())
    assert m["vllm:generation_tokens"].value == 2 * 3 * MAX_TOKENS
    assert m[("vllm:request_success", "length")].value == 6
    assert m["vllm:time_to_first_token_seconds"].count == 6
