// Sampling math for the CPU backend, one logits row at a time, with vLLM v1's semantics.
// sampling_distribution() exposes the distribution the draw uses, for tests and the
// Python testing binding.
//
// The order of operations on one row. Every backend (the GPU sampling kernels included)
// follows it exactly; it is vLLM v1's Sampler.forward order:
//   0. logprobs, when asked (num_logprobs >= 0): log_softmax of the RAW logits, before any
//      step below (vLLM's default logprobs_mode "raw_logprobs"). A token's rank is the number
//      of raw logits >= its own (vLLM's batched_count_greater_than), so 1 for the argmax.
//   1. allowed_tokens (if any): every token not listed gets -inf.
//   2. banned_tokens: -inf (bad words, then min_tokens' EOS and stop ids).
//   3. logit_bias: logit += bias for each listed token (-inf stays -inf).
//   4. penalties: repetition_penalty on every distinct id of prompt + output (a positive
//      logit divided by it, otherwise multiplied); then, per distinct output id,
//      frequency_penalty * count and presence_penalty subtracted.
//   5. greedy (temperature < kGreedyTemperature): the argmax, lowest id on ties. Done.
//   6. logits /= temperature.
//   7. min_p: drop tokens whose probability is below min_p times the largest.
//   8. top_k: drop logits strictly below the k-th largest (ties with it stay).
//   9. top_p: vLLM's ascending-cumsum cut (see apply_top_p in cpu_sampling.cc).
//  10. draw: inverse CDF, in token-id order, at counter_uniform(seed, draw_index).
// Steps 1-3 commute with each other (masks and additions on distinct or -inf logits), so
// only "all of 1-3 before 4" is load-bearing: a bias changes the sign a repetition
// penalty sees, and vLLM applies the bias first.
#pragma once

#include <cstdint>
#include <vector>

#include "backend/backend.h"
#include "core/tensor.h"

namespace octavo::cpu {

// Below this temperature a row is greedy (vLLM's _SAMPLING_EPS).
constexpr float kGreedyTemperature = 1e-5f;

// A uniform double in [0, 1) that depends only on (seed, draw_index): the same request draws
// the same numbers whatever batch it is in and whichever thread runs it.
double counter_uniform(uint64_t seed, uint64_t draw_index);

// The probability of each of the vocab tokens after steps 1-9; a greedy row gives a
// one-hot at the argmax.
// logits: [vocab], left unchanged. Sums to 1 up to rounding.
std::vector<float> sampling_distribution(const float* logits, int32_t vocab,
                                         const SamplingRow& row);

// Samples one token from logits [vocab] (modified in place: they end as the processed logits
// the draw used, -inf where a filter dropped a token).
SampleResult sample_row(float* logits, int32_t vocab, const SamplingRow& row);

// logits: [rows, vocab] float32 (row-strided); one result per row, rows run in parallel.
std::vector<SampleResult> sample_rows(Tensor& logits, const std::vector<SamplingRow>& rows,
                                      int num_threads);

// Step 0 alone, for each row of logits [rows, vocab] (left unchanged): the raw logprob and
// rank of rows[i].token and the top rows[i].num_logprobs tokens. Rows run in parallel.
std::vector<SampleResult> logprobs_rows(const Tensor& logits, const std::vector<LogprobsRow>& rows,
                                        int num_threads);

}  // namespace octavo::cpu
