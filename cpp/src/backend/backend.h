// The Backend interface: buffers, copies, GEMM and the fused ops the decoder forward needs.
// The model is written once against it (model/decoder.cc); the CPU backend
// (backend/cpu/) is the reference and CI path, the CUDA backend lives in cuda/backend/.
// Index arrays (token ids, positions, slots, block tables) are device pointers of the
// backend; on the CPU they are plain host pointers.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace octavo {

// Everything paged attention needs to find each row's queries and its cached keys/values.
// Rows are sequences; query tokens of all rows are packed along dim 0 of q.
struct AttentionMetadata {
  int32_t num_seqs = 0;
  const int32_t* query_start_loc = nullptr;  // [num_seqs + 1] offsets into the packed queries
  const int32_t* seq_lens = nullptr;         // [num_seqs] context length after this step's tokens
  const int32_t* block_tables = nullptr;     // [num_seqs, max_blocks_per_seq] physical block ids
  int32_t max_blocks_per_seq = 0;
  int32_t max_query_len = 0;
  int32_t max_seq_len = 0;
};

// Rope parameters, already resolved from the HF config (llama3 scaling applied by the caller).
struct RopeTable {
  Tensor cos_sin;  // float32 [max_position, head_dim]: cos for the first head_dim/2 columns, sin after
};

// One row of a sampling batch: settings already resolved by the Sampler (sampling/).
// Every per-row adjustment is a short host list (token ids, or ids with values), never a
// vocab-sized array, so a device backend can upload a batch's lists in one small copy.
// The order the backend applies them in is fixed: see backend/cpu/cpu_sampling.h.
struct SamplingRow {
  float temperature = 1.0f;  // < 1e-5: greedy
  int32_t top_k = 0;         // <= 0: off
  float top_p = 1.0f;
  float min_p = 0.0f;
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  float repetition_penalty = 1.0f;
  uint64_t seed = 0;           // with draw_index: the counter-based random stream
  uint64_t draw_index = 0;     // index of the output token being drawn
  int32_t num_logprobs = -1;   // -1: none; N: top N of the raw distribution (plus sampled)
  // Host-side token history for penalties: prompt_tokens feed only the repetition penalty.
  const int32_t* prompt_tokens = nullptr;
  int32_t num_prompt_tokens = 0;
  const int32_t* output_tokens = nullptr;
  int32_t num_output_tokens = 0;
  // allowed_token_ids: when num_allowed_tokens > 0, every token not listed gets -inf.
  // Host memory owned by the request; duplicates are harmless.
  const int32_t* allowed_tokens = nullptr;
  int32_t num_allowed_tokens = 0;
  // logit_bias as two parallel arrays: logit_bias_values[i] is added to the logit of
  // logit_bias_tokens[i]. Host memory owned by the request; token ids are distinct.
  const int32_t* logit_bias_tokens = nullptr;
  const float* logit_bias_values = nullptr;
  int32_t num_logit_bias = 0;
  // Tokens whose logits are set to -inf: EOS and stop ids while min_tokens is not reached,
  // and the last token of each bad word whose other tokens end the output so far.
  std::vector<int32_t> banned_tokens;
};

struct SampleResult {
  int32_t token = -1;
  float logprob = 0.0f;  // raw logprob of the sampled token (only when num_logprobs >= 0)
  int32_t rank = 0;      // its 1-based rank in the raw distribution (only when asked)
  std::vector<int32_t> top_tokens;
  std::vector<float> top_logprobs;
};

// One row of a logprobs-only batch (prompt logprobs): report `token`'s raw logprob and
// rank, and the top num_logprobs tokens, of the row's logits. Nothing is sampled.
struct LogprobsRow {
  int32_t token = -1;
  int32_t num_logprobs = 0;
};

// Device work recorded once and replayed with the same pointers and sizes (a CUDA graph):
// what a replay reads must sit at the addresses the recording saw.
class BackendGraph {
 public:
  virtual ~BackendGraph() = default;
  virtual void replay() = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;

  virtual std::string name() const = 0;
  // The dtype activations, weights and the KV cache are stored in.
  virtual DType compute_dtype() const = 0;

