// Row gathers: the token embedding lookup and picking rows of a tensor by index (the last
// token of each sequence before the LM head, say).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "common/kernel_dtype.h"

namespace octavo::cuda {

// out[i, :] = table[ids[i], :]. ids must lie in [0, vocab) (not checked on the device).
// Throws std::invalid_argument for negative sizes or a short row stride.
void launch_embedding(void* out,              // [tokens, hidden], rows out_row_stride apart
                      int64_t out_row_stride, // elements
                      const void* table,      // [vocab, hidden], contiguous
                      const int32_t* ids,     // [tokens]
                      int64_t tokens, int64_t hidden, KernelDType dtype, cudaStream_t stream);

// out[i, :] = x[index[i], :]. index must lie within x's rows (not checked on the device);
// out must not overlap x. Throws std::invalid_argument as launch_embedding does.
void launch_gather_rows(void* out,              // [rows, width], rows out_row_stride apart
                        int64_t out_row_stride, // elements
                        const void* x,          // [n, width], rows x_row_stride apart
                        int64_t x_row_stride,   // elements
                        const int32_t* index,   // [rows]
                        int64_t rows, int64_t width, KernelDType dtype, cudaStream_t stream);

}  // namespace octavo::cuda
