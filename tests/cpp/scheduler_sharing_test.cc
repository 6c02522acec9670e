// The scheduler with shared KV blocks: prefix-cache hits at admission, samples forked from
// sample 0 (n > 1) with copy-on-write, and a simulation that tracks which token each cache
// slot holds, so a block shared or reused wrongly shows up as a wrong token in someone's past.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "kv_cache/kv_cache_manager.h"
#include "scheduler/scheduler.h"

namespace octavo {
namespace {

using Rows = std::vector<std::pair<uint64_t, int32_t>>;  // (request id, num_new_tokens)

Rows rows_of(const SchedulerOutput& out) {
  Rows rows;
  for (const ScheduledRequest& s : out.scheduled) rows.emplace_back(s.request->id, s.num_new_tokens);
  return rows;
}

SchedulerConfig config_with(int32_t max_num_seqs, int32_t budget, int32_t max_model_len = 64,
                            bool chunked = true) {
  SchedulerConfig config;
  config.max_num_seqs = max_num_seqs;
  config.max_num_batched_tokens = budget;
  config.max_model_len = max_model_len;
  config.enable_chunked_prefill = chunked;
  return config;
}

std::vector<int32_t> seq(int32_t from, int32_t n) {
  std::vector<int32_t> t;
  for (int32_t i = 0; i < n; ++i) t.push_back(from + i);
  return t;
}

// Owns requests, and after each step appends a token to every request that caught up.
struct Harness {
  Harness(const SchedulerConfig& config, int32_t num_blocks, int32_t block_size, bool caching)
      : kv(num_blocks, block_size, caching), scheduler(config, kv) {}

  Request* make(uint64_t id, std::vector<int32_t> prompt, const Request* fork_source = nullptr) {
    auto r = std::make_unique<Request>();
    r->id = id;
    r->arrival = id;
    r->num_prompt_tokens = static_cast<int32_t>(prompt.size());
    r->token_ids = std::move(prompt);
    r->fork_source = fork_source;
    requests.push_back(std::move(r));
    return requests.back().get();
  }

  SchedulerOutput step() {
    SchedulerOutput out = scheduler.schedule();
    scheduler.update_from_output(out);
    for (const ScheduledRequest& s : out.scheduled) {
      Request* r = s.request;
      if (r->num_computed_tokens == r->num_tokens()) r->token_ids.push_back(9000 + static_cast<int32_t>(r->id));
    }
    return out;
  }

