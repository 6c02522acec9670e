// Prefill and chunked-prefill rows (more than one query) of paged attention on Hopper
// (sm_90a), FlashAttention-3 style, for fp16 and bf16 at head_dim 64 and 128.
//
// Work: as prefill_flash, a block owns kBlockM = 128 (query, head) rows of one sequence and kv
// head (with group g, 128 / g consecutive queries times the g heads of the kv head, so each K/V
// tile read through the block table serves the whole group) and walks the keys its rows can
// see in kBlockN = 128-key tiles, last tile (the causal diagonal) first.
//
// Warp specialization, 3 warpgroups (384 threads, one block per SM):
// - warpgroup 0, the producer (setmaxnreg 24 registers): streams K and V tiles into a
//   kStages-deep ring of shared-memory stages with cp.async (16 bytes per thread and copy: a
//   paged cache with 16-token blocks has no contiguous 128-key tile for TMA). Per tile, each
//   producer thread looks up one key's cache slot in the block table (read one tile ahead,
//   shared through a small table in shared memory), then copies its 16-byte column of 16
//   (head_dim 128) rows of K and of V into the 128-byte-swizzled layout wgmma reads
//   (wgmma_layout.h). Completion is
//   signalled per thread with cp.async.mbarrier.arrive.noinc on the stage's "full" mbarrier
//   (K and V have their own barriers, so S = Q K^T can start before V lands); the producer
//   waits on the stage's "empty" mbarriers (one arrival per consumer thread) before reuse.
// - warpgroups 1 and 2, the consumers (setmaxnreg 240): 64 rows each, the M of wgmma. Each
//   loads its Q rows once (cp.async, swizzled), then per key tile:
//     S = Q K^T: 8 (head_dim / 16) wgmma m64n128k16, A and B from shared memory;
//     softmax in fp32 registers (online, log2 units, masks on the diagonal / window tiles);
//     P (rounded to T) stays in registers as the A operand of O += P V: 8 wgmma
//     m64n{128,64}k16 with V read transposed from shared memory (the transpose-B bit; V
//     stays [keys, dims] as the cache stores it).
//   The two GEMMs of consecutive tiles overlap (FlashAttention-3's intra-warpgroup
//   pipelining): iteration i issues S_i = Q K_i^T, rescales O, issues O += P_{i-1} V_{i-1},
//   waits for S_i only, runs the softmax of tile i while the tensor cores do P_{i-1} V_{i-1},
//   then waits for that and packs P_i. The two consumer warpgroups run unsynchronised, so
//   one's softmax also overlaps the other's GEMMs.
// - The epilogue normalises O, stages it in the warpgroup's own Q rows and writes 16-byte
//   pieces of whole rows.
//
// Fragment layouts (wgmma_layout.h, PTX ISA "Register Fragments"): thread tid of a consumer
// warpgroup holds accumulator rows 16 (tid / 32) + (tid % 32) / 4 (+ 8), columns 8 n + 2 (tid %
// 4) (+ 1) of each 8-column n-tile; the A fragment of k-step kk of P is S's accumulator
// elements 8 kk .. 8 kk + 7, packed in pairs.
//
// Shared memory at head_dim 128: Q 32 KB + kStages x (K 32 KB + V 32 KB) = 160 KB, plus the
// slot tables and barriers. Tiles wholly outside a warpgroup's rows (causal, window) are
// released without arithmetic; a warpgroup whose rows are all past the row's end only
// releases stages.
//
// Only sm_90a has wgmma and setmaxnreg: the body is compiled for __CUDA_ARCH_FEAT_SM90_ALL (and
// the CPU emulator, tests/cuda_emulation) and traps elsewhere; the host picks this path only on
// compute capability 9.0 when the binary carries sm_90a code (prefill_wgmma_compiled).
// The softmax of tile i runs while P V of tile i - 1 is on the tensor cores, but no wgmma or
// wgmma wait sits under a data-dependent branch: ptxas serializes every wgmma of a kernel when
// it cannot prove each group is retired on every path (its C7514/C7518 warnings), hence the
// peeled first tile.
#include <cmath>

