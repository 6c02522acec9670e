// One benchmark per kernel family, each over the Backend interface only: the backend is
// chosen at the command line, the shapes come from the case table (cases.h). Each case
// counts the fewest bytes one call must move and its FLOPs, sizes its input rotation from
// those bytes, and hands the op to the harness.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "cases.h"
#include "harness.h"

namespace octavo::bench {

struct BenchContext {
  Backend& backend;
  DeviceClock& clock;
  TimingConfig timing;
  int64_t llc_bytes = 0;
  Ceilings ceilings;
  std::string filter;  // run only ops whose name contains it (empty: all)
  uint64_t seed = 1;
  std::vector<CaseResult> results;

  bool wants(const std::string& op) const {
    return filter.empty() || op.find(filter) != std::string::npos;
  }
  // Input sets to cycle for an op whose inputs and outputs of one call occupy
  // footprint_bytes (the bytes it moves, less what it reads and writes in place).
  int sets_for(double footprint_bytes) const {
    return rotation_sets(static_cast<int64_t>(footprint_bytes), llc_bytes);
  }
  uint64_t next_seed() { return seed++; }
  int64_t elem_bytes() const { return static_cast<int64_t>(dtype_size(backend.compute_dtype())); }
  // Times op, prints its line and keeps the result; result's stats are filled in here.
  void run(CaseResult result, const TimedOp& op);
};

// Paged decode attention, prefill attention (one causal sequence) and the KV-cache write.
void bench_attention(BenchContext& ctx, const CaseTable& cases);
// RMSNorm, fused add + RMSNorm, RoPE, SiLU * mul, embedding.
void bench_elementwise(BenchContext& ctx, const CaseTable& cases);
// Greedy, top_p and full (every filter, penalties, logprobs) sampling.
void bench_sampling(BenchContext& ctx, const CaseTable& cases);
// The backend's GEMM at decode (m = 1..64) and prefill shapes.
void bench_gemm(BenchContext& ctx, const CaseTable& cases);

}  // namespace octavo::bench
