// Element-type conversion and device-side random fill: what the backend needs to upload
// weights in one precision and store them in another, and to make dummy weights on the
// device without a host round trip.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "common/kernel_dtype.h"

namespace octavo::cuda {

// dst[i] = src[i] converted (round to nearest even) for i < n; a plain copy when the dtypes
// match. dst and src must not overlap unless they are the same pointer and dtype. Throws
// std::invalid_argument for negative n.
void launch_convert(void* dst,              // [n] of dst_dtype
                    KernelDType dst_dtype,
                    const void* src,        // [n] of src_dtype
                    KernelDType src_dtype, int64_t n, cudaStream_t stream);

// dst[i] = low + (high - low) * u_i rounded to dtype, u_i = (splitmix64 output >> 40) * 2^-24
// in [0, 1) for the stream keyed by seed, element i its (i + 1)-th output: the same floats
// as the CPU's fill_uniform (model/dummy_weights.h) for the same key, before rounding to
// dtype (computed as one FMA, as the default -march=native CPU build does).
// Throws std::invalid_argument for negative n.
void launch_fill_uniform(void* dst,         // [n] of dtype
                         KernelDType dtype, int64_t n, uint64_t seed, float low, float high,
                         cudaStream_t stream);

}  // namespace octavo::cuda
