// KV cache write: grid (tokens, column blocks); each thread copies 16 bytes of k and of v
// (or one element where alignment forbids it) into the token's slot.
#include "cache/write_kv_cache.h"

#include <algorithm>

#include "common/dispatch.cuh"
#include "common/vector_access.cuh"

namespace octavo::cuda {

namespace {

// 128 threads x 16 bytes = 2 KB: a bf16 slot row of 8 kv heads x 128 (Llama-3-8B) in one
// pass with no idle threads.
constexpr int kThreads = 128;

// Strides and row width in units.
template <typename Unit>
__global__ void write_kv_cache_kernel(const Unit* __restrict__ k, int64_t k_row_stride, const Unit* __restrict__ v,
                                      int64_t v_row_stride, const int64_t* __restrict__ slot_mapping,
                                      Unit* __restrict__ k_cache, Unit* __restrict__ v_cache, int64_t width) {
  const int64_t t = blockIdx.x;
  const int64_t slot = slot_mapping[t];
  if (slot < 0) return;  // padding token: nothing to store
  const Unit* k_row = k + t * k_row_stride;
  const Unit* v_row = v + t * v_row_stride;
  Unit* k_dst = k_cache + slot * width;
  Unit* v_dst = v_cache + slot * width;
  const int64_t step = static_cast<int64_t>(gridDim.y) * blockDim.x;
  for (int64_t u = static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x; u < width; u += step) {
    k_dst[u] = k_row[u];
    v_dst[u] = v_row[u];
  }
}

template <typename Unit>
void launch_units(const void* k, int64_t k_row_stride, const void* v, int64_t v_row_stride,
                  const int64_t* slot_mapping, void* k_cache, void* v_cache, int64_t tokens, int64_t width,
                  cudaStream_t stream, const char* op) {
  const dim3 grid(grid_x(tokens, op), static_cast<unsigned>(std::min(kMaxGridY, ceil_div(width, kThreads))));
  write_kv_cache_kernel<Unit><<<grid, kThreads, 0, stream>>>(
      static_cast<const Unit*>(k), k_row_stride, static_cast<const Unit*>(v), v_row_stride, slot_mapping,
      static_cast<Unit*>(k_cache), static_cast<Unit*>(v_cache), width);
  OCTAVO_CUDA_CHECK_LAUNCH();
}

}  // namespace

void launch_write_kv_cache(const void* k, int64_t k_row_stride, const void* v, int64_t v_row_stride,
                           const int64_t* slot_mapping, void* k_cache, void* v_cache, int64_t tokens,
                           int64_t kv_heads, int64_t head_dim, KernelDType dtype, cudaStream_t stream) {
  const char* op = "launch_write_kv_cache";
  require_arg(tokens >= 0 && kv_heads >= 0 && head_dim >= 0, op, "negative tokens, kv_heads or head_dim");
  require_arg(head_dim == 0 || kv_heads <= INT64_MAX / head_dim, op, "kv_heads * head_dim overflows");
  const int64_t width = kv_heads * head_dim;
  require_row_stride(k_row_stride, width, tokens, op, "k");
  require_row_stride(v_row_stride, width, tokens, op, "v");
  if (tokens == 0 || width == 0) return;
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    constexpr int64_t kV = Vec16<T>::kSize;
    if (width % kV == 0 && allows_vec16(sizeof(T), {k, v, k_cache, v_cache}, {k_row_stride, v_row_stride})) {
      launch_units<uint4>(k, k_row_stride / kV, v, v_row_stride / kV, slot_mapping, k_cache, v_cache, tokens,
                          width / kV, stream, op);
    } else {
      launch_units<T>(k, k_row_stride, v, v_row_stride, slot_mapping, k_cache, v_cache, tokens, width, stream, op);
    }
  });
}

}  // namespace octavo::cuda
