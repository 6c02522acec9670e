// Prefill and chunked-prefill rows (more than one query) of paged attention on tensor cores,
// FlashAttention-2 style, for fp16 and bf16 at head_dim 64 and 128 on sm_80+.
//
// A block owns kBlockM = 128 (query, head) rows of one sequence and kv head (with group g,
// 128 / g consecutive queries times the g heads sharing the kv head, so every K/V tile read
// through the block table serves the whole group) and walks the keys the rows can see in
// 64-key tiles, last tile first (the causal diagonal, where masking is needed, comes first).
// 4 warps, each owning 32 rows (two 16-row MMA tiles that share every K/V fragment):
// - Q, K and V tiles reach shared memory by cp.async; K/V are double-buffered, so tile i + 1
//   (4 KV-cache blocks at block_size 16, located through the block table, whose entries are
//   read one tile further ahead) loads while tile i is computed: one barrier per tile.
// - S = Q K^T with mma.sync m16n8k16 (Q fragments by ldmatrix, K by ldmatrix); S stays in
//   registers, where the online softmax (fp32, log2 units) runs; the probabilities are
//   rounded to the element type and reused in place as the A fragments of P V (the C layout
//   of two S tiles is the A layout of one P tile), with V fragments by ldmatrix.trans.
// - O (32 x D per warp) accumulates in fp32 registers; at the end it is normalised, staged
//   through the warp's own Q rows and written with 16-byte stores.
// Tiles wholly past a warp's rows (causal) or before them (window) are skipped per warp;
// warps whose rows are all past the row's end skip the arithmetic. Layouts:
// tensor_core_ptx.cuh.
#include <cmath>

#include "attention/paged_attention_internal.cuh"
#include "attention/tensor_core_ptx.cuh"

