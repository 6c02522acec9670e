// Pulling bytes that a later kernel will read into the L2 cache while the memory bus is idle.
// In a batch-1 decode step every GEMM streams its weights from DRAM, and between two GEMMs
// a few small kernels (norm, rope, attention, silu) leave the bus idle for 2-10 us; a prefetch
// issued on a second stream at the start of that gap lets the next GEMM find part of its
// weights in L2. A prefetch is a hint: it writes nothing, and memory it names may be evicted
// before it is read.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace octavo::cuda {

// Prefetches into L2 the first bytes of each of `rows` rows (row r at base + r * row_pitch,
// row_bytes long), about `budget` bytes in all: the same prefix of every row, because a GEMM
// reading w[n, k] walks every row from its start at once (one block per group of rows), so
// the prefixes are what it reads first, before its own streaming evicts anything. Prefixes
// are whole 16-byte units of at least 128 bytes (fewer rows than `rows` when the budget is
// that small); whole rows when budget >= rows * row_bytes. Uses the Hopper bulk prefetch
// (cp.async.bulk.prefetch.L2) on sm_90+, one prefetch per 128-byte line below. base and
// row_pitch must be multiples of 16 bytes. Throws std::invalid_argument otherwise, and for
// negative sizes.
void launch_l2_prefetch(const void* base, int64_t rows, int64_t row_pitch, int64_t row_bytes, int64_t budget,
                        cudaStream_t stream);

}  // namespace octavo::cuda
