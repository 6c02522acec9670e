// The CUDA backend's sample() and compute_logprobs() against the CPU backend's on the same
// fresh random logits: vocab 32000 and 128256, batches of 1 to 256 rows, every setting
// (greedy, temperature, min_p, top_k, top_p, allowed tokens, logit bias, the three
// penalties over random histories, banned tokens, logprobs).
// Seeded draws must give identical tokens, ranks and top-N ids, logprobs within 1e-5, and
// the logits must come back unchanged. The CPU sampler is the reference: both evaluate the
// same steps in the same order, differing only in exp (the GPU's exp is within an ulp of
// glibc's expf) and summation order, which moves a draw only when its target lies within
// ~1e-12 of a token boundary. Batches of up to 8 rows (cuda::kSamplingSplitMaxRows) spread
// their plain rows (greedy or temperature, no filter, num_logprobs -1 or 0) over several
// CTAs (the split path); PlainRowsOfSmallBatchesMatchCpu and SplitPathDrawsWhatOneCtaDraws
// cover it. Skips cleanly when no CUDA device is present.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "octavo/errors.h"

namespace octavo {
namespace {

constexpr double kLogprobTolerance = 1e-5;

// Equal (which covers -inf on both sides: a token the filters removed) or within tolerance.
bool logprob_close(double got, double want) {
  return got == want || std::fabs(got - want) <= kLogprobTolerance;
}

void expect_logprob_near(double got, double want) {
  EXPECT_TRUE(logprob_close(got, want)) << "logprob " << got << ", want " << want;
}

class SamplingOpsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cuda_device_available()) GTEST_SKIP() << "no CUDA device";
    cpu_ = make_cpu_backend(0);
    gpu_ = make_cuda_backend(DType::kFloat32, 0.9);
    const unsigned seed = std::random_device{}();
    std::printf("  seed %u\n", seed);
    rng_.seed(seed);
  }

  // Logits of one row: Gaussian with a random scale, sometimes peaky, heavily tied or with
  // a third of the vocabulary at -inf.
  std::vector<float> random_row(int64_t vocab) {
    std::vector<float> row(static_cast<size_t>(vocab));
    std::normal_distribution<float> normal(0.0f, 1.0f);
    const float sigma = std::uniform_real_distribution<float>(0.5f, 6.0f)(rng_);
    for (float& x : row) x = sigma * normal(rng_);
    switch (rng_() % 6) {
      case 0: row[rng_() % vocab] += 30.0f; break;
      case 1: for (float& x : row) x = std::round(x / sigma * 2.0f) * 0.5f; break;
      case 2: for (float& x : row) if (rng_() % 3 == 0) x = -INFINITY; break;
      default: break;
    }
    return row;
  }

  template <typename T>
  T pick(std::initializer_list<T> options) {
    return options.begin()[rng_() % options.size()];
  }

  // Settings of one row; its histories live in the fixture until the batch is compared.
  SamplingRow random_settings(int32_t vocab) {
    SamplingRow s;
    s.temperature = pick({0.0f, 0.3f, 0.7f, 1.0f, 1.0f, 1.5f});
    s.top_k = pick({0, 0, 1, 5, 50, 1000, vocab - 1});
    s.top_p = pick({1.0f, 1.0f, 0.95f, 0.9f, 0.5f, 0.1f});
    s.min_p = pick({0.0f, 0.0f, 0.05f, 0.3f});
    if (rng_() % 2) {
      s.repetition_penalty = pick({1.0f, 1.2f, 0.9f});
      s.frequency_penalty = pick({0.0f, 0.4f, -0.5f});
      s.presence_penalty = pick({0.0f, 0.6f, -0.2f});
      histories_.emplace_back();
      std::vector<int32_t>& h = histories_.back();
      const int32_t hot = 1 + static_cast<int32_t>(rng_() % 500);  // repeats among the ids
      const int prompt = static_cast<int>(rng_() % 400), output = static_cast<int>(rng_() % 200);
      for (int i = 0; i < prompt + output; ++i) h.push_back(static_cast<int32_t>(rng_() % (rng_() % 2 ? hot : vocab)));
      s.prompt_tokens = h.data();
      s.num_prompt_tokens = prompt;
      s.output_tokens = h.data() + prompt;
      s.num_output_tokens = output;
    }
    if (rng_() % 4 == 0) {
      for (int i = 0; i < 3; ++i) s.banned_tokens.push_back(static_cast<int32_t>(rng_() % vocab));
    }
    if (rng_() % 6 == 0) {  // allowed_token_ids
      histories_.emplace_back();
      std::vector<int32_t>& a = histories_.back();
      for (int i = 1 + static_cast<int>(rng_() % 300); i > 0; --i) a.push_back(static_cast<int32_t>(rng_() % vocab));
      s.allowed_tokens = a.data();
      s.num_allowed_tokens = static_cast<int32_t>(a.size());
    }
    if (rng_() % 5 == 0) {  // logit_bias on distinct ids
      histories_.emplace_back();
      std::vector<int32_t>& ids = histories_.back();
      biases_.emplace_back();
      std::vector<float>& values = biases_.back();
      for (int i = 0; i < 10; ++i) {
        ids.push_back(static_cast<int32_t>((rng_() % (vocab / 10)) * 10 + i));
        values.push_back(std::uniform_real_distribution<float>(-10.0f, 10.0f)(rng_));
      }
      s.logit_bias_tokens = ids.data();
      s.logit_bias_values = values.data();
      s.num_logit_bias = 10;
    }
    s.num_logprobs = pick({-1, -1, 0, 1, 5, 20});
    s.seed = (static_cast<uint64_t>(rng_()) << 32) | rng_();
    s.draw_index = rng_() % 4096;
    return s;
  }

  // Samples logits [rows, vocab] on both backends and compares; returns the GPU's time.
  double compare(const std::vector<float>& logits, int64_t vocab, const std::vector<SamplingRow>& rows,
                 const std::string& what) {
    const int64_t n = static_cast<int64_t>(rows.size());
    std::vector<float> cpu_logits = logits;
    Tensor cpu_tensor(cpu_logits.data(), DType::kFloat32, {n, vocab});
    const std::vector<SampleResult> want = cpu_->sample(cpu_tensor, rows);

    HostTensor host;
    host.shape = {n, vocab};
    host.values = logits;
    Buffer device = gpu_->upload_float32(host);
    Tensor gpu_tensor = device.as(DType::kFloat32, {n, vocab});
    gpu_->synchronize();
    const auto start = std::chrono::steady_clock::now();
    const std::vector<SampleResult> got = gpu_->sample(gpu_tensor, rows);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

    std::vector<float> after(logits.size());
    gpu_->copy_to_host(after.data(), device.data(), after.size() * sizeof(float));
    EXPECT_EQ(std::memcmp(after.data(), logits.data(), after.size() * sizeof(float)), 0)
        << what << ": sample() changed the logits";
    EXPECT_EQ(got.size(), want.size());
    int mismatches = 0;
    for (size_t r = 0; r < want.size() && r < got.size() && mismatches < 5; ++r) {
      const SampleResult &g = got[r], &w = want[r];
      const std::string where = what + " row " + std::to_string(r);
      bool ok = g.token == w.token && g.rank == w.rank && g.top_tokens == w.top_tokens &&
                g.top_logprobs.size() == w.top_logprobs.size() && logprob_close(g.logprob, w.logprob);
      for (size_t j = 0; ok && j < g.top_logprobs.size(); ++j) {
        ok = logprob_close(g.top_logprobs[j], w.top_logprobs[j]);
      }
      if (!ok) {
        ++mismatches;
        const SamplingRow& s = rows[r];
        ADD_FAILURE() << where << ": token " << g.token << " vs CPU " << w.token << ", logprob " << g.logprob
                      << " vs " << w.logprob << ", rank " << g.rank << " vs " << w.rank << " [T=" << s.temperature
                      << " top_k=" << s.top_k << " top_p=" << s.top_p << " min_p=" << s.min_p
                      << " rep=" << s.repetition_penalty << " freq=" << s.frequency_penalty
                      << " pres=" << s.presence_penalty << " logprobs=" << s.num_logprobs << "]";
      }
    }
    return seconds;
  }

  std::unique_ptr<Backend> cpu_, gpu_;
  std::mt19937 rng_;
  // Lists the rows point into (growing these moves the vectors, whose buffers stay put).
  std::vector<std::vector<int32_t>> histories_;
  std::vector<std::vector<float>> biases_;
};

