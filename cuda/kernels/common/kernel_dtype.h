// Element types a kernel can be instantiated for, and the CUDA checks every launch uses.
// Kernels know nothing of the engine: they take raw pointers, strides, sizes and a stream.
#pragma once

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace octavo::cuda {

enum class KernelDType { kFloat32, kFloat16, kBFloat16 };

// Throws std::runtime_error with file, line and CUDA's error string.
inline void check_cuda(cudaError_t status, const char* what, const char* file, int line) {
  if (status != cudaSuccess) {
    throw std::runtime_error(std::string(file) + ":" + std::to_string(line) + ": " + what + ": " +
                             cudaGetErrorString(status));
  }
}

}  // namespace octavo::cuda

#define OCTAVO_CUDA_CHECK(expr) ::octavo::cuda::check_cuda((expr), #expr, __FILE__, __LINE__)
// After a launch: reports launch-configuration errors at once (asynchronous faults surface
// at the next synchronising call).
#define OCTAVO_CUDA_CHECK_LAUNCH() ::octavo::cuda::check_cuda(cudaGetLastError(), "kernel launch", __FILE__, __LINE__)
