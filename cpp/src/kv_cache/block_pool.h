// BlockPool: the mechanism of the paged KV cache. It hands out physical block ids from a
// free list and counts references, so a block can be shared (n > 1 samples, prefix
// caching) and returns to the free list only when its last holder releases it.
// Pure host logic: it knows nothing of tensors or devices.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <vector>

namespace octavo {

class BlockPool {
 public:
  explicit BlockPool(int32_t num_blocks);

  int32_t num_blocks() const { return static_cast<int32_t>(ref_counts_.size()); }
  int32_t num_free() const { return static_cast<int32_t>(free_.size()); }

  // n blocks with a reference count of 1, or nullopt (and nothing taken) if fewer are free.
  std::optional<std::vector<int32_t>> allocate(int32_t n);
  // One more holder of an allocated block.
  void retain(int32_t block);
  // One holder fewer; the block is free again at zero. Throws on a free block.
  void release(int32_t block);
  int32_t ref_count(int32_t block) const;

 private:
  void check(int32_t block) const;
  std::vector<int32_t> ref_counts_;
  std::deque<int32_t> free_;
};

}  // namespace octavo
