// RMS norm and the fused residual add + RMS norm. Each norm item (a row, or one head of a
// row) is read twice: once for the sum of squares, once to scale; the second read hits L1
// or L2 (an item is at most a few tens of KB), so DRAM sees one read and one write.
// A thread touches the same elements in both passes, which is what makes out == x (and
// out == residual or delta) safe without extra barriers.
#include "norm/rms_norm.h"

#include <algorithm>

#include "common/dependent_launch.cuh"
#include "common/dispatch.cuh"
#include "common/vector_access.cuh"

namespace octavo::cuda {

namespace {

constexpr int kWarpSize = 32;
// Items of at most this many 16-byte (or scalar) units take a warp each (two units per
// lane at most): Qwen3's per-head q/k norm (head_dim 128) is one warp per head instead of
// a block with three quarters of its threads idle.
constexpr int64_t kMaxUnitsPerWarpItem = 2 * kWarpSize;
// Warp mode: 4 items (warps) per block, small enough that the last block idles little.
constexpr int kWarpsPerBlock = 4;
// Block mode: one thread per unit up to the hardware's 1024 threads per block (a bf16 row
// of 8192 is 1024 units), so wide rows spread over the whole block.
constexpr int kMaxBlockThreads = 1024;

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset >>= 1) {
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  }
  return v;
}

struct WarpSum {
  __device__ float operator()(float v) const { return warp_sum(v); }
};

// Every thread of the block must call it; blockDim.x is a multiple of 32.
struct BlockSum {
  __device__ float operator()(float v) const {
    __shared__ float partial[kMaxBlockThreads / kWarpSize];
    __shared__ float total;
    const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
    v = warp_sum(v);
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    if (warp == 0) {
      const int num_warps = blockDim.x / kWarpSize;
      float s = lane < num_warps ? partial[lane] : 0.0f;
      s = warp_sum(s);
      if (lane == 0) total = s;
    }
    __syncthreads();
    return total;
  }
};

// The weight's first 16-byte unit for thread tid (vector path), loaded before the kernel
// waits for its producer: the weights are no kernel's output, so the load overlaps the
// previous kernel's tail instead of adding a memory round trip after the reduction.
template <typename T, bool kVec>
__device__ __forceinline__ Vec16<T> first_weight_unit(const T* weight, int64_t dim, int tid) {
  Vec16<T> w{};
  if constexpr (kVec) {
    if (tid < dim / Vec16<T>::kSize) w = load_vec16(weight + static_cast<int64_t>(tid) * Vec16<T>::kSize);
  }
  return w;
}

// What joins the residual before the norm: nothing (a plain norm), a delta of T, or the
// fp32 k slices of a split-K projection, summed and rounded to T (what a GEMM storing T
// would have written).
enum class Delta { kNone, kTyped, kSlices };

// The delta of one item: `typed` (kTyped) or `slices` (kSlices: count slices of the same
// shape, slice_stride floats apart).
template <typename T>
struct ItemDelta {
  const T* typed;
  const float* slices;
  int32_t count;
  int64_t slice_stride;
};

template <typename T, Delta kDelta>
__device__ __forceinline__ Vec16<T> delta_unit(const ItemDelta<T>& d, int64_t offset) {
  if constexpr (kDelta == Delta::kTyped) {
    return load_vec16(d.typed + offset);
  } else {
    constexpr int kV = Vec16<T>::kSize;
    float sum[kV] = {};
    for (int32_t s = 0; s < d.count; ++s) {
      const float* p = d.slices + s * d.slice_stride + offset;
#pragma unroll
      for (int j = 0; j < kV; j += 4) {
        const float4 f = *reinterpret_cast<const float4*>(p + j);
        sum[j] += f.x, sum[j + 1] += f.y, sum[j + 2] += f.z, sum[j + 3] += f.w;
      }
    }
    Vec16<T> r;
#pragma unroll
    for (int j = 0; j < kV; ++j) r.v[j] = from_float<T>(sum[j]);
    return r;
  }
}

