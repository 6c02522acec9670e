#include "engine/metrics_recorder.h"

#include <algorithm>

namespace octavo {

namespace {

// vLLM's bucket bounds (vllm/v1/metrics/loggers.py), so that dashboards built for vLLM read
// octavo's histograms the same way.
const std::vector<double> kTimeToFirstTokenBuckets = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,
                                                       0.25,  0.5,   0.75, 1.0,  2.5,  5.0,  7.5,  10.0,
                                                       20.0,  40.0,  80.0, 160.0, 640.0, 2560.0};
const std::vector<double> kInterTokenLatencyBuckets = {0.01, 0.025, 0.05, 0.075, 0.1,  0.15, 0.2,
                                                        0.3,  0.4,   0.5,  0.75,  1.0,  2.5,  5.0,
                                                        7.5,  10.0,  20.0, 40.0,  80.0};
const std::vector<double> kRequestLatencyBuckets = {0.3,  0.5,  0.8,  1.0,  1.5,   2.0,   2.5,
                                                     5.0,  10.0, 15.0, 20.0, 30.0,  40.0,  50.0,
                                                     60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};
const std::vector<double> kIterationTokensBuckets = {1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384};

// 1, 2, 5, 10, 20, 50, ... up to max_value (vLLM's build_1_2_5_buckets).
std::vector<double> buckets_1_2_5(int64_t max_value) {
  std::vector<double> out;
  for (int64_t base = 1; base <= max_value; base *= 10) {
    for (int64_t m : {1, 2, 5}) {
      if (base * m <= max_value) out.push_back(static_cast<double>(base * m));
    }
  }
  return out;
}

}  // namespace

HistogramData::HistogramData(std::vector<double> upper_bounds)
    : bounds(std::move(upper_bounds)), counts(bounds.size() + 1, 0) {}

void HistogramData::observe(double value) {
  // Prometheus buckets are upper-inclusive: a value equal to a bound falls in that bucket.
  const size_t i = static_cast<size_t>(std::lower_bound(bounds.begin(), bounds.end(), value) - bounds.begin());
  ++counts[i];
  ++count;
  sum += value;
}

MetricsRecorder::MetricsRecorder(int32_t max_model_len) {
  m_.time_to_first_token = HistogramData(kTimeToFirstTokenBuckets);
  m_.inter_token_latency = HistogramData(kInterTokenLatencyBuckets);
  m_.e2e_request_latency = HistogramData(kRequestLatencyBuckets);
  m_.request_queue_time = HistogramData(kRequestLatencyBuckets);
  m_.request_prompt_tokens = HistogramData(buckets_1_2_5(max_model_len));
  m_.request_generation_tokens = HistogramData(buckets_1_2_5(max_model_len));
  m_.iteration_tokens = HistogramData(kIterationTokensBuckets);
}

void MetricsRecorder::on_step(int64_t num_tokens, bool graph) {
  ++m_.num_steps;
  if (graph) ++m_.num_graph_steps;
  m_.iteration_tokens.observe(static_cast<double>(num_tokens));
}

void MetricsRecorder::on_scheduled(Request& r, double now) {
  if (r.first_scheduled_time >= 0.0) return;
  r.first_scheduled_time = now;
  m_.request_queue_time.observe(now - r.arrival_time);
}

void MetricsRecorder::on_token(Request& r, double now) {
  ++m_.generation_tokens;
  if (r.first_token_time < 0.0) {
    r.first_token_time = now;
    m_.prompt_tokens += r.num_prompt_tokens;
    m_.time_to_first_token.observe(now - r.arrival_time);
  } else {
    m_.inter_token_latency.observe(now - r.last_token_time);
  }
  r.last_token_time = now;
}

void MetricsRecorder::on_finished(const Request& r, double now) {
  switch (r.finish_reason) {
    case FinishReason::kStop: ++m_.num_finished_stop; break;
    case FinishReason::kLength: ++m_.num_finished_length; break;
    case FinishReason::kAbort: ++m_.num_finished_abort; break;
    case FinishReason::kNone: break;
  }
  m_.e2e_request_latency.observe(now - r.arrival_time);
  m_.request_prompt_tokens.observe(static_cast<double>(r.num_prompt_tokens));
  m_.request_generation_tokens.observe(static_cast<double>(r.num_output_tokens()));
}

}  // namespace octavo