#include "attention/hopper_ptx.cuh"
#include "attention/paged_attention_internal.cuh"
#include "attention/tensor_core_ptx.cuh"
#include "attention/wgmma_layout.h"

namespace octavo::cuda::paged_attention_detail {

namespace {

constexpr int kWarpgroup = 128;
constexpr int kConsumers = 2;                          // consumer warpgroups
constexpr int kThreads = kWarpgroup * (1 + kConsumers);  // 384
constexpr int kBlockM = 64 * kConsumers;               // rows per block: wgmma's M per consumer
constexpr int kBlockN = 128;                           // keys per tile: wgmma's N of S = Q K^T
// K/V ring depth: 2 x 64 KB at head_dim 128, as FlashAttention-3 at this tile size (a third
// stage would need 229 KB with Q, past the 227 KB a block may have).
constexpr int kStages = 2;
// Registers per thread after setmaxnreg: 128 x 24 + 256 x 240 = the 384 x 168 the launch
// bounds give a block (FlashAttention-3's split for two consumer warpgroups).
[[maybe_unused]] constexpr int kProducerRegs = 24;
[[maybe_unused]] constexpr int kConsumerRegs = 240;
[[maybe_unused]] constexpr int kProducerBarrier = 1;  // named barriers (0 is __syncthreads)
[[maybe_unused]] constexpr int kConsumerBarrier = 2;  // + consumer index
[[maybe_unused]] constexpr float kLog2e = 1.4426950408889634f;

template <int D>
struct WgmmaLayout {
  static constexpr int kQBytes = kBlockM * D * 2;
  static constexpr int kTileBytes = kBlockN * D * 2;  // one K or V tile
  // Byte offsets from a 1024-byte-aligned base: every tile (and its 64-column panels) starts
  // on a swizzle atom.
  static constexpr int kQ = 0;
  static constexpr int kK = kQ + kQBytes;                      // stage s at kK + s kTileBytes
  static constexpr int kV = kK + kStages * kTileBytes;
  static constexpr int kSlots = kV + kStages * kTileBytes;     // int64 [kStages][kBlockN]
  static constexpr int kBarriers = kSlots + kStages * kBlockN * 8;  // uint64 [4][kStages]
  static constexpr int kEnd = kBarriers + 4 * kStages * 8;
  // The dynamic shared memory's start is only 16-byte aligned: room to align it.
  static constexpr size_t kSmemBytes = kEnd + wgmma::kSwizzleAtomBytes;
};

// The stage barriers: full (the loads landed) and empty (every consumer is done reading).
enum Barrier { kKFull = 0, kKEmpty = 1, kVFull = 2, kVEmpty = 3 };

template <typename T, int D>
__global__ void __launch_bounds__(kThreads, 1) paged_prefill_wgmma_kernel(Params p) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL) || defined(OCTAVO_CUDA_EMULATION)
  using L = WgmmaLayout<D>;
  constexpr int kChunks = D / 8;                       // 16-byte chunks of a row
  constexpr int kRowsPerPass = kWarpgroup / kChunks;   // rows a warpgroup copies at once
  static_assert(kRowsPerPass % 8 == 0, "a thread's rows must share one swizzle phase");
  constexpr int kKSteps = D / 16;                      // k-steps of S = Q K^T
  constexpr int kPvSteps = kBlockN / 16;               // k-steps of O += P V

  extern __shared__ __align__(16) unsigned char smem_raw[];
  const uint32_t raw_addr = ptx::smem_addr(smem_raw);
  const uint32_t base = (raw_addr + wgmma::kSwizzleAtomBytes - 1) & ~uint32_t{wgmma::kSwizzleAtomBytes - 1};
  unsigned char* smem = smem_raw + (base - raw_addr);
  int64_t* s_slots = reinterpret_cast<int64_t*>(smem + L::kSlots);  // element offsets, -1: none
  auto barrier = [&](Barrier b, int stage) -> uint32_t {
    return base + L::kBarriers + (b * kStages + stage) * 8;
  };

