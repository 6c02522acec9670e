// MetricsRecorder: feeds EngineMetrics from the engine's step. Timestamps are kept on each
// Request (arrival, first scheduled, first and last token), so a step records with one
// clock read and a few additions per scheduled request; nothing is allocated per token.
#pragma once

#include <chrono>
#include <cstdint>

#include "octavo/engine_metrics.h"
#include "scheduler/request.h"

namespace octavo {

class MetricsRecorder {
 public:
  explicit MetricsRecorder(int32_t max_model_len);

  // Seconds on a monotonic clock; what the Request timestamps hold.
  static double now() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  }

  // A step ran: num_tokens tokens were computed for the scheduled requests.
  void on_step(int64_t num_tokens, bool graph);
  // A request was scheduled (its queue time ends the first time).
  void on_scheduled(Request& r, double now);
  // A request gained an output token at `now` (the step's end).
  void on_token(Request& r, double now);
  // A request finished (stopped, hit its length, or was aborted) at `now`.
  void on_finished(const Request& r, double now);

  // Counters and histograms; the caller fills the gauges and the counters it keeps itself
  // (preemptions, prefix-cache queries and hits).
  const EngineMetrics& metrics() const { return m_; }

 private:
  EngineMetrics m_;
};

}  // namespace octavo
