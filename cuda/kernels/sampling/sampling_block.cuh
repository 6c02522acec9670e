// Block-level building blocks of the sampling kernel (sampling.cu): reductions, a scan of
// histogram bins, radix select over order-preserving keys, and a bitonic sort of a few
// keys. All assume one CTA of kThreads threads works on one logits row, and every thread
// of the block calls them (they contain barriers). Results that need to be the same run
// after run are computed in a fixed order (no floating-point atomics).
#pragma once

#include <cuda_runtime.h>

#include <cmath>
#include <cstddef>
#include <cstdint>

namespace octavo::cuda::sampling {

constexpr int kWarpSize = 32;
// One CTA per row with the hardware's largest block: a 128256-token row is ~125 logits per
// thread, and at batch 256 the grid is two waves of one CTA per SM on an H100 (132 SMs).
// The CPU emulator test also builds the kernel with 128 threads (OCTAVO_SAMPLING_THREADS),
// where a barrier costs an eighth as much, to run many more cases.
#ifndef OCTAVO_SAMPLING_THREADS
#define OCTAVO_SAMPLING_THREADS 1024
#endif
constexpr int kThreads = OCTAVO_SAMPLING_THREADS;
constexpr int kWarps = kThreads / kWarpSize;
static_assert(kThreads % kWarpSize == 0 && kWarps <= kWarpSize, "a block reduction's second stage is one warp");
// Radix digits of 11 bits: a 32-bit key resolves in three passes over the row, and the
// 2048-bin histogram (a 4-byte count and an 8-byte mass per bin, 24 KiB) fits in shared
// memory beside everything else; the bins are scanned two per thread.
constexpr int kDigitBits = 11;
constexpr int kBins = 1 << kDigitBits;
constexpr int kBinsPerThread = kBins / kThreads;
// The first pass of a selection by count histograms only the elements within this many
// digits (2 octaves of value at 4 digits an octave) of the largest element's. The 1024
// largest logits of a Gaussian 128k row lie within 5 digits of its maximum; the window
// leaves the bulk of the row, whose few hot bins make shared-memory atomics collide, out
// of the histogram. (Chosen by that reasoning, not yet by measurement.)
constexpr uint32_t kFirstPassWindow = 8;
static_assert(kBins % kThreads == 0, "each thread scans whole bins");

using u64 = unsigned long long;  // the type CUDA's 64-bit atomics take

// float4 loads each thread keeps in flight in a pass over a row: one CTA per SM has only
// 32 warps to hide DRAM latency with, and 4 x 16 bytes per thread is what a streaming
// pass needs to approach the copy bandwidth (a scalar load per thread reaches about a
// third of it).
constexpr int kLoadUnroll = 4;

// Calls f(i, row[i]) for every i in [0, n) that this thread owns, in an order fixed by
// (n, alignment, thread), so per-thread sums are the same bits run after run. 16-byte
// loads where the row is 16-byte aligned (every row when vocab % 4 == 0), scalar loads
// for the rest. Plain loads: the row is edited in place earlier in the kernel.
template <typename F>
__device__ __forceinline__ void for_each_logit(const float* row, int32_t n, F f) {
  const int tid = threadIdx.x;
  int32_t scalar_from = 0;
  if ((reinterpret_cast<uintptr_t>(row) & 15u) == 0) {
    const float4* row4 = reinterpret_cast<const float4*>(row);
    const int32_t n4 = n / 4;
    int32_t j = tid;
    for (; j + (kLoadUnroll - 1) * kThreads < n4; j += kLoadUnroll * kThreads) {
      float4 v[kLoadUnroll];
#pragma unroll
      for (int u = 0; u < kLoadUnroll; ++u) v[u] = row4[j + u * kThreads];
#pragma unroll
      for (int u = 0; u < kLoadUnroll; ++u) {
        const int32_t i = 4 * (j + u * kThreads);
        f(i, v[u].x);
        f(i + 1, v[u].y);
        f(i + 2, v[u].z);
        f(i + 3, v[u].w);
      }
    }
    for (; j < n4; j += kThreads) {
      const float4 v = row4[j];
      f(4 * j, v.x);
      f(4 * j + 1, v.y);
      f(4 * j + 2, v.z);
      f(4 * j + 3, v.w);
    }
    scalar_from = 4 * n4;
  }
  for (int32_t i = scalar_from + tid; i < n; i += kThreads) f(i, row[i]);
}

// Reduction operators with their identities (the second stage pads to a warp with them).
struct AddOp {
  template <typename T>
  __device__ T operator()(T a, T b) const { return a + b; }
  template <typename T>
  __device__ T identity() const { return T(0); }
};
struct MaxFloatOp {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
  template <typename T>
  __device__ T identity() const { return -INFINITY; }
};
struct MaxIntOp {
  __device__ int operator()(int a, int b) const { return a > b ? a : b; }
  template <typename T>
  __device__ T identity() const { return INT32_MIN; }
};
struct MinIntOp {
  __device__ int operator()(int a, int b) const { return a < b ? a : b; }
  template <typename T>
  __device__ T identity() const { return INT32_MAX; }
};

// Butterfly reduction: every lane ends with the same bits (a + b == b + a in IEEE, so the
// partners of each stage agree).
template <typename T, typename Op>
__device__ __forceinline__ T warp_all_reduce(T v, Op op) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

template <typename T>
__device__ __forceinline__ T warp_inclusive_scan(T v) {
  const int lane = threadIdx.x % kWarpSize;
#pragma unroll
  for (int offset = 1; offset < kWarpSize; offset <<= 1) {
    const T y = __shfl_up_sync(0xffffffffu, v, offset);
    if (lane >= offset) v += y;
  }
  return v;
}

// Every thread gets op over the block's values, the same bits in every thread and every run.
template <typename T, typename Op>
__device__ T block_all_reduce(T v, Op op) {
  __shared__ T partial[kWarps];
  const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
  v = warp_all_reduce(v, op);
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  // Every warp reduces the warp totals itself (no second barrier to broadcast).
  v = warp_all_reduce(lane < kWarps ? partial[lane] : op.template identity<T>(), op);
  __syncthreads();                         // partial is free for the next call
  return v;
}

// The highest logit and the lowest token id holding it (NaNs never win): greedy's argmax.
struct ArgMax {
  float value;
  int32_t index;
};
__device__ __forceinline__ bool better(float v, int32_t i, const ArgMax& b) {
  return v > b.value || (v == b.value && i < b.index);
}
__device__ inline ArgMax block_argmax(ArgMax a) {
  __shared__ ArgMax partial[kWarps];
  const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
  auto warp_argmax = [](ArgMax x) {
#pragma unroll
    for (int offset = kWarpSize / 2; offset > 0; offset >>= 1) {
      const float v = __shfl_xor_sync(0xffffffffu, x.value, offset);
      const int32_t i = __shfl_xor_sync(0xffffffffu, x.index, offset);
      if (better(v, i, x)) x = ArgMax{v, i};
    }
    return x;
  };
  a = warp_argmax(a);
  if (lane == 0) partial[warp] = a;
  __syncthreads();
  a = warp_argmax(lane < kWarps ? partial[lane] : ArgMax{-INFINITY, INT32_MAX});
  __syncthreads();
  return a;
}

// Exclusive scan of (count, mass) pairs in thread order; also returns the block totals.
__device__ inline void block_exclusive_scan(uint32_t& count, u64& mass, uint32_t& total_count, u64& total_mass) {
  __shared__ uint32_t warp_count[kWarps];
  __shared__ u64 warp_mass[kWarps];
  const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
  const uint32_t inc_count = warp_inclusive_scan(count);
  const u64 inc_mass = warp_inclusive_scan(mass);
  if (lane == kWarpSize - 1) {
    warp_count[warp] = inc_count;
    warp_mass[warp] = inc_mass;
  }
  __syncthreads();
  const uint32_t wc = lane < kWarps ? warp_count[lane] : 0u;
  const u64 wm = lane < kWarps ? warp_mass[lane] : 0ull;
  const uint32_t wc_inc = warp_inclusive_scan(wc);
  const u64 wm_inc = warp_inclusive_scan(wm);
  // This warp's offset is the exclusive prefix of the warp totals at index `warp`.
  const uint32_t offset_count = __shfl_sync(0xffffffffu, wc_inc - wc, warp);
  const u64 offset_mass = __shfl_sync(0xffffffffu, wm_inc - wm, warp);
  total_count = __shfl_sync(0xffffffffu, wc_inc, kWarpSize - 1);
  total_mass = __shfl_sync(0xffffffffu, wm_inc, kWarpSize - 1);
  count = offset_count + inc_count - count;
  mass = offset_mass + inc_mass - mass;
  __syncthreads();
}

// Inclusive scan of doubles in thread order, the same bits run after run.
__device__ inline double block_inclusive_scan(double v) {
  __shared__ double warp_total[kWarps];
  const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
  v = warp_inclusive_scan(v);
  if (lane == kWarpSize - 1) warp_total[warp] = v;
  __syncthreads();
  const double t_inc = warp_inclusive_scan(lane < kWarps ? warp_total[lane] : 0.0);
  double t_exc = __shfl_up_sync(0xffffffffu, t_inc, 1);
  if (lane == 0) t_exc = 0.0;
  v += __shfl_sync(0xffffffffu, t_exc, warp);  // the warps before this one
  __syncthreads();
  return v;
}

// radix_select's mass_of for selections by count (never called).
struct NoMass {
  __device__ bool operator()(float, u64&) const { return false; }
};

// Shared memory of radix_select.
struct RadixShared {
  uint32_t count[kBins];
  u64 mass[kBins];
  uint32_t digit;         // the selected bin of the last pass
  uint32_t digit_count;   // its elements
  uint32_t above_count;   // elements in higher bins of that pass
  u64 above_mass;         // their mass
  int found;
};

// Radix select in descending key order over the elements of row[0, n) that key_of accepts,
// most significant digit first; each pass histograms the elements that share the prefix
// chosen so far.
//   kByMass = false: returns K such that {key >= K} holds exactly the rank + 1 largest keys
//     (rank < the number of elements). Stops as soon as the chosen bin ends exactly there.
//   kByMass = true: elements with mass_of() > 0 only; walking keys from the largest, finds
//     the first element at which the running mass reaches keep = keep_fraction x total mass
//     and returns K such that {key >= K} keeps it and everything above it (and no other
//     element of positive mass). Keys must be distinct. Stops when the element is alone in
//     its bin.
// key_of(i, row[i], key, aux) -> bool: element i's key (key_bits <= 63 wide) and a value
// handed to mass_of(aux, q) -> bool, which gives its mass as a fixed-point integer (q) and
// whether it is positive. Masses are summed in integers, so the result does not depend on the order
// the atomics land in.
//
// top_key32: the top 32 bits of the largest key when the caller knows them, else 0. The
// first pass of a selection by count then histograms only the elements whose first digit
// lies within kFirstPassWindow digits of the largest one's, and runs again over every
// element when those turn out to be rank + 1 or fewer.
template <bool kByMass, typename KeyOf, typename MassOf>
__device__ uint64_t radix_select(RadixShared& rs, const float* row, int32_t n, int key_bits, uint32_t rank,
                                 double keep_fraction, uint32_t top_key32, KeyOf key_of, MassOf mass_of) {
  const int tid = threadIdx.x;
  uint64_t prefix = 0;
  int depth = 0;
  uint32_t above_count = 0;
  u64 above_mass = 0;
  double keep = 0.0;
  const uint32_t top_digit = top_key32 >> (32 - kDigitBits);
  uint32_t first_floor = !kByMass && top_digit > kFirstPassWindow ? top_digit - kFirstPassWindow : 0;
  for (;;) {
    const int digit_bits = key_bits - depth < kDigitBits ? key_bits - depth : kDigitBits;
    const int shift = key_bits - depth - digit_bits;
    const uint32_t digit_mask = (1u << digit_bits) - 1u;
    for (int b = tid; b < kBins; b += kThreads) {
      rs.count[b] = 0;
      rs.mass[b] = 0;
    }
    if (tid == 0) rs.found = 0;
    __syncthreads();
    for_each_logit(row, n, [&](int32_t i, float v) {
      uint64_t key;
      float aux;
      if (!key_of(i, v, key, aux)) return;
      if (depth > 0 && (key >> (key_bits - depth)) != prefix) return;
      const uint32_t digit = static_cast<uint32_t>(key >> shift) & digit_mask;
      if (depth == 0 && digit < first_floor) return;
      if constexpr (kByMass) {
        u64 q;
        if (!mass_of(aux, q)) return;
        if (q != 0) atomicAdd(&rs.mass[digit], q);
      }
      atomicAdd(&rs.count[digit], 1u);
    });
    __syncthreads();
    // Bins from the highest down: thread t scans bins kBins-1-t*kBinsPerThread downwards.
    uint32_t count = 0;
    u64 mass = 0;
    for (int j = 0; j < kBinsPerThread; ++j) {
      const int b = kBins - 1 - tid * kBinsPerThread - j;
      count += rs.count[b];
      mass += rs.mass[b];
    }
    uint32_t total_count;
    u64 total_mass;
    block_exclusive_scan(count, mass, total_count, total_mass);
    if (depth == 0 && first_floor > 0 && total_count <= rank) {
      first_floor = 0;  // the window held too few: histogram every element
      continue;
    }
    if (kByMass && depth == 0) keep = keep_fraction * static_cast<double>(total_mass);
    for (int j = 0; j < kBinsPerThread; ++j) {
      const int b = kBins - 1 - tid * kBinsPerThread - j;
      bool here;
      if constexpr (kByMass) {
        // The first bin whose running mass (inclusive) reaches keep.
        const u64 before = above_mass + mass;
        here = static_cast<double>(before) < keep && static_cast<double>(before + rs.mass[b]) >= keep;
      } else {
        const uint32_t r = rank - above_count;
        here = count <= r && r < count + rs.count[b];
      }
      if (here) {
        rs.digit = static_cast<uint32_t>(b);
        rs.digit_count = rs.count[b];
        rs.above_count = count;
        rs.above_mass = mass;
        rs.found = 1;
      }
      count += rs.count[b];
      mass += rs.mass[b];
    }
    __syncthreads();
    const bool found = rs.found;
    const uint32_t digit = rs.digit, digit_count = rs.digit_count;
    above_count += rs.above_count;
    above_mass += rs.above_mass;
    __syncthreads();  // everyone has read the choice before the next pass (or call) resets it
    if (!found) return prefix << (key_bits - depth);  // unreachable for valid inputs; never loops
    prefix = (prefix << digit_bits) | digit;
    depth += digit_bits;
    const bool done = kByMass ? digit_count == 1 : above_count + digit_count == rank + 1;
    if (done || shift == 0) return prefix << shift;
  }
}

// Sorts keys[0, size) in descending order; size is a power of two <= kThreads.
__device__ inline void bitonic_sort_descending(u64* keys, int size) {
  const int i = threadIdx.x;
  for (int k = 2; k <= size; k <<= 1) {
    for (int j = k >> 1; j > 0; j >>= 1) {
      const int partner = i ^ j;
      if (i < size && partner > i) {
        const u64 a = keys[i], b = keys[partner];
        // Pairs in blocks with bit k clear end larger-first; the last merge (k == size) is
        // all larger-first.
        const bool larger_first = (i & k) == 0;
        if (larger_first ? a < b : a > b) {
          keys[i] = b;
          keys[partner] = a;
        }
      }
      __syncthreads();
    }
  }
}

}  // namespace octavo::cuda::sampling
