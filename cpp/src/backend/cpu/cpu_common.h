// Argument checks and threading thresholds shared by the CPU backend's kernel files.
#pragma once

#include <cstdint>
#include <string>

#include "core/tensor.h"
#include "octavo/errors.h"

namespace octavo::cpu {

// Opening and joining an OpenMP parallel region costs microseconds; an op touching fewer
// floats than this (a few microseconds of copying or arithmetic) runs on the calling thread.
// A rough threshold, not a tuned one.
constexpr int64_t kMinParallelFloats = 1 << 15;
// m * n * k below which a GEMM stays on one thread (a 64x64x64 product: ~0.5 MFLOP, a few
// tens of microseconds, about what waking a second thread costs).
constexpr int64_t kMinParallelGemmFlops = 64 * 64 * 64;

inline void require_float32(const Tensor& t, const char* op, const char* name) {
  if (t.dtype != DType::kFloat32) {
    throw Error(std::string("cpu backend ") + op + ": " + name + " is " + dtype_name(t.dtype) +
                ", the CPU backend computes in float32 only");
  }
  if (t.data == nullptr && t.numel() > 0) {
    throw InvalidArgument(std::string("cpu backend ") + op + ": " + name + " has no data");
  }
}

inline void require_rank(const Tensor& t, size_t rank, const char* op, const char* name) {
  if (t.shape.size() != rank) {
    throw InvalidArgument(std::string("cpu backend ") + op + ": " + name + " must have " +
                          std::to_string(rank) + " dims, has " + std::to_string(t.shape.size()));
  }
}

inline void require(bool ok, const char* op, const std::string& what) {
  if (!ok) throw InvalidArgument(std::string("cpu backend ") + op + ": " + what);
}

}  // namespace octavo::cpu
