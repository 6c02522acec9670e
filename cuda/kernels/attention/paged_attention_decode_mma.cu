// Decode rows (one query) of paged attention on tensor cores, fp16 and bf16 on sm_80+.
//
// One block takes one (row, kv head, context split), like the CUDA-core decode kernel, and
// the group's query heads are the rows of one 16-row MMA tile (rows past the group are zero
// and never written), so the scores of 16 keys are a few mma.sync m16n8k16 and the
// arithmetic all but disappears next to the K/V bytes. What the kernel is built for is
// keeping those bytes in flight: each of the 4 warps streams its own 16-key steps (steps
// w, w + 4, ... of the split) through a private kStages-deep ring of shared memory filled
// with cp.async, and keeps its own online softmax, so the loop has no block barrier; the
// warps' (max, sum, output) are merged once at the end. A step's 16 keys are one KV-cache
// block at block_size 16 (one block-table read), 8 KB of K+V at head_dim 128.
//
// Per step and warp: S (16 x 16) = Q K^T from Q fragments kept in registers and K fragments
// read with ldmatrix; masked (window, context end), scaled to log2 units, folded into the
// running max / sum; P rounded to the element type (as flash-attention does; sums stay fp32)
// and O (16 x D) += P V with V fragments read by ldmatrix.trans. Layouts:
// tensor_core_ptx.cuh.
#include <cmath>

#include "attention/paged_attention_internal.cuh"
#include "attention/tensor_core_ptx.cuh"

