// The CPU backend: float32 everywhere, host memory, OpenBLAS GEMMs and OpenMP loops over
// rows. It is the reference the CUDA backend is tested against and the CI path, so it
// favours plain, checkable loops over cleverness; attention and sampling live in their own
// files (cpu_attention.cc, cpu_sampling.cc).
#include <omp.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/blas.h"
#include "backend/cpu/cpu_attention.h"
#include "backend/cpu/cpu_common.h"
#include "backend/cpu/cpu_sampling.h"
#include "octavo/errors.h"

namespace octavo {

namespace {

using cpu::kMinParallelFloats;
using cpu::require;
using cpu::require_float32;
using cpu::require_rank;

// 64 bytes: one cache line, and one AVX-512 vector, so no SIMD load of a buffer's start
// splits a line.
constexpr size_t kAlignment = 64;

// vLLM's CPU backend reserves 4 GiB of KV cache unless told otherwise
// (VLLM_CPU_KVCACHE_SPACE defaults to 4 GiB); octavo follows it.
constexpr int64_t kDefaultCpuKvCacheBytes = int64_t{4} << 30;

bool fits_int(int64_t v) { return v >= 0 && v <= INT_MAX; }

float* row_ptr(const Tensor& t, int64_t row) { return t.ptr<float>() + row * t.row_stride; }

// out = x / sqrt(mean(x^2) + eps) * w over n floats, in HF's order of operations
// (normalise in float32, then scale by the weight). x and out may be the same memory.
void rms_norm_vector(const float* x, const float* w, float eps, int64_t n, float* out) {
  float sum_squares = 0.0f;
#pragma omp simd reduction(+ : sum_squares)
  for (int64_t i = 0; i < n; ++i) sum_squares += x[i] * x[i];
  const float inv_rms = 1.0f / std::sqrt(sum_squares / static_cast<float>(n) + eps);
  for (int64_t i = 0; i < n; ++i) out[i] = (x[i] * inv_rms) * w[i];
}

// Rotates the first 2 * half floats of x by the angles whose cos/sin the table row holds.
void rotate_half_inplace(float* x, const float* cos, const float* sin, int64_t half) {
  for (int64_t i = 0; i < half; ++i) {
    const float x1 = x[i];
    const float x2 = x[i + half];
    x[i] = x1 * cos[i] - x2 * sin[i];
    x[i + half] = x2 * cos[i] + x1 * sin[i];
  }
}

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int32_t num_threads) {
    if (num_threads < 0) throw InvalidArgument("make_cpu_backend: num_threads must be >= 0");
    num_threads_ = num_threads == 0 ? omp_get_num_procs() : num_threads;
    cpu::set_blas_threads(1);
  }

  std::string name() const override { return "cpu"; }
  DType compute_dtype() const override { return DType::kFloat32; }

  Buffer allocate(size_t bytes, bool zero) override {
    const size_t rounded = std::max(kAlignment, (bytes + kAlignment - 1) / kAlignment * kAlignment);
    // calloc rather than aligned_alloc + memset: the OS hands out lazily zeroed pages, so a
    // multi-GiB KV cache costs nothing until it is touched. glibc's calloc of a large block
    // is page aligned, a small one 16-byte aligned, enough for float loads.
    void* data = zero ? std::calloc(rounded, 1) : std::aligned_alloc(kAlignment, rounded);
    if (data == nullptr) {
      throw Error("cpu backend: out of host memory allocating " + std::to_string(bytes) + " bytes");
    }
    return Buffer(data, bytes, [](void* p) { std::free(p); });
  }

  Buffer allocate_host(size_t bytes) override { return allocate(bytes, false); }

  Buffer upload_float32(const HostTensor& host) override { return upload(host); }

  Buffer upload(const HostTensor& host) override {
    const int64_t n = host.numel();
    if (n < 0 || static_cast<size_t>(n) != host.values.size()) {
      throw InvalidArgument("cpu backend upload: shape does not match the number of values");
    }
    Buffer buffer = allocate(static_cast<size_t>(n) * sizeof(float), false);
    if (n > 0)
      std::memcpy(buffer.data(), host.values.data(), static_cast<size_t>(n) * sizeof(float));
    return buffer;
  }

  void copy_to_device(void* dst, const void* src, size_t bytes) override {
    if (bytes > 0) std::memcpy(dst, src, bytes);
  }
  void copy_to_host(void* dst, const void* src, size_t bytes) override {
    if (bytes > 0) std::memcpy(dst, src, bytes);
  }
  void synchronize() override {}

