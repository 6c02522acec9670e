// The CUDA backend: device memory, cuBLASLt GEMMs and octavo's kernels behind the Backend
// interface. One stream; the only host synchronisation in a step is the read-back of the
// sampled tokens (see sample()).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "activation/silu_mul.h"
#include "attention/paged_attention.h"
#include "backend/backend.h"
#include "backend/cublaslt_gemm.h"
#include "backend/sampling_pack.h"
#include "cache/write_kv_cache.h"
#include "common/convert.h"
#include "common/kernel_dtype.h"
#include "embedding/embedding.h"
#include "norm/rms_norm.h"
#include "octavo/errors.h"
#include "rope/rope.h"
#include "sampling/sampling.h"

namespace octavo {

namespace {

using cuda::KernelDType;

KernelDType kernel_dtype(DType dtype) {
  switch (dtype) {
    case DType::kFloat32: return KernelDType::kFloat32;
    case DType::kFloat16: return KernelDType::kFloat16;
    case DType::kBFloat16: return KernelDType::kBFloat16;
    default: throw Error("cuda backend: no kernels for dtype " + dtype_name(dtype));
  }
}

// cuBLASLt's recommended workspace on Hopper is 32 MiB.
constexpr size_t kGemmWorkspaceBytes = 32u << 20;
// Split-K by hand (gemm_add_rms_norm), opt-in: with OCTAVO_SPLIT_K=S (S > 1; default
// kDefaultSplitK = 1, off), steps of at most kSplitKMaxRows rows split a projection with
// k <= kSplitKMaxK (o_proj) into S slices of k, whose fp32 partials (a pool of
// kSplitKPartialsBytes planned here) the following norm sums, in place of cuBLASLt's own
// split-K and its reduce kernel. Measured at batch 1, Llama-3-8B shape, H100
// (docs/perf_notes.md, run 5): o_proj in 4 slices 13.2 us + 0.85 us more in the norm, against
// 13.5 + 2.0 us of reduce; down (k = 14336) lost (49.6 us in 4 slices against 40.3 + 2.0), so
// it keeps cuBLASLt's. Off by default until the o_proj-only setting is measured end to end
// (o_proj and down split: 5.872 ms/token against 5.850 off).
constexpr int64_t kSplitKMaxRows = 16;
constexpr int64_t kSplitKMaxK = 4096;
constexpr int64_t kDefaultSplitK = 1;
constexpr size_t kSplitKPartialsBytes = 8u << 20;

int64_t split_k_slices() {
  static const int64_t slices = [] {
    const char* v = std::getenv("OCTAVO_SPLIT_K");
    return v != nullptr && v[0] != '\0' ? std::max<int64_t>(1, std::atoll(v)) : kDefaultSplitK;
  }();
  return slices;
}

// Sparse logit edits planned per row at start-up (12 bytes each): the distinct ids of a
// few hundred tokens of history with penalties on, or min_tokens' bans; longer penalised
// histories grow the buffers on first use.
constexpr size_t kPlannedEditsPerRow = 512;

// A captured CUDA graph and its executable instance.
class CudaGraph final : public BackendGraph {
 public:
  CudaGraph(cudaGraph_t graph, cudaStream_t stream) : graph_(graph), stream_(stream) {
    OCTAVO_CUDA_CHECK(cudaGraphInstantiate(&exec_, graph_, 0));
  }
  ~CudaGraph() override {
    if (exec_ != nullptr) cudaGraphExecDestroy(exec_);
    cudaGraphDestroy(graph_);
  }
  void replay() override { OCTAVO_CUDA_CHECK(cudaGraphLaunch(exec_, stream_)); }

