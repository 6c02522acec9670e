// The CUDA side of octavo_bench_kernels: a DeviceClock on CUDA events, the device-to-device
// copy of the memory ceiling, and what the device is. Defined in cuda_clock.cc, which is
// the only bench file that includes the CUDA runtime; in builds without CUDA
// (OCTAVO_WITH_CUDA undefined) every function here throws Unsupported.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "backend/backend.h"
#include "harness.h"

namespace octavo::bench {

// Times device work with a pair of CUDA events recorded on the backend's own stream
// (Backend::native_stream()); cuda_clock.cc says why that stream and not the default one.
std::unique_ptr<DeviceClock> make_cuda_event_clock(Backend& backend);

// Enqueues a device-to-device copy of `bytes` on the backend's stream (no synchronisation).
void cuda_copy_device_to_device(Backend& backend, void* dst, const void* src, size_t bytes);

struct CudaDeviceInfo {
  std::string name;
  int device = 0;
  int sm_count = 0;
  int64_t l2_bytes = 0;
  int64_t memory_bytes = 0;
};
// The current device (the one make_cuda_backend uses).
CudaDeviceInfo cuda_device_info();

}  // namespace octavo::bench
