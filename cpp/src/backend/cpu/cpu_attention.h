// The CPU backend's paged KV cache kernels: writing this step's keys/values into their
// slots, and causal attention of packed queries over each sequence's cached blocks.
#pragma once

#include <cstdint>

#include "backend/backend.h"
#include "core/tensor.h"

namespace octavo::cpu {

// k, v: [tokens, kv_heads, head_dim] (row-strided); slot_mapping: [tokens], negative = skip;
// k_cache, v_cache: [num_blocks, block_size, kv_heads, head_dim].
void write_kv_cache(const Tensor& k, const Tensor& v, const int64_t* slot_mapping, Tensor& k_cache,
                    Tensor& v_cache, int num_threads);

// q, out: [tokens, q_heads, head_dim] (row-strided); caches as above. See
// Backend::paged_attention for the semantics.
void paged_attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                     const AttentionMetadata& meta, float scale, int32_t sliding_window,
                     Tensor& out, int num_threads);

}  // namespace octavo::cpu
