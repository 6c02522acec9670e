// SiLU-and-multiply: grid (tokens, column blocks); each thread reads 16 bytes of gate and
// 16 of up and writes 16 of out (or one element of each on the scalar path).
#include "activation/silu_mul.h"

#include <algorithm>

#include "common/dependent_launch.cuh"
#include "common/dispatch.cuh"
#include "common/vector_access.cuh"

namespace octavo::cuda {

namespace {

// 256 threads x 16 bytes = 4 KB of out per block: a 14336-wide bf16 row (Llama-3-8B) is
// 7 blocks, so even one decode token spreads over several SMs.
constexpr int kThreads = 256;

__device__ __forceinline__ float silu_mul(float g, float u) { return g / (1.0f + expf(-g)) * u; }

template <typename T, bool kVec>
__global__ void silu_mul_kernel(T* out, int64_t out_row_stride, const T* gate_up, int64_t gate_up_row_stride,
                                int64_t inter) {
  wait_for_producer();
  const int64_t t = blockIdx.x;
  const T* gate = gate_up + t * gate_up_row_stride;
  const T* up = gate + inter;
  T* o = out + t * out_row_stride;
  constexpr int kV = kVec ? Vec16<T>::kSize : 1;
  const int64_t units = inter / kV;
  const int64_t step = static_cast<int64_t>(gridDim.y) * blockDim.x;
  for (int64_t u = static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x; u < units; u += step) {
    if constexpr (kVec) {
      const Vec16<T> g = load_vec16(gate + u * kV);
      const Vec16<T> x = load_vec16(up + u * kV);
      Vec16<T> r;
#pragma unroll
      for (int j = 0; j < kV; ++j) r.v[j] = from_float<T>(silu_mul(to_float(g.v[j]), to_float(x.v[j])));
      store_vec16(o + u * kV, r);
    } else {
      o[u] = from_float<T>(silu_mul(to_float(gate[u]), to_float(up[u])));
    }
  }
}

}  // namespace

void launch_silu_mul(void* out, int64_t out_row_stride, const void* gate_up, int64_t gate_up_row_stride,
                     int64_t tokens, int64_t inter, KernelDType dtype, cudaStream_t stream) {
  const char* op = "launch_silu_mul";
  require_arg(tokens >= 0 && inter >= 0, op, "negative tokens or inter");
  require_row_stride(out_row_stride, inter, tokens, op, "out");
  require_row_stride(gate_up_row_stride, 2 * inter, tokens, op, "gate_up");
  if (tokens == 0 || inter == 0) return;
  const unsigned grid_rows = grid_x(tokens, op);
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    constexpr int kV = Vec16<T>::kSize;
    const bool vec = inter % kV == 0 &&
                     allows_vec16(sizeof(T), {out, gate_up}, {out_row_stride, gate_up_row_stride});
    const int64_t units = vec ? inter / kV : inter;
    const dim3 grid(grid_rows, static_cast<unsigned>(std::min(kMaxGridY, ceil_div(units, kThreads))));
    launch_dependent(vec ? silu_mul_kernel<T, true> : silu_mul_kernel<T, false>, grid, kThreads, 0, stream,
                     static_cast<T*>(out), out_row_stride, static_cast<const T*>(gate_up), gate_up_row_stride, inter);
    OCTAVO_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace octavo::cuda
