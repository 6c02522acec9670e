// Sampling benchmarks: greedy, top_p, and every step at once ("full": top_k, top_p, min_p,
// penalties, logprobs) over a batch of float32 logits rows. The CPU sampler edits its
// logits in place, so each input set is restored (untimed) after its call. The logits are
// Gaussian with sigma 4, so top_p = 0.9 keeps a few hundred tokens of the 128k vocabulary
// as next-token distributions usually do; uniform logits would keep most of it and time a
// case that does not happen. FLOPs are nominal per logit: greedy 1 (a compare), top_p 4
// (max, exp, sum, scale), full 6 (top_p's and the raw log-sum-exp); the selections that
// find the cuts are not counted. Times include the backend's host work (packing the rows,
// the copies), as the engine sees them.
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
// The full case's penalties read this many tokens of history per row (192 prompt + 64
// output), drawn from the first kHistoryIds ids so that ids repeat as in text.
constexpr int kHistoryTokens = 256;
constexpr int kPromptTokens = 192;
constexpr int kHistoryIds = 4096;

const char* op_name(SamplingKind kind) {
  switch (kind) {
    case SamplingKind::kGreedy: return "sample_greedy";
    case SamplingKind::kTopP: return "sample_top_p";
    default: return "sample_full";
  }
}

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

  std::vector<std::vector<int32_t>> histories(static_cast<size_t>(c.batch));
  std::vector<SamplingRow> rows(static_cast<size_t>(c.batch));
  for (int i = 0; i < c.batch; ++i) {
    SamplingRow& row = rows[i];
    row.temperature = c.kind == SamplingKind::kGreedy ? 0.0f : 1.0f;
    row.top_p = c.top_p;
    row.seed = static_cast<uint64_t>(i);
    if (c.kind == SamplingKind::kFull) {
      row.temperature = 0.8f;
      row.top_k = 50;
      row.min_p = 0.05f;
      row.repetition_penalty = 1.1f;
      row.frequency_penalty = 0.2f;
      row.presence_penalty = 0.2f;
      row.num_logprobs = 20;
      std::vector<int32_t>& h = histories[i];
      for (int t = 0; t < kHistoryTokens; ++t) h.push_back(static_cast<int32_t>(rng() % kHistoryIds));
      row.prompt_tokens = h.data();
      row.num_prompt_tokens = kPromptTokens;
      row.output_tokens = h.data() + kPromptTokens;
      row.num_output_tokens = kHistoryTokens - kPromptTokens;
    }
  }
  uint64_t draw = 0;

  CaseResult r;
  r.name = op_name(c.kind);
  r.shape = "b=" + std::to_string(c.batch) + " vocab=" + std::to_string(c.vocab);
  if (c.kind == SamplingKind::kTopP && c.top_p >= 1.0f) {
    r.shape += " temperature=1 only";  // no filter: the CUDA sampler's split path in small batches
  } else if (c.kind != SamplingKind::kGreedy) {
    char top_p[32];
    std::snprintf(top_p, sizeof top_p, " top_p=%.2f", c.top_p);
    r.shape += top_p;
  }
  if (c.kind == SamplingKind::kFull) r.shape += " top_k=50 min_p=0.05 penalties logprobs=20";
  r.params = {{"batch", c.batch},
              {"vocab", c.vocab},
              {"greedy", c.kind == SamplingKind::kGreedy},
              {"full", c.kind == SamplingKind::kFull},
              {"top_p", c.top_p}};
  r.bytes = bytes;
  r.flops = (c.kind == SamplingKind::kGreedy ? 1.0 : c.kind == SamplingKind::kTopP ? 4.0 : 6.0) * n;
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
    if (ctx.wants(op_name(c.kind))) bench_sample(ctx, c);
  }
}

}  // namespace octavo::bench
