#include "engine/step_inputs.h"

#include <algorithm>
#include <cstring>
#include <string>

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

// Where each array sits in a staging area (the same offsets on the device).
struct Offsets {
  size_t tokens, positions, slots, query_start, seq_lens, tables, logit_rows;
};

// The step's arrays, carved from a staging area in one order; `o` receives their offsets.
struct StepArrays {
  int32_t* tokens;
  int32_t* positions;
  int64_t* slots;
  int32_t* query_start;
  int32_t* seq_lens;
  int32_t* tables;
  int32_t* logit_rows;
};

StepArrays carve(Packer& packer, Offsets& o, size_t num_tokens, size_t num_seqs, size_t blocks_per_seq,
                 size_t num_logit_rows) {
  StepArrays a;
  a.tokens = packer.take<int32_t>(num_tokens, o.tokens);
  a.positions = packer.take<int32_t>(num_tokens, o.positions);
  a.slots = packer.take<int64_t>(num_tokens, o.slots);
  a.query_start = packer.take<int32_t>(num_seqs + 1, o.query_start);
  a.seq_lens = packer.take<int32_t>(num_seqs, o.seq_lens);
  a.tables = packer.take<int32_t>(num_seqs * blocks_per_seq, o.tables);
  a.logit_rows = packer.take<int32_t>(num_logit_rows, o.logit_rows);
  return a;
}

ForwardInputs inputs_at(const void* device_base, const Offsets& o, int32_t num_tokens, int32_t num_seqs,
                        int32_t blocks_per_seq, int32_t max_query_len, int32_t max_seq_len,
                        int32_t num_logit_rows) {
  const char* base = static_cast<const char*>(device_base);
  ForwardInputs in;
  in.num_tokens = num_tokens;
  in.token_ids = reinterpret_cast<const int32_t*>(base + o.tokens);
  in.positions = reinterpret_cast<const int32_t*>(base + o.positions);
  in.slot_mapping = reinterpret_cast<const int64_t*>(base + o.slots);
  in.attention.num_seqs = num_seqs;
  in.attention.query_start_loc = reinterpret_cast<const int32_t*>(base + o.query_start);
  in.attention.seq_lens = reinterpret_cast<const int32_t*>(base + o.seq_lens);
  in.attention.block_tables = reinterpret_cast<const int32_t*>(base + o.tables);
  in.attention.max_blocks_per_seq = blocks_per_seq;
  in.attention.max_query_len = max_query_len;
  in.attention.max_seq_len = max_seq_len;
  in.num_logit_rows = num_logit_rows;
  in.logit_indices = reinterpret_cast<const int32_t*>(base + o.logit_rows);
  return in;
}
}  // namespace

StepInputs::StepInputs(Backend& backend, int32_t max_num_tokens, int32_t max_num_seqs,
                       int32_t max_blocks_per_seq)
    : backend_(backend),
      max_num_tokens_(max_num_tokens),
      max_num_seqs_(max_num_seqs),
      max_blocks_per_seq_(max_blocks_per_seq) {
  const size_t t = static_cast<size_t>(max_num_tokens);
  const size_t s = static_cast<size_t>(max_num_seqs);
  // Logit rows are distinct tokens of the step, so at most max_num_tokens of them.
  const size_t bytes = align_up(t * 4) * 3 + align_up(t * 8) + align_up((s + 1) * 4) +
                       align_up(s * 4) + align_up(s * static_cast<size_t>(max_blocks_per_seq) * 4);
  staging_ = backend_.allocate_host(bytes);
  staging_bytes_ = bytes;
  device_ = backend_.allocate(bytes);
}

