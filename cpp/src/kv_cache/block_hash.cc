#include "kv_cache/block_hash.h"

#include "core/splitmix64.h"

namespace octavo {

namespace {

// Two different 64-bit finalizers, one per half of the hash, so that the halves do not
// collide together: splitmix64's (mix_a) and MurmurHash3's (mix_b).
constexpr auto mix_a = splitmix64_mix;

uint64_t mix_b(uint64_t x) {
  x = (x ^ (x >> 33)) * 0xff51afd7ed558ccdULL;
  x = (x ^ (x >> 33)) * 0xc4ceb9fe1a85ec53ULL;
  return x ^ (x >> 33);
}

uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

}  // namespace

BlockHash hash_block_tokens(const BlockHash& parent, const int32_t* tokens, int32_t num_tokens,
                            uint64_t extra_key) {
  // Each half is a chain of bijections over (state xor input), seeded from the parent, so
  // two blocks differing in one token always differ in both halves' input to the next round.
  uint64_t a = mix_a(parent.hi ^ 0x9e3779b97f4a7c15ULL);
  uint64_t b = mix_b(parent.lo ^ 0xd1b54a32d192ed03ULL);
  for (int32_t i = 0; i < num_tokens; ++i) {
    const uint64_t t = static_cast<uint32_t>(tokens[i]);
    a = mix_a(a ^ t);
    b = mix_b(b ^ (t * 0x9e3779b97f4a7c15ULL + static_cast<uint64_t>(i)));
  }
  a = mix_a(a ^ extra_key ^ (static_cast<uint64_t>(num_tokens) << 32));
  b = mix_b(b ^ rotl(extra_key, 29) ^ static_cast<uint64_t>(num_tokens));
  return BlockHash{mix_a(a ^ rotl(b, 32)), mix_b(b ^ a)};
}

}  // namespace octavo
