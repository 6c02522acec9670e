// Prefill rows (more than one query) of paged attention on tensor cores, for fp16 and bf16:
// the tiling of paged_attention_prefill.cu (kTileRows (query, head) rows of one sequence and
// kv head, keys streamed through shared memory, causal and window masks, online softmax),
// with S = Q K^T and P V as warp-level 16x16x16 matrix products (wmma: HMMA on sm_80 and
// sm_90) accumulating in fp32. The softmax runs on CUDA cores from S staged in shared memory,
// so nothing depends on the (unspecified) register layout of wmma fragments. P is rounded to
// the element type before P V, as flash-attention does; its row sums stay fp32.
#include <mma.h>

#include <cmath>

#include "attention/paged_attention_internal.cuh"

namespace octavo::cuda::paged_attention_detail {

namespace {

namespace wmma = nvcuda::wmma;

// 4 warps; warp w owns tile rows [16w, 16w + 16) for both products and the softmax, so after
// the K/V tile is loaded only warp-level barriers are needed.
constexpr int kMmaThreads = 128;
constexpr int kMmaWarps = kMmaThreads / 32;
constexpr int kMmaTileRows = 16 * kMmaWarps;  // 64
// 64 keys per tile: 4 fragments of S per warp and 4 k-steps of P V per tile, with 93 KB of
// shared memory at head_dim 128 (two blocks per SM on A100 and H100).
constexpr int kMmaTileKeys = 64;
// Softmax layout as in the CUDA-core kernel: 8 row groups x 16 lanes, 8 rows per thread, keys
// lane + 16 k, output columns lane + 16 c.
constexpr int kColLanes = 16;
constexpr int kRowsPerThread = 8;
static_assert(kMmaTileRows == (kMmaThreads / kColLanes) * kRowsPerThread, "thread layout");
// Element-type rows are padded by 8 elements (16 bytes) so the 8 rows an ldmatrix phase reads
// start on different banks; fp32 rows by 4 (wmma needs ldm % 4 == 0 for fp32, % 8 for 16-bit).
constexpr int kPad16 = 8;
constexpr int kPad32 = 4;

template <int D>
struct MmaLayout {
  static constexpr int kQStride = D + kPad16;            // Q, K, V: [rows][D + 8] elements
  static constexpr int kPStride = kMmaTileKeys + kPad16;  // P: [64][72] elements
  // S ([64][64]) and the P V result ([64][D]) share one fp32 buffer with one row stride, so
  // each warp's 16 rows are its own whichever is staged.
  static constexpr int kSStride = (D > kMmaTileKeys ? D : kMmaTileKeys) + kPad32;
  template <typename T>
  static constexpr size_t smem_bytes() {
    return sizeof(T) * ((kMmaTileRows + 2 * kMmaTileKeys) * kQStride + kMmaTileRows * kPStride) +
           sizeof(float) * kMmaTileRows * kSStride;
  }
};

template <typename T>
__device__ __forceinline__ void copy16(T* dst, const T* src) {
  store_vec16(dst, load_vec16(src));
}

template <typename T>
__device__ __forceinline__ void zero16(T* dst) {
  Vec16<T> z;
#pragma unroll
  for (int i = 0; i < Vec16<T>::kSize; ++i) z.v[i] = from_float<T>(0.0f);
  store_vec16(dst, z);
}

template <typename T, int D>
__global__ void __launch_bounds__(kMmaThreads) paged_prefill_mma_kernel(Params p) {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
  using L = MmaLayout<D>;
  constexpr int kKeysPerLane = kMmaTileKeys / kColLanes;
  constexpr int kVecN = Vec16<T>::kSize;
  constexpr int kChunks = D / kVecN;
  constexpr int kCols = D / kColLanes;
  constexpr int kPvFrags = (D / 16) % 4 == 0 ? 4 : 2;
  static_assert(D % 32 == 0, "head_dim must be a multiple of two 16-wide fragments");

  extern __shared__ __align__(128) unsigned char smem_raw[];
  T* s_q = reinterpret_cast<T*>(smem_raw);                 // [64][kQStride]
  T* s_k = s_q + kMmaTileRows * L::kQStride;               // [64][kQStride]
  T* s_v = s_k + kMmaTileKeys * L::kQStride;               // [64][kQStride]
  T* s_p = s_v + kMmaTileKeys * L::kQStride;               // [64][kPStride]
  float* s_s = reinterpret_cast<float*>(s_p + kMmaTileRows * L::kPStride);  // [64][kSStride]

  const PrefillTile work = find_prefill_tile<kMmaThreads>(p, kMmaTileRows);
  if (work.seq < 0) return;  // past the last work item
  const int seq = work.seq;
  const int kv_head = blockIdx.y;
  const int q_begin = p.query_start_loc[seq];
  const int q_len = p.query_start_loc[seq + 1] - q_begin;  // > 1
  const int group = p.group;
  const int total_rows = q_len * group;
  const int row0 = work.tile * kMmaTileRows;  // < total_rows
  const int pos0 = p.seq_lens[seq] - q_len;
  const int last_row = min(row0 + kMmaTileRows, total_rows) - 1;
  const int key_first = first_key_pos(pos0 + row0 / group, p.sliding_window);
  const int key_last = pos0 + last_row / group;

  const int tid = threadIdx.x;
  const int warp = tid / 32;
  const int rg = tid / kColLanes;
  const int lane_c = tid % kColLanes;

  {
    const T* q = static_cast<const T*>(p.q);
    for (int i = tid; i < kMmaTileRows * kChunks; i += kMmaThreads) {
      const int r = i / kChunks, c = i % kChunks;
      const int row = row0 + r;
      T* dst = s_q + r * L::kQStride + c * kVecN;
      if (row < total_rows) {
        const int token = q_begin + row / group;
        const int head = kv_head * group + row % group;
        copy16(dst, q + int64_t{token} * p.q_row_stride + int64_t{head} * D + c * kVecN);
      } else {
        zero16(dst);
      }
    }
  }

  int row_pos[kRowsPerThread], row_first[kRowsPerThread];
#pragma unroll
  for (int r = 0; r < kRowsPerThread; ++r) {
    const int row = row0 + rg * kRowsPerThread + r;
    row_pos[r] = row < total_rows ? pos0 + row / group : -1;
    row_first[r] = first_key_pos(row_pos[r], p.sliding_window);
  }
  float o[kRowsPerThread][kCols];
  float m[kRowsPerThread], l[kRowsPerThread];
#pragma unroll
  for (int r = 0; r < kRowsPerThread; ++r) {
    m[r] = -INFINITY;
    l[r] = 0.0f;
#pragma unroll
    for (int c = 0; c < kCols; ++c) o[r][c] = 0.0f;
  }

  const int32_t* table = p.block_tables + int64_t{seq} * p.max_blocks_per_seq;
  const int64_t slot_stride = int64_t{p.kv_heads} * D;
  const T* k_cache = static_cast<const T*>(p.k_cache) + int64_t{kv_head} * D;
  const T* v_cache = static_cast<const T*>(p.v_cache) + int64_t{kv_head} * D;
  const int block_mask = p.block_size - 1;
  const T* warp_q = s_q + warp * 16 * L::kQStride;
  T* warp_p = s_p + warp * 16 * L::kPStride;
  float* warp_s = s_s + warp * 16 * L::kSStride;

  for (int tile_key0 = key_first; tile_key0 <= key_last; tile_key0 += kMmaTileKeys) {
    __syncthreads();  // the previous tile's K and V are no longer read (and Q is stored)
    for (int i = tid; i < kMmaTileKeys * kChunks; i += kMmaThreads) {
      const int j = i / kChunks, c = i % kChunks;
      const int key_pos = tile_key0 + j;
      T* k_dst = s_k + j * L::kQStride + c * kVecN;
      T* v_dst = s_v + j * L::kQStride + c * kVecN;
      if (key_pos <= key_last) {
        const int64_t slot =
            (int64_t{table[key_pos >> p.block_shift]} * p.block_size + (key_pos & block_mask)) *
                slot_stride +
            c * kVecN;
        copy16(k_dst, k_cache + slot);
        copy16(v_dst, v_cache + slot);
      } else {
        zero16(k_dst);  // zeros, not garbage: masked weights are 0 and 0 * NaN is NaN
        zero16(v_dst);
      }
    }
    __syncthreads();

    // S (this warp's 16 rows x 64 keys) = Q K^T; K rows read as a column-major K^T.
    {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> s_frag[kMmaTileKeys / 16];
#pragma unroll
      for (int n = 0; n < kMmaTileKeys / 16; ++n) wmma::fill_fragment(s_frag[n], 0.0f);
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a;
        wmma::load_matrix_sync(a, warp_q + kk * 16, L::kQStride);
#pragma unroll
        for (int n = 0; n < kMmaTileKeys / 16; ++n) {
          wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> b;
          wmma::load_matrix_sync(b, s_k + n * 16 * L::kQStride + kk * 16, L::kQStride);
          wmma::mma_sync(s_frag[n], a, b, s_frag[n]);
        }
      }
#pragma unroll
      for (int n = 0; n < kMmaTileKeys / 16; ++n)
        wmma::store_matrix_sync(warp_s + n * 16, s_frag[n], L::kSStride, wmma::mem_row_major);
    }
    __syncwarp();

    // Scale, mask, online softmax; P to shared memory in the element type.
#pragma unroll
    for (int r = 0; r < kRowsPerThread; ++r) {
      const int tile_row = rg * kRowsPerThread + r;
      float s[kKeysPerLane];
      float tile_max = -INFINITY;
#pragma unroll
      for (int k = 0; k < kKeysPerLane; ++k) {
        const int key = lane_c + k * kColLanes;
        const int key_pos = tile_key0 + key;
        const bool visible = key_pos <= row_pos[r] && key_pos >= row_first[r];
        s[k] = visible ? s_s[tile_row * L::kSStride + key] * p.scale : -INFINITY;
        tile_max = fmaxf(tile_max, s[k]);
      }
#pragma unroll
      for (int off = kColLanes / 2; off > 0; off /= 2)
        tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, off));
      const float m_new = fmaxf(m[r], tile_max);
      // A row with no visible key yet keeps m = -inf; use 0 so exp never sees -inf - -inf.
      const float m_use = m_new == -INFINITY ? 0.0f : m_new;
      const float alpha = expf(m[r] - m_use);
      float row_sum = 0.0f;
#pragma unroll
      for (int k = 0; k < kKeysPerLane; ++k) {
        const float w = expf(s[k] - m_use);
        row_sum += w;
        s_p[tile_row * L::kPStride + lane_c + k * kColLanes] = from_float<T>(w);
      }
#pragma unroll
      for (int off = kColLanes / 2; off > 0; off /= 2)
        row_sum += __shfl_xor_sync(0xffffffffu, row_sum, off);
      l[r] = l[r] * alpha + row_sum;
      m[r] = m_new;
#pragma unroll
      for (int c = 0; c < kCols; ++c) o[r][c] *= alpha;
    }
    __syncwarp();  // P is complete and S is no longer read: its buffer takes P V next

