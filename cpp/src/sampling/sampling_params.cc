#include "octavo/sampling_params.h"

#include <cmath>
#include <sstream>
#include <string>
#include <vector>

#include "octavo/errors.h"

namespace octavo {

namespace {
// "[400, 512]": the offending ids, as vLLM lists them.
std::string id_list(const std::vector<int32_t>& ids) {
  std::ostringstream out;
  out << "[";
  for (size_t i = 0; i < ids.size(); ++i) out << (i ? ", " : "") << ids[i];
  out << "]";
  return out.str();
}

template <typename T>
[[noreturn]] void fail(const char* field, T value, const char* rule) {
  std::ostringstream out;
  out << field << " must be " << rule << ", got " << value;
  throw InvalidArgument(out.str());
}
}  // namespace

void SamplingParams::validate(int32_t vocab_size, int32_t max_logprobs) const {
  if (n < 1) fail("n", n, "at least 1");
  if (!(temperature >= 0.0f)) fail("temperature", temperature, "non-negative");
  if (!(top_p > 0.0f && top_p <= 1.0f)) fail("top_p", top_p, "in (0, 1]");
  if (top_k < -1) fail("top_k", top_k, "-1, 0 (disabled) or at least 1");
  if (!(min_p >= 0.0f && min_p <= 1.0f)) fail("min_p", min_p, "in [0, 1]");
  if (!(presence_penalty >= -2.0f && presence_penalty <= 2.0f)) fail("presence_penalty", presence_penalty, "in [-2, 2]");
  if (!(frequency_penalty >= -2.0f && frequency_penalty <= 2.0f)) fail("frequency_penalty", frequency_penalty, "in [-2, 2]");
  if (!(repetition_penalty > 0.0f)) fail("repetition_penalty", repetition_penalty, "greater than 0");
  if (max_tokens < 1) fail("max_tokens", max_tokens, "at least 1");
  if (min_tokens < 0) fail("min_tokens", min_tokens, "non-negative");
  if (min_tokens > max_tokens) fail("min_tokens", min_tokens, "at most max_tokens");
  if (logprobs < -1) fail("logprobs", logprobs, "non-negative");
  if (logprobs > max_logprobs) {
    std::ostringstream out;
    out << "logprobs " << logprobs << " exceeds the engine's max_logprobs of " << max_logprobs;
    throw InvalidArgument(out.str());
  }
  if (prompt_logprobs < -1) fail("prompt_logprobs", prompt_logprobs, "non-negative");
  if (prompt_logprobs > max_logprobs) {
    std::ostringstream out;
    out << "prompt_logprobs " << prompt_logprobs << " exceeds the engine's max_logprobs of " << max_logprobs;
    throw InvalidArgument(out.str());
  }
  auto outside = [vocab_size](int32_t id) { return id < 0 || id >= vocab_size; };
  std::vector<int32_t> bad_ids;
  for (const auto& [id, bias] : logit_bias) {
    if (outside(id)) bad_ids.push_back(id);
    if (!std::isfinite(bias)) fail("logit_bias value", bias, "finite");
  }
  if (!bad_ids.empty()) {
    throw InvalidArgument("token_id(s) " + id_list(bad_ids) +
                          " in logit_bias contain out-of-vocab token ids. Vocabulary size: " +
                          std::to_string(vocab_size));
  }
  if (allowed_token_ids) {
    if (allowed_token_ids->empty()) throw InvalidArgument("allowed_token_ids is not None and empty!");
    for (int32_t id : *allowed_token_ids) {
      if (outside(id)) bad_ids.push_back(id);
    }
    if (!bad_ids.empty()) {
      throw InvalidArgument("allowed_token_ids contains out-of-vocab token id(s) " + id_list(bad_ids) +
                            ". Vocabulary size: " + std::to_string(vocab_size));
    }
  }
  for (const std::vector<int32_t>& word : bad_words_token_ids) {
    if (word.empty()) throw InvalidArgument("bad_words_token_ids contains an empty token sequence");
    for (int32_t id : word) {
      if (outside(id)) bad_ids.push_back(id);
    }
  }
  if (!bad_ids.empty()) {
    throw InvalidArgument("The model vocabulary size is " + std::to_string(vocab_size) +
                          ", but the following tokens were specified as bad: " + id_list(bad_ids) +
                          ". All token id values should be integers satisfying: 0 <= token_id < " +
                          std::to_string(vocab_size) + ".");
  }
  for (int32_t id : stop_token_ids) {
    if (id < 0 || id >= vocab_size) {
      std::ostringstream out;
      out << "stop_token_ids contains " << id << ", outside the vocabulary [0, " << vocab_size << ")";
      throw InvalidArgument(out.str());
    }
  }
}

}  // namespace octavo
