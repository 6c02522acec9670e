// Dense GEMMs through cuBLASLt: y[m, n] = x[m, k] . w[n, k]^T (+ bias[n]), row-major with row
// strides, bf16/fp16/fp32 inputs, fp32 accumulation, output in the inputs' dtype or fp32.
// Algorithms come from cuBLASLt's heuristic once per shape and are cached.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <tuple>

#include "core/dtype.h"

namespace octavo::cuda {

class CublasLtGemm {
 public:
  CublasLtGemm(cudaStream_t stream, void* workspace, size_t workspace_bytes);
  ~CublasLtGemm();
  CublasLtGemm(const CublasLtGemm&) = delete;
  CublasLtGemm& operator=(const CublasLtGemm&) = delete;

  void run(int64_t m, int64_t n, int64_t k, const void* x, int64_t x_stride, const void* w, int64_t w_stride,
           const void* bias, void* y, int64_t y_stride, DType in_dtype, DType out_dtype);

 private:
  using Key = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int, int, bool>;
  struct Plan {
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
    cublasLtMatmulAlgo_t algo{};
  };
  Plan& plan(const Key& key);

  cudaStream_t stream_;
  cublasLtHandle_t handle_ = nullptr;
  void* workspace_;
  size_t workspace_bytes_;
  std::map<Key, Plan> plans_;
};

}  // namespace octavo::cuda
