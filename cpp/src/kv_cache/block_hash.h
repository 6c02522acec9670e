// BlockHash: the identity of a full KV block for the prefix cache. It is chained: a block's
// hash digests its parent's hash, its token ids and an extra key (anything else that changes
// the K/V, such as a future LoRA id), so equal hashes mean equal prefixes up to that block.
// 128 bits, so that a false hit (which would silently reuse the wrong K/V) is out of reach
// for any realistic number of cached blocks.
#pragma once

#include <cstddef>
#include <cstdint>

namespace octavo {

struct BlockHash {
  uint64_t hi = 0;
  uint64_t lo = 0;
  bool operator==(const BlockHash& other) const { return hi == other.hi && lo == other.lo; }
  bool operator!=(const BlockHash& other) const { return !(*this == other); }
};

struct BlockHashHasher {
  size_t operator()(const BlockHash& h) const { return static_cast<size_t>(h.lo ^ (h.hi >> 7)); }
};

// The parent of a sequence's first block.
constexpr BlockHash kRootBlockHash{0x6f637461766f2d70ULL, 0x7265666978000001ULL};

// Hash of one block holding tokens[0, num_tokens), after the block whose hash is parent.
BlockHash hash_block_tokens(const BlockHash& parent, const int32_t* tokens, int32_t num_tokens,
                            uint64_t extra_key);

}  // namespace octavo