namespace octavo::cuda::paged_attention_detail {

namespace {

constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
// cp.async ring per warp: while step i is scored, steps i + 1 .. i + kStages - 1 load. With
// two blocks per SM that is up to 8 warps x 2 steps x 8 KB = 128 KB in flight per SM at
// head_dim 128, several times what hides DRAM latency at full bandwidth.
constexpr int kStages = 3;
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

template <int D>
struct DecodeMmaLayout {
  // K and V rows padded by 8 elements (16 bytes): the 8 row addresses of one ldmatrix phase
  // then fall on different banks.
  static constexpr int kRowStride = D + 8;
  static constexpr int kStageElems = 2 * kDecodeStepKeys * kRowStride;  // K rows, then V rows
  static constexpr int kWarpElems = kStages * kStageElems;
  // The end-of-block merge reuses the ring: per warp, 16 rows x D fp32 outputs + max + sum.
  static constexpr size_t kMergeBytes = sizeof(float) * kWarps * 16 * (D + 2);
  static constexpr size_t kRingBytes = 2 * kWarps * kWarpElems;  // 16-bit elements
  static constexpr size_t kSmemBytes = kRingBytes > kMergeBytes ? kRingBytes : kMergeBytes;
};

template <typename T, int D>
__global__ void __launch_bounds__(kThreads, 2)
    paged_decode_mma_kernel(Params p, DecodeWorkspace ws) {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
  using L = DecodeMmaLayout<D>;
  constexpr int kKSteps = D / 16;           // k-steps of Q K^T
  constexpr int kOutTiles = D / 8;          // n-tiles of P V
  constexpr int kPieces = D / 8;            // 16-byte pieces of a K or V row
  constexpr int kPiecesPerLane = kDecodeStepKeys * kPieces / 32;
  static_assert(D % 32 == 0 && kDecodeStepKeys == 16, "layout");

  extern __shared__ __align__(128) unsigned char smem_raw[];

  const int seq = blockIdx.z;
  const int kv_head = blockIdx.y;
  const int split = blockIdx.x;
  // The row's place and length are step inputs (copied from the host before the forward's
  // first kernel, never a kernel's output): read while the producer finishes.
  const int token = p.query_start_loc[seq];
  const int query_len = p.query_start_loc[seq + 1] - token;
  const int pos = p.seq_lens[seq] - 1;
  wait_for_producer();  // q and this step's K/V come from the rope kernel; every block waits
  if (query_len != 1) return;  // prefill or empty row
  const int first = first_key_pos(pos, p.sliding_window);
  const DecodeSplit range = decode_split(first, pos, gridDim.x, split, p.min_split_steps);
  if (split >= range.num_splits) return;

  const int tid = threadIdx.x;
  const int warp = tid / 32, lane = tid % 32;
  const int g = lane / 4, t = lane % 4;
  const int group = p.group;

  // Q fragments (A operand, rows = the group's heads), unscaled; zero past the group.
  uint32_t q_frag[kKSteps][4];
  {
    const T* q = static_cast<const T*>(p.q) + int64_t{token} * p.q_row_stride +
                 int64_t{kv_head} * group * D;
    const uint32_t* row_lo = reinterpret_cast<const uint32_t*>(q + g * D);
    const uint32_t* row_hi = reinterpret_cast<const uint32_t*>(q + (g + 8) * D);
#pragma unroll
    for (int kk = 0; kk < kKSteps; ++kk) {
      const int c = (kk * 16 + 2 * t) / 2;  // uint32 index of columns 16 kk + 2t, + 1
      q_frag[kk][0] = g < group ? row_lo[c] : 0u;
      q_frag[kk][1] = g + 8 < group ? row_hi[c] : 0u;
      q_frag[kk][2] = g < group ? row_lo[c + 4] : 0u;
      q_frag[kk][3] = g + 8 < group ? row_hi[c + 4] : 0u;
    }
  }

  // This warp's steps of the split: absolute steps step0 + warp, + kWarps, ...
  const int step_begin = range.key_begin / kDecodeStepKeys;
  const int step_end = (range.key_end - 1) / kDecodeStepKeys + 1;
  const int my_steps =
      step_begin + warp < step_end ? (step_end - step_begin - warp + kWarps - 1) / kWarps : 0;
  const int key_lo = range.key_begin, key_hi = range.key_end - 1;  // keys this split sees

  T* ring = reinterpret_cast<T*>(smem_raw) + warp * L::kWarpElems;
  const int32_t* table = p.block_tables + int64_t{seq} * p.max_blocks_per_seq;
  const int64_t slot_stride = int64_t{p.kv_heads} * D;
  const T* k_base = static_cast<const T*>(p.k_cache) + int64_t{kv_head} * D;
  const T* v_base = static_cast<const T*>(p.v_cache) + int64_t{kv_head} * D;
  const int block_mask = p.block_size - 1;
  // Keys of one step lie in one cache block when block_size >= 16 (steps are aligned).
  const bool one_block_per_step = p.block_shift >= 4;

  // Issues step i of this warp (its K and V rows) into ring slot i % kStages. Keys outside
  // [key_lo, key_hi] are zero-filled, never read: their block-table entries may be stale and
  // the slots past the context hold anything (masked weights are 0, but 0 * NaN is NaN).
  auto issue = [&](int i) {
    const int key0 = (step_begin + warp + i * kWarps) * kDecodeStepKeys;
    T* k_dst = ring + (i % kStages) * L::kStageElems;
    T* v_dst = k_dst + kDecodeStepKeys * L::kRowStride;
    int block_entry = 0;
    if (one_block_per_step) block_entry = table[max(key0, key_lo) >> p.block_shift];
#pragma unroll
    for (int j = 0; j < kPiecesPerLane; ++j) {
      const int piece = lane + 32 * j;
      const int key = piece / kPieces, c = piece % kPieces;
      const int key_pos = key0 + key;
      const bool valid = key_pos >= key_lo && key_pos <= key_hi;
      int64_t offset = 0;
      if (valid) {
        const int entry = one_block_per_step ? block_entry : table[key_pos >> p.block_shift];
        offset = (int64_t{entry} * p.block_size + (key_pos & block_mask)) * slot_stride + c * 8;
      }
      ptx::cp_async_16(k_dst + key * L::kRowStride + c * 8, k_base + offset, valid);
      ptx::cp_async_16(v_dst + key * L::kRowStride + c * 8, v_base + offset, valid);
    }
  };

  const float scale_log2 = p.scale * kLog2e;
  float o[kOutTiles][4];
#pragma unroll
  for (int n = 0; n < kOutTiles; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
  float m_lo = -INFINITY, m_hi = -INFINITY;  // running max (log2 units) of rows g, g + 8
  float l_lo = 0.0f, l_hi = 0.0f;            // this lane's part of the running sums

#pragma unroll
  for (int i = 0; i < kStages - 1; ++i) {
    if (i < my_steps) issue(i);
    ptx::cp_async_commit();
  }
  for (int i = 0; i < my_steps; ++i) {
    ptx::cp_async_wait<kStages - 2>();  // step i has landed (this lane's copies)
    __syncwarp();                       // ... and every lane's; slot (i - 1) % kStages is free
    if (i + kStages - 1 < my_steps) issue(i + kStages - 1);
    ptx::cp_async_commit();

    const T* ks = ring + (i % kStages) * L::kStageElems;
    const T* vs = ks + kDecodeStepKeys * L::kRowStride;
    const int key0 = (step_begin + warp + i * kWarps) * kDecodeStepKeys;

    // S = Q K^T: n-tile 0 is keys 0..7 of the step, n-tile 1 keys 8..15.
    float s[2][4] = {{0.0f, 0.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.0f, 0.0f}};
    {
      // ldmatrix rows: matrix j = lane / 8 is (keys 8 (j / 2) + 0..7, dims 8 (j % 2) + 0..7).
      const T* k_row = ks + ((lane / 16) * 8 + lane % 8) * L::kRowStride + ((lane / 8) % 2) * 8;
#pragma unroll
      for (int kk = 0; kk < kKSteps; ++kk) {
        uint32_t b[4];
        ptx::ldmatrix_x4(b, k_row + kk * 16);
        ptx::mma_m16n8k16<T>(s[0], q_frag[kk], b[0], b[1]);
        ptx::mma_m16n8k16<T>(s[1], q_frag[kk], b[2], b[3]);
      }
    }
    // Mask, scale to log2 units, row max over the quad (lanes 4g .. 4g + 3 share rows).
    float mx_lo = -INFINITY, mx_hi = -INFINITY;
#pragma unroll
    for (int n = 0; n < 2; ++n) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int key_pos = key0 + n * 8 + 2 * t + e;
        const bool visible = key_pos >= key_lo && key_pos <= key_hi;
        s[n][e] = visible ? s[n][e] * scale_log2 : -INFINITY;
        s[n][2 + e] = visible ? s[n][2 + e] * scale_log2 : -INFINITY;
        mx_lo = fmaxf(mx_lo, s[n][e]);
        mx_hi = fmaxf(mx_hi, s[n][2 + e]);
      }
    }
#pragma unroll
    for (int off = 1; off < 4; off *= 2) {
      mx_lo = fmaxf(mx_lo, __shfl_xor_sync(0xffffffffu, mx_lo, off));
      mx_hi = fmaxf(mx_hi, __shfl_xor_sync(0xffffffffu, mx_hi, off));
    }
    // Every step has a visible key, so the new maxima are finite.
    const float m_new_lo = fmaxf(m_lo, mx_lo), m_new_hi = fmaxf(m_hi, mx_hi);
    const float alpha_lo = ptx::exp2_approx(m_lo - m_new_lo);
    const float alpha_hi = ptx::exp2_approx(m_hi - m_new_hi);
    m_lo = m_new_lo;
    m_hi = m_new_hi;
    float sum_lo = 0.0f, sum_hi = 0.0f;
#pragma unroll
    for (int n = 0; n < 2; ++n) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        s[n][e] = ptx::exp2_approx(s[n][e] - m_lo);
        s[n][2 + e] = ptx::exp2_approx(s[n][2 + e] - m_hi);
        sum_lo += s[n][e];
        sum_hi += s[n][2 + e];
      }
    }
    l_lo = l_lo * alpha_lo + sum_lo;
    l_hi = l_hi * alpha_hi + sum_hi;
    // P as the A operand of P V: keys 0..7 from n-tile 0, keys 8..15 from n-tile 1.
    const uint32_t p_frag[4] = {ptx::pack2<T>(s[0][0], s[0][1]), ptx::pack2<T>(s[0][2], s[0][3]),
                                ptx::pack2<T>(s[1][0], s[1][1]), ptx::pack2<T>(s[1][2], s[1][3])};
    {
      // ldmatrix.trans rows: matrix j is (keys 8 (j % 2) + 0..7, dims 8 (j / 2) + 0..7).
      const T* v_row = vs + (((lane / 8) % 2) * 8 + lane % 8) * L::kRowStride + (lane / 16) * 8;
#pragma unroll
      for (int n = 0; n < kOutTiles; n += 2) {
        uint32_t b[4];
        ptx::ldmatrix_x4_trans(b, v_row + n * 8);
        o[n][0] *= alpha_lo;
        o[n][1] *= alpha_lo;
        o[n][2] *= alpha_hi;
        o[n][3] *= alpha_hi;
        o[n + 1][0] *= alpha_lo;
        o[n + 1][1] *= alpha_lo;
        o[n + 1][2] *= alpha_hi;
        o[n + 1][3] *= alpha_hi;
        ptx::mma_m16n8k16<T>(o[n], p_frag, b[0], b[1]);
        ptx::mma_m16n8k16<T>(o[n + 1], p_frag, b[2], b[3]);
      }
    }
  }
  ptx::cp_async_wait<0>();  // nothing may land in the ring once it holds the merge
  __syncthreads();

  // Merge the warps: each leaves its rows' output, max and sum (max -inf, sum 0 when it had
  // no step), then the block combines them per (row, column).
  l_lo += __shfl_xor_sync(0xffffffffu, l_lo, 1);
  l_lo += __shfl_xor_sync(0xffffffffu, l_lo, 2);
  l_hi += __shfl_xor_sync(0xffffffffu, l_hi, 1);
  l_hi += __shfl_xor_sync(0xffffffffu, l_hi, 2);
  float* m_out = reinterpret_cast<float*>(smem_raw);  // [kWarps][16]
  float* l_out = m_out + kWarps * 16;                 // [kWarps][16]
  float* o_out = l_out + kWarps * 16;                 // [kWarps][16][D]
  {
    float* ow = o_out + warp * 16 * D;
#pragma unroll
    for (int n = 0; n < kOutTiles; ++n) {
      const int col = n * 8 + 2 * t;
      ow[g * D + col] = o[n][0];
      ow[g * D + col + 1] = o[n][1];
      ow[(g + 8) * D + col] = o[n][2];
      ow[(g + 8) * D + col + 1] = o[n][3];
    }
    if (t == 0) {
      m_out[warp * 16 + g] = m_lo;
      m_out[warp * 16 + g + 8] = m_hi;
      l_out[warp * 16 + g] = l_lo;
      l_out[warp * 16 + g + 8] = l_hi;
    }
  }
  __syncthreads();

  const int head0 = kv_head * group;
  for (int i = tid; i < group * D; i += kThreads) {
    const int r = i / D, d = i % D;
    float m = -INFINITY;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) m = fmaxf(m, m_out[w * 16 + r]);
    float l = 0.0f, acc = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      const float f = ptx::exp2_approx(m_out[w * 16 + r] - m);  // 0 for a warp without steps
      l += f * l_out[w * 16 + r];
      acc += f * o_out[(w * 16 + r) * D + d];
    }
    if (range.num_splits == 1) {
      T* out = static_cast<T*>(p.out) + int64_t{token} * p.out_row_stride;
      out[int64_t{head0 + r} * D + d] = from_float<T>(acc / l);
    } else {
      const int64_t row = (int64_t{seq} * gridDim.x + split) * p.q_heads + head0 + r;
      ws.acc[row * D + d] = acc;
      if (d == 0) {
        ws.max[row] = m * kLn2;  // the merge works in natural-log units
        ws.sum[row] = l;
      }
    }
  }
  if (range.num_splits == 1) return;

  // The last of the row's splits to get here (for this kv head) merges them all: no combine
  // kernel, so no launch for it after every layer's attention.
  __shared__ int s_last;
  __threadfence();  // this block's partials are visible before its arrival is counted
  __syncthreads();
  if (tid == 0) {
    unsigned* counter = ws.counters + int64_t{seq} * p.kv_heads + kv_head;
    s_last = atomicAdd(counter, 1u) == static_cast<unsigned>(range.num_splits - 1);
    if (s_last) *counter = 0u;  // every split has arrived: ready for the next launch
  }
  __syncthreads();
  if (!s_last) return;
  __threadfence();
  merge_decode_splits<T>(p, ws, seq, token, head0, head0 + group, range.num_splits, gridDim.x, tid, kThreads);
