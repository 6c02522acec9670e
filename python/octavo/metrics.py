"""vLLM's metric objects (``vllm.v1.metrics.reader``) built from the engine's counters.

``LLM.get_metrics()`` returns Counter, Gauge and Histogram objects named as vLLM's
Prometheus metrics (``vllm:...``), labelled with ``model_name`` and ``engine``. Counter
names drop Prometheus's ``_total`` suffix, as vLLM's reader does; histogram buckets are
cumulative and keyed by their upper bound as Prometheus writes it (``"0.5"``, ``"+Inf"``).
The engine keeps the numbers in C++; this module only names and shapes them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Metric:
    """A metric's name and its key=value labels."""

    name: str
    labels: dict[str, str]


@dataclass
class Counter(Metric):
    """A monotonically increasing integer counter."""

    value: int


@dataclass
class Vector(Metric):
    """An ordered array of integer counters (vLLM uses it only for speculative decoding,
    which octavo does not do, so no metric of this type is produced)."""

    values: list[int]


@dataclass
class Gauge(Metric):
    """A numerical value that can go up or down."""

    value: float


@dataclass
class Histogram(Metric):
    """Observations in buckets: ``buckets`` maps each upper bound to the number of
    observations at or below it (cumulative); ``"+Inf"`` always exists and equals ``count``."""

    count: int
    sum: float
    buckets: dict[str, int]


def _bound_label(bound: float) -> str:
    # Prometheus writes bounds as Python's repr of a float: 1 -> "1.0", 0.025 -> "0.025".
    return repr(float(bound))


def _histogram(name: str, labels: dict[str, str], data) -> Histogram:
    buckets: dict[str, int] = {}
    running = 0
    for bound, n in zip(data.bounds, data.counts):
        running += n
        buckets[_bound_label(bound)] = running
    buckets["+Inf"] = running + data.counts[-1]
    return Histogram(name=name, labels=dict(labels), count=data.count, sum=data.sum, buckets=buckets)


def snapshot(native, model_name: str) -> list[Metric]:
    """The metrics of one engine (``native``: octavo._C.EngineMetrics)."""
    labels = {"model_name": model_name, "engine": "0"}
    out: list[Metric] = [
        Gauge("vllm:num_requests_running", dict(labels), float(native.num_requests_running)),
        Gauge("vllm:num_requests_waiting", dict(labels), float(native.num_requests_waiting)),
        Gauge("vllm:kv_cache_usage_perc", dict(labels), float(native.kv_cache_usage)),
        Counter("vllm:num_preemptions", dict(labels), native.num_preemptions),
        Counter("vllm:prompt_tokens", dict(labels), native.prompt_tokens),
        Counter("vllm:generation_tokens", dict(labels), native.generation_tokens),
        Counter("vllm:prefix_cache_queries", dict(labels), native.prefix_cache_queries),
        Counter("vllm:prefix_cache_hits", dict(labels), native.prefix_cache_hits),
    ]
    for reason, value in (("stop", native.num_finished_stop), ("length", native.num_finished_length),
                          ("abort", native.num_finished_abort)):
        out.append(Counter("vllm:request_success", {**labels, "finished_reason": reason}, value))
    for name, data in (
        ("vllm:time_to_first_token_seconds", native.time_to_first_token),
        ("vllm:inter_token_latency_seconds", native.inter_token_latency),
        ("vllm:e2e_request_latency_seconds", native.e2e_request_latency),
        ("vllm:request_queue_time_seconds", native.request_queue_time),
        ("vllm:request_prompt_tokens", native.request_prompt_tokens),
        ("vllm:request_generation_tokens", native.request_generation_tokens),
        ("vllm:iteration_tokens_total", native.iteration_tokens),
    ):
        out.append(_histogram(name, labels, data))
    # octavo's own (vLLM has no step counter; vllm:iteration_tokens_total's count equals it).
    out.append(Counter("octavo:num_steps", dict(labels), native.num_steps))
    out.append(Counter("octavo:num_graph_steps", dict(labels), native.num_graph_steps))
    return out