TEST_F(SamplingOpsTest, EverySettingMatchesCpu) {
  for (const int64_t vocab : {32000, 128256}) {
    for (const int batch : {1, 3, 64, 256}) {
      histories_.clear();
      biases_.clear();
      std::vector<float> logits;
      std::vector<SamplingRow> rows;
      for (int r = 0; r < batch; ++r) {
        const std::vector<float> row = random_row(vocab);
        logits.insert(logits.end(), row.begin(), row.end());
        rows.push_back(random_settings(static_cast<int32_t>(vocab)));
      }
      const std::string what = "vocab " + std::to_string(vocab) + " batch " + std::to_string(batch);
      const double seconds = compare(logits, vocab, rows, what);
      std::printf("  %-28s sample() %.3f ms (host packing and copies included)\n", what.c_str(), seconds * 1e3);
    }
  }
}

// One row drawn many times (draw_index 0..255 in one batch): a filter that keeps one token
// too many or too few, or orders a tie wrongly, moves some of the draws.
TEST_F(SamplingOpsTest, ManyDrawsOfOneRowMatchCpu) {
  const int64_t vocab = 128256;
  const std::vector<float> row = random_row(vocab);
  struct Setting {
    float temperature, top_p, min_p;
    int32_t top_k;
  };
  for (const Setting& st : {Setting{0.8f, 0.9f, 0.0f, 0}, Setting{1.0f, 0.5f, 0.0f, 40}, Setting{1.2f, 1.0f, 0.1f, 0},
                            Setting{0.7f, 0.95f, 0.02f, 200}}) {
    std::vector<float> logits;
    std::vector<SamplingRow> rows(256);
    for (int i = 0; i < 256; ++i) {
      logits.insert(logits.end(), row.begin(), row.end());
      rows[i].temperature = st.temperature;
      rows[i].top_p = st.top_p;
      rows[i].min_p = st.min_p;
      rows[i].top_k = st.top_k;
      rows[i].seed = 1234;
      rows[i].draw_index = static_cast<uint64_t>(i);
    }
    compare(logits, vocab, rows, "draws top_p " + std::to_string(st.top_p) + " top_k " + std::to_string(st.top_k));
  }
}

