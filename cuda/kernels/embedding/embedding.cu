// Row gathers: grid (rows, column blocks), each thread copies 16 bytes (or one element
// where alignment forbids it). A copy needs no arithmetic, so the kernel is templated on
// the unit it moves (uint4 or the element type), not on the dtype's meaning.
#include "embedding/embedding.h"

#include <algorithm>

#include "common/dispatch.cuh"
#include "common/vector_access.cuh"

namespace octavo::cuda {

namespace {

// 256 threads x 16 bytes = 4 KB per block: a 4096-wide bf16 row is 2 blocks.
constexpr int kThreads = 256;

// Strides and width in units.
template <typename Unit>
__global__ void gather_rows_kernel(Unit* __restrict__ out, int64_t out_row_stride, const Unit* __restrict__ x,
                                   int64_t x_row_stride, const int32_t* __restrict__ index, int64_t width) {
  const int64_t i = blockIdx.x;
  const Unit* src = x + static_cast<int64_t>(index[i]) * x_row_stride;
  Unit* dst = out + i * out_row_stride;
  const int64_t step = static_cast<int64_t>(gridDim.y) * blockDim.x;
  for (int64_t u = static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x; u < width; u += step) {
    dst[u] = src[u];
  }
}

template <typename Unit>
void launch_gather_units(void* out, int64_t out_row_stride, const void* x, int64_t x_row_stride,
                         const int32_t* index, int64_t rows, int64_t width, cudaStream_t stream, const char* op) {
  const dim3 grid(grid_x(rows, op), static_cast<unsigned>(std::min(kMaxGridY, ceil_div(width, kThreads))));
  gather_rows_kernel<Unit><<<grid, kThreads, 0, stream>>>(static_cast<Unit*>(out), out_row_stride,
                                                          static_cast<const Unit*>(x), x_row_stride, index, width);
  OCTAVO_CUDA_CHECK_LAUNCH();
}

void gather(void* out, int64_t out_row_stride, const void* x, int64_t x_row_stride, const int32_t* index,
            int64_t rows, int64_t width, KernelDType dtype, cudaStream_t stream, const char* op) {
  require_arg(rows >= 0 && width >= 0, op, "negative rows or width");
  require_row_stride(out_row_stride, width, rows, op, "out");
  require_arg(x_row_stride >= 0, op, "negative source row stride");
  if (rows == 0 || width == 0) return;
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    constexpr int64_t kV = Vec16<T>::kSize;
    if (width % kV == 0 && allows_vec16(sizeof(T), {out, x}, {out_row_stride, x_row_stride})) {
      launch_gather_units<uint4>(out, out_row_stride / kV, x, x_row_stride / kV, index, rows, width / kV,
                                 stream, op);
    } else {
      launch_gather_units<T>(out, out_row_stride, x, x_row_stride, index, rows, width, stream, op);
    }
  });
}

}  // namespace

void launch_embedding(void* out, int64_t out_row_stride, const void* table, const int32_t* ids, int64_t tokens,
                      int64_t hidden, KernelDType dtype, cudaStream_t stream) {
  gather(out, out_row_stride, table, hidden, ids, tokens, hidden, dtype, stream, "launch_embedding");
}

void launch_gather_rows(void* out, int64_t out_row_stride, const void* x, int64_t x_row_stride,
                        const int32_t* index, int64_t rows, int64_t width, KernelDType dtype, cudaStream_t stream) {
  gather(out, out_row_stride, x, x_row_stride, index, rows, width, dtype, stream, "launch_gather_rows");
}

}  // namespace octavo::cuda
