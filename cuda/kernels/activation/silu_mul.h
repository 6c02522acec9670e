// SiLU-and-multiply of a fused gate/up projection (Llama, Qwen MLPs).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "common/kernel_dtype.h"

namespace octavo::cuda {

// out[t, i] = silu(g) * u with g = gate_up[t, i], u = gate_up[t, inter + i],
// silu(g) = g / (1 + exp(-g)), in fp32 and rounded once. out may alias the gate half of
// gate_up (same element offsets); other overlaps are undefined. Throws
// std::invalid_argument for negative sizes or short row strides.
void launch_silu_mul(void* out,                  // [tokens, inter], rows out_row_stride apart
                     int64_t out_row_stride,     // elements
                     const void* gate_up,        // [tokens, 2 * inter], rows gate_up_row_stride apart
                     int64_t gate_up_row_stride, // elements
                     int64_t tokens, int64_t inter, KernelDType dtype, cudaStream_t stream);

}  // namespace octavo::cuda
