// Sampling on the CPU, row by row. The order of the steps and each filter's rule follow
// vLLM v1's sampler so that seeded runs are comparable; every step works on one row's
// logits, so a row's result never depends on the rest of the batch.
#include "backend/cpu/cpu_sampling.h"

#include <algorithm>
#include <cmath>
#include <exception>
#include <functional>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include "backend/cpu/cpu_common.h"
#include "core/splitmix64.h"
#include "octavo/errors.h"

namespace octavo::cpu {

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// top_p narrows the range holding its cut by quickselect until this many tokens remain,
// then sorts them: below a few dozen elements a sort is cheaper than more partitioning.
constexpr size_t kTopPSortRange = 32;
// Where top_p first splits the vocabulary: most next-token distributions put top_p of their
// mass on fewer tokens, so one partition usually settles the cut.
constexpr size_t kTopPFirstSplit = 256;

void check_token(int32_t id, int32_t vocab, const char* what) {
  if (id < 0 || id >= vocab) {
    throw InvalidArgument(std::string("sampling: ") + what + " token id " + std::to_string(id) +
                          " outside the vocabulary of " + std::to_string(vocab));
  }
}

// Greater logit first, then lower token id: the order of the top-N logprobs (greedy's
// argmax breaks ties the same way).
struct ByLogitDescending {
  const float* logits;
  bool operator()(int32_t a, int32_t b) const {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  }
};

// The largest logit, in one vectorised pass (max_element's index tracking does not
// vectorise). With a NaN in the row the result is unspecified; the callers' finiteness
// checks then fail.
float max_logit_of(const float* logits, int32_t vocab) {
  float m = kNegInf;
#pragma omp simd reduction(max : m)
  for (int32_t i = 0; i < vocab; ++i) m = std::max(m, logits[i]);
  return m;
}

// The first index of the largest logit (lowest id on ties); -1 when none compares equal
// to the maximum (NaNs).
int32_t argmax(const float* logits, int32_t vocab) {
  const float m = max_logit_of(logits, vocab);
  for (int32_t i = 0; i < vocab; ++i) {
    if (logits[i] == m) return i;
  }
  return -1;
}

// vLLM's penalties: repetition over prompt and output ids (each distinct id once),
// frequency and presence over output counts only.
void apply_penalties(float* logits, int32_t vocab, const SamplingRow& row) {
  if (row.repetition_penalty != 1.0f) {
    std::vector<int32_t> seen;
    seen.reserve(static_cast<size_t>(row.num_prompt_tokens + row.num_output_tokens));
    seen.insert(seen.end(), row.prompt_tokens, row.prompt_tokens + row.num_prompt_tokens);
    seen.insert(seen.end(), row.output_tokens, row.output_tokens + row.num_output_tokens);
    std::sort(seen.begin(), seen.end());
    seen.erase(std::unique(seen.begin(), seen.end()), seen.end());
    const float r = row.repetition_penalty;
    for (const int32_t id : seen) {
      check_token(id, vocab, "history");
      float& l = logits[id];
      l = l > 0.0f ? l / r : l * r;
    }
  }
  if ((row.frequency_penalty != 0.0f || row.presence_penalty != 0.0f) &&
      row.num_output_tokens > 0) {
    std::vector<int32_t> outputs(row.output_tokens, row.output_tokens + row.num_output_tokens);
    std::sort(outputs.begin(), outputs.end());
    for (size_t i = 0; i < outputs.size();) {
      size_t end = i;
      while (end < outputs.size() && outputs[end] == outputs[i]) ++end;
      const int32_t id = outputs[i];
      check_token(id, vocab, "output");
      logits[id] -= row.frequency_penalty * static_cast<float>(end - i);
      logits[id] -= row.presence_penalty;
      i = end;
    }
  }
}

// Drops tokens whose probability is below min_p times the top probability; the ratio of two
// softmax probabilities is exp of the logit difference, so no normalisation is needed.
void apply_min_p(float* logits, int32_t vocab, float min_p) {
  const float max_logit = max_logit_of(logits, vocab);
  if (!(max_logit > kNegInf)) return;
  for (int32_t i = 0; i < vocab; ++i) {
    if (std::exp(logits[i] - max_logit) < min_p) logits[i] = kNegInf;
  }
}

// Keeps the logits >= the k-th largest: all tokens tied with the k-th survive (as in vLLM,
// which masks logits strictly below the k-th value), so more than k may remain on ties.
void apply_top_k(float* logits, int32_t vocab, int32_t k) {
  std::vector<float> sorted(logits, logits + vocab);
  std::nth_element(sorted.begin(), sorted.begin() + (k - 1), sorted.end(), std::greater<float>());
  const float kth = sorted[static_cast<size_t>(k - 1)];
  for (int32_t i = 0; i < vocab; ++i) {
    if (logits[i] < kth) logits[i] = kNegInf;
  }
}

// vLLM's rule: sort probabilities ascending, drop a token when the cumulative sum up to and
// including it is <= 1 - top_p, never the largest. Walking from the largest instead, the
// ascending sum at a token is 1 minus the mass strictly above it, so the kept tokens are the
// longest prefix (in descending order) whose every token has < top_p of the mass above it.
// Equal logits are ordered by token id (lower id first), which only matters at the cut.
// Rather than sorting the vocabulary, the cut is found by quickselect on that order: split
// the undecided range, keep the upper part when its mass still leaves the cut below, and go
// on in the part that holds the cut. The first split is at kTopPFirstSplit tokens, later
// ones halve the range.
void apply_top_p(float* logits, int32_t vocab, float top_p) {
  const float max_logit = max_logit_of(logits, vocab);
  if (!(max_logit > kNegInf)) return;
  // The surviving tokens with their logits and weights side by side, so the partitioning
  // compares contiguous values rather than chasing ids into the logits.
  struct Candidate {
    float logit;
    float weight;
    int32_t id;
  };
  std::vector<Candidate> candidates;
  candidates.reserve(static_cast<size_t>(vocab));
  double total = 0.0;
  for (int32_t i = 0; i < vocab; ++i) {
    if (logits[i] > kNegInf) {
      const float weight = std::exp(logits[i] - max_logit);
      candidates.push_back({logits[i], weight, i});
      total += weight;
    }
  }
  const double keep_mass = static_cast<double>(top_p) * total;
  auto by_logit = [](const Candidate& a, const Candidate& b) {
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
  };
  auto mass = [&](size_t begin, size_t end) {
    double sum = 0.0;
    for (size_t i = begin; i < end; ++i) sum += candidates[i].weight;
    return sum;
  };
  // Invariant: candidates[0, lo) are the largest, in some order, with mass mass_above <
  // keep_mass (so all kept); candidates[hi, n) are below everything in [lo, hi); the cut
  // lies in (lo, hi].
  size_t lo = 0, hi = candidates.size();
  double mass_above = 0.0;
  while (hi - lo > kTopPSortRange) {
    const size_t mid = lo == 0 && hi == candidates.size() && hi > 2 * kTopPFirstSplit
                           ? kTopPFirstSplit
                           : lo + (hi - lo) / 2;
    std::nth_element(candidates.begin() + lo, candidates.begin() + mid, candidates.begin() + hi,
                     by_logit);
    const double upper = mass(lo, mid);
    if (mass_above + upper >= keep_mass) {
      hi = mid;
    } else {
      mass_above += upper;
      lo = mid;
    }
  }
  std::sort(candidates.begin() + lo, candidates.begin() + hi, by_logit);
  size_t kept = hi;
  for (size_t i = lo; i < hi; ++i) {
    if (i > 0 && mass_above >= keep_mass) {
      kept = i;
      break;
    }
    mass_above += candidates[i].weight;
  }
  for (size_t i = kept; i < candidates.size(); ++i) logits[candidates[i].id] = kNegInf;
}

// Step 1: every token outside the allowed list gets -inf. The allowed logits are saved,
// the row filled, and the saved ones put back: no vocab-sized mask is needed.
void apply_allowed_tokens(float* logits, int32_t vocab, const SamplingRow& row) {
  std::vector<float> kept(static_cast<size_t>(row.num_allowed_tokens));
  for (int32_t i = 0; i < row.num_allowed_tokens; ++i) {
    check_token(row.allowed_tokens[i], vocab, "allowed");
    kept[static_cast<size_t>(i)] = logits[row.allowed_tokens[i]];
  }
  std::fill(logits, logits + vocab, kNegInf);
  for (int32_t i = 0; i < row.num_allowed_tokens; ++i) logits[row.allowed_tokens[i]] = kept[static_cast<size_t>(i)];
}

// Steps 1-9 on a row's logits, in place, in the order cpu_sampling.h fixes. Returns the
// greedy token for a greedy row (the filters do not apply to it), else -1 with logits
// ready for the draw.
int32_t process_logits(float* logits, int32_t vocab, const SamplingRow& row) {
  if (row.num_allowed_tokens > 0) apply_allowed_tokens(logits, vocab, row);
  for (const int32_t id : row.banned_tokens) {
    check_token(id, vocab, "banned");
    logits[id] = kNegInf;
  }
  for (int32_t i = 0; i < row.num_logit_bias; ++i) {
    const int32_t id = row.logit_bias_tokens[i];
    check_token(id, vocab, "logit_bias");
    logits[id] += row.logit_bias_values[i];
  }
  apply_penalties(logits, vocab, row);
  if (row.temperature < kGreedyTemperature) {
    const int32_t token = argmax(logits, vocab);
    if (token < 0 || !(logits[token] > kNegInf))
      throw Error("sampling: a greedy row has no finite logit (all banned or NaN)");
    return token;
  }
  for (int32_t i = 0; i < vocab; ++i) logits[i] /= row.temperature;
  if (row.min_p > 0.0f) apply_min_p(logits, vocab, row.min_p);
  if (row.top_k > 0 && row.top_k < vocab) apply_top_k(logits, vocab, row.top_k);
  if (row.top_p < 1.0f) apply_top_p(logits, vocab, row.top_p);
  return -1;
}

// Step 0: log-normaliser of the raw logits; float exps (1 ulp each) summed in double over
// the whole vocabulary.
double raw_log_normaliser(const float* raw, int32_t vocab) {
  const float max_logit = max_logit_of(raw, vocab);
  double sum = 0.0;
  for (int32_t i = 0; i < vocab; ++i) sum += std::exp(raw[i] - max_logit);
  return max_logit + std::log(sum);
}

// Step 0's report for `token`: its raw logprob, its rank (how many raw logits are >= its
// own, vLLM's rule) and the top n tokens, greater logit first, lower id on ties.
void fill_raw_logprobs(const float* raw, int32_t vocab, double log_normaliser, int32_t token,
                       int32_t num_logprobs, SampleResult& result) {
  const float chosen = raw[token];
  result.logprob = static_cast<float>(chosen - log_normaliser);
  int32_t rank = 0;
  for (int32_t i = 0; i < vocab; ++i) rank += raw[i] >= chosen ? 1 : 0;
  result.rank = rank;
  const int32_t n = std::min(num_logprobs, vocab);
  if (n <= 0) return;
  std::vector<int32_t> ids(static_cast<size_t>(vocab));
  std::iota(ids.begin(), ids.end(), 0);
  std::partial_sort(ids.begin(), ids.begin() + n, ids.end(), ByLogitDescending{raw});
  result.top_tokens.assign(ids.begin(), ids.begin() + n);
  result.top_logprobs.reserve(static_cast<size_t>(n));
  for (const int32_t id : result.top_tokens) {
    result.top_logprobs.push_back(static_cast<float>(raw[id] - log_normaliser));
  }
}

// Runs fn(r) for r in [0, n) on num_threads threads. Exceptions must not leave an OpenMP
// region: each row keeps its own, the first is rethrown.
template <typename Fn>
void for_each_row(int64_t n, int num_threads, Fn fn) {
  std::vector<std::exception_ptr> errors(static_cast<size_t>(n));
#pragma omp parallel for schedule(dynamic) num_threads(num_threads) if (n > 1)
  for (int64_t r = 0; r < n; ++r) {
    try {
      fn(r);
    } catch (...) {
      errors[static_cast<size_t>(r)] = std::current_exception();
    }
  }
  for (const std::exception_ptr& e : errors) {
    if (e) std::rethrow_exception(e);
  }
}

int32_t checked_vocab(const Tensor& logits, size_t num_rows, const char* op) {
  require_float32(logits, op, "logits");
  require_rank(logits, 2, op, "logits");
  require(static_cast<int64_t>(num_rows) == logits.rows(), op, "one row description per logits row");
  require(logits.dim(1) > 0 && logits.dim(1) <= std::numeric_limits<int32_t>::max(), op,
          "vocab must be a positive int32");
  return static_cast<int32_t>(logits.dim(1));
}

// weights[i] = exp(logits[i] - max), the unnormalised final distribution; returns its sum.
double softmax_weights(const float* logits, int32_t vocab, float* weights) {
  const float max_logit = max_logit_of(logits, vocab);
  if (!(max_logit > kNegInf) || std::isinf(max_logit)) {
    throw Error("sampling: no finite logit left to sample from");
  }
  double total = 0.0;
  for (int32_t i = 0; i < vocab; ++i) {
    weights[i] = std::exp(logits[i] - max_logit);
    total += weights[i];
  }
  if (!(total > 0.0) || !std::isfinite(total)) throw Error("sampling: logits are not finite");
  return total;
}

}  // namespace

