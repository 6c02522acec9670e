// Prefill and chunked-prefill rows (more than one query) of paged attention: a tiled
// flash-attention forward on CUDA cores in fp32. A block owns kTileRows (query, head) rows of
// one sequence and one kv head: with group g = q_heads / kv_heads, the rows are
// kTileRows / g consecutive queries times the g heads sharing the kv head, so each K/V tile
// loaded through the block table serves the whole group. Keys stream through shared memory
// kTileKeys at a time, from the first key any row of the tile may see to the last row's own
// position (causal), earlier chunks' cached keys included; scores are masked per element
// (causal, sliding window) and folded in with an online softmax.
//
// fp32 inputs use this kernel; fp16 and bf16 use its tensor-core twin
// (paged_attention_prefill_mma.cu) where the shared memory allows.
#include <cmath>

#include "attention/paged_attention_internal.cuh"

namespace octavo::cuda::paged_attention_detail {

namespace {

// 128 threads as 8 row groups x 16 column lanes. A thread owns 8 tile rows: scores for
// 2 keys (lane c and c + 16) and output columns c, c + 16, ... (D / 16 of them), so a row's
// softmax statistics live in the 16 lanes of a half-warp and reduce with 4 shuffles.
constexpr int kPrefillThreads = 128;
constexpr int kRowGroups = 8;
constexpr int kColLanes = 16;
constexpr int kRowsPerThread = 8;
constexpr int kTileRows = kRowGroups * kRowsPerThread;  // 64
constexpr int kKeysPerLane = 2;
constexpr int kTileKeys = kColLanes * kKeysPerLane;  // 32
static_assert(kRowGroups * kColLanes == kPrefillThreads, "thread layout");
// Q and K rows are padded by 4 floats: the 8 lanes of one 16-byte shared-memory phase read 8
// consecutive rows, whose starts then fall 4 banks apart instead of on one bank.
constexpr int kRowPad = 4;
constexpr int kScoreStride = kTileKeys + kRowPad;

template <int D>
constexpr size_t tile_smem_bytes() {
  // Q [64][D+4], K [32][D+4], V [32][D], P [64][36], all fp32: 76 KB at D = 128.
  return sizeof(float) * (kTileRows * (D + kRowPad) + kTileKeys * (D + kRowPad) +
                          kTileKeys * D + kTileRows * kScoreStride);
}

template <typename T, int D>
__global__ void __launch_bounds__(kPrefillThreads)
    paged_prefill_kernel(Params p) {
  constexpr int kVecN = Vec16<T>::kSize;
  constexpr int kChunks = D / kVecN;  // 16-byte pieces of a row
  constexpr int kStride = D + kRowPad;
  constexpr int kCols = D / kColLanes;  // output columns per thread
  static_assert(D % kColLanes == 0 && D % 4 == 0 && D % kVecN == 0, "head_dim layout");

  extern __shared__ __align__(16) float smem[];
  float* s_q = smem;                          // [kTileRows][kStride], pre-scaled
  float* s_k = s_q + kTileRows * kStride;     // [kTileKeys][kStride]
  float* s_v = s_k + kTileKeys * kStride;     // [kTileKeys][D]
  float* s_p = s_v + kTileKeys * D;           // [kTileRows][kScoreStride]

  const PrefillTile work = find_prefill_tile<kPrefillThreads>(p, kTileRows);
  if (work.seq < 0) return;  // past the last work item
  const int seq = work.seq;
  const int kv_head = blockIdx.y;
  const int q_begin = p.query_start_loc[seq];
  const int q_len = p.query_start_loc[seq + 1] - q_begin;  // > 1
  const int group = p.group;
  const int total_rows = q_len * group;
  const int row0 = work.tile * kTileRows;  // < total_rows
  const int seq_len = p.seq_lens[seq];
  const int pos0 = seq_len - q_len;  // position of local query 0
  const int last_row = min(row0 + kTileRows, total_rows) - 1;
  const int key_first = first_key_pos(pos0 + row0 / group, p.sliding_window);
  const int key_last = pos0 + last_row / group;

  const int tid = threadIdx.x;
  const int rg = tid / kColLanes;
  const int lane_c = tid % kColLanes;

  // Q tile; rows past the sequence's queries are zero and never written out.
  {
    const T* q = static_cast<const T*>(p.q);
    for (int i = tid; i < kTileRows * kChunks; i += kPrefillThreads) {
      const int r = i / kChunks, c = i % kChunks;
      const int row = row0 + r;
      float v[kVecN];
      if (row < total_rows) {
        const int token = q_begin + row / group;
        const int head = kv_head * group + row % group;
        load_vec16_float(q + int64_t{token} * p.q_row_stride + int64_t{head} * D + c * kVecN, v);
      } else {
        fill_zero(v);
      }
#pragma unroll
      for (int e = 0; e < kVecN; ++e) s_q[r * kStride + c * kVecN + e] = v[e] * p.scale;
    }
  }

  // This thread's rows: positions (-1 for padding rows: every key is masked) and the first
  // key each may see.
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

  for (int tile_key0 = key_first; tile_key0 <= key_last; tile_key0 += kTileKeys) {
    __syncthreads();  // the previous tile's K, V and P are no longer read (and Q is stored)
    for (int i = tid; i < kTileKeys * kChunks; i += kPrefillThreads) {
      const int j = i / kChunks, c = i % kChunks;
      const int key_pos = tile_key0 + j;
      float kv[kVecN], vv[kVecN];
      if (key_pos <= key_last) {
        const int64_t slot =
            (int64_t{table[key_pos >> p.block_shift]} * p.block_size + (key_pos & block_mask)) *
                slot_stride +
            c * kVecN;
        load_vec16_float(k_cache + slot, kv);
        load_vec16_float(v_cache + slot, vv);
      } else {
        fill_zero(kv);  // zeros, not garbage: masked weights are 0 and 0 * NaN is NaN
        fill_zero(vv);
      }
#pragma unroll
      for (int e = 0; e < kVecN; ++e) {
        s_k[j * kStride + c * kVecN + e] = kv[e];
        s_v[j * D + c * kVecN + e] = vv[e];
      }
    }
    __syncthreads();

    // S = Q K^T for 8 rows x 2 keys, 4 dims at a time from 16-byte shared-memory reads.
    float s[kRowsPerThread][kKeysPerLane];
#pragma unroll
    for (int r = 0; r < kRowsPerThread; ++r) {
#pragma unroll
      for (int k = 0; k < kKeysPerLane; ++k) s[r][k] = 0.0f;
    }
#pragma unroll 4
    for (int d = 0; d < D; d += 4) {
      float4 kf[kKeysPerLane];
#pragma unroll
      for (int k = 0; k < kKeysPerLane; ++k)
        kf[k] = *reinterpret_cast<const float4*>(&s_k[(lane_c + k * kColLanes) * kStride + d]);
#pragma unroll
      for (int r = 0; r < kRowsPerThread; ++r) {
        const float4 qf =
            *reinterpret_cast<const float4*>(&s_q[(rg * kRowsPerThread + r) * kStride + d]);
#pragma unroll
        for (int k = 0; k < kKeysPerLane; ++k) {
          s[r][k] = fmaf(qf.x, kf[k].x, s[r][k]);
          s[r][k] = fmaf(qf.y, kf[k].y, s[r][k]);
          s[r][k] = fmaf(qf.z, kf[k].z, s[r][k]);
          s[r][k] = fmaf(qf.w, kf[k].w, s[r][k]);
        }
      }
    }

    // Mask, online softmax, P to shared memory.
#pragma unroll
    for (int r = 0; r < kRowsPerThread; ++r) {
      float tile_max = -INFINITY;
#pragma unroll
      for (int k = 0; k < kKeysPerLane; ++k) {
        const int key_pos = tile_key0 + lane_c + k * kColLanes;
        const bool visible = key_pos <= row_pos[r] && key_pos >= row_first[r];
        s[r][k] = visible ? s[r][k] : -INFINITY;
        tile_max = fmaxf(tile_max, s[r][k]);
      }
#pragma unroll
      for (int off = kColLanes / 2; off > 0; off /= 2)
        tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, off));
      const float m_new = fmaxf(m[r], tile_max);
      // A row that has seen no visible key yet keeps m = -inf; exponents then use 0 so that
      // exp(-inf - -inf) never makes a NaN (its weights and alpha are all 0).
      const float m_use = m_new == -INFINITY ? 0.0f : m_new;
      const float alpha = expf(m[r] - m_use);
      float row_sum = 0.0f;
#pragma unroll
      for (int k = 0; k < kKeysPerLane; ++k) {
        const float w = expf(s[r][k] - m_use);
        row_sum += w;
        s_p[(rg * kRowsPerThread + r) * kScoreStride + lane_c + k * kColLanes] = w;
      }
#pragma unroll
      for (int off = kColLanes / 2; off > 0; off /= 2)
        row_sum += __shfl_xor_sync(0xffffffffu, row_sum, off);
      l[r] = l[r] * alpha + row_sum;
      m[r] = m_new;
#pragma unroll
      for (int c = 0; c < kCols; ++c) o[r][c] *= alpha;
    }
    __syncwarp();  // P rows are written and read by the same half-warp

