// Stores this step's keys and values into the paged KV cache at their slots.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "common/kernel_dtype.h"

namespace octavo::cuda {

// k_cache[s] = k[t], v_cache[s] = v[t] for s = slot_mapping[t] >= 0 (slot = block *
// block_size + offset; a slot's row of kv_heads * head_dim elements starts at
// s * kv_heads * head_dim). Negative slots (padding tokens) are skipped; slots past the
// cache are not checked on the device. Throws std::invalid_argument for negative sizes or
// short row strides.
void launch_write_kv_cache(const void* k,                 // [tokens, kv_heads, head_dim], rows k_row_stride apart
                           int64_t k_row_stride,          // elements
                           const void* v,                 // [tokens, kv_heads, head_dim], rows v_row_stride apart
                           int64_t v_row_stride,          // elements
                           const int64_t* slot_mapping,   // [tokens]
                           void* k_cache,                 // [num_blocks, block_size, kv_heads, head_dim]
                           void* v_cache,                 // [num_blocks, block_size, kv_heads, head_dim]
                           int64_t tokens, int64_t kv_heads, int64_t head_dim, KernelDType dtype,
                           cudaStream_t stream);

}  // namespace octavo::cuda
