// Conversion and random fill: flat grid-stride loops over n elements.
#include "common/convert.h"

#include <algorithm>
#include <type_traits>

#include "common/dispatch.cuh"
#include "core/splitmix64.h"
#include "common/vector_access.cuh"

namespace octavo::cuda {

namespace {

// 256 threads per block and at most 4096 blocks: enough to fill an H100's 132 SMs several
// times over; larger arrays are covered by the grid-stride loop.
constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 4096;
// Elements per thread on the vectorised conversion path: 16 bytes of the narrower type.
constexpr int kConvertChunk = 8;

unsigned blocks_for(int64_t work_items) {
  return static_cast<unsigned>(std::min(kMaxBlocks, std::max<int64_t>(1, ceil_div(work_items, kThreads))));
}

template <typename T, int N>
struct alignas(sizeof(T) * N) Chunk {
  T v[N];
};

// With kVec, dst and src are aligned to a whole chunk (8 elements) and each thread converts
// a chunk with one or two 16-byte accesses per side; the last partial chunk goes element by
// element.
template <typename D, typename S, bool kVec>
__global__ void convert_kernel(D* __restrict__ dst, const S* __restrict__ src, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if constexpr (kVec) {
    const int64_t chunks = n / kConvertChunk;
    for (int64_t c = first; c < chunks; c += stride) {
      const Chunk<S, kConvertChunk> in = reinterpret_cast<const Chunk<S, kConvertChunk>*>(src)[c];
      Chunk<D, kConvertChunk> out;
#pragma unroll
      for (int j = 0; j < kConvertChunk; ++j) out.v[j] = from_float<D>(to_float(in.v[j]));
      reinterpret_cast<Chunk<D, kConvertChunk>*>(dst)[c] = out;
    }
    for (int64_t i = chunks * kConvertChunk + first; i < n; i += stride) dst[i] = from_float<D>(to_float(src[i]));
  } else {
    for (int64_t i = first; i < n; i += stride) dst[i] = from_float<D>(to_float(src[i]));
  }
}

// Hash-bound more than memory-bound, so scalar stores are fine here.
template <typename T>
__global__ void fill_uniform_kernel(T* __restrict__ dst, int64_t n, uint64_t seed, float low, float scale) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const uint64_t bits = splitmix64_mix(seed + static_cast<uint64_t>(i + 1) * kSplitMix64Increment);
    // One fused multiply-add, as GCC compiles the CPU's low + u * scale under -march=native
    // (the default build) on any x86 with FMA; without FMA the CPU rounds twice (1 ulp).
    dst[i] = from_float<T>(__fmaf_rn(static_cast<float>(bits >> 40), scale, low));
  }
}

}  // namespace

void launch_convert(void* dst, KernelDType dst_dtype, const void* src, KernelDType src_dtype, int64_t n,
                    cudaStream_t stream) {
  const char* op = "launch_convert";
  require_arg(n >= 0, op, "negative n");
  if (n == 0) return;
  dispatch_dtype(dst_dtype, [&](auto dst_tag) {
    using D = decltype(dst_tag);
    dispatch_dtype(src_dtype, [&](auto src_tag) {
      using S = decltype(src_tag);
      if constexpr (std::is_same_v<D, S>) {
        if (dst != src) {
          OCTAVO_CUDA_CHECK(cudaMemcpyAsync(dst, src, static_cast<size_t>(n) * sizeof(D), cudaMemcpyDeviceToDevice, stream));
        }
      } else {
        const bool vec = reinterpret_cast<uintptr_t>(dst) % (sizeof(D) * kConvertChunk) == 0 &&
                         reinterpret_cast<uintptr_t>(src) % (sizeof(S) * kConvertChunk) == 0;
        const unsigned blocks = blocks_for(vec ? ceil_div(n, kConvertChunk) : n);
        if (vec) {
          convert_kernel<D, S, true><<<blocks, kThreads, 0, stream>>>(static_cast<D*>(dst), static_cast<const S*>(src), n);
        } else {
          convert_kernel<D, S, false><<<blocks, kThreads, 0, stream>>>(static_cast<D*>(dst), static_cast<const S*>(src), n);
        }
        OCTAVO_CUDA_CHECK_LAUNCH();
      }
    });
  });
}

void launch_fill_uniform(void* dst, KernelDType dtype, int64_t n, uint64_t seed, float low, float high,
                         cudaStream_t stream) {
  const char* op = "launch_fill_uniform";
  require_arg(n >= 0, op, "negative n");
  if (n == 0) return;
  // The top 24 bits give every float of [0, 1) at spacing 2^-24, as in the CPU version.
  const float scale = (high - low) * 0x1.0p-24f;
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    fill_uniform_kernel<T><<<blocks_for(n), kThreads, 0, stream>>>(static_cast<T*>(dst), n, seed, low, scale);
    OCTAVO_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace octavo::cuda
