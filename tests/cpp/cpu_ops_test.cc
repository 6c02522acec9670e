// The CPU backend's ops against naive float64 references written here, over tables of
// shapes (strided row views, GQA ratios, block sizes, mixed prefill/decode batches). Outputs
// are poisoned with NaN first so an element the op forgot fails the comparison, and the
// padding between strided rows must stay NaN so an element written out of bounds fails too.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "backend/backend.h"
#include "core/tensor.h"
#include "octavo/errors.h"

namespace octavo {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

std::vector<float> random_floats(std::mt19937& rng, size_t n, float lo = -1.0f, float hi = 1.0f) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// A row-strided float matrix in a std::vector: rows of `width` floats every `stride` floats,
// the gap between them poisoned.
struct Strided {
  int64_t rows, width, stride;
  std::vector<float> data;
  Strided(int64_t rows_, int64_t width_, int64_t pad)
      : rows(rows_),
        width(width_),
        stride(width_ + pad),
        data(static_cast<size_t>(std::max<int64_t>(1, rows_ * (width_ + pad))), kNaN) {}
  float& at(int64_t r, int64_t c) { return data[static_cast<size_t>(r * stride + c)]; }
  float at(int64_t r, int64_t c) const { return data[static_cast<size_t>(r * stride + c)]; }
  Tensor view(std::vector<int64_t> inner) {
    std::vector<int64_t> shape{rows};
    shape.insert(shape.end(), inner.begin(), inner.end());
    return Tensor(data.data(), DType::kFloat32, shape, stride);
  }
  void fill_random(std::mt19937& rng) {
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < width; ++c) at(r, c) = dist(rng);
  }
  // Fails the test where the gap between rows was written.
  void expect_padding_untouched() {
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = width; c < stride; ++c)
        ASSERT_TRUE(std::isnan(at(r, c))) << "padding written at row " << r;
  }
};

class CpuOpsTest : public ::testing::Test {
 protected:
  std::unique_ptr<Backend> backend = make_cpu_backend(0);
};

TEST_F(CpuOpsTest, ReportsNameAndFloat32) {
  EXPECT_EQ(backend->name(), "cpu");
  EXPECT_EQ(backend->compute_dtype(), DType::kFloat32);
  EXPECT_THROW(make_cpu_backend(-1), InvalidArgument);
}

TEST_F(CpuOpsTest, AllocateZeroesWhenAskedAndAligns) {
  Buffer zeroed = backend->allocate(1 << 20, /*zero=*/true);
  ASSERT_NE(zeroed.data(), nullptr);
  EXPECT_EQ(zeroed.bytes(), size_t{1} << 20);
  const auto* bytes = static_cast<const unsigned char*>(zeroed.data());
  EXPECT_TRUE(std::all_of(bytes, bytes + (1 << 20), [](unsigned char b) { return b == 0; }));
  Buffer plain = backend->allocate(100);
  ASSERT_NE(plain.data(), nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(plain.data()) % 64, 0u);
}

TEST_F(CpuOpsTest, UploadAndCopiesRoundTrip) {
  HostTensor host{{3, 4}, {}};
  host.values.resize(12);
  std::iota(host.values.begin(), host.values.end(), 1.0f);
  Buffer buffer = backend->upload(host);
  std::vector<float> back(12, 0.0f);
  backend->copy_to_host(back.data(), buffer.data(), 12 * sizeof(float));
  EXPECT_EQ(back, host.values);
  std::vector<float> other(12, -1.0f);
  backend->copy_to_device(buffer.data(), other.data(), 12 * sizeof(float));
  backend->synchronize();
  EXPECT_EQ(buffer.as(DType::kFloat32, {3, 4}).ptr<float>()[7], -1.0f);
  HostTensor bad{{2, 2}, {1.0f}};
  EXPECT_THROW(backend->upload(bad), InvalidArgument);
}

TEST_F(CpuOpsTest, DefaultKvCacheIsCappedAtFourGiB) {
  EXPECT_EQ(backend->default_kv_cache_bytes(1000), 1000);
  EXPECT_EQ(backend->default_kv_cache_bytes(int64_t{10} << 30), int64_t{4} << 30);
}

