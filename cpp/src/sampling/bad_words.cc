#include "sampling/bad_words.h"

#include <algorithm>

namespace octavo {

void append_bad_word_bans(const std::vector<std::vector<int32_t>>& bad_words, const int32_t* output,
                          int32_t num_output, std::vector<int32_t>& banned) {
  for (const std::vector<int32_t>& word : bad_words) {
    if (word.empty()) continue;
    const int32_t prefix = static_cast<int32_t>(word.size()) - 1;
    if (prefix > num_output) continue;
    if (std::equal(word.begin(), word.end() - 1, output + (num_output - prefix))) banned.push_back(word.back());
  }
}

}  // namespace octavo
