// Host side of GPU sampling: turns the engine's SamplingRows into launch_sample's inputs
// (per-row params and one deduplicated list of sparse edits) laid out for one host-to-
// device copy, and the packed results back into SampleResults with the CPU sampler's
// errors. Shared by the CUDA backend and the CPU emulator test of the kernel.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "backend/backend.h"
#include "sampling/sampling.h"

namespace octavo {

// One batch's kernel inputs; the vectors are reused from call to call.
struct SamplingPack {
  std::vector<cuda::SamplingRowParams> params;  // one per row
  std::vector<cuda::SamplingEdit> edits;         // row r's at params[r].edit_begin
  std::vector<int32_t> allowed;                  // row r's at params[r].allowed_begin
  int32_t top_stride = 0;                        // the largest min(num_logprobs, vocab)
  // Deduplication without sorting: stamp[token] == generation when the row being packed
  // already has an edit for token, at edits[slot[token]]. [vocab] each.
  std::vector<uint32_t> stamp;
  std::vector<int32_t> slot;
  uint32_t generation = 0;
};

// Fills pack from rows. Bans, logit bias and penalty inputs become one edit per distinct
// token (repetition over prompt and output ids, frequency/presence over output counts);
// allowed lists are copied. Throws InvalidArgument, before any device work, for a token id
// outside [0, vocab) among the ids the CPU sampler would read (history only when a penalty
// uses it), with the CPU sampler's message.
void pack_sampling_rows(const std::vector<SamplingRow>& rows, int32_t vocab, SamplingPack& pack);

// Fills pack with rows that score a given token (compute_logprobs): no edits, nothing
// sampled. Throws InvalidArgument as the CPU backend does for a bad token or num_logprobs.
void pack_logprobs_rows(const std::vector<LogprobsRow>& rows, int32_t vocab, SamplingPack& pack);

// Byte offsets of one batch in the staging buffers. Upload (pinned host -> device, one
// copy): params, edits, allowed ids. The device copy continues with the kernel's edit
// scratch.
// Results (device -> pinned host, one copy): SampledToken per row, then top tokens and top
// logprobs, [rows, top_stride] each.
struct SamplingLayout {
  size_t params = 0, edits = 0, allowed = 0, upload_bytes = 0;
  size_t edit_scratch = 0, device_input_bytes = 0;
  size_t tokens = 0, top_tokens = 0, top_logprobs = 0, result_bytes = 0;
};
SamplingLayout sampling_layout(size_t rows, size_t edits, size_t allowed, int32_t top_stride);
// The layout of pack's batch.
SamplingLayout sampling_layout(const SamplingPack& pack);
// Copies pack's params, edits and allowed ids to their places in staging (upload_bytes).
void write_sampling_upload(const SamplingPack& pack, const SamplingLayout& layout, void* staging);

// SampleResults from the packed results (results points at the layout's first byte), one
// per row, num_logprobs[r] giving what row r asked for. Throws Error with the CPU sampler's
// message for the first row that has no token.
std::vector<SampleResult> unpack_sampling_results(const std::vector<int32_t>& num_logprobs, int32_t vocab,
                                                  const SamplingLayout& layout, int32_t top_stride,
                                                  const void* results);

}  // namespace octavo
