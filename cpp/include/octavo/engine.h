// The octavo engine: continuous batching over a paged KV cache, one model, one device.
// Requests go in as token ids with SamplingParams; step() runs one scheduler step and
// returns the requests that finished in it (and, for requests with report_new_tokens, the
// tokens each gained). Everything here throws octavo::Error
// subclasses (errors.h) on bad input, before any work starts.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "octavo/engine_metrics.h"
#include "octavo/sampling_params.h"

namespace octavo {

struct EngineConfig {
  std::string model_dir;             // HF layout: config.json + *.safetensors
  std::string config_json;           // if non-empty, used instead of model_dir/config.json
  // "auto" or "safetensors": read model_dir's safetensors files. "dummy" (vLLM's): random
  // weights of the config's shapes, from `seed`; no weight file is opened, so model_dir may
  // hold only config.json, or be empty when config_json is given.
  std::string load_format = "auto";
  std::string device = "cpu";        // "cpu" or "cuda"
  std::string dtype = "auto";        // CUDA compute dtype: auto, float32, float16, bfloat16 (CPU: float32)
  double gpu_memory_utilization = 0.9;  // CUDA: share of device memory the engine may take
  int32_t max_model_len = 0;         // 0: the model's max_position_embeddings
  int32_t max_num_seqs = 256;
  int32_t max_num_batched_tokens = 0;  // 0: max(8192, max_num_seqs)
  int32_t block_size = 16;
  int64_t kv_cache_memory_bytes = 0;   // 0: planned by the backend
  bool enable_chunked_prefill = true;
  // false: pure-decode steps replay graphs recorded at start-up (CUDA); true: every step
  // launches its kernels one by one (vLLM's enforce_eager).
  bool enforce_eager = false;
  // "fcfs" or "priority" (vLLM's): with "priority" the queue runs lower priority values
  // first (FCFS among equals) and preemption evicts the lowest-priority, newest request.
  std::string scheduling_policy = "fcfs";
  // Automatic prefix caching (vLLM's, on by default): full KV blocks are found by a hash of
  // their tokens and everything before them, shared across requests, kept after their
  // requests finish and evicted least-recently-used when blocks run short.
  bool enable_prefix_caching = true;
  int32_t max_logprobs = 20;
  uint64_t seed = 0;
  int32_t num_threads = 0;             // CPU threads; 0: all cores
  std::vector<int32_t> eos_token_ids;  // if non-empty, replaces config.json's eos_token_id
};

enum class FinishReason { kNone, kStop, kLength, kAbort };

// Logprobs at one position: the sampled token (for prompt logprobs, the prompt token
// there), then the top N of the model's raw distribution (before penalties and
// temperature), as vLLM reports them.
struct PositionLogprobs {
  int32_t sampled_token = -1;
  float sampled_logprob = 0.0f;
  int32_t sampled_rank = 0;            // tokens at least as likely, itself included (vLLM's rank)
  std::vector<int32_t> top_tokens;     // rank 1..N
  std::vector<float> top_logprobs;
};

// The output of one sample of a request (a request with n > 1 has n, told apart by index):
// its final output when it ends, and partial ones before that with report_new_tokens.
struct RequestOutput {
  uint64_t request_id = 0;
  int32_t index = 0;                      // which of the request's n samples (0..n-1)
  std::vector<int32_t> prompt_token_ids;
  std::vector<int32_t> token_ids;         // generated tokens
  std::vector<PositionLogprobs> logprobs; // one per generated token when requested
  // With prompt_logprobs: one per prompt token after the first (nothing predicts the first).
  std::vector<PositionLogprobs> prompt_logprobs;
  double cumulative_logprob = 0.0;        // sum of sampled tokens' raw logprobs, when requested
  FinishReason finish_reason = FinishReason::kNone;
  std::optional<int32_t> stop_token_id;   // the stop id (not EOS) that ended it
  // With SamplingParams::report_new_tokens: the tokens generated since the request's
  // previous output. An unfinished output carries only these (token_ids stays empty).
  std::vector<int32_t> new_token_ids;
  bool finished = false;
  int32_t num_cached_tokens = 0;          // prompt tokens it did not compute (prefix cache or fork)
};

// What the model and the memory plan came to, for callers that validate input.
struct EngineInfo {
  std::string architecture;
  int32_t vocab_size = 0;
  int32_t max_model_len = 0;
  int32_t max_num_seqs = 0;
  int32_t max_num_batched_tokens = 0;
  int32_t block_size = 0;
  int32_t num_kv_blocks = 0;
  int64_t kv_cache_bytes = 0;
  int64_t weight_bytes = 0;
  int32_t num_decode_graphs = 0;       // batch sizes with a recorded decode graph (0: eager)
  int64_t decode_graph_bytes = 0;      // device memory the recorded graphs took
  std::vector<int32_t> eos_token_ids;
  std::string device;
};

// Counters since construction.
struct EngineStats {
  int64_t num_steps = 0;
  int64_t num_graph_steps = 0;             // steps replayed from a decode graph
  int64_t num_preemptions = 0;
  int64_t num_prompt_tokens_computed = 0;  // includes recomputation after preemption
  int64_t num_generated_tokens = 0;
  int32_t num_running = 0;
  int32_t num_waiting = 0;
  int32_t num_free_blocks = 0;   // cached but unused blocks count as free (evicted on demand)
  // Prefix cache, in tokens, once per admission (vLLM's prefix_cache_queries and _hits).
  int64_t num_prefix_cache_requests = 0;
  int64_t num_prefix_cache_queries = 0;
  int64_t num_prefix_cache_hits = 0;
  int32_t num_cached_blocks = 0;  // blocks whose content the prefix cache can find
};

class Engine {
 public:
  explicit Engine(const EngineConfig& config);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Queues a request. Throws InvalidArgument for a duplicate id, an empty prompt,
  // a token outside the vocabulary, a prompt longer than max_model_len, bad params, or a
  // non-zero priority without scheduling_policy "priority".
  // Queues a request (params.n samples of it). Throws InvalidArgument for a duplicate id,
  // an empty prompt, a token outside the vocabulary, a prompt longer than max_model_len,
  // or bad params.
  void add_request(uint64_t request_id, std::vector<int32_t> prompt_token_ids,
                   const SamplingParams& params, int64_t priority = 0);

