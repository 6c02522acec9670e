// KVCacheManager: each request's block table over a BlockPool. The scheduler asks it
// for room (allocate_slots) and gives blocks back (free); it never decides who runs.
#pragma once

#include <cstdint>
#include <unordered_map>
#include <vector>

#include "kv_cache/block_pool.h"

namespace octavo {

class KVCacheManager {
 public:
  KVCacheManager(int32_t num_blocks, int32_t block_size);

  int32_t block_size() const { return block_size_; }
  int32_t num_blocks() const { return pool_.num_blocks(); }
  int32_t num_free_blocks() const { return pool_.num_free(); }
  int32_t blocks_for(int64_t num_tokens) const;

  // Grows the request's block table to hold num_tokens slots. Returns false, changing
  // nothing, when the pool has too few free blocks.
  bool allocate_slots(uint64_t request_id, int64_t num_tokens);
  // Releases all of the request's blocks (no-op for an unknown id).
  void free(uint64_t request_id);
  // The child shares every block of the parent (reference counts go up); for n > 1.
  void fork(uint64_t parent_id, uint64_t child_id);

  // Empty for an unknown id.
  const std::vector<int32_t>& block_table(uint64_t request_id) const;

  const BlockPool& pool() const { return pool_; }

 private:
  int32_t block_size_;
  BlockPool pool_;
  std::unordered_map<uint64_t, std::vector<int32_t>> tables_;
};

}  // namespace octavo