  int64_t default_kv_cache_bytes(int64_t bytes_needed_for_all_seqs) const override {
    return std::min(bytes_needed_for_all_seqs, kDefaultCpuKvCacheBytes);
  }

  // x: [m, k], w: [n, k], bias: [n], y: [m, n]; rows of x, w and y may be strided. y must not
  // overlap x or w (BLAS reads them while writing y).
  void gemm(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) override {
    const char* op = "gemm";
    require_float32(x, op, "x");
    require_float32(w, op, "w");
    require_float32(y, op, "y");
    require_rank(x, 2, op, "x");
    require_rank(w, 2, op, "w");
    require_rank(y, 2, op, "y");
    const int64_t m = x.dim(0), k = x.dim(1), n = w.dim(0);
    require(w.dim(1) == k, op, "w must be [n, k] with x's k");
    require(y.dim(0) == m && y.dim(1) == n, op, "y must be [m, n]");
    require(x.row_stride >= k && w.row_stride >= k && y.row_stride >= n, op,
            "a row stride is shorter than its row");
    require(fits_int(m) && fits_int(n) && fits_int(k) && fits_int(x.row_stride) &&
                fits_int(w.row_stride) && fits_int(y.row_stride),
            op, "sizes exceed BLAS's 32-bit integers");
    if (bias != nullptr) {
      require_float32(*bias, op, "bias");
      require(bias->numel() == n && (bias->shape.size() == 1 || bias->rows() == 1), op,
              "bias must be [n]");
    }
    if (m == 0 || n == 0) return;

    float beta = 0.0f;
    if (bias != nullptr) {
      // BLAS adds beta * y: start y as the broadcast bias and accumulate onto it.
      const float* b = bias->ptr<float>();
      for (int64_t i = 0; i < m; ++i) std::memcpy(row_ptr(y, i), b, n * sizeof(float));
      beta = 1.0f;
    }
    // One thread pool for the whole backend: BLAS runs single-threaded inside OpenMP
    // slices (of w's rows when the output is wide, of x's rows when it is tall). Two
    // runtimes spinning on the same cores cost 3x on a 2-core machine (measured).
    const int slices = (m * n * k >= cpu::kMinParallelGemmFlops) ? num_threads_ : 1;
    const bool split_n = n >= m;
    const int64_t extent = split_n ? n : m;
#pragma omp parallel for num_threads(slices) schedule(static) if (slices > 1)
    for (int s = 0; s < slices; ++s) {
      // Slice edges on multiples of 16 rows keep BLAS on its vector kernels.
      const int64_t begin = std::min(extent, (extent * s / slices + 15) / 16 * 16);
      const int64_t end = s + 1 == slices ? extent : std::min(extent, (extent * (s + 1) / slices + 15) / 16 * 16);
      if (begin >= end) continue;
      const float* a = x.ptr<float>();
      const float* b = w.ptr<float>();
      float* c = y.ptr<float>();
      int mm = static_cast<int>(m), nn = static_cast<int>(n);
      if (split_n) {
        b += begin * w.row_stride;
        c += begin;
        nn = static_cast<int>(end - begin);
      } else {
        a += begin * x.row_stride;
        c += begin * y.row_stride;
        mm = static_cast<int>(end - begin);
      }
      cpu::sgemm_nt(mm, nn, static_cast<int>(k), a, static_cast<int>(x.row_stride), b,
                    static_cast<int>(w.row_stride), beta, c, static_cast<int>(y.row_stride));
    }
  }

  // table: [vocab, hidden], ids: [tokens], out: [tokens, hidden]
  void embedding(const Tensor& table, const int32_t* ids, Tensor& out) override {
    const char* op = "embedding";
    require_float32(table, op, "table");
    require_float32(out, op, "out");
    const int64_t tokens = out.rows(), hidden = table.row_size(), vocab = table.rows();
    require(out.row_size() == hidden, op, "out rows must be as wide as the table's");
    for (int64_t i = 0; i < tokens; ++i) {
      require(ids[i] >= 0 && ids[i] < vocab, op,
              "token id " + std::to_string(ids[i]) + " outside the vocabulary of " +
                  std::to_string(vocab));
    }
#pragma omp parallel for num_threads(num_threads_) if (tokens * hidden >= kMinParallelFloats)
    for (int64_t i = 0; i < tokens; ++i) {
      std::memcpy(row_ptr(out, i), row_ptr(table, ids[i]), hidden * sizeof(float));
    }
  }

