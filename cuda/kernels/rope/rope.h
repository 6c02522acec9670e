// Rotary position embedding, HF "rotate_half" (NeoX) layout, applied in place to the q and k
// heads of each token from a float32 cos/sin table.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "common/kernel_dtype.h"

namespace octavo::cuda {

// For each head of q and k at token t, with p = positions[t], h = rot_dim / 2, i < h:
//   x1 = x[i], x2 = x[i + h], c = cos_sin[p, i], s = cos_sin[p, h + i]
//   x[i] = x1 * c - x2 * s;  x[i + h] = x2 * c + x1 * s   (in fp32, rounded once)
// Dims from rot_dim to head_dim pass through (partial rotary). positions must lie in the
// table (not checked on the device). q and k may be slices of one fused QKV buffer but
// must not overlap. Throws std::invalid_argument for odd or non-positive head_dim, odd
// rot_dim, rot_dim outside (0, head_dim], negative counts or short row strides.
// The KV-cache write launch_rope can do on its way (its `cache` argument): the rotated k and
// v [tokens, kv_heads, head_dim] go to the caches [num_blocks, block_size, kv_heads,
// head_dim] at slot_mapping[token] (-1: not stored), as launch_write_kv_cache would store
// them after the rope: one launch instead of two in every layer of a decode step.
struct RopeCacheWrite {
  const void* v;                // [tokens, kv_heads, head_dim], rows v_row_stride apart
  int64_t v_row_stride;         // elements
  const int64_t* slot_mapping;  // [tokens]
  void* k_cache;
  void* v_cache;
};

void launch_rope(void* q,                     // [tokens, q_heads, head_dim], rows q_row_stride apart
                 int64_t q_row_stride,        // elements
                 void* k,                     // [tokens, kv_heads, head_dim], rows k_row_stride apart
                 int64_t k_row_stride,        // elements
                 const int32_t* positions,    // [tokens]
                 const float* cos_sin,        // [max_pos, rot_dim], rows cos_sin_row_stride apart:
                                              // cos in [0, rot_dim/2), sin in [rot_dim/2, rot_dim)
                 int64_t cos_sin_row_stride,  // floats
                 int64_t rot_dim, int64_t tokens, int64_t q_heads, int64_t kv_heads, int64_t head_dim,
                 KernelDType dtype, cudaStream_t stream, const RopeCacheWrite* cache = nullptr);

}  // namespace octavo::cuda
