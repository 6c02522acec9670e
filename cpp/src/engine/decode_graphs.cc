#include "engine/decode_graphs.h"

#include <algorithm>

#include "engine/step_inputs.h"
#include "octavo/errors.h"
#include "scheduler/scheduler.h"

namespace octavo {

namespace {
// vLLM's largest captured batch: past it a decode step is long enough that launches hide.
constexpr int32_t kMaxCaptureSize = 512;
}  // namespace

std::vector<int32_t> DecodeGraphs::capture_sizes(int32_t max_num_seqs) {
  const int32_t limit = std::min(max_num_seqs, kMaxCaptureSize);
  std::vector<int32_t> sizes;
  for (int32_t s : {1, 2, 4}) {
    if (s <= limit) sizes.push_back(s);
  }
  for (int32_t s = 8; s <= limit; s += 8) sizes.push_back(s);
  if (sizes.empty() || sizes.back() < limit) sizes.push_back(limit);
  return sizes;
}

DecodeGraphs::DecodeGraphs(Backend& backend, DecoderModel& model, KVCache& cache, StepInputs& inputs,
                           int32_t max_num_seqs, int32_t max_model_len)
    : backend_(backend), inputs_(inputs) {
  const std::vector<int32_t> sizes = capture_sizes(max_num_seqs);
  // Probe: a backend that cannot record returns no graph and nothing else is set up.
  if (backend_.capture([] {}) == nullptr) return;
  inputs_.enable_graph_inputs(sizes.back(), max_model_len);
  int64_t used_before = 0, total = 0, used_after = 0;
  backend_.synchronize();
  backend_.memory_info(used_before, total);
  // Largest first: any lazily created library state is sized by the largest shape.
  for (auto it = sizes.rbegin(); it != sizes.rend(); ++it) {
    const int32_t size = *it;
    const ForwardInputs in = inputs_.graph_dummy(size);
    // One eager run first, so that library plans (cuBLASLt heuristics) and lazily loaded
    // kernels exist before recording; the padding rows write no KV. Then the GEMM tuning
    // rounds: the same forward again per candidate algorithm of its shapes.
    model.forward(in, cache);
    while (backend_.begin_gemm_tuning_round()) {
      model.forward(in, cache);
      backend_.end_gemm_tuning_round();
    }
    Entry entry;
    entry.graph = backend_.capture([&] { entry.logits = model.forward(in, cache); });
    graphs_.emplace(size, std::move(entry));
  }
  backend_.synchronize();
  backend_.memory_info(used_after, total);
  memory_bytes_ = std::max<int64_t>(0, used_after - used_before);
}

bool DecodeGraphs::can_run(const SchedulerOutput& scheduled) const {
  if (graphs_.empty() || scheduled.scheduled.empty()) return false;
  const int32_t n = static_cast<int32_t>(scheduled.scheduled.size());
  if (n > graphs_.rbegin()->first) return false;
  for (const ScheduledRequest& s : scheduled.scheduled) {
    if (s.num_new_tokens != 1 || s.request->num_computed_tokens + 1 != s.request->num_tokens()) return false;
  }
  return true;
}

Tensor DecodeGraphs::run(const SchedulerOutput& scheduled, const KVCacheManager& kv_cache,
                         std::vector<const Request*>& sampling_rows) {
  const int32_t n = static_cast<int32_t>(scheduled.scheduled.size());
  auto it = graphs_.lower_bound(n);
  if (it == graphs_.end()) throw Error("DecodeGraphs: no graph for a batch of " + std::to_string(n));
  inputs_.build_graph_decode(scheduled, kv_cache, sampling_rows, it->first);
  it->second.graph->replay();
  const Tensor& logits = it->second.logits;
  return Tensor(logits.data, logits.dtype, {n, logits.dim(1)}, logits.row_stride);
}

}  // namespace octavo