template <typename T, Delta kDelta>
__device__ __forceinline__ T delta_element(const ItemDelta<T>& d, int64_t i) {
  if constexpr (kDelta == Delta::kTyped) {
    return d.typed[i];
  } else {
    float sum = 0.0f;
    for (int32_t s = 0; s < d.count; ++s) sum += d.slices[s * d.slice_stride + i];
    return from_float<T>(sum);
  }
}

// One item of dim elements, split over nthreads threads (tid in [0, nthreads)). With a
// delta, x is the residual: x + delta is rounded to T, written back through residual_out
// (== x) and normalised. A unit is 16 bytes (kVec) or one element. On the vector path a
// thread's first unit stays in registers between the passes (with w_first, its weight
// unit): for rows of up to 8192 bf16 values that is every unit, so the second pass reads no
// memory.
template <typename T, bool kVec, Delta kDelta, typename Reduce>
__device__ __forceinline__ void norm_item(T* out, const T* x, T* residual_out, const ItemDelta<T>& delta,
                                          const T* __restrict__ weight, int64_t dim, float eps,
                                          int tid, int nthreads, Reduce reduce, const Vec16<T>& w_first) {
  constexpr bool kAdd = kDelta != Delta::kNone;
  float sum_squares = 0.0f;
  Vec16<T> x_first{};
  if constexpr (kVec) {
    constexpr int kV = Vec16<T>::kSize;
    const int64_t units = dim / kV;
    for (int64_t u = tid; u < units; u += nthreads) {
      Vec16<T> xv = load_vec16(x + u * kV);
      if constexpr (kAdd) {
        const Vec16<T> dv = delta_unit<T, kDelta>(delta, u * kV);
#pragma unroll
        for (int j = 0; j < kV; ++j) xv.v[j] = from_float<T>(to_float(xv.v[j]) + to_float(dv.v[j]));
        store_vec16(residual_out + u * kV, xv);
      }
      if (u == tid) x_first = xv;
#pragma unroll
      for (int j = 0; j < kV; ++j) {
        const float f = to_float(xv.v[j]);
        sum_squares += f * f;
      }
    }
  } else {
    for (int64_t i = tid; i < dim; i += nthreads) {
      T xi = x[i];
      if constexpr (kAdd) {
        xi = from_float<T>(to_float(xi) + to_float(delta_element<T, kDelta>(delta, i)));
        residual_out[i] = xi;
      }
      const float f = to_float(xi);
      sum_squares += f * f;
    }
  }
  sum_squares = reduce(sum_squares);
  // 1 / sqrt rather than rsqrtf: IEEE-rounded, as the CPU reference computes it.
  const float inv_rms = 1.0f / sqrtf(sum_squares / static_cast<float>(dim) + eps);

  // Second pass: this thread's own elements (its own writes, when kAdd), so no barrier.
  const T* src = kAdd ? residual_out : x;
  if constexpr (kVec) {
    constexpr int kV = Vec16<T>::kSize;
    const int64_t units = dim / kV;
    for (int64_t u = tid; u < units; u += nthreads) {
      Vec16<T> xv = u == tid ? x_first : load_vec16(src + u * kV);
      const Vec16<T> wv = u == tid ? w_first : load_vec16(weight + u * kV);
#pragma unroll
      for (int j = 0; j < kV; ++j) xv.v[j] = from_float<T>(to_float(xv.v[j]) * inv_rms * to_float(wv.v[j]));
      store_vec16(out + u * kV, xv);
    }
  } else {
    for (int64_t i = tid; i < dim; i += nthreads) {
      out[i] = from_float<T>(to_float(src[i]) * inv_rms * to_float(weight[i]));
    }
  }
}

// Pointers of one launch: item (r, h) starts at base + r * row_stride + h * dim.
template <typename T>
struct NormArgs {
  T* out;
  int64_t out_row_stride;
  const T* x;
  int64_t x_row_stride;
  T* residual;  // == x with a delta, else unused
  const T* delta;  // Delta::kTyped
  int64_t delta_row_stride;
  const float* slices;  // Delta::kSlices: [num_slices, rows, dim], dense
  int32_t num_slices;
  const T* weight;
  int64_t rows, heads, dim;
  float eps;
};

