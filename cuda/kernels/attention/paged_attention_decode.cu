// Decode rows (one query) of paged attention on CUDA cores: flash-decoding. One block takes
// one (row, kv head, context split); the query heads sharing the kv head are done together,
// so each K/V element is read once per group. A split walks its keys in chunks of kChunkKeys
// with an online softmax between chunks; when a row's context needs more than one split, each
// split leaves (max, sum, unnormalised output) in the workspace and a second kernel combines
// them. fp32 takes this path; fp16 and bf16 take the tensor-core twin
// (paged_attention_decode_mma.cu) on sm_80+. Both share decode_split, the workspace layout
// and the combine kernel defined here.
#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "attention/paged_attention_internal.cuh"

namespace octavo::cuda::paged_attention_detail {

namespace {

// 4 warps: enough keys in flight per block while a warp's 16-byte lanes cover 1 to 8 keys.
constexpr int kDecodeThreads = 128;
// Keys scored before their softmax is folded in: fp32 scores [group, 256] fit in 8 KB of
// shared memory at group 8, and 256 keys are 64 KB of K+V at head_dim 128 in bf16, long
// enough to amortise a chunk's two barriers.
constexpr int kChunkKeys = 256;
// Decode grids aim at this many blocks: about 4 per SM on an H100 (132 SMs) or A100 (108),
// so a small batch with long contexts still fills the chip. Fixed (no device query) so the
// workspace size is known at start-up.
constexpr int64_t kTargetDecodeBlocks = 512;
// More splits than this add combine work without more parallelism worth having.
constexpr int64_t kMaxDecodeSplits = 64;

__host__ __device__ constexpr int next_pow2(int x) {
  int p = 1;
  while (p < x) p *= 2;
  return p;
}

// Lanes are grouped kThreadsPerKey to a key row: each lane loads 16 bytes (kVecN elements)
// of it, so a group reads the row's D * sizeof(T) contiguous bytes in one coalesced access.
// Lanes past the row (head_dim 96 rounds 12 chunks up to 16 lanes) load nothing.
// At least 4 resident blocks (16 warps of loads in flight per SM) caps registers at 128; the
// kernels need at most 119 there, and without the cap ptxas spilled a few bytes in some.
template <typename T, int D, int kMaxGroup>
__global__ void __launch_bounds__(kDecodeThreads, 4)
    paged_decode_kernel(Params p, DecodeWorkspace ws) {
  constexpr int kVecN = Vec16<T>::kSize;
  constexpr int kChunks = D / kVecN;
  constexpr int kThreadsPerKey = next_pow2(kChunks);
  static_assert(D % kVecN == 0 && kThreadsPerKey <= 32, "a key row must fit one warp");
  constexpr int kKeysPerWarp = 32 / kThreadsPerKey;
  constexpr int kWarps = kDecodeThreads / 32;
  constexpr int kKeysPerPass = kWarps * kKeysPerWarp;

  __shared__ __align__(16) float s_q[kMaxGroup][D];          // scaled queries of the group
  __shared__ float s_scores[kMaxGroup][kChunkKeys];            // scores, then exp weights
  __shared__ __align__(16) float s_partial[kWarps][kMaxGroup][D];  // per-warp outputs
  __shared__ float s_max[kMaxGroup], s_sum[kMaxGroup], s_alpha[kMaxGroup];

  const int seq = blockIdx.z;
  const int kv_head = blockIdx.y;
  const int split = blockIdx.x;
  const int token = p.query_start_loc[seq];
  if (p.query_start_loc[seq + 1] - token != 1) return;  // prefill or empty row
  const int pos = p.seq_lens[seq] - 1;
  const DecodeSplit range = decode_split(first_key_pos(pos, p.sliding_window), pos, gridDim.x, split, p.min_split_steps);
  if (split >= range.num_splits) return;
  const int num_splits = range.num_splits;
  const int key_begin = range.key_begin;
  const int key_end = range.key_end;

  const int group = p.group;
  const int tid = threadIdx.x;
  const int warp = tid / 32, lane = tid % 32;
  const int key_in_warp = lane / kThreadsPerKey;
  const int chunk = lane % kThreadsPerKey;
  const bool lane_loads = chunk < kChunks;

  const T* q = static_cast<const T*>(p.q) + int64_t{token} * p.q_row_stride +
               int64_t{kv_head} * group * D;
  for (int i = tid; i < kMaxGroup * D; i += kDecodeThreads) {
    const int g = i / D;
    s_q[g][i % D] = g < group ? to_float(q[i]) * p.scale : 0.0f;
  }
  if (tid < kMaxGroup) {
    s_max[tid] = -INFINITY;
    s_sum[tid] = 0.0f;
  }
  __syncthreads();

  const int32_t* table = p.block_tables + int64_t{seq} * p.max_blocks_per_seq;
  const int64_t slot_stride = int64_t{p.kv_heads} * D;
  const int64_t lane_offset = int64_t{kv_head} * D + chunk * kVecN;
  const T* k_cache = static_cast<const T*>(p.k_cache) + lane_offset;
  const T* v_cache = static_cast<const T*>(p.v_cache) + lane_offset;
  const int block_mask = p.block_size - 1;
  auto slot_of = [&](int key_pos) -> int64_t {
    return (int64_t{table[key_pos >> p.block_shift]} * p.block_size + (key_pos & block_mask)) *
           slot_stride;
  };

  float acc[kMaxGroup][kVecN];
#pragma unroll
  for (int g = 0; g < kMaxGroup; ++g) fill_zero(acc[g]);

  for (int chunk_begin = key_begin; chunk_begin < key_end; chunk_begin += kChunkKeys) {
    const int n = min(kChunkKeys, key_end - chunk_begin);

    // Scores. Two keys per lane group per pass, both loads issued before either is used.
    for (int j0 = warp * kKeysPerWarp + key_in_warp; j0 - key_in_warp < n;
         j0 += 2 * kKeysPerPass) {
      const int j1 = j0 + kKeysPerPass;
      float k0[kVecN], k1[kVecN];
      if (lane_loads && j0 < n) load_vec16_float(k_cache + slot_of(chunk_begin + j0), k0);
      else fill_zero(k0);
      if (lane_loads && j1 < n) load_vec16_float(k_cache + slot_of(chunk_begin + j1), k1);
      else fill_zero(k1);
#pragma unroll
      for (int g = 0; g < kMaxGroup; ++g) {
        if (g >= group) break;  // uniform across the block
        float d0 = 0.0f, d1 = 0.0f;
        if (lane_loads) {
          const float* qg = &s_q[g][chunk * kVecN];
#pragma unroll
          for (int i = 0; i < kVecN; ++i) {
            d0 = fmaf(qg[i], k0[i], d0);
            d1 = fmaf(qg[i], k1[i], d1);
          }
        }
#pragma unroll
        for (int off = kThreadsPerKey / 2; off > 0; off /= 2) {
          d0 += __shfl_xor_sync(0xffffffffu, d0, off);
          d1 += __shfl_xor_sync(0xffffffffu, d1, off);
        }
        if (chunk == 0) {
          if (j0 < n) s_scores[g][j0] = d0;
          if (j1 < n) s_scores[g][j1] = d1;
        }
      }
    }
    __syncthreads();

    // Online softmax across chunks: one warp per query head of the group.
    for (int g = warp; g < group; g += kWarps) {
      const float m_old = s_max[g];
      float m = -INFINITY;
      for (int j = lane; j < n; j += 32) m = fmaxf(m, s_scores[g][j]);
      const float m_new = fmaxf(m_old, warp_max(m));
      float sum = 0.0f;
      for (int j = lane; j < n; j += 32) {
        const float e = expf(s_scores[g][j] - m_new);
        s_scores[g][j] = e;
        sum += e;
      }
      sum = warp_sum(sum);
      __syncwarp();
      if (lane == 0) {
        const float alpha = expf(m_old - m_new);  // 0 on the first chunk (m_old = -inf)
        s_alpha[g] = alpha;
        s_sum[g] = s_sum[g] * alpha + sum;
        s_max[g] = m_new;
      }
    }
    __syncthreads();

    // Weighted values.
#pragma unroll
    for (int g = 0; g < kMaxGroup; ++g) {
      if (g >= group) break;
      const float alpha = s_alpha[g];
#pragma unroll
      for (int i = 0; i < kVecN; ++i) acc[g][i] *= alpha;
    }
    if (lane_loads) {
      for (int j0 = warp * kKeysPerWarp + key_in_warp; j0 < n; j0 += 2 * kKeysPerPass) {
        const int j1 = j0 + kKeysPerPass;
        float v0[kVecN], v1[kVecN];
        load_vec16_float(v_cache + slot_of(chunk_begin + j0), v0);
        if (j1 < n) load_vec16_float(v_cache + slot_of(chunk_begin + j1), v1);
        else fill_zero(v1);
#pragma unroll
        for (int g = 0; g < kMaxGroup; ++g) {
          if (g >= group) break;
          const float w0 = s_scores[g][j0];
          const float w1 = j1 < n ? s_scores[g][j1] : 0.0f;
#pragma unroll
          for (int i = 0; i < kVecN; ++i) acc[g][i] = fmaf(w1, v1[i], fmaf(w0, v0[i], acc[g][i]));
        }
      }
    }
    __syncthreads();  // s_scores is rewritten by the next chunk
  }

  // Sum the lanes of a warp that hold other keys, then the warps.
#pragma unroll
  for (int g = 0; g < kMaxGroup; ++g) {
    if (g >= group) break;
#pragma unroll
    for (int i = 0; i < kVecN; ++i) {
#pragma unroll
      for (int off = kThreadsPerKey; off < 32; off *= 2)
        acc[g][i] += __shfl_xor_sync(0xffffffffu, acc[g][i], off);
    }
  }
  if (key_in_warp == 0 && lane_loads) {
#pragma unroll
    for (int g = 0; g < kMaxGroup; ++g) {
      if (g >= group) break;
#pragma unroll
      for (int i = 0; i < kVecN; ++i) s_partial[warp][g][chunk * kVecN + i] = acc[g][i];
    }
  }
  __syncthreads();

  const int head0 = kv_head * group;
  for (int i = tid; i < group * D; i += kDecodeThreads) {
    const int g = i / D, d = i % D;
    float o = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) o += s_partial[w][g][d];
    if (num_splits == 1) {
      T* out = static_cast<T*>(p.out) + int64_t{token} * p.out_row_stride;
      out[int64_t{head0 + g} * D + d] = from_float<T>(o / s_sum[g]);
    } else {
      const int64_t row = (int64_t{seq} * gridDim.x + split) * p.q_heads + head0 + g;
      ws.acc[row * D + d] = o;
      if (d == 0) {
        ws.max[row] = s_max[g];
        ws.sum[row] = s_sum[g];
      }
    }
  }
}

// One block per (q head, row): out = sum_s e^(m_s - M) acc_s / sum_s e^(m_s - M) l_s.
template <typename T>
__global__ void paged_decode_combine_kernel(Params p, DecodeWorkspace ws, int grid_splits) {
  wait_for_producer();
  const int head = blockIdx.x;
  const int seq = blockIdx.y;
  const int token = p.query_start_loc[seq];
  if (p.query_start_loc[seq + 1] - token != 1) return;
  const int pos = p.seq_lens[seq] - 1;
  const int num_splits =
      decode_split(first_key_pos(pos, p.sliding_window), pos, grid_splits, 0, p.min_split_steps).num_splits;
  if (num_splits == 1) return;  // the decode kernel wrote the output itself
  merge_decode_splits<T>(p, ws, seq, token, head, head + 1, num_splits, grid_splits, threadIdx.x, blockDim.x);
}

template <typename T, int D, int kMaxGroup>
void launch_decode_for(const Params& p, int num_splits, const DecodeWorkspace& ws,
                       cudaStream_t stream) {
  const dim3 grid(num_splits, p.kv_heads, p.num_seqs);
  paged_decode_kernel<T, D, kMaxGroup><<<grid, kDecodeThreads, 0, stream>>>(p, ws);
  OCTAVO_CUDA_CHECK_LAUNCH();
}

template <typename T, int D>
void launch_decode_for_dim(const Params& p, int num_splits, const DecodeWorkspace& ws,
                           cudaStream_t stream) {
  // Group bounds rounded up to a power of two: the group's registers and shared memory are
  // sized at compile time; heads past the real group are skipped at run time.
  if (p.group == 1) launch_decode_for<T, D, 1>(p, num_splits, ws, stream);
  else if (p.group == 2) launch_decode_for<T, D, 2>(p, num_splits, ws, stream);
  else if (p.group <= 4) launch_decode_for<T, D, 4>(p, num_splits, ws, stream);
  else launch_decode_for<T, D, 8>(p, num_splits, ws, stream);
}

}  // namespace