  // Memory. allocate() never zero-fills unless asked.
  virtual Buffer allocate(size_t bytes, bool zero = false) = 0;
  // Page-locked host memory where the device has it (fast, asynchronous copies).
  virtual Buffer allocate_host(size_t bytes) = 0;
  // Uploads a host float tensor, converting to compute_dtype().
  virtual Buffer upload(const HostTensor& host) = 0;
  // Uploads a host float tensor as float32 (tables that need the precision: rope).
  virtual Buffer upload_float32(const HostTensor& host) = 0;
  virtual void copy_to_device(void* dst, const void* src, size_t bytes) = 0;
  virtual void copy_to_host(void* dst, const void* src, size_t bytes) = 0;
  virtual void synchronize() = 0;
  // The stream the backend issues its work on (a cudaStream_t on the CUDA backend), for
  // tools that must order their own device work with the backend's, such as the event
  // timers of octavo_bench_kernels; nullptr where there is none (the CPU).
  virtual void* native_stream() { return nullptr; }
  // Bytes the KV cache may take when the user did not say (the memory plan).
  virtual int64_t default_kv_cache_bytes(int64_t bytes_needed_for_all_seqs) const = 0;

  // y[m, n] = x[m, k] . w[n, k]^T (+ bias[n])
  virtual void gemm(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) = 0;

  // out[i, :] = table[ids[i], :]
  virtual void embedding(const Tensor& table, const int32_t* ids, Tensor& out) = 0;

  // out = x / rms(x) * w over the last dim; x and out may alias. Works on [rows, dim] views
  // and on [rows, heads, dim] views (per-head norm, Qwen3's q/k norm).
  virtual void rms_norm(const Tensor& x, const Tensor& w, float eps, Tensor& out) = 0;

  // residual += delta; out = rms_norm(residual) * w.
  virtual void add_rms_norm(Tensor& residual, const Tensor& delta, const Tensor& w, float eps,
                            Tensor& out) = 0;

  // residual += x . w^T; out = rms_norm(residual) * norm_w: a projection whose output only
  // joins the residual stream (o_proj, down). scratch [rows, w.dim(0)] (compute dtype) holds
  // the projection on the way; its contents afterwards are unspecified. The CUDA backend
  // can split skinny o_proj-sized ones along k and sum the slices inside the norm (no reduce
  // kernel; OCTAVO_SPLIT_K).
  virtual void gemm_add_rms_norm(const Tensor& x, const Tensor& w, Tensor& scratch, Tensor& residual,
                                 const Tensor& norm_w, float eps, Tensor& out) {
    gemm(x, w, nullptr, scratch);
    add_rms_norm(residual, scratch, norm_w, eps, out);
  }

  // Rotates q [tokens, q_heads, head_dim] and k [tokens, kv_heads, head_dim] in place,
  // HF "rotate_half" (NeoX) layout, at positions[tokens].
  virtual void rope(Tensor& q, Tensor& k, const int32_t* positions, const RopeTable& table) = 0;

  // Writes k, v [tokens, kv_heads, head_dim] to the caches [num_blocks, block_size, kv_heads,
  // head_dim] at slot_mapping[tokens] (slot = block * block_size + offset).
  virtual void write_kv_cache(const Tensor& k, const Tensor& v, const int64_t* slot_mapping,
                              Tensor& k_cache, Tensor& v_cache) = 0;

  // rope(q, k, ...) then write_kv_cache(k, v, ...): what the attention block does before
  // attention. A backend may do both in one pass (the CUDA backend: one launch per layer).
  virtual void rope_and_write_kv_cache(Tensor& q, Tensor& k, const Tensor& v, const int32_t* positions,
                                       const RopeTable& table, const int64_t* slot_mapping, Tensor& k_cache,
                                       Tensor& v_cache) {
    rope(q, k, positions, table);
    write_kv_cache(k, v, slot_mapping, k_cache, v_cache);
  }

  // For each (src, dst) in copies, in order, block dst of every cache becomes a copy of block
  // src. caches: tensors [num_blocks, block_size, kv_heads, head_dim] (every layer's keys and
  // values); copies: block ids, in host memory. Copy-on-write of KV blocks that samples share.
  virtual void copy_blocks(const std::vector<Tensor>& caches,
                           const std::vector<std::pair<int32_t, int32_t>>& copies) = 0;

