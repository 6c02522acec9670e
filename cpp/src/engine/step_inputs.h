// StepInputs: the flat arrays one forward needs (token ids, positions, slots, block tables,
// query offsets, sequence lengths, logit rows), packed into one host staging area and
// sent to the device with a single copy per step. Logit rows are the sampling rows (the
// last token of each request that samples), then the prompt-logprobs rows.
#pragma once

#include <cstdint>
#include <vector>

#include "backend/backend.h"
#include "model/decoder.h"
#include "scheduler/scheduler.h"

namespace octavo {

class KVCacheManager;

// A prompt position of a request with prompt_logprobs: its logits score prompt token
// position + 1.
struct PromptLogprobsRow {
  const Request* request = nullptr;
  int32_t position = 0;
};

class StepInputs {
 public:
  StepInputs(Backend& backend, int32_t max_num_tokens, int32_t max_num_seqs, int32_t max_blocks_per_seq);

  // Fills the staging area from the scheduler's decision, copies it to the device and
  // returns the forward's inputs. sampling_rows receives, in logit-row order, the
  // requests whose computed tokens reach their token count this step; prompt_rows, in
  // the logit-row order that follows, the prompt positions of this step whose logprobs a
  // request still lacks (before its last prompt token).
  ForwardInputs build(const SchedulerOutput& scheduled, const KVCacheManager& kv_cache,
                      std::vector<const Request*>& sampling_rows,
                      std::vector<PromptLogprobsRow>& prompt_rows);

  // A step of num_tokens prompt tokens in rows of at most max_seq_len, for the start-up
  // profiling forward: no KV is written (slots -1), every block table entry is block 0, and
  // each row's last token needs logits.
  ForwardInputs profile(int32_t num_tokens, int32_t max_seq_len);

  // Decode steps replayed from a CUDA graph read their inputs from a second area whose
  // layout is fixed for up to max_graph_rows rows, so every replay finds them where the
  // capture saw them. A step of n decode rows is padded to `padded_rows`: padding rows
  // read token 0 at position 0 over a one-key context in block 0, and write no KV
  // (slot -1); their logits are ignored. max_seq_len is max_model_len (grids are sized
  // for any context; the kernels read each row's real length).
  void enable_graph_inputs(int32_t max_graph_rows, int32_t max_model_len);
  // Inputs of a padded pure-decode step (every scheduled request computes its last token).
  ForwardInputs build_graph_decode(const SchedulerOutput& scheduled, const KVCacheManager& kv_cache,
                                   std::vector<const Request*>& sampling_rows, int32_t padded_rows);
  // The same layout with padding rows only, for warm-up and capture.
  ForwardInputs graph_dummy(int32_t padded_rows);

 private:
  ForwardInputs graph_inputs(int32_t padded_rows) const;
  // Fills and copies the graph area: rows from `out` (none when null), then padding.
  ForwardInputs fill_graph_rows(const SchedulerOutput* out, const KVCacheManager* kv_cache,
                                std::vector<const Request*>& sampling_rows, int32_t padded_rows);
  int32_t* graph_field(size_t offset) const;

  Backend& backend_;
  int32_t max_num_tokens_;
  int32_t max_num_seqs_;
  int32_t max_blocks_per_seq_;
  Buffer staging_;  // pinned host memory where the backend has it
  size_t staging_bytes_ = 0;
  Buffer device_;

  // The fixed decode-graph area (enable_graph_inputs).
  int32_t max_graph_rows_ = 0;
  int32_t graph_max_seq_len_ = 0;
  Buffer graph_staging_;
  Buffer graph_device_;
  size_t g_tokens_ = 0, g_positions_ = 0, g_slots_ = 0, g_qsl_ = 0, g_lens_ = 0, g_logits_ = 0,
         g_tables_ = 0;
};

}  // namespace octavo