double counter_uniform(uint64_t seed, uint64_t draw_index) {
  // Two mixing rounds so that neighbouring (seed, draw_index) pairs give unrelated numbers.
  const uint64_t bits = splitmix64(splitmix64(seed ^ (draw_index * 0x9E3779B97F4A7C15ull)));
  // The top 53 bits fill a double's mantissa exactly: a multiple of 2^-53 in [0, 1).
  return static_cast<double>(bits >> 11) * 0x1.0p-53;
}

std::vector<float> sampling_distribution(const float* logits, int32_t vocab,
                                         const SamplingRow& row) {
  if (vocab <= 0) throw InvalidArgument("sampling_distribution: vocab must be positive");
  std::vector<float> processed(logits, logits + vocab);
  std::vector<float> probs(static_cast<size_t>(vocab), 0.0f);
  const int32_t greedy = process_logits(processed.data(), vocab, row);
  if (greedy >= 0) {
    probs[static_cast<size_t>(greedy)] = 1.0f;
    return probs;
  }
  const double total = softmax_weights(processed.data(), vocab, probs.data());
  for (float& p : probs) p = static_cast<float>(p / total);
  return probs;
}

SampleResult sample_row(float* logits, int32_t vocab, const SamplingRow& row) {
  if (vocab <= 0) throw InvalidArgument("sampling: vocab must be positive");
  SampleResult result;
  // Logprobs are of the raw model output, before any step that changes the logits (step
  // 0), so the row is kept as it came.
  std::vector<float> raw;
  double log_normaliser = 0.0;
  if (row.num_logprobs >= 0) {
    raw.assign(logits, logits + vocab);
    log_normaliser = raw_log_normaliser(raw.data(), vocab);
  }

  result.token = process_logits(logits, vocab, row);
  if (result.token < 0) {
    std::vector<float> weights(static_cast<size_t>(vocab));
    const double total = softmax_weights(logits, vocab, weights.data());
    // Inverse CDF in token-id order. Only tokens of positive weight move the running sum,
    // so the first one past the target has positive probability; if rounding leaves the
    // target at the very end, the last token of positive weight is taken.
    const double target = counter_uniform(row.seed, row.draw_index) * total;
    double cumulative = 0.0;
    for (int32_t i = 0; i < vocab; ++i) {
      if (weights[static_cast<size_t>(i)] <= 0.0f) continue;
      cumulative += weights[static_cast<size_t>(i)];
      result.token = i;
      if (cumulative > target) break;
    }
  }

  if (row.num_logprobs >= 0) {
    fill_raw_logprobs(raw.data(), vocab, log_normaliser, result.token, row.num_logprobs, result);
  }
  return result;
}

