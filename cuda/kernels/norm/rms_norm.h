// RMS norm launches (HF LlamaRMSNorm / Qwen3 q-k norm): out = x / sqrt(mean(x^2) + eps) * w,
// the mean, the scale and the product with w all in fp32, rounded to the element type once
// at the end. HF rounds twice for half types (weight * x_normed.to(dtype)); rounding once
// is at least as accurate and equals HF in fp32.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "common/kernel_dtype.h"

namespace octavo::cuda {

// One norm per (row, head) over dim elements. out may alias x (the same element offsets);
// any other overlap is undefined. Throws std::invalid_argument for dim <= 0, heads <= 0,
// negative rows or a row stride shorter than heads * dim (with more than one row).
void launch_rms_norm(void* out,                // [rows, heads, dim], rows out_row_stride apart
                     int64_t out_row_stride,   // elements
                     const void* x,            // [rows, heads, dim], rows x_row_stride apart
                     int64_t x_row_stride,     // elements
                     const void* weight,       // [dim]
                     int64_t rows, int64_t heads, int64_t dim, float eps, KernelDType dtype,
                     cudaStream_t stream);

// residual += delta, stored rounded to the element type; then out = rms_norm(residual) * w
// from that rounded residual (what the next layer reads back). out may alias residual or
// delta (same element offsets). Throws std::invalid_argument as launch_rms_norm does.
void launch_add_rms_norm(void* residual,               // [rows, dim], updated in place
                         int64_t residual_row_stride,  // elements
                         const void* delta,            // [rows, dim]
                         int64_t delta_row_stride,     // elements
                         const void* weight,           // [dim]
                         void* out,                    // [rows, dim]
                         int64_t out_row_stride,       // elements
                         int64_t rows, int64_t dim, float eps, KernelDType dtype,
                         cudaStream_t stream);

// residual += sum of the slices of a split-K projection, then out = rms_norm(residual) * w:
// the slices are summed in fp32 and rounded to the element type (what the unsplit GEMM
// would have stored), then added as launch_add_rms_norm adds delta. out may alias residual.
// Throws std::invalid_argument as launch_rms_norm does, and for num_slices < 1.
void launch_add_slices_rms_norm(void* residual,               // [rows, dim], updated in place
                                int64_t residual_row_stride,  // elements
                                const float* slices,          // [num_slices, rows, dim], dense
                                int64_t num_slices,
                                const void* weight,           // [dim]
                                void* out,                    // [rows, dim]
                                int64_t out_row_stride,       // elements
                                int64_t rows, int64_t dim, float eps, KernelDType dtype,
                                cudaStream_t stream);

}  // namespace octavo::cuda
