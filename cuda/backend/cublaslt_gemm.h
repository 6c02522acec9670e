// Dense GEMMs through cuBLASLt: y[m, n] = x[m, k] . w[n, k]^T (+ bias[n]), row-major with row
// strides, bf16/fp16/fp32 inputs, fp32 accumulation, output in the inputs' dtype or fp32.
// Algorithms come from cuBLASLt's heuristic once per shape and are cached; for the skinny
// shapes of decode steps (m <= kTuneMaxRows) the heuristic's first few candidates are timed
// once on the real operands and the fastest kept (its first pick was measured at 55% of the
// copy bandwidth for Llama-3-8B's o_proj at m = 1 on an H100). The engine allows the timing
// only at start-up (set_tuning).
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <tuple>
#include <vector>

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
  // Off: shapes not yet tuned keep the heuristic's first pick and run without timing (no
  // synchronization); on (the default): they are timed at their first eager call.
  void set_tuning(bool enabled) { tuning_ = enabled; }

 private:
  using Key = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int, int, bool>;
  struct Plan {
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
    cublasLtMatmulAlgo_t algo{};
    std::vector<cublasLtMatmulAlgo_t> candidates;  // heuristic order; emptied once tuned
  };
  Plan& plan(const Key& key);
  void launch(Plan& p, const cublasLtMatmulAlgo_t& algo, const void* x, const void* w, void* y);
  // Times each candidate on these operands (y is overwritten) and keeps the fastest.
  void tune(Plan& p, const void* x, const void* w, void* y);

  cudaStream_t stream_;
  cublasLtHandle_t handle_ = nullptr;
  void* workspace_;
  size_t workspace_bytes_;
  std::map<Key, Plan> plans_;
  bool tuning_ = true;
};

}  // namespace octavo::cuda
