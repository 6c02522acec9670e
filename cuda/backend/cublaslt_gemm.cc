#include "backend/cublaslt_gemm.h"

#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "common/kernel_dtype.h"

namespace octavo::cuda {

namespace {

void check_cublas(cublasStatus_t status, const char* what, const char* file, int line) {
  if (status != CUBLAS_STATUS_SUCCESS) {
    throw std::runtime_error(std::string(file) + ":" + std::to_string(line) + ": " + what + ": cuBLAS status " +
                             std::to_string(static_cast<int>(status)));
  }
}
#define OCTAVO_CUBLAS_CHECK(expr) check_cublas((expr), #expr, __FILE__, __LINE__)

cudaDataType_t cuda_type(DType dtype) {
  switch (dtype) {
    case DType::kFloat32: return CUDA_R_32F;
    case DType::kFloat16: return CUDA_R_16F;
    case DType::kBFloat16: return CUDA_R_16BF;
    default: throw std::invalid_argument("cuBLASLt GEMM: unsupported dtype " + dtype_name(dtype));
  }
}

// Decode steps have at most a few hundred rows; larger GEMMs are compute-bound, where the
// heuristic's pick is already near the ceiling (85-90% measured at m = 512).
constexpr int64_t kTuneMaxRows = 256;
// Candidates asked of the heuristic (OCTAVO_GEMM_TUNE_CANDIDATES, 1..kMaxTuneCandidates,
// overrides: each is one more forward per decode graph at start-up), and timed launches
// per candidate when tuning alone (after one warm-up).
constexpr int kTuneCandidates = 8;
constexpr int kMaxTuneCandidates = 32;
constexpr int kTuneRepeats = 5;

int tune_candidates() {
  static const int count = [] {
    const char* v = std::getenv("OCTAVO_GEMM_TUNE_CANDIDATES");
    const int n = v != nullptr ? std::atoi(v) : 0;
    return n >= 1 && n <= kMaxTuneCandidates ? n : kTuneCandidates;
  }();
  return count;
}

bool tuning_log_enabled() {
  static const bool enabled = [] {
    const char* v = std::getenv("OCTAVO_GEMM_TUNING_LOG");
    return v != nullptr && v[0] != '\0' && v[0] != '0';
  }();
  return enabled;
}

// "algo 21 tile 18 stages 8 split-k 4 reduction 1": what the tuning log shows of a candidate.
std::string describe(const cublasLtMatmulAlgo_t& algo) {
  const auto attribute = [&](cublasLtMatmulAlgoConfigAttributes_t what) {
    int32_t value = -1;
    size_t written = 0;
    cublasLtMatmulAlgoConfigGetAttribute(&algo, what, &value, sizeof(value), &written);
    return std::to_string(value);
  };
  return "algo " + attribute(CUBLASLT_ALGO_CONFIG_ID) + " tile " + attribute(CUBLASLT_ALGO_CONFIG_TILE_ID) +
         " stages " + attribute(CUBLASLT_ALGO_CONFIG_STAGES_ID) + " split-k " +
         attribute(CUBLASLT_ALGO_CONFIG_SPLITK_NUM) + " reduction " +
         attribute(CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME);
}

}  // namespace

CublasLtGemm::CublasLtGemm(cudaStream_t stream, void* workspace, size_t workspace_bytes)
    : stream_(stream), workspace_(workspace), workspace_bytes_(workspace_bytes) {
  OCTAVO_CUBLAS_CHECK(cublasLtCreate(&handle_));
}

CublasLtGemm::~CublasLtGemm() {
  for (cudaEvent_t e : events_) cudaEventDestroy(e);
  for (auto& [key, p] : plans_) {
    cublasLtMatrixLayoutDestroy(p.a);
    cublasLtMatrixLayoutDestroy(p.b);
    cublasLtMatrixLayoutDestroy(p.d);
    cublasLtMatmulDescDestroy(p.op);
  }
  if (handle_ != nullptr) cublasLtDestroy(handle_);
}

// Row-major y = x . w^T is, in cuBLAS's column-major terms, y^T[n, m] = w[n, k] . x^T[k, m]:
// A is w seen as a k x n column-major matrix (transposed), B is x seen as k x m (as is).
CublasLtGemm::Plan& CublasLtGemm::plan(const Key& key) {
  auto found = plans_.find(key);
  if (found != plans_.end()) return found->second;
  const auto [m, n, k, x_stride, w_stride, y_stride, in_i, out_i, has_bias, slices] = key;
  const DType in = static_cast<DType>(in_i), out = static_cast<DType>(out_i);
  Plan p;
  p.name = std::to_string(m) + " x " + std::to_string(n) + " x " + std::to_string(k) + " " + dtype_name(in);
  if (slices > 1) p.name += " in " + std::to_string(slices) + " k slices";
  // fp32 inputs stay in true fp32 (no TF32): that is the mode the tests compare with the CPU.
  OCTAVO_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t trans = CUBLAS_OP_T, no_trans = CUBLAS_OP_N;
  OCTAVO_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &trans, sizeof(trans)));
  OCTAVO_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &no_trans, sizeof(no_trans)));
  if (has_bias) {
    const cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BIAS;
    OCTAVO_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof(epilogue)));
    const cudaDataType_t bias_type = cuda_type(out);
    OCTAVO_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type,
                                                       sizeof(bias_type)));
  }
  // k slices: batch s of A and B starts s * k / slices elements into each row, batch s of D
  // is the dense [m, n] block s.
  const int64_t slice_k = k / slices;
  OCTAVO_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.a, cuda_type(in), slice_k, n, w_stride));
  OCTAVO_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.b, cuda_type(in), slice_k, m, x_stride));
  OCTAVO_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.d, cuda_type(out), n, m, y_stride));
  if (slices > 1) {
    const int32_t batch = static_cast<int32_t>(slices);
    const int64_t d_offset = m * y_stride;
    for (cublasLtMatrixLayout_t layout : {p.a, p.b, p.d}) {
      OCTAVO_CUBLAS_CHECK(
          cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &batch, sizeof(batch)));
      const int64_t offset = layout == p.d ? d_offset : slice_k;
      OCTAVO_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                                                           &offset, sizeof(offset)));
    }
  }

  cublasLtMatmulPreference_t pref = nullptr;
  OCTAVO_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  OCTAVO_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                           &workspace_bytes_, sizeof(workspace_bytes_)));
  cublasLtMatmulHeuristicResult_t results[kMaxTuneCandidates] = {};
  int found_algos = 0;
  const int wanted = m <= kTuneMaxRows ? tune_candidates() : 1;
  const cublasStatus_t status =
      cublasLtMatmulAlgoGetHeuristic(handle_, p.op, p.a, p.b, p.d, p.d, pref, wanted, results, &found_algos);
  cublasLtMatmulPreferenceDestroy(pref);
  OCTAVO_CUBLAS_CHECK(status);
  if (found_algos == 0) {
    throw std::runtime_error("cuBLASLt has no algorithm for a " + std::to_string(m) + "x" + std::to_string(n) + "x" +
                             std::to_string(k) + " GEMM in " + dtype_name(in));
  }
  p.algo = results[0].algo;
  if (tuning_log_enabled()) {
    std::fprintf(stderr, "[octavo gemm tuning] %s: %d candidate(s)\n", p.name.c_str(), found_algos);
  }
  if (found_algos > 1) {
    for (int i = 0; i < found_algos; ++i) {
      if (results[i].state == CUBLAS_STATUS_SUCCESS) p.candidates.push_back(results[i].algo);
    }
  }
  return plans_.emplace(key, p).first->second;
}

