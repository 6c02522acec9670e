// L2 prefetch: one thread per row prefix in a grid-stride loop, each prefix one bulk prefetch
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
constexpr int64_t kMinPrefix = 128;  // one L2 line; also a multiple of the bulk prefetch's 16 bytes

__global__ void l2_prefetch_kernel(const char* base, int64_t rows, int64_t row_pitch, uint32_t prefix) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; r < rows; r += step) {
    const char* p = base + r * row_pitch;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(p), "r"(prefix) : "memory");
#else
    for (uint32_t line = 0; line < prefix; line += 128) asm volatile("prefetch.global.L2 [%0];" ::"l"(p + line));
#endif
  }
}

}  // namespace

void launch_l2_prefetch(const void* base, int64_t rows, int64_t row_pitch, int64_t row_bytes, int64_t budget,
                        cudaStream_t stream) {
  if (rows < 0 || row_bytes < 0 || budget < 0 || row_pitch < row_bytes) {
    throw std::invalid_argument("launch_l2_prefetch: bad sizes (rows " + std::to_string(rows) + ", row_pitch " +
                                std::to_string(row_pitch) + ", row_bytes " + std::to_string(row_bytes) +
                                ", budget " + std::to_string(budget) + ")");
  }
  if (reinterpret_cast<uintptr_t>(base) % 16 != 0 || row_pitch % 16 != 0) {
    throw std::invalid_argument("launch_l2_prefetch: base and row_pitch must be multiples of 16 bytes");
  }
  const int64_t whole = row_bytes & ~int64_t{15};
  if (rows == 0 || whole == 0 || budget < 16) return;
  // Whole rows, or the same prefix of every row, or (a small budget) 128-byte prefixes of the first rows.
  const int64_t prefix = std::min(whole, std::max(kMinPrefix, (budget / rows) & ~int64_t{15}));
  const int64_t count = std::min(rows, std::max<int64_t>(1, budget / prefix));
  const unsigned blocks = static_cast<unsigned>(std::min(kMaxBlocks, ceil_div(count, int64_t{kThreads})));
  l2_prefetch_kernel<<<blocks, kThreads, 0, stream>>>(static_cast<const char*>(base), count, row_pitch,
                                                      static_cast<uint32_t>(std::min<int64_t>(prefix, 1 << 30)));
  OCTAVO_CUDA_CHECK(cudaGetLastError());
}

}  // namespace octavo::cuda
