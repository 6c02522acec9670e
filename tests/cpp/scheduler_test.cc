#include "scheduler/scheduler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "octavo/errors.h"

namespace octavo {
namespace {

using Rows = std::vector<std::pair<uint64_t, int32_t>>;  // (request id, num_new_tokens)

Rows rows_of(const SchedulerOutput& out) {
  Rows rows;
  for (const ScheduledRequest& s : out.scheduled) {
    rows.emplace_back(s.request->id, s.num_new_tokens);
  }
  return rows;
}

std::vector<uint64_t> ids_of(const std::vector<Request*>& requests) {
  std::vector<uint64_t> ids;
  for (const Request* r : requests) ids.push_back(r->id);
  return ids;
}

// A stand-in for the engine: owns the requests, samples a token for every request whose
// computed count caught up with its token count, and finishes a request once it has
// its quota of output tokens.
class FakeEngine {
 public:
  FakeEngine(const SchedulerConfig& config, int32_t num_blocks, int32_t block_size)
      : kv(num_blocks, block_size), scheduler(config, kv) {}

  Request* add(uint64_t id, int32_t prompt_len, int32_t num_outputs, int64_t priority = 0) {
    auto request = std::make_unique<Request>();
    request->id = id;
    request->arrival = next_arrival_++;
    request->priority = priority;
    for (int32_t t = 0; t < prompt_len; ++t) {
      request->token_ids.push_back(static_cast<int32_t>(id * 1000 + t));
    }
    request->num_prompt_tokens = prompt_len;
    Request* raw = request.get();
    requests[id] = std::move(request);
    quota[id] = num_outputs;
    scheduler.add_request(raw);
    return raw;
  }

  static int32_t token_for(uint64_t id, int32_t output_index) {
    return -static_cast<int32_t>(id * 1000 + output_index) - 1;
  }

  SchedulerOutput step() {
    SchedulerOutput out = scheduler.schedule();
    scheduler.update_from_output(out);
    for (const ScheduledRequest& s : out.scheduled) {
      Request* r = s.request;
      if (r->num_computed_tokens != r->num_tokens()) continue;
      r->token_ids.push_back(token_for(r->id, r->num_output_tokens()));
      if (r->num_output_tokens() >= quota[r->id]) {
        r->status = RequestStatus::kFinished;
        scheduler.finish(r);
        finished.push_back(r->id);
      }
    }
    return out;
  }

  Request* get(uint64_t id) { return requests.at(id).get(); }

  KVCacheManager kv;
  Scheduler scheduler;
  std::map<uint64_t, std::unique_ptr<Request>> requests;
  std::map<uint64_t, int32_t> quota;
  std::vector<uint64_t> finished;

