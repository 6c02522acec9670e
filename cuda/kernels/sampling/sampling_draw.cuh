// The inverse-CDF draw's fixed order, shared by the one-CTA path and the split path
// (sampling.cu): both add the same weights in the same order, so a row draws the same token
// whichever path takes it and whatever else is in the batch.
//
// The row is cut into kWarps segments of whole kDrawChunk-token chunks (draw_segment; the
// last segments may be short or empty). A chunk's sum is the butterfly sum over its 32
// lanes of each lane's sequential sum of its 4 weights; a segment's total is the sequential
// sum of its chunk sums from 0; the row's total is the sequential sum of the kWarps segment
// totals. target = uniform x total; the draw takes the first segment whose running total
// passes the target, then the first chunk of it whose running sum does, then the token of
// that chunk where the running sum, continued weight by weight, first exceeds the target.
// The one-CTA path walks segment s with warp s (draw_token); the split path holds segment s
// in CTA s, one chunk per warp (split_segment_total, then split_find_token in the CTA that
// finishes the row). Every function here is called by the whole block (barriers).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "sampling/sampling_block.cuh"

namespace octavo::cuda::sampling {

// The draw's unit of work: 4 consecutive logits per lane, 128 per warp step.
constexpr int kDrawChunk = 4 * kWarpSize;

// Tokens [begin, end) of one segment of the draw.
struct DrawSegment {
  int32_t begin, end;
  __device__ int32_t chunks() const { return (end - begin + kDrawChunk - 1) / kDrawChunk; }
};

// Segment s of a vocab-token row: ceil(vocab / kWarps) rounded up to whole chunks each.
__device__ __forceinline__ DrawSegment draw_segment(int32_t vocab, int s) {
  const int32_t per_warp = (vocab + kWarps - 1) / kWarps;
  const int32_t size = (per_warp + kDrawChunk - 1) / kDrawChunk * kDrawChunk;
  const int32_t begin = static_cast<int64_t>(s) * size < vocab ? s * size : vocab;
  const int32_t end = vocab - begin < size ? vocab : begin + size;
  return DrawSegment{begin, end};
}

// The shared state of a draw.
struct DrawShared {
  double segment_total[kWarps];
  int32_t segment_last[kWarps];  // last token of positive weight in the segment, -1: none
  double chunk_total[kWarps];    // split path: one round's chunk sums, one per warp
  int32_t segment;               // the chosen segment; kWarps: none crosses the target
  int32_t chunk;                 // split path: the round's chunk crossing it, -1: none
  int32_t token;
  double prefix;                 // the segment totals before the chosen segment
  double run;                    // split path: the chunk sums before the chosen chunk
  double target;
  float chunk_weights[kDrawChunk];
};

// This lane's 4 weights of the chunk at base (a multiple of kDrawChunk) of a segment ending
// at end: 16-byte loads where the row is aligned. Returns their sequential sum and moves
// last to the lane's last token of positive weight.
template <typename Weight>
__device__ __forceinline__ double lane_chunk_weights(const float* row, int32_t base, int32_t end, bool aligned,
                                                     Weight weight, float (&w)[4], int32_t& last) {
  const int32_t i0 = base + 4 * (threadIdx.x % kWarpSize);
  float v[4];
  if (aligned && i0 + 3 < end) {
    const float4 q = *reinterpret_cast<const float4*>(row + i0);
    v[0] = q.x, v[1] = q.y, v[2] = q.z, v[3] = q.w;
  } else {
    for (int k = 0; k < 4; ++k) v[k] = i0 + k < end ? row[i0 + k] : 0.0f;
  }
  double lane_sum = 0.0;
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    w[k] = i0 + k < end ? weight(i0 + k, v[k]) : 0.0f;
    if (w[k] > 0.0f) {
      lane_sum += w[k];
      last = i0 + k;
    }
  }
  return lane_sum;
}

__device__ __forceinline__ bool is_aligned(const float* row) { return (reinterpret_cast<uintptr_t>(row) & 15u) == 0; }

// One thread: the token of the chunk at base (weights w[0, kDrawChunk)) where prefix plus the
// running sum, continued from run weight by weight, first exceeds target; when rounding
// leaves it short, the chunk's last token of positive weight (-1: none).
__device__ inline int32_t scan_chunk(const float* w, int32_t base, double prefix, double run, double target) {
  double partial = run;
  int32_t token = -1;
  for (int j = 0; j < kDrawChunk; ++j) {
    const float wj = w[j];
    if (wj <= 0.0f) continue;
    partial += wj;
    token = base + j;
    if (prefix + partial > target) break;
  }
  return token;
}

// One thread, with the kWarps segment totals and last tokens in sh: the total, the target
// and the segment crossing it. sh.token gets the fallback for a target that rounding left
// at the very end: the last token of positive weight.
__device__ inline void choose_segment(DrawShared& sh, double uniform) {
  double total = 0.0;
  for (int s = 0; s < kWarps; ++s) total += sh.segment_total[s];
  const double target = uniform * total;
  double prefix = 0.0;
  int chosen = kWarps;
  for (int s = 0; s < kWarps; ++s) {
    const double next = prefix + sh.segment_total[s];
    if (next > target) {
      chosen = s;
      break;
    }
    prefix = next;
  }
  sh.segment = chosen;
  sh.prefix = prefix;
  sh.target = target;
  int32_t fallback = -1;
  for (int s = 0; s < kWarps; ++s) fallback = sh.segment_last[s] > fallback ? sh.segment_last[s] : fallback;
  sh.token = fallback;
}