TEST_F(CpuOpsTest, RejectsNonFloat32Tensors) {
  std::vector<uint16_t> half(16);
  std::vector<float> f(16);
  Tensor x(half.data(), DType::kFloat16, {4, 4});
  Tensor w(f.data(), DType::kFloat32, {4, 4});
  Tensor y(f.data(), DType::kFloat32, {4, 4});
  EXPECT_THROW(backend->gemm(x, w, nullptr, y), Error);
  Tensor norm_w(f.data(), DType::kFloat32, {4});
  EXPECT_THROW(backend->rms_norm(x, norm_w, 1e-6f, y), Error);
  EXPECT_THROW(backend->silu_mul(x, y), Error);
}

// ---- gemm ------------------------------------------------------------------------------

struct GemmCase {
  int64_t m, n, k;
  bool bias;
  int64_t x_pad, w_pad, y_pad;
};

TEST_F(CpuOpsTest, GemmMatchesNaiveFloat64) {
  const GemmCase cases[] = {{1, 1, 1, false, 0, 0, 0},     {3, 5, 7, true, 0, 0, 0},
                            {17, 33, 64, false, 5, 3, 7},  {64, 96, 128, true, 16, 0, 32},
                            {1, 1000, 256, true, 0, 0, 0}, {40, 3, 300, false, 1, 1, 1}};
  std::mt19937 rng(1);
  for (const GemmCase& c : cases) {
    SCOPED_TRACE("m=" + std::to_string(c.m) + " n=" + std::to_string(c.n) +
                 " k=" + std::to_string(c.k));
    Strided x(c.m, c.k, c.x_pad), w(c.n, c.k, c.w_pad), y(c.m, c.n, c.y_pad);
    x.fill_random(rng);
    w.fill_random(rng);
    std::vector<float> bias = random_floats(rng, static_cast<size_t>(c.n));
    Tensor bias_t(bias.data(), DType::kFloat32, {c.n});
    Tensor yv = y.view({c.n});
    backend->gemm(x.view({c.k}), w.view({c.k}), c.bias ? &bias_t : nullptr, yv);
    for (int64_t i = 0; i < c.m; ++i) {
      for (int64_t j = 0; j < c.n; ++j) {
        double ref = c.bias ? bias[static_cast<size_t>(j)] : 0.0, magnitude = std::abs(ref);
        for (int64_t l = 0; l < c.k; ++l) {
          ref += static_cast<double>(x.at(i, l)) * w.at(j, l);
          magnitude += std::abs(static_cast<double>(x.at(i, l)) * w.at(j, l));
        }
        ASSERT_NEAR(y.at(i, j), ref, 1e-6 * (1.0 + magnitude)) << "at " << i << "," << j;
      }
    }
    y.expect_padding_untouched();
  }
}

// ---- embedding, gather_rows, silu_mul --------------------------------------------------

TEST_F(CpuOpsTest, EmbeddingCopiesTableRows) {
  std::mt19937 rng(2);
  for (const int64_t hidden : {8, 96, 2048}) {
    const int64_t vocab = 50, tokens = 37;
    std::vector<float> table = random_floats(rng, static_cast<size_t>(vocab * hidden));
    std::vector<int32_t> ids(static_cast<size_t>(tokens));
    std::uniform_int_distribution<int32_t> pick(0, vocab - 1);
    for (int32_t& id : ids) id = pick(rng);
    Strided out(tokens, hidden, 3);
    Tensor ov = out.view({hidden});
    backend->embedding(Tensor(table.data(), DType::kFloat32, {vocab, hidden}), ids.data(), ov);
    for (int64_t t = 0; t < tokens; ++t)
      for (int64_t i = 0; i < hidden; ++i)
        ASSERT_EQ(out.at(t, i), table[static_cast<size_t>(ids[t] * hidden + i)]);
    out.expect_padding_untouched();
    ids[5] = static_cast<int32_t>(vocab);
    EXPECT_THROW(
        backend->embedding(Tensor(table.data(), DType::kFloat32, {vocab, hidden}), ids.data(), ov),
        InvalidArgument);
  }
}