  const PrefillTile work = find_prefill_tile<kThreads>(p, kBlockM);
  if (work.seq < 0) return;  // past the last work item
  const int seq = work.seq;
  const int kv_head = blockIdx.y;
  const int q_begin = p.query_start_loc[seq];
  const int q_len = p.query_start_loc[seq + 1] - q_begin;  // > 1
  const int group = p.group;
  const int total_rows = q_len * group;
  // The row's last tiles (most keys under the causal mask) get the first work items.
  const int num_row_tiles = (total_rows + kBlockM - 1) / kBlockM;
  const int row0 = (num_row_tiles - 1 - work.tile) * kBlockM;
  const int pos0 = p.seq_lens[seq] - q_len;
  const int last_row = min(row0 + kBlockM, total_rows) - 1;
  const int key_first = first_key_pos(pos0 + row0 / group, p.sliding_window);
  const int key_last = pos0 + last_row / group;
  const int tile_last = key_last / kBlockN;
  const int num_tiles = tile_last - key_first / kBlockN + 1;  // iteration i: tile tile_last - i

  if (threadIdx.x == 0) {
#pragma unroll
    for (int st = 0; st < kStages; ++st) {
      ptx::mbarrier_init(barrier(kKFull, st), kWarpgroup);   // one cp.async arrival per producer
      ptx::mbarrier_init(barrier(kVFull, st), kWarpgroup);
      ptx::mbarrier_init(barrier(kKEmpty, st), kConsumers * kWarpgroup);  // one per consumer
      ptx::mbarrier_init(barrier(kVEmpty, st), kConsumers * kWarpgroup);
    }
    ptx::fence_mbarrier_init();
  }
  __syncthreads();

  // The warpgroup index, through a shuffle so the compiler knows it is warp-uniform (wgmma in
  // a branch it cannot prove uniform gets serialized).
  const int warpgroup = __shfl_sync(0xffffffffu, static_cast<int>(threadIdx.x) / kWarpgroup, 0);
  if (warpgroup == 0) {
    // ---- producer ----------------------------------------------------------------------
    ptx::setmaxnreg_dec<kProducerRegs>();
    const int tid = threadIdx.x;
    // This thread copies 16-byte chunk `chunk` of rows prow + j kRowsPerPass; those rows share
    // prow's swizzle phase (kRowsPerPass is a multiple of 8), hence one offset plus j steps.
    const int chunk = tid % kChunks, prow = tid / kChunks;
    const uint32_t dst_lane = wgmma::swizzled_chunk_offset(kBlockN, prow, chunk);
    const T* k_src = static_cast<const T*>(p.k_cache) + int64_t{kv_head} * D + chunk * 8;
    const T* v_src = static_cast<const T*>(p.v_cache) + int64_t{kv_head} * D + chunk * 8;
    const int32_t* table = p.block_tables + int64_t{seq} * p.max_blocks_per_seq;
    const int64_t slot_stride = int64_t{p.kv_heads} * D;
    const int block_mask = p.block_size - 1;
    // Key `tid` of iteration i's tile: its element offset in the caches, or -1 outside
    // [key_first, key_last] (zero-filled, never read: its table entry may be stale or past the
    // table, and slots past the context hold anything; masked weights are 0, but 0 * NaN is NaN).
    auto key_offset = [&](int i) -> int64_t {
      const int key_pos = (tile_last - i) * kBlockN + tid;
      if (key_pos < key_first || key_pos > key_last) return -1;
      return (int64_t{table[key_pos >> p.block_shift]} * p.block_size + (key_pos & block_mask)) * slot_stride;
    };
    int64_t next = key_offset(0);
    for (int i = 0; i < num_tiles; ++i) {
      const int st = i % kStages;
      // Everyone finished reading this stage's slots (iteration i - kStages) before the
      // barrier of iteration i - 1.
      s_slots[st * kBlockN + tid] = next;
      ptx::named_barrier_sync(kProducerBarrier, kWarpgroup);
      if (i + 1 < num_tiles) next = key_offset(i + 1);  // lands while this tile is issued
      const int64_t* slots = s_slots + st * kBlockN + prow;
      const uint32_t reuse_parity = ((i / kStages) - 1) & 1;  // iteration i - kStages's release
      if (i >= kStages) ptx::mbarrier_wait(barrier(kKEmpty, st), reuse_parity);
      const uint32_t k_dst = base + L::kK + st * L::kTileBytes + dst_lane;
#pragma unroll
      for (int j = 0; j < kBlockN / kRowsPerPass; ++j) {
        const int64_t off = slots[j * kRowsPerPass];
        ptx::cp_async_16_shared(k_dst + j * kRowsPerPass * wgmma::kSwizzleRowBytes, k_src + (off < 0 ? 0 : off),
                                off >= 0);
      }
      ptx::cp_async_mbarrier_arrive(barrier(kKFull, st));
      if (i >= kStages) ptx::mbarrier_wait(barrier(kVEmpty, st), reuse_parity);
      const uint32_t v_dst = base + L::kV + st * L::kTileBytes + dst_lane;
#pragma unroll
      for (int j = 0; j < kBlockN / kRowsPerPass; ++j) {
        const int64_t off = slots[j * kRowsPerPass];
        ptx::cp_async_16_shared(v_dst + j * kRowsPerPass * wgmma::kSwizzleRowBytes, v_src + (off < 0 ? 0 : off),
                                off >= 0);
      }
      ptx::cp_async_mbarrier_arrive(barrier(kVFull, st));
    }
    ptx::cp_async_wait_all();  // nothing in flight when the warpgroup exits
    return;
  }

