#include "kv_cache/block_pool.h"

#include <string>

#include "octavo/errors.h"

namespace octavo {

BlockPool::BlockPool(int32_t num_blocks, bool enable_caching) : enable_caching_(enable_caching) {
  if (num_blocks < 0) {
    throw InvalidArgument("BlockPool: num_blocks must be >= 0, got " + std::to_string(num_blocks));
  }
  blocks_.resize(static_cast<size_t>(num_blocks));
  for (int32_t b = 0; b < num_blocks; ++b) push_free(b);
}

std::optional<std::vector<int32_t>> BlockPool::allocate(int32_t n) {
  if (n < 0) {
    throw InvalidArgument("BlockPool::allocate: n must be >= 0, got " + std::to_string(n));
  }
  // All or nothing: a caller that cannot get every block it needs must not be left
  // holding some of them, or two requests could starve each other.
  if (n > num_free_) return std::nullopt;
  std::vector<int32_t> out;
  out.reserve(static_cast<size_t>(n));
  for (int32_t i = 0; i < n; ++i) {
    const int32_t b = head_;
    unlink_free(b);
    if (blocks_[static_cast<size_t>(b)].cached) evict(b);
    blocks_[static_cast<size_t>(b)].ref_count = 1;
    out.push_back(b);
  }
  return out;
}

void BlockPool::retain(int32_t block) {
  check(block);
  Block& b = blocks_[static_cast<size_t>(block)];
  if (b.ref_count == 0) {
    // A free block that is not cached holds nothing anyone may read, and may be handed
    // to someone else by the next allocate().
    if (!b.cached) throw Error("BlockPool::retain: block " + std::to_string(block) + " is free");
    unlink_free(block);
  }
  ++b.ref_count;
}

void BlockPool::release(int32_t block) {
  check(block);
  Block& b = blocks_[static_cast<size_t>(block)];
  if (b.ref_count == 0) {
    throw Error("BlockPool::release: block " + std::to_string(block) + " is already free");
  }
  // Returned to the tail so recently freed blocks are reused last: their contents stay
  // findable by the prefix cache longest.
  if (--b.ref_count == 0) push_free(block);
}

int32_t BlockPool::ref_count(int32_t block) const {
  check(block);
  return blocks_[static_cast<size_t>(block)].ref_count;
}

std::optional<int32_t> BlockPool::lookup(const BlockHash& hash) const {
  auto it = cached_.find(hash);
  if (it == cached_.end()) return std::nullopt;
  return it->second;
}

void BlockPool::cache_block(int32_t block, const BlockHash& hash) {
  check(block);
  if (!enable_caching_) return;
  Block& b = blocks_[static_cast<size_t>(block)];
  if (b.ref_count == 0) {
    throw Error("BlockPool::cache_block: block " + std::to_string(block) + " is free");
  }
  if (b.cached) {
    // A full block's content never changes while it is held.
    if (b.hash != hash) {
      throw Error("BlockPool::cache_block: block " + std::to_string(block) + " is cached with another hash");
    }
    return;
  }
  if (!cached_.emplace(hash, block).second) return;
  b.cached = true;
  b.hash = hash;
}

bool BlockPool::is_cached(int32_t block) const {
  check(block);
  return blocks_[static_cast<size_t>(block)].cached;
}

void BlockPool::uncache(int32_t block) {
  check(block);
  const Block& b = blocks_[static_cast<size_t>(block)];
  if (b.ref_count != 0) throw Error("BlockPool::uncache: block " + std::to_string(block) + " is held");
  if (b.cached) evict(block);
}

bool BlockPool::reset_prefix_cache() {
  if (num_free_ != num_blocks()) return false;
  for (auto& [hash, block] : cached_) blocks_[static_cast<size_t>(block)].cached = false;
  cached_.clear();
  return true;
}

void BlockPool::check(int32_t block) const {
  if (block < 0 || block >= num_blocks()) {
    throw Error("BlockPool: block id " + std::to_string(block) + " out of range [0, " +
                std::to_string(num_blocks()) + ")");
  }
}

void BlockPool::push_free(int32_t block) {
  Block& b = blocks_[static_cast<size_t>(block)];
  b.prev = tail_;
  b.next = -1;
  if (tail_ >= 0) {
    blocks_[static_cast<size_t>(tail_)].next = block;
  } else {
    head_ = block;
  }
  tail_ = block;
  ++num_free_;
}

void BlockPool::unlink_free(int32_t block) {
  Block& b = blocks_[static_cast<size_t>(block)];
  if (b.prev >= 0) {
    blocks_[static_cast<size_t>(b.prev)].next = b.next;
  } else {
    head_ = b.next;
  }
  if (b.next >= 0) {
    blocks_[static_cast<size_t>(b.next)].prev = b.prev;
  } else {
    tail_ = b.prev;
  }
  b.prev = b.next = -1;
  --num_free_;
}

void BlockPool::evict(int32_t block) {
  Block& b = blocks_[static_cast<size_t>(block)];
  cached_.erase(b.hash);
  b.cached = false;
}

}  // namespace octavo
