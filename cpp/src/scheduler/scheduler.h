// Scheduler: the policy of continuous batching. Each step it gives running requests
// (in admission order) the tokens they still need, then admits waiting requests in queue
// order, under max_num_seqs and a token budget; prompts longer than the budget are chunked.
// The queue is first-come-first-served, or with SchedulingPolicy::kPriority ordered by
// (priority, arrival): lower values first, FCFS among equals (vLLM's policies).
// When the KV cache runs out of blocks, a running request is preempted (the newest; under
// kPriority the one with the largest priority value, the newest among those): its blocks
// are freed and it goes back to the queue to be recomputed. No request is ever dropped.
// Decode and prefill rows share a step. A request admitted from the queue starts from what
// the KV-cache manager already holds for it: the prompt blocks of the sample it was forked
// from (n > 1), or its leading blocks found in the prefix cache.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "kv_cache/kv_cache_manager.h"
#include "scheduler/request.h"

namespace octavo {

enum class SchedulingPolicy { kFcfs, kPriority };

// "fcfs" or "priority" (vLLM's scheduling_policy values); throws InvalidArgument otherwise.
SchedulingPolicy parse_scheduling_policy(const std::string& name);

struct SchedulerConfig {
  SchedulingPolicy policy = SchedulingPolicy::kFcfs;
  int32_t max_num_seqs = 256;
  int32_t max_num_batched_tokens = 8192;
  int32_t max_model_len = 2048;
  bool enable_chunked_prefill = true;
};

struct ScheduledRequest {
  Request* request = nullptr;
  int32_t num_new_tokens = 0;  // tokens computed this step, from request->num_computed_tokens
};

struct SchedulerOutput {
  std::vector<ScheduledRequest> scheduled;  // running order: earlier admissions first
  std::vector<Request*> preempted;          // preempted during this step
  int32_t num_batched_tokens = 0;
  bool empty() const { return scheduled.empty(); }
};

class Scheduler {
 public:
  Scheduler(const SchedulerConfig& config, KVCacheManager& kv_cache);

  // The scheduler borrows the request; the caller owns it until finish() or abort().
  // Under kFcfs a non-zero request->priority throws InvalidArgument.
  void add_request(Request* request);
  // Queues the request ahead of everything waiting: for the samples of a request that is
  // already running, so that they are admitted while it still holds the blocks they share.
  void add_request_front(Request* request);
  SchedulerOutput schedule();
  // After the forward: advances num_computed_tokens of every scheduled request.
  void update_from_output(const SchedulerOutput& output);
  // Removes a finished request (status kFinished) and frees its blocks.
  void finish(Request* request);
  // Removes a waiting or running request by id and frees its blocks; false if unknown.
  bool abort(uint64_t request_id);
  // Preempts every running request (they recompute later); returns how many.
  int32_t preempt_all();

  int32_t num_waiting() const { return static_cast<int32_t>(waiting_.size()); }
  int32_t num_running() const { return static_cast<int32_t>(running_.size()); }
  bool has_unfinished() const { return !waiting_.empty() || !running_.empty(); }
  int64_t num_preemptions() const { return num_preemptions_; }

 private:
  // The running request to evict when blocks run out.
  Request* preemption_victim() const;
  void preempt(Request* request);
  // Puts a request into waiting_ at its place under the policy.
  void enqueue(Request* request, bool preempted);
  // What a waiting request (holding no blocks) can start from.
  ComputedBlocks computed_blocks_for(const Request& request);
  bool remove(uint64_t request_id);

  SchedulerConfig config_;
  KVCacheManager& kv_cache_;
  std::deque<Request*> waiting_;
  std::vector<Request*> running_;
  int64_t num_preemptions_ = 0;
  // kFcfs: how many requests at the front of waiting_ were preempted during the current
  // schedule(); they are kept in arrival order among themselves.
  size_t num_preempted_in_step_ = 0;
  // Requests admitted during the current schedule(): their blocks may include prefix-cache
  // hits that this step's forward has yet to write, so nothing may fork from them yet.
  std::vector<const Request*> admitted_in_step_;
};

}  // namespace octavo
