#include "kv_cache/kv_cache_manager.h"

#include <gtest/gtest.h>

#include <vector>

#include "octavo/errors.h"

namespace octavo {
namespace {

using Table = std::vector<int32_t>;
using Copies = std::vector<std::pair<int32_t, int32_t>>;

// num_tokens distinct token ids for request id (ids never share content).
std::vector<int32_t> tokens_of(uint64_t id, int64_t num_tokens) {
  std::vector<int32_t> t;
  for (int64_t i = 0; i < num_tokens; ++i) t.push_back(static_cast<int32_t>(id * 1000 + i));
  return t;
}

// Grows the table of request id to hold num_tokens slots, as the old allocate_slots(id, n).
bool slots(KVCacheManager& kv, uint64_t id, int64_t num_tokens) {
  return kv.allocate_slots(id, tokens_of(id, num_tokens), 0, num_tokens);
}

TEST(KVCacheManager, BlocksForRoundsUpToWholeBlocks) {
  KVCacheManager kv(8, 4);
  EXPECT_EQ(kv.blocks_for(0), 0);
  EXPECT_EQ(kv.blocks_for(1), 1);
  EXPECT_EQ(kv.blocks_for(4), 1);
  EXPECT_EQ(kv.blocks_for(5), 2);
  EXPECT_EQ(kv.blocks_for(8), 2);
  EXPECT_EQ(kv.blocks_for(9), 3);
  KVCacheManager big(1, 16);
  EXPECT_EQ(big.blocks_for(2048), 128);
  EXPECT_EQ(big.blocks_for(2049), 129);
}

TEST(KVCacheManager, AllocateSlotsGrowsTableOnlyAtBlockBoundaries) {
  KVCacheManager kv(8, 4);
  ASSERT_TRUE(slots(kv, 7, 3));
  EXPECT_EQ(kv.block_table(7), (Table{0}));
  ASSERT_TRUE(slots(kv, 7, 4));
  EXPECT_EQ(kv.block_table(7), (Table{0}));
  ASSERT_TRUE(slots(kv, 7, 5));
  EXPECT_EQ(kv.block_table(7), (Table{0, 1}));
  ASSERT_TRUE(slots(kv, 7, 13));
  EXPECT_EQ(kv.block_table(7), (Table{0, 1, 2, 3}));
  EXPECT_EQ(kv.num_free_blocks(), 4);
}

TEST(KVCacheManager, AllocateSlotsNeverShrinksTable) {
  KVCacheManager kv(8, 4);
  ASSERT_TRUE(slots(kv, 1, 12));
  ASSERT_TRUE(slots(kv, 1, 2));
  EXPECT_EQ(kv.block_table(1), (Table{0, 1, 2}));
  EXPECT_EQ(kv.num_free_blocks(), 5);
}

TEST(KVCacheManager, RequestsGetDisjointBlocks) {
  KVCacheManager kv(8, 2);
  ASSERT_TRUE(slots(kv, 1, 3));
  ASSERT_TRUE(slots(kv, 2, 1));
  ASSERT_TRUE(slots(kv, 1, 5));
  EXPECT_EQ(kv.block_table(1), (Table{0, 1, 3}));
  EXPECT_EQ(kv.block_table(2), (Table{2}));
}

TEST(KVCacheManager, AllocateSlotsFailsWithoutChangingAnythingWhenPoolIsShort) {
  KVCacheManager kv(3, 4);
  ASSERT_TRUE(slots(kv, 1, 8));
  EXPECT_FALSE(slots(kv, 2, 12));
  EXPECT_TRUE(kv.block_table(2).empty());
  EXPECT_EQ(kv.num_free_blocks(), 1);
  EXPECT_FALSE(slots(kv, 1, 16));  // needs 2 more, 1 free
  EXPECT_EQ(kv.block_table(1), (Table{0, 1}));
  EXPECT_EQ(kv.num_free_blocks(), 1);
  EXPECT_TRUE(slots(kv, 1, 12));
  EXPECT_EQ(kv.block_table(1), (Table{0, 1, 2}));
  EXPECT_EQ(kv.num_free_blocks(), 0);
}

TEST(KVCacheManager, FreeReleasesEveryBlockAndForgetsTheTable) {
  KVCacheManager kv(4, 4);
  ASSERT_TRUE(slots(kv, 1, 9));
  ASSERT_TRUE(slots(kv, 2, 1));
  kv.free(1);
  EXPECT_TRUE(kv.block_table(1).empty());
  EXPECT_EQ(kv.num_free_blocks(), 3);
  for (int32_t b : {0, 1, 2}) EXPECT_EQ(kv.pool().ref_count(b), 0);
  EXPECT_EQ(kv.pool().ref_count(3), 1);
  // Freed last block first, so the next allocations take 2, 1, then 0: a prompt's leading
  // blocks, the likeliest to be shared again, stay around longest.
  ASSERT_TRUE(slots(kv, 1, 12));
  EXPECT_EQ(kv.block_table(1), (Table{2, 1, 0}));
}

TEST(KVCacheManager, FreeOfUnknownRequestIsANoOp) {
  KVCacheManager kv(2, 4);
  ASSERT_TRUE(slots(kv, 1, 4));
  kv.free(99);
  kv.free(1);
  kv.free(1);
  EXPECT_EQ(kv.num_free_blocks(), 2);
}

TEST(KVCacheManager, BlockTableOfUnknownRequestIsEmpty) {
  KVCacheManager kv(2, 4);
  EXPECT_TRUE(kv.block_table(42).empty());
}

TEST(KVCacheManager, NonPositiveBlockSizeThrows) {
  EXPECT_THROW(KVCacheManager(4, 0), InvalidArgument);
  EXPECT_THROW(KVCacheManager(4, -16), InvalidArgument);
}

// ---- prefix caching ----------------------------------------------------------------------

std::vector<int32_t> seq(int32_t from, int32_t n) {
  std::vector<int32_t> t;
  for (int32_t i = 0; i < n; ++i) t.push_back(from + i);
  return t;
}

std::vector<int32_t> cat(std::vector<int32_t> a, const std::vector<int32_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// Admits a request as the scheduler does: from its prefix-cache hits, computing the rest.
ComputedBlocks admit(KVCacheManager& kv, uint64_t id, const std::vector<int32_t>& tokens) {
  ComputedBlocks c = kv.get_computed_blocks(id, tokens);
  EXPECT_TRUE(kv.allocate_slots(id, tokens, c.num_tokens, static_cast<int64_t>(tokens.size()) - c.num_tokens, c));
  return c;
}

TEST(KVCacheManager, RequestSharingAPrefixReusesItsFullBlocks) {
  KVCacheManager kv(8, 4, true);
  const std::vector<int32_t> shared = seq(100, 8);
  admit(kv, 1, cat(shared, seq(0, 2)));  // 10 tokens: blocks 0, 1 full, 2 partial
  EXPECT_EQ(kv.block_table(1), (Table{0, 1, 2}));
  const ComputedBlocks c = admit(kv, 2, cat(shared, seq(50, 3)));
  EXPECT_EQ(c.blocks, (Table{0, 1}));
  EXPECT_EQ(c.num_tokens, 8);
  EXPECT_EQ(kv.block_table(2), (Table{0, 1, 3}));
  EXPECT_EQ(kv.pool().ref_count(0), 2);
  EXPECT_EQ(kv.pool().ref_count(1), 2);
  EXPECT_EQ(kv.pool().ref_count(2), 1);
  EXPECT_EQ(kv.num_free_blocks(), 4);
}

TEST(KVCacheManager, AtLeastTheLastTokenIsLeftToCompute) {
  KVCacheManager kv(8, 4, true);
  const std::vector<int32_t> prompt = seq(100, 8);  // exactly two blocks
  admit(kv, 1, prompt);
  // The same 8 tokens: the second block holds the last token, so only the first is reused.
  EXPECT_EQ(kv.get_computed_blocks(2, prompt).num_tokens, 4);
  // One token past the boundary: both blocks are reused, one token is left.
  EXPECT_EQ(kv.get_computed_blocks(3, cat(prompt, {7})).num_tokens, 8);
  EXPECT_EQ(kv.get_computed_blocks(4, {100}).num_tokens, 0);
}

TEST(KVCacheManager, HitsStopAtTheFirstMissBecauseHashesAreChained) {
  KVCacheManager kv(8, 4, true);
  admit(kv, 1, seq(100, 12));
  std::vector<int32_t> other_first = seq(100, 12);
  other_first[0] = 5;  // same second and third blocks after a different first one
  EXPECT_EQ(kv.get_computed_blocks(2, other_first).num_tokens, 0);
  std::vector<int32_t> other_second = seq(100, 12);
  other_second[5] = 5;
  EXPECT_EQ(kv.get_computed_blocks(3, other_second).blocks, (Table{0}));
}

TEST(KVCacheManager, FreedBlocksStayCachedUntilTheirSpaceIsNeeded) {
  KVCacheManager kv(4, 4, true);
  const std::vector<int32_t> a = seq(100, 9);
  admit(kv, 1, a);
  kv.free(1);
  EXPECT_EQ(kv.num_free_blocks(), 4);
  EXPECT_EQ(kv.pool().num_cached(), 2);
  const ComputedBlocks again = admit(kv, 2, a);
  EXPECT_EQ(again.blocks, (Table{0, 1}));
  EXPECT_EQ(kv.num_free_blocks(), 1);  // the two revived and one for the last token
  kv.free(2);
  ASSERT_TRUE(slots(kv, 3, 16));  // a stranger needing every block evicts them
  EXPECT_EQ(kv.get_computed_blocks(4, a).num_tokens, 0);
}

TEST(KVCacheManager, EvictionTakesLeastRecentlyUsedBlocksAndAPromptsTailFirst) {
  KVCacheManager kv(6, 4, true);
  const std::vector<int32_t> a = seq(100, 9), b = seq(200, 9);  // each: 2 full blocks + 1 partial
  admit(kv, 1, a);  // 0, 1, 2
  admit(kv, 2, b);  // 3, 4, 5
  kv.free(1);       // free queue: 2, 1, 0
  kv.free(2);       // then 5, 4, 3
  ASSERT_TRUE(slots(kv, 3, 8));
  EXPECT_EQ(kv.block_table(3), (Table{2, 1}));
  EXPECT_EQ(kv.get_computed_blocks(4, a).blocks, (Table{0}));  // a keeps its first block
  EXPECT_EQ(kv.get_computed_blocks(5, b).blocks, (Table{3, 4}));
}

TEST(KVCacheManager, AHitMakesBlocksTheMostRecentlyUsed) {
  KVCacheManager kv(4, 4, true);
  const std::vector<int32_t> a = seq(100, 5), b = seq(200, 5);  // each: 1 full block + 1 partial
  admit(kv, 1, a);  // 0, 1
  admit(kv, 2, b);  // 2, 3
  kv.free(1);
  kv.free(2);       // free queue: 1, 0, 3, 2: a's block would go before b's
  admit(kv, 3, a);  // a hit on 0; its last token takes block 1
  kv.free(3);       // free queue: 3, 2, 1, 0
  ASSERT_TRUE(slots(kv, 4, 8));
  EXPECT_EQ(kv.block_table(4), (Table{3, 2}));
  EXPECT_EQ(kv.get_computed_blocks(5, a).blocks, (Table{0}));
  EXPECT_TRUE(kv.get_computed_blocks(6, b).blocks.empty());
}

TEST(KVCacheManager, FreeingBeforeTheForwardUncachesTheBlocksItNeverWrote) {
  // A request preempted in the step that allocated its slots: blocks cached at allocation
  // whose tokens were not computed must not be found by later requests.
  KVCacheManager kv(8, 4, true);
  const std::vector<int32_t> t = seq(100, 13);
  ASSERT_TRUE(kv.allocate_slots(1, t, 0, 4));  // computed in an earlier step
  ASSERT_TRUE(kv.allocate_slots(1, t, 4, 8));  // this step: blocks 1 and 2 cached, not written
  EXPECT_EQ(kv.pool().num_cached(), 3);
  kv.free(1, 4);
  EXPECT_EQ(kv.pool().num_cached(), 1);
  EXPECT_EQ(kv.get_computed_blocks(2, t).num_tokens, 4);
  // Finished or aborted requests (everything computed) keep all their full blocks cached.
  ASSERT_TRUE(kv.allocate_slots(3, t, 0, 13));
  kv.free(3);
  EXPECT_EQ(kv.get_computed_blocks(4, t).num_tokens, 12);
}

TEST(KVCacheManager, ResetPrefixCacheWaitsForEveryBlockToBeFree) {
  KVCacheManager kv(4, 4, true);
  admit(kv, 1, seq(100, 9));
  EXPECT_FALSE(kv.reset_prefix_cache());
  EXPECT_EQ(kv.get_computed_blocks(2, seq(100, 9)).num_tokens, 8);
  kv.free(1);
  EXPECT_TRUE(kv.reset_prefix_cache());
  EXPECT_EQ(kv.get_computed_blocks(3, seq(100, 9)).num_tokens, 0);
  EXPECT_EQ(kv.pool().num_cached(), 0);
  EXPECT_EQ(kv.num_free_blocks(), 4);
}

TEST(KVCacheManager, StatsCountEachAdmissionsQueryAndHitsInTokens) {
  KVCacheManager kv(8, 4, true);
  admit(kv, 1, seq(100, 10));  // 10 queried, none cached yet
  admit(kv, 2, seq(100, 10));  // 10 queried, 8 hit
  kv.get_computed_blocks(3, seq(100, 10));  // looked up but not admitted: not counted
  const PrefixCacheStats& s = kv.prefix_cache_stats();
  EXPECT_EQ(s.num_requests, 2);
  EXPECT_EQ(s.num_queried_tokens, 20);
  EXPECT_EQ(s.num_hit_tokens, 8);
}

TEST(KVCacheManager, WithoutPrefixCachingNothingIsFoundOrCounted) {
  KVCacheManager kv(8, 4);
  admit(kv, 1, seq(100, 10));
  kv.free(1);
  const ComputedBlocks c = kv.get_computed_blocks(2, seq(100, 10));
  EXPECT_TRUE(c.blocks.empty());
  EXPECT_EQ(c.num_queried_tokens, 0);
  EXPECT_EQ(kv.prefix_cache_stats().num_requests, 0);
  EXPECT_EQ(kv.pool().num_cached(), 0);
}

TEST(KVCacheManager, GeneratedTokensFillBlocksThatAreCachedToo) {
  KVCacheManager kv(8, 4, true);
  std::vector<int32_t> t = seq(100, 3);
  ASSERT_TRUE(kv.allocate_slots(1, t, 0, 3));
  for (int32_t i = 0; i < 6; ++i) {
    t.push_back(500 + i);
    ASSERT_TRUE(kv.allocate_slots(1, t, static_cast<int64_t>(t.size()) - 1, 1));
  }
  EXPECT_EQ(kv.pool().num_cached(), 2);  // 9 tokens: two full blocks
  const Table& table = kv.block_table(1);
  EXPECT_EQ(kv.get_computed_blocks(2, cat(t, {1})).blocks, (Table{table[0], table[1]}));
}

// ---- forks (n > 1) and copy-on-write --------------------------------------------------------

TEST(KVCacheManager, ForkSharesThePromptAndCopiesThePartialBlockBeforeTheChildWrites) {
  KVCacheManager kv(8, 4);  // forks do not need prefix caching
  const std::vector<int32_t> prompt = seq(100, 6);  // block 0 full, block 1 holds 2 tokens
  ASSERT_TRUE(kv.allocate_slots(1, prompt, 0, 6));
  const ComputedBlocks forked = kv.get_forked_blocks(1, 5);
  EXPECT_EQ(forked.blocks, (Table{0, 1}));
  EXPECT_EQ(forked.num_tokens, 5);
  // The child computes the last prompt token (position 5, in block 1) itself.
  ASSERT_TRUE(kv.allocate_slots(2, prompt, 5, 1, forked));
  EXPECT_EQ(kv.block_table(2), (Table{0, 2}));
  EXPECT_EQ(kv.take_block_copies(), (Copies{{1, 2}}));
  EXPECT_TRUE(kv.take_block_copies().empty());
  EXPECT_EQ(kv.pool().ref_count(0), 2);
  EXPECT_EQ(kv.pool().ref_count(1), 1);
  EXPECT_EQ(kv.pool().ref_count(2), 1);
  // The parent is the only holder of its partial block again: it writes in place.
  ASSERT_TRUE(kv.allocate_slots(1, cat(prompt, {7}), 6, 1));
  EXPECT_EQ(kv.block_table(1), (Table{0, 1}));
  EXPECT_TRUE(kv.take_block_copies().empty());
  kv.free(1);
  EXPECT_EQ(kv.pool().ref_count(0), 1);
  kv.free(2);
  EXPECT_EQ(kv.num_free_blocks(), 8);
}

TEST(KVCacheManager, ForkEndingOnABlockBoundaryCopiesNothing) {
  KVCacheManager kv(8, 4);
  const std::vector<int32_t> prompt = seq(100, 9);
  ASSERT_TRUE(kv.allocate_slots(1, prompt, 0, 9));
  const ComputedBlocks forked = kv.get_forked_blocks(1, 8);
  EXPECT_EQ(forked.blocks, (Table{0, 1}));
  ASSERT_TRUE(kv.allocate_slots(2, prompt, 8, 1, forked));
  EXPECT_EQ(kv.block_table(2), (Table{0, 1, 3}));
  EXPECT_TRUE(kv.take_block_copies().empty());
}

TEST(KVCacheManager, ParentWritingIntoABlockItStillSharesGetsTheCopy) {
  KVCacheManager kv(8, 4);
  const std::vector<int32_t> prompt = seq(100, 6);
  ASSERT_TRUE(kv.allocate_slots(1, prompt, 0, 6));
  // A child that has forked all six tokens and computes nothing yet shares block 1.
  ASSERT_TRUE(kv.allocate_slots(2, prompt, 6, 0, kv.get_forked_blocks(1, 6)));
  EXPECT_EQ(kv.pool().ref_count(1), 2);
  ASSERT_TRUE(kv.allocate_slots(1, cat(prompt, {7}), 6, 1));
  EXPECT_EQ(kv.block_table(1), (Table{0, 2}));
  EXPECT_EQ(kv.block_table(2), (Table{0, 1}));
  EXPECT_EQ(kv.take_block_copies(), (Copies{{1, 2}}));
  EXPECT_EQ(kv.pool().ref_count(1), 1);
}

TEST(KVCacheManager, ForkThatCannotGetItsCopyChangesNothing) {
  KVCacheManager kv(2, 4);
  const std::vector<int32_t> prompt = seq(100, 6);
  ASSERT_TRUE(kv.allocate_slots(1, prompt, 0, 6));
  EXPECT_FALSE(kv.allocate_slots(2, prompt, 5, 1, kv.get_forked_blocks(1, 5)));
  EXPECT_TRUE(kv.block_table(2).empty());
  EXPECT_EQ(kv.pool().ref_count(0), 1);
  EXPECT_EQ(kv.pool().ref_count(1), 1);
  EXPECT_TRUE(kv.take_block_copies().empty());
}

TEST(KVCacheManager, ForkOfAnUnknownOrShortParentIsEmpty) {
  KVCacheManager kv(8, 4);
  EXPECT_TRUE(kv.get_forked_blocks(99, 4).blocks.empty());
  ASSERT_TRUE(kv.allocate_slots(1, seq(100, 4), 0, 4));
  EXPECT_TRUE(kv.get_forked_blocks(1, 5).blocks.empty());
  EXPECT_TRUE(kv.get_forked_blocks(1, 0).blocks.empty());
}

TEST(KVCacheManager, ComputedBlocksForARequestThatHoldsBlocksThrow) {
  KVCacheManager kv(8, 4);
  ASSERT_TRUE(kv.allocate_slots(1, seq(100, 6), 0, 6));
  ASSERT_TRUE(kv.allocate_slots(2, seq(100, 6), 0, 6));
  EXPECT_THROW(kv.allocate_slots(2, seq(100, 6), 5, 1, kv.get_forked_blocks(1, 5)), Error);
  EXPECT_THROW(kv.allocate_slots(3, seq(100, 6), 4, 1, kv.get_forked_blocks(1, 5)), Error);
  EXPECT_THROW(kv.allocate_slots(3, seq(100, 6), 0, 7), InvalidArgument);
}

}  // namespace
}  // namespace octavo