DecodeWorkspace carve_decode_workspace(void* workspace, int64_t num_seqs, int64_t q_heads,
                                       int64_t head_dim, int64_t grid_splits) {
  const int64_t rows = num_seqs * grid_splits * q_heads;
  unsigned* counters = static_cast<unsigned*>(workspace);
  float* base = reinterpret_cast<float*>(static_cast<char*>(workspace) + kDecodeCounterBytes);
  return {counters, base, base + rows * head_dim, base + rows * head_dim + rows};
}

int decode_min_split_steps() {
  static const int steps = [] {
    const char* v = std::getenv("OCTAVO_DECODE_SPLIT_KEYS");
    const int keys = v != nullptr ? std::atoi(v) : 0;
    return keys >= kDecodeStepKeys && keys % kDecodeStepKeys == 0 ? keys / kDecodeStepKeys : kMinSplitSteps;
  }();
  return steps;
}

int choose_decode_splits(int64_t num_seqs, int64_t kv_heads, int64_t max_context) {
  const int64_t steps = ceil_div(std::max<int64_t>(max_context, 1), kDecodeStepKeys);
  const int64_t by_length = ceil_div(steps, decode_min_split_steps());
  const int64_t wanted = ceil_div(kTargetDecodeBlocks, std::max<int64_t>(num_seqs * kv_heads, 1));
  return static_cast<int>(std::max<int64_t>(1, std::min({by_length, wanted, kMaxDecodeSplits})));
}

