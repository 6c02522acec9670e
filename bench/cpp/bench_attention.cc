// Attention benchmarks. The KV cache of each case holds every input set's blocks, handed
// out in a random order as a block pool would after some churn, so a sequence's blocks are
// scattered over the cache rather than contiguous. FLOPs count QK^T and PV (2 per
// multiply-add each); the softmax is not counted.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "bench_data.h"
#include "kernel_benches.h"

namespace octavo::bench {

namespace {

std::vector<int32_t> shuffled_ids(int64_t n, uint64_t seed) {
  std::vector<int32_t> ids(static_cast<size_t>(n));
  std::iota(ids.begin(), ids.end(), 0);
  std::mt19937_64 rng(seed);
  std::shuffle(ids.begin(), ids.end(), rng);
  return ids;
}

// Caches and per-set metadata for `seqs` sequences of `context` tokens per input set.
struct PagedCache {
  int64_t blocks_per_seq = 0;
  TensorSets k_cache, v_cache;  // one set each: [num_blocks, block_size, kv_heads, head_dim]
  Buffer query_start_loc;       // [seqs + 1]
  Buffer seq_lens;              // [seqs]
  Buffer block_tables;          // [sets, seqs, blocks_per_seq]

  PagedCache(BenchContext& ctx, int sets, int seqs, int context, int query_len, int kv_heads,
             int head_dim)
      : blocks_per_seq((context + kBlockSize - 1) / kBlockSize),
        k_cache(ctx.backend, ctx.backend.compute_dtype(),
                {sets * seqs * blocks_per_seq, kBlockSize, kv_heads, head_dim}, 1, ctx.next_seed()),
        v_cache(ctx.backend, ctx.backend.compute_dtype(),
                {sets * seqs * blocks_per_seq, kBlockSize, kv_heads, head_dim}, 1, ctx.next_seed()) {
    std::vector<int32_t> qsl(static_cast<size_t>(seqs) + 1);
    for (int s = 0; s <= seqs; ++s) qsl[s] = s * query_len;
    query_start_loc = upload_int32(ctx.backend, qsl);
    seq_lens = upload_int32(ctx.backend, std::vector<int32_t>(static_cast<size_t>(seqs), context));
    block_tables = upload_int32(ctx.backend, shuffled_ids(sets * seqs * blocks_per_seq, ctx.next_seed()));
  }

  AttentionMetadata metadata(int set, int seqs, int query_len, int context) const {
    AttentionMetadata m;
    m.num_seqs = seqs;
    m.query_start_loc = static_cast<const int32_t*>(query_start_loc.data());
    m.seq_lens = static_cast<const int32_t*>(seq_lens.data());
    m.block_tables = static_cast<const int32_t*>(block_tables.data()) +
                     static_cast<int64_t>(set) * seqs * blocks_per_seq;
    m.max_blocks_per_seq = static_cast<int32_t>(blocks_per_seq);
    m.max_query_len = query_len;
    m.max_seq_len = context;
    return m;
  }
};

void bench_decode(BenchContext& ctx, const DecodeAttentionCase& c) {
  const int64_t e = ctx.elem_bytes();
  const double kv_bytes = 2.0 * c.batch * c.context * c.kv_heads * c.head_dim * e;
  const double qo_bytes = 2.0 * c.batch * c.q_heads * c.head_dim * e;
  const double meta_bytes =
      4.0 * (c.batch * ((c.context + kBlockSize - 1) / kBlockSize) + 2 * c.batch + 1);
  const double bytes = kv_bytes + qo_bytes + meta_bytes;
  const int sets = ctx.sets_for(bytes);

  PagedCache cache(ctx, sets, c.batch, c.context, 1, c.kv_heads, c.head_dim);
  const DType dt = ctx.backend.compute_dtype();
  TensorSets q(ctx.backend, dt, {c.batch, c.q_heads, c.head_dim}, sets, ctx.next_seed());
  TensorSets out(ctx.backend, dt, {c.batch, c.q_heads, c.head_dim}, sets, ctx.next_seed());
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));

  CaseResult r;
  r.name = "decode_attention";
  r.shape = "b=" + std::to_string(c.batch) + " ctx=" + std::to_string(c.context) +
            " hq=" + std::to_string(c.q_heads) + " hkv=" + std::to_string(c.kv_heads) +
            " d=" + std::to_string(c.head_dim);
  r.params = {{"batch", c.batch},       {"context", c.context},   {"q_heads", c.q_heads},
              {"kv_heads", c.kv_heads}, {"head_dim", c.head_dim}, {"block_size", kBlockSize}};
  r.bytes = bytes;
  r.flops = 4.0 * c.batch * c.q_heads * c.context * c.head_dim;
  r.sets = sets;
  TimedOp op;
  op.sets = sets;
  op.call = [&](int s) {
    Tensor o = out[s];
    ctx.backend.paged_attention(q[s], cache.k_cache[0], cache.v_cache[0],
                                cache.metadata(s, c.batch, 1, c.context), scale, 0, o);
  };
  ctx.run(std::move(r), op);
}

