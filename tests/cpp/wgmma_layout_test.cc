// The Hopper prefill kernel's shared-memory layout against an independent model of how wgmma
// reads a 128-byte-swizzled operand through a matrix descriptor: decode the descriptor's
// fields, place the element by the canonical layout of the PTX ISA / CUTLASS (K-major:
// ((8, m), (8, 2)) : ((128 B, SBO), (2 B, 16 B)); MN-major: ((64, n), (8, k)) : ((2 B, LBO),
// (128 B, SBO))), then XOR address bits [4:6] with bits [7:9]. Every element the loaders place
// with swizzled_offset must be the one wgmma reads for the same (row, column). No GPU needed.
#include "attention/wgmma_layout.h"

#include <gtest/gtest.h>

#include <set>

namespace octavo::cuda::wgmma {
namespace {

struct Fields {
  uint32_t start, leading, stride;
  int swizzle, base_offset;
};

Fields decode(uint64_t desc) {
  return {static_cast<uint32_t>(desc & 0x3FFF) << 4, static_cast<uint32_t>((desc >> 16) & 0x3FFF) << 4,
          static_cast<uint32_t>((desc >> 32) & 0x3FFF) << 4, static_cast<int>(desc >> 62),
          static_cast<int>((desc >> 49) & 7)};
}

uint32_t swizzle128(uint32_t addr) { return addr ^ (((addr >> 7) & 7) << 4); }

// Element (mn, k) of one k-step (k < 16) of a K-major operand.
uint32_t read_k_major(uint64_t desc, int mn, int k) {
  const Fields f = decode(desc);
  return swizzle128(f.start + (mn % 8) * 128 + (mn / 8) * f.stride + k * 2);
}

// Element (mn, k) of one k-step of an MN-major operand.
uint32_t read_mn_major(uint64_t desc, int mn, int k) {
  const Fields f = decode(desc);
  return swizzle128(f.start + (mn % 64) * 2 + (mn / 64) * f.leading + (k % 8) * 128 + (k / 8) * f.stride);
}

constexpr uint32_t kBase = 5 * 1024;  // any 1024-byte-aligned shared address
constexpr int kTileRows = 128;        // the kernel's 128 query rows and 128-key tiles

TEST(WgmmaLayout, DescriptorFields) {
  const uint64_t d = matrix_descriptor(0x1230, 16, 1024);
  const Fields f = decode(d);
  EXPECT_EQ(f.start, 0x1230u);
  EXPECT_EQ(f.leading, 16u);
  EXPECT_EQ(f.stride, 1024u);
  EXPECT_EQ(f.swizzle, 1);  // 128-byte swizzle
  EXPECT_EQ(f.base_offset, 0);
  EXPECT_EQ(d, 0x4000004000010123ull);
  // The largest offsets the kernel uses still fit their 14-bit fields.
  EXPECT_EQ(decode(mn_major_descriptor(kBase, kTileRows, 0)).leading, 16384u);
}

TEST(WgmmaLayout, SwizzledTileIsABijection) {
  for (int dims : {64, 128}) {
    std::set<uint32_t> seen;
    for (int r = 0; r < kTileRows; ++r)
      for (int c = 0; c < dims; c += 1) {
        const uint32_t off = swizzled_offset(kTileRows, r, c);
        EXPECT_EQ(off % 2, 0u);
        EXPECT_LT(off, static_cast<uint32_t>(kTileRows * dims * 2));
        EXPECT_TRUE(seen.insert(off).second) << "row " << r << " col " << c;
      }
  }
}

// S = Q K^T: A = Q rows of one consumer warpgroup (rows 64 w .. 64 w + 63 of the tile), B = K.
TEST(WgmmaLayout, QueryAndKeyTilesAreWhatKMajorDescriptorsRead) {
  for (int dims : {64, 128}) {
    for (int wg = 0; wg < 2; ++wg) {
      const uint32_t q_base = kBase + wg * 64 * 128;
      for (int m = 0; m < 64; ++m)
        for (int d = 0; d < dims; ++d)
          ASSERT_EQ(read_k_major(k_major_descriptor(q_base, kTileRows, d / 16), m, d % 16),
                    kBase + swizzled_offset(kTileRows, 64 * wg + m, d))
              << "Q dims " << dims << " row " << 64 * wg + m << " col " << d;
    }
    for (int n = 0; n < kTileRows; ++n)
      for (int d = 0; d < dims; ++d)
        ASSERT_EQ(read_k_major(k_major_descriptor(kBase, kTileRows, d / 16), n, d % 16),
                  kBase + swizzled_offset(kTileRows, n, d))
            << "K dims " << dims << " key " << n << " col " << d;
  }
}

// O = P V: B = V [keys, dims], read transposed (MN-major), k-step = 16 keys.
TEST(WgmmaLayout, ValueTileIsWhatTheMnMajorDescriptorReads) {
  for (int dims : {64, 128})
    for (int key = 0; key < kTileRows; ++key)
      for (int d = 0; d < dims; ++d)
        ASSERT_EQ(read_mn_major(mn_major_descriptor(kBase, kTileRows, key / 16), d, key % 16),
                  kBase + swizzled_offset(kTileRows, key, d))
            << "V dims " << dims << " key " << key << " col " << d;
}

// The kernel advances descriptors by adding the step offset >> 4 to the k-step 0 descriptor.
TEST(WgmmaLayout, StepDescriptorsAreTheFirstPlusTheOffset) {
  const uint32_t top = 200 * 1024;  // near the top of the 227 KB a block may use
  for (uint32_t base : {kBase, top})
    for (int kk = 0; kk < 8; ++kk) {
      EXPECT_EQ(k_major_descriptor(base, kTileRows, kk),
                k_major_descriptor(base, kTileRows, 0) + (k_major_step_bytes(kTileRows, kk) >> 4));
      EXPECT_EQ(mn_major_descriptor(base, kTileRows, kk),
                mn_major_descriptor(base, kTileRows, 0) + (mn_major_step_bytes(kk) >> 4));
    }
}

// The 16-byte chunks the loaders write: chunk c of a row holds its columns 8c .. 8c + 7 in order.
TEST(WgmmaLayout, ChunkOffsetsHoldEightConsecutiveColumns) {
  for (int r = 0; r < kTileRows; ++r)
    for (int c = 0; c < 16; ++c)
      for (int e = 0; e < 8; ++e)
        EXPECT_EQ(swizzled_chunk_offset(kTileRows, r, c) + 2 * e, swizzled_offset(kTileRows, r, 8 * c + e));
}

// P's A fragments are S's accumulator registers in order: element e of k-step kk's fragment is
// the same (row, key) as accumulator element 8 kk + e; and every (row, column) of a 64 x 128
// accumulator belongs to exactly one (thread, element).
TEST(WgmmaLayout, ProbabilityFragmentsReuseScoreRegisters) {
  std::set<std::pair<int, int>> cells;
  for (int tid = 0; tid < 128; ++tid) {
    for (int kk = 0; kk < 8; ++kk)
      for (int e = 0; e < 8; ++e) {
        const RowCol a = a_fragment_element(tid, e);
        const RowCol s = accumulator_element(tid, p_fragment_source(kk, e));
        EXPECT_EQ(s.row, a.row);
        EXPECT_EQ(s.col, 16 * kk + a.col);
      }
    for (int i = 0; i < 64; ++i) {
      const RowCol s = accumulator_element(tid, i);
      EXPECT_TRUE(cells.insert({s.row, s.col}).second);
    }
  }
  EXPECT_EQ(cells.size(), 64u * 128u);
}

}  // namespace
}  // namespace octavo::cuda::wgmma
