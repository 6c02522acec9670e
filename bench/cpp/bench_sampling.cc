// Sampling benchmarks: greedy and top_p over a batch of float32 logits rows. Sampling
// edits its logits in place, so each input set is restored (untimed) after its call.
// The logits are Gaussian with sigma 4, so top_p = 0.9 keeps a few hundred tokens of the
// 128k vocabulary as next-token distributions usually do; uniform logits would keep most
// of it and time a case that does not happen. FLOPs are nominal per logit: greedy 1 (a
// compare), top_p 4 (max, exp, sum, scale); the partitioning that finds the cut is not
// counted.
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "bench_data.h"
#include "kernel_benches.h"

namespace octavo::bench {

namespace {

constexpr float kLogitSigma = 4.0f;

void bench_sample(BenchContext& ctx, const SamplingCase& c) {
  const double n = static_cast<double>(c.batch) * c.vocab;
  const double bytes = 4.0 * n;  // every logit read once
  const int sets = ctx.sets_for(bytes);
  TensorSets logits(ctx.backend, DType::kFloat32, {c.batch, c.vocab}, sets, ctx.next_seed());

  std::vector<float> pristine(static_cast<size_t>(n));
  std::mt19937 rng(static_cast<uint32_t>(ctx.next_seed()));
  std::normal_distribution<float> normal(0.0f, kLogitSigma);
  for (float& x : pristine) x = normal(rng);
  const size_t set_bytes = pristine.size() * sizeof(float);
  auto restore = [&](int s) { ctx.backend.copy_to_device(logits[s].data, pristine.data(), set_bytes); };
  for (int s = 0; s < sets; ++s) restore(s);

  std::vector<SamplingRow> rows(static_cast<size_t>(c.batch));
  for (int i = 0; i < c.batch; ++i) {
    rows[i].temperature = c.greedy ? 0.0f : 1.0f;
    rows[i].top_p = c.top_p;
    rows[i].seed = static_cast<uint64_t>(i);
  }
  uint64_t draw = 0;

  CaseResult r;
  r.name = c.greedy ? "sample_greedy" : "sample_top_p";
  r.shape = "b=" + std::to_string(c.batch) + " vocab=" + std::to_string(c.vocab);
  if (!c.greedy) {
    char top_p[32];
    std::snprintf(top_p, sizeof top_p, " top_p=%.2f", c.top_p);
    r.shape += top_p;
  }
  r.params = {{"batch", c.batch}, {"vocab", c.vocab}, {"greedy", c.greedy}, {"top_p", c.top_p}};
  r.bytes = bytes;
  r.flops = (c.greedy ? 1.0 : 4.0) * n;
  r.sets = sets;
  TimedOp op;
  op.sets = sets;
  op.call = [&](int s) {
    for (SamplingRow& row : rows) row.draw_index = draw;
    ++draw;
    Tensor l = logits[s];
    ctx.backend.sample(l, rows);
  };
  op.reset = restore;
  ctx.run(std::move(r), op);
}

}  // namespace

void bench_sampling(BenchContext& ctx, const CaseTable& cases) {
  for (const auto& c : cases.sampling) {
    if (ctx.wants(c.greedy ? "sample_greedy" : "sample_top_p")) bench_sample(ctx, c);
  }
}

}  // namespace octavo::bench
