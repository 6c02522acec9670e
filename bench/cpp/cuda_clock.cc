#include "cuda_clock.h"

#include "octavo/errors.h"

#ifdef OCTAVO_WITH_CUDA

#include <cuda_runtime.h>

namespace octavo::bench {

namespace {

void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    throw Error(std::string("octavo_bench_kernels: ") + what + ": " + cudaGetErrorName(status) + " (" +
                cudaGetErrorString(status) + ")");
  }
}

cudaStream_t backend_stream(Backend& backend) {
  if (backend.name() != "cuda") {
    throw InvalidArgument("cuda clock: backend '" + backend.name() + "' is not the CUDA backend");
  }
  void* stream = backend.native_stream();
  if (stream == nullptr) throw Error("cuda clock: the CUDA backend reports no stream");
  return static_cast<cudaStream_t>(stream);
}

// Why events on the backend's stream, and not on the legacy default stream after
// backend.synchronize(): the CUDA backend creates its stream with cudaStreamNonBlocking,
// which does not synchronise with the legacy default stream. An end event recorded on
// stream 0 would complete as soon as the host reached it, whatever kernels were still
// queued on the backend's stream, so start..end would measure the host's launch loop, not
// the device's work. Recorded on the backend's stream, the start event is reached when the
// work before the timed region has finished and the end event when the last op of the
// region has, so the elapsed time is the device time of the region (including any gaps the
// device spends waiting on the host between launches, which is part of what a caller pays).
class CudaEventClock final : public DeviceClock {
 public:
  explicit CudaEventClock(Backend& backend) : stream_(backend_stream(backend)) {
    check(cudaEventCreate(&start_), "cudaEventCreate");
    const cudaError_t status = cudaEventCreate(&end_);
    if (status != cudaSuccess) cudaEventDestroy(start_);
    check(status, "cudaEventCreate");
  }
  ~CudaEventClock() override {
    cudaEventDestroy(start_);
    cudaEventDestroy(end_);
  }
  CudaEventClock(const CudaEventClock&) = delete;
  CudaEventClock& operator=(const CudaEventClock&) = delete;

  void start() override {
    // Errors of earlier, untimed work (input fills, resets) surface here, not in the timing.
    check(cudaGetLastError(), "before the timed region");
    check(cudaEventRecord(start_, stream_), "cudaEventRecord(start)");
  }

  double stop_ms() override {
    check(cudaGetLastError(), "a launch in the timed region");
    check(cudaEventRecord(end_, stream_), "cudaEventRecord(end)");
    // A kernel of the region that faulted makes this (and every later call) fail.
    check(cudaEventSynchronize(end_), "cudaEventSynchronize(end) after the timed region");
    float ms = 0.0f;
    check(cudaEventElapsedTime(&ms, start_, end_), "cudaEventElapsedTime");
    return static_cast<double>(ms);
  }

 private:
  cudaStream_t stream_;
  cudaEvent_t start_ = nullptr;
  cudaEvent_t end_ = nullptr;
};

}  // namespace

std::unique_ptr<DeviceClock> make_cuda_event_clock(Backend& backend) {
  return std::make_unique<CudaEventClock>(backend);
}

void cuda_copy_device_to_device(Backend& backend, void* dst, const void* src, size_t bytes) {
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, backend_stream(backend)),
        "cudaMemcpyAsync(device to device)");
}

CudaDeviceInfo cuda_device_info() {
  CudaDeviceInfo info;
  check(cudaGetDevice(&info.device), "cudaGetDevice");
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, info.device), "cudaGetDeviceProperties");
  info.name = prop.name;
  info.sm_count = prop.multiProcessorCount;
  info.l2_bytes = prop.l2CacheSize;
  info.memory_bytes = static_cast<int64_t>(prop.totalGlobalMem);
  return info;
}

}  // namespace octavo::bench

#else  // !OCTAVO_WITH_CUDA

namespace octavo::bench {

namespace {
[[noreturn]] void no_cuda(const char* what) {
  throw Unsupported(std::string(what) + ": this octavo build has no CUDA (OCTAVO_CUDA=OFF)");
}
}  // namespace

std::unique_ptr<DeviceClock> make_cuda_event_clock(Backend&) { no_cuda("cuda event clock"); }

void cuda_copy_device_to_device(Backend&, void*, const void*, size_t) { no_cuda("device copy"); }

CudaDeviceInfo cuda_device_info() { no_cuda("cuda device info"); }

}  // namespace octavo::bench

#endif  // OCTAVO_WITH_CUDA