    // P V for this warp's 16 rows, staged in the S buffer, then added to the fp32 output.
    // kPvFrags column fragments at a time, so their accumulators and the thread's fp32
    // output (both live here) stay within the register file.
#pragma unroll
    for (int n0 = 0; n0 < D / 16; n0 += kPvFrags) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> o_frag[kPvFrags];
#pragma unroll
      for (int n = 0; n < kPvFrags; ++n) wmma::fill_fragment(o_frag[n], 0.0f);
#pragma unroll
      for (int kk = 0; kk < kMmaTileKeys / 16; ++kk) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a;
        wmma::load_matrix_sync(a, warp_p + kk * 16, L::kPStride);
#pragma unroll
        for (int n = 0; n < kPvFrags; ++n) {
          wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> b;
          wmma::load_matrix_sync(b, s_v + kk * 16 * L::kQStride + (n0 + n) * 16, L::kQStride);
          wmma::mma_sync(o_frag[n], a, b, o_frag[n]);
        }
      }
#pragma unroll
      for (int n = 0; n < kPvFrags; ++n)
        wmma::store_matrix_sync(warp_s + (n0 + n) * 16, o_frag[n], L::kSStride,
                                wmma::mem_row_major);
    }
    __syncwarp();
#pragma unroll
    for (int r = 0; r < kRowsPerThread; ++r) {
#pragma unroll
      for (int c = 0; c < kCols; ++c)
        o[r][c] += s_s[(rg * kRowsPerThread + r) * L::kSStride + lane_c + c * kColLanes];
    }
    __syncwarp();  // the S buffer is rewritten by the next tile's Q K^T
  }

  T* out = static_cast<T*>(p.out);
