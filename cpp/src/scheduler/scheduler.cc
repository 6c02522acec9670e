// The scheduler has no prefill or decode phase: every step, each request is given the
// tokens its num_computed_tokens still lacks of num_tokens(), so a prompt chunk and a
// one-token decode are the same thing at different sizes.
#include "scheduler/scheduler.h"

#include <algorithm>
#include <string>

#include "octavo/errors.h"

namespace octavo {

namespace {

// The priority queue's order: lower priority value first, then earlier arrival.
bool runs_before(const Request* a, const Request* b) {
  return a->priority != b->priority ? a->priority < b->priority : a->arrival < b->arrival;
}

}  // namespace

SchedulingPolicy parse_scheduling_policy(const std::string& name) {
  if (name == "fcfs") return SchedulingPolicy::kFcfs;
  if (name == "priority") return SchedulingPolicy::kPriority;
  throw InvalidArgument("scheduling_policy must be 'fcfs' or 'priority', got '" + name + "'");
}

Scheduler::Scheduler(const SchedulerConfig& config, KVCacheManager& kv_cache)
    : config_(config), kv_cache_(kv_cache) {
  if (config_.max_num_seqs <= 0) {
    throw InvalidArgument("max_num_seqs must be > 0, got " + std::to_string(config_.max_num_seqs));
  }
  if (config_.max_num_batched_tokens <= 0) {
    throw InvalidArgument("max_num_batched_tokens must be > 0, got " +
                          std::to_string(config_.max_num_batched_tokens));
  }
  // Without chunking a prompt must fit in one step's budget, or it would wait forever.
  if (!config_.enable_chunked_prefill && config_.max_num_batched_tokens < config_.max_model_len) {
    throw InvalidArgument("max_num_batched_tokens (" +
                          std::to_string(config_.max_num_batched_tokens) +
                          ") is smaller than max_model_len (" +
                          std::to_string(config_.max_model_len) +
                          ") with chunked prefill disabled");
  }
}

void Scheduler::add_request(Request* request) {
  if (request == nullptr) throw InvalidArgument("Scheduler::add_request: null request");
  if (config_.policy == SchedulingPolicy::kFcfs && request->priority != 0) {
    throw InvalidArgument("Got priority " + std::to_string(request->priority) +
                          " but Priority scheduling is not enabled.");
  }
  request->status = RequestStatus::kWaiting;
  enqueue(request, /*preempted=*/false);
}

void Scheduler::enqueue(Request* request, bool preempted) {
  if (config_.policy == SchedulingPolicy::kPriority) {
    // Preempted or new, a request takes its place by (priority, arrival); a preempted one
    // keeps its arrival, so it goes back ahead of later arrivals of the same priority.
    waiting_.insert(std::upper_bound(waiting_.begin(), waiting_.end(), request, runs_before), request);
    return;
  }
  if (!preempted) {
    waiting_.push_back(request);
    return;
  }
  // Preempted requests resume before anything that was already waiting, and among
  // themselves in arrival order, so the oldest work is redone first.
  auto front_end = waiting_.begin() + static_cast<std::ptrdiff_t>(num_preempted_in_step_);
  auto earlier = [](const Request* a, const Request* b) { return a->arrival < b->arrival; };
  waiting_.insert(std::upper_bound(waiting_.begin(), front_end, request, earlier), request);
  ++num_preempted_in_step_;
}

void Scheduler::add_request_front(Request* request) {
  if (request == nullptr) throw InvalidArgument("Scheduler::add_request_front: null request");
  request->status = RequestStatus::kWaiting;
  // Under kPriority the queue's order is (priority, arrival) for everyone; the samples carry
  // sample 0's priority and arrivals right after its own, which puts them ahead of later work.
  if (config_.policy == SchedulingPolicy::kPriority) {
    enqueue(request, /*preempted=*/false);
  } else {
    waiting_.push_front(request);
  }
}

ComputedBlocks Scheduler::computed_blocks_for(const Request& request) {
  // Prompt logprobs need the logits of every prompt position, so such a request reuses
  // nothing (as vLLM, which skips the prefix cache for them); its blocks are still cached.
  if (request.params.prompt_logprobs >= 0) return ComputedBlocks{};
  ComputedBlocks cached = kv_cache_.get_computed_blocks(request.id, request.token_ids);
  // A sample forks all but the last prompt token from sample 0 (partial block included),
  // once that one's prompt is computed; the last token is its own, for its own logits.
  // The partial block is copied before the step's forward, so its tokens must have been
  // written by an earlier step's.
  const Request* source = request.fork_source;
  const int64_t shared = request.num_prompt_tokens - 1;
  if (source != nullptr && source->status == RequestStatus::kRunning &&
      source->num_computed_tokens >= shared && shared > cached.num_tokens &&
      std::find(admitted_in_step_.begin(), admitted_in_step_.end(), source) == admitted_in_step_.end()) {
    ComputedBlocks forked = kv_cache_.get_forked_blocks(source->id, shared);
    if (!forked.blocks.empty()) return forked;
  }
  return cached;
}

SchedulerOutput Scheduler::schedule() {
  SchedulerOutput out;
  int32_t token_budget = config_.max_num_batched_tokens;
  num_preempted_in_step_ = 0;
  admitted_in_step_.clear();

  // Running requests first, in admission order. The request the policy ranks first is
  // never a victim while others run, so it always gets its blocks: every request finishes.
  size_t i = 0;
  while (i < running_.size()) {
    Request* request = running_[i];
    int64_t num_new = request->num_tokens() - request->num_computed_tokens;
    if (num_new > token_budget) {
      if (!config_.enable_chunked_prefill) {
        ++i;
        continue;
      }
      num_new = token_budget;
    }
    if (num_new <= 0) {
      ++i;
      continue;
    }
    bool scheduled = true;
    while (!kv_cache_.allocate_slots(request->id, request->token_ids, request->num_computed_tokens, num_new)) {
      Request* victim = preemption_victim();
      const auto victim_index = static_cast<size_t>(
          std::find(running_.begin(), running_.end(), victim) - running_.begin());
      preempt(victim);
      out.preempted.push_back(victim);
      if (victim == request) {
        scheduled = false;
        break;
      }
      if (victim_index < i) {
        // Under kPriority the victim may already have its tokens in this step: take them back.
        --i;
        auto row = std::find_if(out.scheduled.begin(), out.scheduled.end(),
                                [victim](const ScheduledRequest& s) { return s.request == victim; });
        if (row != out.scheduled.end()) {
          token_budget += row->num_new_tokens;
          out.scheduled.erase(row);
        }
      }
    }
    // It ranked last, so it went itself; the requests after it rank higher and may still
    // run (vLLM stops here, which under kPriority can leave a step empty; under kFcfs the
    // request was the newest, so nothing follows either way).
    if (!scheduled) continue;
    out.scheduled.push_back({request, static_cast<int32_t>(num_new)});
    token_budget -= static_cast<int32_t>(num_new);
    ++i;
  }

  // A step that had to preempt is short of blocks: admitting now would only take back
  // what was just preempted, or squeeze the running requests again next step.
  if (out.preempted.empty()) {
    while (!waiting_.empty() && static_cast<int32_t>(running_.size()) < config_.max_num_seqs &&
           token_budget > 0) {
      Request* request = waiting_.front();
      // Waiting requests hold no blocks (preemption freed them), so num_computed_tokens is 0.
      const ComputedBlocks computed = computed_blocks_for(*request);
      const int64_t num_computed = computed.num_tokens;
      int64_t num_new = request->num_tokens() - num_computed;
      if (num_new > token_budget) {
        // Queue order holds: a later, smaller prompt does not jump the queue.
        if (!config_.enable_chunked_prefill) break;
        num_new = token_budget;
      }
      // Admissions never preempt: a waiting request has no claim over running ones.
      if (!kv_cache_.allocate_slots(request->id, request->token_ids, num_computed, num_new, computed)) break;
      waiting_.pop_front();
      request->num_computed_tokens = num_computed;
      if (request->num_cached_tokens < 0) request->num_cached_tokens = static_cast<int32_t>(num_computed);
      admitted_in_step_.push_back(request);
      request->status = RequestStatus::kRunning;
      running_.push_back(request);
      out.scheduled.push_back({request, static_cast<int32_t>(num_new)});
      token_budget -= static_cast<int32_t>(num_new);
    }
  }

  out.num_batched_tokens = config_.max_num_batched_tokens - token_budget;
  return out;
}

void Scheduler::update_from_output(const SchedulerOutput& output) {
  for (const ScheduledRequest& s : output.scheduled) {
    Request* request = s.request;
    request->num_computed_tokens += s.num_new_tokens;
    if (request->num_computed_tokens > request->num_tokens()) {
      throw Error("Scheduler::update_from_output: request " + std::to_string(request->id) +
                  " computed " + std::to_string(request->num_computed_tokens) + " of " +
                  std::to_string(request->num_tokens()) + " tokens");
    }
  }
}

void Scheduler::finish(Request* request) {
  if (request == nullptr) throw InvalidArgument("Scheduler::finish: null request");
  if (!remove(request->id)) {
    throw Error("Scheduler::finish: request " + std::to_string(request->id) + " is not scheduled");
  }
  request->status = RequestStatus::kFinished;
}

bool Scheduler::abort(uint64_t request_id) { return remove(request_id); }

Request* Scheduler::preemption_victim() const {
  if (config_.policy == SchedulingPolicy::kFcfs) return running_.back();
  // vLLM v1: the largest (priority, arrival), i.e. the lowest priority, newest among equals.
  return *std::max_element(running_.begin(), running_.end(), runs_before);
}

int32_t Scheduler::preempt_all() {
  num_preempted_in_step_ = 0;
  int32_t n = 0;
  // In the order the block-shortage path would take them; enqueue() keeps the queue's order.
  while (!running_.empty()) {
    preempt(preemption_victim());
    ++n;
  }
  return n;
}

void Scheduler::preempt(Request* request) {
  auto it = std::find(running_.begin(), running_.end(), request);
  if (it != running_.end()) running_.erase(it);
  // Under kPriority the victim may have had slots allocated in this step that its forward
  // will now never write: the KV manager must not keep them findable in the prefix cache.
  kv_cache_.free(request->id, request->num_computed_tokens);
  request->num_computed_tokens = 0;
  request->status = RequestStatus::kWaiting;
  ++request->num_preemptions;
  ++num_preemptions_;
  enqueue(request, /*preempted=*/true);
}

bool Scheduler::remove(uint64_t request_id) {
  auto same_id = [request_id](const Request* r) { return r->id == request_id; };
  Request* found = nullptr;
  auto r = std::find_if(running_.begin(), running_.end(), same_id);
  if (r != running_.end()) {
    found = *r;
    running_.erase(r);
  } else {
    auto w = std::find_if(waiting_.begin(), waiting_.end(), same_id);
    if (w == waiting_.end()) return false;
    found = *w;
    waiting_.erase(w);
  }
  kv_cache_.free(found->id);
  found->status = RequestStatus::kFinished;
  return true;
}

}  // namespace octavo
