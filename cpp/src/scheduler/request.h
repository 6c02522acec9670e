// Request: one sequence's life in the engine: one prompt and one sample of it (a caller's
// request with n > 1 is n of these, sharing request_id). Its computed-token count catches up
// with its token count (prompt plus generated); there is no separate prefill or decode phase.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "octavo/engine.h"
#include "octavo/sampling_params.h"

namespace octavo {

enum class RequestStatus { kWaiting, kRunning, kFinished };

struct Request {
  uint64_t id = 0;                      // unique per sequence: the scheduler's and KV manager's key
  uint64_t request_id = 0;              // the caller's id, shared by the n samples of a request
  int32_t index = 0;                    // which of the n samples
  // Sample 0 of the same request, whose prompt blocks this sample shares while that one runs
  // with its prompt computed (n > 1); null otherwise. The engine keeps it alive.
  const Request* fork_source = nullptr;
  uint64_t arrival = 0;                 // FCFS order; kept across preemption
  int64_t priority = 0;                 // scheduling_policy "priority": lower runs first
  std::vector<int32_t> token_ids;       // prompt, then generated tokens
  int32_t num_prompt_tokens = 0;
  int64_t num_computed_tokens = 0;      // tokens whose K/V sit in the cache
  RequestStatus status = RequestStatus::kWaiting;
  int32_t num_preemptions = 0;
  int32_t num_cached_tokens = -1;       // tokens found computed at first admission; -1 before

  SamplingParams params;
  uint64_t seed = 0;                    // resolved: params.seed or derived from the engine seed
  std::vector<PositionLogprobs> logprobs;
  // params.logit_bias as parallel arrays, the layout SamplingRow takes (set at admission).
  std::vector<int32_t> logit_bias_tokens;
  std::vector<float> logit_bias_values;
  // With params.prompt_logprobs >= 0: entry j is for prompt token j + 1. Entries are added
  // in order as chunks are computed; a preempted request recomputes its prompt but keeps
  // (and does not repeat) the entries it has. Every prompt position must be computed once:
  // a prefix cache must not skip the prompt of such a request (vLLM does the same).
  std::vector<PositionLogprobs> prompt_logprobs;
  double cumulative_logprob = 0.0;
  FinishReason finish_reason = FinishReason::kNone;
  std::optional<int32_t> stop_token_id;
  // Metrics timestamps (MetricsRecorder::now() seconds); -1: not yet.
  double arrival_time = 0.0;
  double first_scheduled_time = -1.0;
  double first_token_time = -1.0;
  double last_token_time = -1.0;

  int64_t num_tokens() const { return static_cast<int64_t>(token_ids.size()); }
  int32_t num_output_tokens() const {
    return static_cast<int32_t>(token_ids.size()) - num_prompt_tokens;
  }
};

}  // namespace octavo
