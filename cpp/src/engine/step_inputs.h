// StepInputs: the flat arrays one forward needs (token ids, positions, slots, block tables,
// query offsets, sequence lengths, logit rows), packed into one host staging area and
// sent to the device with a single copy per step.
#pragma once

#include <cstdint>
#include <vector>

#include "backend/backend.h"
#include "model/decoder.h"
#include "scheduler/scheduler.h"

namespace octavo {

class KVCacheManager;

class StepInputs {
 public:
  StepInputs(Backend& backend, int32_t max_num_tokens, int32_t max_num_seqs, int32_t max_blocks_per_seq);

  // Fills the staging area from the scheduler's decision, copies it to the device and
  // returns the forward's inputs. sampling_rows receives, in logit-row order, the
  // requests whose computed tokens reach their token count this step.
  ForwardInputs build(const SchedulerOutput& scheduled, const KVCacheManager& kv_cache,
                      std::vector<const Request*>& sampling_rows);

 private:
  Backend& backend_;
  int32_t max_num_tokens_;
  int32_t max_num_seqs_;
  int32_t max_blocks_per_seq_;
  Buffer staging_;  // pinned host memory where the backend has it
  size_t staging_bytes_ = 0;
  Buffer device_;
};

}  // namespace octavo
