#include "backend/sampling_pack.h"

#include <algorithm>
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
        pack.edits.push_back(cuda::SamplingEdit{id, 0, 0u});
      }
      return pack.edits[begin + pack.slot[id]];
    };
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
    for (const int32_t id : row.banned_tokens) {
      check_token(id, vocab, "banned");
      edit_of(id).flags |= cuda::kSamplingEditBanned;
    }
    if (pack.edits.size() > static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
      throw InvalidArgument("sampling: more than 2^31 sparse logit edits in one batch");
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
    pack.params.push_back(p);
    pack.top_stride = std::max(pack.top_stride, std::min(row.num_logprobs, vocab));
  }
}

SamplingLayout sampling_layout(size_t rows, size_t edits, int32_t top_stride) {
  SamplingLayout l;
  l.params = 0;
  l.edits = align8(rows * sizeof(cuda::SamplingRowParams));
  l.upload_bytes = l.edits + edits * sizeof(cuda::SamplingEdit);
  l.edit_scratch = align8(l.upload_bytes);
  l.device_input_bytes = l.edit_scratch + edits * sizeof(float);
  const size_t top = rows * static_cast<size_t>(std::max(top_stride, 0));
  l.tokens = 0;
  l.top_tokens = rows * sizeof(cuda::SampledToken);
  l.top_logprobs = l.top_tokens + top * sizeof(int32_t);
  l.result_bytes = l.top_logprobs + top * sizeof(float);
  return l;
}

std::vector<SampleResult> unpack_sampling_results(const std::vector<SamplingRow>& rows, int32_t vocab,
                                                  const SamplingLayout& layout, int32_t top_stride,
                                                  const void* results) {
  const char* base = static_cast<const char*>(results);
  const auto* tokens = reinterpret_cast<const cuda::SampledToken*>(base + layout.tokens);
  const auto* top_tokens = reinterpret_cast<const int32_t*>(base + layout.top_tokens);
  const auto* top_logprobs = reinterpret_cast<const float*>(base + layout.top_logprobs);
  std::vector<SampleResult> out(rows.size());
  for (size_t r = 0; r < rows.size(); ++r) {
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
    if (rows[r].num_logprobs < 0) continue;
    res.logprob = t.logprob;
    res.rank = t.rank;
    const int32_t n = std::min(rows[r].num_logprobs, vocab);
    const size_t at = r * static_cast<size_t>(top_stride);
    res.top_tokens.assign(top_tokens + at, top_tokens + at + n);
    res.top_logprobs.assign(top_logprobs + at, top_logprobs + at + n);
  }
  return out;
}

}  // namespace octavo