// Settings of a plain row, the kind the split path takes in small batches: greedy or
// temperature, no filter, num_logprobs -1 or 0.
SamplingRow plain_settings(std::mt19937& rng) {
  SamplingRow s;
  const float temperatures[] = {0.0f, 0.0f, 0.6f, 1.0f, 1.0f, 1.5f};
  s.temperature = temperatures[rng() % 6];
  s.num_logprobs = rng() % 3 == 0 ? 0 : -1;
  s.seed = (static_cast<uint64_t>(rng()) << 32) | rng();
  s.draw_index = rng() % 4096;
  return s;
}

// Batches of 1..8 plain rows (the split path), alone and with a filtered row among them.
TEST_F(SamplingOpsTest, PlainRowsOfSmallBatchesMatchCpu) {
  for (const int64_t vocab : {32000, 128256}) {
    for (const int batch : {1, 2, 5, 8}) {
      for (const bool mixed : {false, true}) {
        if (mixed && batch == 1) continue;
        histories_.clear();
        biases_.clear();
        std::vector<float> logits;
        std::vector<SamplingRow> rows;
        for (int r = 0; r < batch; ++r) {
          const std::vector<float> row = random_row(vocab);
          logits.insert(logits.end(), row.begin(), row.end());
          rows.push_back(mixed && r == 1 ? random_settings(static_cast<int32_t>(vocab)) : plain_settings(rng_));
        }
        const std::string what = "vocab " + std::to_string(vocab) + " batch " + std::to_string(batch) +
                                 (mixed ? " (one row any setting)" : " (plain rows)");
        const double seconds = compare(logits, vocab, rows, what);
        std::printf("  %-48s sample() %.3f ms (host packing and copies included)\n", what.c_str(), seconds * 1e3);
      }
    }
  }
}

