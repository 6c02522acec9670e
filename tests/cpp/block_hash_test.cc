#include "kv_cache/block_hash.h"

#include <gtest/gtest.h>

#include <set>
#include <utility>
#include <vector>

namespace octavo {
namespace {

BlockHash hash_of(const BlockHash& parent, const std::vector<int32_t>& tokens, uint64_t extra = 0) {
  return hash_block_tokens(parent, tokens.data(), static_cast<int32_t>(tokens.size()), extra);
}

TEST(BlockHash, SameParentTokensAndKeyGiveTheSameHash) {
  const BlockHash a = hash_of(kRootBlockHash, {1, 2, 3, 4});
  EXPECT_EQ(a, hash_of(kRootBlockHash, {1, 2, 3, 4}));
  EXPECT_EQ(hash_of(a, {5, 6}), hash_of(hash_of(kRootBlockHash, {1, 2, 3, 4}), {5, 6}));
}

TEST(BlockHash, EveryInputChangesTheHash) {
  const BlockHash base = hash_of(kRootBlockHash, {1, 2, 3, 4});
  EXPECT_NE(base, hash_of(kRootBlockHash, {1, 2, 3, 5}));           // a token
  EXPECT_NE(base, hash_of(kRootBlockHash, {2, 1, 3, 4}));           // the order
  EXPECT_NE(base, hash_of(kRootBlockHash, {1, 2, 3}));              // the length
  EXPECT_NE(base, hash_of(kRootBlockHash, {1, 2, 3, 4}, 7));        // the extra key (LoRA id)
  const BlockHash other_parent = hash_of(kRootBlockHash, {9});
  EXPECT_NE(hash_of(kRootBlockHash, {5, 6}), hash_of(other_parent, {5, 6}));  // the prefix
}

TEST(BlockHash, NoCollisionsAmongManySimilarBlocksInEitherHalf) {
  // Blocks one token apart, and chains one block apart: every half of every hash distinct.
  std::set<uint64_t> his, los;
  int count = 0;
  BlockHash parent = kRootBlockHash;
  for (int32_t chain = 0; chain < 50; ++chain) {
    for (int32_t t = 0; t < 400; ++t) {
      const BlockHash h = hash_of(parent, {t, t + 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, chain});
      his.insert(h.hi);
      los.insert(h.lo);
      ++count;
    }
    parent = hash_of(parent, {chain});
  }
  EXPECT_EQ(static_cast<int>(his.size()), count);
  EXPECT_EQ(static_cast<int>(los.size()), count);
}

}  // namespace
}  // namespace octavo
