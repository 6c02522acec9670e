// Shared-memory tile layout and wgmma matrix descriptors of the Hopper prefill kernel
// (paged_attention_prefill_wgmma.cu). Plain C++ (host and device), so that a host test
// (tests/cpp/wgmma_layout_test.cc) can check that the bytes the loaders write are the bytes
// wgmma reads through the descriptors.
//
// Tiles hold rows of 16-bit elements (a Q row of head_dim, a K or V row of head_dim) in the
// "128-byte swizzle" layout of the PTX ISA (Asynchronous Warpgroup Level Matrix Shared Memory
// Layout, swizzling mode 1): the columns are cut into panels of 64 elements (128 bytes, one
// swizzle row); panel p of a tile of R rows is R x 128 bytes at p * R * 128; row r of a panel
// is at r * 128, and its 16-byte chunk c (elements 8c..8c+7 of the panel) is stored at chunk
// c ^ (r % 8). Every panel starts 1024-byte aligned (an 8-row swizzle atom), because the
// hardware applies the XOR to address bits [4:6] from bits [7:9] of the absolute address.
//
// Matrix descriptor (64 bits; PTX ISA "Matrix Descriptor Format"):
//   bits  0-13: start address >> 4        bits 16-29: leading dimension byte offset >> 4
//   bits 32-45: stride dimension byte offset >> 4
//   bits 49-51: base offset (0: every pattern starts 1024-byte aligned)
//   bits 62-63: swizzle mode (1: 128-byte swizzle)
// With the 128-byte swizzle, in units of 16 bytes (CUTLASS's canonical GMMA layouts):
//   K-major (A = Q [rows, dims], B = K [keys, dims] for S = Q K^T):
//     ((8, m), (8 elements, 2)) : ((128 B, SBO), (2 B, 16 B)); SBO = 1024 (8 rows of 128 B),
//     LBO unused (encoded 1). One k-step (16 elements = 32 bytes) lies inside one panel:
//     its descriptor starts at panel base + 32 * (k-step within the panel).
//   MN-major (B = V [keys, dims] for O = P V, with the transpose-B bit):
//     ((64 elements, n), (8, k)) : ((2 B, LBO), (128 B, SBO)); LBO = the distance between
//     64-dim panels (R x 128 bytes), SBO = 1024 (8 keys). k-step kk starts at 16 kk rows.
#pragma once

#include <cstdint>

#if defined(__CUDACC__) || defined(OCTAVO_CUDA_EMULATION)
#define OCTAVO_WGMMA_HD __host__ __device__
#else
#define OCTAVO_WGMMA_HD
#endif

namespace octavo::cuda::wgmma {

constexpr int kSwizzleRowBytes = 128;   // one panel row: 64 16-bit elements
constexpr int kSwizzleAtomBytes = 1024; // 8 rows: the alignment every panel needs
constexpr int kPanelElems = 64;

// Byte offset of element (row, col) in a swizzled tile of `rows` rows (a multiple of 8).
OCTAVO_WGMMA_HD constexpr uint32_t swizzled_offset(int rows, int row, int col) {
  const int panel = col / kPanelElems;
  const int chunk = (col % kPanelElems) / 8;
  return static_cast<uint32_t>(panel * rows * kSwizzleRowBytes + row * kSwizzleRowBytes +
                               ((chunk ^ (row % 8)) * 16) + (col % 8) * 2);
}

// Byte offset of 16-byte chunk `chunk` (elements 8 chunk .. 8 chunk + 7) of row `row`: what
// a loader that moves 16 bytes at a time writes to.
OCTAVO_WGMMA_HD constexpr uint32_t swizzled_chunk_offset(int rows, int row, int chunk) {
  return swizzled_offset(rows, row, chunk * 8);
}

// The descriptor of a 128-byte-swizzled operand at shared address `start` (bytes).
OCTAVO_WGMMA_HD constexpr uint64_t matrix_descriptor(uint32_t start, uint32_t leading_bytes,
                                                    uint32_t stride_bytes) {
  return (uint64_t{(start >> 4) & 0x3FFFu}) | (uint64_t{(leading_bytes >> 4) & 0x3FFFu} << 16) |
         (uint64_t{(stride_bytes >> 4) & 0x3FFFu} << 32) | (uint64_t{1} << 62);
}

// Descriptors of one k-step (16 elements of K) for the kernel's three operands; `base` is the
// tile's shared address (1024-byte aligned), `rows` its row count. A k-step's descriptor is
// the k-step 0 descriptor plus its start offset >> 4 (addresses stay below 256 KB, so the
// 14-bit start field never carries).
// A = Q or B = K (K-major): dims 16 kk .. 16 kk + 15 (panel kk / 4, 32 bytes per k-step).
OCTAVO_WGMMA_HD constexpr uint32_t k_major_step_bytes(int rows, int kk) {
  return static_cast<uint32_t>((kk / 4) * rows * kSwizzleRowBytes + (kk % 4) * 32);
}
OCTAVO_WGMMA_HD constexpr uint64_t k_major_descriptor(uint32_t base, int rows, int kk) {
  return matrix_descriptor(base + k_major_step_bytes(rows, kk), 16, kSwizzleAtomBytes);
}
// B = V (MN-major, transposed): keys 16 kk .. 16 kk + 15 of a tile of `rows` keys.
OCTAVO_WGMMA_HD constexpr uint32_t mn_major_step_bytes(int kk) {
  return static_cast<uint32_t>(kk * 16 * kSwizzleRowBytes);
}
OCTAVO_WGMMA_HD constexpr uint64_t mn_major_descriptor(uint32_t base, int rows, int kk) {
  return matrix_descriptor(base + mn_major_step_bytes(kk), static_cast<uint32_t>(rows * kSwizzleRowBytes),
                           kSwizzleAtomBytes);
}

// Register fragments of wgmma .m64nNk16 (PTX ISA "Register Fragments"): thread `tid` of the
// warpgroup (warp w = tid / 32, g = (tid % 32) / 4, t = tid % 4) holds rows 16 w + g and
// 16 w + g + 8 of the 64, like the 16-row tiles of mma.sync m16n8k16.
struct RowCol {
  int row, col;
};
// fp32 accumulator element i (0 .. N / 2 - 1): pairs of columns 2t, 2t + 1 of each 8-column
// n-tile i / 4, row g for i % 4 < 2, g + 8 otherwise.
OCTAVO_WGMMA_HD constexpr RowCol accumulator_element(int tid, int i) {
  return {16 * (tid / 32) + (tid % 32) / 4 + 8 * ((i / 2) % 2), 8 * (i / 4) + 2 * (tid % 4) + i % 2};
}
// A from registers, 16-bit: element e (0..7) of the four 32-bit registers (register e / 2,
// low half for even e): rows g / g + 8 and columns 2t, 2t + 1 / 2t + 8, 2t + 9 of the k-step.
OCTAVO_WGMMA_HD constexpr RowCol a_fragment_element(int tid, int e) {
  return {16 * (tid / 32) + (tid % 32) / 4 + 8 * ((e / 2) % 2), 2 * (tid % 4) + e % 2 + 8 * (e / 4)};
}
// So element e of the A fragment of k-step kk (keys 16 kk ..) is accumulator element 8 kk + e
// of S: P's fragments are S's registers in order, rounded to 16 bits and packed in pairs.
OCTAVO_WGMMA_HD constexpr int p_fragment_source(int kk, int e) { return 8 * kk + e; }

}  // namespace octavo::cuda::wgmma
