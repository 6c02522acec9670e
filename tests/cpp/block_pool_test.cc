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

}  // namespace
}  // namespace octavo
