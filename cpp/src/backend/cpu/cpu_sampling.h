// Sampling math for the CPU backend, one logits row at a time, with vLLM v1's semantics:
// raw logprobs, penalties, banned tokens, greedy or temperature / min_p / top_k / top_p,
// then a draw from a counter-based random stream. sampling_distribution() exposes the
// distribution the draw uses, for tests and the Python testing binding.
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

// The probability of each of the vocab tokens after penalties, banned tokens, temperature,
// min_p, top_k and top_p (steps 2-8 of sampling); a greedy row gives a one-hot at the argmax.
// logits: [vocab], left unchanged. Sums to 1 up to rounding.
std::vector<float> sampling_distribution(const float* logits, int32_t vocab,
                                         const SamplingRow& row);

// Samples one token from logits [vocab] (modified in place: they end as the processed logits
// the draw used, -inf where a filter dropped a token).
SampleResult sample_row(float* logits, int32_t vocab, const SamplingRow& row);

// logits: [rows, vocab] float32 (row-strided); one result per row, rows run in parallel.
std::vector<SampleResult> sample_rows(Tensor& logits, const std::vector<SamplingRow>& rows,
                                      int num_threads);

}  // namespace octavo::cpu