#else
  __trap();  // mma.sync with bf16 needs sm_80; the host never picks this path below it
#endif
}

template <typename T, int D>
void launch_decode_mma_for(const Params& p, int num_splits, const DecodeWorkspace& ws,
                           cudaStream_t stream) {
  constexpr size_t smem = DecodeMmaLayout<D>::kSmemBytes;
  auto kernel = paged_decode_mma_kernel<T, D>;
  OCTAVO_CUDA_CHECK(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int{smem}));
  const dim3 grid(num_splits, p.kv_heads, p.num_seqs);
  launch_dependent(kernel, grid, kThreads, smem, stream, p, ws);
}

}  // namespace

size_t decode_mma_smem_bytes(int64_t head_dim) {
  switch (head_dim) {
    case 32: return DecodeMmaLayout<32>::kSmemBytes;
    case 64: return DecodeMmaLayout<64>::kSmemBytes;
    case 96: return DecodeMmaLayout<96>::kSmemBytes;
    case 128: return DecodeMmaLayout<128>::kSmemBytes;
    default: return 0;
  }
}

template <typename T>
void launch_decode_mma(const Params& p, int num_splits, void* workspace, cudaStream_t stream) {
  const DecodeWorkspace ws =
      carve_decode_workspace(workspace, p.num_seqs, p.q_heads, p.head_dim, num_splits);
  switch (p.head_dim) {
    case 32: launch_decode_mma_for<T, 32>(p, num_splits, ws, stream); break;
    case 64: launch_decode_mma_for<T, 64>(p, num_splits, ws, stream); break;
    case 96: launch_decode_mma_for<T, 96>(p, num_splits, ws, stream); break;
    case 128: launch_decode_mma_for<T, 128>(p, num_splits, ws, stream); break;
    default: throw std::invalid_argument("paged_attention decode: unsupported head_dim");
  }
}

template void launch_decode_mma<__half>(const Params&, int, void*, cudaStream_t);
template void launch_decode_mma<__nv_bfloat16>(const Params&, int, void*, cudaStream_t);

}  // namespace octavo::cuda::paged_attention_detail
