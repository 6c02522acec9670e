// KVCacheManager: each request's block table over a BlockPool. The scheduler asks it what a
// request can start from (prefix-cache hits, or a forked parent's blocks), for room
// (allocate_slots) and gives blocks back (free); it never decides who runs.
// Sharing is by reference count; a request about to write into a block that someone else
// also holds gets a private copy first (copy-on-write), which the engine carries out on the
// device before the step's forward (take_block_copies). With prefix caching, every block a
// request fills is recorded under its chained BlockHash as soon as it is allocated: the
// step's forward writes each layer's K/V before any attention reads it, so a request
// admitted later in the same step may already share those blocks.
#pragma once

#include <cstdint>
#include <unordered_map>
#include <utility>
#include <vector>

#include "kv_cache/block_hash.h"
#include "kv_cache/block_pool.h"

namespace octavo {

// Blocks a request with no table can start from instead of computing their tokens
// (vLLM's KVCacheBlocks for the computed part).
struct ComputedBlocks {
  std::vector<int32_t> blocks;
  int64_t num_tokens = 0;          // tokens they hold for the request; the last block may be partial
  int64_t num_queried_tokens = 0;  // tokens looked up in the prefix cache (0: not a lookup)
};

// Prefix-cache counters, in tokens, counted once per admission of a request (vLLM's
// prefix_cache_queries / prefix_cache_hits).
struct PrefixCacheStats {
  int64_t num_requests = 0;
  int64_t num_queried_tokens = 0;
  int64_t num_hit_tokens = 0;
};

class KVCacheManager {
 public:
  KVCacheManager(int32_t num_blocks, int32_t block_size, bool enable_prefix_caching = false);

  int32_t block_size() const { return block_size_; }
  int32_t num_blocks() const { return pool_.num_blocks(); }
  // Free blocks, cached ones included (they are evicted on demand).
  int32_t num_free_blocks() const { return pool_.num_free(); }
  int32_t blocks_for(int64_t num_tokens) const;
  bool prefix_caching_enabled() const { return pool_.caching_enabled(); }

  // The leading full blocks of token_ids found in the prefix cache, stopping before the last
  // token (it must be computed, so the request has logits to sample from). Takes no
  // references. Empty (and not a query) when prefix caching is off.
  ComputedBlocks get_computed_blocks(uint64_t request_id, const std::vector<int32_t>& token_ids);
  // The blocks of parent_id holding its first num_tokens tokens (a fork of n > 1 samples:
  // the last block may be partial, and is copied before the child writes to it).
  ComputedBlocks get_forked_blocks(uint64_t parent_id, int64_t num_tokens) const;

  // Makes room for num_new_tokens tokens after the first num_computed_tokens of token_ids.
  // computed: what a request holding no blocks starts from (from get_*_blocks; its
  // num_tokens must equal num_computed_tokens). A block the new tokens go into that is also
  // held by others is replaced by a private copy. With prefix caching, the blocks that become
  // full are cached. Returns false, changing nothing, when the pool has too few free blocks.
  bool allocate_slots(uint64_t request_id, const std::vector<int32_t>& token_ids,
                      int64_t num_computed_tokens, int64_t num_new_tokens,
                      const ComputedBlocks& computed = {});
  // Releases all of the request's blocks, last block first so that a prompt's leading
  // blocks (the likeliest to be shared again) are evicted last. No-op for an unknown id.
  // num_computed_tokens: how many of its tokens have K/V written. A block past them that was
  // cached when allocated (a request preempted in the step that allocated it) leaves the
  // prefix cache; nobody else holds it, since admissions, the only way to share a new
  // block, do not happen in a step that preempts.
  void free(uint64_t request_id, int64_t num_computed_tokens = INT64_MAX);

  // (source, destination) block copies decided since the last call, in order.
  std::vector<std::pair<int32_t, int32_t>> take_block_copies();
  // Empties the prefix cache; false (nothing changed) while any request holds blocks.
  bool reset_prefix_cache();
  const PrefixCacheStats& prefix_cache_stats() const { return stats_; }

  // Empty for an unknown id.
  const std::vector<int32_t>& block_table(uint64_t request_id) const;

  const BlockPool& pool() const { return pool_; }

 private:
  struct Entry {
    std::vector<int32_t> blocks;
    std::vector<BlockHash> hashes;  // of the request's leading full blocks, computed lazily
    size_t num_cached_blocks = 0;   // leading blocks already offered to the pool's cache
  };
  // Extends entry.hashes to the first num_full_blocks full blocks of token_ids.
  void hash_blocks(Entry& entry, const std::vector<int32_t>& token_ids, size_t num_full_blocks) const;

  int32_t block_size_;
  BlockPool pool_;
  std::unordered_map<uint64_t, Entry> entries_;
  std::vector<std::pair<int32_t, int32_t>> copies_;
  PrefixCacheStats stats_;
};

}  // namespace octavo
