#include "engine/metrics_recorder.h"

#include <gtest/gtest.h>

#include <vector>

namespace octavo {
namespace {

TEST(HistogramData, BucketsAreUpperInclusiveWithAnInfBucketLast) {
  HistogramData h({1.0, 2.0, 5.0});
  for (double v : {0.5, 1.0, 1.5, 2.0, 5.0, 5.5, 100.0}) h.observe(v);
  EXPECT_EQ(h.counts, (std::vector<int64_t>{2, 2, 1, 2}));
  EXPECT_EQ(h.count, 7);
  EXPECT_DOUBLE_EQ(h.sum, 0.5 + 1.0 + 1.5 + 2.0 + 5.0 + 5.5 + 100.0);
}

TEST(MetricsRecorder, TokenCountsBucketsFollowOneTwoFiveUpToMaxModelLen) {
  MetricsRecorder rec(128);
  EXPECT_EQ(rec.metrics().request_prompt_tokens.bounds, (std::vector<double>{1, 2, 5, 10, 20, 50, 100}));
  EXPECT_EQ(rec.metrics().time_to_first_token.bounds.size(), 22u);  // vLLM's TTFT bounds
  EXPECT_EQ(rec.metrics().inter_token_latency.bounds.size(), 19u);
  EXPECT_EQ(rec.metrics().e2e_request_latency.bounds.back(), 7680.0);
}

TEST(MetricsRecorder, OneRequestsLifeFromHandSetTimes) {
  MetricsRecorder rec(64);
  Request r;
  r.num_prompt_tokens = 7;
  r.token_ids.assign(7, 1);
  r.arrival_time = 10.0;
  rec.on_scheduled(r, 10.25);
  rec.on_scheduled(r, 11.0);  // only the first scheduling ends the queue time
  for (double t : {10.5, 10.75, 11.5}) {
    r.token_ids.push_back(2);
    rec.on_token(r, t);
  }
  r.finish_reason = FinishReason::kLength;
  rec.on_finished(r, 11.5);
  const EngineMetrics& m = rec.metrics();
  EXPECT_EQ(m.prompt_tokens, 7);  // once, at the first token
  EXPECT_EQ(m.generation_tokens, 3);
  EXPECT_EQ(m.num_finished_length, 1);
  EXPECT_EQ(m.request_queue_time.count, 1);
  EXPECT_DOUBLE_EQ(m.request_queue_time.sum, 0.25);
  EXPECT_DOUBLE_EQ(m.time_to_first_token.sum, 0.5);
  EXPECT_EQ(m.inter_token_latency.count, 2);
  EXPECT_DOUBLE_EQ(m.inter_token_latency.sum, 0.25 + 0.75);
  EXPECT_DOUBLE_EQ(m.e2e_request_latency.sum, 1.5);
  EXPECT_DOUBLE_EQ(m.request_generation_tokens.sum, 3.0);
}

}  // namespace
}  // namespace octavo
