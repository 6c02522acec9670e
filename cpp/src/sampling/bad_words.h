// bad_words as vLLM v1 applies them: a bad word is a token sequence, and its last token is
// banned at a step when the output so far ends with the sequence's other tokens (a
// one-token word is always banned). Only output tokens count, never the prompt.
#pragma once

#include <cstdint>
#include <vector>

namespace octavo {

// Appends to `banned` the last token of each bad word whose prefix ends output[0, num_output).
void append_bad_word_bans(const std::vector<std::vector<int32_t>>& bad_words, const int32_t* output,
                          int32_t num_output, std::vector<int32_t>& banned);

}  // namespace octavo
