// What the paged-attention kernels share: the launch parameters after host-side checks, the
// position arithmetic every path must agree on, 16-byte loads widened to fp32, and the
// per-path launchers (each .cu instantiates its own for float, __half and __nv_bfloat16).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "common/dispatch.cuh"
#include "common/vector_access.cuh"

namespace octavo::cuda::paged_attention_detail {

struct Params {
  void* out;                 // [num_tokens, q_heads, head_dim]
  int64_t out_row_stride;    // elements
  const void* q;             // [num_tokens, q_heads, head_dim]
  int64_t q_row_stride;      // elements
  const void* k_cache;       // [num_blocks, block_size, kv_heads, head_dim]
  const void* v_cache;       // [num_blocks, block_size, kv_heads, head_dim]
  const int32_t* query_start_loc;  // [num_seqs + 1]
  const int32_t* seq_lens;         // [num_seqs]
  const int32_t* block_tables;     // [num_seqs, max_blocks_per_seq]
  int64_t max_blocks_per_seq;
  int32_t num_seqs;
  int32_t num_tokens;
  int32_t block_size;
  int32_t block_shift;     // log2(block_size) when it is a power of two, else -1
  int32_t q_heads;
  int32_t kv_heads;
  int32_t head_dim;
  int32_t group;           // q_heads / kv_heads
  int32_t sliding_window;  // <= 0: none
  float scale;
};

// First position a query at `pos` attends to.
__device__ __forceinline__ int first_key_pos(int pos, int sliding_window) {
  return sliding_window > 0 ? max(0, pos - sliding_window + 1) : 0;
}

// Widens 16 bytes of T at p (16-byte aligned) to fp32.
template <typename T>
__device__ __forceinline__ void load_vec16_float(const T* p, float (&out)[Vec16<T>::kSize]) {
  const Vec16<T> v = load_vec16(p);
#pragma unroll
  for (int i = 0; i < Vec16<T>::kSize; ++i) out[i] = to_float(v.v[i]);
}

template <int N>
__device__ __forceinline__ void fill_zero(float (&out)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) out[i] = 0.0f;
}

__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int off = 16; off > 0; off /= 2) x += __shfl_xor_sync(0xffffffffu, x, off);
  return x;
}

__device__ __forceinline__ float warp_max(float x) {
#pragma unroll
  for (int off = 16; off > 0; off /= 2) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, off));
  return x;
}

// Which rows a launch covers: the decode and prefill paths split a batch by query count.
enum class RowFilter { kAll, kSingleQuery, kMultiQuery };

// Simple path: any head_dim, block_size and alignment.
template <typename T>
void launch_simple(const Params& p, RowFilter rows, cudaStream_t stream);

// Decode path (rows with exactly one query), group <= kMaxDecodeGroup, head_dim in
// {32, 64, 96, 128}, power-of-two block_size, 16-byte aligned q and caches.
constexpr int kMaxDecodeGroup = 8;
// Context splits for `num_seqs` rows whose contexts are at most max_context tokens.
int choose_decode_splits(int64_t num_seqs, int64_t kv_heads, int64_t max_context);
// Workspace bytes for num_splits splits (0 when num_splits == 1).
size_t decode_workspace_bytes(int64_t num_seqs, int64_t q_heads, int64_t head_dim,
                              int64_t num_splits);
template <typename T>
void launch_decode(const Params& p, int num_splits, void* workspace, cudaStream_t stream);

// Tiled prefill paths (rows with more than one query); same shape limits as decode, any
// group. CUDA cores, fp32 tiles (any dtype):
size_t prefill_smem_bytes(int64_t head_dim);
template <typename T>
void launch_prefill(const Params& p, int64_t max_query_len, cudaStream_t stream);
// Tensor cores (wmma), fp16 and bf16 only:
size_t prefill_mma_smem_bytes(int64_t head_dim);
template <typename T>
void launch_prefill_mma(const Params& p, int64_t max_query_len, cudaStream_t stream);

}  // namespace octavo::cuda::paged_attention_detail
