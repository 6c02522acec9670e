#include "kv_cache/kv_cache_manager.h"

#include <gtest/gtest.h>

#include <vector>

#include "octavo/errors.h"

namespace octavo {
namespace {

using Table = std::vector<int32_t>;

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
  ASSERT_TRUE(kv.allocate_slots(7, 3));
  EXPECT_EQ(kv.block_table(7), (Table{0}));
  ASSERT_TRUE(kv.allocate_slots(7, 4));
  EXPECT_EQ(kv.block_table(7), (Table{0}));
  ASSERT_TRUE(kv.allocate_slots(7, 5));
  EXPECT_EQ(kv.block_table(7), (Table{0, 1}));
  ASSERT_TRUE(kv.allocate_slots(7, 13));
  EXPECT_EQ(kv.block_table(7), (Table{0, 1, 2, 3}));
  EXPECT_EQ(kv.num_free_blocks(), 4);
}

TEST(KVCacheManager, AllocateSlotsNeverShrinksTable) {
  KVCacheManager kv(8, 4);
  ASSERT_TRUE(kv.allocate_slots(1, 12));
  ASSERT_TRUE(kv.allocate_slots(1, 2));
  EXPECT_EQ(kv.block_table(1), (Table{0, 1, 2}));
  EXPECT_EQ(kv.num_free_blocks(), 5);
}

TEST(KVCacheManager, RequestsGetDisjointBlocks) {
  KVCacheManager kv(8, 2);
  ASSERT_TRUE(kv.allocate_slots(1, 3));
  ASSERT_TRUE(kv.allocate_slots(2, 1));
  ASSERT_TRUE(kv.allocate_slots(1, 5));
  EXPECT_EQ(kv.block_table(1), (Table{0, 1, 3}));
  EXPECT_EQ(kv.block_table(2), (Table{2}));
}

TEST(KVCacheManager, AllocateSlotsFailsWithoutChangingAnythingWhenPoolIsShort) {
  KVCacheManager kv(3, 4);
  ASSERT_TRUE(kv.allocate_slots(1, 8));
  EXPECT_FALSE(kv.allocate_slots(2, 12));
  EXPECT_TRUE(kv.block_table(2).empty());
  EXPECT_EQ(kv.num_free_blocks(), 1);
  EXPECT_FALSE(kv.allocate_slots(1, 16));  // needs 2 more, 1 free
  EXPECT_EQ(kv.block_table(1), (Table{0, 1}));
  EXPECT_EQ(kv.num_free_blocks(), 1);
  EXPECT_TRUE(kv.allocate_slots(1, 12));
  EXPECT_EQ(kv.block_table(1), (Table{0, 1, 2}));
  EXPECT_EQ(kv.num_free_blocks(), 0);
}

TEST(KVCacheManager, FreeReleasesEveryBlockAndForgetsTheTable) {
  KVCacheManager kv(4, 4);
  ASSERT_TRUE(kv.allocate_slots(1, 9));
  ASSERT_TRUE(kv.allocate_slots(2, 1));
  kv.free(1);
  EXPECT_TRUE(kv.block_table(1).empty());
  EXPECT_EQ(kv.num_free_blocks(), 3);
  for (int32_t b : {0, 1, 2}) EXPECT_EQ(kv.pool().ref_count(b), 0);
  EXPECT_EQ(kv.pool().ref_count(3), 1);
  // A freed request starts from scratch, on the blocks freed longest ago.
  ASSERT_TRUE(kv.allocate_slots(1, 4));
  EXPECT_EQ(kv.block_table(1), (Table{0}));
}

TEST(KVCacheManager, FreeOfUnknownRequestIsANoOp) {
  KVCacheManager kv(2, 4);
  ASSERT_TRUE(kv.allocate_slots(1, 4));
  kv.free(99);
  kv.free(1);
  kv.free(1);
  EXPECT_EQ(kv.num_free_blocks(), 2);
}

TEST(KVCacheManager, ForkedChildKeepsSharedBlocksAfterParentIsFreed) {
  KVCacheManager kv(4, 4);
  ASSERT_TRUE(kv.allocate_slots(1, 6));
  kv.fork(1, 2);
  EXPECT_EQ(kv.block_table(2), (Table{0, 1}));
  EXPECT_EQ(kv.pool().ref_count(0), 2);
  EXPECT_EQ(kv.pool().ref_count(1), 2);
  EXPECT_EQ(kv.num_free_blocks(), 2);

  kv.free(1);
  EXPECT_EQ(kv.num_free_blocks(), 2);
  EXPECT_EQ(kv.pool().ref_count(0), 1);
  EXPECT_EQ(kv.block_table(2), (Table{0, 1}));

  kv.free(2);
  EXPECT_EQ(kv.num_free_blocks(), 4);
  EXPECT_EQ(kv.pool().ref_count(0), 0);
}

TEST(KVCacheManager, ForkedChildGrowsIntoItsOwnBlocks) {
  KVCacheManager kv(4, 4);
  ASSERT_TRUE(kv.allocate_slots(1, 4));
  kv.fork(1, 2);
  ASSERT_TRUE(kv.allocate_slots(2, 5));
  EXPECT_EQ(kv.block_table(2), (Table{0, 1}));
  EXPECT_EQ(kv.block_table(1), (Table{0}));
  EXPECT_EQ(kv.pool().ref_count(0), 2);
  EXPECT_EQ(kv.pool().ref_count(1), 1);
}

TEST(KVCacheManager, ForkOntoARequestWithBlocksThrows) {
  KVCacheManager kv(4, 4);
  ASSERT_TRUE(kv.allocate_slots(1, 4));
  ASSERT_TRUE(kv.allocate_slots(2, 4));
  EXPECT_THROW(kv.fork(1, 2), Error);
  EXPECT_EQ(kv.pool().ref_count(0), 1);
  EXPECT_EQ(kv.block_table(2), (Table{1}));
}

TEST(KVCacheManager, BlockTableOfUnknownRequestIsEmpty) {
  KVCacheManager kv(2, 4);
  EXPECT_TRUE(kv.block_table(42).empty());
}

TEST(KVCacheManager, NonPositiveBlockSizeThrows) {
  EXPECT_THROW(KVCacheManager(4, 0), InvalidArgument);
  EXPECT_THROW(KVCacheManager(4, -16), InvalidArgument);
}

}  // namespace
}  // namespace octavo