  // x, out: [rows, dim] or [rows, heads, dim]; w: [dim]
  void rms_norm(const Tensor& x, const Tensor& w, float eps, Tensor& out) override {
    const char* op = "rms_norm";
    check_norm_args(x, w, out, op);
    const int64_t dim = x.shape.back();
    const int64_t groups = x.row_size() / dim;
    const int64_t items = x.rows() * groups;
    const float* weight = w.ptr<float>();
#pragma omp parallel for num_threads(num_threads_) if (x.numel() >= kMinParallelFloats)
    for (int64_t item = 0; item < items; ++item) {
      const int64_t r = item / groups, g = item % groups;
      rms_norm_vector(row_ptr(x, r) + g * dim, weight, eps, dim, row_ptr(out, r) + g * dim);
    }
  }

  // residual, delta, out: [rows, dim] (or [rows, heads, dim]); w: [dim]
  void add_rms_norm(Tensor& residual, const Tensor& delta, const Tensor& w, float eps,
                    Tensor& out) override {
    const char* op = "add_rms_norm";
    check_norm_args(residual, w, out, op);
    require_float32(delta, op, "delta");
    require(delta.shape == residual.shape, op, "delta and residual must have one shape");
    const int64_t dim = residual.shape.back();
    const int64_t groups = residual.row_size() / dim;
    const int64_t items = residual.rows() * groups;
    const float* weight = w.ptr<float>();
#pragma omp parallel for num_threads(num_threads_) if (residual.numel() >= kMinParallelFloats)
    for (int64_t item = 0; item < items; ++item) {
      const int64_t r = item / groups, g = item % groups;
      float* res = row_ptr(residual, r) + g * dim;
      const float* d = row_ptr(delta, r) + g * dim;
      for (int64_t i = 0; i < dim; ++i) res[i] += d[i];
      rms_norm_vector(res, weight, eps, dim, row_ptr(out, r) + g * dim);
    }
  }

