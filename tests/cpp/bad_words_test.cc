// bad_words matching against hand-worked cases of vLLM v1's rule: the last token of a bad
// word is banned when the output ends with the word's other tokens.
#include "sampling/bad_words.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

namespace octavo {
namespace {

std::vector<int32_t> bans(const std::vector<std::vector<int32_t>>& words, const std::vector<int32_t>& output) {
  std::vector<int32_t> banned = {99};  // appended to, never replaced
  append_bad_word_bans(words, output.data(), static_cast<int32_t>(output.size()), banned);
  return banned;
}

TEST(BadWordsTest, OneTokenWordIsAlwaysBanned) {
  EXPECT_EQ(bans({{7}}, {}), (std::vector<int32_t>{99, 7}));
  EXPECT_EQ(bans({{7}}, {1, 2, 3}), (std::vector<int32_t>{99, 7}));
}

TEST(BadWordsTest, LastTokenBannedOnlyAfterTheWholePrefix) {
  const std::vector<std::vector<int32_t>> words = {{4, 5, 6}};
  EXPECT_EQ(bans(words, {}), (std::vector<int32_t>{99}));          // output shorter than the prefix
  EXPECT_EQ(bans(words, {5}), (std::vector<int32_t>{99}));
  EXPECT_EQ(bans(words, {4}), (std::vector<int32_t>{99}));         // half the prefix
  EXPECT_EQ(bans(words, {4, 5}), (std::vector<int32_t>{99, 6}));
  EXPECT_EQ(bans(words, {1, 4, 5}), (std::vector<int32_t>{99, 6}));
  EXPECT_EQ(bans(words, {4, 5, 1}), (std::vector<int32_t>{99}));   // the prefix must end the output
  EXPECT_EQ(bans(words, {5, 4}), (std::vector<int32_t>{99}));      // order matters
}

TEST(BadWordsTest, EveryMatchingWordContributes) {
  const std::vector<std::vector<int32_t>> words = {{3, 8}, {8}, {2, 3, 9}, {1, 3, 10}};
  EXPECT_EQ(bans(words, {2, 3}), (std::vector<int32_t>{99, 8, 8, 9}));
}

}  // namespace
}  // namespace octavo