  // ---- consumers ------------------------------------------------------------------------
  ptx::setmaxnreg_inc<kConsumerRegs>();
  const int cw = warpgroup - 1;  // consumer index: tile rows 64 cw .. 64 cw + 63
  const int tid = threadIdx.x % kWarpgroup;
  const int wrow0 = row0 + 64 * cw;             // first (query, head) row of this warpgroup
  const bool wg_active = wrow0 < total_rows;
  const uint32_t q_tile = base + L::kQ;

  // Q rows (zero past the row's end), in the swizzled layout.
  {
    const int chunk = tid % kChunks, qrow = tid / kChunks;
    const T* q = static_cast<const T*>(p.q);
#pragma unroll
    for (int j = 0; j < 64 / kRowsPerPass; ++j) {
      const int r = qrow + j * kRowsPerPass;  // row within this warpgroup's 64
      const int row = wrow0 + r;
      const bool valid = row < total_rows;
      const T* src = q;
      if (valid) {
        const int token = q_begin + row / group;
        const int head = kv_head * group + row % group;
        src = q + int64_t{token} * p.q_row_stride + int64_t{head} * D + chunk * 8;
      }
      ptx::cp_async_16_shared(q_tile + wgmma::swizzled_chunk_offset(kBlockM, 64 * cw + r, chunk), src, valid);
    }
    ptx::cp_async_wait_all();
    ptx::fence_proxy_async_shared();  // cp.async results are generic-proxy writes
    ptx::named_barrier_sync(kConsumerBarrier + cw, kWarpgroup);
  }

  // This thread's two rows (h = 0, 1) and the keys they see.
  int row_pos[2], row_first[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int row = wrow0 + wgmma::accumulator_element(tid, 2 * h).row;
    row_pos[h] = row < total_rows ? pos0 + row / group : -1;
    row_first[h] = first_key_pos(row_pos[h], p.sliding_window);
  }
  // The warpgroup's rows and the iterations [i_begin, i_end) whose tiles they see; the others
  // are only released.
  const int wrow_last = min(wrow0 + 64, total_rows) - 1;
  const int wg_min_pos = pos0 + wrow0 / group;
  const int wg_max_pos = pos0 + wrow_last / group;
  const int wg_max_first = first_key_pos(wg_max_pos, p.sliding_window);
  int i_begin = num_tiles, i_end = num_tiles;
  if (wg_active) {
    const int wg_min_first = first_key_pos(wg_min_pos, p.sliding_window);
    i_begin = max(0, tile_last - wg_max_pos / kBlockN);
    i_end = max(i_begin, min(num_tiles, tile_last - wg_min_first / kBlockN + 1));
  }
  auto release_unused = [&](int i) {
    const int st = i % kStages;
    const uint32_t parity = (i / kStages) & 1;
    // Wait for the loads even so: the producer may refill a stage only once its copies have
    // landed (two fills in flight to one stage would race).
    ptx::mbarrier_wait(barrier(kKFull, st), parity);
    ptx::mbarrier_arrive(barrier(kKEmpty, st));
    ptx::mbarrier_wait(barrier(kVFull, st), parity);
    ptx::mbarrier_arrive(barrier(kVEmpty, st));
  };

