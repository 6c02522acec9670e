// What the paged-attention kernels share: the launch parameters after host-side checks, the
// position arithmetic every path must agree on, 16-byte loads widened to fp32, and the
// per-path launchers (each .cu instantiates its own for float, __half and __nv_bfloat16).
#pragma once

#include <cuda_runtime.h>

#include <algorithm>

#include <cstddef>
#include <cstdint>

#include "common/dependent_launch.cuh"
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
  bool out_vec16;          // out and its row stride allow 16-byte stores
  int32_t min_split_steps; // decode: a split covers at least this many 16-key steps
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

// Prefill grids enumerate (row, query tile) work items of the rows with more than one query,
// not rows x the longest row's tiles: a batch of many decode rows and one long prefill row
// would otherwise launch mostly empty blocks, each holding a prefill block's shared memory
// while it exits.
struct PrefillTile {
  int seq;   // -1: past the last work item
  int tile;  // rows [tile * rows_per_tile, ...) of the row's q_len * group (query, head) rows
};

// Grid size: a row of q_len queries has ceil(q_len * group / rows_per_tile) tiles, at most
// q_len * group / rows_per_tile + 1, and at most min(num_seqs, num_tokens / 2) rows have more
// than one query.
inline int64_t prefill_grid_tiles(const Params& p, int64_t max_query_len, int rows_per_tile) {
  const int64_t by_tokens = ceil_div(int64_t{p.num_tokens} * p.group, rows_per_tile) +
                            std::min<int64_t>(p.num_seqs, p.num_tokens / 2);
  const int64_t by_rows = ceil_div(max_query_len * p.group, rows_per_tile) * p.num_seqs;
  return std::min(by_tokens, by_rows);
}

// Work item blockIdx.x, by a block-wide prefix sum over the rows' tile counts (num_seqs / kThreads
// steps). Every thread of the block must call it: it has barriers. Needs num_seqs > 0.
template <int kThreads>
__device__ PrefillTile find_prefill_tile(const Params& p, int rows_per_tile) {
  constexpr int kWarps = kThreads / 32;
  __shared__ int s_warp_total[kWarps];
  __shared__ int s_seq, s_tile;
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int target = blockIdx.x;
  if (tid == 0) s_seq = -1;
  int base = 0;  // work items of the rows before this step's
  for (int s0 = 0; s0 < p.num_seqs; s0 += kThreads) {
    const int s = s0 + tid;
    int count = 0;
    if (s < p.num_seqs) {
      const int q_len = p.query_start_loc[s + 1] - p.query_start_loc[s];
      if (q_len > 1) count = (q_len * p.group + rows_per_tile - 1) / rows_per_tile;
    }
    int inclusive = count;
#pragma unroll
    for (int off = 1; off < 32; off *= 2) {
      const int y = __shfl_up_sync(0xffffffffu, inclusive, off);
      if (lane >= off) inclusive += y;
    }
    if (lane == 31) s_warp_total[warp] = inclusive;
    __syncthreads();
    int total = 0;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      if (w < warp) inclusive += s_warp_total[w];
      total += s_warp_total[w];
    }
    inclusive += base;
    const int exclusive = inclusive - count;
    if (count > 0 && target >= exclusive && target < inclusive) {
      s_seq = s;
      s_tile = target - exclusive;
    }
    base += total;
    __syncthreads();  // s_seq is final for this step; s_warp_total may be rewritten
    if (s_seq >= 0) break;
  }
  return {s_seq, s_tile};
}

// Simple path: any head_dim, block_size and alignment.
template <typename T>
void launch_simple(const Params& p, RowFilter rows, cudaStream_t stream);

// Decode paths (rows with exactly one query). A row's context [first, pos] is cut into steps
// of kDecodeStepKeys keys aligned to absolute positions (step s: keys [16 s, 16 s + 16)),
// and the steps into splits of at least p.min_split_steps steps; each (row, kv head, split)
// is one block. The last split of a (row, kv head) to finish merges the splits through the
// workspace (tensor-core decode); the CUDA-core decode leaves that to a combine kernel.
constexpr int kDecodeStepKeys = 16;
// 256 keys by default (decode_min_split_steps): short contexts then need no merge at all.
// OCTAVO_DECODE_SPLIT_KEYS (a multiple of 16) overrides it, for measurements. On the H100,
// batch-1 decode (128 in / 128 out, Llama-3-8B shape) took 6.14 ms per token with 256 keys,
// 6.26 with 64 and 6.27 with 128 (2026-11-23, with the in-kernel merge).
constexpr int kMinSplitSteps = 16;
int decode_min_split_steps();
struct DecodeSplit {
  int num_splits;  // non-empty splits of this row (<= the grid's)
  int key_begin;   // this split's keys: [key_begin, key_end), within [first, pos]
  int key_end;
};
// The decode, tensor-core decode and combine kernels must agree, hence one function.
__device__ __forceinline__ DecodeSplit decode_split(int first, int pos, int grid_splits, int split,
                                                    int min_split_steps) {
  const int step0 = first / kDecodeStepKeys;
  const int steps = pos / kDecodeStepKeys - step0 + 1;
  const int per = max((steps + grid_splits - 1) / grid_splits, min_split_steps);
  DecodeSplit s;
  s.num_splits = (steps + per - 1) / per;
  s.key_begin = max(first, (step0 + split * per) * kDecodeStepKeys);
  s.key_end = min(pos + 1, (step0 + (split + 1) * per) * kDecodeStepKeys);
  return s;
}

