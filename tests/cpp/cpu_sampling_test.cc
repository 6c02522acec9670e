// CPU sampling against a float64 reference written here from vLLM v1's rules (allowed ids,
// banned ids, logit bias, penalties, greedy, temperature, min_p, top_k, top_p with vLLM's
// ascending-cumsum cut, in that order),
// plus the properties a seeded sampler must have: the draw depends only on (seed,
// draw_index) and the row, its frequencies follow the distribution, it never leaves the
// support, and logprobs are those of the raw logits.
#include "backend/cpu/cpu_sampling.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "octavo/errors.h"

namespace octavo {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

std::vector<float> normal_logits(std::mt19937& rng, int32_t vocab, float stddev) {
  std::normal_distribution<float> dist(0.0f, stddev);
  std::vector<float> v(static_cast<size_t>(vocab));
  for (float& x : v) x = dist(rng);
  return v;
}

std::vector<double> softmax(const std::vector<double>& l) {
  const double m = *std::max_element(l.begin(), l.end());
  std::vector<double> p(l.size());
  double sum = 0.0;
  for (size_t i = 0; i < l.size(); ++i) sum += (p[i] = std::exp(l[i] - m));
  for (double& x : p) x /= sum;
  return p;
}

// The final distribution of one row, in float64, following the brief's rules step by step.
std::vector<double> reference_distribution(const std::vector<float>& logits,
                                           const SamplingRow& row) {
  const size_t vocab = logits.size();
  std::vector<double> l(logits.begin(), logits.end());
  if (row.num_allowed_tokens > 0) {
    const std::set<int32_t> allowed(row.allowed_tokens, row.allowed_tokens + row.num_allowed_tokens);
    for (size_t i = 0; i < vocab; ++i)
      if (allowed.count(static_cast<int32_t>(i)) == 0) l[i] = -kInf;
  }
  for (const int32_t id : row.banned_tokens) l[id] = -kInf;
  for (int32_t i = 0; i < row.num_logit_bias; ++i) l[row.logit_bias_tokens[i]] += row.logit_bias_values[i];
  std::set<int32_t> seen(row.prompt_tokens, row.prompt_tokens + row.num_prompt_tokens);
  seen.insert(row.output_tokens, row.output_tokens + row.num_output_tokens);
  if (row.repetition_penalty != 1.0f) {
    for (const int32_t id : seen)
      l[id] = l[id] > 0 ? l[id] / row.repetition_penalty : l[id] * row.repetition_penalty;
  }
  std::map<int32_t, int> counts;
  for (int32_t i = 0; i < row.num_output_tokens; ++i) ++counts[row.output_tokens[i]];
  for (const auto& [id, count] : counts)
    l[id] -= double{row.frequency_penalty} * count + row.presence_penalty;
  if (row.temperature < 1e-5f) {
    std::vector<double> one_hot(vocab, 0.0);
    one_hot[std::max_element(l.begin(), l.end()) - l.begin()] = 1.0;
    return one_hot;
  }
  for (double& x : l) x /= row.temperature;
  if (row.min_p > 0.0f) {
    const std::vector<double> p = softmax(l);
    const double top = *std::max_element(p.begin(), p.end());
    for (size_t i = 0; i < vocab; ++i)
      if (p[i] < row.min_p * top) l[i] = -kInf;
  }
  if (row.top_k > 0 && static_cast<size_t>(row.top_k) < vocab) {
    std::vector<double> sorted = l;
    std::sort(sorted.begin(), sorted.end(), std::greater<double>());
    const double kth = sorted[static_cast<size_t>(row.top_k - 1)];
    for (double& x : l)
      if (x < kth) x = -kInf;
  }
  if (row.top_p < 1.0f) {
    std::vector<size_t> ascending(vocab);
    std::iota(ascending.begin(), ascending.end(), 0);
    std::stable_sort(ascending.begin(), ascending.end(),
                     [&](size_t a, size_t b) { return l[a] < l[b]; });
    const std::vector<double> p = softmax(l);
    double cumulative = 0.0;
    for (size_t i = 0; i + 1 < vocab; ++i) {  // the largest (last) is never dropped
      cumulative += p[ascending[i]];
      if (cumulative <= 1.0 - row.top_p) l[ascending[i]] = -kInf;
    }
  }
  return softmax(l);
}

// Independent splitmix64 (the reference generator's step), for the counter-based stream.
uint64_t reference_splitmix64(uint64_t state) {
  uint64_t z = state + 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// The first token whose cumulative probability exceeds u (token-id order).
int32_t reference_inverse_cdf(const std::vector<double>& probs, double u) {
  double cumulative = 0.0;
  for (size_t i = 0; i < probs.size(); ++i) {
    cumulative += probs[i];
    if (probs[i] > 0 && cumulative > u) return static_cast<int32_t>(i);
  }
  return -1;
}

void expect_distribution_matches(const std::vector<float>& logits, const SamplingRow& row) {
  const std::vector<float> got =
      cpu::sampling_distribution(logits.data(), static_cast<int32_t>(logits.size()), row);
  const std::vector<double> ref = reference_distribution(logits, row);
  ASSERT_EQ(got.size(), ref.size());
  for (size_t i = 0; i < ref.size(); ++i) {
    ASSERT_EQ(got[i] > 0.0f, ref[i] > 0.0)
        << "support differs at token " << i << " (ref " << ref[i] << ")";
    ASSERT_NEAR(got[i], ref[i], 1e-7 + 1e-5 * ref[i]) << "token " << i;
  }
}

class CpuSamplingTest : public ::testing::Test {
 protected:
  std::unique_ptr<Backend> backend = make_cpu_backend(0);

  std::vector<SampleResult> sample(std::vector<float> logits, int32_t vocab,
                                   const std::vector<SamplingRow>& rows) {
    Tensor t(logits.data(), DType::kFloat32, {static_cast<int64_t>(rows.size()), vocab});
    return backend->sample(t, rows);
  }
};

TEST_F(CpuSamplingTest, GreedyPicksArgmaxLowestIdOnTies) {
  std::mt19937 rng(1);
  const int32_t vocab = 500;
  std::vector<float> batch;
  std::vector<int32_t> expected;
  std::vector<SamplingRow> rows(6);
  for (SamplingRow& row : rows) {
    row.temperature = 0.0f;
    std::vector<float> l = normal_logits(rng, vocab, 2.0f);
    expected.push_back(static_cast<int32_t>(std::max_element(l.begin(), l.end()) - l.begin()));
    batch.insert(batch.end(), l.begin(), l.end());
  }
  // A tie: ids 7 and 3 share the maximum; the lower id wins.
  std::fill(batch.begin() + vocab * 5, batch.end(), 0.0f);
  batch[static_cast<size_t>(vocab * 5 + 7)] = 4.0f;
  batch[static_cast<size_t>(vocab * 5 + 3)] = 4.0f;
  expected[5] = 3;
  const std::vector<SampleResult> results = sample(batch, vocab, rows);
  for (size_t r = 0; r < rows.size(); ++r) EXPECT_EQ(results[r].token, expected[r]) << "row " << r;
}

TEST_F(CpuSamplingTest, GreedyAppliesPenaltiesAndBansFirst) {
  const std::vector<float> logits = {1.0f, 3.0f, 2.9f, 2.0f, -5.0f};
  const std::vector<int32_t> outputs = {1};
  SamplingRow row;
  row.temperature = 0.0f;
  row.repetition_penalty = 1.5f;  // 3.0 / 1.5 = 2.0 < 2.9
  row.output_tokens = outputs.data();
  row.num_output_tokens = 1;
  EXPECT_EQ(sample(logits, 5, {row})[0].token, 2);
  row.banned_tokens = {2};
  EXPECT_EQ(sample(logits, 5, {row})[0].token, 1);  // 2.0 ties token 3's 2.0: lower id wins
  expect_distribution_matches(logits, row);
}

struct DistributionCase {
  std::string name;
  float temperature = 1.0f, min_p = 0.0f, top_p = 1.0f;
  int32_t top_k = 0;
  float repetition = 1.0f, frequency = 0.0f, presence = 0.0f;
  bool banned = false;
};

TEST_F(CpuSamplingTest, DistributionMatchesFloat64ReferenceForEachFilter) {
  const std::vector<DistributionCase> cases = {
      {"plain"},
      {"temperature 0.5", 0.5f},
      {"temperature 1.7", 1.7f},
      {"min_p 0.1", 1.0f, 0.1f},
      {"min_p 0.02 hot", 1.5f, 0.02f},
      {"top_k 1", 1.0f, 0.0f, 1.0f, 1},
      {"top_k 5", 0.8f, 0.0f, 1.0f, 5},
      {"top_k 150", 1.0f, 0.0f, 1.0f, 150},
      {"top_p 0.9", 1.0f, 0.0f, 0.9f},
      {"top_p 0.5", 0.7f, 0.0f, 0.5f},
      {"top_p 0.05", 1.0f, 0.0f, 0.05f},
      {"repetition", 1.0f, 0.0f, 1.0f, 0, 1.3f},
      {"repetition below 1", 1.0f, 0.0f, 1.0f, 0, 0.7f},
      {"frequency and presence", 1.0f, 0.0f, 1.0f, 0, 1.0f, 0.5f, 0.8f},
      {"negative presence", 1.0f, 0.0f, 1.0f, 0, 1.0f, 0.0f, -1.0f},
      {"banned", 1.0f, 0.0f, 1.0f, 0, 1.0f, 0.0f, 0.0f, true},
      {"everything", 0.9f, 0.05f, 0.8f, 20, 1.2f, 0.3f, 0.4f, true},
      {"greedy with penalties", 0.0f, 0.0f, 1.0f, 0, 1.2f, 0.3f, 0.4f, true},
  };
  std::mt19937 rng(2);
  const int32_t vocab = 300;
  for (const DistributionCase& c : cases) {
    SCOPED_TRACE(c.name);
    for (int trial = 0; trial < 4; ++trial) {
      const std::vector<float> logits = normal_logits(rng, vocab, 3.0f);
      std::vector<int32_t> prompt(25), outputs(40);
      std::uniform_int_distribution<int32_t> pick(0, 60);  // a narrow range, so ids repeat
      for (int32_t& id : prompt) id = pick(rng);
      for (int32_t& id : outputs) id = pick(rng);
      SamplingRow row;
      row.temperature = c.temperature;
      row.min_p = c.min_p;
      row.top_p = c.top_p;
      row.top_k = c.top_k;
      row.repetition_penalty = c.repetition;
      row.frequency_penalty = c.frequency;
      row.presence_penalty = c.presence;
      row.prompt_tokens = prompt.data();
      row.num_prompt_tokens = static_cast<int32_t>(prompt.size());
      row.output_tokens = outputs.data();
      row.num_output_tokens = static_cast<int32_t>(outputs.size());
      if (c.banned) {
        // Ban the current favourites, so the ban visibly moves mass.
        std::vector<int32_t> ids(static_cast<size_t>(vocab));
        std::iota(ids.begin(), ids.end(), 0);
        std::partial_sort(ids.begin(), ids.begin() + 3, ids.end(),
                          [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
        row.banned_tokens.assign(ids.begin(), ids.begin() + 3);
      }
      expect_distribution_matches(logits, row);
    }
  }
}

TEST_F(CpuSamplingTest, TopPMatchesOnALargeVocabulary) {
  // Large enough that the cut is searched by partitioning, both within the first few hundred
  // tokens (peaked rows, small top_p) and deep in the vocabulary (flat rows, large top_p).
  std::mt19937 rng(8);
  const int32_t vocab = 20000;
  for (const float stddev : {1.0f, 4.0f}) {
    for (const float top_p : {0.02f, 0.3f, 0.9f, 0.99f}) {
      SCOPED_TRACE("stddev " + std::to_string(stddev) + " top_p " + std::to_string(top_p));
      SamplingRow row;
      row.top_p = top_p;
      expect_distribution_matches(normal_logits(rng, vocab, stddev), row);
    }
  }
}

TEST_F(CpuSamplingTest, TopKKeepsEveryTokenTiedWithTheKth) {
  const std::vector<float> logits = {1.0f, 3.0f, 2.0f, 2.0f, 0.5f, 2.0f};
  SamplingRow row;
  row.top_k = 2;  // the 2nd largest is 2.0, shared by ids 2, 3 and 5
  const std::vector<float> probs = cpu::sampling_distribution(logits.data(), 6, row);
  EXPECT_EQ(probs[0], 0.0f);
  EXPECT_EQ(probs[4], 0.0f);
  for (const int id : {1, 2, 3, 5}) EXPECT_GT(probs[static_cast<size_t>(id)], 0.0f) << id;
  expect_distribution_matches(logits, row);
}

TEST_F(CpuSamplingTest, CounterUniformIsSplitmixOfSeedAndDrawIndex) {
  // The published first output of splitmix64 seeded with 0 checks the reference itself.
  ASSERT_EQ(reference_splitmix64(0), 0xE220A8397B1DCDAFull);
  for (const uint64_t seed : {uint64_t{0}, uint64_t{1}, uint64_t{42}, ~uint64_t{0}}) {
    for (const uint64_t draw : {uint64_t{0}, uint64_t{1}, uint64_t{7}, uint64_t{1} << 40}) {
      const uint64_t bits =
          reference_splitmix64(reference_splitmix64(seed ^ (draw * 0x9E3779B97F4A7C15ull)));
      EXPECT_EQ(cpu::counter_uniform(seed, draw), std::ldexp(static_cast<double>(bits >> 11), -53));
    }
  }
  double sum = 0.0;
  const int n = 100000;
  for (int i = 0; i < n; ++i) {
    const double u = cpu::counter_uniform(123, static_cast<uint64_t>(i));
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    sum += u;
  }
  EXPECT_NEAR(sum / n, 0.5, 0.005);  // the mean of U[0,1) has stddev 0.29/sqrt(n) = 0.0009
}

TEST_F(CpuSamplingTest, DrawIsTheInverseCdfAtTheCounterUniform) {
  std::mt19937 rng(3);
  const int32_t vocab = 64;
  int distinct_checked = 0;
  std::set<int32_t> tokens_seen;
  for (int i = 0; i < 300; ++i) {
    const std::vector<float> logits = normal_logits(rng, vocab, 1.5f);
    SamplingRow row;
    row.temperature = 0.8f;
    row.top_k = i % 3 == 0 ? 10 : 0;
    row.top_p = i % 2 == 0 ? 0.9f : 1.0f;
    row.seed = 1000 + static_cast<uint64_t>(i % 7);
    row.draw_index = static_cast<uint64_t>(i);
    const int32_t token = sample(logits, vocab, {row})[0].token;
    const int32_t expected = reference_inverse_cdf(reference_distribution(logits, row),
                                                   cpu::counter_uniform(row.seed, row.draw_index));
    EXPECT_EQ(token, expected) << "draw " << i;
    tokens_seen.insert(token);
    ++distinct_checked;
  }
  EXPECT_GT(tokens_seen.size(), 20u);  // the draws really vary
  EXPECT_EQ(distinct_checked, 300);
}

TEST_F(CpuSamplingTest, SameSeedAndDrawGiveSameTokenInAnyBatch) {
  std::mt19937 rng(4);
  const int32_t vocab = 1000;
  // Rows under test: near-flat logits, so the token depends strongly on the random number.
  std::vector<std::vector<float>> logits;
  std::vector<SamplingRow> rows;
  for (int i = 0; i < 8; ++i) {
    logits.push_back(normal_logits(rng, vocab, 0.3f));
    SamplingRow row;
    row.seed = 77 + static_cast<uint64_t>(i);
    row.draw_index = static_cast<uint64_t>(3 * i);
    row.top_p = i % 2 == 0 ? 0.95f : 1.0f;
    row.num_logprobs = 2;
    rows.push_back(row);
  }
  std::vector<SampleResult> alone;
  for (size_t i = 0; i < rows.size(); ++i) alone.push_back(sample(logits[i], vocab, {rows[i]})[0]);

  // The same rows, shuffled in among others with different logits and settings, on one
  // thread and on all.
  std::vector<float> batch;
  std::vector<SamplingRow> batch_rows;
  std::vector<size_t> where(rows.size());
  std::vector<size_t> order(rows.size());
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng);
  for (const size_t i : order) {
    const std::vector<float> other = normal_logits(rng, vocab, 2.0f);
    SamplingRow other_row;
    other_row.seed = 5;
    other_row.temperature = 1.3f;
    batch.insert(batch.end(), other.begin(), other.end());
    batch_rows.push_back(other_row);
    where[i] = batch_rows.size();
    batch.insert(batch.end(), logits[i].begin(), logits[i].end());
    batch_rows.push_back(rows[i]);
  }
  const std::vector<SampleResult> many = sample(batch, vocab, batch_rows);
  backend = make_cpu_backend(1);
  const std::vector<SampleResult> single = sample(batch, vocab, batch_rows);
  std::set<int32_t> tokens;
  for (size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(many[where[i]].token, alone[i].token) << "row " << i;
    EXPECT_EQ(single[where[i]].token, alone[i].token) << "row " << i;
    EXPECT_EQ(many[where[i]].logprob, alone[i].logprob) << "row " << i;
    EXPECT_EQ(many[where[i]].top_tokens, alone[i].top_tokens) << "row " << i;
    tokens.insert(alone[i].token);
  }
  EXPECT_GT(tokens.size(), 4u);  // not a degenerate distribution that always gives one token
}

// Pearson's chi-square of observed counts against n * probs over the tokens of the support.
double chi_square(const std::vector<int>& counts, const std::vector<double>& probs, int n) {
  double chi2 = 0.0;
  for (size_t i = 0; i < probs.size(); ++i) {
    if (probs[i] == 0.0) continue;
    const double expected = n * probs[i];
    chi2 += (counts[i] - expected) * (counts[i] - expected) / expected;
  }
  return chi2;
}

TEST_F(CpuSamplingTest, DrawFrequenciesFollowTheDistribution) {
  const int32_t vocab = 8;
  const std::vector<float> logits = {1.0f, 0.5f, 2.0f, -1.0f, 0.0f, 1.5f, -0.5f, 0.3f};
  struct Case {
    SamplingRow row;
    int support;
    double chi2_limit;  // the chi-square quantile at p = 1e-4 for support - 1 degrees of freedom
  };
  std::vector<Case> cases(2);
  cases[0] = {SamplingRow{}, 8, 29.9};
  cases[1].row.temperature = 0.8f;
  cases[1].row.top_k = 3;
  cases[1].support = 3;
  cases[1].chi2_limit = 18.4;
  const int n = 20000;
  for (Case& c : cases) {
    c.row.seed = 2024;
    std::vector<float> batch;
    std::vector<SamplingRow> rows;
    for (int i = 0; i < n; ++i) {
      batch.insert(batch.end(), logits.begin(), logits.end());
      rows.push_back(c.row);
      rows.back().draw_index = static_cast<uint64_t>(i);
    }
    const std::vector<SampleResult> results = sample(batch, vocab, rows);
    std::vector<int> counts(vocab, 0);
    for (const SampleResult& r : results) ++counts[static_cast<size_t>(r.token)];
    const std::vector<double> probs = reference_distribution(logits, c.row);
    ASSERT_EQ(std::count_if(probs.begin(), probs.end(), [](double p) { return p > 0; }), c.support);
    for (int32_t t = 0; t < vocab; ++t) {
      if (probs[static_cast<size_t>(t)] == 0.0)
        EXPECT_EQ(counts[static_cast<size_t>(t)], 0) << "token " << t;
    }
    EXPECT_LT(chi_square(counts, probs, n), c.chi2_limit);
  }
}

TEST_F(CpuSamplingTest, NeverSamplesOutsideTheSupport) {
  std::mt19937 rng(5);
  const int32_t vocab = 50;
  for (int i = 0; i < 2000; ++i) {
    std::vector<float> logits = normal_logits(rng, vocab, 2.0f);
    SamplingRow row;
    row.temperature = 1.2f;
    row.top_k = 1 + i % 6;
    row.top_p = 0.6f;
    row.min_p = i % 2 == 0 ? 0.05f : 0.0f;
    row.seed = 99;
    row.draw_index = static_cast<uint64_t>(i);
    // A banned token with a huge logit must still never come out.
    const int32_t banned = i % vocab;
    logits[static_cast<size_t>(banned)] = 50.0f;
    row.banned_tokens = {banned};
    const std::vector<double> probs = reference_distribution(logits, row);
    const int32_t token = sample(logits, vocab, {row})[0].token;
    ASSERT_GE(token, 0);
    ASSERT_LT(token, vocab);
    ASSERT_GT(probs[static_cast<size_t>(token)], 0.0) << "draw " << i << " sampled token " << token;
  }
}

TEST_F(CpuSamplingTest, LogprobsRankAndTopNAreOfTheRawLogits) {
  std::mt19937 rng(6);
  const int32_t vocab = 400;
  for (const int32_t num_logprobs : {0, 1, 5, 20}) {
    SCOPED_TRACE("num_logprobs " + std::to_string(num_logprobs));
    for (int trial = 0; trial < 10; ++trial) {
      const std::vector<float> logits = normal_logits(rng, vocab, 2.5f);
      const std::vector<int32_t> outputs = {3, 3, 17, 250};
      SamplingRow row;
      row.num_logprobs = num_logprobs;
      row.temperature = 1.5f;  // flat enough that the sampled token is often not the top one
      row.repetition_penalty = 1.4f;
      row.frequency_penalty = 0.7f;
      row.output_tokens = outputs.data();
      row.num_output_tokens = static_cast<int32_t>(outputs.size());
      row.banned_tokens = {0};
      row.seed = 8;
      row.draw_index = static_cast<uint64_t>(trial);
      const SampleResult result = sample(logits, vocab, {row})[0];

      double m = -kInf, sum = 0.0;
      for (const float l : logits) m = std::max(m, double{l});
      for (const float l : logits) sum += std::exp(l - m);
      const double lse = m + std::log(sum);
      const int32_t t = result.token;
      EXPECT_NEAR(result.logprob, logits[static_cast<size_t>(t)] - lse, 1e-5);
      int32_t rank = 0;
      for (const float l : logits) rank += l >= logits[static_cast<size_t>(t)] ? 1 : 0;
      EXPECT_EQ(result.rank, rank);
      std::vector<int32_t> ids(static_cast<size_t>(vocab));
      std::iota(ids.begin(), ids.end(), 0);
      std::stable_sort(ids.begin(), ids.end(),
                       [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
      ASSERT_EQ(result.top_tokens.size(), static_cast<size_t>(num_logprobs));
      ASSERT_EQ(result.top_logprobs.size(), static_cast<size_t>(num_logprobs));
      for (int32_t k = 0; k < num_logprobs; ++k) {
        EXPECT_EQ(result.top_tokens[static_cast<size_t>(k)], ids[static_cast<size_t>(k)]);
        EXPECT_NEAR(result.top_logprobs[static_cast<size_t>(k)],
                    logits[static_cast<size_t>(ids[static_cast<size_t>(k)])] - lse, 1e-5);
      }
    }
  }
}

TEST_F(CpuSamplingTest, TopLogprobsOrderTiesByTokenId) {
  const std::vector<float> logits = {0.0f, 2.0f, 1.0f, 2.0f, 2.0f, -1.0f};
  SamplingRow row;
  row.temperature = 0.0f;
  row.banned_tokens = {1};  // greedy then takes 3; logprobs still see the raw row
  row.num_logprobs = 4;
  const SampleResult result = sample(logits, 6, {row})[0];
  EXPECT_EQ(result.token, 3);
  EXPECT_EQ(result.rank, 3);  // vLLM's rank counts the tokens >= it: the three tied at 2.0
  EXPECT_EQ(result.top_tokens, (std::vector<int32_t>{1, 3, 4, 2}));
  EXPECT_EQ(result.top_logprobs[0], result.top_logprobs[2]);
}

TEST_F(CpuSamplingTest, NoLogprobsUnlessAsked) {
  std::mt19937 rng(7);
  const SampleResult result = sample(normal_logits(rng, 30, 1.0f), 30, {SamplingRow{}})[0];
  EXPECT_EQ(result.rank, 0);
  EXPECT_TRUE(result.top_tokens.empty());
  EXPECT_TRUE(result.top_logprobs.empty());
}

// Owns the sparse lists a SamplingRow points at.
struct RowLists {
  std::vector<int32_t> allowed, bias_tokens;
  std::vector<float> bias_values;
  void attach(SamplingRow& row) const {
    row.allowed_tokens = allowed.data();
    row.num_allowed_tokens = static_cast<int32_t>(allowed.size());
    row.logit_bias_tokens = bias_tokens.data();
    row.logit_bias_values = bias_values.data();
    row.num_logit_bias = static_cast<int32_t>(bias_tokens.size());
  }
};

TEST_F(CpuSamplingTest, LogitBiasIsAddedBeforeTheRepetitionPenalty) {
  // Token 1 (logit -1) was generated. A +1.5 bias makes it 0.5, positive, so the repetition
  // penalty divides it (0.25) and it beats token 3 (0.1). Penalising first would multiply
  // (-2) then add (-0.5), leaving token 3 on top.
  const std::vector<float> logits = {0.0f, -1.0f, -3.0f, 0.1f};
  const std::vector<int32_t> outputs = {1};
  RowLists lists;
  lists.bias_tokens = {1};
  lists.bias_values = {1.5f};
  SamplingRow row;
  lists.attach(row);
  row.temperature = 0.0f;
  row.repetition_penalty = 2.0f;
  row.output_tokens = outputs.data();
  row.num_output_tokens = 1;
  EXPECT_EQ(sample(logits, 4, {row})[0].token, 1);
  row.temperature = 1.0f;
  const std::vector<float> probs = cpu::sampling_distribution(logits.data(), 4, row);
  const double z = std::exp(0.0) + std::exp(0.25) + std::exp(-3.0) + std::exp(0.1);
  EXPECT_NEAR(probs[1], std::exp(0.25) / z, 1e-6);
  expect_distribution_matches(logits, row);
  // A banned token stays banned whatever its bias.
  row.banned_tokens = {1};
  EXPECT_EQ(cpu::sampling_distribution(logits.data(), 4, row)[1], 0.0f);
}

TEST_F(CpuSamplingTest, AllowedTokensAreTheOnlySupport) {
  std::mt19937 rng(11);
  const int32_t vocab = 200;
  RowLists lists;
  lists.allowed = {150, 3, 77, 3, 199};  // a duplicate is harmless
  for (int trial = 0; trial < 20; ++trial) {
    const std::vector<float> logits = normal_logits(rng, vocab, 3.0f);
    SamplingRow row;
    lists.attach(row);
    row.temperature = trial % 2 == 0 ? 0.0f : 1.3f;
    row.seed = 5;
    row.draw_index = static_cast<uint64_t>(trial);
    row.num_logprobs = 2;
    const SampleResult result = sample(logits, vocab, {row})[0];
    EXPECT_TRUE(result.token == 150 || result.token == 3 || result.token == 77 || result.token == 199)
        << result.token;
    if (row.temperature == 0.0f) {
      int32_t best = 3;
      for (const int32_t id : {77, 150, 199})
        if (logits[id] > logits[best]) best = id;
      EXPECT_EQ(result.token, best);
    }
    // Logprobs stay those of the raw row: the top token may be one the row could not sample.
    const int32_t raw_top = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    EXPECT_EQ(result.top_tokens[0], raw_top);
    expect_distribution_matches(logits, row);
  }
}

TEST_F(CpuSamplingTest, AllSparseListsTogetherMatchTheReference) {
  std::mt19937 rng(12);
  const int32_t vocab = 300;
  for (int trial = 0; trial < 10; ++trial) {
    const std::vector<float> logits = normal_logits(rng, vocab, 2.0f);
    std::vector<int32_t> prompt(20), outputs(30);
    std::uniform_int_distribution<int32_t> pick(0, 80);
    for (int32_t& id : prompt) id = pick(rng);
    for (int32_t& id : outputs) id = pick(rng);
    RowLists lists;
    for (int32_t id = 0; id < 120; id += 1 + trial % 3) lists.allowed.push_back(id);
    for (int32_t id = 2; id < 100; id += 7) {
      lists.bias_tokens.push_back(id);
      lists.bias_values.push_back(std::uniform_real_distribution<float>(-4.0f, 4.0f)(rng));
    }
    SamplingRow row;
    lists.attach(row);
    row.banned_tokens = {4, 5, 6};
    row.temperature = 0.8f;
    row.top_k = 30;
    row.top_p = 0.9f;
    row.min_p = 0.01f;
    row.repetition_penalty = 1.3f;
    row.frequency_penalty = 0.4f;
    row.presence_penalty = -0.3f;
    row.prompt_tokens = prompt.data();
    row.num_prompt_tokens = static_cast<int32_t>(prompt.size());
    row.output_tokens = outputs.data();
    row.num_output_tokens = static_cast<int32_t>(outputs.size());
    expect_distribution_matches(logits, row);
  }
}

TEST_F(CpuSamplingTest, ComputeLogprobsReportsTheGivenTokenAndTopN) {
  std::mt19937 rng(13);
  const int32_t vocab = 250, rows = 5;
  std::vector<float> batch;
  std::vector<LogprobsRow> request;
  for (int32_t r = 0; r < rows; ++r) {
    const std::vector<float> l = normal_logits(rng, vocab, 2.0f);
    batch.insert(batch.end(), l.begin(), l.end());
    request.push_back({(r * 37) % vocab, r});
  }
  batch[static_cast<size_t>(vocab + 5)] = batch[static_cast<size_t>(vocab + request[1].token)];  // a tie
  const std::vector<float> before = batch;
  Tensor t(batch.data(), DType::kFloat32, {rows, vocab});
  const std::vector<SampleResult> results = backend->compute_logprobs(t, request);
  EXPECT_EQ(batch, before);  // the logits are left alone
  for (int32_t r = 0; r < rows; ++r) {
    const float* l = before.data() + static_cast<size_t>(r) * vocab;
    const int32_t token = request[static_cast<size_t>(r)].token;
    double m = -kInf, sum = 0.0;
    for (int32_t i = 0; i < vocab; ++i) m = std::max(m, double{l[i]});
    for (int32_t i = 0; i < vocab; ++i) sum += std::exp(l[i] - m);
    const double lse = m + std::log(sum);
    const SampleResult& got = results[static_cast<size_t>(r)];
    EXPECT_EQ(got.token, token);
    EXPECT_NEAR(got.logprob, l[token] - lse, 1e-5);
    int32_t rank = 0;
    for (int32_t i = 0; i < vocab; ++i) rank += l[i] >= l[token] ? 1 : 0;
    EXPECT_EQ(got.rank, rank);
    std::vector<int32_t> ids(static_cast<size_t>(vocab));
    std::iota(ids.begin(), ids.end(), 0);
    std::stable_sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) { return l[a] > l[b]; });
    ASSERT_EQ(got.top_tokens.size(), static_cast<size_t>(r));
    for (int32_t k = 0; k < r; ++k) {
      EXPECT_EQ(got.top_tokens[static_cast<size_t>(k)], ids[static_cast<size_t>(k)]);
      EXPECT_NEAR(got.top_logprobs[static_cast<size_t>(k)], l[ids[static_cast<size_t>(k)]] - lse, 1e-5);
    }
  }
  EXPECT_THROW(backend->compute_logprobs(t, std::vector<LogprobsRow>(rows, LogprobsRow{vocab, 0})),
               InvalidArgument);
}

TEST_F(CpuSamplingTest, RejectsBadRowsWithErrors) {
  const std::vector<float> logits(10, 0.0f);
  SamplingRow all_banned;
  for (int32_t i = 0; i < 10; ++i) all_banned.banned_tokens.push_back(i);
  EXPECT_THROW(sample(logits, 10, {all_banned}), Error);
  all_banned.temperature = 0.0f;
  EXPECT_THROW(sample(logits, 10, {all_banned}), Error);
  SamplingRow out_of_range;
  out_of_range.banned_tokens = {10};
  EXPECT_THROW(sample(logits, 10, {out_of_range}), InvalidArgument);
  const std::vector<int32_t> ids = {2, 10};
  const std::vector<float> biases = {1.0f, 1.0f};
  SamplingRow bad_allowed;
  bad_allowed.allowed_tokens = ids.data();
  bad_allowed.num_allowed_tokens = 2;
  EXPECT_THROW(sample(logits, 10, {bad_allowed}), InvalidArgument);
  SamplingRow bad_bias;
  bad_bias.logit_bias_tokens = ids.data();
  bad_bias.logit_bias_values = biases.data();
  bad_bias.num_logit_bias = 2;
  EXPECT_THROW(sample(logits, 10, {bad_bias}), InvalidArgument);
  // Every allowed token also banned: nothing left to sample.
  SamplingRow nothing_left;
  nothing_left.allowed_tokens = ids.data();
  nothing_left.num_allowed_tokens = 1;
  nothing_left.banned_tokens = {2};
  EXPECT_THROW(sample(logits, 10, {nothing_left}), Error);
  std::vector<float> two_rows(20, 0.0f);
  Tensor t(two_rows.data(), DType::kFloat32, {2, 10});
  EXPECT_THROW(backend->sample(t, {SamplingRow{}}), InvalidArgument);
}

}  // namespace
}  // namespace octavo