 private:
  cudaGraph_t graph_;
  cudaStream_t stream_;
  cudaGraphExec_t exec_ = nullptr;
};

class CudaBackend final : public Backend {
 public:
  CudaBackend(DType dtype, double gpu_memory_utilization)
      : dtype_(dtype), utilization_(gpu_memory_utilization) {
    if (dtype != DType::kFloat32 && dtype != DType::kFloat16 && dtype != DType::kBFloat16) {
      throw InvalidArgument("cuda backend: compute dtype must be float32, float16 or bfloat16");
    }
    OCTAVO_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    gemm_workspace_ = allocate(kGemmWorkspaceBytes);
    gemm_ = std::make_unique<cuda::CublasLtGemm>(stream_, gemm_workspace_.data(), kGemmWorkspaceBytes);
    // Fixed size (kSamplingSplitMaxRows rows' partials, ~10 KB), so planned here once.
    sampling_split_workspace_ = allocate(cuda::sampling_split_workspace_bytes());
    if (dtype != DType::kFloat32 && split_k_slices() > 1) split_k_partials_ = allocate(kSplitKPartialsBytes);
  }

  ~CudaBackend() override {
    gemm_.reset();
    cudaStreamSynchronize(stream_);
    cudaStreamDestroy(stream_);
  }

  std::string name() const override { return "cuda"; }
  DType compute_dtype() const override { return dtype_; }
  void set_gemm_tuning(bool enabled) override { gemm_->set_tuning(enabled); }
  bool begin_gemm_tuning_round() override { return gemm_->begin_tuning_round(); }
  void end_gemm_tuning_round() override { gemm_->end_tuning_round(); }

  Buffer allocate(size_t bytes, bool zero = false) override {
    void* data = nullptr;
    const cudaError_t status = cudaMalloc(&data, std::max<size_t>(bytes, 1));
    if (status != cudaSuccess) {
      cudaGetLastError();
      size_t free_bytes = 0, total = 0;
      cudaMemGetInfo(&free_bytes, &total);
      throw InvalidArgument("cuda backend: cannot allocate " + std::to_string(bytes) + " bytes of device memory (" +
                            std::to_string(free_bytes) + " free of " + std::to_string(total) + ")");
    }
    if (zero) OCTAVO_CUDA_CHECK(cudaMemsetAsync(data, 0, bytes, stream_));
    return Buffer(data, bytes, [](void* p) { cudaFree(p); });
  }

  Buffer allocate_host(size_t bytes) override {
    void* data = nullptr;
    OCTAVO_CUDA_CHECK(cudaMallocHost(&data, std::max<size_t>(bytes, 1)));
    return Buffer(data, bytes, [](void* p) { cudaFreeHost(p); });
  }

  Buffer upload(const HostTensor& host) override { return upload_as(host, dtype_); }
  Buffer upload_float32(const HostTensor& host) override { return upload_as(host, DType::kFloat32); }