ForwardInputs StepInputs::build(const SchedulerOutput& out, const KVCacheManager& kv_cache,
                                std::vector<const Request*>& sampling_rows,
                                std::vector<PromptLogprobsRow>& prompt_rows) {
  const int32_t num_seqs = static_cast<int32_t>(out.scheduled.size());
  const int32_t num_tokens = out.num_batched_tokens;
  if (num_seqs > max_num_seqs_ || num_tokens > max_num_tokens_) throw Error("StepInputs: step too large");
  int32_t blocks_per_seq = 1;
  for (const ScheduledRequest& s : out.scheduled) {
    blocks_per_seq = std::max<int32_t>(blocks_per_seq, static_cast<int32_t>(kv_cache.block_table(s.request->id).size()));
  }
  if (blocks_per_seq > max_blocks_per_seq_) throw Error("StepInputs: block table too long");

  Packer packer(static_cast<char*>(staging_.data()), staging_bytes_);
  Offsets offsets;
  const auto [tokens, positions, slots, query_start, seq_lens, tables, logit_rows] =
      carve(packer, offsets, num_tokens, num_seqs, blocks_per_seq, num_tokens);

  const int32_t block_size = kv_cache.block_size();
  sampling_rows.clear();
  prompt_rows.clear();
  std::vector<int32_t> prompt_row_tokens;  // packed-token index of each prompt row
  int32_t t = 0, max_query = 0, max_seq = 0;
  for (int32_t i = 0; i < num_seqs; ++i) {
    const Request& r = *out.scheduled[i].request;
    const int32_t n = out.scheduled[i].num_new_tokens;
    const int64_t start = r.num_computed_tokens;
    const std::vector<int32_t>& table = kv_cache.block_table(r.id);
    query_start[i] = t;
    if (r.params.prompt_logprobs >= 0) {
      // Positions [start, start + n) before the last prompt token, less those already scored.
      const int64_t have = static_cast<int64_t>(r.prompt_logprobs.size());
      if (start > have && have < r.num_prompt_tokens - 1) {
        throw Error("StepInputs: request " + std::to_string(r.id) + " skips prompt positions " +
                    std::to_string(have) + ".." + std::to_string(start - 1) +
                    " that its prompt_logprobs need (a prefix cache must not serve it)");
      }
      const int64_t end = std::min<int64_t>(start + n, r.num_prompt_tokens - 1);
      for (int64_t pos = std::max(start, have); pos < end; ++pos) {
        prompt_rows.push_back({&r, static_cast<int32_t>(pos)});
        prompt_row_tokens.push_back(t + static_cast<int32_t>(pos - start));
      }
    }
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
  std::copy(prompt_row_tokens.begin(), prompt_row_tokens.end(), logit_rows + sampling_rows.size());

  backend_.copy_to_device(device_.data(), staging_.data(), packer.used());
  ForwardInputs in = inputs_at(device_.data(), offsets,
                               num_tokens, num_seqs, blocks_per_seq, max_query, max_seq,
                               static_cast<int32_t>(sampling_rows.size()));
  in.num_prompt_logprob_rows = static_cast<int32_t>(prompt_rows.size());
  return in;
}

ForwardInputs StepInputs::profile(int32_t num_tokens, int32_t max_seq_len) {
  const int32_t num_seqs = (num_tokens + max_seq_len - 1) / max_seq_len;
  if (num_tokens <= 0 || num_tokens > max_num_tokens_ || num_seqs > max_num_seqs_) {
    throw Error("StepInputs: profile step too large");
  }
  const int32_t blocks_per_seq = max_blocks_per_seq_;
  Packer packer(static_cast<char*>(staging_.data()), staging_bytes_);
  Offsets offsets;
  const auto [tokens, positions, slots, query_start, seq_lens, tables, logit_rows] =
      carve(packer, offsets, num_tokens, num_seqs, blocks_per_seq, num_seqs);
  std::fill(tables, tables + static_cast<size_t>(num_seqs) * blocks_per_seq, 0);
  int32_t t = 0, max_query = 0;
  for (int32_t i = 0; i < num_seqs; ++i) {
    const int32_t n = std::min(max_seq_len, num_tokens - t);
    query_start[i] = t;
    for (int32_t j = 0; j < n; ++j, ++t) {
      tokens[t] = 0;
      positions[t] = j;
      slots[t] = -1;
    }
    seq_lens[i] = n;
    logit_rows[i] = t - 1;
    max_query = std::max(max_query, n);
  }
  query_start[num_seqs] = t;
  backend_.copy_to_device(device_.data(), staging_.data(), packer.used());
  return inputs_at(device_.data(), offsets, num_tokens,
                   num_seqs, blocks_per_seq, max_query, max_query, num_seqs);
}

void StepInputs::enable_graph_inputs(int32_t max_graph_rows, int32_t max_model_len) {
  max_graph_rows_ = max_graph_rows;
  graph_max_seq_len_ = max_model_len;
  const size_t g = static_cast<size_t>(max_graph_rows);
  // The block tables come last, so a step copies only the rows it uses of them.
  size_t at = 0;
  auto region = [&](size_t bytes) {
    const size_t offset = at;
    at = align_up(at + bytes);
    return offset;
  };
  g_tokens_ = region(g * 4);
  g_positions_ = region(g * 4);
  g_slots_ = region(g * 8);
  g_qsl_ = region((g + 1) * 4);
  g_lens_ = region(g * 4);
  g_logits_ = region(g * 4);
  g_tables_ = region(g * static_cast<size_t>(max_blocks_per_seq_) * 4);
  graph_staging_ = backend_.allocate_host(at);
  graph_device_ = backend_.allocate(at);
}

int32_t* StepInputs::graph_field(size_t offset) const {
  return reinterpret_cast<int32_t*>(static_cast<char*>(graph_staging_.data()) + offset);
}

ForwardInputs StepInputs::graph_inputs(int32_t padded_rows) const {
  return inputs_at(graph_device_.data(), {g_tokens_, g_positions_, g_slots_, g_qsl_, g_lens_, g_tables_, g_logits_},
                   padded_rows, padded_rows, max_blocks_per_seq_, 1, graph_max_seq_len_, padded_rows);
}

ForwardInputs StepInputs::build_graph_decode(const SchedulerOutput& out, const KVCacheManager& kv_cache,
                                             std::vector<const Request*>& sampling_rows, int32_t padded_rows) {
  return fill_graph_rows(&out, &kv_cache, sampling_rows, padded_rows);
}

ForwardInputs StepInputs::fill_graph_rows(const SchedulerOutput* out, const KVCacheManager* kv_cache,
                                          std::vector<const Request*>& sampling_rows, int32_t padded_rows) {
  const int32_t n = out != nullptr ? static_cast<int32_t>(out->scheduled.size()) : 0;
  if (max_graph_rows_ == 0 || padded_rows > max_graph_rows_ || n > padded_rows) {
    throw Error("StepInputs: decode step does not fit the graph inputs");
  }
  int32_t* tokens = graph_field(g_tokens_);
  int32_t* positions = graph_field(g_positions_);
  auto* slots = reinterpret_cast<int64_t*>(graph_field(g_slots_));
  int32_t* query_start = graph_field(g_qsl_);
  int32_t* seq_lens = graph_field(g_lens_);
  int32_t* logit_rows = graph_field(g_logits_);
  int32_t* tables = graph_field(g_tables_);
  const size_t stride = static_cast<size_t>(max_blocks_per_seq_);
  sampling_rows.clear();
  for (int32_t i = 0; i < padded_rows; ++i) {
    query_start[i] = i;
    logit_rows[i] = i;
    int32_t* row_table = tables + i * stride;
    if (i >= n) {
      tokens[i] = 0;
      positions[i] = 0;
      slots[i] = -1;
      seq_lens[i] = 1;
      row_table[0] = 0;
      continue;
    }
    const Request& r = *out->scheduled[i].request;
    const int64_t pos = r.num_computed_tokens;
    if (out->scheduled[i].num_new_tokens != 1 || pos + 1 != r.num_tokens()) {
      throw Error("StepInputs: a graph step has a row that is not a decode");
    }
    const int32_t block_size = kv_cache->block_size();
    const std::vector<int32_t>& table = kv_cache->block_table(r.id);
    if (table.size() > stride) throw Error("StepInputs: block table too long");
    tokens[i] = r.token_ids[pos];
    positions[i] = static_cast<int32_t>(pos);
    slots[i] = static_cast<int64_t>(table[pos / block_size]) * block_size + pos % block_size;
    seq_lens[i] = static_cast<int32_t>(pos + 1);
    std::copy(table.begin(), table.end(), row_table);
    sampling_rows.push_back(&r);
  }
  query_start[padded_rows] = padded_rows;
  // Table entries past a row's length are never read (seq_lens bounds every kernel).
  const size_t bytes = g_tables_ + static_cast<size_t>(padded_rows) * stride * 4;
  backend_.copy_to_device(graph_device_.data(), graph_staging_.data(), bytes);
  return graph_inputs(padded_rows);
}

ForwardInputs StepInputs::graph_dummy(int32_t padded_rows) {
  if (max_graph_rows_ == 0 || padded_rows > max_graph_rows_) throw Error("StepInputs: no graph inputs");
  std::vector<const Request*> rows;
  return fill_graph_rows(nullptr, nullptr, rows, padded_rows);
}

}  // namespace octavo
