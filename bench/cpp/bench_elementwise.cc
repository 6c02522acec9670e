// Benchmarks of the memory-bound row ops: RMSNorm, fused add + RMSNorm, RoPE, SiLU * mul
// and the embedding gather. FLOPs are nominal per element: RMSNorm 4 (square, sum, scale,
// weight), fused add 5, RoPE 3 (two multiplies and an add per output), SiLU * mul 4 (exp,
// add, divide, multiply); the gather has none.
#include <cmath>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "bench_data.h"
#include "kernel_benches.h"

namespace octavo::bench {

namespace {

// Positions of the RoPE table (a 8k context) and Llama 3's rope_theta.
constexpr int kRopeMaxPosition = 8192;
constexpr double kRopeTheta = 500000.0;

std::string rows_shape(int rows, int width) {
  return "rows=" + std::to_string(rows) + " dim=" + std::to_string(width);
}

void bench_rms_norm(BenchContext& ctx, const NormCase& c, bool fused_add) {
  const int64_t e = ctx.elem_bytes();
  const double n = static_cast<double>(c.rows) * c.hidden;
  // rms_norm: x read, out written. add_rms_norm: residual read and written, delta read,
  // out written. The weight is read once either way.
  const double bytes = (fused_add ? 4.0 : 2.0) * n * e + static_cast<double>(c.hidden) * e;
  // The residual is read and written in place: one copy of it per set in the cache.
  const int sets = ctx.sets_for((fused_add ? 3.0 : 2.0) * n * e);
  const DType dt = ctx.backend.compute_dtype();
  TensorSets x(ctx.backend, dt, {c.rows, c.hidden}, sets, ctx.next_seed());
  std::unique_ptr<TensorSets> delta;
  if (fused_add) {
    delta = std::make_unique<TensorSets>(ctx.backend, dt, std::vector<int64_t>{c.rows, c.hidden},
                                         sets, ctx.next_seed());
  }
  TensorSets out(ctx.backend, dt, {c.rows, c.hidden}, sets, ctx.next_seed());
  TensorSets w(ctx.backend, dt, {c.hidden}, 1, ctx.next_seed(), 0.5f, 1.5f);
  constexpr float kEps = 1e-5f;

  CaseResult r;
  r.name = fused_add ? "add_rms_norm" : "rms_norm";
  r.shape = rows_shape(c.rows, c.hidden);
  r.params = {{"rows", c.rows}, {"hidden", c.hidden}};
  r.bytes = bytes;
  r.flops = (fused_add ? 5.0 : 4.0) * n;
  r.sets = sets;
  TimedOp op;
  op.sets = sets;
  op.call = [&](int s) {
    Tensor o = out[s];
    if (fused_add) {
      // The residual grows by a random delta each call: a random walk, no overflow in the
      // calls a run makes.
      Tensor residual = x[s];
      ctx.backend.add_rms_norm(residual, (*delta)[s], w[0], kEps, o);
    } else {
      ctx.backend.rms_norm(x[s], w[0], kEps, o);
    }
  };
  ctx.run(std::move(r), op);
}

void bench_rope(BenchContext& ctx, const RopeCase& c) {
  const int64_t e = ctx.elem_bytes();
  const double heads = c.q_heads + c.kv_heads;
  // q and k rotated in place (read + write), one position and one cos/sin row per token.
  const double bytes = 2.0 * c.tokens * heads * c.head_dim * e + 4.0 * c.tokens +
                       4.0 * c.tokens * c.head_dim;
  // In place: each set's q and k occupy the cache once, though their bytes move twice.
  const int sets = ctx.sets_for(static_cast<double>(c.tokens) * heads * c.head_dim * e + 4.0 * c.tokens);
  const DType dt = ctx.backend.compute_dtype();
  TensorSets q(ctx.backend, dt, {c.tokens, c.q_heads, c.head_dim}, sets, ctx.next_seed());
  TensorSets k(ctx.backend, dt, {c.tokens, c.kv_heads, c.head_dim}, sets, ctx.next_seed());

  // A real cos/sin table: rotations keep the norms, so values stay put however many
  // calls rotate the same q and k.
  const int half = c.head_dim / 2;
  std::vector<float> cos_sin(static_cast<size_t>(kRopeMaxPosition) * c.head_dim);
  for (int p = 0; p < kRopeMaxPosition; ++p) {
    for (int i = 0; i < half; ++i) {
      const double angle = p * std::pow(kRopeTheta, -2.0 * i / c.head_dim);
      cos_sin[static_cast<size_t>(p) * c.head_dim + i] = static_cast<float>(std::cos(angle));
      cos_sin[static_cast<size_t>(p) * c.head_dim + half + i] = static_cast<float>(std::sin(angle));
    }
  }
  // float32 whatever the compute dtype, as the model keeps it (positions need the precision).
  Buffer table_buffer = upload_floats(ctx.backend, DType::kFloat32, cos_sin);
  RopeTable table;
  table.cos_sin = Tensor(table_buffer.data(), DType::kFloat32, {kRopeMaxPosition, c.head_dim});

  std::mt19937 rng(static_cast<uint32_t>(ctx.next_seed()));
  std::uniform_int_distribution<int32_t> position(0, kRopeMaxPosition - 1);
  std::vector<int32_t> positions(static_cast<size_t>(sets) * c.tokens);
  for (int32_t& p : positions) p = position(rng);
  Buffer positions_buffer = upload_int32(ctx.backend, positions);
  const auto* position_base = static_cast<const int32_t*>(positions_buffer.data());

  CaseResult r;
  r.name = "rope";
  r.shape = "t=" + std::to_string(c.tokens) + " hq=" + std::to_string(c.q_heads) +
            " hkv=" + std::to_string(c.kv_heads) + " d=" + std::to_string(c.head_dim);
  r.params = {{"tokens", c.tokens},
              {"q_heads", c.q_heads},
              {"kv_heads", c.kv_heads},
              {"head_dim", c.head_dim}};
  r.bytes = bytes;
  r.flops = 3.0 * c.tokens * heads * c.head_dim;
  r.sets = sets;
  TimedOp op;
  op.sets = sets;
  op.call = [&](int s) {
    Tensor qs = q[s], ks = k[s];
    ctx.backend.rope(qs, ks, position_base + static_cast<int64_t>(s) * c.tokens, table);
  };
  ctx.run(std::move(r), op);
}

void bench_silu_mul(BenchContext& ctx, const SiluMulCase& c) {
  const int64_t e = ctx.elem_bytes();
  const double n = static_cast<double>(c.tokens) * c.intermediate;
  const double bytes = 3.0 * n * e;  // gate and up read, out written
  const int sets = ctx.sets_for(bytes);
  const DType dt = ctx.backend.compute_dtype();
  TensorSets gate_up(ctx.backend, dt, {c.tokens, 2 * int64_t{c.intermediate}}, sets, ctx.next_seed(),
                     -4.0f, 4.0f);
  TensorSets out(ctx.backend, dt, {c.tokens, c.intermediate}, sets, ctx.next_seed());

  CaseResult r;
  r.name = "silu_mul";
  r.shape = "t=" + std::to_string(c.tokens) + " inter=" + std::to_string(c.intermediate);
  r.params = {{"tokens", c.tokens}, {"intermediate", c.intermediate}};
  r.bytes = bytes;
  r.flops = 4.0 * n;
  r.sets = sets;
  TimedOp op;
  op.sets = sets;
  op.call = [&](int s) {
    Tensor o = out[s];
    ctx.backend.silu_mul(gate_up[s], o);
  };
  ctx.run(std::move(r), op);
}

void bench_embedding(BenchContext& ctx, const EmbeddingCase& c) {
  const int64_t e = ctx.elem_bytes();
  const double bytes = 2.0 * c.tokens * c.hidden * e + 4.0 * c.tokens;  // rows read, written; ids
  const int sets = ctx.sets_for(bytes);
  const DType dt = ctx.backend.compute_dtype();
  TensorSets table(ctx.backend, dt, {c.table_rows, c.hidden}, 1, ctx.next_seed());
  TensorSets out(ctx.backend, dt, {c.tokens, c.hidden}, sets, ctx.next_seed());
  std::mt19937 rng(static_cast<uint32_t>(ctx.next_seed()));
  std::uniform_int_distribution<int32_t> row(0, c.table_rows - 1);
  std::vector<int32_t> ids(static_cast<size_t>(sets) * c.tokens);
  for (int32_t& id : ids) id = row(rng);
  Buffer ids_buffer = upload_int32(ctx.backend, ids);
  const auto* id_base = static_cast<const int32_t*>(ids_buffer.data());

  CaseResult r;
  r.name = "embedding";
  r.shape = "t=" + std::to_string(c.tokens) + " dim=" + std::to_string(c.hidden) +
            " table=" + std::to_string(c.table_rows);
  r.params = {{"tokens", c.tokens}, {"hidden", c.hidden}, {"table_rows", c.table_rows}};
  r.bytes = bytes;
  r.flops = 0.0;
  r.sets = sets;
  TimedOp op;
  op.sets = sets;
  op.call = [&](int s) {
    Tensor o = out[s];
    ctx.backend.embedding(table[0], id_base + static_cast<int64_t>(s) * c.tokens, o);
  };
  ctx.run(std::move(r), op);
}

}  // namespace

void bench_elementwise(BenchContext& ctx, const CaseTable& cases) {
  if (ctx.wants("rms_norm")) {
    for (const auto& c : cases.rms_norm) bench_rms_norm(ctx, c, false);
  }
  if (ctx.wants("add_rms_norm")) {
    for (const auto& c : cases.add_rms_norm) bench_rms_norm(ctx, c, true);
  }
  if (ctx.wants("rope")) {
    for (const auto& c : cases.rope) bench_rope(ctx, c);
  }
  if (ctx.wants("silu_mul")) {
    for (const auto& c : cases.silu_mul) bench_silu_mul(ctx, c);
  }
  if (ctx.wants("embedding")) {
    for (const auto& c : cases.embedding) bench_embedding(ctx, c);
  }
}

}  // namespace octavo::bench
