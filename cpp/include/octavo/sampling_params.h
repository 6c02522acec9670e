// Per-request sampling settings, with vLLM's names and defaults. The engine checks them
// with validate() when a request is added.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <vector>

namespace octavo {

struct SamplingParams {
  int32_t n = 1;                    // samples of the prompt, sharing its KV blocks; >= 1
  float temperature = 1.0f;         // 0 means greedy
  float top_p = 1.0f;               // (0, 1]
  int32_t top_k = 0;                // 0 or -1: disabled
  float min_p = 0.0f;               // [0, 1]
  float presence_penalty = 0.0f;    // [-2, 2], on output tokens
  float frequency_penalty = 0.0f;   // [-2, 2], on output tokens
  float repetition_penalty = 1.0f;  // > 0, on prompt and output tokens
  std::optional<uint64_t> seed;     // per-request stream; the engine seed otherwise
  int32_t max_tokens = 16;          // >= 1
  int32_t min_tokens = 0;           // EOS and stop ids are masked until reached
  bool ignore_eos = false;
  std::vector<int32_t> stop_token_ids;
  int32_t logprobs = -1;            // -1: none; N >= 0: sampled token plus top N
  // The caller checks a stop condition of its own on this request's tokens (stop strings,
  // found by detokenizing): step() reports the request every step it gains a token, not
  // only when it finishes, and Engine::finish_request ends it.
  bool report_new_tokens = false;
  int32_t prompt_logprobs = -1;     // -1: none; N >= 0: each prompt token plus top N
  std::map<int32_t, float> logit_bias;  // token id -> added to its logit
  // Only these ids may be sampled; nullopt allows all. An empty list is invalid (vLLM's rule).
  std::optional<std::vector<int32_t>> allowed_token_ids;
  // bad_words, already tokenized (vLLM tokenizes each word with and without a leading
  // space): the last id of a sequence is banned while the output ends with the others.
  std::vector<std::vector<int32_t>> bad_words_token_ids;

  // Throws InvalidArgument naming the field, its value and the allowed range; token ids
  // (stop, logit_bias, allowed, bad words) must lie in [0, vocab_size).
  void validate(int32_t vocab_size, int32_t max_logprobs) const;

  bool is_greedy() const { return temperature < 1e-5f; }
};

}  // namespace octavo
