// Dispatch on KernelDType to a template instantiated for float, __half or __nv_bfloat16,
// and the float conversions kernels use to accumulate in fp32.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <stdexcept>

#include "common/kernel_dtype.h"

namespace octavo::cuda {

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) { return x; }
template <>
__device__ __forceinline__ __half from_float<__half>(float x) { return __float2half_rn(x); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

// Calls fn(T{}) with T the element type of dtype.
template <typename Fn>
void dispatch_dtype(KernelDType dtype, Fn&& fn) {
  switch (dtype) {
    case KernelDType::kFloat32: fn(float{}); return;
    case KernelDType::kFloat16: fn(__half{}); return;
    case KernelDType::kBFloat16: fn(__nv_bfloat16{}); return;
  }
  throw std::invalid_argument("octavo cuda kernel: unsupported dtype");
}

}  // namespace octavo::cuda
