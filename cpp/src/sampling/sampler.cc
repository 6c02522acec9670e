#include "sampling/sampler.h"

#include <utility>

namespace octavo {

Sampler::Sampler(Backend& backend, std::vector<int32_t> eos_token_ids)
    : backend_(backend), eos_token_ids_(std::move(eos_token_ids)) {}

SamplingRow Sampler::make_row(const Request& r) const {
  const SamplingParams& p = r.params;
  SamplingRow row;
  row.temperature = p.temperature;
  row.top_k = p.top_k;
  row.top_p = p.top_p;
  row.min_p = p.min_p;
  row.presence_penalty = p.presence_penalty;
  row.frequency_penalty = p.frequency_penalty;
  row.repetition_penalty = p.repetition_penalty;
  row.seed = r.seed;
  row.draw_index = static_cast<uint64_t>(r.num_output_tokens());
  row.num_logprobs = p.logprobs;
  row.prompt_tokens = r.token_ids.data();
  row.num_prompt_tokens = r.num_prompt_tokens;
  row.output_tokens = r.token_ids.data() + r.num_prompt_tokens;
  row.num_output_tokens = r.num_output_tokens();
  if (r.num_output_tokens() < p.min_tokens) {
    if (!p.ignore_eos) row.banned_tokens = eos_token_ids_;
    row.banned_tokens.insert(row.banned_tokens.end(), p.stop_token_ids.begin(), p.stop_token_ids.end());
  }
  return row;
}

std::vector<SampleResult> Sampler::sample(Tensor& logits, const std::vector<const Request*>& requests) {
  std::vector<SamplingRow> rows;
  rows.reserve(requests.size());
  for (const Request* r : requests) rows.push_back(make_row(*r));
  return backend_.sample(logits, rows);
}

}  // namespace octavo