  const uint64_t q_desc = wgmma::k_major_descriptor(q_tile + cw * 64 * wgmma::kSwizzleRowBytes, kBlockM, 0);
  const uint64_t k_desc = wgmma::k_major_descriptor(base + L::kK, kBlockN, 0);
  const uint64_t v_desc = wgmma::mn_major_descriptor(base + L::kV, kBlockN, 0);
  const float scale_log2 = p.scale * kLog2e;

  float o[D / 2];        // O: 64 x D per warpgroup, fp32
  float s[kBlockN / 2];  // S, then P: 64 x 128 per warpgroup, fp32
  uint32_t pf[kPvSteps][4];  // P as A fragments of O += P V
#pragma unroll
  for (int e = 0; e < D / 2; ++e) o[e] = 0.0f;
  // Running max (log2 units), this thread's part of the running sum, and the factor O still
  // has to be scaled by before P V of the last softmaxed tile is added.
  float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.0f, 0.0f}, alpha[2] = {1.0f, 1.0f};

  auto rescale_o = [&] {
#pragma unroll
    for (int e = 0; e < D / 2; ++e) o[e] *= alpha[(e / 2) % 2];
  };
  // O += P V of iteration i's tile (after rescale_o).
  auto issue_pv = [&](int i) {
    const int st = i % kStages;
    ptx::mbarrier_wait(barrier(kVFull, st), (i / kStages) & 1);
    ptx::fence_proxy_async_shared();
    ptx::wgmma_fence();
    const uint64_t vd = v_desc + ((st * L::kTileBytes) >> 4);
#pragma unroll
    for (int kk = 0; kk < kPvSteps; ++kk) ptx::wgmma_m64nNk16_rs<T>(o, pf[kk], vd + (wgmma::mn_major_step_bytes(kk) >> 4));
    ptx::wgmma_commit();
  };

  // S = Q K^T of iteration i's tile, committed as one wgmma group.
  auto issue_qk = [&](int i) {
    const int st = i % kStages;
    ptx::mbarrier_wait(barrier(kKFull, st), (i / kStages) & 1);
    ptx::fence_proxy_async_shared();
    ptx::wgmma_fence();  // S's registers were last written by the softmax
    const uint64_t kd = k_desc + ((st * L::kTileBytes) >> 4);
#pragma unroll
    for (int kk = 0; kk < kKSteps; ++kk) {
      const uint32_t q_step = wgmma::k_major_step_bytes(kBlockM, kk) >> 4;  // Q tile: kBlockM rows
      const uint32_t k_step = wgmma::k_major_step_bytes(kBlockN, kk) >> 4;
      ptx::wgmma_m64n128k16_ss<T>(s, q_desc + q_step, kd + k_step, kk > 0 ? 1u : 0u);
    }
    ptx::wgmma_commit();
  };
  // Scale to log2 units; mask where the tile crosses the warpgroup's diagonal or window edge
  // (uniform per warpgroup: most tiles need no mask); online softmax per row (quads of lanes
  // share a row). Leaves P (fp32) in s and the factor O must be scaled by in alpha.
  auto softmax = [&](int i) {
    const int key0 = (tile_last - i) * kBlockN;
    const bool need_mask = key0 + kBlockN - 1 > wg_min_pos || key0 < wg_max_first;
    if (need_mask) {
#pragma unroll
      for (int e = 0; e < kBlockN / 2; ++e) {
        const int h = (e / 2) % 2;
        const int key_pos = key0 + wgmma::accumulator_element(tid, e).col;
        s[e] = key_pos <= row_pos[h] && key_pos >= row_first[h] ? s[e] * scale_log2 : -INFINITY;
      }
    } else {
#pragma unroll
      for (int e = 0; e < kBlockN / 2; ++e) s[e] *= scale_log2;
    }
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float mx = -INFINITY;
#pragma unroll
      for (int n = 0; n < kBlockN / 8; ++n) mx = fmaxf(mx, fmaxf(s[4 * n + 2 * h], s[4 * n + 2 * h + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float m_new = fmaxf(m_run[h], mx);
      // A row with no visible key yet keeps m = -inf; use 0 so exp2 never sees -inf - -inf.
      const float m_use = m_new == -INFINITY ? 0.0f : m_new;
      alpha[h] = ptx::exp2_approx(m_run[h] - m_use);
      m_run[h] = m_new;
      float sum = 0.0f;
#pragma unroll
      for (int n = 0; n < kBlockN / 8; ++n) {
        s[4 * n + 2 * h] = ptx::exp2_approx(s[4 * n + 2 * h] - m_use);
        s[4 * n + 2 * h + 1] = ptx::exp2_approx(s[4 * n + 2 * h + 1] - m_use);
        sum += s[4 * n + 2 * h] + s[4 * n + 2 * h + 1];
      }
      l_run[h] = l_run[h] * alpha[h] + sum;
    }
  };
  // P's registers: S rounded to T, in the A fragment order (wgmma_layout.h).
  auto pack_p = [&] {
#pragma unroll
    for (int kk = 0; kk < kPvSteps; ++kk)
#pragma unroll
      for (int r = 0; r < 4; ++r)
        pf[kk][r] = ptx::pack2<T>(s[wgmma::p_fragment_source(kk, 2 * r)], s[wgmma::p_fragment_source(kk, 2 * r + 1)]);
  };

  // The iterations this warpgroup computes: the first one alone, then the pipelined ones,
  // then the last P V. No wgmma or wgmma wait sits under a condition inside the loop:
  // ptxas must see every path retire each wgmma group, or it serializes them all.
  for (int i = 0; i < i_begin; ++i) release_unused(i);
  if (i_end > i_begin) {
    issue_qk(i_begin);
    ptx::wgmma_wait<0>();
    ptx::fence_operands(s);
    ptx::mbarrier_arrive(barrier(kKEmpty, i_begin % kStages));
    softmax(i_begin);
    pack_p();
  }
  for (int i = i_begin + 1; i < i_end; ++i) {
    issue_qk(i);
    rescale_o();
    issue_pv(i - 1);       // O += P V of the previous tile, on the tensor cores during this softmax
    ptx::wgmma_wait<1>();  // S done (groups complete in order)
    ptx::fence_operands(s);
    ptx::mbarrier_arrive(barrier(kKEmpty, i % kStages));
    softmax(i);
    ptx::wgmma_wait<0>();  // P V done: the P registers are free again
    ptx::fence_operands(o);
    ptx::fence_operands(s);  // the packing stays after the wait
    ptx::mbarrier_arrive(barrier(kVEmpty, (i - 1) % kStages));
    pack_p();
  }
  if (i_end > i_begin) {
    rescale_o();
    issue_pv(i_end - 1);
    ptx::wgmma_wait<0>();
    ptx::fence_operands(o);
    ptx::mbarrier_arrive(barrier(kVEmpty, (i_end - 1) % kStages));
  }
  for (int i = max(i_begin, i_end); i < num_tiles; ++i) release_unused(i);
  if (!wg_active) return;  // no barrier of this warpgroup below is shared with others

  // Normalise and stage the warpgroup's 64 rows in its own Q rows (only its own, finished
  // wgmmas read them), then write 16-byte pieces of whole rows.
  float inv_l[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    float l = l_run[h];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    // l >= 1 for every row that sees its own position; padding rows are never written.
    inv_l[h] = l > 0.0f ? 1.0f / l : 0.0f;
  }
  ptx::named_barrier_sync(kConsumerBarrier + cw, kWarpgroup);
  unsigned char* stage = smem + L::kQ;
#pragma unroll
  for (int e = 0; e < D / 2; e += 2) {
    const wgmma::RowCol rc = wgmma::accumulator_element(tid, e);
    const float inv = inv_l[(e / 2) % 2];
    *reinterpret_cast<uint32_t*>(stage + wgmma::swizzled_offset(kBlockM, 64 * cw + rc.row, rc.col)) =
        ptx::pack2<T>(o[e] * inv, o[e + 1] * inv);
  }
  ptx::named_barrier_sync(kConsumerBarrier + cw, kWarpgroup);
  T* out = static_cast<T*>(p.out);
#pragma unroll 4
  for (int j = 0; j < 64 * kChunks / kWarpgroup; ++j) {
    const int piece = tid + kWarpgroup * j;
    const int r = piece / kChunks, c = piece % kChunks;
    const int row = wrow0 + r;
    if (row >= total_rows) continue;
    const int token = q_begin + row / group;
    const int head = kv_head * group + row % group;
    T* dst = out + int64_t{token} * p.out_row_stride + int64_t{head} * D + c * 8;
    const Vec16<T> v =
        *reinterpret_cast<const Vec16<T>*>(stage + wgmma::swizzled_chunk_offset(kBlockM, 64 * cw + r, c));
    if (p.out_vec16) {
      store_vec16(dst, v);
    } else {  // rows that break 16-byte alignment (a padded out): element stores
#pragma unroll
      for (int e = 0; e < 8; ++e) dst[e] = v.v[e];
    }
  }
#elif defined(__CUDA_ARCH__)
  __trap();  // wgmma and setmaxnreg need sm_90a; the host never picks this path elsewhere
#endif
}

template <typename T, int D>
void launch_prefill_wgmma_for(const Params& p, int64_t max_query_len, cudaStream_t stream) {
  constexpr size_t smem = WgmmaLayout<D>::kSmemBytes;
  auto kernel = paged_prefill_wgmma_kernel<T, D>;
  OCTAVO_CUDA_CHECK(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int{smem}));
  const dim3 grid(grid_x(prefill_grid_tiles(p, max_query_len, kBlockM), "paged_attention"),
                  p.kv_heads);
  kernel<<<grid, kThreads, smem, stream>>>(p);
  OCTAVO_CUDA_CHECK_LAUNCH();
}

}  // namespace

