// The backend's GEMM wrapper, y[m, n] = x[m, k] . w[n, k]^T, at the shapes a decoder layer
// runs: decode (m = batch of 1..64 tokens: reading the weight dominates, so it is bound by
// bandwidth) and prefill (m in the hundreds: bound by the FLOP rate). Every input set has
// its own weight, as consecutive layers do.
#include <string>

#include "bench_data.h"
#include "kernel_benches.h"

namespace octavo::bench {

namespace {

void bench_one_gemm(BenchContext& ctx, const GemmCase& c) {
  const int64_t e = ctx.elem_bytes();
  const double m = c.m, n = c.n, k = c.k;
  const double bytes = (m * k + n * k + m * n) * e;
  const int sets = ctx.sets_for(bytes);
  const DType dt = ctx.backend.compute_dtype();
  TensorSets x(ctx.backend, dt, {c.m, c.k}, sets, ctx.next_seed());
  TensorSets w(ctx.backend, dt, {c.n, c.k}, sets, ctx.next_seed(), -0.05f, 0.05f);
  TensorSets y(ctx.backend, dt, {c.m, c.n}, sets, ctx.next_seed());

  CaseResult r;
  r.name = "gemm";
  r.shape = c.label + " m=" + std::to_string(c.m) + " n=" + std::to_string(c.n) +
            " k=" + std::to_string(c.k);
  r.params = {{"label", c.label}, {"m", c.m}, {"n", c.n}, {"k", c.k}};
  r.bytes = bytes;
  r.flops = 2.0 * m * n * k;
  r.sets = sets;
  TimedOp op;
  op.sets = sets;
  op.call = [&](int s) {
    Tensor out = y[s];
    ctx.backend.gemm(x[s], w[s], nullptr, out);
  };
  ctx.run(std::move(r), op);
}

}  // namespace

void bench_gemm(BenchContext& ctx, const CaseTable& cases) {
  if (!ctx.wants("gemm")) return;
  for (const auto& c : cases.gemm) bench_one_gemm(ctx, c);
}

}  // namespace octavo::bench