TEST_F(CpuOpsTest, GatherRowsCopiesIndexedRows) {
  std::mt19937 rng(3);
  Strided x(20, 48, 2);
  x.fill_random(rng);
  const std::vector<int32_t> index = {19, 0, 7, 7, 3};
  Strided out(5, 48, 1);
  Tensor ov = out.view({48});
  backend->gather_rows(x.view({48}), index.data(), ov);
  for (int64_t r = 0; r < 5; ++r)
    for (int64_t i = 0; i < 48; ++i)
      ASSERT_EQ(out.at(r, i), x.at(index[static_cast<size_t>(r)], i));
  out.expect_padding_untouched();
}

TEST_F(CpuOpsTest, SiluMulMatchesFloat64) {
  std::mt19937 rng(4);
  const int64_t shapes[][2] = {{1, 8}, {13, 300}, {64, 1024}};
  for (const auto& s : shapes) {
    const int64_t tokens = s[0], inter = s[1];
    Strided gate_up(tokens, 2 * inter, 4), out(tokens, inter, 2);
    for (int64_t t = 0; t < tokens; ++t)
      for (int64_t i = 0; i < 2 * inter; ++i)
        gate_up.at(t, i) = std::uniform_real_distribution<float>(-8, 8)(rng);
    Tensor ov = out.view({inter});
    backend->silu_mul(gate_up.view({2 * inter}), ov);
    for (int64_t t = 0; t < tokens; ++t) {
      for (int64_t i = 0; i < inter; ++i) {
        const double g = gate_up.at(t, i), u = gate_up.at(t, inter + i);
        const double ref = g / (1.0 + std::exp(-g)) * u;
        ASSERT_NEAR(out.at(t, i), ref, 1e-6 * (1.0 + std::abs(ref)));
      }
    }
    out.expect_padding_untouched();
  }
}

// ---- norms -----------------------------------------------------------------------------

double rms_inverse(const float* x, int64_t dim, float eps) {
  double sum = 0.0;
  for (int64_t i = 0; i < dim; ++i) sum += static_cast<double>(x[i]) * x[i];
  return 1.0 / std::sqrt(sum / dim + eps);
}

struct NormCase {
  int64_t rows, heads, dim, pad;  // heads 0: a [rows, dim] view
};

TEST_F(CpuOpsTest, RmsNormMatchesFloat64OnRowsAndHeads) {
  const NormCase cases[] = {
      {1, 0, 16, 0}, {7, 0, 64, 3}, {33, 0, 4096, 0}, {5, 4, 128, 8}, {40, 8, 64, 0}};
  const float eps = 1e-4f;  // large enough that dropping eps would exceed the tolerance
  std::mt19937 rng(5);
  for (const NormCase& c : cases) {
    const int64_t groups = std::max<int64_t>(1, c.heads), width = groups * c.dim;
    SCOPED_TRACE("rows=" + std::to_string(c.rows) + " heads=" + std::to_string(c.heads));
    Strided x(c.rows, width, c.pad), out(c.rows, width, c.pad);
    x.fill_random(rng);
    std::vector<float> w = random_floats(rng, static_cast<size_t>(c.dim), 0.5f, 1.5f);
    const std::vector<int64_t> inner =
        c.heads > 0 ? std::vector<int64_t>{c.heads, c.dim} : std::vector<int64_t>{c.dim};
    Tensor ov = out.view(inner);
    Tensor wv(w.data(), DType::kFloat32, {c.dim});
    backend->rms_norm(x.view(inner), wv, eps, ov);
    for (int64_t r = 0; r < c.rows; ++r) {
      for (int64_t g = 0; g < groups; ++g) {
        const double inv = rms_inverse(&x.at(r, g * c.dim), c.dim, eps);
        for (int64_t i = 0; i < c.dim; ++i) {
          const double ref = x.at(r, g * c.dim + i) * inv * w[static_cast<size_t>(i)];
          ASSERT_NEAR(out.at(r, g * c.dim + i), ref, 1e-5 * (1e-3 + std::abs(ref)));
        }
      }
    }
    out.expect_padding_untouched();
    // In place: out aliases x.
    Tensor xv = x.view(inner);
    backend->rms_norm(xv, wv, eps, xv);
    for (int64_t r = 0; r < c.rows; ++r)
      for (int64_t i = 0; i < width; ++i) ASSERT_EQ(x.at(r, i), out.at(r, i));
  }
}

