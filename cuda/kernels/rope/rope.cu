// Rope: one block per token. The block stages the token's cos/sin row in shared memory
// (every head reuses it), then its threads take (head, chunk) units, a chunk being 16 bytes
// of the first half of a head's rotary dims together with its partner in the second half.
// With a RopeCacheWrite the block also stores the token's rotated k and its v in the KV
// cache: the rotated k chunks straight from registers, then v and any k dims past rot_dim.
#include "rope/rope.h"

#include <algorithm>

#include "common/dependent_launch.cuh"
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

template <typename T, bool kVec, bool kCache>
__global__ void rope_kernel(T* q, int64_t q_row_stride, T* k, int64_t k_row_stride,
                            const int32_t* __restrict__ positions, const float* __restrict__ cos_sin,
                            int64_t cos_sin_row_stride, int half, int q_heads, int kv_heads, int head_dim,
                            RopeCacheWrite cache) {
  extern __shared__ float table[];  // [2 * half]: cos, then sin
  // Before waiting for the producer (the q/k/v GEMM): the table row and the slot. Positions
  // and slots are step inputs, copied from the host before the forward's first kernel, and
  // the table is constant, so no kernel writes what is read here; the loads overlap the
  // GEMM's tail.
  const int64_t t = blockIdx.x;
  const float* row = cos_sin + static_cast<int64_t>(positions[t]) * cos_sin_row_stride;
  for (int i = threadIdx.x; i < 2 * half; i += blockDim.x) table[i] = row[i];
  int64_t slot = -1;
  if constexpr (kCache) slot = cache.slot_mapping[t];
  wait_for_producer();
  __syncthreads();
  const float* cos = table;
  const float* sin = table + half;

  constexpr int kV = kVec ? Vec16<T>::kSize : 1;
  // The token's cache rows (kCache and a real slot), else null.
  T* k_dst = nullptr;
  T* v_dst = nullptr;
  if constexpr (kCache) {
    if (slot >= 0) {
      const int64_t width = static_cast<int64_t>(kv_heads) * head_dim;
      k_dst = static_cast<T*>(cache.k_cache) + slot * width;
      v_dst = static_cast<T*>(cache.v_cache) + slot * width;
    }
  }
  const int chunks = half / kV;
  const int units = (q_heads + kv_heads) * chunks;
  for (int u = threadIdx.x; u < units; u += blockDim.x) {
    const int head = u / chunks;
    const int i0 = (u - head * chunks) * kV;
    T* x = head < q_heads ? q + t * q_row_stride + static_cast<int64_t>(head) * head_dim
                          : k + t * k_row_stride + static_cast<int64_t>(head - q_heads) * head_dim;
    // Where this k head's rotated values also go (null for q heads and without a slot).
    T* dst = k_dst != nullptr && head >= q_heads ? k_dst + static_cast<int64_t>(head - q_heads) * head_dim : nullptr;
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
      if (dst != nullptr) {
        store_vec16(dst + i0, a);
        store_vec16(dst + i0 + half, b);
      }
    } else {
      const float x1 = to_float(x[i0]), x2 = to_float(x[i0 + half]);
      const float c = cos[i0], s = sin[i0];
      const T r1 = from_float<T>(x1 * c - x2 * s), r2 = from_float<T>(x2 * c + x1 * s);
      x[i0] = r1;
      x[i0 + half] = r2;
      if (dst != nullptr) {
        dst[i0] = r1;
        dst[i0 + half] = r2;
      }
    }
  }
  if constexpr (kCache) {
    if (v_dst == nullptr) return;
    // v whole, then k's dims past the rotary ones (rope leaves them as they are), in units
    // of kV elements: head_dim and 2 * half are multiples of kV on the vector path.
    const T* v_row = static_cast<const T*>(cache.v) + t * cache.v_row_stride;
    const T* k_row = k + t * k_row_stride;
    const int v_units_per_head = head_dim / kV;
    const int tail_units_per_head = (head_dim - 2 * half) / kV;
    const int v_units = kv_heads * v_units_per_head;
    const int copy_units = v_units + kv_heads * tail_units_per_head;
    for (int u = threadIdx.x; u < copy_units; u += blockDim.x) {
      const T* src;
      T* dst;
      if (u < v_units) {
        const int head = u / v_units_per_head;
        const int64_t off = static_cast<int64_t>(head) * head_dim + (u - head * v_units_per_head) * kV;
        src = v_row + off;
        dst = v_dst + off;
      } else {
        const int w = u - v_units;
        const int head = w / tail_units_per_head;
        const int64_t off =
            static_cast<int64_t>(head) * head_dim + 2 * half + (w - head * tail_units_per_head) * kV;
        src = k_row + off;
        dst = k_dst + off;
      }
      if constexpr (kVec) {
        store_vec16(dst, load_vec16(src));
      } else {
        *dst = *src;
      }
    }
  }
}

}  // namespace

void launch_rope(void* q, int64_t q_row_stride, void* k, int64_t k_row_stride, const int32_t* positions,
                 const float* cos_sin, int64_t cos_sin_row_stride, int64_t rot_dim, int64_t tokens,
                 int64_t q_heads, int64_t kv_heads, int64_t head_dim, KernelDType dtype, cudaStream_t stream,
                 const RopeCacheWrite* cache) {
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
  if (cache != nullptr) {
    require_row_stride(cache->v_row_stride, kv_heads * head_dim, tokens, op, "v");
    require_arg(cache->slot_mapping != nullptr && cache->k_cache != nullptr && cache->v_cache != nullptr, op,
                "the cache write needs slot_mapping and both caches");
  }
  const RopeCacheWrite no_cache{nullptr, 0, nullptr, nullptr, nullptr};
  const RopeCacheWrite cw = cache != nullptr ? *cache : no_cache;
  if (tokens == 0 || q_heads + kv_heads == 0) return;
  const unsigned grid = grid_x(tokens, op);
  const int half = static_cast<int>(rot_dim / 2);
  const size_t shared_bytes = static_cast<size_t>(rot_dim) * sizeof(float);
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    constexpr int kV = Vec16<T>::kSize;
    const bool vec = half % kV == 0 && head_dim % kV == 0 &&
                     allows_vec16(sizeof(T), {q, k, cw.v, cw.k_cache, cw.v_cache},
                                  {q_row_stride, k_row_stride, cw.v_row_stride, head_dim});
    const int64_t rope_units = (q_heads + kv_heads) * (vec ? half / kV : half);
    const int64_t copy_units = cache == nullptr ? 0 : kv_heads * (2 * head_dim - rot_dim) / (vec ? kV : 1);
    const int64_t units = std::max(rope_units, copy_units);
    const int threads =
        static_cast<int>(std::min<int64_t>(kMaxThreads, ceil_div(units, kWarpSize) * kWarpSize));
    T* qt = static_cast<T*>(q);
    T* kt = static_cast<T*>(k);
    const int qh = static_cast<int>(q_heads), kh = static_cast<int>(kv_heads), hd = static_cast<int>(head_dim);
    auto kernel = vec ? (cache != nullptr ? rope_kernel<T, true, true> : rope_kernel<T, true, false>)
                      : (cache != nullptr ? rope_kernel<T, false, true> : rope_kernel<T, false, false>);
    launch_dependent(kernel, grid, threads, shared_bytes, stream, qt, q_row_stride, kt, k_row_stride, positions,
                     cos_sin, cos_sin_row_stride, half, qh, kh, hd, cw);
    OCTAVO_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace octavo::cuda