size_t decode_workspace_bytes(int64_t num_seqs, int64_t q_heads, int64_t head_dim,
                              int64_t num_splits) {
  if (num_splits <= 1) return 0;
  return kDecodeCounterBytes + static_cast<size_t>(num_seqs * num_splits * q_heads * (head_dim + 2)) * sizeof(float);
}

template <typename T>
void launch_decode_combine(const Params& p, int num_splits, const DecodeWorkspace& ws,
                           cudaStream_t stream) {
  if (num_splits <= 1) return;
  const dim3 grid(p.q_heads, p.num_seqs);
  launch_dependent(paged_decode_combine_kernel<T>, grid, p.head_dim, 0, stream, p, ws, num_splits);
}

template <typename T>
void launch_decode(const Params& p, int num_splits, void* workspace, cudaStream_t stream) {
  const DecodeWorkspace ws =
      carve_decode_workspace(workspace, p.num_seqs, p.q_heads, p.head_dim, num_splits);
  switch (p.head_dim) {
    case 32: launch_decode_for_dim<T, 32>(p, num_splits, ws, stream); break;
    case 64: launch_decode_for_dim<T, 64>(p, num_splits, ws, stream); break;
    case 96: launch_decode_for_dim<T, 96>(p, num_splits, ws, stream); break;
    case 128: launch_decode_for_dim<T, 128>(p, num_splits, ws, stream); break;
    default: throw std::invalid_argument("paged_attention decode: unsupported head_dim");
  }
  launch_decode_combine<T>(p, num_splits, ws, stream);
}

template void launch_decode<float>(const Params&, int, void*, cudaStream_t);
template void launch_decode<__half>(const Params&, int, void*, cudaStream_t);
template void launch_decode<__nv_bfloat16>(const Params&, int, void*, cudaStream_t);
template void launch_decode_combine<float>(const Params&, int, const DecodeWorkspace&, cudaStream_t);
template void launch_decode_combine<__half>(const Params&, int, const DecodeWorkspace&, cudaStream_t);
template void launch_decode_combine<__nv_bfloat16>(const Params&, int, const DecodeWorkspace&,
                                                   cudaStream_t);

}  // namespace octavo::cuda::paged_attention_detail