 private:
  uint64_t next_arrival_ = 0;
};

SchedulerConfig config_with(int32_t max_num_seqs, int32_t budget, int32_t max_model_len = 64,
                            bool chunked = true, SchedulingPolicy policy = SchedulingPolicy::kFcfs) {
  SchedulerConfig config;
  config.policy = policy;
  config.max_num_seqs = max_num_seqs;
  config.max_num_batched_tokens = budget;
  config.max_model_len = max_model_len;
  config.enable_chunked_prefill = chunked;
  return config;
}

TEST(Scheduler, PromptIsComputedInOneStepThenOneTokenPerStep) {
  FakeEngine e(config_with(8, 64), 16, 4);
  Request* a = e.add(1, 5, 3);
  EXPECT_EQ(rows_of(e.step()), (Rows{{1, 5}}));
  EXPECT_EQ(a->num_computed_tokens, 5);
  EXPECT_EQ(a->num_tokens(), 6);
  EXPECT_EQ(rows_of(e.step()), (Rows{{1, 1}}));
  EXPECT_EQ(rows_of(e.step()), (Rows{{1, 1}}));
  EXPECT_EQ(e.finished, (std::vector<uint64_t>{1}));
  EXPECT_EQ(a->num_output_tokens(), 3);
  EXPECT_FALSE(e.scheduler.has_unfinished());
  EXPECT_EQ(e.kv.num_free_blocks(), 16);
  EXPECT_TRUE(e.scheduler.schedule().empty());
}

TEST(Scheduler, LongPromptIsChunkedIntoBudgetSizedPiecesThenDecodes) {
  FakeEngine e(config_with(8, 8), 16, 4);
  Request* a = e.add(1, 20, 2);
  std::vector<int32_t> chunks;
  std::vector<int64_t> computed;
  std::vector<int32_t> outputs;
  while (e.scheduler.has_unfinished()) {
    SchedulerOutput out = e.step();
    ASSERT_EQ(out.scheduled.size(), 1u);
    chunks.push_back(out.scheduled[0].num_new_tokens);
    computed.push_back(a->num_computed_tokens);
    outputs.push_back(a->num_output_tokens());
    ASSERT_LT(chunks.size(), 10u);
  }
  EXPECT_EQ(chunks, (std::vector<int32_t>{8, 8, 4, 1}));
  EXPECT_EQ(computed, (std::vector<int64_t>{8, 16, 20, 21}));
  // No token is sampled until the whole prompt is in the cache.
  EXPECT_EQ(outputs, (std::vector<int32_t>{0, 0, 1, 2}));
}

TEST(Scheduler, TokenBudgetIsSharedAcrossRequestsInArrivalOrder) {
  FakeEngine e(config_with(8, 10), 32, 4);
  e.add(1, 6, 5);
  e.add(2, 6, 5);
  e.add(3, 6, 5);
  SchedulerOutput s1 = e.step();
  EXPECT_EQ(rows_of(s1), (Rows{{1, 6}, {2, 4}}));
  EXPECT_EQ(s1.num_batched_tokens, 10);
  EXPECT_EQ(e.scheduler.num_waiting(), 1);
  SchedulerOutput s2 = e.step();
  EXPECT_EQ(rows_of(s2), (Rows{{1, 1}, {2, 2}, {3, 6}}));
  EXPECT_EQ(s2.num_batched_tokens, 9);
  SchedulerOutput s3 = e.step();
  EXPECT_EQ(rows_of(s3), (Rows{{1, 1}, {2, 1}, {3, 1}}));
  EXPECT_EQ(s3.num_batched_tokens, 3);
}

TEST(Scheduler, RunningRequestsUseTheBudgetBeforeAdmissions) {
  FakeEngine e(config_with(8, 4), 32, 4);
  e.add(1, 4, 5);
  e.add(2, 4, 5);
  EXPECT_EQ(rows_of(e.step()), (Rows{{1, 4}}));
  EXPECT_EQ(rows_of(e.step()), (Rows{{1, 1}, {2, 3}}));
  EXPECT_EQ(rows_of(e.step()), (Rows{{1, 1}, {2, 1}}));
}

TEST(Scheduler, MaxNumSeqsCapsRunningRequests) {
  FakeEngine e(config_with(2, 100), 32, 4);
  e.add(1, 3, 1);
  e.add(2, 3, 3);
  e.add(3, 3, 1);
  EXPECT_EQ(rows_of(e.step()), (Rows{{1, 3}, {2, 3}}));
  EXPECT_EQ(e.scheduler.num_waiting(), 1);
  EXPECT_EQ(e.finished, (std::vector<uint64_t>{1}));
  // Request 1 finished, which makes room for request 3.
  EXPECT_EQ(rows_of(e.step()), (Rows{{2, 1}, {3, 3}}));
  EXPECT_EQ(e.scheduler.num_running(), 1);
  EXPECT_EQ(rows_of(e.step()), (Rows{{2, 1}}));
  EXPECT_FALSE(e.scheduler.has_unfinished());
}

TEST(Scheduler, DecodeRowsAndPrefillChunksShareAStep) {
  FakeEngine e(config_with(8, 6), 32, 4);
  e.add(1, 4, 10);
  EXPECT_EQ(rows_of(e.step()), (Rows{{1, 4}}));
  Request* b = e.add(2, 12, 2);
  EXPECT_EQ(rows_of(e.step()), (Rows{{1, 1}, {2, 5}}));
  EXPECT_EQ(rows_of(e.step()), (Rows{{1, 1}, {2, 5}}));
  EXPECT_EQ(b->num_output_tokens(), 0);
  EXPECT_EQ(rows_of(e.step()), (Rows{{1, 1}, {2, 2}}));
  EXPECT_EQ(b->num_output_tokens(), 1);
  EXPECT_EQ(rows_of(e.step()), (Rows{{1, 1}, {2, 1}}));
}

TEST(Scheduler, AdmissionsFollowArrivalOrder) {
  FakeEngine e(config_with(8, 4), 32, 4);
  e.add(3, 3, 5);  // ids deliberately out of order: arrival decides, not id
  e.add(1, 3, 5);
  e.add(2, 3, 5);
  EXPECT_EQ(rows_of(e.step()), (Rows{{3, 3}, {1, 1}}));
  EXPECT_EQ(rows_of(e.step()), (Rows{{3, 1}, {1, 2}, {2, 1}}));
}

TEST(Scheduler, WaitingRequestThatDoesNotFitHoldsBackLaterOnes) {
  FakeEngine e(config_with(8, 100), 4, 4);
  e.add(1, 8, 10);
  EXPECT_EQ(rows_of(e.step()), (Rows{{1, 8}}));
  e.add(2, 8, 1);  // needs 2 blocks
  e.add(3, 2, 1);  // needs 1 block, would fit
  // Request 1 takes a third block for its 9th token, leaving one free.
  EXPECT_EQ(rows_of(e.step()), (Rows{{1, 1}}));
  EXPECT_EQ(e.kv.num_free_blocks(), 1);
  EXPECT_EQ(e.scheduler.num_waiting(), 2);
  EXPECT_EQ(e.scheduler.num_preemptions(), 0);
}

TEST(Scheduler, OlderRequestNeedingABlockPreemptsTheNewestWhichRecomputesFromZero) {
  FakeEngine e(config_with(8, 100), 4, 4);
  Request* a = e.add(1, 7, 4);
  Request* b = e.add(2, 7, 4);
  EXPECT_EQ(rows_of(e.step()), (Rows{{1, 7}, {2, 7}}));
  EXPECT_EQ(e.kv.num_free_blocks(), 0);
  EXPECT_EQ(rows_of(e.step()), (Rows{{1, 1}, {2, 1}}));

  // Both now hold 9 tokens and need a third block; none is free.
  SchedulerOutput s3 = e.step();
  EXPECT_EQ(rows_of(s3), (Rows{{1, 1}}));
  EXPECT_EQ(ids_of(s3.preempted), (std::vector<uint64_t>{2}));
  EXPECT_EQ(b->status, RequestStatus::kWaiting);
  EXPECT_EQ(b->num_computed_tokens, 0);
  EXPECT_EQ(b->num_preemptions, 1);
  EXPECT_EQ(a->num_preemptions, 0);
  EXPECT_EQ(e.scheduler.num_preemptions(), 1);
  EXPECT_TRUE(e.kv.block_table(2).empty());
  EXPECT_EQ(e.kv.block_table(1).size(), 3u);
  EXPECT_EQ(e.scheduler.num_running(), 1);
  EXPECT_EQ(e.scheduler.num_waiting(), 1);

  // Request 2 needs 3 blocks for its 9 tokens; only 1 is free until request 1 finishes.
  EXPECT_EQ(rows_of(e.step()), (Rows{{1, 1}}));
  EXPECT_EQ(e.finished, (std::vector<uint64_t>{1}));
  EXPECT_EQ(e.kv.num_free_blocks(), 4);

  // Recomputed from scratch: prompt plus the two tokens it had already generated.
  EXPECT_EQ(rows_of(e.step()), (Rows{{2, 9}}));
  EXPECT_EQ(rows_of(e.step()), (Rows{{2, 1}}));
  EXPECT_EQ(e.finished, (std::vector<uint64_t>{1, 2}));
  std::vector<int32_t> expected_outputs;
  for (int32_t i = 0; i < 4; ++i) expected_outputs.push_back(FakeEngine::token_for(2, i));
  EXPECT_EQ(std::vector<int32_t>(b->token_ids.begin() + 7, b->token_ids.end()), expected_outputs);
  EXPECT_EQ(e.kv.num_free_blocks(), 4);
}

TEST(Scheduler, NewestRequestPreemptsItselfWhenItCannotGrow) {
  FakeEngine e(config_with(8, 100), 5, 4);
  Request* a = e.add(1, 7, 4);
  Request* b = e.add(2, 7, 4);
  e.step();
  e.step();
  EXPECT_EQ(e.kv.num_free_blocks(), 1);
  SchedulerOutput s3 = e.step();
  // Request 1 takes the last block; request 2 finds none and is the newest.
  EXPECT_EQ(rows_of(s3), (Rows{{1, 1}}));
  EXPECT_EQ(ids_of(s3.preempted), (std::vector<uint64_t>{2}));
  EXPECT_EQ(a->num_preemptions, 0);
  EXPECT_EQ(b->num_preemptions, 1);
  EXPECT_EQ(e.kv.block_table(1).size(), 3u);
  for (int i = 0; i < 10 && e.scheduler.has_unfinished(); ++i) e.step();
  EXPECT_EQ(e.finished, (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(b->num_output_tokens(), 4);
  EXPECT_EQ(e.kv.num_free_blocks(), 5);
}

TEST(Scheduler, RequestsPreemptedInOneStepResumeInArrivalOrderBeforeOlderWaiting) {
  KVCacheManager kv(6, 2);
  Scheduler scheduler(config_with(3, 100), kv);
  std::vector<std::unique_ptr<Request>> requests;
  for (uint64_t id = 1; id <= 4; ++id) {
    auto r = std::make_unique<Request>();
    r->id = id;
    r->arrival = id;
    r->token_ids = {1, 2};
    r->num_prompt_tokens = 2;
    scheduler.add_request(r.get());
    requests.push_back(std::move(r));
  }
  Request* a = requests[0].get();
  SchedulerOutput s1 = scheduler.schedule();
  EXPECT_EQ(rows_of(s1), (Rows{{1, 2}, {2, 2}, {3, 2}}));
  scheduler.update_from_output(s1);
  EXPECT_EQ(kv.num_free_blocks(), 3);

  // Request 1 suddenly needs 5 more blocks: both newer running requests must go.
  a->token_ids.resize(12, 7);
  SchedulerOutput s2 = scheduler.schedule();
  EXPECT_EQ(rows_of(s2), (Rows{{1, 10}}));
  EXPECT_EQ(ids_of(s2.preempted), (std::vector<uint64_t>{3, 2}));
  EXPECT_EQ(kv.num_free_blocks(), 0);
  EXPECT_EQ(scheduler.num_waiting(), 3);
  scheduler.update_from_output(s2);
  a->status = RequestStatus::kFinished;
  scheduler.finish(a);

  SchedulerOutput s3 = scheduler.schedule();
  EXPECT_EQ(rows_of(s3), (Rows{{2, 2}, {3, 2}, {4, 2}}));
  EXPECT_EQ(requests[1]->num_preemptions, 1);
  EXPECT_EQ(requests[2]->num_preemptions, 1);
  EXPECT_EQ(requests[3]->num_preemptions, 0);
}

TEST(Scheduler, NoAdmissionsInAStepThatPreempted) {
  FakeEngine e(config_with(8, 100), 4, 4);
  e.add(1, 7, 4);
  e.add(2, 7, 4);
  e.step();
  e.step();
  e.add(3, 1, 1);
  SchedulerOutput s3 = e.step();
  // Request 2's two freed blocks would fit request 3, but it must wait behind request 2.
  EXPECT_EQ(rows_of(s3), (Rows{{1, 1}}));
  EXPECT_EQ(ids_of(s3.preempted), (std::vector<uint64_t>{2}));
  EXPECT_EQ(e.scheduler.num_waiting(), 2);
  EXPECT_EQ(e.kv.num_free_blocks(), 1);
}

TEST(Scheduler, AbortFreesBlocksAndForgetsTheRequest) {
  FakeEngine e(config_with(1, 100), 8, 4);
  Request* a = e.add(1, 9, 5);
  e.add(2, 5, 5);
  EXPECT_EQ(rows_of(e.step()), (Rows{{1, 9}}));
  EXPECT_EQ(e.kv.num_free_blocks(), 5);

  EXPECT_TRUE(e.scheduler.abort(1));
  EXPECT_EQ(a->status, RequestStatus::kFinished);
  EXPECT_EQ(e.kv.num_free_blocks(), 8);
  EXPECT_TRUE(e.kv.block_table(1).empty());
  EXPECT_EQ(e.scheduler.num_running(), 0);
  EXPECT_FALSE(e.scheduler.abort(1));
  EXPECT_FALSE(e.scheduler.abort(99));

  EXPECT_EQ(rows_of(e.step()), (Rows{{2, 5}}));
  EXPECT_EQ(e.kv.num_free_blocks(), 6);
  EXPECT_TRUE(e.scheduler.abort(2));
  EXPECT_EQ(e.kv.num_free_blocks(), 8);
  EXPECT_FALSE(e.scheduler.has_unfinished());
  EXPECT_TRUE(e.scheduler.schedule().empty());
}

TEST(Scheduler, AbortRemovesAWaitingRequest) {
  FakeEngine e(config_with(1, 100), 8, 4);
  e.add(1, 3, 2);
  e.add(2, 3, 2);
  e.add(3, 3, 2);
  e.step();
  EXPECT_TRUE(e.scheduler.abort(2));
  EXPECT_EQ(e.scheduler.num_waiting(), 1);
  while (e.scheduler.has_unfinished()) e.step();
  EXPECT_EQ(e.finished, (std::vector<uint64_t>{1, 3}));
}

TEST(Scheduler, FinishOfAnUnknownRequestThrows) {
  FakeEngine e(config_with(4, 100), 8, 4);
  Request* a = e.add(1, 3, 1);
  e.step();
  EXPECT_EQ(e.finished, (std::vector<uint64_t>{1}));
  EXPECT_THROW(e.scheduler.finish(a), Error);
}

TEST(Scheduler, WithoutChunkedPrefillOnlyWholePromptsAreScheduled) {
  FakeEngine e(config_with(8, 10, 10, false), 32, 4);
  e.add(1, 6, 3);
  e.add(2, 6, 3);
  e.add(3, 2, 3);
  // Request 2 does not fit in the 4 tokens left, and request 3 may not overtake it.
  SchedulerOutput s1 = e.step();
  EXPECT_EQ(rows_of(s1), (Rows{{1, 6}}));
  EXPECT_EQ(s1.num_batched_tokens, 6);
  EXPECT_EQ(e.scheduler.num_waiting(), 2);
  EXPECT_EQ(rows_of(e.step()), (Rows{{1, 1}, {2, 6}, {3, 2}}));
  EXPECT_EQ(rows_of(e.step()), (Rows{{1, 1}, {2, 1}, {3, 1}}));
}

TEST(Scheduler, WithoutChunkedPrefillRunningRequestsAreNotSplitEither) {
  KVCacheManager kv(32, 4);
  Scheduler scheduler(config_with(8, 10, 10, false), kv);
  Request a, b;
  a.id = 1;
  a.token_ids.assign(6, 3);
  b.id = 2;
  b.arrival = 1;
  b.token_ids.assign(2, 3);
  scheduler.add_request(&a);
  scheduler.add_request(&b);
  SchedulerOutput s1 = scheduler.schedule();
  EXPECT_EQ(rows_of(s1), (Rows{{1, 6}, {2, 2}}));
  scheduler.update_from_output(s1);
  // Several new tokens at once (as a multi-token proposal would add): 6 for a, 5 for b.
  a.token_ids.resize(12, 4);
  b.token_ids.resize(7, 4);
  SchedulerOutput s2 = scheduler.schedule();
  EXPECT_EQ(rows_of(s2), (Rows{{1, 6}}));
  scheduler.update_from_output(s2);
  EXPECT_EQ(rows_of(scheduler.schedule()), (Rows{{2, 5}}));
}

TEST(Scheduler, InvalidConfigurationThrows) {
  KVCacheManager kv(8, 4);
  EXPECT_THROW(Scheduler(config_with(0, 100), kv), InvalidArgument);
  EXPECT_THROW(Scheduler(config_with(4, 0), kv), InvalidArgument);
  // Without chunking a max_model_len prompt could never be scheduled.
  EXPECT_THROW(Scheduler(config_with(4, 63, 64, false), kv), InvalidArgument);
  EXPECT_NO_THROW(Scheduler(config_with(4, 63, 64, true), kv));
  EXPECT_NO_THROW(Scheduler(config_with(4, 64, 64, false), kv));
}

SchedulerConfig priority_config(int32_t max_num_seqs, int32_t budget) {
  return config_with(max_num_seqs, budget, 64, true, SchedulingPolicy::kPriority);
}

// ---- scheduling_policy "priority" ---------------------------------------------------

TEST(SchedulerPriority, LowerPriorityValuesAreAdmittedFirst) {
  FakeEngine e(priority_config(1, 100), 16, 4);
  e.add(1, 3, 1, 2);
  e.add(2, 3, 1, 0);
  e.add(3, 3, 1, -4);  // negative values are allowed, as in vLLM
  e.add(4, 3, 1, 1);
  while (e.scheduler.has_unfinished()) e.step();
  EXPECT_EQ(e.finished, (std::vector<uint64_t>{3, 2, 4, 1}));
}

TEST(SchedulerPriority, EqualPrioritiesAreServedInArrivalOrder) {
  FakeEngine e(priority_config(1, 100), 16, 4);
  e.add(5, 3, 1, 1);  // ids out of order: arrival breaks ties, not id
  e.add(1, 3, 1, 0);
  e.add(4, 3, 1, 1);
  e.add(2, 3, 1, 0);
  e.add(3, 3, 1, 1);
  while (e.scheduler.has_unfinished()) e.step();
  EXPECT_EQ(e.finished, (std::vector<uint64_t>{1, 2, 5, 4, 3}));
}

TEST(SchedulerPriority, AdmissionRowsFollowPriorityOrderUnderTheTokenBudget) {
  FakeEngine e(priority_config(8, 7), 32, 4);
  e.add(1, 3, 5, 3);
  e.add(2, 3, 5, 1);
  e.add(3, 3, 5, 2);
  EXPECT_EQ(rows_of(e.step()), (Rows{{2, 3}, {3, 3}, {1, 1}}));
  // Running requests keep their admission order; the chunked prompt catches up.
  EXPECT_EQ(rows_of(e.step()), (Rows{{2, 1}, {3, 1}, {1, 2}}));
}

TEST(SchedulerPriority, LaterHigherPriorityArrivalJumpsTheWaitingQueueButNotTheRunning) {
  FakeEngine e(priority_config(1, 100), 16, 4);
  e.add(1, 3, 2, 5);
  e.add(2, 3, 1, 5);
  EXPECT_EQ(rows_of(e.step()), (Rows{{1, 3}}));
  e.add(3, 3, 1, 0);  // outranks the waiting request 2; running request 1 keeps its seat
  EXPECT_EQ(rows_of(e.step()), (Rows{{1, 1}}));
  EXPECT_EQ(rows_of(e.step()), (Rows{{3, 3}}));
  EXPECT_EQ(rows_of(e.step()), (Rows{{2, 3}}));
  EXPECT_EQ(e.finished, (std::vector<uint64_t>{1, 3, 2}));
}

// Four one-block requests, the last admitted a step later; the first then needs the whole
// cache. Victims go by (priority, arrival), largest first: request 4, the newest, outranks
// two older ones and goes last, where FCFS (and the running order) would evict it first.
TEST(SchedulerPriority, PreemptionEvictsTheLowestPriorityThenNewestRequestFirst) {
  for (SchedulingPolicy policy : {SchedulingPolicy::kPriority, SchedulingPolicy::kFcfs}) {
    KVCacheManager kv(8, 2);
    Scheduler scheduler(config_with(4, 100, 64, true, policy), kv);
    std::vector<std::unique_ptr<Request>> requests;
    const int64_t priorities[] = {0, 5, 5, 1};
    auto add = [&](uint64_t id) {
      auto r = std::make_unique<Request>();
      r->id = id;
      r->arrival = id;
      r->priority = policy == SchedulingPolicy::kPriority ? priorities[id - 1] : 0;
      r->token_ids = {1, 2};
      r->num_prompt_tokens = 2;
      scheduler.add_request(r.get());
      requests.push_back(std::move(r));
    };
    for (uint64_t id = 1; id <= 3; ++id) add(id);
    SchedulerOutput s1 = scheduler.schedule();
    ASSERT_EQ(rows_of(s1), (Rows{{1, 2}, {2, 2}, {3, 2}}));
    scheduler.update_from_output(s1);
    add(4);
    SchedulerOutput s2 = scheduler.schedule();
    ASSERT_EQ(rows_of(s2), (Rows{{4, 2}}));
    scheduler.update_from_output(s2);
    EXPECT_EQ(kv.num_free_blocks(), 4);

    Request* a = requests[0].get();
    a->token_ids.resize(16, 7);  // 8 blocks: every other request must go
    SchedulerOutput s3 = scheduler.schedule();
    EXPECT_EQ(rows_of(s3), (Rows{{1, 14}}));
    const std::vector<uint64_t> expected_victims =
        policy == SchedulingPolicy::kPriority ? std::vector<uint64_t>{3, 2, 4} : std::vector<uint64_t>{4, 3, 2};
    EXPECT_EQ(ids_of(s3.preempted), expected_victims);
    EXPECT_EQ(kv.num_free_blocks(), 0);
    scheduler.update_from_output(s3);
    a->status = RequestStatus::kFinished;
    scheduler.finish(a);

    // Back in the queue by (priority, arrival) under kPriority; by arrival under FCFS.
    SchedulerOutput s4 = scheduler.schedule();
    const Rows expected_rows = policy == SchedulingPolicy::kPriority ? Rows{{4, 2}, {2, 2}, {3, 2}}
                                                                     : Rows{{2, 2}, {3, 2}, {4, 2}};
    EXPECT_EQ(rows_of(s4), expected_rows);
  }
}

TEST(SchedulerPriority, VictimAlreadyScheduledInTheStepGivesBackItsTokensAndBlocks) {
  FakeEngine e(priority_config(8, 100), 2, 4);
  Request* x = e.add(1, 2, 3, 5);
  EXPECT_EQ(rows_of(e.step()), (Rows{{1, 2}}));
  Request* y = e.add(2, 4, 3, 0);
  EXPECT_EQ(rows_of(e.step()), (Rows{{1, 1}, {2, 4}}));
  EXPECT_EQ(e.kv.num_free_blocks(), 0);

  // Request 1 (running first) still fits its block and is scheduled; request 2 then needs
  // a new block and outranks it, so request 1 is taken out of the step and evicted.
  SchedulerOutput s3 = e.step();
  EXPECT_EQ(rows_of(s3), (Rows{{2, 1}}));
  EXPECT_EQ(ids_of(s3.preempted), (std::vector<uint64_t>{1}));
  EXPECT_EQ(s3.num_batched_tokens, 1);
  EXPECT_EQ(x->status, RequestStatus::kWaiting);
  EXPECT_EQ(x->num_computed_tokens, 0);
  EXPECT_EQ(x->num_output_tokens(), 2);
  EXPECT_EQ(e.kv.block_table(2).size(), 2u);

  for (int i = 0; i < 10 && e.scheduler.has_unfinished(); ++i) e.step();
  EXPECT_EQ(e.finished, (std::vector<uint64_t>{2, 1}));
  for (Request* r : {x, y}) {
    ASSERT_EQ(r->num_output_tokens(), 3);
    for (int32_t i = 0; i < 3; ++i) {
      EXPECT_EQ(r->token_ids[static_cast<size_t>(r->num_prompt_tokens + i)], FakeEngine::token_for(r->id, i));
    }
  }
  EXPECT_EQ(e.kv.num_free_blocks(), 2);
}

TEST(SchedulerPriority, LowestRankedRequestPreemptsItselfAndHigherRankedOnesStillRunInTheStep) {
  FakeEngine e(priority_config(8, 100), 4, 4);
  Request* low = e.add(1, 7, 4, 9);
  EXPECT_EQ(rows_of(e.step()), (Rows{{1, 7}}));
  Request* high = e.add(2, 8, 4, 0);
  EXPECT_EQ(rows_of(e.step()), (Rows{{1, 1}, {2, 8}}));
  EXPECT_EQ(e.kv.num_free_blocks(), 0);

  // Request 1 runs first but needs a block and ranks last: it evicts itself, and request 2
  // takes one of the two blocks it freed in the same step.
  SchedulerOutput s3 = e.step();
  EXPECT_EQ(ids_of(s3.preempted), (std::vector<uint64_t>{1}));
  EXPECT_EQ(rows_of(s3), (Rows{{2, 1}}));
  EXPECT_EQ(low->num_preemptions, 1);
  EXPECT_EQ(high->num_preemptions, 0);
  EXPECT_EQ(e.kv.num_free_blocks(), 1);
  for (int i = 0; i < 20 && e.scheduler.has_unfinished(); ++i) e.step();
  EXPECT_EQ(e.finished, (std::vector<uint64_t>{2, 1}));
  EXPECT_EQ(low->num_output_tokens(), 4);
}

TEST(SchedulerPriority, FcfsPolicyRefusesANonZeroPriority) {
  KVCacheManager kv(8, 4);
  Scheduler scheduler(config_with(4, 100), kv);
  Request r;
  r.id = 1;
  r.token_ids = {1, 2};
  r.num_prompt_tokens = 2;
  r.priority = 3;
  EXPECT_THROW(scheduler.add_request(&r), InvalidArgument);
  EXPECT_EQ(scheduler.num_waiting(), 0);
  r.priority = 0;
  EXPECT_NO_THROW(scheduler.add_request(&r));
}

TEST(SchedulerPriority, PolicyNamesAreVllms) {
  EXPECT_EQ(parse_scheduling_policy("fcfs"), SchedulingPolicy::kFcfs);
  EXPECT_EQ(parse_scheduling_policy("priority"), SchedulingPolicy::kPriority);
  EXPECT_THROW(parse_scheduling_policy("lottery"), InvalidArgument);
  EXPECT_THROW(parse_scheduling_policy("FCFS"), InvalidArgument);
}

// ---- random simulations ---------------------------------------------------------------

struct SimulationParams {
  uint32_t seed;
  bool chunked;
  bool priority = false;
};

// Many requests of random lengths arrive over time into a cache that holds barely one
// max_model_len sequence. Checks the invariants every step and that every request
// finishes exactly once with all its tokens; reports how many preemptions it saw.
void simulate(const SimulationParams& p, int64_t* num_preemptions) {
  std::mt19937 rng(p.seed);
  auto uniform = [&rng](int32_t lo, int32_t hi) {
    return std::uniform_int_distribution<int32_t>(lo, hi)(rng);
  };
  const int32_t max_model_len = 64;
  const int32_t block_size = std::vector<int32_t>{1, 2, 4, 8}[uniform(0, 3)];
  const int32_t max_num_seqs = uniform(1, 8);
  const int32_t budget = p.chunked ? uniform(1, 40) : uniform(max_model_len, 96);
  const SchedulingPolicy policy = p.priority ? SchedulingPolicy::kPriority : SchedulingPolicy::kFcfs;
  FakeEngine e(config_with(max_num_seqs, budget, max_model_len, p.chunked, policy),
               (max_model_len + block_size - 1) / block_size + uniform(0, 3), block_size);
  const int32_t num_blocks = e.kv.num_blocks();

  const int32_t num_requests = 40;
  uint64_t next_id = 100;
  int32_t added = 0;
  std::map<uint64_t, int32_t> finished_count;
  int64_t steps = 0;
  while (added < num_requests || e.scheduler.has_unfinished()) {
    const int32_t arrivals = added == 0 ? 1 : uniform(0, 2);
    for (int32_t k = 0; k < arrivals && added < num_requests; ++k, ++added) {
      const int32_t outputs = uniform(1, 8);
      const int32_t prompt_len = uniform(1, max_model_len - outputs);
      e.add(next_id++, prompt_len, outputs, p.priority ? uniform(0, 3) : 0);
    }

    std::map<uint64_t, int64_t> computed_before;
    std::map<uint64_t, RequestStatus> status_before;
    for (auto& [id, r] : e.requests) {
      computed_before[id] = r->num_computed_tokens;
      status_before[id] = r->status;
    }

    SchedulerOutput out = e.scheduler.schedule();
    ASSERT_LE(out.num_batched_tokens, budget);
    ASSERT_LE(static_cast<int32_t>(out.scheduled.size()), max_num_seqs);
    ASSERT_LE(e.scheduler.num_running(), max_num_seqs);
    int64_t sum = 0;
    std::set<uint64_t> scheduled_ids;
    for (const ScheduledRequest& s : out.scheduled) {
      const Request* r = s.request;
      ASSERT_GT(s.num_new_tokens, 0);
      ASSERT_TRUE(scheduled_ids.insert(r->id).second) << "scheduled twice: " << r->id;
      ASSERT_EQ(r->status, RequestStatus::kRunning);
      ASSERT_EQ(r->num_computed_tokens, computed_before[r->id]);
      ASSERT_LE(r->num_computed_tokens + s.num_new_tokens, r->num_tokens());
      ASSERT_GE(static_cast<int32_t>(e.kv.block_table(r->id).size()),
                e.kv.blocks_for(r->num_computed_tokens + s.num_new_tokens));
      if (!p.chunked && r->num_computed_tokens == 0) {
        ASSERT_EQ(s.num_new_tokens, r->num_tokens());
      }
      sum += s.num_new_tokens;
    }
    ASSERT_EQ(sum, out.num_batched_tokens);
    for (const Request* r : out.preempted) {
      ASSERT_EQ(scheduled_ids.count(r->id), 0u) << "preempted and scheduled: " << r->id;
      ASSERT_EQ(r->status, RequestStatus::kWaiting);
      ASSERT_EQ(r->num_computed_tokens, 0);
    }

    // Every live request is in exactly one queue, and only running ones hold blocks.
    int32_t live = 0, running = 0;
    int64_t held_blocks = 0;
    for (auto& [id, r] : e.requests) {
      if (r->status == RequestStatus::kFinished) {
        ASSERT_TRUE(e.kv.block_table(id).empty());
        continue;
      }
      ++live;
      const int64_t held = static_cast<int64_t>(e.kv.block_table(id).size());
      if (r->status == RequestStatus::kRunning) {
        ++running;
      } else {
        ASSERT_EQ(held, 0) << "waiting request " << id << " holds blocks";
        ASSERT_EQ(r->num_computed_tokens, 0);
      }
      held_blocks += held;
    }
    ASSERT_EQ(e.scheduler.num_running(), running);
    ASSERT_EQ(e.scheduler.num_waiting(), live - running);
    ASSERT_EQ(held_blocks, num_blocks - e.kv.num_free_blocks());
    ASSERT_LE(held_blocks, num_blocks);

    // A victim ranked below every request left running when it was chosen; the running set
    // only shrinks while preempting, so it ranks below every request running now.
    for (const Request* victim : out.preempted) {
      for (auto& [id, r] : e.requests) {
        if (r->status != RequestStatus::kRunning) continue;
        if (p.priority) {
          ASSERT_TRUE(r->priority < victim->priority ||
                      (r->priority == victim->priority && r->arrival < victim->arrival))
              << "preempted " << victim->id << " while " << id << " ranked lower stays";
        } else {
          ASSERT_LT(r->arrival, victim->arrival) << "preempted " << victim->id << " before newer " << id;
        }
      }
    }

    // Admissions only in steps without preemption; progress in every step with work.
    if (!out.preempted.empty()) {
      for (const ScheduledRequest& s : out.scheduled) {
        ASSERT_EQ(status_before[s.request->id], RequestStatus::kRunning)
            << "admitted while preempting";
      }
    }
    if (live > 0) {
      ASSERT_FALSE(out.empty()) << "no progress at step " << steps;
    }

    e.scheduler.update_from_output(out);
    for (const ScheduledRequest& s : out.scheduled) {
      Request* r = s.request;
      ASSERT_LE(r->num_computed_tokens, r->num_tokens());
      if (r->num_computed_tokens != r->num_tokens()) continue;
      r->token_ids.push_back(FakeEngine::token_for(r->id, r->num_output_tokens()));
      if (r->num_output_tokens() >= e.quota[r->id]) {
        r->status = RequestStatus::kFinished;
        e.scheduler.finish(r);
        ++finished_count[r->id];
      }
    }
    ASSERT_LT(++steps, 100000) << "simulation does not terminate";
  }

  ASSERT_EQ(static_cast<int32_t>(finished_count.size()), num_requests);
  for (auto& [id, r] : e.requests) {
    EXPECT_EQ(finished_count[id], 1) << id;
    EXPECT_EQ(r->status, RequestStatus::kFinished);
    ASSERT_EQ(r->num_output_tokens(), e.quota[id]) << id;
    for (int32_t i = 0; i < e.quota[id]; ++i) {
      EXPECT_EQ(r->token_ids[static_cast<size_t>(r->num_prompt_tokens + i)],
                FakeEngine::token_for(id, i));
    }
    EXPECT_EQ(r->num_computed_tokens, r->num_tokens() - 1);
  }
  EXPECT_EQ(e.kv.num_free_blocks(), num_blocks);
  for (int32_t b = 0; b < num_blocks; ++b) EXPECT_EQ(e.kv.pool().ref_count(b), 0);
  *num_preemptions = e.scheduler.num_preemptions();
}

std::vector<SimulationParams> simulation_params() {
  std::vector<SimulationParams> params;
  for (uint32_t seed = 1; seed <= 16; ++seed) params.push_back({seed, true});
  for (uint32_t seed = 101; seed <= 108; ++seed) params.push_back({seed, false});
  for (uint32_t seed = 201; seed <= 212; ++seed) params.push_back({seed, true, true});
  for (uint32_t seed = 301; seed <= 306; ++seed) params.push_back({seed, false, true});
  return params;
}

class SchedulerSimulation : public ::testing::TestWithParam<SimulationParams> {};

TEST_P(SchedulerSimulation, EveryRequestFinishesOnceWithinBudgetsAndCapacity) {
  int64_t num_preemptions = 0;
  simulate(GetParam(), &num_preemptions);
}

// The invariants checked by the simulations only bite if their small caches actually
// force preemptions, with and without chunked prefill, under both policies.
TEST(Scheduler, RandomSimulationsExercisePreemption) {
  int64_t preemptions[2][2] = {{0, 0}, {0, 0}};  // [priority][chunked]
  for (const SimulationParams& p : simulation_params()) {
    int64_t n = 0;
    simulate(p, &n);
    ASSERT_FALSE(::testing::Test::HasFatalFailure());
    preemptions[p.priority][p.chunked] += n;
  }
  for (int priority = 0; priority < 2; ++priority) {
    for (int chunked = 0; chunked < 2; ++chunked) {
      EXPECT_GT(preemptions[priority][chunked], 0) << "priority " << priority << " chunked " << chunked;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Seeds, SchedulerSimulation, ::testing::ValuesIn(simulation_params()),
                         [](const ::testing::TestParamInfo<SimulationParams>& param_info) {
                           return std::string(param_info.param.priority ? "priority_" : "fcfs_") +
                                  std::string(param_info.param.chunked ? "chunked_" : "whole_") +
                                  std::to_string(param_info.param.seed);
                         });

// A fixed case: twelve prompts of 21 to 32 tokens, each wanting 12 more, in a cache of
// 64 token slots cannot all fit, so requests are preempted and must still all finish.
TEST(Scheduler, TightCacheForcesPreemptionsAndStillFinishesEverything) {
  FakeEngine e(config_with(8, 32, 64), 16, 4);
  for (uint64_t id = 1; id <= 12; ++id) e.add(id, 20 + static_cast<int32_t>(id), 12);
  int64_t steps = 0;
  while (e.scheduler.has_unfinished()) {
    e.step();
    ASSERT_LT(++steps, 10000);
  }
  EXPECT_GT(e.scheduler.num_preemptions(), 0);
  std::vector<uint64_t> sorted = e.finished;
  std::sort(sorted.begin(), sorted.end());
  std::vector<uint64_t> expected;
  for (uint64_t id = 1; id <= 12; ++id) expected.push_back(id);
  EXPECT_EQ(sorted, expected);
  for (auto& [id, r] : e.requests) EXPECT_EQ(r->num_output_tokens(), 12) << id;
  EXPECT_EQ(e.kv.num_free_blocks(), 16);
}

}  // namespace
}  // namespace octavo