TEST_F(CpuOpsTest, AddRmsNormUpdatesResidualAndNormalises) {
  const float eps = 1e-5f;
  std::mt19937 rng(6);
  for (const int64_t rows : {1, 9, 64}) {
    for (const int64_t dim : {32, 1024}) {
      Strided residual(rows, dim, 2), delta(rows, dim, 1), out(rows, dim, 0);
      residual.fill_random(rng);
      delta.fill_random(rng);
      const Strided before = residual;
      std::vector<float> w = random_floats(rng, static_cast<size_t>(dim), 0.5f, 1.5f);
      Tensor rv = residual.view({dim}), ov = out.view({dim});
      backend->add_rms_norm(rv, delta.view({dim}), Tensor(w.data(), DType::kFloat32, {dim}), eps,
                            ov);
      for (int64_t r = 0; r < rows; ++r) {
        std::vector<float> sum(static_cast<size_t>(dim));
        for (int64_t i = 0; i < dim; ++i) {
          sum[static_cast<size_t>(i)] = before.at(r, i) + delta.at(r, i);
          ASSERT_EQ(residual.at(r, i), sum[static_cast<size_t>(i)]);
        }
        const double inv = rms_inverse(sum.data(), dim, eps);
        for (int64_t i = 0; i < dim; ++i) {
          const double ref = sum[static_cast<size_t>(i)] * inv * w[static_cast<size_t>(i)];
          ASSERT_NEAR(out.at(r, i), ref, 1e-5 * (1e-3 + std::abs(ref)));
        }
      }
      residual.expect_padding_untouched();
    }
  }
}

// ---- rope ------------------------------------------------------------------------------

// HF's default rope table, built in float64: inv_freq[i] = theta^(-2i / rotary_dim).
std::vector<float> rope_table(int64_t max_pos, int64_t rotary_dim, double theta) {
  const int64_t half = rotary_dim / 2;
  std::vector<float> table(static_cast<size_t>(max_pos * rotary_dim));
  for (int64_t p = 0; p < max_pos; ++p) {
    for (int64_t i = 0; i < half; ++i) {
      const double angle = p * std::pow(theta, -2.0 * i / rotary_dim);
      table[static_cast<size_t>(p * rotary_dim + i)] = static_cast<float>(std::cos(angle));
      table[static_cast<size_t>(p * rotary_dim + half + i)] = static_cast<float>(std::sin(angle));
    }
  }
  return table;
}

struct RopeCase {
  int64_t tokens, q_heads, kv_heads, head_dim, rotary_dim;
};