void CublasLtGemm::launch(Plan& p, const cublasLtMatmulAlgo_t& algo, const void* x, const void* w, void* y) {
  const float alpha = 1.0f, beta = 0.0f;
  OCTAVO_CUBLAS_CHECK(cublasLtMatmul(handle_, p.op, &alpha, w, p.a, x, p.b, &beta, y, p.d, y, p.d, &algo,
                                     workspace_, workspace_bytes_, stream_));
}

void CublasLtGemm::tune(Plan& p, const void* x, const void* w, void* y) {
  cudaEvent_t start = nullptr, stop = nullptr;
  OCTAVO_CUDA_CHECK(cudaEventCreate(&start));
  OCTAVO_CUDA_CHECK(cudaEventCreate(&stop));
  std::vector<float> ms(p.candidates.size(), 0.0f);
  for (size_t i = 0; i < p.candidates.size(); ++i) {
    launch(p, p.candidates[i], x, w, y);  // warm-up
    OCTAVO_CUDA_CHECK(cudaEventRecord(start, stream_));
    for (int r = 0; r < kTuneRepeats; ++r) launch(p, p.candidates[i], x, w, y);
    OCTAVO_CUDA_CHECK(cudaEventRecord(stop, stream_));
    OCTAVO_CUDA_CHECK(cudaEventSynchronize(stop));
    OCTAVO_CUDA_CHECK(cudaEventElapsedTime(&ms[i], start, stop));
    ms[i] /= kTuneRepeats;
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  pick_fastest(p, ms);
}

void CublasLtGemm::pick_fastest(Plan& p, const std::vector<float>& ms) {
  size_t best = 0;
  for (size_t i = 1; i < ms.size(); ++i) {
    if (ms[i] < ms[best]) best = i;
  }
  if (tuning_log_enabled()) {
    std::fprintf(stderr, "[octavo gemm tuning] %s:", p.name.c_str());
    for (size_t i = 0; i < ms.size(); ++i) {
      std::fprintf(stderr, "%s %.1f us (%s)", i == 0 ? "" : ",", 1000.0f * ms[i], describe(p.candidates[i]).c_str());
    }
    std::fprintf(stderr, " -> candidate %zu\n", best);
  }
  p.algo = p.candidates[best];
  p.candidates.clear();
  p.candidate_ms.clear();
}

cudaEvent_t CublasLtGemm::round_event() {
  if (events_used_ == events_.size()) {
    cudaEvent_t e = nullptr;
    OCTAVO_CUDA_CHECK(cudaEventCreate(&e));
    events_.push_back(e);
  }
  return events_[events_used_++];
}

bool CublasLtGemm::begin_tuning_round() {
  bool pending = false;
  for (auto& [key, p] : plans_) {
    if (p.used && p.next_candidate < p.candidates.size()) pending = true;
    p.used = false;
  }
  in_round_ = pending;
  if (tuning_log_enabled()) std::fprintf(stderr, "[octavo gemm tuning] round: %s\n", pending ? "start" : "none");
  events_used_ = 0;
  round_calls_.clear();
  return pending;
}

void CublasLtGemm::end_tuning_round() {
  if (!in_round_) return;
  in_round_ = false;
  OCTAVO_CUDA_CHECK(cudaStreamSynchronize(stream_));
  std::map<Plan*, float> round_ms;
  for (const RoundCall& c : round_calls_) {
    float ms = 0.0f;
    OCTAVO_CUDA_CHECK(cudaEventElapsedTime(&ms, c.start, c.stop));
    round_ms[c.plan] += ms;
  }
  round_calls_.clear();
  for (auto& [plan, ms] : round_ms) {
    Plan& p = *plan;
    p.candidate_ms.resize(p.candidates.size(), 0.0f);
    p.candidate_ms[p.next_candidate++] = ms;
    if (p.next_candidate == p.candidates.size()) pick_fastest(p, p.candidate_ms);
  }
}

void CublasLtGemm::run(int64_t m, int64_t n, int64_t k, const void* x, int64_t x_stride, const void* w,
                       int64_t w_stride, const void* bias, void* y, int64_t y_stride, DType in_dtype,
                       DType out_dtype) {
  if (m == 0 || n == 0) return;
  Plan& p = plan(Key{m, n, k, x_stride, w_stride, y_stride, static_cast<int>(in_dtype),
                     static_cast<int>(out_dtype), bias != nullptr, 1});
  if (bias != nullptr) {
    OCTAVO_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
  }
  run_plan(p, x, w, y);
}

void CublasLtGemm::run_k_slices(int64_t m, int64_t n, int64_t k, int64_t slices, const void* x, int64_t x_stride,
                                const void* w, int64_t w_stride, float* partials, DType in_dtype) {
  if (slices < 1 || k % (8 * slices) != 0 || dtype_size(in_dtype) != 2) {
    throw std::invalid_argument("cuBLASLt k slices: k = " + std::to_string(k) + " is not a multiple of 8 x " +
                                std::to_string(slices) + " slices of 16-bit inputs");
  }
  if (m == 0 || n == 0) return;
  Plan& p = plan(Key{m, n, k, x_stride, w_stride, n, static_cast<int>(in_dtype), static_cast<int>(DType::kFloat32),
                     false, slices});
  run_plan(p, x, w, partials);
}

void CublasLtGemm::run_plan(Plan& p, const void* x, const void* w, void* y) {
  p.used = true;
  if (in_round_ && p.next_candidate < p.candidates.size()) {
    const RoundCall call{&p, round_event(), round_event()};
    OCTAVO_CUDA_CHECK(cudaEventRecord(call.start, stream_));
    launch(p, p.candidates[p.next_candidate], x, w, y);
    OCTAVO_CUDA_CHECK(cudaEventRecord(call.stop, stream_));
    round_calls_.push_back(call);
    return;
  }
  if (tuning_ && !in_round_ && !p.candidates.empty()) {
    // Timing synchronizes, which a stream being recorded into a graph must not do: such a
    // GEMM keeps the heuristic's pick until an eager call of its shape tunes it.
    cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    OCTAVO_CUDA_CHECK(cudaStreamIsCapturing(stream_, &capture));
    if (capture == cudaStreamCaptureStatusNone) tune(p, x, w, y);
  }
  launch(p, p.algo, x, w, y);
}

}  // namespace octavo::cuda