// The split path sums the draw's weights in the one-CTA path's order: 8 plain rows (split)
// give exactly the tokens and ranks they give with a ninth row added (9 rows: one CTA each),
// over many draws of one row (targets all over its distribution); some batches also against
// the CPU sampler.
TEST_F(SamplingOpsTest, SplitPathDrawsWhatOneCtaDraws) {
  const int64_t vocab = 128256;
  const std::vector<float> row = random_row(vocab);
  auto sample_on_gpu = [&](const std::vector<SamplingRow>& rows) {
    const int64_t n = static_cast<int64_t>(rows.size());
    HostTensor host;
    host.shape = {n, vocab};
    for (int64_t r = 0; r < n; ++r) host.values.insert(host.values.end(), row.begin(), row.end());
    Buffer device = gpu_->upload_float32(host);
    Tensor t = device.as(DType::kFloat32, {n, vocab});
    return gpu_->sample(t, rows);
  };
  for (const float temperature : {0.0f, 0.8f, 1.0f}) {
    for (int round = 0; round < 16; ++round) {
      std::vector<SamplingRow> rows(8);
      for (int i = 0; i < 8; ++i) {
        rows[i].temperature = temperature;
        rows[i].num_logprobs = i % 2 ? 0 : -1;
        rows[i].seed = 77;
        rows[i].draw_index = static_cast<uint64_t>(round * 8 + i);
      }
      const std::vector<SampleResult> split = sample_on_gpu(rows);
      if (round % 4 == 0) {  // and against the CPU sampler
        std::vector<float> logits;
        for (int i = 0; i < 8; ++i) logits.insert(logits.end(), row.begin(), row.end());
        compare(logits, vocab, rows, "split draws T " + std::to_string(temperature));
      }
      rows.push_back(rows[0]);
      const std::vector<SampleResult> one_cta = sample_on_gpu(rows);
      for (int i = 0; i < 8; ++i) {
        EXPECT_EQ(split[i].token, one_cta[i].token) << "T " << temperature << " draw " << rows[i].draw_index;
        EXPECT_EQ(split[i].rank, one_cta[i].rank) << "T " << temperature << " draw " << rows[i].draw_index;
        expect_logprob_near(split[i].logprob, one_cta[i].logprob);
      }
    }
  }
}

// Prompt logprobs: a given token per row, its raw logprob and rank and the top N.
TEST_F(SamplingOpsTest, ComputeLogprobsMatchesCpu) {
  for (const int64_t vocab : {32000, 128256}) {
    const int64_t n = 37;
    std::vector<float> logits;
    std::vector<LogprobsRow> rows(static_cast<size_t>(n));
    for (LogprobsRow& row : rows) {
      const std::vector<float> r = random_row(vocab);
      logits.insert(logits.end(), r.begin(), r.end());
      row.token = static_cast<int32_t>(rng_() % vocab);
      row.num_logprobs = static_cast<int32_t>(rng_() % 21);
    }
    std::vector<float> cpu_logits = logits;
    const std::vector<SampleResult> want =
        cpu_->compute_logprobs(Tensor(cpu_logits.data(), DType::kFloat32, {n, vocab}), rows);
    HostTensor host;
    host.shape = {n, vocab};
    host.values = logits;
    Buffer device = gpu_->upload_float32(host);
    const std::vector<SampleResult> got = gpu_->compute_logprobs(device.as(DType::kFloat32, {n, vocab}), rows);
    ASSERT_EQ(got.size(), want.size());
    for (size_t r = 0; r < want.size(); ++r) {
      EXPECT_EQ(got[r].token, want[r].token);
      EXPECT_EQ(got[r].rank, want[r].rank) << "vocab " << vocab << " row " << r;
      expect_logprob_near(got[r].logprob, want[r].logprob);
      EXPECT_EQ(got[r].top_tokens, want[r].top_tokens) << "vocab " << vocab << " row " << r;
      ASSERT_EQ(got[r].top_logprobs.size(), want[r].top_logprobs.size());
      for (size_t j = 0; j < want[r].top_logprobs.size(); ++j) {
        expect_logprob_near(got[r].top_logprobs[j], want[r].top_logprobs[j]);
      }
    }
  }
}

// Rows with nothing to sample fail the batch with the CPU sampler's error; bad ids are refused.
TEST_F(SamplingOpsTest, ErrorsMatchCpu) {
  const int64_t vocab = 32000;
  auto message = [&](Backend& backend, std::vector<float> logits, const SamplingRow& row) -> std::string {
    HostTensor host;
    host.shape = {1, vocab};
    host.values = std::move(logits);
    Buffer b = backend.upload_float32(host);
    Tensor t = b.as(DType::kFloat32, {1, vocab});
    try {
      backend.sample(t, {row});
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  std::vector<float> all_neg_inf(static_cast<size_t>(vocab), -INFINITY);
  for (const float temperature : {0.0f, 1.0f}) {
    SamplingRow row;
    row.temperature = temperature;
    const std::string want = message(*cpu_, all_neg_inf, row);
    EXPECT_FALSE(want.empty());
    EXPECT_EQ(message(*gpu_, all_neg_inf, row), want);
  }
  SamplingRow bad;
  bad.banned_tokens = {static_cast<int32_t>(vocab)};
  const std::vector<float> fine = random_row(vocab);
  EXPECT_EQ(message(*gpu_, fine, bad), message(*cpu_, fine, bad));
}

}  // namespace
}  // namespace octavo