  KVCacheManager kv;
  Scheduler scheduler;
  std::vector<std::unique_ptr<Request>> requests;
};

TEST(SchedulerSharing, AdmissionStartsAtTheCachedLengthEvenForBlocksWrittenInTheSameStep) {
  Harness h(config_with(4, 64), 16, 4, /*caching=*/true);
  std::vector<int32_t> a = seq(100, 10), b = seq(100, 8);
  b.push_back(7);
  b.push_back(8);
  b.push_back(9);
  h.scheduler.add_request(h.make(1, a));
  h.scheduler.add_request(h.make(2, b));
  // a's first two blocks are cached as they are allocated; b, admitted after a in the same
  // step, computes only its last three tokens (the forward writes a's K/V before b reads it).
  EXPECT_EQ(rows_of(h.step()), (Rows{{1, 10}, {2, 3}}));
  EXPECT_EQ(h.requests[0]->num_cached_tokens, 0);
  EXPECT_EQ(h.requests[1]->num_cached_tokens, 8);
  EXPECT_EQ(h.kv.block_table(2)[0], h.kv.block_table(1)[0]);
  EXPECT_EQ(h.kv.block_table(2)[1], h.kv.block_table(1)[1]);
  EXPECT_NE(h.kv.block_table(2)[2], h.kv.block_table(1)[2]);
}

TEST(SchedulerSharing, PreemptedRequestResumesFromItsOwnCachedBlocks) {
  Harness h(config_with(4, 64), 16, 4, true);
  h.scheduler.add_request(h.make(1, seq(100, 9)));
  h.step();  // 9 computed, a tenth token sampled
  EXPECT_EQ(h.scheduler.preempt_all(), 1);
  EXPECT_EQ(h.kv.num_free_blocks(), 16);
  // Blocks 0 and 1 (8 tokens) are still cached: only the ninth and tenth are recomputed.
  EXPECT_EQ(rows_of(h.step()), (Rows{{1, 2}}));
  EXPECT_EQ(h.requests[0]->num_cached_tokens, 0);  // the first admission's count is kept
}

TEST(SchedulerSharing, WithoutPrefixCachingEveryAdmissionComputesEverything) {
  Harness h(config_with(4, 64), 16, 4, false);
  h.scheduler.add_request(h.make(1, seq(100, 10)));
  h.scheduler.add_request(h.make(2, seq(100, 10)));
  EXPECT_EQ(rows_of(h.step()), (Rows{{1, 10}, {2, 10}}));
}

TEST(SchedulerSharing, ForkedSampleSharesThePromptAndComputesOnlyTheLastPromptToken) {
  Harness h(config_with(4, 64), 16, 4, false);
  Request* parent = h.make(1, seq(100, 6));
  Request* child = h.make(2, seq(100, 6), parent);
  h.scheduler.add_request(parent);
  EXPECT_EQ(rows_of(h.step()), (Rows{{1, 6}}));
  h.scheduler.add_request_front(child);
  EXPECT_EQ(rows_of(h.step()), (Rows{{1, 1}, {2, 1}}));
  EXPECT_EQ(child->num_cached_tokens, 5);
  const std::vector<int32_t>& p = h.kv.block_table(1);
  const std::vector<int32_t>& c = h.kv.block_table(2);
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(c[0], p[0]);
  EXPECT_NE(c[1], p[1]);
  // The child's copy of the partial block is made before the forward; the parent, scheduled
  // first as the only holder, writes its own block in place.
  EXPECT_EQ(h.kv.take_block_copies(), (std::vector<std::pair<int32_t, int32_t>>{{p[1], c[1]}}));
  EXPECT_EQ(h.kv.pool().ref_count(p[0]), 2);
  EXPECT_EQ(h.kv.pool().ref_count(p[1]), 1);
}

TEST(SchedulerSharing, NoForkFromASampleThatNoLongerRuns) {
  Harness h(config_with(4, 64), 16, 4, false);
  Request* parent = h.make(1, seq(100, 6));
  Request* child = h.make(2, seq(100, 6), parent);
  h.scheduler.add_request(parent);
  h.step();
  parent->status = RequestStatus::kFinished;
  h.scheduler.finish(parent);
  h.scheduler.add_request_front(child);
  EXPECT_EQ(rows_of(h.step()), (Rows{{2, 6}}));
  EXPECT_EQ(child->num_cached_tokens, 0);
}

TEST(SchedulerSharing, NoForkFromASampleAdmittedInTheSameStep) {
  // Sample 0, preempted and readmitted from its cached blocks, may hold blocks this step's
  // forward has yet to write; a copy made before the forward would copy stale slots.
  Harness h(config_with(4, 64), 16, 4, true);
  Request* parent = h.make(1, seq(100, 7));
  Request* child = h.make(2, seq(100, 7), parent);
  h.scheduler.add_request(parent);
  for (int i = 0; i < 6; ++i) h.step();  // 7 prompt + 6 sampled tokens, 12 computed
  h.scheduler.preempt_all();
  h.scheduler.add_request(child);  // behind the parent in the queue
  // The parent resumes from 12 cached tokens (3 blocks); the child may not fork its 6 shared
  // prompt tokens and finds only the first block (4 tokens) in the prefix cache.
  EXPECT_EQ(rows_of(h.step()), (Rows{{1, 1}, {2, 3}}));
  EXPECT_EQ(child->num_cached_tokens, 4);
  EXPECT_TRUE(h.kv.take_block_copies().empty());
}

// ---- simulation ---------------------------------------------------------------------------

struct SharingParams {
  uint32_t seed;
  bool chunked;
  bool caching;
  bool priority = false;  // SchedulingPolicy::kPriority with random priorities
};

struct SharingTotals {
  int64_t preemptions = 0;
  int64_t copies = 0;
  int64_t hit_tokens = 0;
  int64_t forked = 0;
};

// Requests built from a few shared prefixes, some with forked samples, arrive into a cache
// that holds barely one max_model_len sequence. A fake forward writes each scheduled token
// into its slot (after applying the step's block copies); then every running request's past
// must read back as its own tokens, and reference counts must match the tables.
void simulate_sharing(const SharingParams& p, SharingTotals* totals) {
  std::mt19937 rng(p.seed);
  auto uniform = [&rng](int32_t lo, int32_t hi) { return std::uniform_int_distribution<int32_t>(lo, hi)(rng); };
  const int32_t max_model_len = 64;
  const int32_t block_size = std::vector<int32_t>{1, 2, 4, 8}[uniform(0, 3)];
  const int32_t max_num_seqs = uniform(1, 8);
  const int32_t budget = p.chunked ? uniform(1, 40) : uniform(max_model_len, 96);
  const int32_t num_blocks = (max_model_len + block_size - 1) / block_size + uniform(0, 6);
  KVCacheManager kv(num_blocks, block_size, p.caching);
  SchedulerConfig config = config_with(max_num_seqs, budget, max_model_len, p.chunked);
  if (p.priority) config.policy = SchedulingPolicy::kPriority;
  Scheduler scheduler(config, kv);
  std::vector<int32_t> store(static_cast<size_t>(num_blocks) * block_size, -1);  // token in each slot

  std::vector<std::vector<int32_t>> prefixes(3);
  for (auto& prefix : prefixes) {
    for (int32_t i = uniform(0, 40); i > 0; --i) prefix.push_back(uniform(0, 20));
  }
  std::vector<std::unique_ptr<Request>> requests;
  std::map<const Request*, int32_t> quota;
  std::map<const Request*, std::vector<Request*>> unreleased;  // sample 0 -> the others
  uint64_t next_id = 1;
  int32_t groups_added = 0, finished = 0;
  const int32_t num_groups = 30;

  auto slot_of = [&](const Request* r, int64_t pos) {
    const std::vector<int32_t>& table = kv.block_table(r->id);
    return static_cast<size_t>(table.at(static_cast<size_t>(pos / block_size))) * block_size + pos % block_size;
  };

  int64_t steps = 0;
  while (groups_added < num_groups || scheduler.has_unfinished()) {
    for (int32_t k = groups_added == 0 ? 1 : uniform(0, 1); k > 0 && groups_added < num_groups; --k, ++groups_added) {
      const int32_t outputs = uniform(1, 6);
      std::vector<int32_t> prompt = prefixes[static_cast<size_t>(uniform(0, 2))];
      prompt.resize(std::min<size_t>(prompt.size(), static_cast<size_t>(uniform(0, max_model_len - outputs - 1))));
      for (int32_t i = uniform(1, 6); i > 0 && static_cast<int32_t>(prompt.size()) < max_model_len - outputs; --i) {
        prompt.push_back(uniform(0, 20));
      }
      const int32_t n = uniform(0, 2) == 0 ? uniform(2, 3) : 1;
      const int64_t priority = p.priority ? uniform(0, 2) : 0;
      Request* first = nullptr;
      for (int32_t i = 0; i < n; ++i) {
        auto r = std::make_unique<Request>();
        r->id = next_id++;
        r->arrival = r->id;
        r->index = i;
        r->num_prompt_tokens = static_cast<int32_t>(prompt.size());
        r->token_ids = prompt;
        r->fork_source = first;
        r->priority = priority;
        quota[r.get()] = outputs;
        if (i == 0) {
          first = r.get();
          scheduler.add_request(first);
        } else {
          unreleased[first].push_back(r.get());
        }
        requests.push_back(std::move(r));
      }
    }

    SchedulerOutput out = scheduler.schedule();
    ASSERT_LE(out.num_batched_tokens, budget);
    // Reference counts are the number of tables holding each block; only running requests
    // hold blocks; the free count is what nobody holds.
    std::map<int32_t, int32_t> holders;
    for (const auto& r : requests) {
      const std::vector<int32_t>& table = kv.block_table(r->id);
      if (r->status != RequestStatus::kRunning) ASSERT_TRUE(table.empty()) << "request " << r->id;
      ASSERT_EQ(std::set<int32_t>(table.begin(), table.end()).size(), table.size());
      for (int32_t b : table) ++holders[b];
    }
    ASSERT_EQ(kv.num_free_blocks(), num_blocks - static_cast<int32_t>(holders.size()));
    for (int32_t b = 0; b < num_blocks; ++b) ASSERT_EQ(kv.pool().ref_count(b), holders[b]) << "block " << b;

    // The fake forward: block copies first, then every scheduled token into its slot.
    for (const auto& [src, dst] : kv.take_block_copies()) {
      std::copy_n(store.begin() + static_cast<std::ptrdiff_t>(src) * block_size, block_size,
                  store.begin() + static_cast<std::ptrdiff_t>(dst) * block_size);
      ++totals->copies;
    }
    std::map<const Request*, int64_t> visible;  // tokens whose K/V a request may read this step
    for (const ScheduledRequest& s : out.scheduled) {
      const Request* r = s.request;
      for (int64_t pos = r->num_computed_tokens; pos < r->num_computed_tokens + s.num_new_tokens; ++pos) {
        store[slot_of(r, pos)] = r->token_ids[static_cast<size_t>(pos)];
      }
      visible[r] = r->num_computed_tokens + s.num_new_tokens;
    }
    for (const auto& r : requests) {
      if (r->status != RequestStatus::kRunning) continue;
      const int64_t n = visible.count(r.get()) ? visible[r.get()] : r->num_computed_tokens;
      for (int64_t pos = 0; pos < n; ++pos) {
        ASSERT_EQ(store[slot_of(r.get(), pos)], r->token_ids[static_cast<size_t>(pos)])
            << "request " << r->id << " position " << pos << " at step " << steps;
      }
    }

    scheduler.update_from_output(out);
    for (const ScheduledRequest& s : out.scheduled) {
      Request* r = s.request;
      if (r->num_computed_tokens != r->num_tokens()) continue;
      r->token_ids.push_back(1000 + static_cast<int32_t>(r->id) * 8 + r->num_output_tokens());
      auto pending = unreleased.find(r);
      if (pending != unreleased.end()) {
        for (auto it = pending->second.rbegin(); it != pending->second.rend(); ++it) scheduler.add_request_front(*it);
        unreleased.erase(pending);
      }
      if (r->num_output_tokens() >= quota[r]) {
        r->status = RequestStatus::kFinished;
        scheduler.finish(r);
        ++finished;
        if (r->index > 0 && r->num_cached_tokens == r->num_prompt_tokens - 1) ++totals->forked;
      }
    }
    ASSERT_LT(++steps, 100000) << "simulation does not terminate";
  }
  ASSERT_EQ(finished, static_cast<int32_t>(requests.size()));
  for (const auto& r : requests) ASSERT_EQ(r->num_output_tokens(), quota[r.get()]);
  for (int32_t b = 0; b < num_blocks; ++b) EXPECT_EQ(kv.pool().ref_count(b), 0);
  EXPECT_EQ(kv.num_free_blocks(), num_blocks);
  totals->preemptions += scheduler.num_preemptions();
  totals->hit_tokens += kv.prefix_cache_stats().num_hit_tokens;
}

std::vector<SharingParams> sharing_params() {
  std::vector<SharingParams> params;
  for (uint32_t seed = 1; seed <= 12; ++seed) params.push_back({seed, true, true});
  for (uint32_t seed = 21; seed <= 26; ++seed) params.push_back({seed, false, true});
  for (uint32_t seed = 41; seed <= 46; ++seed) params.push_back({seed, true, false});
  // kPriority preempts requests already given tokens in the step, whose freshly cached
  // blocks then never get written.
  for (uint32_t seed = 61; seed <= 72; ++seed) params.push_back({seed, true, true, true});
  for (uint32_t seed = 81; seed <= 84; ++seed) params.push_back({seed, false, true, true});
  return params;
}

class SharingSimulation : public ::testing::TestWithParam<SharingParams> {};

TEST_P(SharingSimulation, EveryRequestReadsBackItsOwnTokensAndFinishes) {
  SharingTotals totals;
  simulate_sharing(GetParam(), &totals);
}

INSTANTIATE_TEST_SUITE_P(Seeds, SharingSimulation, ::testing::ValuesIn(sharing_params()),
                         [](const ::testing::TestParamInfo<SharingParams>& info) {
                           return std::string(info.param.chunked ? "chunked_" : "whole_") +
                                  (info.param.caching ? "cached_" : "uncached_") +
                                  (info.param.priority ? "priority_" : "") + std::to_string(info.param.seed);
                         });

// The checks above only bite if the simulations really share, copy and preempt.
TEST(SchedulerSharing, SimulationsExerciseHitsForksCopiesAndPreemption) {
  SharingTotals cached, uncached;
  for (const SharingParams& p : sharing_params()) {
    simulate_sharing(p, p.caching ? &cached : &uncached);
    ASSERT_FALSE(::testing::Test::HasFatalFailure());
  }
  EXPECT_GT(cached.hit_tokens, 0);
  EXPECT_EQ(uncached.hit_tokens, 0);
  EXPECT_GT(cached.forked + uncached.forked, 0);
  EXPECT_GT(uncached.copies, 0);
  EXPECT_GT(cached.preemptions, 0);
  EXPECT_GT(uncached.preemptions, 0);
}

}  // namespace
}  // namespace octavo