  // Causal attention of q [tokens, q_heads, head_dim] over each row's cached keys/values
  // (this step's included). sliding_window > 0 limits each query to the last
  // sliding_window positions (its own included). out: [tokens, q_heads, head_dim].
  virtual void paged_attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                               const AttentionMetadata& meta, float scale, int32_t sliding_window,
                               Tensor& out) = 0;

  // Sizes attention's scratch space for the largest step, at start-up (no-op on the CPU).
  virtual void plan_attention(int64_t max_num_seqs, int64_t max_seq_len, int64_t q_heads, int64_t kv_heads,
                              int64_t head_dim) {
    (void)max_num_seqs, (void)max_seq_len, (void)q_heads, (void)kv_heads, (void)head_dim;
  }

  // out[t, i] = silu(gate_up[t, i]) * gate_up[t, inter + i]; gate_up: [tokens, 2 * inter].
  virtual void silu_mul(const Tensor& gate_up, Tensor& out) = 0;

  // out[i, :] = x[index[i], :]
  virtual void gather_rows(const Tensor& x, const int32_t* index, Tensor& out) = 0;

  // Samples one token per row of logits [rows, vocab] (float32, modified in place).
  virtual std::vector<SampleResult> sample(Tensor& logits, const std::vector<SamplingRow>& rows) = 0;

  // Raw log-softmax of each row of logits [rows, vocab] (float32, left unchanged),
  // reported for rows[i].token (SampleResult::token is that token) and the top
  // rows[i].num_logprobs tokens, as sample() reports logprobs.
  virtual std::vector<SampleResult> compute_logprobs(const Tensor& logits,
                                                     const std::vector<LogprobsRow>& rows) = 0;

  // Records the device work `work` issues through this backend, without running it, for
  // replay; nullptr where the backend cannot record (the CPU). `work` must not allocate,
  // copy to or from the host, or synchronize.
  virtual std::unique_ptr<BackendGraph> capture(const std::function<void()>& work) {
    (void)work;
    return nullptr;
  }
  // Writes n values of compute_dtype() at dst: model/dummy_weights.h's fill_uniform(key, low,
  // high) stream, rounded, computed where dst lives. Returns false (writing nothing) where
  // the backend has no such fill; callers then fill on the host and upload.
  virtual bool fill_uniform(void* dst, int64_t n, uint64_t key, float low, float high) {
    (void)dst, (void)n, (void)key, (void)low, (void)high;
    return false;
  }
  // Device memory in use by everything on the device (this process and others), and the
  // device's total; both 0 on the CPU. For the start-up line and the memory plan.
  virtual void memory_info(int64_t& used_bytes, int64_t& total_bytes) const {
    used_bytes = 0;
    total_bytes = 0;
  }
  // Sizes sample()'s staging buffers for batches of up to max_rows rows asking for up to
  // max_logprobs top logprobs, at start-up (no-op on the CPU).
  virtual void plan_sampling(int64_t max_rows, int32_t max_logprobs) { (void)max_rows, (void)max_logprobs; }
  // Whether a GEMM shape met for the first time in an eager call may time its candidate
  // algorithms there, alone (a measurement that synchronizes the device; the default of the
  // CUDA backend, for benchmarks and tests). The engine turns it off: it tunes in rounds
  // instead, and no serving step synchronizes. No-op on the CPU.
  virtual void set_gemm_tuning(bool enabled) { (void)enabled; }
  // GEMM tuning rounds, at start-up: while begin_gemm_tuning_round() returns true the caller
  // runs the same forward again and then calls end_gemm_tuning_round(). Each round times the
  // next candidate algorithm of every GEMM shape the forward meets, inside the real forward
  // (weights cold in L2 behind the other layers', a real step's clocks); after its last
  // candidate a shape keeps its fastest. False when the forward run before met no shape with
  // candidates left (always on the CPU).
  virtual bool begin_gemm_tuning_round() { return false; }
  virtual void end_gemm_tuning_round() {}
};

// The CPU backend (float32). num_threads 0: all cores.
std::unique_ptr<Backend> make_cpu_backend(int32_t num_threads);

// The CUDA backend on the current device, storing weights, activations and the KV cache in
// compute_dtype (kFloat32, kFloat16 or kBFloat16). gpu_memory_utilization bounds what the
// KV cache may take (the memory plan). Defined only in CUDA builds (OCTAVO_WITH_CUDA).
std::unique_ptr<Backend> make_cuda_backend(DType compute_dtype, double gpu_memory_utilization);
// True when this build has the CUDA backend and a CUDA device is present.
bool cuda_device_available();

}  // namespace octavo