namespace octavo::cuda::paged_attention_detail {

namespace {

constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kBlockM = 128;  // rows per block
constexpr int kWarpRows = kBlockM / kWarps;  // 32: two m-tiles
constexpr int kBlockN = 64;   // keys per tile
constexpr float kLog2e = 1.4426950408889634f;

template <int D>
struct FlashLayout {
  // Rows padded by 8 elements (16 bytes) so the 8 row addresses of an ldmatrix phase (and
  // the epilogue's 4-byte stores) fall on different banks.
  static constexpr int kRowStride = D + 8;
  static constexpr int kQElems = kBlockM * kRowStride;
  static constexpr int kTileElems = kBlockN * kRowStride;  // one K or V tile
  // Q, then two stages of (K, V): 102 KB at head_dim 128, so two blocks fit an SM.
  static constexpr size_t kSmemBytes = 2 * (kQElems + 4 * kTileElems);
};

template <typename T, int D>
__global__ void __launch_bounds__(kThreads, 2) paged_prefill_flash_kernel(Params p) {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
  using L = FlashLayout<D>;
  constexpr int kPieces = D / 8;                     // 16-byte pieces of a row
  constexpr int kRowsPerPass = kThreads / kPieces;   // rows one pass of the block loads
  constexpr int kKvLoads = kBlockN / kRowsPerPass;   // K (and V) rows per thread per tile
  constexpr int kQLoads = kBlockM / kRowsPerPass;
  constexpr int kKSteps = D / 16;                    // k-steps of Q K^T
  constexpr int kOutTiles = D / 8;                   // n-tiles of P V
  constexpr int kKeyTiles = kBlockN / 8;             // n-tiles of S
  static_assert(kThreads % kPieces == 0 && kBlockN % kRowsPerPass == 0, "load layout");
  static_assert(D % 32 == 0, "head_dim layout");

  extern __shared__ __align__(128) unsigned char smem_raw[];
  T* s_q = reinterpret_cast<T*>(smem_raw);
  T* s_kv = s_q + L::kQElems;  // stage st: K at s_kv + 2 st kTileElems, V right after

  const PrefillTile work = find_prefill_tile<kThreads>(p, kBlockM);
  if (work.seq < 0) return;  // past the last work item
  const int seq = work.seq;
  const int kv_head = blockIdx.y;
  const int q_begin = p.query_start_loc[seq];
  const int q_len = p.query_start_loc[seq + 1] - q_begin;  // > 1
  const int group = p.group;
  const int total_rows = q_len * group;
  // The row's last tiles (most keys under the causal mask) get the first work items, so the
  // longest blocks start first and the short ones fill in behind them.
  const int num_row_tiles = (total_rows + kBlockM - 1) / kBlockM;
  const int row0 = (num_row_tiles - 1 - work.tile) * kBlockM;
  const int pos0 = p.seq_lens[seq] - q_len;
  const int last_row = min(row0 + kBlockM, total_rows) - 1;
  const int key_first = first_key_pos(pos0 + row0 / group, p.sliding_window);
  const int key_last = pos0 + last_row / group;
  const int tile_last = key_last / kBlockN;
  const int num_tiles = tile_last - key_first / kBlockN + 1;

  const int tid = threadIdx.x;
  const int warp = tid / 32, lane = tid % 32;
  const int g = lane / 4, t = lane % 4;
  const int load_row = tid / kPieces, load_col = (tid % kPieces) * 8;

  // This warp's rows [wrow0, wrow0 + 32) of the tile and the keys they can see.
  const int wrow0 = row0 + warp * kWarpRows;
  const bool warp_active = wrow0 < total_rows;
  const int wrow_last = min(wrow0 + kWarpRows, total_rows) - 1;
  const int warp_min_pos = pos0 + wrow0 / group;
  const int warp_max_pos = pos0 + wrow_last / group;
  const int warp_min_first = first_key_pos(warp_min_pos, p.sliding_window);
  const int warp_max_first = first_key_pos(warp_max_pos, p.sliding_window);

  // Q rows (zero past the row's end).
  {
    const T* q = static_cast<const T*>(p.q);
#pragma unroll 4
    for (int j = 0; j < kQLoads; ++j) {
      const int r = load_row + j * kRowsPerPass;
      const int row = row0 + r;
      const bool valid = row < total_rows;
      const T* src = q;
      if (valid) {
        const int token = q_begin + row / group;
        const int head = kv_head * group + row % group;
        src = q + int64_t{token} * p.q_row_stride + int64_t{head} * D + load_col;
      }
      ptx::cp_async_16(s_q + r * L::kRowStride + load_col, src, valid);
    }
  }

  // K/V tiles. Keys outside [key_first, key_last] are zero-filled, never read: their block
  // table entries may be stale or past the table, and slots past the context hold anything
  // (masked weights are 0, but 0 * NaN is NaN). Entries are read one tile ahead.
  const int32_t* table = p.block_tables + int64_t{seq} * p.max_blocks_per_seq;
  const int64_t slot_stride = int64_t{p.kv_heads} * D;
  const T* k_base = static_cast<const T*>(p.k_cache) + int64_t{kv_head} * D + load_col;
  const T* v_base = static_cast<const T*>(p.v_cache) + int64_t{kv_head} * D + load_col;
  const int block_mask = p.block_size - 1;
  int entry[kKvLoads];
  auto read_entries = [&](int i) {  // tile i of this block's walk (i-th from the last)
    const int key0 = (tile_last - i) * kBlockN;
#pragma unroll
    for (int j = 0; j < kKvLoads; ++j) {
      const int key_pos = key0 + load_row + j * kRowsPerPass;
      entry[j] = i < num_tiles && key_pos >= key_first && key_pos <= key_last
                     ? table[key_pos >> p.block_shift]
                     : -1;
    }
  };
  auto issue_kv = [&](int i) {
    const int key0 = (tile_last - i) * kBlockN;
    T* k_dst = s_kv + (i % 2) * 2 * L::kTileElems + load_row * L::kRowStride + load_col;
    T* v_dst = k_dst + L::kTileElems;
#pragma unroll
    for (int j = 0; j < kKvLoads; ++j) {
      const int key_pos = key0 + load_row + j * kRowsPerPass;
      const bool valid = entry[j] >= 0;
      const int64_t offset =
          valid ? (int64_t{entry[j]} * p.block_size + (key_pos & block_mask)) * slot_stride : 0;
      ptx::cp_async_16(k_dst + j * kRowsPerPass * L::kRowStride, k_base + offset, valid);
      ptx::cp_async_16(v_dst + j * kRowsPerPass * L::kRowStride, v_base + offset, valid);
    }
  };

  read_entries(0);
  issue_kv(0);
  ptx::cp_async_commit();  // group 0: Q and tile 0
  read_entries(1);

  const float scale_log2 = p.scale * kLog2e;
  float o[2][kOutTiles][4];
#pragma unroll
  for (int mt = 0; mt < 2; ++mt)
#pragma unroll
    for (int n = 0; n < kOutTiles; ++n) o[mt][n][0] = o[mt][n][1] = o[mt][n][2] = o[mt][n][3] = 0.0f;
  // Running max (log2 units) and this lane's part of the running sum of rows
  // wrow0 + 16 mt + g + 8 h, index 2 mt + h.
  float m[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
  float l[4] = {0.0f, 0.0f, 0.0f, 0.0f};

  // ldmatrix row addresses (see tensor_core_ptx.cuh): Q as A (matrix j: rows 8 (j % 2),
  // cols 8 (j / 2)), K as B of two key n-tiles (matrix j: keys 8 (j / 2), dims 8 (j % 2)),
  // V as B of two dim n-tiles, transposed (matrix j: keys 8 (j % 2), dims 8 (j / 2)).
  const T* q_lane = s_q + (warp * kWarpRows + lane % 16) * L::kRowStride + (lane / 16) * 8;
  const int k_lane = ((lane / 16) * 8 + lane % 8) * L::kRowStride + ((lane / 8) % 2) * 8;
  const int v_lane = (((lane / 8) % 2) * 8 + lane % 8) * L::kRowStride + (lane / 16) * 8;

  for (int i = 0; i < num_tiles; ++i) {
    ptx::cp_async_wait<0>();  // tile i (and Q) from this thread's copies
    __syncthreads();          // ... and everyone's; tile i - 1's stage is free
    if (i + 1 < num_tiles) {
      issue_kv(i + 1);
      read_entries(i + 2);
    }
    ptx::cp_async_commit();

    const int key0 = (tile_last - i) * kBlockN;
    // Keys of this tile none of the warp's rows sees: nothing to add.
    if (!warp_active || key0 > warp_max_pos || key0 + kBlockN - 1 < warp_min_first) continue;
    const T* ks = s_kv + (i % 2) * 2 * L::kTileElems;
    const T* vs = ks + L::kTileElems;

    float s[2][kKeyTiles][4];
#pragma unroll
    for (int mt = 0; mt < 2; ++mt)
#pragma unroll
      for (int n = 0; n < kKeyTiles; ++n) s[mt][n][0] = s[mt][n][1] = s[mt][n][2] = s[mt][n][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < kKSteps; ++kk) {
      uint32_t a[2][4];
      ptx::ldmatrix_x4(a[0], q_lane + kk * 16);
      ptx::ldmatrix_x4(a[1], q_lane + 16 * L::kRowStride + kk * 16);
#pragma unroll
      for (int j = 0; j < kKeyTiles / 2; ++j) {
        uint32_t b[4];
        ptx::ldmatrix_x4(b, ks + k_lane + j * 16 * L::kRowStride + kk * 16);
#pragma unroll
        for (int mt = 0; mt < 2; ++mt) {
          ptx::mma_m16n8k16<T>(s[mt][2 * j], a[mt], b[0], b[1]);
          ptx::mma_m16n8k16<T>(s[mt][2 * j + 1], a[mt], b[2], b[3]);
        }
      }
    }

    // Scale to log2 units; mask where the tile crosses the warp's diagonal or window edge
    // (a warp-uniform branch: most tiles need no mask).
    const bool need_mask = key0 + kBlockN - 1 > warp_min_pos || key0 < warp_max_first;
    if (need_mask) {
#pragma unroll
      for (int mt = 0; mt < 2; ++mt) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int row = wrow0 + mt * 16 + h * 8 + g;
          const int row_pos = row < total_rows ? pos0 + row / group : -1;
          const int row_first = first_key_pos(row_pos, p.sliding_window);
#pragma unroll
          for (int n = 0; n < kKeyTiles; ++n) {
#pragma unroll
            for (int e = 0; e < 2; ++e) {
              const int key_pos = key0 + n * 8 + 2 * t + e;
              float& x = s[mt][n][2 * h + e];
              x = key_pos <= row_pos && key_pos >= row_first ? x * scale_log2 : -INFINITY;
            }
          }
        }
      }
    } else {
#pragma unroll
      for (int mt = 0; mt < 2; ++mt)
#pragma unroll
        for (int n = 0; n < kKeyTiles; ++n)
#pragma unroll
          for (int e = 0; e < 4; ++e) s[mt][n][e] *= scale_log2;
    }

    // Online softmax per row (quads of lanes share a row).
    uint32_t pa[2][kBlockN / 16][4];  // P as A fragments: [m-tile][key k-step]
#pragma unroll
    for (int mt = 0; mt < 2; ++mt) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        float mx = -INFINITY;
#pragma unroll
        for (int n = 0; n < kKeyTiles; ++n) mx = fmaxf(mx, fmaxf(s[mt][n][2 * h], s[mt][n][2 * h + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        const int r = 2 * mt + h;
        const float m_new = fmaxf(m[r], mx);
        // A row with no visible key yet keeps m = -inf; use 0 so exp2 never sees -inf - -inf.
        const float m_use = m_new == -INFINITY ? 0.0f : m_new;
        const float alpha = ptx::exp2_approx(m[r] - m_use);
        m[r] = m_new;
        float sum = 0.0f;
#pragma unroll
        for (int n = 0; n < kKeyTiles; ++n) {
          s[mt][n][2 * h] = ptx::exp2_approx(s[mt][n][2 * h] - m_use);
          s[mt][n][2 * h + 1] = ptx::exp2_approx(s[mt][n][2 * h + 1] - m_use);
          sum += s[mt][n][2 * h] + s[mt][n][2 * h + 1];
        }
        l[r] = l[r] * alpha + sum;
#pragma unroll
        for (int n = 0; n < kOutTiles; ++n) {
          o[mt][n][2 * h] *= alpha;
          o[mt][n][2 * h + 1] *= alpha;
        }
      }
#pragma unroll
      for (int kk = 0; kk < kBlockN / 16; ++kk) {
        pa[mt][kk][0] = ptx::pack2<T>(s[mt][2 * kk][0], s[mt][2 * kk][1]);
        pa[mt][kk][1] = ptx::pack2<T>(s[mt][2 * kk][2], s[mt][2 * kk][3]);
        pa[mt][kk][2] = ptx::pack2<T>(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
        pa[mt][kk][3] = ptx::pack2<T>(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
      }
    }

    // O += P V.
#pragma unroll
    for (int kk = 0; kk < kBlockN / 16; ++kk) {
#pragma unroll
      for (int j = 0; j < kOutTiles / 2; ++j) {
        uint32_t b[4];
        ptx::ldmatrix_x4_trans(b, vs + v_lane + kk * 16 * L::kRowStride + j * 16);
#pragma unroll
        for (int mt = 0; mt < 2; ++mt) {
          ptx::mma_m16n8k16<T>(o[mt][2 * j], pa[mt][kk], b[0], b[1]);
          ptx::mma_m16n8k16<T>(o[mt][2 * j + 1], pa[mt][kk], b[2], b[3]);
        }
      }
    }
  }
  ptx::cp_async_wait<0>();  // (only empty groups remain)
  if (!warp_active) return;  // no block-wide barriers below

  // Normalise and stage the warp's 32 rows in its own Q rows (no other warp reads them),
  // then write 16-byte pieces of whole rows.
#pragma unroll
  for (int r = 0; r < 4; ++r) {
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
  }
  __syncwarp();
  T* stage = s_q + warp * kWarpRows * L::kRowStride;
#pragma unroll
  for (int mt = 0; mt < 2; ++mt) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      // l >= 1 for every row that sees its own position; padding rows are never written.
      const float inv_l = 1.0f / l[2 * mt + h];
      uint32_t* dst = reinterpret_cast<uint32_t*>(stage + (mt * 16 + h * 8 + g) * L::kRowStride);
#pragma unroll
      for (int n = 0; n < kOutTiles; ++n)
        dst[n * 4 + t] = ptx::pack2<T>(o[mt][n][2 * h] * inv_l, o[mt][n][2 * h + 1] * inv_l);
    }
  }
  __syncwarp();
  T* out = static_cast<T*>(p.out);
#pragma unroll 4
  for (int j = 0; j < kWarpRows * kPieces / 32; ++j) {
    const int piece = lane + 32 * j;
    const int r = piece / kPieces, c = (piece % kPieces) * 8;
    const int row = wrow0 + r;
    if (row >= total_rows) continue;
    const int token = q_begin + row / group;
    const int head = kv_head * group + row % group;
    T* dst = out + int64_t{token} * p.out_row_stride + int64_t{head} * D + c;
    const Vec16<T> v = *reinterpret_cast<const Vec16<T>*>(stage + r * L::kRowStride + c);
    if (p.out_vec16) {
      store_vec16(dst, v);
    } else {  // rows that break 16-byte alignment (a padded out): element stores
#pragma unroll
      for (int e = 0; e < 8; ++e) dst[e] = v.v[e];
    }
  }
#else
  __trap();  // mma.sync with bf16 needs sm_80; the host never picks this path below it
#endif
}

template <typename T, int D>
void launch_prefill_flash_for(const Params& p, int64_t max_query_len, cudaStream_t stream) {
  constexpr size_t smem = FlashLayout<D>::kSmemBytes;
  auto kernel = paged_prefill_flash_kernel<T, D>;
  OCTAVO_CUDA_CHECK(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int{smem}));
  const dim3 grid(grid_x(prefill_grid_tiles(p, max_query_len, kBlockM), "paged_attention"),
                  p.kv_heads);
  kernel<<<grid, kThreads, smem, stream>>>(p);
  OCTAVO_CUDA_CHECK_LAUNCH();
}

}  // namespace

size_t prefill_flash_smem_bytes(int64_t head_dim) {
  switch (head_dim) {
    case 64: return FlashLayout<64>::kSmemBytes;
    case 128: return FlashLayout<128>::kSmemBytes;
    default: return 0;  // other head sizes take the wmma kernel
  }
}

template <typename T>
void launch_prefill_flash(const Params& p, int64_t max_query_len, cudaStream_t stream) {
  switch (p.head_dim) {
    case 64: launch_prefill_flash_for<T, 64>(p, max_query_len, stream); break;
    case 128: launch_prefill_flash_for<T, 128>(p, max_query_len, stream); break;
    default: throw std::invalid_argument("paged_attention prefill_flash: unsupported head_dim");
  }
}

template void launch_prefill_flash<__half>(const Params&, int64_t, cudaStream_t);
template void launch_prefill_flash<__nv_bfloat16>(const Params&, int64_t, cudaStream_t);

}  // namespace octavo::cuda::paged_attention_detail
