// BlockPool: the mechanism of the paged KV cache. It hands out physical block ids from a
// free queue and counts references, so a block can be shared (n > 1 samples, prefix
// caching) and returns to the free queue only when its last holder releases it.
// With prefix caching it also keeps the map from BlockHash to the block holding that
// content: a freed block stays cached (and can be taken back by a hit) until allocate()
// needs it, and the free queue hands out the least recently freed block first, so the
// cache evicts least-recently-used blocks. Pure host logic: no tensors, no devices.
#pragma once

#include <cstdint>
#include <optional>
#include <unordered_map>
#include <vector>

#include "kv_cache/block_hash.h"

namespace octavo {

class BlockPool {
 public:
  explicit BlockPool(int32_t num_blocks, bool enable_caching = false);

  int32_t num_blocks() const { return static_cast<int32_t>(blocks_.size()); }
  // Blocks nobody holds, cached ones included: allocate() may take (evict) any of them.
  int32_t num_free() const { return num_free_; }
  // Blocks whose content is in the hash map, held or free.
  int32_t num_cached() const { return static_cast<int32_t>(cached_.size()); }
  bool caching_enabled() const { return enable_caching_; }

  // n blocks with a reference count of 1, or nullopt (and nothing taken) if fewer are free.
  // A cached block handed out this way is evicted: its hash no longer finds it.
  std::optional<std::vector<int32_t>> allocate(int32_t n);
  // One more holder of a block: an allocated block, or a free cached one (a prefix-cache
  // hit), which then leaves the free queue. Throws on a free block that is not cached.
  void retain(int32_t block);
  // One holder fewer; at zero the block joins the tail of the free queue, still cached.
  // Throws on a free block.
  void release(int32_t block);
  int32_t ref_count(int32_t block) const;

  // The block holding the content of hash, held or free; nullopt on a miss.
  std::optional<int32_t> lookup(const BlockHash& hash) const;
  // Records that a held block holds the content of hash. A no-op when caching is off or when
  // another block already holds that content (the first stays the one hits find).
  void cache_block(int32_t block, const BlockHash& hash);
  bool is_cached(int32_t block) const;
  // Forgets a free block's content (it was never written after all).
  void uncache(int32_t block);
  // Forgets every hash. Refused (false, nothing changed) while any block is held, since
  // their holders expect full blocks to become cached as they are written.
  bool reset_prefix_cache();

 private:
  struct Block {
    int32_t ref_count = 0;
    bool cached = false;
    BlockHash hash;
    int32_t prev = -1;  // free-queue links, while free
    int32_t next = -1;
  };

  void check(int32_t block) const;
  void push_free(int32_t block);
  void unlink_free(int32_t block);
  void evict(int32_t block);

  bool enable_caching_;
  std::vector<Block> blocks_;
  int32_t head_ = -1;  // least recently freed: handed out next
  int32_t tail_ = -1;
  int32_t num_free_ = 0;
  std::unordered_map<BlockHash, int32_t, BlockHashHasher> cached_;
};

}  // namespace octavo
