// Dense GEMMs through cuBLASLt: y[m, n] = x[m, k] . w[n, k]^T (+ bias[n]), row-major with row
// strides, bf16/fp16/fp32 inputs, fp32 accumulation, output in the inputs' dtype or fp32.
// Algorithms come from cuBLASLt's heuristic once per shape and are cached; for the skinny
// shapes of decode steps (m <= kTuneMaxRows) the heuristic's first few candidates are timed
// once on the real operands and the fastest kept (its first pick was measured at 55% of the
// copy bandwidth for Llama-3-8B's o_proj at m = 1 on an H100).
//
// Two ways to time them:
// - Tuning rounds (the engine, at start-up): between begin_tuning_round() and
//   end_tuning_round() the caller runs a real forward; every shape that forward meets runs
//   its next candidate, timed by events around each call and summed over the forward's
//   calls. A shape is so timed where it really runs: its weights cold in L2 behind the other
//   layers' (o_proj's 32 MB would sit in the 50 MB L2 if timed alone), at a real step's
//   clocks. After its last candidate a shape keeps the fastest.
// - In isolation, at a shape's first eager call while set_tuning(true) (the default, for the
//   kernel benchmarks and tests): a few back-to-back launches on the call's operands.
// The engine turns isolated timing off, so no serving step synchronizes.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <string>
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
  // Split-K by hand: partials[s, m, n] = x[:, s*k/slices : (s+1)*k/slices] . (the same
  // columns of w)^T for s in [0, slices), in fp32, as one strided-batched GEMM; the caller
  // sums the slices (the CUDA backend: inside the norm that reads them). k must be a
  // multiple of 8 * slices (16-byte aligned slices of 16-bit inputs); partials are dense.
  void run_k_slices(int64_t m, int64_t n, int64_t k, int64_t slices, const void* x, int64_t x_stride,
                    const void* w, int64_t w_stride, float* partials, DType in_dtype);
  // Off: shapes not yet tuned keep the heuristic's first pick and run without timing (no
  // synchronization); on (the default): they are timed at their first eager call.
  void set_tuning(bool enabled) { tuning_ = enabled; }
  // Starts a tuning round when a shape run since the previous round (or since the last
  // begin) still has candidates to time; false: nothing left, no round started.
  bool begin_tuning_round();
  // Waits for the round's launches and adds their times to each shape's current candidate.
  void end_tuning_round();

 private:
  // m, n, k, x_stride, w_stride, y_stride, in dtype, out dtype, bias, k slices (1: plain).
  using Key = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int, int, bool, int64_t>;
  struct Plan {
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
    cublasLtMatmulAlgo_t algo{};
    std::vector<cublasLtMatmulAlgo_t> candidates;  // heuristic order; emptied once tuned
    std::vector<float> candidate_ms;               // tuning rounds: each candidate's time
    size_t next_candidate = 0;                     // tuning rounds: the next one to time
    bool used = false;                             // run since the last begin_tuning_round
    std::string name;                              // "m x n x k", for the tuning log
  };
  struct RoundCall {
    Plan* plan;
    cudaEvent_t start, stop;
  };
  Plan& plan(const Key& key);
  // Runs p on these operands: a tuning round's next candidate, a first eager call's tuning,
  // or the chosen algorithm.
  void run_plan(Plan& p, const void* x, const void* w, void* y);
  void launch(Plan& p, const cublasLtMatmulAlgo_t& algo, const void* x, const void* w, void* y);
  // Times each candidate on these operands (y is overwritten) and keeps the fastest.
  void tune(Plan& p, const void* x, const void* w, void* y);
  // Keeps the candidate with the smallest time and forgets the others (logs them with
  // OCTAVO_GEMM_TUNING_LOG=1).
  void pick_fastest(Plan& p, const std::vector<float>& ms);
  cudaEvent_t round_event();

  cudaStream_t stream_;
  cublasLtHandle_t handle_ = nullptr;
  void* workspace_;
  size_t workspace_bytes_;
  std::map<Key, Plan> plans_;
  bool tuning_ = true;
  bool in_round_ = false;
  std::vector<RoundCall> round_calls_;
  std::vector<cudaEvent_t> events_;  // the rounds' events, reused
  size_t events_used_ = 0;
};

}  // namespace octavo::cuda