template <typename T, bool kVec, Delta kDelta, typename Reduce>
__device__ __forceinline__ void norm_item_at(const NormArgs<T>& a, int64_t item, int tid, int nthreads,
                                             Reduce reduce, const Vec16<T>& w_first) {
  const int64_t r = item / a.heads, h = item % a.heads;
  const int64_t head_offset = h * a.dim;
  T* residual = kDelta != Delta::kNone ? a.residual + r * a.x_row_stride + head_offset : nullptr;
  ItemDelta<T> delta{};
  if constexpr (kDelta == Delta::kTyped) delta.typed = a.delta + r * a.delta_row_stride + head_offset;
  if constexpr (kDelta == Delta::kSlices) {
    delta.slices = a.slices + r * a.dim;  // slices have one head (add norms are per row)
    delta.count = a.num_slices;
    delta.slice_stride = a.rows * a.dim;
  }
  norm_item<T, kVec, kDelta>(a.out + r * a.out_row_stride + head_offset, a.x + r * a.x_row_stride + head_offset,
                             residual, delta, a.weight, a.dim, a.eps, tid, nthreads, reduce, w_first);
}

// One warp per item: blockDim = (32, kWarpsPerBlock).
template <typename T, bool kVec, Delta kDelta>
__global__ void norm_warp_kernel(NormArgs<T> a) {
  const Vec16<T> w_first = first_weight_unit<T, kVec>(a.weight, a.dim, threadIdx.x);
  wait_for_producer();
  const int64_t item = static_cast<int64_t>(blockIdx.x) * blockDim.y + threadIdx.y;
  if (item >= a.rows * a.heads) return;  // the whole warp leaves: no block barrier here
  norm_item_at<T, kVec, kDelta>(a, item, threadIdx.x, kWarpSize, WarpSum{}, w_first);
}

// One block per item.
template <typename T, bool kVec, Delta kDelta>
__global__ void norm_block_kernel(NormArgs<T> a) {
  const Vec16<T> w_first = first_weight_unit<T, kVec>(a.weight, a.dim, threadIdx.x);
  wait_for_producer();
  norm_item_at<T, kVec, kDelta>(a, blockIdx.x, threadIdx.x, blockDim.x, BlockSum{}, w_first);
}

template <typename T, Delta kDelta>
void launch_norm(const NormArgs<T>& a, bool vec, cudaStream_t stream, const char* op) {
  const int64_t items = a.rows * a.heads;
  const int64_t units = vec ? a.dim / Vec16<T>::kSize : a.dim;
  if (units <= kMaxUnitsPerWarpItem) {
    const dim3 block(kWarpSize, kWarpsPerBlock);
    const unsigned grid = grid_x(ceil_div(items, kWarpsPerBlock), op);
    if (vec) {
      launch_dependent(norm_warp_kernel<T, true, kDelta>, grid, block, 0, stream, a);
    } else {
      launch_dependent(norm_warp_kernel<T, false, kDelta>, grid, block, 0, stream, a);
    }
    OCTAVO_CUDA_CHECK_LAUNCH();
    return;
  }
  const int threads = static_cast<int>(std::min<int64_t>(kMaxBlockThreads, ceil_div(units, kWarpSize) * kWarpSize));
  const unsigned grid = grid_x(items, op);
  if (vec) {
    launch_dependent(norm_block_kernel<T, true, kDelta>, grid, threads, 0, stream, a);
  } else {
    launch_dependent(norm_block_kernel<T, false, kDelta>, grid, threads, 0, stream, a);
  }
  OCTAVO_CUDA_CHECK_LAUNCH();
}

void check_norm_sizes(int64_t rows, int64_t heads, int64_t dim, const char* op) {
  require_arg(rows >= 0, op, "negative rows");
  require_arg(heads > 0, op, "heads must be positive");
  require_arg(dim > 0, op, "dim must be positive");
  require_arg(heads <= INT64_MAX / dim && rows <= INT64_MAX / (heads * dim), op, "size overflows int64");
}

}  // namespace

