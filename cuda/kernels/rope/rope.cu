// Rope: one block per token. The block stages the token's cos/sin row in shared memory
// (every head reuses it), then its threads take (head, chunk) units, a chunk being 16 bytes
// of the first half of a head's rotary dims together with its partner in the second half.
#include "rope/rope.h"

#include <algorithm>

#include "common/dispatch.cuh"
#include "common/vector_access.cuh"

namespace octavo::cuda {

namespace {

// 256 threads: a token of Llama-3-8B in bf16 is (32 + 8) heads x 8 chunks = 320 units,
// so a block covers it in two passes; smaller tokens launch fewer threads.
constexpr int kMaxThreads = 256;
constexpr int kWarpSize = 32;
// The table row is staged in the default 48 KB of dynamic shared memory, without opting in
// to more: rot_dim up to 12288 floats, far past any model's head_dim.
constexpr int64_t kMaxSharedBytes = 48 * 1024;

template <typename T, bool kVec>
__global__ void rope_kernel(T* q, int64_t q_row_stride, T* k, int64_t k_row_stride,
                            const int32_t* __restrict__ positions, const float* __restrict__ cos_sin,
                            int64_t cos_sin_row_stride, int half, int q_heads, int kv_heads, int head_dim) {
  extern __shared__ float table[];  // [2 * half]: cos, then sin
  const int64_t t = blockIdx.x;
  const float* row = cos_sin + static_cast<int64_t>(positions[t]) * cos_sin_row_stride;
  for (int i = threadIdx.x; i < 2 * half; i += blockDim.x) table[i] = row[i];
  __syncthreads();
  const float* cos = table;
  const float* sin = table + half;

  constexpr int kV = kVec ? Vec16<T>::kSize : 1;
  const int chunks = half / kV;
  const int units = (q_heads + kv_heads) * chunks;
  for (int u = threadIdx.x; u < units; u += blockDim.x) {
    const int head = u / chunks;
    const int i0 = (u - head * chunks) * kV;
    T* x = head < q_heads ? q + t * q_row_stride + static_cast<int64_t>(head) * head_dim
                          : k + t * k_row_stride + static_cast<int64_t>(head - q_heads) * head_dim;
    if constexpr (kVec) {
      Vec16<T> a = load_vec16(x + i0);
      Vec16<T> b = load_vec16(x + i0 + half);
#pragma unroll
      for (int j = 0; j < kV; ++j) {
        const float x1 = to_float(a.v[j]), x2 = to_float(b.v[j]);
        const float c = cos[i0 + j], s = sin[i0 + j];
        a.v[j] = from_float<T>(x1 * c - x2 * s);
        b.v[j] = from_float<T>(x2 * c + x1 * s);
      }
      store_vec16(x + i0, a);
      store_vec16(x + i0 + half, b);
    } else {
      const float x1 = to_float(x[i0]), x2 = to_float(x[i0 + half]);
      const float c = cos[i0], s = sin[i0];
      x[i0] = from_float<T>(x1 * c - x2 * s);
      x[i0 + half] = from_float<T>(x2 * c + x1 * s);
    }
  }
}

}  // namespace

void launch_rope(void* q, int64_t q_row_stride, void* k, int64_t k_row_stride, const int32_t* positions,
                 const float* cos_sin, int64_t cos_sin_row_stride, int64_t rot_dim, int64_t tokens,
                 int64_t q_heads, int64_t kv_heads, int64_t head_dim, KernelDType dtype, cudaStream_t stream) {
  const char* op = "launch_rope";
  require_arg(tokens >= 0 && q_heads >= 0 && kv_heads >= 0, op, "negative tokens or heads");
  require_arg(head_dim > 0 && head_dim % 2 == 0, op, "head_dim must be positive and even, got " + std::to_string(head_dim));
  require_arg(rot_dim > 0 && rot_dim % 2 == 0 && rot_dim <= head_dim, op,
              "rot_dim must be even and in (0, head_dim], got " + std::to_string(rot_dim));
  require_arg(rot_dim * static_cast<int64_t>(sizeof(float)) <= kMaxSharedBytes, op, "rot_dim too large");
  require_arg(head_dim <= INT_MAX && q_heads + kv_heads <= INT_MAX / head_dim, op, "too many heads");
  require_row_stride(q_row_stride, q_heads * head_dim, tokens, op, "q");
  require_row_stride(k_row_stride, kv_heads * head_dim, tokens, op, "k");
  require_arg(cos_sin_row_stride >= rot_dim, op, "cos_sin row stride is shorter than rot_dim");
  if (tokens == 0 || q_heads + kv_heads == 0) return;
  const unsigned grid = grid_x(tokens, op);
  const int half = static_cast<int>(rot_dim / 2);
  const size_t shared_bytes = static_cast<size_t>(rot_dim) * sizeof(float);
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    constexpr int kV = Vec16<T>::kSize;
    const bool vec = half % kV == 0 &&
                     allows_vec16(sizeof(T), {q, k}, {q_row_stride, k_row_stride, head_dim});
    const int64_t units = (q_heads + kv_heads) * (vec ? half / kV : half);
    const int threads =
        static_cast<int>(std::min<int64_t>(kMaxThreads, ceil_div(units, kWarpSize) * kWarpSize));
    T* qt = static_cast<T*>(q);
    T* kt = static_cast<T*>(k);
    const int qh = static_cast<int>(q_heads), kh = static_cast<int>(kv_heads), hd = static_cast<int>(head_dim);
    if (vec) {
      rope_kernel<T, true><<<grid, threads, shared_bytes, stream>>>(
          qt, q_row_stride, kt, k_row_stride, positions, cos_sin, cos_sin_row_stride, half, qh, kh, hd);
    } else {
      rope_kernel<T, false><<<grid, threads, shared_bytes, stream>>>(
          qt, q_row_stride, kt, k_row_stride, positions, cos_sin, cos_sin_row_stride, half, qh, kh, hd);
    }
    OCTAVO_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace octavo::cuda
