// Inputs for the kernel benchmarks, made through the Backend interface only (allocate,
// copy_to_device), so the same code feeds the CPU backend and the CUDA one: host values go
// to device memory through copy_to_device only, never as host pointers to a device op.
// Everything is filled with random values, outputs too: zeros hide unwritten outputs and
// can run faster than real data, and an output page first touched inside a timed call
// would time the page fault.
#pragma once

#include <cstdint>
#include <vector>

#include "backend/backend.h"
#include "core/tensor.h"

namespace octavo::bench {

// Writes `count` elements of `dtype` (float32, bfloat16 or float16) at dst, device memory of
// backend, uniform in [lo, hi) from a counter-based stream of `seed`.
void fill_uniform(Backend& backend, void* dst, DType dtype, int64_t count, uint64_t seed,
                  float lo = -1.0f, float hi = 1.0f);

// Host floats to device memory of `dtype` (float32, bfloat16 or float16).
Buffer upload_floats(Backend& backend, DType dtype, const std::vector<float>& values);

// Host index arrays (token ids, positions, slots, block tables) to device memory.
Buffer upload_int32(Backend& backend, const std::vector<int32_t>& values);
Buffer upload_int64(Backend& backend, const std::vector<int64_t>& values);

// `sets` tensors of one shape in one random-filled allocation, each starting on a 64-byte
// boundary: the input sets a benchmark cycles through.
class TensorSets {
 public:
  TensorSets(Backend& backend, DType dtype, std::vector<int64_t> shape, int sets, uint64_t seed,
             float lo = -1.0f, float hi = 1.0f);
  Tensor operator[](int set) const;
  int64_t bytes_per_set() const { return bytes_per_set_; }  // the tensor's bytes, no padding

 private:
  Buffer buffer_;
  DType dtype_;
  std::vector<int64_t> shape_;
  int64_t bytes_per_set_ = 0;
  int64_t stride_bytes_ = 0;
};

}  // namespace octavo::bench