TEST_F(CpuOpsTest, RopeRotatesStridedQkvSlicesLikeHf) {
  const RopeCase cases[] = {
      {1, 1, 1, 16, 16}, {9, 4, 2, 64, 64}, {33, 8, 2, 128, 128}, {5, 4, 4, 64, 32}};
  const int64_t max_pos = 512;
  std::mt19937 rng(7);
  for (const RopeCase& c : cases) {
    SCOPED_TRACE("head_dim=" + std::to_string(c.head_dim) +
                 " rotary=" + std::to_string(c.rotary_dim));
    std::vector<float> table = rope_table(max_pos, c.rotary_dim, 10000.0);
    const RopeTable rope{Tensor(table.data(), DType::kFloat32, {max_pos, c.rotary_dim})};
    // A fused QKV output: q, k and v heads side by side in each token's row.
    const int64_t qw = c.q_heads * c.head_dim, kw = c.kv_heads * c.head_dim;
    Strided qkv(c.tokens, qw + 2 * kw, 0);
    qkv.fill_random(rng);
    const Strided before = qkv;
    std::vector<int32_t> positions(static_cast<size_t>(c.tokens));
    for (int32_t& p : positions) p = std::uniform_int_distribution<int32_t>(0, max_pos - 1)(rng);
    Tensor fused = qkv.view({qw + 2 * kw});
    Tensor q = fused.slice_cols(0, qw).view_rows_as({c.q_heads, c.head_dim});
    Tensor k = fused.slice_cols(qw, qw + kw).view_rows_as({c.kv_heads, c.head_dim});
    backend->rope(q, k, positions.data(), rope);
    const int64_t half = c.rotary_dim / 2;
    for (int64_t t = 0; t < c.tokens; ++t) {
      const int64_t pos = positions[static_cast<size_t>(t)];
      for (int64_t h = 0; h < c.q_heads + c.kv_heads; ++h) {
        const int64_t base = h * c.head_dim;
        for (int64_t i = 0; i < c.head_dim; ++i) {
          const double x = before.at(t, base + i);
          double ref = x;
          if (i < c.rotary_dim) {
            const int64_t j = i % half;
            const double cos = table[static_cast<size_t>(pos * c.rotary_dim + j)];
            const double sin = table[static_cast<size_t>(pos * c.rotary_dim + half + j)];
            const double rotated =
                i < half ? -before.at(t, base + i + half) : before.at(t, base + i - half);
            ref = x * cos + rotated * sin;
          }
          ASSERT_NEAR(qkv.at(t, base + i), ref, 1e-6)
              << "token " << t << " head " << h << " dim " << i;
        }
      }
      for (int64_t i = qw + kw; i < qw + 2 * kw; ++i) ASSERT_EQ(qkv.at(t, i), before.at(t, i));
    }
    positions[0] = static_cast<int32_t>(max_pos);
    EXPECT_THROW(backend->rope(q, k, positions.data(), rope), InvalidArgument);
  }
}

// ---- KV cache and paged attention ------------------------------------------------------

TEST_F(CpuOpsTest, WriteKvCacheStoresEachTokenAtItsSlot) {
  std::mt19937 rng(8);
  for (const int64_t block_size : {4, 16}) {
    const int64_t num_blocks = 6, kv_heads = 2, head_dim = 16, tokens = 11;
    const int64_t row = kv_heads * head_dim, num_slots = num_blocks * block_size;
    std::vector<float> k_cache(static_cast<size_t>(num_slots * row), kNaN), v_cache = k_cache;
    Tensor kc(k_cache.data(), DType::kFloat32, {num_blocks, block_size, kv_heads, head_dim});
    Tensor vc(v_cache.data(), DType::kFloat32, {num_blocks, block_size, kv_heads, head_dim});
    Strided k(tokens, row, 5), v(tokens, row, 5);
    k.fill_random(rng);
    v.fill_random(rng);
    std::vector<int64_t> all_slots(static_cast<size_t>(num_slots));
    std::iota(all_slots.begin(), all_slots.end(), 0);
    std::shuffle(all_slots.begin(), all_slots.end(), rng);
    std::vector<int64_t> slots(all_slots.begin(), all_slots.begin() + tokens);
    slots[3] = -1;  // padding tokens are skipped
    slots[8] = -1;
    backend->write_kv_cache(k.view({kv_heads, head_dim}), v.view({kv_heads, head_dim}),
                            slots.data(), kc, vc);
    std::vector<bool> written(static_cast<size_t>(num_slots), false);
    for (int64_t t = 0; t < tokens; ++t) {
      const int64_t s = slots[static_cast<size_t>(t)];
      if (s < 0) continue;
      written[static_cast<size_t>(s)] = true;
      for (int64_t i = 0; i < row; ++i) {
        ASSERT_EQ(k_cache[static_cast<size_t>(s * row + i)], k.at(t, i));
        ASSERT_EQ(v_cache[static_cast<size_t>(s * row + i)], v.at(t, i));
      }
    }
    for (int64_t s = 0; s < num_slots; ++s) {
      if (!written[static_cast<size_t>(s)]) {
        ASSERT_TRUE(std::isnan(k_cache[static_cast<size_t>(s * row)]))
            << "slot " << s << " written";
        ASSERT_TRUE(std::isnan(v_cache[static_cast<size_t>(s * row)]))
            << "slot " << s << " written";
      }
    }
    slots[0] = num_slots;
    EXPECT_THROW(backend->write_kv_cache(k.view({kv_heads, head_dim}), v.view({kv_heads, head_dim}),
                                         slots.data(), kc, vc),
                 InvalidArgument);
  }
}