// One-CTA path: the draw over weight(i, row[i]) in token-id order. Warp w walks segment w
// (kLoadUnroll chunks' loads in flight at a time) for the segment totals; then the warp
// holding the target walks its segment again to the chunk and the token.
template <typename Weight>
__device__ int32_t draw_token(const float* row, int32_t vocab, double uniform, Weight weight, DrawShared& sh) {
  const int tid = threadIdx.x, warp = tid / kWarpSize, lane = tid % kWarpSize;
  const DrawSegment seg = draw_segment(vocab, warp);
  const bool aligned = is_aligned(row);

  double running = 0.0;
  int32_t last = -1;
  for (int32_t base = seg.begin; base < seg.end; base += kLoadUnroll * kDrawChunk) {
    double lane_sum[kLoadUnroll];
#pragma unroll
    for (int u = 0; u < kLoadUnroll; ++u) {
      float w[4];
      lane_sum[u] = base + u * kDrawChunk < seg.end
                        ? lane_chunk_weights(row, base + u * kDrawChunk, seg.end, aligned, weight, w, last)
                        : 0.0;
    }
#pragma unroll
    for (int u = 0; u < kLoadUnroll; ++u) {
      if (base + u * kDrawChunk < seg.end) running += warp_all_reduce(lane_sum[u], AddOp{});
    }
  }
  last = warp_all_reduce(last, MaxIntOp{});
  if (lane == 0) {
    sh.segment_total[warp] = running;
    sh.segment_last[warp] = last;
  }
  __syncthreads();
  if (tid == 0) choose_segment(sh, uniform);
  __syncthreads();
  if (warp == sh.segment) {
    const double prefix = sh.prefix, target = sh.target;
    double run = 0.0;
    for (int32_t base = seg.begin; base < seg.end; base += kDrawChunk) {
      float w[4];
      int32_t ignored = -1;
      const double after = run + warp_all_reduce(lane_chunk_weights(row, base, seg.end, aligned, weight, w, ignored),
                                                 AddOp{});
      if (prefix + after > target) {
        for (int k = 0; k < 4; ++k) sh.chunk_weights[4 * lane + k] = w[k];
        __syncwarp();
        if (lane == 0) sh.token = scan_chunk(sh.chunk_weights, base, prefix, run, target);
        break;
      }
      run = after;
    }
  }
  __syncthreads();
  return sh.token;
}

// Split path, the CTA holding segment seg: its total (in thread 0) and its last token of
// positive weight (in every thread). Warps sum one chunk each, kWarps chunks a round, and
// thread 0 adds the round's chunk sums in order: draw_token's running sum, in parallel.
template <typename Weight>
__device__ void split_segment_total(const float* row, DrawSegment seg, Weight weight, DrawShared& sh, double& total,
                                    int32_t& last) {
  const int tid = threadIdx.x, warp = tid / kWarpSize, lane = tid % kWarpSize;
  const bool aligned = is_aligned(row);
  const int32_t chunks = seg.chunks();
  double running = 0.0;
  int32_t my_last = -1;
  for (int32_t first = 0; first < chunks; first += kWarps) {
    const int32_t j = first + warp;
    double sum = 0.0;
    if (j < chunks) {
      float w[4];
      sum = warp_all_reduce(lane_chunk_weights(row, seg.begin + j * kDrawChunk, seg.end, aligned, weight, w, my_last),
                            AddOp{});
    }
    if (lane == 0) sh.chunk_total[warp] = sum;
    __syncthreads();
    if (tid == 0) {
      for (int32_t k = 0; k < kWarps && first + k < chunks; ++k) running += sh.chunk_total[k];
    }
    __syncthreads();
  }
  total = running;
  last = block_all_reduce(my_last, MaxIntOp{});
}

// Split path, the CTA finishing the row, after choose_segment: the chunk of the chosen
// segment and its token (in sh.token). The segment's chunk sums are recomputed one per warp
// and walked in order by thread 0, as draw_token's chosen warp walks them.
template <typename Weight>
__device__ void split_find_token(const float* row, int32_t vocab, Weight weight, DrawShared& sh) {
  if (sh.segment == kWarps) return;  // the fallback token stands
  const int tid = threadIdx.x, warp = tid / kWarpSize, lane = tid % kWarpSize;
  const DrawSegment seg = draw_segment(vocab, sh.segment);
  const bool aligned = is_aligned(row);
  const int32_t chunks = seg.chunks();
  const double prefix = sh.prefix, target = sh.target;
  double run = 0.0;  // thread 0's
  for (int32_t first = 0; first < chunks; first += kWarps) {
    const int32_t j = first + warp;
    float w[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    double sum = 0.0;
    if (j < chunks) {
      int32_t ignored = -1;
      sum = warp_all_reduce(lane_chunk_weights(row, seg.begin + j * kDrawChunk, seg.end, aligned, weight, w, ignored),
                            AddOp{});
    }
    if (lane == 0) sh.chunk_total[warp] = sum;
    __syncthreads();
    if (tid == 0) {
      sh.chunk = -1;
      for (int32_t k = 0; k < kWarps && first + k < chunks; ++k) {
        const double after = run + sh.chunk_total[k];
        if (prefix + after > target) {
          sh.chunk = k;
          sh.run = run;
          break;
        }
        run = after;
      }
    }
    __syncthreads();
    const int32_t k = sh.chunk;
    if (k >= 0) {
      if (warp == k) {
        for (int q = 0; q < 4; ++q) sh.chunk_weights[4 * lane + q] = w[q];
      }
      __syncthreads();
      if (tid == 0) sh.token = scan_chunk(sh.chunk_weights, seg.begin + (first + k) * kDrawChunk, prefix, sh.run, target);
      __syncthreads();
      return;
    }
  }
}

}  // namespace octavo::cuda::sampling