size_t prefill_wgmma_smem_bytes(int64_t head_dim) {
  switch (head_dim) {
    case 64: return WgmmaLayout<64>::kSmemBytes;
    case 128: return WgmmaLayout<128>::kSmemBytes;
    default: return 0;  // other head sizes take prefill_flash or the wmma kernel
  }
}

bool prefill_wgmma_compiled() {
#if defined(OCTAVO_CUDA_EMULATION)
  return true;  // tests/cuda_emulation runs the kernel (its sm_90 answers the device queries)
#elif defined(OCTAVO_CUDA_HAS_SM90A)
  // The build carries sm_90a code; the kernel the runtime loads for this device must be it
  // (binaryVersion 90; a device it cannot load for reports an error).
  static const bool compiled = [] {
    cudaFuncAttributes attr{};
    if (cudaFuncGetAttributes(&attr, paged_prefill_wgmma_kernel<__nv_bfloat16, 128>) != cudaSuccess) {
      (void)cudaGetLastError();  // clear the error this query left
      return false;
    }
    return attr.binaryVersion == 90;
  }();
  return compiled;
#else
  return false;
#endif
}

template <typename T>
void launch_prefill_wgmma(const Params& p, int64_t max_query_len, cudaStream_t stream) {
  switch (p.head_dim) {
    case 64: launch_prefill_wgmma_for<T, 64>(p, max_query_len, stream); break;
    case 128: launch_prefill_wgmma_for<T, 128>(p, max_query_len, stream); break;
    default: throw std::invalid_argument("paged_attention prefill_wgmma: unsupported head_dim");
  }
}

template void launch_prefill_wgmma<__half>(const Params&, int64_t, cudaStream_t);
template void launch_prefill_wgmma<__nv_bfloat16>(const Params&, int64_t, cudaStream_t);

}  // namespace octavo::cuda::paged_attention_detail