TEST_F(CpuOpsTest, CopyBlocksCopiesWholeBlocksOfEveryCacheInOrder) {
  std::mt19937 rng(9);
  const int64_t num_blocks = 5, block_size = 4, kv_heads = 2, head_dim = 8;
  const size_t block_floats = static_cast<size_t>(block_size * kv_heads * head_dim);
  std::vector<std::vector<float>> storage(3);
  std::vector<Tensor> caches;
  for (auto& s : storage) {
    s = random_floats(rng, block_floats * num_blocks);
    caches.emplace_back(s.data(), DType::kFloat32, std::vector<int64_t>{num_blocks, block_size, kv_heads, head_dim});
  }
  // Sequential semantics: block 1 receives what block 3 holds after 0 was copied into it.
  const std::vector<std::pair<int32_t, int32_t>> copies = {{0, 3}, {3, 1}, {2, 2}};
  std::vector<std::vector<float>> want = storage;
  for (auto& w : want) {
    for (const auto& [src, dst] : copies) {
      std::copy_n(w.begin() + static_cast<std::ptrdiff_t>(src * block_floats), block_floats,
                  w.begin() + static_cast<std::ptrdiff_t>(dst * block_floats));
    }
  }
  backend->copy_blocks(caches, copies);
  EXPECT_EQ(storage, want);
  EXPECT_NE(storage[0], storage[1]);  // each cache copied within itself
  EXPECT_THROW(backend->copy_blocks(caches, {{0, 5}}), InvalidArgument);
  EXPECT_THROW(backend->copy_blocks(caches, {{-1, 2}}), InvalidArgument);
  EXPECT_EQ(storage, want);  // a refused copy list copies nothing
}

struct AttentionCase {
  int64_t kv_heads, group, head_dim, block_size;
  int32_t sliding_window;
  int64_t q_pad, out_pad;
  // (cached tokens before this step, query tokens this step) per sequence
  std::vector<std::pair<int64_t, int64_t>> seqs;
};

