#include "kv_cache/block_pool.h"

#include <gtest/gtest.h>

#include <vector>

#include "octavo/errors.h"

namespace octavo {
namespace {

TEST(BlockPool, NewPoolHandsOutBlocksInIdOrder) {
  BlockPool pool(5);
  EXPECT_EQ(pool.num_blocks(), 5);
  EXPECT_EQ(pool.num_free(), 5);
  auto blocks = pool.allocate(5);
  ASSERT_TRUE(blocks.has_value());
  EXPECT_EQ(*blocks, (std::vector<int32_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(pool.num_free(), 0);
  for (int32_t b = 0; b < 5; ++b) EXPECT_EQ(pool.ref_count(b), 1);
}

TEST(BlockPool, ReleasedBlocksAreReusedInReleaseOrderAfterOlderFreeBlocks) {
  BlockPool pool(4);
  ASSERT_TRUE(pool.allocate(3).has_value());  // 0, 1, 2; 3 stays free
  pool.release(2);
  pool.release(0);
  EXPECT_EQ(pool.num_free(), 3);
  EXPECT_EQ(pool.ref_count(0), 0);
  EXPECT_EQ(pool.ref_count(1), 1);
  auto again = pool.allocate(3);
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(*again, (std::vector<int32_t>{3, 2, 0}));
}

TEST(BlockPool, AllocateZeroGivesEmptyListAndTakesNothing) {
  BlockPool pool(2);
  auto blocks = pool.allocate(0);
  ASSERT_TRUE(blocks.has_value());
  EXPECT_TRUE(blocks->empty());
  EXPECT_EQ(pool.num_free(), 2);
}

TEST(BlockPool, AllocateFailsWithoutTakingAnyBlockWhenTooFewAreFree) {
  BlockPool pool(4);
  ASSERT_TRUE(pool.allocate(3).has_value());
  EXPECT_FALSE(pool.allocate(2).has_value());
  EXPECT_EQ(pool.num_free(), 1);
  EXPECT_EQ(pool.ref_count(3), 0);
  auto last = pool.allocate(1);
  ASSERT_TRUE(last.has_value());
  EXPECT_EQ(*last, (std::vector<int32_t>{3}));
  EXPECT_FALSE(pool.allocate(1).has_value());
}

TEST(BlockPool, SharedBlockReturnsToFreeListOnlyAtLastRelease) {
  BlockPool pool(2);
  auto blocks = pool.allocate(1);
  ASSERT_TRUE(blocks.has_value());
  const int32_t b = (*blocks)[0];
  pool.retain(b);
  pool.retain(b);
  EXPECT_EQ(pool.ref_count(b), 3);
  pool.release(b);
  pool.release(b);
  EXPECT_EQ(pool.ref_count(b), 1);
  EXPECT_EQ(pool.num_free(), 1);
  pool.release(b);
  EXPECT_EQ(pool.ref_count(b), 0);
  EXPECT_EQ(pool.num_free(), 2);
}

TEST(BlockPool, ReleasingAFreeBlockThrows) {
  BlockPool pool(2);
  EXPECT_THROW(pool.release(0), Error);
  auto blocks = pool.allocate(1);
  ASSERT_TRUE(blocks.has_value());
  pool.release(0);
  EXPECT_THROW(pool.release(0), Error);
  EXPECT_EQ(pool.num_free(), 2);  // the failed release did not push a duplicate
}

TEST(BlockPool, RetainingAFreeBlockThrows) {
  BlockPool pool(2);
  EXPECT_THROW(pool.retain(1), Error);
  EXPECT_EQ(pool.ref_count(1), 0);
}

TEST(BlockPool, OutOfRangeBlockIdThrows) {
  BlockPool pool(3);
  ASSERT_TRUE(pool.allocate(3).has_value());
  for (int32_t bad : {-1, 3, 100}) {
    EXPECT_THROW(pool.retain(bad), Error) << bad;
    EXPECT_THROW(pool.release(bad), Error) << bad;
    EXPECT_THROW(pool.ref_count(bad), Error) << bad;
  }
}

TEST(BlockPool, NegativeSizesThrowInvalidArgument) {
  EXPECT_THROW(BlockPool(-1), InvalidArgument);
  BlockPool pool(1);
  EXPECT_THROW(pool.allocate(-1), InvalidArgument);
}

// ---- prefix cache ----------------------------------------------------------------------

BlockHash hash_of(int32_t n) { return BlockHash{static_cast<uint64_t>(n) * 7919u, static_cast<uint64_t>(n)}; }

TEST(BlockPool, CachedBlockIsFoundWhileHeldAndAfterRelease) {
  BlockPool pool(3, /*enable_caching=*/true);
  const int32_t b = (*pool.allocate(1))[0];
  EXPECT_FALSE(pool.lookup(hash_of(1)).has_value());
  pool.cache_block(b, hash_of(1));
  EXPECT_EQ(pool.lookup(hash_of(1)), b);
  EXPECT_TRUE(pool.is_cached(b));
  pool.release(b);
  EXPECT_EQ(pool.num_free(), 3);  // cached but unused blocks are free (evictable)
  EXPECT_EQ(pool.lookup(hash_of(1)), b);
  EXPECT_EQ(pool.num_cached(), 1);
}

TEST(BlockPool, RetainingAFreeCachedBlockTakesItOffTheFreeQueue) {
  BlockPool pool(2, true);
  const int32_t b = (*pool.allocate(1))[0];
  pool.cache_block(b, hash_of(5));
  pool.release(b);
  pool.retain(b);  // a prefix-cache hit
  EXPECT_EQ(pool.ref_count(b), 1);
  EXPECT_EQ(pool.num_free(), 1);
  // The other block is the only one allocate() can hand out now.
  auto other = pool.allocate(1);
  ASSERT_TRUE(other.has_value());
  EXPECT_NE((*other)[0], b);
  EXPECT_FALSE(pool.allocate(1).has_value());
  EXPECT_EQ(pool.lookup(hash_of(5)), b);
}

TEST(BlockPool, AllocateEvictsTheLeastRecentlyFreedCachedBlockFirst) {
  BlockPool pool(3, true);
  std::vector<int32_t> blocks = *pool.allocate(3);
  for (int32_t i = 0; i < 3; ++i) pool.cache_block(blocks[i], hash_of(i));
  pool.release(blocks[1]);
  pool.release(blocks[2]);
  pool.release(blocks[0]);
  // Free order: 1, 2, 0. Taking two evicts hashes 1 then 2; hash 0 survives.
  EXPECT_EQ(*pool.allocate(2), (std::vector<int32_t>{blocks[1], blocks[2]}));
  EXPECT_FALSE(pool.lookup(hash_of(1)).has_value());
  EXPECT_FALSE(pool.lookup(hash_of(2)).has_value());
  EXPECT_EQ(pool.lookup(hash_of(0)), blocks[0]);
  EXPECT_FALSE(pool.is_cached(blocks[1]));
  EXPECT_EQ(pool.num_cached(), 1);
}

TEST(BlockPool, AHitRefreshesABlockInTheEvictionOrder) {
  BlockPool pool(2, true);
  std::vector<int32_t> blocks = *pool.allocate(2);
  pool.cache_block(blocks[0], hash_of(0));
  pool.cache_block(blocks[1], hash_of(1));
  pool.release(blocks[0]);
  pool.release(blocks[1]);
  pool.retain(blocks[0]);  // used again: now the most recently freed once released
  pool.release(blocks[0]);
  EXPECT_EQ(*pool.allocate(1), (std::vector<int32_t>{blocks[1]}));
  EXPECT_EQ(pool.lookup(hash_of(0)), blocks[0]);
}

TEST(BlockPool, SecondBlockWithTheSameContentIsNotCached) {
  BlockPool pool(2, true);
  std::vector<int32_t> blocks = *pool.allocate(2);
  pool.cache_block(blocks[0], hash_of(9));
  pool.cache_block(blocks[1], hash_of(9));
  EXPECT_EQ(pool.lookup(hash_of(9)), blocks[0]);
  EXPECT_FALSE(pool.is_cached(blocks[1]));
  pool.release(blocks[1]);
  EXPECT_THROW(pool.retain(blocks[1]), Error);  // free and not cached: nobody may use it
}

TEST(BlockPool, CachingAHeldBlockTwiceNeedsTheSameHash) {
  BlockPool pool(1, true);
  const int32_t b = (*pool.allocate(1))[0];
  pool.cache_block(b, hash_of(3));
  EXPECT_NO_THROW(pool.cache_block(b, hash_of(3)));
  EXPECT_THROW(pool.cache_block(b, hash_of(4)), Error);
  pool.release(b);
  EXPECT_THROW(pool.cache_block(b, hash_of(3)), Error);  // free blocks are not cached anew
}

TEST(BlockPool, WithoutCachingNothingIsRecorded) {
  BlockPool pool(2);
  const int32_t b = (*pool.allocate(1))[0];
  pool.cache_block(b, hash_of(1));
  EXPECT_FALSE(pool.lookup(hash_of(1)).has_value());
  EXPECT_EQ(pool.num_cached(), 0);
}

TEST(BlockPool, ResetPrefixCacheIsRefusedWhileABlockIsHeldThenForgetsEverything) {
  BlockPool pool(2, true);
  std::vector<int32_t> blocks = *pool.allocate(2);
  pool.cache_block(blocks[0], hash_of(0));
  pool.cache_block(blocks[1], hash_of(1));
  pool.release(blocks[0]);
  EXPECT_FALSE(pool.reset_prefix_cache());
  EXPECT_EQ(pool.lookup(hash_of(0)), blocks[0]);
  pool.release(blocks[1]);
  EXPECT_TRUE(pool.reset_prefix_cache());
  EXPECT_EQ(pool.num_cached(), 0);
  EXPECT_FALSE(pool.lookup(hash_of(0)).has_value());
  EXPECT_FALSE(pool.is_cached(blocks[1]));
  EXPECT_EQ(pool.num_free(), 2);
}

}  // namespace
}  // namespace octavo
