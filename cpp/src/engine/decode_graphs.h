// DecodeGraphs: pure-decode steps replayed from graphs recorded at start-up (CUDA graphs on
// the CUDA backend), one per padded batch size, so a decode step costs one launch instead
// of a dozen per layer. Sizes follow vLLM: 1, 2, 4, then every 8 up to max_num_seqs (at
// most 512). A step of n decode rows replays the smallest size >= n with padding rows.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "backend/backend.h"
#include "model/decoder.h"

namespace octavo {

class KVCacheManager;
class StepInputs;
struct SchedulerOutput;
struct Request;

class DecodeGraphs {
 public:
  // Warms up and records every size; records nothing when the backend has no graphs.
  DecodeGraphs(Backend& backend, DecoderModel& model, KVCache& cache, StepInputs& inputs,
               int32_t max_num_seqs, int32_t max_model_len);

  bool empty() const { return graphs_.empty(); }
  int32_t num_graphs() const { return static_cast<int32_t>(graphs_.size()); }
  // True when every scheduled row decodes one token and the batch fits a recorded size.
  bool can_run(const SchedulerOutput& scheduled) const;
  // Replays the step; returns logits [scheduled rows, vocab] and fills sampling_rows.
  Tensor run(const SchedulerOutput& scheduled, const KVCacheManager& kv_cache,
             std::vector<const Request*>& sampling_rows);
  // Device memory the recorded graphs took (measured around the capture).
  int64_t memory_bytes() const { return memory_bytes_; }

  static std::vector<int32_t> capture_sizes(int32_t max_num_seqs);

 private:
  struct Entry {
    std::unique_ptr<BackendGraph> graph;
    Tensor logits;  // where the recorded forward leaves its logits
  };
  Backend& backend_;
  StepInputs& inputs_;
  std::map<int32_t, Entry> graphs_;  // by padded size
  int64_t memory_bytes_ = 0;
};

}  // namespace octavo
