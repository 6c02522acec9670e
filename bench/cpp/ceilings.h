// The two roofline ceilings, measured at the start of each run on the same machine, threads
// and backend as the cases after them: memory bandwidth from a large copy (bytes read plus
// bytes written, buffers many times the LLC) and the FLOP rate of the backend's GEMM on a
// square problem. Both are medians of several repetitions. On the CUDA backend: a
// cudaMemcpyAsync device to device and a bfloat16 GEMM, both timed with CUDA events.
// A copy is a floor for the memory ceiling, not the hardware peak: on the 2-vCPU AMD EPYC VM
// this was written on, an in-place read-modify-write pass over 256 MiB moved 35 GB/s where
// memcpy moved 18, so in-place ops (RoPE, fused add + RMSNorm) can show over 100%.
#pragma once

#include <cstdint>

#include "backend/backend.h"
#include "harness.h"

namespace octavo::bench {

struct CeilingConfig {
  int64_t copy_bytes = int64_t{256} << 20;  // each of source and destination (1 GiB on CUDA)
  int gemm_size = 2048;                     // m = n = k (8192 on CUDA, in bfloat16)
  int threads = 1;                          // threads of the CPU copy (the backend's)
  TimingConfig timing;
};

Ceilings measure_ceilings(Backend& backend, DeviceClock& clock, const CeilingConfig& config,
                          uint64_t seed);

}  // namespace octavo::bench
