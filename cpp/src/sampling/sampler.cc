#include "sampling/sampler.h"

#include <utility>

#include "sampling/bad_words.h"

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
  if (p.allowed_token_ids) {
    row.allowed_tokens = p.allowed_token_ids->data();
    row.num_allowed_tokens = static_cast<int32_t>(p.allowed_token_ids->size());
  }
  row.logit_bias_tokens = r.logit_bias_tokens.data();
  row.logit_bias_values = r.logit_bias_values.data();
  row.num_logit_bias = static_cast<int32_t>(r.logit_bias_tokens.size());
  append_bad_word_bans(p.bad_words_token_ids, row.output_tokens, row.num_output_tokens, row.banned_tokens);
  if (r.num_output_tokens() < p.min_tokens) {
    if (!p.ignore_eos) row.banned_tokens.insert(row.banned_tokens.end(), eos_token_ids_.begin(), eos_token_ids_.end());
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
