// Sampling on the GPU: one token per logits row with the CPU sampler's semantics and order
// (cpp/src/backend/cpu/cpu_sampling.h, vLLM v1's): raw logprobs, the allowed-token mask,
// sparse edits (bans, logit bias, penalties), greedy or temperature / min_p / top_k /
// top_p, then a seeded inverse-CDF draw. Rows may instead score a given token (prompt
// logprobs). One CTA per row, no sort of the vocabulary: the filters find their thresholds
// by radix-select passes (sampling.cu says how). In small batches, rows that need no
// filter (greedy or plain temperature) are spread over several CTAs instead (the split
// path), with the same tokens.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
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
  int32_t allowed_begin;     // this row's allowed token ids in the allowed array
  int32_t num_allowed;       // 0: every token allowed; else the others get -inf
  int32_t given_token;       // >= 0: nothing is sampled; the logprobs are reported for it
  int32_t reserved;          // keeps the struct a multiple of 8 bytes
};

// The sparse edits of one token of one row (each token at most once per row), applied in
// the CPU sampler's order: ban, logit bias, repetition penalty, frequency then presence
// penalty. A new per-token edit is a flag here plus a line in apply_edit() (sampling.cu).
struct SamplingEdit {
  int32_t token;
  int32_t output_count;  // occurrences in the output so far: frequency/presence when > 0
  uint32_t flags;        // kSamplingEdit* bits
  float bias;            // added with kSamplingEditBias
};
constexpr uint32_t kSamplingEditRepetition = 1u;  // the token is in the prompt or the output
constexpr uint32_t kSamplingEditBanned = 2u;      // logit -> -inf (bad words, min_tokens' EOS/stop ids)
constexpr uint32_t kSamplingEditBias = 4u;        // logit += bias (logit_bias)

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
  int32_t rank;   // the number of raw logits >= the token's own, vLLM's rule (same rows)
  int32_t status; // SampleStatus
};

// The split path is taken in batches of at most this many rows: each row becomes one CTA
// per draw segment (32 with the production block), so 8 rows are 256 CTAs, two waves of
// one 1024-thread CTA per SM on an H100 (132 SMs). Larger batches fill the GPU with one
// CTA per row. launch_sample's split workspace is sized for this many rows.
constexpr int32_t kSamplingSplitMaxRows = 8;

// Bytes of the split path's device workspace (per-segment partial results and a per-row
// arrival counter). Plan it once; the kernels reset what they use, so a buffer serves every
// launch (and graph replay) without clearing.
size_t sampling_split_workspace_bytes();

// Samples rows tokens. logits are read, edited in place for the sparse edits and restored
// before the kernel ends: they come back as they went in (rows with a given token are only
// read). edit_scratch holds the raw values of the edited tokens meanwhile (one float per
// edit). top_tokens / top_logprobs: row r's min(num_logprobs, vocab) most likely raw tokens
// (logit descending, then token id ascending) at r * top_stride; top_stride must be at
// least every row's num_logprobs (clamped to vocab). any_allowed says whether some row has
// an allowed list (those rows keep a vocab-bit mask in shared memory). split_workspace:
// sampling_split_workspace_bytes() of device memory used by one stream at a time, or null
// (every row then takes the one-CTA path). With it and rows <= kSamplingSplitMaxRows, the
// rows with no allowed list, no edit, no top_k/top_p/min_p and num_logprobs <= 0 (greedy
// or temperature sampling, with the token's logprob and rank when num_logprobs is 0) take
// the split path: two launches whose grids depend on rows only, no allocation, no host
// synchronisation. Every pointer is device memory. Throws std::invalid_argument for vocab <= 0, negative rows, a row stride
// shorter than vocab, or a vocabulary whose mask does not fit in shared memory.
void launch_sample(float* logits,                     // [rows, vocab], rows row_stride apart
                   int64_t row_stride,                // elements
                   int32_t rows, int32_t vocab,
                   const SamplingRowParams* params,   // [rows]
                   const SamplingEdit* edits,         // [total edits], row r's at params[r].edit_begin
                   const int32_t* allowed,            // [total allowed], row r's at params[r].allowed_begin
                   bool any_allowed,
                   float* edit_scratch,               // [total edits]
                   SampledToken* out,                 // [rows]
                   int32_t* top_tokens,               // [rows, top_stride]
                   float* top_logprobs,               // [rows, top_stride]
                   int32_t top_stride,
                   void* split_workspace,             // sampling_split_workspace_bytes(), or null
                   cudaStream_t stream);

}  // namespace octavo::cuda