// Builds a paged cache holding each sequence's keys/values in shuffled physical blocks
// (unused blocks NaN, so reading a wrong block fails), runs paged_attention and compares
// with a float64 softmax over the logical sequence.
// `output`, when given, receives the raw output buffer.
void check_paged_attention(Backend& backend, const AttentionCase& c, std::mt19937& rng,
                           std::vector<float>* output = nullptr) {
  const int64_t q_heads = c.kv_heads * c.group, D = c.head_dim, bs = c.block_size;
  const int64_t num_seqs = static_cast<int64_t>(c.seqs.size());
  std::vector<int32_t> query_start{0}, seq_lens;
  int64_t max_blocks = 0, total_blocks = 0;
  for (const auto& [cached, q_len] : c.seqs) {
    query_start.push_back(query_start.back() + static_cast<int32_t>(q_len));
    seq_lens.push_back(static_cast<int32_t>(cached + q_len));
    const int64_t blocks = (cached + q_len + bs - 1) / bs;
    max_blocks = std::max(max_blocks, blocks);
    total_blocks += blocks;
  }
  const int64_t num_blocks = total_blocks + 3;  // spare blocks stay NaN
  const int64_t tokens = query_start.back();
  std::vector<int32_t> physical(static_cast<size_t>(num_blocks));
  std::iota(physical.begin(), physical.end(), 0);
  std::shuffle(physical.begin(), physical.end(), rng);
  std::vector<int32_t> block_tables(static_cast<size_t>(num_seqs * max_blocks), -1);
  const int64_t row = c.kv_heads * D;
  std::vector<float> k_cache(static_cast<size_t>(num_blocks * bs * row), kNaN), v_cache = k_cache;
  // Logical keys/values per sequence: [seq_len, kv_heads, head_dim].
  std::vector<std::vector<float>> keys(static_cast<size_t>(num_seqs)),
      values(static_cast<size_t>(num_seqs));
  size_t next_block = 0;
  for (int64_t b = 0; b < num_seqs; ++b) {
    const int64_t len = seq_lens[static_cast<size_t>(b)];
    for (int64_t lb = 0; lb < (len + bs - 1) / bs; ++lb)
      block_tables[static_cast<size_t>(b * max_blocks + lb)] = physical[next_block++];
    keys[static_cast<size_t>(b)] = random_floats(rng, static_cast<size_t>(len * row));
    values[static_cast<size_t>(b)] = random_floats(rng, static_cast<size_t>(len * row));
    for (int64_t p = 0; p < len; ++p) {
      const int64_t slot = block_tables[static_cast<size_t>(b * max_blocks + p / bs)] * bs + p % bs;
      std::copy_n(keys[static_cast<size_t>(b)].begin() + p * row, row,
                  k_cache.begin() + slot * row);
      std::copy_n(values[static_cast<size_t>(b)].begin() + p * row, row,
                  v_cache.begin() + slot * row);
    }
  }
  Strided q(tokens, q_heads * D, c.q_pad), out(tokens, q_heads * D, c.out_pad);
  q.fill_random(rng);
  AttentionMetadata meta;
  meta.num_seqs = static_cast<int32_t>(num_seqs);
  meta.query_start_loc = query_start.data();
  meta.seq_lens = seq_lens.data();
  meta.block_tables = block_tables.data();
  meta.max_blocks_per_seq = static_cast<int32_t>(max_blocks);
  meta.max_query_len = 0;
  meta.max_seq_len = 0;
  for (int64_t b = 0; b < num_seqs; ++b) {
    meta.max_query_len = std::max(meta.max_query_len, query_start[b + 1] - query_start[b]);
    meta.max_seq_len = std::max(meta.max_seq_len, seq_lens[static_cast<size_t>(b)]);
  }
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(D)));
  Tensor kc(k_cache.data(), DType::kFloat32, {num_blocks, bs, c.kv_heads, D});
  Tensor vc(v_cache.data(), DType::kFloat32, {num_blocks, bs, c.kv_heads, D});
  Tensor ov = out.view({q_heads, D});
  backend.paged_attention(q.view({q_heads, D}), kc, vc, meta, scale, c.sliding_window, ov);

  for (int64_t b = 0; b < num_seqs; ++b) {
    const int64_t q_len = query_start[b + 1] - query_start[b],
                  len = seq_lens[static_cast<size_t>(b)];
    const std::vector<float>& K = keys[static_cast<size_t>(b)];
    const std::vector<float>& V = values[static_cast<size_t>(b)];
    for (int64_t i = 0; i < q_len; ++i) {
      const int64_t t = query_start[b] + i, pos = len - q_len + i;
      const int64_t first =
          c.sliding_window > 0 ? std::max<int64_t>(0, pos - c.sliding_window + 1) : 0;
      for (int64_t h = 0; h < q_heads; ++h) {
        const int64_t kvh = h / c.group;
        std::vector<double> s;
        for (int64_t j = first; j <= pos; ++j) {
          double dot = 0.0;
          for (int64_t d = 0; d < D; ++d)
            dot += static_cast<double>(q.at(t, h * D + d)) *
                   K[static_cast<size_t>((j * c.kv_heads + kvh) * D + d)];
          s.push_back(dot * scale);
        }
        const double m = *std::max_element(s.begin(), s.end());
        double sum = 0.0;
        for (double& x : s) sum += (x = std::exp(x - m));
        for (int64_t d = 0; d < D; ++d) {
          double ref = 0.0;
          for (int64_t j = first; j <= pos; ++j)
            ref += s[static_cast<size_t>(j - first)] / sum *
                   V[static_cast<size_t>((j * c.kv_heads + kvh) * D + d)];
          const double got = out.at(t, h * D + d);
          // Values are in [-1, 1] and the output is their convex combination, so an absolute
          // bound is a relative one; float32 lands within ~2e-7 of float64 on these sizes.
          ASSERT_NEAR(got, ref, 2e-6)
              << "seq " << b << " token " << i << " head " << h << " dim " << d;
        }
      }
    }
  }
  out.expect_padding_untouched();
  if (output != nullptr) *output = out.data;
}

