#include "kv_cache/kv_cache_manager.h"

#include <string>

#include "octavo/errors.h"

namespace octavo {

KVCacheManager::KVCacheManager(int32_t num_blocks, int32_t block_size)
    : block_size_(block_size), pool_(num_blocks) {
  if (block_size <= 0) {
    throw InvalidArgument("KVCacheManager: block_size must be > 0, got " +
                          std::to_string(block_size));
  }
}

int32_t KVCacheManager::blocks_for(int64_t num_tokens) const {
  if (num_tokens <= 0) return 0;
  return static_cast<int32_t>((num_tokens + block_size_ - 1) / block_size_);
}

bool KVCacheManager::allocate_slots(uint64_t request_id, int64_t num_tokens) {
  const int32_t needed = blocks_for(num_tokens);
  auto it = tables_.find(request_id);
  const int32_t held = it == tables_.end() ? 0 : static_cast<int32_t>(it->second.size());
  // Tables never shrink: the scheduler only asks for fewer slots than it holds when a
  // request is partway through, and its cached K/V must stay where it is.
  if (needed <= held) return true;
  auto blocks = pool_.allocate(needed - held);
  if (!blocks) return false;
  std::vector<int32_t>& table = tables_[request_id];
  table.insert(table.end(), blocks->begin(), blocks->end());
  return true;
}

void KVCacheManager::free(uint64_t request_id) {
  auto it = tables_.find(request_id);
  if (it == tables_.end()) return;
  for (int32_t b : it->second) pool_.release(b);
  tables_.erase(it);
}

void KVCacheManager::fork(uint64_t parent_id, uint64_t child_id) {
  // Overwriting a live table would leak its references.
  if (tables_.count(child_id) != 0) {
    throw Error("KVCacheManager::fork: request " + std::to_string(child_id) +
                " already has a block table");
  }
  auto parent = tables_.find(parent_id);
  if (parent == tables_.end()) return;
  std::vector<int32_t> table = parent->second;
  for (int32_t b : table) pool_.retain(b);
  tables_.emplace(child_id, std::move(table));
}

const std::vector<int32_t>& KVCacheManager::block_table(uint64_t request_id) const {
  static const std::vector<int32_t> kEmpty;
  auto it = tables_.find(request_id);
  return it == tables_.end() ? kEmpty : it->second;
}

}  // namespace octavo
