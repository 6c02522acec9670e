// Paged KV cache kernels for the CPU backend. The cache holds, per physical block,
// block_size token slots of [kv_heads, head_dim] keys (and the same for values); a
// sequence's block table maps its logical blocks to physical ones.
#include "backend/cpu/cpu_attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "backend/cpu/cpu_common.h"

namespace octavo::cpu {

namespace {

// The shape of a [num_blocks, block_size, kv_heads, head_dim] cache pair.
struct CacheGeometry {
  int64_t num_blocks = 0;
  int64_t block_size = 0;
  int64_t kv_heads = 0;
  int64_t head_dim = 0;
};

CacheGeometry check_caches(const Tensor& k_cache, const Tensor& v_cache, const char* op) {
  require_float32(k_cache, op, "k_cache");
  require_float32(v_cache, op, "v_cache");
  require_rank(k_cache, 4, op, "k_cache");
  require(k_cache.shape == v_cache.shape, op, "k_cache and v_cache must have one shape");
  CacheGeometry g;
  g.num_blocks = k_cache.dim(0);
  g.block_size = k_cache.dim(1);
  g.kv_heads = k_cache.dim(2);
  g.head_dim = k_cache.dim(3);
  require(g.block_size > 0 && g.kv_heads > 0 && g.head_dim > 0, op, "empty cache dims");
  return g;
}

// The [kv_heads, head_dim] slot `offset` of physical block `block`.
inline float* slot_ptr(const Tensor& cache, const CacheGeometry& g, int64_t block, int64_t offset) {
  return cache.ptr<float>() + block * cache.row_stride + offset * g.kv_heads * g.head_dim;
}

inline float dot(const float* a, const float* b, int64_t n) {
  float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = 0; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

}  // namespace

void write_kv_cache(const Tensor& k, const Tensor& v, const int64_t* slot_mapping, Tensor& k_cache,
                    Tensor& v_cache, int num_threads) {
  const char* op = "write_kv_cache";
  const CacheGeometry g = check_caches(k_cache, v_cache, op);
  require_float32(k, op, "k");
  require_float32(v, op, "v");
  require_rank(k, 3, op, "k");
  require(k.shape == v.shape, op, "k and v must have one shape");
  require(k.dim(1) == g.kv_heads && k.dim(2) == g.head_dim, op,
          "k must be [tokens, kv_heads, head_dim] of the cache's heads and head_dim");
  const int64_t tokens = k.rows();
  const int64_t num_slots = g.num_blocks * g.block_size;
  for (int64_t t = 0; t < tokens; ++t) {
    require(slot_mapping[t] < num_slots, op,
            "slot " + std::to_string(slot_mapping[t]) + " outside the cache's " +
                std::to_string(num_slots) + " slots");
  }
  const int64_t row_floats = g.kv_heads * g.head_dim;
#pragma omp parallel for num_threads(num_threads) if (tokens * row_floats >= kMinParallelFloats)
  for (int64_t t = 0; t < tokens; ++t) {
    const int64_t slot = slot_mapping[t];
    if (slot < 0) continue;  // padding token: nothing to store
    const int64_t block = slot / g.block_size, offset = slot % g.block_size;
    std::memcpy(slot_ptr(k_cache, g, block, offset), k.ptr<float>() + t * k.row_stride,
                row_floats * sizeof(float));
    std::memcpy(slot_ptr(v_cache, g, block, offset), v.ptr<float>() + t * v.row_stride,
                row_floats * sizeof(float));
  }
}

void paged_attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                     const AttentionMetadata& meta, float scale, int32_t sliding_window,
                     Tensor& out, int num_threads) {
  const char* op = "paged_attention";
  const CacheGeometry g = check_caches(k_cache, v_cache, op);
  require_float32(q, op, "q");
  require_float32(out, op, "out");
  require_rank(q, 3, op, "q");
  require(out.shape == q.shape, op, "out must have q's shape");
  const int64_t tokens = q.rows(), q_heads = q.dim(1), head_dim = g.head_dim;
  require(q.dim(2) == head_dim, op, "q's head_dim differs from the cache's");
  require(q_heads % g.kv_heads == 0, op, "q_heads must be a multiple of kv_heads");
  const int64_t group = q_heads / g.kv_heads;
  const int32_t num_seqs = meta.num_seqs;
  require(num_seqs >= 0, op, "negative num_seqs");
  if (num_seqs == 0) {
    require(tokens == 0, op, "queries but no sequences");
    return;
  }

  // Check the metadata once, serially, so the parallel loop below reads only valid blocks,
  // and note which sequence each packed query token belongs to.
  const int32_t* qsl = meta.query_start_loc;
  require(qsl[0] == 0 && qsl[num_seqs] == tokens, op,
          "query_start_loc must run from 0 to the number of query tokens");
  std::vector<int32_t> token_seq(static_cast<size_t>(tokens));
  int64_t max_context = 0;
  for (int32_t b = 0; b < num_seqs; ++b) {
    const int64_t q_len = qsl[b + 1] - qsl[b];
    const int64_t seq_len = meta.seq_lens[b];
    require(q_len >= 0 && qsl[b + 1] <= tokens, op,
            "query_start_loc must not decrease nor pass the number of query tokens");
    require(seq_len >= q_len, op, "a sequence is shorter than its query tokens");
    if (q_len == 0) continue;
    const int64_t first_query_pos = seq_len - q_len;
    const int64_t first_read =
        sliding_window > 0 ? std::max<int64_t>(0, first_query_pos - sliding_window + 1) : 0;
    const int64_t last_block = (seq_len - 1) / g.block_size;
    require(last_block < meta.max_blocks_per_seq, op,
            "a sequence needs more blocks than max_blocks_per_seq");
    for (int64_t lb = first_read / g.block_size; lb <= last_block; ++lb) {
      const int32_t block = meta.block_tables[b * int64_t{meta.max_blocks_per_seq} + lb];
      require(block >= 0 && block < g.num_blocks, op,
              "block id " + std::to_string(block) + " outside the cache");
    }
    const int64_t context =
        sliding_window > 0 ? std::min<int64_t>(seq_len, sliding_window) : seq_len;
    max_context = std::max(max_context, context);
    std::fill(token_seq.begin() + qsl[b], token_seq.begin() + qsl[b + 1], b);
  }

  // One work item is one query token and one kv head: the `group` query heads that share the
  // kv head are done together so each key/value row is loaded once for all of them.
  const int64_t items = tokens * g.kv_heads;
#pragma omp parallel num_threads(num_threads) if (items > 1)
  {
    std::vector<float> scores(static_cast<size_t>(group * max_context));  // [group, context]
    std::vector<float> acc(static_cast<size_t>(group * head_dim));        // [group, head_dim]
    std::vector<float> inv_sum(static_cast<size_t>(group));
#pragma omp for schedule(dynamic)
    for (int64_t item = 0; item < items; ++item) {
      const int64_t t = item / g.kv_heads, kv_head = item % g.kv_heads;
      const int32_t b = token_seq[t];
      const int64_t q_len = qsl[b + 1] - qsl[b];
      const int64_t pos = meta.seq_lens[b] - q_len + (t - qsl[b]);
      const int64_t first = sliding_window > 0 ? std::max<int64_t>(0, pos - sliding_window + 1) : 0;
      const int64_t n = pos - first + 1;
      const int32_t* table = meta.block_tables + b * int64_t{meta.max_blocks_per_seq};
      const float* q_group = q.ptr<float>() + t * q.row_stride + kv_head * group * head_dim;
      const int64_t head_offset = kv_head * head_dim;

      for (int64_t j = 0; j < n; ++j) {
        const int64_t p = first + j;
        const float* key =
            slot_ptr(k_cache, g, table[p / g.block_size], p % g.block_size) + head_offset;
        for (int64_t h = 0; h < group; ++h)
          scores[h * n + j] = dot(q_group + h * head_dim, key, head_dim) * scale;
      }
      for (int64_t h = 0; h < group; ++h) {
        float* s = scores.data() + h * n;
        const float max_score = *std::max_element(s, s + n);
        float sum = 0.0f;
        for (int64_t j = 0; j < n; ++j) {
          s[j] = std::exp(s[j] - max_score);
          sum += s[j];
        }
        inv_sum[h] = 1.0f / sum;
      }
      std::fill(acc.begin(), acc.end(), 0.0f);
      for (int64_t j = 0; j < n; ++j) {
        const int64_t p = first + j;
        const float* value =
            slot_ptr(v_cache, g, table[p / g.block_size], p % g.block_size) + head_offset;
        for (int64_t h = 0; h < group; ++h) {
          const float weight = scores[h * n + j];
          float* a = acc.data() + h * head_dim;
#pragma omp simd
          for (int64_t d = 0; d < head_dim; ++d) a[d] += weight * value[d];
        }
      }
      float* out_group = out.ptr<float>() + t * out.row_stride + kv_head * group * head_dim;
      for (int64_t h = 0; h < group; ++h) {
        for (int64_t d = 0; d < head_dim; ++d)
          out_group[h * head_dim + d] = acc[h * head_dim + d] * inv_sum[h];
      }
    }
  }
}

}  // namespace octavo::cpu
