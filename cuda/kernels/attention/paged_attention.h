// Paged attention over a block-table KV cache (vLLM layout), for a batch that mixes prefill
// rows (many queries), chunked-prefill rows and decode rows (one query). Semantics are those
// of the CPU backend's paged_attention (cpp/src/backend/cpu/cpu_attention.cc).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "common/kernel_dtype.h"

namespace octavo::cuda {

// Device workspace (bytes) that launch_paged_attention needs for any step with at most
// max_num_seqs sequences whose contexts are at most max_seq_len tokens (the engine's
// max_num_seqs and max_model_len; max_num_batched_tokens also bounds the sequences of a step
// when every row has a query). Only long-context decode rows use it: their partial softmax
// results (max, sum, unnormalised output) per context split. 0 when no split can happen.
size_t paged_attention_workspace_bytes(int64_t max_num_seqs, int64_t q_heads, int64_t kv_heads,
                                       int64_t head_dim, int64_t max_seq_len);

// The kernel that takes the prefill rows (more than one query). kAuto: the fastest the device,
// dtype and shape allow (paged_attention.cu: choose_paths; OCTAVO_PREFILL_FLASH=1 and
// OCTAVO_CLASSIC_ATTENTION=1 steer it). The others name one kernel, for tests and A/B
// measurements: launch_paged_attention throws std::invalid_argument when it cannot run the
// shape on this device (kWgmma: sm_90a, fp16/bf16, head_dim 64 or 128; kFlash: sm_80+,
// fp16/bf16, head_dim 64 or 128; both need 16-byte aligned q and caches and a power-of-two
// block_size). Decode rows take their usual kernel either way.
enum class PrefillKernel { kAuto, kWgmma, kFlash, kSimple };

// Causal attention of each query over its row's cached keys/values (this step's included):
// the query at local index i of a row with q_len queries sits at position
// p = seq_lens[row] - q_len + i and attends to positions [first, p], first =
// max(0, p - sliding_window + 1) when sliding_window > 0, else 0. Query head h reads kv head
// h / (q_heads / kv_heads). Scores are scaled by `scale`; softmax and sums are fp32.
//
// max_query_len and max_seq_len must bound the rows' query lengths and seq_lens (they size
// the grids). head_dim must be 16, 32, 64, 96 or 128. The workspace must hold
// paged_attention_workspace_bytes(num_seqs, q_heads, kv_heads, head_dim, max_seq_len) bytes
// (a larger bound is fine) and be zero-filled before its first use (its first 2 KB are
// arrival counters that every launch leaves at zero again; the rest is scratch). Throws
// std::invalid_argument for bad shapes.
void launch_paged_attention(
    void* out,                     // [num_tokens, q_heads, head_dim], rows out_row_stride apart
    int64_t out_row_stride,        // elements
    const void* q,                 // [num_tokens, q_heads, head_dim], rows q_row_stride apart
    int64_t q_row_stride,          // elements
    const void* k_cache,           // [num_blocks, block_size, kv_heads, head_dim]
    const void* v_cache,           // [num_blocks, block_size, kv_heads, head_dim]
    const int32_t* query_start_loc,  // [num_seqs + 1], device
    const int32_t* seq_lens,         // [num_seqs], device: context length after this step
    const int32_t* block_tables,     // [num_seqs, max_blocks_per_seq], device
    int64_t num_seqs, int64_t max_blocks_per_seq, int64_t block_size, int64_t num_tokens,
    int64_t max_query_len, int64_t max_seq_len, int64_t q_heads, int64_t kv_heads,
    int64_t head_dim, float scale, int64_t sliding_window, KernelDType dtype, void* workspace,
    size_t workspace_bytes, cudaStream_t stream, PrefillKernel prefill_kernel = PrefillKernel::kAuto);

// The same attention through the simple one-warp-per-(query, head) kernel only: the
// fallback for shapes the fast paths do not take, and a second opinion for tests. Needs no
// workspace.
void launch_paged_attention_simple(
    void* out, int64_t out_row_stride, const void* q, int64_t q_row_stride, const void* k_cache,
    const void* v_cache, const int32_t* query_start_loc, const int32_t* seq_lens,
    const int32_t* block_tables, int64_t num_seqs, int64_t max_blocks_per_seq,
    int64_t block_size, int64_t num_tokens, int64_t q_heads, int64_t kv_heads, int64_t head_dim,
    float scale, int64_t sliding_window, KernelDType dtype, cudaStream_t stream);

}  // namespace octavo::cuda