// The workspace: arrival counters, one per (row, kv head), then rows (seq, split, q head),
// each with head_dim accumulator floats, a max (natural log units) and a sum. A row splits
// only while num_seqs * kv_heads < kDecodeCounterSlots (choose_decode_splits), so that many
// counters always suffice. They must be zero before the first launch (the backend allocates
// the workspace zeroed); the merging block puts its counter back to zero.
constexpr int64_t kDecodeCounterSlots = 512;
constexpr size_t kDecodeCounterBytes = kDecodeCounterSlots * sizeof(unsigned);
struct DecodeWorkspace {
  unsigned* counters;  // [num_seqs, kv_heads]
  float* acc;          // [num_seqs, grid_splits, q_heads, head_dim]
  float* max;          // [num_seqs, grid_splits, q_heads]
  float* sum;          // [num_seqs, grid_splits, q_heads]
};
DecodeWorkspace carve_decode_workspace(void* workspace, int64_t num_seqs, int64_t q_heads,
                                       int64_t head_dim, int64_t grid_splits);

// out[token, h] = sum_s e^(m_s - M) acc_s / sum_s e^(m_s - M) l_s over the row's num_splits
// splits, for the heads [head_begin, head_end), the calling threads taking (head, column)
// items tid, tid + nthreads, ... The workspace is read through volatile loads: in the
// tensor-core decode the partials come from other blocks of the same launch.
template <typename T>
__device__ void merge_decode_splits(const Params& p, const DecodeWorkspace& ws, int seq, int token,
                                    int head_begin, int head_end, int num_splits, int grid_splits,
                                    int tid, int nthreads) {
  const int D = p.head_dim;
  const volatile float* acc = ws.acc;
  const volatile float* mx = ws.max;
  const volatile float* sm = ws.sum;
  T* out = static_cast<T*>(p.out) + int64_t{token} * p.out_row_stride;
  const int items = (head_end - head_begin) * D;
  for (int i = tid; i < items; i += nthreads) {
    const int head = head_begin + i / D, d = i % D;
    const int64_t row0 = int64_t{seq} * grid_splits * p.q_heads + head;
    float m = -INFINITY;
    for (int s = 0; s < num_splits; ++s) m = fmaxf(m, mx[row0 + s * p.q_heads]);
    float l = 0.0f, o = 0.0f;
    for (int s = 0; s < num_splits; ++s) {
      const int64_t row = row0 + s * p.q_heads;
      const float f = expf(mx[row] - m);
      l += sm[row] * f;
      o += f * acc[row * D + d];
    }
    out[int64_t{head} * D + d] = from_float<T>(o / l);
  }
}

// CUDA cores, any dtype: group <= kMaxDecodeGroup, head_dim in {32, 64, 96, 128},
// power-of-two block_size, 16-byte aligned q and caches.
constexpr int kMaxDecodeGroup = 8;
// Tensor cores, fp16/bf16 on sm_80+: group <= kMaxDecodeMmaGroup (one 16-row MMA tile),
// the same head_dim, block_size and alignment limits.
constexpr int kMaxDecodeMmaGroup = 16;
// Context splits for `num_seqs` rows whose contexts span at most max_context keys from the
// start of their first step (a window that starts mid-step spans up to 15 more).
int choose_decode_splits(int64_t num_seqs, int64_t kv_heads, int64_t max_context);
// Workspace bytes for num_splits splits (0 when num_splits == 1).
size_t decode_workspace_bytes(int64_t num_seqs, int64_t q_heads, int64_t head_dim,
                              int64_t num_splits);
// launch_decode launches the combine kernel when num_splits > 1; the tensor-core decode merges
// in its last block.
template <typename T>
void launch_decode(const Params& p, int num_splits, void* workspace, cudaStream_t stream);
size_t decode_mma_smem_bytes(int64_t head_dim);
template <typename T>
void launch_decode_mma(const Params& p, int num_splits, void* workspace, cudaStream_t stream);
template <typename T>
void launch_decode_combine(const Params& p, int num_splits, const DecodeWorkspace& ws,
                           cudaStream_t stream);

// Tiled prefill paths (rows with more than one query); same shape limits as decode, any
// group. CUDA cores, fp32 tiles (any dtype):
size_t prefill_smem_bytes(int64_t head_dim);
template <typename T>
void launch_prefill(const Params& p, int64_t max_query_len, cudaStream_t stream);
// Tensor cores (wmma), fp16 and bf16 only:
size_t prefill_mma_smem_bytes(int64_t head_dim);
template <typename T>
void launch_prefill_mma(const Params& p, int64_t max_query_len, cudaStream_t stream);
// Tensor cores, FlashAttention-2 style (mma.sync, cp.async), fp16 and bf16 at head_dim 64
// and 128 (0 bytes: not compiled for this head_dim):
size_t prefill_flash_smem_bytes(int64_t head_dim);
template <typename T>
void launch_prefill_flash(const Params& p, int64_t max_query_len, cudaStream_t stream);
// Tensor cores, FlashAttention-3 style (wgmma, warp-specialized cp.async producer), fp16 and
// bf16 at head_dim 64 and 128 on sm_90a only (0 bytes: not compiled for this head_dim).
// prefill_wgmma_compiled: this binary carries the sm_90a kernel and the current device runs it.
size_t prefill_wgmma_smem_bytes(int64_t head_dim);
bool prefill_wgmma_compiled();
template <typename T>
void launch_prefill_wgmma(const Params& p, int64_t max_query_len, cudaStream_t stream);

}  // namespace octavo::cuda::paged_attention_detail
