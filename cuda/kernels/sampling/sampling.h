// Sampling on the GPU: one token per logits row with the CPU sampler's semantics
// (cpp/src/backend/cpu/cpu_sampling.cc, vLLM v1's order): raw logprobs, sparse edits
// (penalties, bans), greedy or temperature / min_p / top_k / top_p, then a seeded
// inverse-CDF draw. One CTA per row, no sort of the vocabulary: the filters find their
// thresholds by radix-select passes (sampling.cu says how).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace octavo::cuda {

// Below this temperature a row is greedy (vLLM's _SAMPLING_EPS, as the CPU sampler).
constexpr float kSamplingGreedyTemperature = 1e-5f;

// One row's settings, already resolved by the caller.
struct SamplingRowParams {
  float temperature;         // < kSamplingGreedyTemperature: greedy (the filters are skipped)
  float top_p;               // >= 1: off
  float min_p;               // <= 0: off
  float presence_penalty;    // applied to edits with output_count > 0
  float frequency_penalty;   // times output_count
  float repetition_penalty;  // applied to edits flagged kSamplingEditRepetition
  int32_t top_k;             // <= 0 or >= vocab: off
  int32_t num_logprobs;      // -1: none; N >= 0: sampled token's logprob and rank, top N
  uint64_t seed;             // with draw_index: the counter-based uniform of the draw
  uint64_t draw_index;
  int32_t edit_begin;        // this row's entries in the edits array
  int32_t num_edits;
};

// The sparse edits of one token of one row (each token at most once per row), applied in
// the CPU sampler's order: repetition penalty, frequency then presence penalty, ban.
// A new per-token edit (a logit bias, a bad-words ban) is a flag here plus a line in
// apply_edit() (sampling.cu) at the point vLLM applies it; an allowed-token list is a
// per-row list tested where the kernel reads a processed logit (processed_logit()).
struct SamplingEdit {
  int32_t token;
  int32_t output_count;  // occurrences in the output so far: frequency/presence when > 0
  uint32_t flags;        // kSamplingEdit* bits
};
constexpr uint32_t kSamplingEditRepetition = 1u;  // the token is in the prompt or the output
constexpr uint32_t kSamplingEditBanned = 2u;      // logit -> -inf (min_tokens' EOS/stop ids)

// Why a row has no token; the caller raises the CPU sampler's error for it.
enum SampleStatus : int32_t {
  kSampleOk = 0,
  kSampleGreedyNoFiniteLogit = 1,  // greedy row: every logit -inf or NaN
  kSampleNoFiniteLogit = 2,        // nothing finite left to sample from (or an infinite maximum)
  kSampleNotFinite = 3,            // NaN in a sampled row
};

struct SampledToken {
  int32_t token;
  float logprob;  // raw logprob of the token (rows with num_logprobs >= 0)
  int32_t rank;   // 1 + the number of raw logits strictly greater (same rows)
  int32_t status; // SampleStatus
};

// Samples rows tokens. logits are read, edited in place for the sparse edits and restored
// before the kernel ends: they come back as they went in. edit_scratch holds the raw
// values of the edited tokens meanwhile (one float per edit). top_tokens / top_logprobs:
// row r's min(num_logprobs, vocab) most likely raw tokens (logit descending, then token id
// ascending) at r * top_stride; top_stride must be at least every row's num_logprobs
// (clamped to vocab). Every pointer is device memory. Throws std::invalid_argument for
// vocab <= 0, negative rows, or a row stride shorter than vocab.
void launch_sample(float* logits,                     // [rows, vocab], rows row_stride apart
                   int64_t row_stride,                // elements
                   int32_t rows, int32_t vocab,
                   const SamplingRowParams* params,   // [rows]
                   const SamplingEdit* edits,         // [total edits], row r's at params[r].edit_begin
                   float* edit_scratch,               // [total edits]
                   SampledToken* out,                 // [rows]
                   int32_t* top_tokens,               // [rows, top_stride]
                   float* top_logprobs,               // [rows, top_stride]
                   int32_t top_stride, cudaStream_t stream);

}  // namespace octavo::cuda
