#include "kv_cache/block_pool.h"

#include <string>

#include "octavo/errors.h"

namespace octavo {

BlockPool::BlockPool(int32_t num_blocks) {
  if (num_blocks < 0) {
    throw InvalidArgument("BlockPool: num_blocks must be >= 0, got " + std::to_string(num_blocks));
  }
  ref_counts_.assign(static_cast<size_t>(num_blocks), 0);
  for (int32_t b = 0; b < num_blocks; ++b) free_.push_back(b);
}

std::optional<std::vector<int32_t>> BlockPool::allocate(int32_t n) {
  if (n < 0) {
    throw InvalidArgument("BlockPool::allocate: n must be >= 0, got " + std::to_string(n));
  }
  // All or nothing: a caller that cannot get every block it needs must not be left
  // holding some of them, or two requests could starve each other.
  if (n > num_free()) return std::nullopt;
  std::vector<int32_t> blocks;
  blocks.reserve(static_cast<size_t>(n));
  for (int32_t i = 0; i < n; ++i) {
    const int32_t b = free_.front();
    free_.pop_front();
    ref_counts_[static_cast<size_t>(b)] = 1;
    blocks.push_back(b);
  }
  return blocks;
}

void BlockPool::retain(int32_t block) {
  check(block);
  int32_t& count = ref_counts_[static_cast<size_t>(block)];
  // A free block may already be handed to someone else by the next allocate().
  if (count == 0) throw Error("BlockPool::retain: block " + std::to_string(block) + " is free");
  ++count;
}

void BlockPool::release(int32_t block) {
  check(block);
  int32_t& count = ref_counts_[static_cast<size_t>(block)];
  if (count == 0) {
    throw Error("BlockPool::release: block " + std::to_string(block) + " is already free");
  }
  // Returned to the tail so recently freed blocks are reused last, which keeps their
  // contents around longest for a future prefix cache.
  if (--count == 0) free_.push_back(block);
}

int32_t BlockPool::ref_count(int32_t block) const {
  check(block);
  return ref_counts_[static_cast<size_t>(block)];
}

void BlockPool::check(int32_t block) const {
  if (block < 0 || block >= num_blocks()) {
    throw Error("BlockPool: block id " + std::to_string(block) + " out of range [0, " +
                std::to_string(num_blocks()) + ")");
  }
}

}  // namespace octavo
