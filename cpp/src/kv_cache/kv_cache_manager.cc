#include "kv_cache/kv_cache_manager.h"

#include <algorithm>
#include <string>

#include "octavo/errors.h"

namespace octavo {

namespace {
// What else changes a block's K/V besides its tokens: nothing yet. A LoRA adapter id (or a
// cache salt) goes here, so requests under different adapters never share blocks.
constexpr uint64_t kNoExtraKey = 0;
}  // namespace

KVCacheManager::KVCacheManager(int32_t num_blocks, int32_t block_size, bool enable_prefix_caching)
    : block_size_(block_size), pool_(num_blocks, enable_prefix_caching) {
  if (block_size <= 0) {
    throw InvalidArgument("KVCacheManager: block_size must be > 0, got " +
                          std::to_string(block_size));
  }
}

int32_t KVCacheManager::blocks_for(int64_t num_tokens) const {
  if (num_tokens <= 0) return 0;
  return static_cast<int32_t>((num_tokens + block_size_ - 1) / block_size_);
}

void KVCacheManager::hash_blocks(Entry& entry, const std::vector<int32_t>& token_ids,
                                 size_t num_full_blocks) const {
  const size_t bs = static_cast<size_t>(block_size_);
  entry.hashes.reserve(num_full_blocks);
  while (entry.hashes.size() < num_full_blocks) {
    const size_t i = entry.hashes.size();
    const BlockHash& parent = i == 0 ? kRootBlockHash : entry.hashes.back();
    entry.hashes.push_back(hash_block_tokens(parent, token_ids.data() + i * bs, block_size_, kNoExtraKey));
  }
}

ComputedBlocks KVCacheManager::get_computed_blocks(uint64_t request_id,
                                                   const std::vector<int32_t>& token_ids) {
  ComputedBlocks out;
  if (!pool_.caching_enabled() || token_ids.empty()) return out;
  out.num_queried_tokens = static_cast<int64_t>(token_ids.size());
  // The last token is always recomputed: its logits are what the request samples from.
  const size_t max_blocks = (token_ids.size() - 1) / static_cast<size_t>(block_size_);
  // The entry memoizes the hashes while the request waits; free() forgets it.
  Entry& entry = entries_[request_id];
  hash_blocks(entry, token_ids, max_blocks);
  for (size_t i = 0; i < max_blocks; ++i) {
    const std::optional<int32_t> block = pool_.lookup(entry.hashes[i]);
    if (!block) break;
    out.blocks.push_back(*block);
  }
  out.num_tokens = static_cast<int64_t>(out.blocks.size()) * block_size_;
  return out;
}

ComputedBlocks KVCacheManager::get_forked_blocks(uint64_t parent_id, int64_t num_tokens) const {
  ComputedBlocks out;
  auto it = entries_.find(parent_id);
  const size_t n = static_cast<size_t>(blocks_for(num_tokens));
  if (it == entries_.end() || n == 0 || it->second.blocks.size() < n) return out;
  out.blocks.assign(it->second.blocks.begin(), it->second.blocks.begin() + static_cast<std::ptrdiff_t>(n));
  out.num_tokens = num_tokens;
  return out;
}

bool KVCacheManager::allocate_slots(uint64_t request_id, const std::vector<int32_t>& token_ids,
                                    int64_t num_computed_tokens, int64_t num_new_tokens,
                                    const ComputedBlocks& computed) {
  if (num_computed_tokens < 0 || num_new_tokens < 0) {
    throw InvalidArgument("KVCacheManager::allocate_slots: negative token count (" +
                          std::to_string(num_computed_tokens) + " computed, " +
                          std::to_string(num_new_tokens) + " new)");
  }
  const int64_t total = num_computed_tokens + num_new_tokens;
  if (total > static_cast<int64_t>(token_ids.size())) {
    throw InvalidArgument("KVCacheManager::allocate_slots: " + std::to_string(total) +
                          " slots asked for a request of " + std::to_string(token_ids.size()) + " tokens");
  }
  auto it = entries_.find(request_id);
  const bool holds = it != entries_.end() && !it->second.blocks.empty();
  const bool starts = !computed.blocks.empty();
  if (starts && (holds || computed.num_tokens != num_computed_tokens ||
                 static_cast<size_t>(blocks_for(computed.num_tokens)) != computed.blocks.size())) {
    throw Error("KVCacheManager::allocate_slots: computed blocks of request " + std::to_string(request_id) +
                " do not match its table or its computed count");
  }
  static const std::vector<int32_t> kEmpty;
  const std::vector<int32_t>& table = starts ? computed.blocks : holds ? it->second.blocks : kEmpty;
  const int32_t num_table = static_cast<int32_t>(table.size());

  // Blocks this step writes into that someone else also holds get a private copy. Only the
  // first can hold computed tokens (a fork's partial last block); the loop is defensive.
  std::vector<int32_t> shared;
  if (num_new_tokens > 0) {
    const int32_t end = std::min(num_table, blocks_for(total));
    for (int32_t i = static_cast<int32_t>(num_computed_tokens / block_size_); i < end; ++i) {
      const int32_t others = pool_.ref_count(table[static_cast<size_t>(i)]) - (starts ? 0 : 1);
      if (others > 0) shared.push_back(i);
    }
  }
  // Tables never shrink: a request asking for fewer slots than it holds keeps its blocks.
  const int32_t num_grow = std::max(0, blocks_for(total) - num_table);
  int32_t num_revived = 0;  // cached free blocks a start takes off the free queue
  if (starts) {
    for (int32_t b : computed.blocks) num_revived += pool_.ref_count(b) == 0 ? 1 : 0;
  }
  const int32_t num_fresh = num_grow + static_cast<int32_t>(shared.size());
  if (num_revived + num_fresh > pool_.num_free()) return false;

  Entry& entry = entries_[request_id];
  if (starts) {
    // Retained before allocating, so the allocation cannot evict them.
    for (int32_t b : computed.blocks) pool_.retain(b);
    entry.blocks = computed.blocks;
  }
  if (computed.num_queried_tokens > 0) {
    ++stats_.num_requests;
    stats_.num_queried_tokens += computed.num_queried_tokens;
    stats_.num_hit_tokens += computed.num_tokens;
  }
  std::vector<int32_t> fresh = *pool_.allocate(num_fresh);
  size_t next = 0;
  for (int32_t i : shared) {
    int32_t& slot = entry.blocks[static_cast<size_t>(i)];
    const int32_t copy = fresh[next++];
    if (static_cast<int64_t>(i) * block_size_ < num_computed_tokens) copies_.emplace_back(slot, copy);
    pool_.release(slot);
    slot = copy;
  }
  entry.blocks.insert(entry.blocks.end(), fresh.begin() + static_cast<std::ptrdiff_t>(next), fresh.end());

  if (pool_.caching_enabled()) {
    const size_t num_full = static_cast<size_t>(total / block_size_);
    if (num_full > entry.num_cached_blocks) {
      hash_blocks(entry, token_ids, num_full);
      for (size_t i = entry.num_cached_blocks; i < num_full; ++i) pool_.cache_block(entry.blocks[i], entry.hashes[i]);
      entry.num_cached_blocks = num_full;
    }
  }
  return true;
}

void KVCacheManager::free(uint64_t request_id, int64_t num_computed_tokens) {
  auto it = entries_.find(request_id);
  if (it == entries_.end()) return;
  const std::vector<int32_t>& blocks = it->second.blocks;
  const int64_t num_written_blocks = num_computed_tokens / block_size_;
  for (size_t i = blocks.size(); i-- > 0;) {
    pool_.release(blocks[i]);
    if (static_cast<int64_t>(i) >= num_written_blocks && pool_.ref_count(blocks[i]) == 0) pool_.uncache(blocks[i]);
  }
  entries_.erase(it);
}

std::vector<std::pair<int32_t, int32_t>> KVCacheManager::take_block_copies() {
  std::vector<std::pair<int32_t, int32_t>> out;
  out.swap(copies_);
  return out;
}

bool KVCacheManager::reset_prefix_cache() { return pool_.reset_prefix_cache(); }

const std::vector<int32_t>& KVCacheManager::block_table(uint64_t request_id) const {
  static const std::vector<int32_t> kEmpty;
  auto it = entries_.find(request_id);
  return it == entries_.end() ? kEmpty : it->second.blocks;
}

}  // namespace octavo
