// EngineMetrics: vLLM's engine metrics (the vllm:* Prometheus set that LLM.get_metrics()
// reads), kept by the engine as plain counters and fixed-bucket histograms so that
// recording costs a clock read per step and a few additions per request, nothing per token.
#pragma once

#include <cstdint>
#include <vector>

namespace octavo {

// Observations in fixed buckets. counts[i] holds the observations <= bounds[i] and above
// bounds[i - 1] (not cumulative); counts.back() those above every bound (+Inf).
struct HistogramData {
  std::vector<double> bounds;
  std::vector<int64_t> counts;  // bounds.size() + 1
  int64_t count = 0;
  double sum = 0.0;

  HistogramData() = default;
  explicit HistogramData(std::vector<double> upper_bounds);
  void observe(double value);
};

struct EngineMetrics {
  // Gauges, read when metrics() is called.
  int32_t num_requests_running = 0;
  int32_t num_requests_waiting = 0;
  double kv_cache_usage = 0.0;  // share of KV blocks in use, 0..1

  // Counters since construction.
  int64_t num_steps = 0;
  int64_t num_graph_steps = 0;
  int64_t num_preemptions = 0;
  int64_t prompt_tokens = 0;      // each request's prompt once, when its prefill completes
  int64_t generation_tokens = 0;
  int64_t prefix_cache_queries = 0;  // tokens looked up in the prefix cache
  int64_t prefix_cache_hits = 0;     // of those, tokens found
  int64_t num_finished_stop = 0;     // vllm:request_success by finished_reason
  int64_t num_finished_length = 0;
  int64_t num_finished_abort = 0;

  // Histograms, with vLLM's bucket bounds.
  HistogramData time_to_first_token;   // seconds, arrival to first token
  HistogramData inter_token_latency;   // seconds between a request's consecutive tokens
  HistogramData e2e_request_latency;   // seconds, arrival to finish
  HistogramData request_queue_time;    // seconds, arrival to first scheduled
  HistogramData request_prompt_tokens;
  HistogramData request_generation_tokens;
  HistogramData iteration_tokens;      // tokens scheduled per step (its count: the steps)
};

}  // namespace octavo