  // q: [tokens, q_heads, head_dim], k: [tokens, kv_heads, head_dim], both row-strided.
  // The table's width is the rotary dim: head dims past it pass through unrotated
  // (HF's partial rotary), which for the usual table (width == head_dim) is none.
  void rope(Tensor& q, Tensor& k, const int32_t* positions, const RopeTable& table) override {
    const char* op = "rope";
    const Tensor& cs = table.cos_sin;  // [max_position, rotary_dim]
    require_float32(q, op, "q");
    require_float32(k, op, "k");
    require_float32(cs, op, "cos_sin");
    require_rank(q, 3, op, "q");
    require_rank(k, 3, op, "k");
    require_rank(cs, 2, op, "cos_sin");
    const int64_t tokens = q.rows(), head_dim = q.dim(2), rotary_dim = cs.dim(1);
    require(k.rows() == tokens && k.dim(2) == head_dim, op,
            "q and k must match in tokens and head_dim");
    require(rotary_dim % 2 == 0 && rotary_dim > 0 && rotary_dim <= head_dim, op,
            "cos_sin width must be even and at most head_dim");
    for (int64_t t = 0; t < tokens; ++t) {
      require(positions[t] >= 0 && positions[t] < cs.rows(), op,
              "position " + std::to_string(positions[t]) + " outside the rope table");
    }
    const int64_t half = rotary_dim / 2, q_heads = q.dim(1), k_heads = k.dim(1);
#pragma omp parallel for num_threads(num_threads_) if (tokens * (q_heads + k_heads) * head_dim >= \
                                                           kMinParallelFloats)
    for (int64_t t = 0; t < tokens; ++t) {
      const float* cos = row_ptr(cs, positions[t]);
      const float* sin = cos + half;
      for (int64_t h = 0; h < q_heads; ++h)
        rotate_half_inplace(row_ptr(q, t) + h * head_dim, cos, sin, half);
      for (int64_t h = 0; h < k_heads; ++h)
        rotate_half_inplace(row_ptr(k, t) + h * head_dim, cos, sin, half);
    }
  }

  void write_kv_cache(const Tensor& k, const Tensor& v, const int64_t* slot_mapping,
                      Tensor& k_cache, Tensor& v_cache) override {
    cpu::write_kv_cache(k, v, slot_mapping, k_cache, v_cache, num_threads_);
  }

  void copy_blocks(const std::vector<Tensor>& caches,
                   const std::vector<std::pair<int32_t, int32_t>>& copies) override {
    const char* op = "copy_blocks";
    for (const Tensor& cache : caches) {
      require(cache.shape.size() == 4 && cache.contiguous(), op,
              "each cache must be a contiguous [num_blocks, block_size, kv_heads, head_dim] tensor");
      for (const auto& [src, dst] : copies) {
        require(src >= 0 && src < cache.rows() && dst >= 0 && dst < cache.rows(), op,
                "block copy " + std::to_string(src) + " -> " + std::to_string(dst) + " outside the cache's " +
                    std::to_string(cache.rows()) + " blocks");
      }
    }
    // Pairs run in order (a later pair may read a block an earlier one wrote); layers are
    // independent, so they are what runs in parallel.
    const int64_t num_caches = static_cast<int64_t>(caches.size());
#pragma omp parallel for num_threads(num_threads_) if (num_caches > 1)
    for (int64_t c = 0; c < num_caches; ++c) {
      const Tensor& cache = caches[static_cast<size_t>(c)];
      const size_t block_bytes = static_cast<size_t>(cache.row_size()) * dtype_size(cache.dtype);
      char* base = static_cast<char*>(cache.data);
      for (const auto& [src, dst] : copies) {
        if (src != dst) std::memcpy(base + dst * block_bytes, base + src * block_bytes, block_bytes);
      }
    }
  }

  void paged_attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                       const AttentionMetadata& meta, float scale, int32_t sliding_window,
                       Tensor& out) override {
    cpu::paged_attention(q, k_cache, v_cache, meta, scale, sliding_window, out, num_threads_);
  }

  // gate_up: [tokens, 2 * inter], out: [tokens, inter]
  void silu_mul(const Tensor& gate_up, Tensor& out) override {
    const char* op = "silu_mul";
    require_float32(gate_up, op, "gate_up");
    require_float32(out, op, "out");
    require_rank(gate_up, 2, op, "gate_up");
    require_rank(out, 2, op, "out");
    const int64_t tokens = out.rows(), inter = out.dim(1);
    require(gate_up.rows() == tokens && gate_up.dim(1) == 2 * inter, op,
            "gate_up must be [tokens, 2 * inter] for out [tokens, inter]");
#pragma omp parallel for num_threads(num_threads_) if (tokens * inter >= kMinParallelFloats)
    for (int64_t t = 0; t < tokens; ++t) {
      const float* gate = row_ptr(gate_up, t);
      const float* up = gate + inter;
      float* o = row_ptr(out, t);
      for (int64_t i = 0; i < inter; ++i) {
        const float g = gate[i];
        o[i] = g / (1.0f + std::exp(-g)) * up[i];
      }
    }
  }

  // x: [n, ...], index: [rows], out: [rows, ...] with x's row size
  void gather_rows(const Tensor& x, const int32_t* index, Tensor& out) override {
    const char* op = "gather_rows";
    require_float32(x, op, "x");
    require_float32(out, op, "out");
    const int64_t rows = out.rows(), width = x.row_size();
    require(out.row_size() == width, op, "out rows must be as wide as x's");
    for (int64_t i = 0; i < rows; ++i) {
      require(index[i] >= 0 && index[i] < x.rows(), op,
              "row index " + std::to_string(index[i]) + " outside x");
    }
#pragma omp parallel for num_threads(num_threads_) if (rows * width >= kMinParallelFloats)
    for (int64_t i = 0; i < rows; ++i) {
      std::memcpy(row_ptr(out, i), row_ptr(x, index[i]), width * sizeof(float));
    }
  }

  std::vector<SampleResult> sample(Tensor& logits, const std::vector<SamplingRow>& rows) override {
    return cpu::sample_rows(logits, rows, num_threads_);
  }

  std::vector<SampleResult> compute_logprobs(const Tensor& logits, const std::vector<LogprobsRow>& rows) override {
    return cpu::logprobs_rows(logits, rows, num_threads_);
  }

 private:
  static void check_norm_args(const Tensor& x, const Tensor& w, const Tensor& out, const char* op) {
    require_float32(x, op, "x");
    require_float32(w, op, "w");
    require_float32(out, op, "out");
    require(x.shape.size() == 2 || x.shape.size() == 3, op,
            "x must be [rows, dim] or [rows, heads, dim]");
    require(out.shape == x.shape, op, "out must have x's shape");
    require(x.shape.back() > 0 && w.numel() == x.shape.back(), op, "w must be [dim]");
  }

  int num_threads_ = 1;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(int32_t num_threads) {
  return std::make_unique<CpuBackend>(num_threads);
}

}  // namespace octavo
