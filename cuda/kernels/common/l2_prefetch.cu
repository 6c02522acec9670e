// L2 prefetch: one thread per chunk, a grid-stride loop; each chunk is one bulk prefetch
// (sm_90+) or one prefetch per 128-byte line. Nothing waits for the data: the kernel ends as
// soon as its requests are issued, and the memory system fills L2 behind it.
#include "common/l2_prefetch.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "common/kernel_dtype.h"
#include "common/vector_access.cuh"

namespace octavo::cuda {

namespace {

constexpr int kThreads = 128;
constexpr int64_t kMaxBlocks = 132;
constexpr int64_t kChunkBytes = 512;  // a multiple of 16 (the bulk prefetch's unit) and of 128

__global__ void l2_prefetch_kernel(const char* base, int64_t bytes, int64_t stride, int64_t chunks) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < chunks; c += step) {
    const int64_t offset = c * stride;
    // The last chunk may be cut short by the end of the array: whole 16-byte units only.
    const int64_t left = bytes - offset;
    const int64_t size = (left < kChunkBytes ? left : kChunkBytes) & ~int64_t{15};
    if (size <= 0) continue;
    const char* p = base + offset;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(p), "r"(static_cast<uint32_t>(size)) : "memory");
#else
    for (int64_t line = 0; line < size; line += 128) asm volatile("prefetch.global.L2 [%0];" ::"l"(p + line));
#endif
  }
}

}  // namespace

void launch_l2_prefetch(const void* base, int64_t bytes, int64_t budget, cudaStream_t stream) {
  if (bytes < 0 || budget < 0) {
    throw std::invalid_argument("launch_l2_prefetch: negative size (bytes " + std::to_string(bytes) + ", budget " +
                                std::to_string(budget) + ")");
  }
  if (reinterpret_cast<uintptr_t>(base) % 16 != 0) {
    throw std::invalid_argument("launch_l2_prefetch: base must be 16-byte aligned");
  }
  const int64_t wanted = std::min(bytes, budget);
  if (wanted < 16) return;
  const int64_t chunks = ceil_div(wanted, kChunkBytes);
  // The stride spreads the chunks over the whole array, rounded down to 16 bytes; with
  // budget >= bytes it is the chunk size and the chunks tile the array.
  const int64_t stride = std::max<int64_t>(kChunkBytes, (bytes / chunks) & ~int64_t{15});
  const unsigned blocks = static_cast<unsigned>(std::min(kMaxBlocks, ceil_div(chunks, int64_t{kThreads})));
  l2_prefetch_kernel<<<blocks, kThreads, 0, stream>>>(static_cast<const char*>(base), bytes, stride, chunks);
  OCTAVO_CUDA_CHECK(cudaGetLastError());
}

}  // namespace octavo::cuda