  // One scheduler step; returns the requests that finished (or were aborted) since the last
  // call, and an unfinished output (finished == false, new_token_ids only) for each request
  // with report_new_tokens that gained a token in this step.
  std::vector<RequestOutput> step();

  // Ends sample `index` of a request for a stop condition the caller found (a stop string):
  // it finishes with FinishReason::kStop and no stop_token_id, its blocks return to the pool at
  // once, and its final output is returned here (step() does not report it again).
  // std::nullopt if the request or sample is unknown or already finished.
  std::optional<RequestOutput> finish_request(uint64_t request_id, int32_t index = 0);

  // Removes a queued or running request and frees its blocks; step() reports each of its
  // unfinished samples with kAbort. Returns false if the id is unknown (already finished, say).
  bool abort(uint64_t request_id);

  // Empties the prefix cache (vLLM's reset_prefix_cache). Returns false, changing nothing,
  // while requests hold blocks, unless reset_running_requests preempts them first (they are
  // recomputed later).
  bool reset_prefix_cache(bool reset_running_requests = false);

  bool has_unfinished() const;
  const EngineInfo& info() const;
  EngineStats stats() const;
  // vLLM's metric set: gauges as of now, counters and histograms since construction.
  EngineMetrics metrics() const;
  // Device memory in use by everything on the device, and its total (both 0 on the CPU).
  void memory_info(int64_t& used_bytes, int64_t& total_bytes) const;

  // Sleep mode (vLLM's): frees the KV cache and, at level 2, the weights; at level 1 the
  // weights are copied to host memory first (on the CPU backend they stay where they are).
  // Throws InvalidArgument for a level other than 1 or 2, Error while requests are
  // unfinished (the KV cache holds them). Sleeping while asleep does nothing; while asleep
  // add_request throws Error.
  void sleep(int32_t level);
  // Restores what `tags` names ("weights", "kv_cache"; empty: both). Weights dropped at
  // level 2 are loaded again from the checkpoint (or regenerated, load_format "dummy"). Once
  // both are back, decode graphs are recorded again at the new addresses. Throws
  // InvalidArgument for an unknown tag.
  void wake_up(const std::vector<std::string>& tags);
  bool is_sleeping() const;

  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace octavo