void bench_prefill(BenchContext& ctx, const PrefillAttentionCase& c) {
  const int64_t e = ctx.elem_bytes();
  const double t = c.tokens;
  const double bytes = 2.0 * t * c.q_heads * c.head_dim * e + 2.0 * t * c.kv_heads * c.head_dim * e +
                       4.0 * (std::ceil(t / kBlockSize) + 3);
  const int sets = ctx.sets_for(bytes);

  PagedCache cache(ctx, sets, 1, c.tokens, c.tokens, c.kv_heads, c.head_dim);
  const DType dt = ctx.backend.compute_dtype();
  TensorSets q(ctx.backend, dt, {c.tokens, c.q_heads, c.head_dim}, sets, ctx.next_seed());
  TensorSets out(ctx.backend, dt, {c.tokens, c.q_heads, c.head_dim}, sets, ctx.next_seed());
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));

  CaseResult r;
  r.name = "prefill_attention";
  r.shape = "t=" + std::to_string(c.tokens) + " hq=" + std::to_string(c.q_heads) +
            " hkv=" + std::to_string(c.kv_heads) + " d=" + std::to_string(c.head_dim) + " causal";
  r.params = {{"tokens", c.tokens},     {"q_heads", c.q_heads},   {"kv_heads", c.kv_heads},
              {"head_dim", c.head_dim}, {"block_size", kBlockSize}};
  r.bytes = bytes;
  // Query i attends to i + 1 keys: tokens * (tokens + 1) / 2 (query, key) pairs.
  r.flops = 4.0 * c.q_heads * c.head_dim * t * (t + 1) / 2;
  r.sets = sets;
  TimedOp op;
  op.sets = sets;
  op.call = [&](int s) {
    Tensor o = out[s];
    ctx.backend.paged_attention(q[s], cache.k_cache[0], cache.v_cache[0],
                                cache.metadata(s, 1, c.tokens, c.tokens), scale, 0, o);
  };
  ctx.run(std::move(r), op);
}

void bench_kv_write(BenchContext& ctx, const KvWriteCase& c) {
  const int64_t e = ctx.elem_bytes();
  const double row_bytes = static_cast<double>(c.kv_heads) * c.head_dim * e;
  // k and v read, then written to the caches; one int64 slot per token.
  const double bytes = 4.0 * c.tokens * row_bytes + 8.0 * c.tokens;
  const int sets = ctx.sets_for(bytes);
  const int64_t blocks_per_set = (c.tokens + kBlockSize - 1) / kBlockSize;
  const int64_t num_blocks = sets * blocks_per_set;
  const DType dt = ctx.backend.compute_dtype();
  TensorSets k_cache(ctx.backend, dt, {num_blocks, kBlockSize, c.kv_heads, c.head_dim}, 1,
                     ctx.next_seed());
  TensorSets v_cache(ctx.backend, dt, {num_blocks, kBlockSize, c.kv_heads, c.head_dim}, 1,
                     ctx.next_seed());
  TensorSets k(ctx.backend, dt, {c.tokens, c.kv_heads, c.head_dim}, sets, ctx.next_seed());
  TensorSets v(ctx.backend, dt, {c.tokens, c.kv_heads, c.head_dim}, sets, ctx.next_seed());

  // [sets, tokens] slots. Prefill: one sequence's consecutive slots in its (scattered)
  // blocks. Decode: each token a different sequence's next slot, anywhere in the cache.
  std::vector<int64_t> slots(static_cast<size_t>(sets) * c.tokens);
  if (c.one_sequence) {
    const std::vector<int32_t> blocks = shuffled_ids(num_blocks, ctx.next_seed());
    for (int s = 0; s < sets; ++s) {
      for (int t = 0; t < c.tokens; ++t) {
        slots[s * c.tokens + t] =
            int64_t{blocks[s * blocks_per_set + t / kBlockSize]} * kBlockSize + t % kBlockSize;
      }
    }
  } else {
    const std::vector<int32_t> perm = shuffled_ids(num_blocks * kBlockSize, ctx.next_seed());
    std::copy(perm.begin(), perm.begin() + slots.size(), slots.begin());
  }
  Buffer slot_buffer = upload_int64(ctx.backend, slots);
  const auto* slot_base = static_cast<const int64_t*>(slot_buffer.data());

  CaseResult r;
  r.name = "kv_cache_write";
  r.shape = "t=" + std::to_string(c.tokens) + " hkv=" + std::to_string(c.kv_heads) +
            " d=" + std::to_string(c.head_dim) + (c.one_sequence ? " prefill" : " decode");
  r.params = {{"tokens", c.tokens},     {"kv_heads", c.kv_heads},         {"head_dim", c.head_dim},
              {"block_size", kBlockSize}, {"one_sequence", c.one_sequence}};
  r.bytes = bytes;
  r.flops = 0.0;
  r.sets = sets;
  TimedOp op;
  op.sets = sets;
  op.call = [&](int s) {
    Tensor kc = k_cache[0], vc = v_cache[0];
    ctx.backend.write_kv_cache(k[s], v[s], slot_base + static_cast<int64_t>(s) * c.tokens, kc, vc);
  };
  ctx.run(std::move(r), op);
}

}  // namespace

void bench_attention(BenchContext& ctx, const CaseTable& cases) {
  if (ctx.wants("decode_attention")) {
    for (const auto& c : cases.decode_attention) bench_decode(ctx, c);
  }
  if (ctx.wants("prefill_attention")) {
    for (const auto& c : cases.prefill_attention) bench_prefill(ctx, c);
  }
  if (ctx.wants("kv_cache_write")) {
    for (const auto& c : cases.kv_write) bench_kv_write(ctx, c);
  }
}

}  // namespace octavo::bench