// Random batch: `prefills` rows of 1..40 query tokens after 0..30 cached ones, `decodes`
// rows of one query token after 1..80 cached ones, shuffled together.
std::vector<std::pair<int64_t, int64_t>> mixed_batch(std::mt19937& rng, int prefills, int decodes) {
  std::vector<std::pair<int64_t, int64_t>> seqs;
  for (int i = 0; i < prefills; ++i)
    seqs.emplace_back(std::uniform_int_distribution<int64_t>(0, 30)(rng),
                      std::uniform_int_distribution<int64_t>(1, 40)(rng));
  for (int i = 0; i < decodes; ++i)
    seqs.emplace_back(std::uniform_int_distribution<int64_t>(1, 80)(rng), 1);
  std::shuffle(seqs.begin(), seqs.end(), rng);
  return seqs;
}

TEST_F(CpuOpsTest, PagedAttentionMatchesFloat64OverMixedBatches) {
  std::mt19937 rng(9);
  const std::vector<AttentionCase> cases = {
      // kv_heads, group, head_dim, block_size, window, q_pad, out_pad, seqs
      {2, 1, 16, 4, 0, 0, 0, {{0, 1}, {0, 5}, {3, 1}, {10, 1}, {0, 40}}},
      {2, 2, 64, 16, 0, 0, 0, mixed_batch(rng, 3, 4)},
      {1, 4, 128, 16, 0, 0, 0, mixed_batch(rng, 2, 3)},
      {2, 4, 64, 4, 0, 0, 0, mixed_batch(rng, 4, 4)},
      {2, 2, 64, 4, 7, 0, 0, mixed_batch(rng, 3, 3)},  // sliding window
      {4, 1, 128, 16, 20, 0, 0, {{25, 15}, {60, 1}, {0, 33}}},
      // q and out as strided views (q a slice of a fused QKV row)
      {2, 2, 64, 16, 0, 2 * 2 * 64, 32, mixed_batch(rng, 2, 2)},
      {1, 2, 16, 4, 5, 16, 0, {{0, 12}, {9, 1}, {17, 6}}},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE("case " + std::to_string(i));
    check_paged_attention(*backend, cases[i], rng);
  }
}

TEST_F(CpuOpsTest, PagedAttentionIsTheSameOnOneThreadAndMany) {
  std::mt19937 rng(10);
  const AttentionCase c{2, 2, 64, 16, 0, 0, 0, mixed_batch(rng, 3, 5)};
  std::unique_ptr<Backend> single = make_cpu_backend(1);
  std::mt19937 rng_a(11), rng_b(11);
  std::vector<float> one_thread, many_threads;
  check_paged_attention(*single, c, rng_a, &one_thread);
  check_paged_attention(*backend, c, rng_b, &many_threads);
  ASSERT_EQ(one_thread.size(), many_threads.size());
  for (size_t i = 0; i < one_thread.size(); ++i) ASSERT_EQ(one_thread[i], many_threads[i]) << i;
}

TEST_F(CpuOpsTest, PagedAttentionRejectsBadBlockIds) {
  std::vector<float> cache(2 * 4 * 1 * 16, 0.0f), q(16, 0.0f), out(16, 0.0f);
  const int32_t qsl[] = {0, 1}, lens[] = {3}, table[] = {5};  // block 5 of a 2-block cache
  AttentionMetadata meta;
  meta.num_seqs = 1;
  meta.query_start_loc = qsl;
  meta.seq_lens = lens;
  meta.block_tables = table;
  meta.max_blocks_per_seq = 1;
  Tensor kc(cache.data(), DType::kFloat32, {2, 4, 1, 16});
  Tensor qv(q.data(), DType::kFloat32, {1, 1, 16}), ov(out.data(), DType::kFloat32, {1, 1, 16});
  EXPECT_THROW(backend->paged_attention(qv, kc, kc, meta, 0.25f, 0, ov), InvalidArgument);
}

}  // namespace
}  // namespace octavo