void launch_rms_norm(void* out, int64_t out_row_stride, const void* x, int64_t x_row_stride,
                     const void* weight, int64_t rows, int64_t heads, int64_t dim, float eps,
                     KernelDType dtype, cudaStream_t stream) {
  const char* op = "launch_rms_norm";
  check_norm_sizes(rows, heads, dim, op);
  require_row_stride(out_row_stride, heads * dim, rows, op, "out");
  require_row_stride(x_row_stride, heads * dim, rows, op, "x");
  if (rows == 0) return;
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    NormArgs<T> a{static_cast<T*>(out), out_row_stride, static_cast<const T*>(x), x_row_stride,
                  nullptr, nullptr, 0, nullptr, 0, static_cast<const T*>(weight), rows, heads, dim, eps};
    const bool vec = dim % Vec16<T>::kSize == 0 &&
                     allows_vec16(sizeof(T), {out, x, weight}, {out_row_stride, x_row_stride});
    launch_norm<T, Delta::kNone>(a, vec, stream, op);
  });
}

void launch_add_rms_norm(void* residual, int64_t residual_row_stride, const void* delta,
                         int64_t delta_row_stride, const void* weight, void* out, int64_t out_row_stride,
                         int64_t rows, int64_t dim, float eps, KernelDType dtype, cudaStream_t stream) {
  const char* op = "launch_add_rms_norm";
  check_norm_sizes(rows, 1, dim, op);
  require_row_stride(residual_row_stride, dim, rows, op, "residual");
  require_row_stride(delta_row_stride, dim, rows, op, "delta");
  require_row_stride(out_row_stride, dim, rows, op, "out");
  if (rows == 0) return;
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    T* res = static_cast<T*>(residual);
    NormArgs<T> a{static_cast<T*>(out), out_row_stride, res, residual_row_stride, res,
                  static_cast<const T*>(delta), delta_row_stride, nullptr, 0, static_cast<const T*>(weight),
                  rows, 1, dim, eps};
    const bool vec = dim % Vec16<T>::kSize == 0 &&
                     allows_vec16(sizeof(T), {residual, delta, weight, out},
                                  {residual_row_stride, delta_row_stride, out_row_stride});
    launch_norm<T, Delta::kTyped>(a, vec, stream, op);
  });
}

void launch_add_slices_rms_norm(void* residual, int64_t residual_row_stride, const float* slices,
                                int64_t num_slices, const void* weight, void* out, int64_t out_row_stride,
                                int64_t rows, int64_t dim, float eps, KernelDType dtype, cudaStream_t stream) {
  const char* op = "launch_add_slices_rms_norm";
  check_norm_sizes(rows, 1, dim, op);
  require_arg(num_slices >= 1 && num_slices <= INT32_MAX, op, "num_slices must be in [1, 2^31)");
  require_arg(rows <= INT64_MAX / dim / num_slices, op, "slices overflow int64");
  require_row_stride(residual_row_stride, dim, rows, op, "residual");
  require_row_stride(out_row_stride, dim, rows, op, "out");
  if (rows == 0) return;
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    T* res = static_cast<T*>(residual);
    NormArgs<T> a{static_cast<T*>(out), out_row_stride, res, residual_row_stride, res, nullptr, 0, slices,
                  static_cast<int32_t>(num_slices), static_cast<const T*>(weight), rows, 1, dim, eps};
    // The slices' float4 loads need their own 16-byte alignment: dim % 4 follows from
    // dim % Vec16<T>::kSize for every T.
    const bool vec = dim % Vec16<T>::kSize == 0 &&
                     allows_vec16(sizeof(T), {residual, weight, out}, {residual_row_stride, out_row_stride}) &&
                     allows_vec16(sizeof(float), {slices}, {dim});
    launch_norm<T, Delta::kSlices>(a, vec, stream, op);
  });
}

}  // namespace octavo::cuda
