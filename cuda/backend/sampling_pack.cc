#include "backend/sampling_pack.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <string>

#include "octavo/errors.h"

namespace octavo {

namespace {

void check_token(int32_t id, int32_t vocab, const char* what) {
  if (id < 0 || id >= vocab) {
    throw InvalidArgument(std::string("sampling: ") + what + " token id " + std::to_string(id) +
                          " outside the vocabulary of " + std::to_string(vocab));
  }
}

size_t align8(size_t n) { return (n + 7) / 8 * 8; }

// Offsets into the edit and allowed lists are int32 in the kernel's row params.
constexpr size_t kMaxListEntries = static_cast<size_t>(std::numeric_limits<int32_t>::max());

}  // namespace

void pack_sampling_rows(const std::vector<SamplingRow>& rows, int32_t vocab, SamplingPack& pack) {
  pack.params.clear();
  pack.edits.clear();
  pack.top_stride = 0;
  if (pack.stamp.size() != static_cast<size_t>(vocab)) {
    pack.stamp.assign(static_cast<size_t>(vocab), 0u);
    pack.slot.assign(static_cast<size_t>(vocab), 0);
    pack.generation = 0;
  }
  pack.allowed.clear();
  for (const SamplingRow& row : rows) {
    if (++pack.generation == 0) {  // wrapped: forget every stamp
      std::fill(pack.stamp.begin(), pack.stamp.end(), 0u);
      pack.generation = 1;
    }
    const size_t begin = pack.edits.size();
    // This row's edit of token id, created on first sight.
    auto edit_of = [&](int32_t id) -> cuda::SamplingEdit& {
      if (pack.stamp[id] != pack.generation) {
        pack.stamp[id] = pack.generation;
        pack.slot[id] = static_cast<int32_t>(pack.edits.size() - begin);
        pack.edits.push_back(cuda::SamplingEdit{id, 0, 0u, 0.0f});
      }
      return pack.edits[begin + pack.slot[id]];
    };
    // The lists in the order cpu::process_logits reads (and checks) them.
    const size_t allowed_begin = pack.allowed.size();
    for (int32_t i = 0; i < row.num_allowed_tokens; ++i) {
      check_token(row.allowed_tokens[i], vocab, "allowed");
      pack.allowed.push_back(row.allowed_tokens[i]);
    }
    for (const int32_t id : row.banned_tokens) {
      check_token(id, vocab, "banned");
      edit_of(id).flags |= cuda::kSamplingEditBanned;
    }
    for (int32_t i = 0; i < row.num_logit_bias; ++i) {
      check_token(row.logit_bias_tokens[i], vocab, "logit_bias");
      cuda::SamplingEdit& edit = edit_of(row.logit_bias_tokens[i]);
      edit.flags |= cuda::kSamplingEditBias;
      edit.bias = row.logit_bias_values[i];
    }
    // The same conditions under which cpu::apply_penalties reads each list.
    const bool repetition = row.repetition_penalty != 1.0f;
    const bool counts = (row.frequency_penalty != 0.0f || row.presence_penalty != 0.0f) && row.num_output_tokens > 0;
    if (repetition) {
      for (int32_t i = 0; i < row.num_prompt_tokens; ++i) {
        check_token(row.prompt_tokens[i], vocab, "history");
        edit_of(row.prompt_tokens[i]).flags |= cuda::kSamplingEditRepetition;
      }
    }
    if (repetition || counts) {
      for (int32_t i = 0; i < row.num_output_tokens; ++i) {
        check_token(row.output_tokens[i], vocab, repetition ? "history" : "output");
        cuda::SamplingEdit& edit = edit_of(row.output_tokens[i]);
        if (repetition) edit.flags |= cuda::kSamplingEditRepetition;
        if (counts) ++edit.output_count;
      }
    }
    if (pack.edits.size() > kMaxListEntries || pack.allowed.size() > kMaxListEntries) {
      throw InvalidArgument("sampling: more than 2^31 sparse logit edits or allowed ids in one batch");
    }

    cuda::SamplingRowParams p{};
    p.temperature = row.temperature;
    p.top_p = row.top_p;
    p.min_p = row.min_p;
    p.presence_penalty = row.presence_penalty;
    p.frequency_penalty = row.frequency_penalty;
    p.repetition_penalty = row.repetition_penalty;
    p.top_k = row.top_k;
    p.num_logprobs = row.num_logprobs;
    p.seed = row.seed;
    p.draw_index = row.draw_index;
    p.edit_begin = static_cast<int32_t>(begin);
    p.num_edits = static_cast<int32_t>(pack.edits.size() - begin);
    p.allowed_begin = static_cast<int32_t>(allowed_begin);
    p.num_allowed = row.num_allowed_tokens;
    p.given_token = -1;
    pack.params.push_back(p);
    pack.top_stride = std::max(pack.top_stride, std::min(row.num_logprobs, vocab));
  }
}

void pack_logprobs_rows(const std::vector<LogprobsRow>& rows, int32_t vocab, SamplingPack& pack) {
  pack.params.clear();
  pack.edits.clear();
  pack.allowed.clear();
  pack.top_stride = 0;
  for (const LogprobsRow& row : rows) {
    check_token(row.token, vocab, "logprobs");
    if (row.num_logprobs < 0) throw InvalidArgument("compute_logprobs: num_logprobs must be >= 0");
    cuda::SamplingRowParams p{};
    p.temperature = 1.0f;
    p.top_p = 1.0f;
    p.repetition_penalty = 1.0f;
    p.num_logprobs = row.num_logprobs;
    p.given_token = row.token;
    pack.params.push_back(p);
    pack.top_stride = std::max(pack.top_stride, std::min(row.num_logprobs, vocab));
  }
}

SamplingLayout sampling_layout(size_t rows, size_t edits, size_t allowed, int32_t top_stride) {
  SamplingLayout l;
  l.params = 0;
  l.edits = align8(rows * sizeof(cuda::SamplingRowParams));
  l.allowed = l.edits + edits * sizeof(cuda::SamplingEdit);
  l.upload_bytes = l.allowed + allowed * sizeof(int32_t);
  l.edit_scratch = align8(l.upload_bytes);
  l.device_input_bytes = l.edit_scratch + edits * sizeof(float);
  const size_t top = rows * static_cast<size_t>(std::max(top_stride, 0));
  l.tokens = 0;
  l.top_tokens = rows * sizeof(cuda::SampledToken);
  l.top_logprobs = l.top_tokens + top * sizeof(int32_t);
  l.result_bytes = l.top_logprobs + top * sizeof(float);
  return l;
}

SamplingLayout sampling_layout(const SamplingPack& pack) {
  return sampling_layout(pack.params.size(), pack.edits.size(), pack.allowed.size(), pack.top_stride);
}

void write_sampling_upload(const SamplingPack& pack, const SamplingLayout& layout, void* staging) {
  char* out = static_cast<char*>(staging);
  std::memcpy(out + layout.params, pack.params.data(), pack.params.size() * sizeof(cuda::SamplingRowParams));
  std::memcpy(out + layout.edits, pack.edits.data(), pack.edits.size() * sizeof(cuda::SamplingEdit));
  std::memcpy(out + layout.allowed, pack.allowed.data(), pack.allowed.size() * sizeof(int32_t));
}

std::vector<SampleResult> unpack_sampling_results(const std::vector<int32_t>& num_logprobs, int32_t vocab,
                                                  const SamplingLayout& layout, int32_t top_stride,
                                                  const void* results) {
  const char* base = static_cast<const char*>(results);
  const auto* tokens = reinterpret_cast<const cuda::SampledToken*>(base + layout.tokens);
  const auto* top_tokens = reinterpret_cast<const int32_t*>(base + layout.top_tokens);
  const auto* top_logprobs = reinterpret_cast<const float*>(base + layout.top_logprobs);
  std::vector<SampleResult> out(num_logprobs.size());
  for (size_t r = 0; r < num_logprobs.size(); ++r) {
    const cuda::SampledToken& t = tokens[r];
    switch (t.status) {
      case cuda::kSampleOk: break;
      case cuda::kSampleGreedyNoFiniteLogit:
        throw Error("sampling: a greedy row has no finite logit (all banned or NaN)");
      case cuda::kSampleNoFiniteLogit: throw Error("sampling: no finite logit left to sample from");
      case cuda::kSampleNotFinite: throw Error("sampling: logits are not finite");
      default: throw Error("sampling: the GPU sampler returned status " + std::to_string(t.status));
    }
    SampleResult& res = out[r];
    res.token = t.token;
    if (num_logprobs[r] < 0) continue;
    res.logprob = t.logprob;
    res.rank = t.rank;
    const int32_t n = std::min(num_logprobs[r], vocab);
    const size_t at = r * static_cast<size_t>(top_stride);
    res.top_tokens.assign(top_tokens + at, top_tokens + at + n);
    res.top_logprobs.assign(top_logprobs + at, top_logprobs + at + n);
  }
  return out;
}

}  // namespace octavo
