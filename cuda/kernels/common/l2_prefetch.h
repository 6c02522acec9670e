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

// Prefetches into L2 about `budget` bytes of [base, base + bytes), spread evenly: chunks of
// at most 512 bytes at a regular stride, so that however a GEMM splits the array among its
// blocks (by rows, or along k with split-K), each block finds the same share in L2. The
// whole array when budget >= bytes. Uses the Hopper bulk prefetch (cp.async.bulk.prefetch.L2)
// on sm_90+, per-line prefetch below. base must be 16-byte aligned. Throws
// std::invalid_argument for a misaligned base or a negative size.
void launch_l2_prefetch(const void* base, int64_t bytes, int64_t budget, cudaStream_t stream);

}  // namespace octavo::cuda