    // O += P V: 4 keys at a time (P from 16-byte reads, V columns lane_c + 16 c).
#pragma unroll 2
    for (int j = 0; j < kTileKeys; j += 4) {
      float4 pf[kRowsPerThread];
#pragma unroll
      for (int r = 0; r < kRowsPerThread; ++r)
        pf[r] = *reinterpret_cast<const float4*>(&s_p[(rg * kRowsPerThread + r) * kScoreStride + j]);
#pragma unroll
      for (int c = 0; c < kCols; ++c) {
        const int col = lane_c + c * kColLanes;
        const float v0 = s_v[(j + 0) * D + col];
        const float v1 = s_v[(j + 1) * D + col];
        const float v2 = s_v[(j + 2) * D + col];
        const float v3 = s_v[(j + 3) * D + col];
#pragma unroll
        for (int r = 0; r < kRowsPerThread; ++r) {
          o[r][c] = fmaf(pf[r].x, v0, o[r][c]);
          o[r][c] = fmaf(pf[r].y, v1, o[r][c]);
          o[r][c] = fmaf(pf[r].z, v2, o[r][c]);
          o[r][c] = fmaf(pf[r].w, v3, o[r][c]);
        }
      }
    }
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
}

template <typename T, int D>
void launch_prefill_for(const Params& p, int64_t max_query_len, cudaStream_t stream) {
  constexpr size_t smem = tile_smem_bytes<D>();
  auto kernel = paged_prefill_kernel<T, D>;
  // Above 48 KB a block's dynamic shared memory must be opted into (per device).
  OCTAVO_CUDA_CHECK(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int{smem}));
  const dim3 grid(grid_x(prefill_grid_tiles(p, max_query_len, kTileRows), "paged_attention"),
                  p.kv_heads);
  kernel<<<grid, kPrefillThreads, smem, stream>>>(p);
  OCTAVO_CUDA_CHECK_LAUNCH();
}

}  // namespace

size_t prefill_smem_bytes(int64_t head_dim) {
  switch (head_dim) {
    case 32: return tile_smem_bytes<32>();
    case 64: return tile_smem_bytes<64>();
    case 96: return tile_smem_bytes<96>();
    case 128: return tile_smem_bytes<128>();
    default: return 0;
  }
}

template <typename T>
void launch_prefill(const Params& p, int64_t max_query_len, cudaStream_t stream) {
  switch (p.head_dim) {
    case 32: launch_prefill_for<T, 32>(p, max_query_len, stream); break;
    case 64: launch_prefill_for<T, 64>(p, max_query_len, stream); break;
    case 96: launch_prefill_for<T, 96>(p, max_query_len, stream); break;
    case 128: launch_prefill_for<T, 128>(p, max_query_len, stream); break;
    default: throw std::invalid_argument("paged_attention prefill: unsupported head_dim");
  }
}

template void launch_prefill<float>(const Params&, int64_t, cudaStream_t);
template void launch_prefill<__half>(const Params&, int64_t, cudaStream_t);
template void launch_prefill<__nv_bfloat16>(const Params&, int64_t, cudaStream_t);

}  // namespace octavo::cuda::paged_attention_detail