#pragma unroll
  for (int r = 0; r < kRowsPerThread; ++r) {
    if (row_pos[r] < 0) continue;
    const int row = row0 + rg * kRowsPerThread + r;
    const int token = q_begin + row / group;
    const int head = kv_head * group + row % group;
    T* out_row = out + int64_t{token} * p.out_row_stride + int64_t{head} * D;
    const float inv_l = 1.0f / l[r];  // l >= 1: every row sees its own position
#pragma unroll
    for (int c = 0; c < kCols; ++c) out_row[lane_c + c * kColLanes] = from_float<T>(o[r][c] * inv_l);
  }
#else
  __trap();  // bf16 wmma needs sm_80; the host never picks this path below it
#endif
}

template <typename T, int D>
void launch_prefill_mma_for(const Params& p, int64_t max_query_len, cudaStream_t stream) {
  constexpr size_t smem = MmaLayout<D>::template smem_bytes<T>();
  auto kernel = paged_prefill_mma_kernel<T, D>;
  OCTAVO_CUDA_CHECK(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int{smem}));
  const dim3 grid(grid_x(prefill_grid_tiles(p, max_query_len, kMmaTileRows), "paged_attention"),
                  p.kv_heads);
  kernel<<<grid, kMmaThreads, smem, stream>>>(p);
  OCTAVO_CUDA_CHECK_LAUNCH();
}

}  // namespace

size_t prefill_mma_smem_bytes(int64_t head_dim) {
  switch (head_dim) {
    case 32: return MmaLayout<32>::smem_bytes<__half>();
    case 64: return MmaLayout<64>::smem_bytes<__half>();
    case 96: return MmaLayout<96>::smem_bytes<__half>();
    case 128: return MmaLayout<128>::smem_bytes<__half>();
    default: return 0;
  }
}

template <typename T>
void launch_prefill_mma(const Params& p, int64_t max_query_len, cudaStream_t stream) {
  switch (p.head_dim) {
    case 32: launch_prefill_mma_for<T, 32>(p, max_query_len, stream); break;
    case 64: launch_prefill_mma_for<T, 64>(p, max_query_len, stream); break;
    case 96: launch_prefill_mma_for<T, 96>(p, max_query_len, stream); break;
    case 128: launch_prefill_mma_for<T, 128>(p, max_query_len, stream); break;
    default: throw std::invalid_argument("paged_attention prefill: unsupported head_dim");
  }
}

template void launch_prefill_mma<__half>(const Params&, int64_t, cudaStream_t);
template void launch_prefill_mma<__nv_bfloat16>(const Params&, int64_t, cudaStream_t);

}  // namespace octavo::cuda::paged_attention_detail
