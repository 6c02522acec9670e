#include "engine/step_inputs.h"

#include <algorithm>
#include <cstring>

#include "kv_cache/kv_cache_manager.h"
#include "octavo/errors.h"

namespace octavo {

namespace {
constexpr size_t kAlign = 16;
size_t align_up(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

// Hands out aligned regions of the staging area; offsets are the same on the device.
class Packer {
 public:
  Packer(char* staging, size_t capacity) : staging_(staging), capacity_(capacity) {}
  template <typename T>
  T* take(size_t count, size_t& offset) {
    offset = used_;
    used_ = align_up(used_ + count * sizeof(T));
    if (used_ > capacity_) throw Error("StepInputs: staging area overflow");
    return reinterpret_cast<T*>(staging_ + offset);
  }
  size_t used() const { return used_; }

 private:
  char* staging_;
  size_t capacity_;
  size_t used_ = 0;
};
}  // namespace

StepInputs::StepInputs(Backend& backend, int32_t max_num_tokens, int32_t max_num_seqs,
                       int32_t max_blocks_per_seq)
    : backend_(backend),
      max_num_tokens_(max_num_tokens),
      max_num_seqs_(max_num_seqs),
      max_blocks_per_seq_(max_blocks_per_seq) {
  const size_t t = static_cast<size_t>(max_num_tokens);
  const size_t s = static_cast<size_t>(max_num_seqs);
  const size_t bytes = align_up(t * 4) * 2 + align_up(t * 8) + align_up((s + 1) * 4) +
                       align_up(s * 4) * 2 + align_up(s * static_cast<size_t>(max_blocks_per_seq) * 4);
  staging_ = backend_.allocate_host(bytes);
  staging_bytes_ = bytes;
  device_ = backend_.allocate(bytes);
}

ForwardInputs StepInputs::build(const SchedulerOutput& out, const KVCacheManager& kv_cache,
                                std::vector<const Request*>& sampling_rows) {
  const int32_t num_seqs = static_cast<int32_t>(out.scheduled.size());
  const int32_t num_tokens = out.num_batched_tokens;
  if (num_seqs > max_num_seqs_ || num_tokens > max_num_tokens_) throw Error("StepInputs: step too large");
  int32_t blocks_per_seq = 1;
  for (const ScheduledRequest& s : out.scheduled) {
    blocks_per_seq = std::max<int32_t>(blocks_per_seq, static_cast<int32_t>(kv_cache.block_table(s.request->id).size()));
  }
  if (blocks_per_seq > max_blocks_per_seq_) throw Error("StepInputs: block table too long");

  Packer packer(static_cast<char*>(staging_.data()), staging_bytes_);
  size_t o_tokens, o_positions, o_slots, o_qsl, o_lens, o_tables, o_logits;
  int32_t* tokens = packer.take<int32_t>(num_tokens, o_tokens);
  int32_t* positions = packer.take<int32_t>(num_tokens, o_positions);
  int64_t* slots = packer.take<int64_t>(num_tokens, o_slots);
  int32_t* query_start = packer.take<int32_t>(num_seqs + 1, o_qsl);
  int32_t* seq_lens = packer.take<int32_t>(num_seqs, o_lens);
  int32_t* tables = packer.take<int32_t>(static_cast<size_t>(num_seqs) * blocks_per_seq, o_tables);
  int32_t* logit_rows = packer.take<int32_t>(num_seqs, o_logits);

  const int32_t block_size = kv_cache.block_size();
  sampling_rows.clear();
  int32_t t = 0, max_query = 0, max_seq = 0;
  for (int32_t i = 0; i < num_seqs; ++i) {
    const Request& r = *out.scheduled[i].request;
    const int32_t n = out.scheduled[i].num_new_tokens;
    const int64_t start = r.num_computed_tokens;
    const std::vector<int32_t>& table = kv_cache.block_table(r.id);
    query_start[i] = t;
    for (int32_t j = 0; j < n; ++j, ++t) {
      const int64_t pos = start + j;
      tokens[t] = r.token_ids[pos];
      positions[t] = static_cast<int32_t>(pos);
      slots[t] = static_cast<int64_t>(table[pos / block_size]) * block_size + pos % block_size;
    }
    seq_lens[i] = static_cast<int32_t>(start + n);
    std::copy(table.begin(), table.end(), tables + static_cast<size_t>(i) * blocks_per_seq);
    std::fill(tables + static_cast<size_t>(i) * blocks_per_seq + table.size(),
              tables + static_cast<size_t>(i + 1) * blocks_per_seq, 0);
    if (start + n == r.num_tokens()) {
      logit_rows[sampling_rows.size()] = t - 1;
      sampling_rows.push_back(&r);
    }
    max_query = std::max(max_query, n);
    max_seq = std::max(max_seq, seq_lens[i]);
  }
  query_start[num_seqs] = t;

  backend_.copy_to_device(device_.data(), staging_.data(), packer.used());
  const char* base = static_cast<const char*>(device_.data());
  ForwardInputs in;
  in.num_tokens = num_tokens;
  in.token_ids = reinterpret_cast<const int32_t*>(base + o_tokens);
  in.positions = reinterpret_cast<const int32_t*>(base + o_positions);
  in.slot_mapping = reinterpret_cast<const int64_t*>(base + o_slots);
  in.attention.num_seqs = num_seqs;
  in.attention.query_start_loc = reinterpret_cast<const int32_t*>(base + o_qsl);
  in.attention.seq_lens = reinterpret_cast<const int32_t*>(base + o_lens);
  in.attention.block_tables = reinterpret_cast<const int32_t*>(base + o_tables);
  in.attention.max_blocks_per_seq = blocks_per_seq;
  in.attention.max_query_len = max_query;
  in.attention.max_seq_len = max_seq;
  in.num_logit_rows = static_cast<int32_t>(sampling_rows.size());
  in.logit_indices = reinterpret_cast<const int32_t*>(base + o_logits);
  return in;
}

}  // namespace octavo
