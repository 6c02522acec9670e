// 16-byte loads and stores, the widest one thread can issue (LDG.128 / STG.128), and the
// host-side checks that decide whether a kernel may take its vectorised path. The
// memory-bound kernels (norm, rope, activation, copies) each have a scalar twin for the
// shapes and offsets that break the alignment.
#pragma once

#include <cuda_runtime.h>

#include <climits>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>

namespace octavo::cuda {

// 16 bytes of T: 4 floats or 8 halves / bfloat16s.
template <typename T>
struct alignas(16) Vec16 {
  static constexpr int kSize = 16 / static_cast<int>(sizeof(T));
  T v[kSize];
};

template <typename T>
__device__ __forceinline__ Vec16<T> load_vec16(const T* p) {
  Vec16<T> r;
  *reinterpret_cast<uint4*>(&r) = *reinterpret_cast<const uint4*>(p);
  return r;
}

template <typename T>
__device__ __forceinline__ void store_vec16(T* p, const Vec16<T>& value) {
  *reinterpret_cast<uint4*>(p) = *reinterpret_cast<const uint4*>(&value);
}

// True when every pointer is 16-byte aligned and every element offset (strides, widths,
// head offsets) of elem_size-byte elements keeps an aligned pointer aligned.
inline bool allows_vec16(size_t elem_size, std::initializer_list<const void*> pointers,
                         std::initializer_list<int64_t> element_offsets) {
  for (const void* p : pointers) {
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) return false;
  }
  for (int64_t offset : element_offsets) {
    if ((offset * static_cast<int64_t>(elem_size)) % 16 != 0) return false;
  }
  return true;
}

// Throws std::invalid_argument("<op>: <what>") unless ok.
inline void require_arg(bool ok, const char* op, const std::string& what) {
  if (!ok) throw std::invalid_argument(std::string(op) + ": " + what);
}

// A row stride must cover its row unless there is at most one row (then it is never used).
inline void require_row_stride(int64_t stride, int64_t width, int64_t rows, const char* op,
                               const char* name) {
  require_arg(rows <= 1 || stride >= width, op,
              std::string(name) + " row stride " + std::to_string(stride) +
                  " is shorter than its row of " + std::to_string(width));
}

// Blocks along gridDim.x: at most 2^31 - 1.
inline unsigned grid_x(int64_t blocks, const char* op) {
  require_arg(blocks <= INT_MAX, op, "too many rows for one launch: " + std::to_string(blocks));
  return static_cast<unsigned>(blocks);
}

// gridDim.y and gridDim.z stop at 65535; kernels that use y loop over what does not fit.
constexpr int64_t kMaxGridY = 65535;

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace octavo::cuda
