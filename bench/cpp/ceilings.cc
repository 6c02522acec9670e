#include "ceilings.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "bench_data.h"
#include "cuda_clock.h"
#include "octavo/errors.h"

namespace octavo::bench {

namespace {

// The copy runs on the backend's threads, each copying one contiguous slice (slices start
// on cache lines): one thread alone cannot saturate a socket's memory controllers.
Stats time_host_copy(Backend& backend, DeviceClock& clock, const CeilingConfig& config,
                     uint64_t seed) {
  const int64_t bytes = config.copy_bytes;
  Buffer src = backend.allocate(static_cast<size_t>(bytes));
  Buffer dst = backend.allocate(static_cast<size_t>(bytes));
  fill_uniform(backend, src.data(), DType::kFloat32, bytes / 4, seed);
  fill_uniform(backend, dst.data(), DType::kFloat32, bytes / 4, seed + 1);
  const int threads = std::max(1, config.threads);
  TimedOp op;
  op.call = [&](int) {
#pragma omp parallel num_threads(threads)
    {
      const int t = omp_get_thread_num(), n = omp_get_num_threads();
      const int64_t begin = bytes * t / n / 64 * 64;
      const int64_t end = t + 1 == n ? bytes : bytes * (t + 1) / n / 64 * 64;
      std::memcpy(static_cast<char*>(dst.data()) + begin,
                  static_cast<const char*>(src.data()) + begin, static_cast<size_t>(end - begin));
    }
  };
  return time_op(op, config.timing, clock);
}

// One cudaMemcpyAsync device to device of config.copy_bytes on the backend's stream, timed
// by the caller's clock (CUDA events on that stream).
Stats time_device_copy(Backend& backend, DeviceClock& clock, const CeilingConfig& config,
                       uint64_t seed) {
  const int64_t bytes = config.copy_bytes;
  Buffer src = backend.allocate(static_cast<size_t>(bytes));
  Buffer dst = backend.allocate(static_cast<size_t>(bytes));
  fill_uniform(backend, src.data(), DType::kFloat32, bytes / 4, seed);
  fill_uniform(backend, dst.data(), DType::kFloat32, bytes / 4, seed + 1);
  backend.synchronize();
  TimedOp op;
  op.call = [&](int) {
    cuda_copy_device_to_device(backend, dst.data(), src.data(), static_cast<size_t>(bytes));
  };
  Stats stats = time_op(op, config.timing, clock);
  backend.synchronize();
  return stats;
}

Stats time_square_gemm(Backend& backend, DeviceClock& clock, const CeilingConfig& config,
                       DType dt, uint64_t seed) {
  const int64_t s = config.gemm_size;
  // One set: a 2048^3 product does ~1000 FLOPs per byte it touches, so the cache cannot
  // flatter it.
  TensorSets x(backend, dt, {s, s}, 1, seed);
  TensorSets w(backend, dt, {s, s}, 1, seed + 1, -0.05f, 0.05f);
  TensorSets y(backend, dt, {s, s}, 1, seed + 2);
  TimedOp op;
  op.call = [&](int) {
    Tensor out = y[0];
    backend.gemm(x[0], w[0], nullptr, out);
  };
  Stats stats = time_op(op, config.timing, clock);
  backend.synchronize();  // before the inputs are freed
  return stats;
}

}  // namespace

Ceilings measure_ceilings(Backend& backend, DeviceClock& clock, const CeilingConfig& config,
                          uint64_t seed) {
  Ceilings c;
  const bool cuda = backend.name() == "cuda";
  if (!cuda && backend.name() != "cpu") {
    throw Unsupported("ceilings: no memory copy for backend '" + backend.name() + "'");
  }
  if (cuda) {
    c.memory_stats = time_device_copy(backend, clock, config, seed);
  } else {
    c.memory_stats = time_host_copy(backend, clock, config, seed);
  }
  c.memory_gbps = 2.0 * static_cast<double>(config.copy_bytes) / (c.memory_stats.median_ms * 1e-3) * 1e-9;
  if (cuda) {
    c.memory_method = "cudaMemcpyAsync device to device of " +
                      std::to_string(config.copy_bytes >> 20) +
                      " MiB, CUDA events, read + write bytes, median of " +
                      std::to_string(c.memory_stats.reps);
  } else {
    c.memory_method = "memcpy of " + std::to_string(config.copy_bytes >> 20) + " MiB on " +
                      std::to_string(std::max(1, config.threads)) +
                      " threads, read + write bytes, median of " + std::to_string(c.memory_stats.reps);
  }

  // On CUDA the GEMM ceiling is the bfloat16 rate (bf16 in, bf16 out, fp32 accumulation in
  // cuBLASLt) whatever --dtype says: the tensor cores' peak the kernels are compared with.
  const DType gemm_dtype = cuda ? DType::kBFloat16 : backend.compute_dtype();
  c.gemm_stats = time_square_gemm(backend, clock, config, gemm_dtype, seed + 3);
  const double n = config.gemm_size;
  c.gemm_gflops = 2.0 * n * n * n / (c.gemm_stats.median_ms * 1e-3) * 1e-9;
  c.gemm_method = "backend gemm " + std::to_string(config.gemm_size) + "^3 " +
                  dtype_name(gemm_dtype) + (cuda ? ", CUDA events" : "") + ", median of " +
                  std::to_string(c.gemm_stats.reps);
  return c;
}

}  // namespace octavo::bench
