// Programmatic dependent launch (PDL, sm_90+): a kernel launched with launch_dependent may be
// scheduled while the kernel before it on the stream is still finishing, so its blocks are
// resident and waiting when the producer's last blocks exit, instead of paying the launch
// gap after it (about a microsecond per kernel boundary, a few per layer in a decode step,
// where the kernels themselves last 2-80 us). The kernel must call wait_for_producer() before
// it reads anything the previous kernel writes (or writes anything it reads), and every block
// must call it, early exits included: a kernel whose blocks all left without waiting could
// complete before its own producer, and the kernel after it would wait on nothing. What no
// kernel writes may be read before the wait, overlapping the producer's tail: weights and
// tables, and a step's inputs (positions, slots, sequence lengths), which the engine copies
// from the host before the forward's first kernel (a copy is never launched early, so every
// kernel after it starts after it lands). The norms, rope and decode attention do. Graph
// capture keeps the programmatic edges. Below sm_90, or with OCTAVO_PDL=0, launch_dependent
// is a plain launch and wait_for_producer() returns at once.
#pragma once

#include <cuda_runtime.h>

#include <cstdlib>

#include "common/kernel_dtype.h"

namespace octavo::cuda {

__device__ __forceinline__ void wait_for_producer() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// Whether launches use PDL: the current device at the first call is sm_90+ and OCTAVO_PDL is
// not "0" (one setting per process: octavo drives one device).
inline bool dependent_launch_enabled() {
  static const bool enabled = [] {
    const char* env = std::getenv("OCTAVO_PDL");
    if (env != nullptr && env[0] == '0') return false;
    int device = 0, major = 0;
    if (cudaGetDevice(&device) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess) {
      cudaGetLastError();
      return false;
    }
    return major >= 9;
  }();
  return enabled;
}

// kernel<<<grid, block, smem, stream>>>(args...), with the programmatic-serialization
// attribute when dependent_launch_enabled().
template <typename... Params, typename... Args>
void launch_dependent(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                      Args&&... args) {
#if defined(OCTAVO_CUDA_EMULATION)  // tests/cuda_emulation: a plain emulated launch
  emu_launch(kernel, grid, block, smem, stream, static_cast<Params>(args)...);
#else
  cudaLaunchConfig_t config = {};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  cudaLaunchAttribute attribute[1];
  attribute[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute[0].val.programmaticStreamSerializationAllowed = 1;
  config.attrs = attribute;
  config.numAttrs = dependent_launch_enabled() ? 1 : 0;
  OCTAVO_CUDA_CHECK(cudaLaunchKernelEx(&config, kernel, static_cast<Params>(args)...));
#endif
}

}  // namespace octavo::cuda