std::vector<SampleResult> sample_rows(Tensor& logits, const std::vector<SamplingRow>& rows,
                                      int num_threads) {
  const int32_t vocab = checked_vocab(logits, rows.size(), "sample");
  std::vector<SampleResult> results(rows.size());
  for_each_row(logits.rows(), num_threads, [&](int64_t r) {
    results[r] = sample_row(logits.ptr<float>() + r * logits.row_stride, vocab, rows[r]);
  });
  return results;
}

std::vector<SampleResult> logprobs_rows(const Tensor& logits, const std::vector<LogprobsRow>& rows,
                                        int num_threads) {
  const int32_t vocab = checked_vocab(logits, rows.size(), "compute_logprobs");
  std::vector<SampleResult> results(rows.size());
  for_each_row(logits.rows(), num_threads, [&](int64_t r) {
    const float* raw = logits.ptr<float>() + r * logits.row_stride;
    const LogprobsRow& row = rows[r];
    check_token(row.token, vocab, "logprobs");
    if (row.num_logprobs < 0) throw InvalidArgument("compute_logprobs: num_logprobs must be >= 0");
    results[r].token = row.token;
    fill_raw_logprobs(raw, vocab, raw_log_normaliser(raw, vocab), row.token, row.num_logprobs, results[r]);
  });
  return results;
}

}  // namespace octavo::cpu