  void copy_to_device(void* dst, const void* src, size_t bytes) override {
    if (bytes > 0) OCTAVO_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_));
  }
  void copy_to_host(void* dst, const void* src, size_t bytes) override {
    if (bytes == 0) return;
    OCTAVO_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_));
    OCTAVO_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
  void synchronize() override { OCTAVO_CUDA_CHECK(cudaStreamSynchronize(stream_)); }
  void* native_stream() override { return stream_; }

  // The memory plan: weights and every activation buffer are allocated before the KV cache,
  // so what is in use now is the engine's peak apart from the cache; the cache gets the rest
  // of gpu_memory_utilization x device memory.
  int64_t default_kv_cache_bytes(int64_t bytes_needed_for_all_seqs) const override {
    size_t free_bytes = 0, total = 0;
    OCTAVO_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total));
    const double used = static_cast<double>(total - free_bytes);
    const double budget = utilization_ * static_cast<double>(total) - used;
    (void)bytes_needed_for_all_seqs;  // vLLM gives the cache the whole budget, whatever the batch needs
    return budget > 0 ? static_cast<int64_t>(budget) : 0;
  }

  void gemm(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) override {
    if (x.dtype != w.dtype) throw Error("cuda gemm: x and w dtypes differ");
    gemm_->run(x.dim(0), w.dim(0), x.dim(1), x.data, x.row_stride, w.data, w.row_stride,
               bias != nullptr ? bias->data : nullptr, y.data, y.row_stride, x.dtype, y.dtype);
  }

  void gemm_add_rms_norm(const Tensor& x, const Tensor& w, Tensor& scratch, Tensor& residual, const Tensor& norm_w,
                         float eps, Tensor& out) override {
    const int64_t m = x.dim(0), n = w.dim(0), k = x.dim(1), slices = split_k_slices();
    const bool split = split_k_partials_.data() != nullptr && x.dtype == w.dtype && x.dtype == dtype_ &&
                       m <= kSplitKMaxRows && k <= kSplitKMaxK && k % (8 * slices) == 0 &&
                       residual.row_size() == n &&
                       static_cast<size_t>(slices * m * n) * sizeof(float) <= split_k_partials_.bytes();
    if (!split) {
      Backend::gemm_add_rms_norm(x, w, scratch, residual, norm_w, eps, out);
      return;
    }
    float* partials = static_cast<float*>(split_k_partials_.data());
    gemm_->run_k_slices(m, n, k, slices, x.data, x.row_stride, w.data, w.row_stride, partials, x.dtype);
    cuda::launch_add_slices_rms_norm(residual.data, residual.row_stride, partials, slices, norm_w.data, out.data,
                                     out.row_stride, m, n, eps, kernel_dtype(residual.dtype), stream_);
  }

  void embedding(const Tensor& table, const int32_t* ids, Tensor& out) override {
    cuda::launch_embedding(out.data, out.row_stride, table.data, ids, out.rows(), table.row_size(),
                           kernel_dtype(out.dtype), stream_);
  }

  void rms_norm(const Tensor& x, const Tensor& w, float eps, Tensor& out) override {
    const int64_t dim = x.dim(-1);
    cuda::launch_rms_norm(out.data, out.row_stride, x.data, x.row_stride, w.data, x.rows(), x.row_size() / dim, dim,
                          eps, kernel_dtype(x.dtype), stream_);
  }

  void add_rms_norm(Tensor& residual, const Tensor& delta, const Tensor& w, float eps, Tensor& out) override {
    cuda::launch_add_rms_norm(residual.data, residual.row_stride, delta.data, delta.row_stride, w.data, out.data,
                              out.row_stride, residual.rows(), residual.row_size(), eps,
                              kernel_dtype(residual.dtype), stream_);
  }

  void rope(Tensor& q, Tensor& k, const int32_t* positions, const RopeTable& table) override {
    cuda::launch_rope(q.data, q.row_stride, k.data, k.row_stride, positions, table.cos_sin.ptr<float>(),
                      table.cos_sin.row_stride, table.cos_sin.dim(1), q.rows(), q.dim(1), k.dim(1), q.dim(2),
                      kernel_dtype(q.dtype), stream_);
  }

  void write_kv_cache(const Tensor& k, const Tensor& v, const int64_t* slot_mapping, Tensor& k_cache,
                      Tensor& v_cache) override {
    cuda::launch_write_kv_cache(k.data, k.row_stride, v.data, v.row_stride, slot_mapping, k_cache.data, v_cache.data,
                                k.rows(), k.dim(1), k.dim(2), kernel_dtype(k.dtype), stream_);
  }

  void rope_and_write_kv_cache(Tensor& q, Tensor& k, const Tensor& v, const int32_t* positions,
                               const RopeTable& table, const int64_t* slot_mapping, Tensor& k_cache,
                               Tensor& v_cache) override {
    const cuda::RopeCacheWrite cache{v.data, v.row_stride, slot_mapping, k_cache.data, v_cache.data};
    cuda::launch_rope(q.data, q.row_stride, k.data, k.row_stride, positions, table.cos_sin.ptr<float>(),
                      table.cos_sin.row_stride, table.cos_sin.dim(1), q.rows(), q.dim(1), k.dim(1), q.dim(2),
                      kernel_dtype(q.dtype), stream_, &cache);
  }

  // One device-to-device copy per cache per pair, on the stream, so they are ordered before
  // the step's forward. Copy-on-write is rare (a fork's partial block), so no kernel batches them.
  void copy_blocks(const std::vector<Tensor>& caches,
                   const std::vector<std::pair<int32_t, int32_t>>& copies) override {
    for (const Tensor& cache : caches) {
      const size_t block_bytes = static_cast<size_t>(cache.row_size()) * dtype_size(cache.dtype);
      char* base = static_cast<char*>(cache.data);
      for (const auto& [src, dst] : copies) {
        if (src < 0 || src >= cache.rows() || dst < 0 || dst >= cache.rows()) {
          throw Error("copy_blocks: block copy " + std::to_string(src) + " -> " + std::to_string(dst) +
                      " outside the cache's " + std::to_string(cache.rows()) + " blocks");
        }
        if (src == dst) continue;
        OCTAVO_CUDA_CHECK(cudaMemcpyAsync(base + static_cast<size_t>(dst) * block_bytes,
                                          base + static_cast<size_t>(src) * block_bytes, block_bytes,
                                          cudaMemcpyDeviceToDevice, stream_));
      }
    }
  }

  void paged_attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache, const AttentionMetadata& meta,
                       float scale, int32_t sliding_window, Tensor& out) override {
    const int64_t q_heads = q.dim(1), head_dim = q.dim(2), kv_heads = k_cache.dim(2), block_size = k_cache.dim(1);
    const size_t need =
        cuda::paged_attention_workspace_bytes(meta.num_seqs, q_heads, kv_heads, head_dim, meta.max_seq_len);
    // Planned at start-up (plan_attention); only callers that skipped the plan grow it here.
    if (need > attention_workspace_.bytes()) attention_workspace_ = allocate(need, /*zero=*/true);  // counters start at zero
    cuda::launch_paged_attention(out.data, out.row_stride, q.data, q.row_stride, k_cache.data, v_cache.data,
                                 meta.query_start_loc, meta.seq_lens, meta.block_tables, meta.num_seqs,
                                 meta.max_blocks_per_seq, block_size, q.rows(), meta.max_query_len,
                                 meta.max_seq_len, q_heads, kv_heads, head_dim, scale, sliding_window,
                                 kernel_dtype(q.dtype), attention_workspace_.data(), attention_workspace_.bytes(),
                                 stream_);
  }

  void plan_attention(int64_t max_num_seqs, int64_t max_seq_len, int64_t q_heads, int64_t kv_heads,
                      int64_t head_dim) override {
    const size_t need = cuda::paged_attention_workspace_bytes(max_num_seqs, q_heads, kv_heads, head_dim, max_seq_len);
    if (need > attention_workspace_.bytes()) attention_workspace_ = allocate(need, /*zero=*/true);  // counters start at zero
  }

  void silu_mul(const Tensor& gate_up, Tensor& out) override {
    cuda::launch_silu_mul(out.data, out.row_stride, gate_up.data, gate_up.row_stride, out.rows(), out.dim(1),
                          kernel_dtype(out.dtype), stream_);
  }

  void gather_rows(const Tensor& x, const int32_t* index, Tensor& out) override {
    cuda::launch_gather_rows(out.data, out.row_stride, x.data, x.row_stride, index, out.rows(), out.row_size(),
                             kernel_dtype(out.dtype), stream_);
  }

  std::unique_ptr<BackendGraph> capture(const std::function<void()>& work) override {
    // Thread-local mode: another thread's unrelated CUDA calls (a profiler's, say) neither
    // join nor invalidate the capture.
    OCTAVO_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
    try {
      work();
    } catch (...) {
      cudaGraph_t broken = nullptr;
      cudaStreamEndCapture(stream_, &broken);
      if (broken != nullptr) cudaGraphDestroy(broken);
      cudaGetLastError();
      throw;
    }
    cudaGraph_t graph = nullptr;
    OCTAVO_CUDA_CHECK(cudaStreamEndCapture(stream_, &graph));
    return std::make_unique<CudaGraph>(graph, stream_);
  }

  bool fill_uniform(void* dst, int64_t n, uint64_t key, float low, float high) override {
    cuda::launch_fill_uniform(dst, kernel_dtype(dtype_), n, key, low, high, stream_);
    return true;
  }

  void memory_info(int64_t& used_bytes, int64_t& total_bytes) const override {
    size_t free_bytes = 0, total = 0;
    OCTAVO_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total));
    used_bytes = static_cast<int64_t>(total - free_bytes);
    total_bytes = static_cast<int64_t>(total);
  }

  // Sampling on the GPU (cuda/kernels/sampling): the rows' settings and sparse lists go up
  // in one copy from pinned memory, one kernel samples every row, the packed results come
  // back in one copy, then one stream synchronisation. The logits are left as they came.
  std::vector<SampleResult> sample(Tensor& logits, const std::vector<SamplingRow>& rows) override {
    const int32_t vocab = checked_sampling_vocab(logits, rows.size(), "sample");
    if (rows.empty()) return {};
    pack_sampling_rows(rows, vocab, sampling_pack_);  // throws on bad token ids, before any device work
    std::vector<int32_t> num_logprobs(rows.size());
    for (size_t r = 0; r < rows.size(); ++r) num_logprobs[r] = rows[r].num_logprobs;
    return run_sampling(logits, vocab, num_logprobs);
  }

  // Prompt logprobs: the same kernel with each row's token given (nothing sampled or edited).
  std::vector<SampleResult> compute_logprobs(const Tensor& logits, const std::vector<LogprobsRow>& rows) override {
    const int32_t vocab = checked_sampling_vocab(logits, rows.size(), "compute_logprobs");
    if (rows.empty()) return {};
    pack_logprobs_rows(rows, vocab, sampling_pack_);
    std::vector<int32_t> num_logprobs(rows.size());
    for (size_t r = 0; r < rows.size(); ++r) num_logprobs[r] = rows[r].num_logprobs;
    return run_sampling(logits, vocab, num_logprobs);
  }

  // Sizes sample()'s buffers for the largest batch at start-up, so steady-state steps never
  // allocate; only token histories longer than planned grow the edit lists later.
  void plan_sampling(int64_t max_rows, int32_t max_logprobs) override {
    const size_t rows = static_cast<size_t>(std::max<int64_t>(max_rows, 1));
    reserve_sampling(sampling_layout(rows, rows * kPlannedEditsPerRow, 0, std::max(max_logprobs, 0)));
  }

  // Prompt logprobs, like sample(): the logits come back to the host for the CPU code.
 private:
  Buffer upload_as(const HostTensor& host, DType dtype) {
    const size_t n = static_cast<size_t>(host.numel());
    Buffer staging = allocate(n * sizeof(float));
    // On the backend's stream, then waited for: a cudaMemcpy from pageable memory may return
    // before its DMA lands, and the legacy default stream it runs on does not order the
    // non-blocking stream_'s convert kernel (or a later read) after it. That race left stale
    // tails in uploaded buffers now and then (the GPU op tests caught it on an H100).
    OCTAVO_CUDA_CHECK(cudaMemcpyAsync(staging.data(), host.values.data(), n * sizeof(float), cudaMemcpyHostToDevice,
                                      stream_));
    if (dtype == DType::kFloat32) {
      synchronize();
      return staging;
    }
    Buffer out = allocate(n * dtype_size(dtype));
    cuda::launch_convert(out.data(), kernel_dtype(dtype), staging.data(), KernelDType::kFloat32,
                         static_cast<int64_t>(n), stream_);
    synchronize();
    return out;
  }

  static int32_t checked_sampling_vocab(const Tensor& logits, size_t num_rows, const char* op) {
    if (logits.dtype != DType::kFloat32 || logits.shape.size() != 2) {
      throw InvalidArgument(std::string("cuda backend ") + op + ": logits must be a 2-D float32 tensor, got " +
                            dtype_name(logits.dtype) + " " + shape_string(logits.shape));
    }
    if (static_cast<int64_t>(num_rows) != logits.rows()) {
      throw InvalidArgument(std::string("cuda backend ") + op + ": " + std::to_string(num_rows) +
                            " row descriptions for " + std::to_string(logits.rows()) + " logits rows");
    }
    if (logits.dim(1) <= 0 || logits.dim(1) > INT32_MAX) {
      throw InvalidArgument(std::string("cuda backend ") + op + ": vocab must be a positive int32, got " +
                            std::to_string(logits.dim(1)));
    }
    return static_cast<int32_t>(logits.dim(1));
  }

  // One upload of sampling_pack_, one launch, one read-back, one synchronisation.
  std::vector<SampleResult> run_sampling(const Tensor& logits, int32_t vocab, const std::vector<int32_t>& num_logprobs) {
    const SamplingLayout layout = sampling_layout(sampling_pack_);
    reserve_sampling(layout);
    write_sampling_upload(sampling_pack_, layout, sampling_staging_.data());
    char* inputs = static_cast<char*>(sampling_inputs_.data());
    char* results = static_cast<char*>(sampling_results_.data());
    OCTAVO_CUDA_CHECK(cudaMemcpyAsync(inputs, sampling_staging_.data(), layout.upload_bytes, cudaMemcpyHostToDevice,
                                      stream_));
    // Rows with a given token (compute_logprobs) only read the logits.
    cuda::launch_sample(static_cast<float*>(logits.data), logits.row_stride,
                        static_cast<int32_t>(sampling_pack_.params.size()), vocab,
                        reinterpret_cast<const cuda::SamplingRowParams*>(inputs + layout.params),
                        reinterpret_cast<const cuda::SamplingEdit*>(inputs + layout.edits),
                        reinterpret_cast<const int32_t*>(inputs + layout.allowed), !sampling_pack_.allowed.empty(),
                        reinterpret_cast<float*>(inputs + layout.edit_scratch),
                        reinterpret_cast<cuda::SampledToken*>(results + layout.tokens),
                        reinterpret_cast<int32_t*>(results + layout.top_tokens),
                        reinterpret_cast<float*>(results + layout.top_logprobs), sampling_pack_.top_stride,
                        sampling_split_workspace_.data(), stream_);
    OCTAVO_CUDA_CHECK(cudaMemcpyAsync(sampling_results_host_.data(), results, layout.result_bytes,
                                      cudaMemcpyDeviceToHost, stream_));
    OCTAVO_CUDA_CHECK(cudaStreamSynchronize(stream_));
    return unpack_sampling_results(num_logprobs, vocab, layout, sampling_pack_.top_stride,
                                   sampling_results_host_.data());
  }

  // Grows sample()'s buffers to hold layout, by at least half again each time so that
  // histories growing a token per step reallocate rarely (a pinned allocation is slow).
  void reserve_sampling(const SamplingLayout& layout) {
    auto grow = [](size_t have, size_t need) { return need <= have ? have : std::max(need, have + have / 2); };
    if (layout.upload_bytes > sampling_staging_.bytes()) {
      sampling_staging_ = allocate_host(grow(sampling_staging_.bytes(), layout.upload_bytes));
    }
    if (layout.device_input_bytes > sampling_inputs_.bytes()) {
      sampling_inputs_ = allocate(grow(sampling_inputs_.bytes(), layout.device_input_bytes));
    }
    if (layout.result_bytes > sampling_results_.bytes()) {
      const size_t bytes = grow(sampling_results_.bytes(), layout.result_bytes);
      sampling_results_ = allocate(bytes);
      sampling_results_host_ = allocate_host(bytes);
    }
  }

  DType dtype_;
  double utilization_;
  cudaStream_t stream_ = nullptr;
  Buffer gemm_workspace_;
  std::unique_ptr<cuda::CublasLtGemm> gemm_;
  Buffer attention_workspace_;
  // sample(): pinned staging of the rows' params and edits, their device copy (plus the
  // kernel's edit scratch), and the packed results on the device and in pinned memory; the
  // split path's workspace (small batches).
  SamplingPack sampling_pack_;
  Buffer sampling_staging_, sampling_inputs_, sampling_results_, sampling_results_host_;
  Buffer sampling_split_workspace_;
  Buffer split_k_partials_;  // gemm_add_rms_norm's fp32 k-slice partials (16-bit dtypes)
};

}  // namespace

std::unique_ptr<Backend> make_cuda_backend(DType compute_dtype, double gpu_memory_utilization) {
  return std::make_unique<CudaBackend>(compute_dtype, gpu_memory_utilization);
}

bool cuda_device_available() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return count > 0;
}

}  // namespace octavo
