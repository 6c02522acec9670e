// Tensor: a non-owning view (pointer, dtype, shape, row stride) of memory that a Backend
// owns, on whatever device that backend runs. Buffer: the owner, freed by its backend.
// Kernels and backend ops take Tensors; only the inner dimensions must be contiguous,
// rows may be strided (a q/k/v slice of a fused QKV output, say).
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace octavo {

struct Tensor {
  void* data = nullptr;
  DType dtype = DType::kFloat32;
  std::vector<int64_t> shape;
  int64_t row_stride = 0;  // elements between consecutive indices of dim 0

  Tensor() = default;
  Tensor(void* data, DType dtype, std::vector<int64_t> shape, int64_t row_stride = -1);

  int64_t dim(int i) const { return shape.at(i < 0 ? shape.size() + i : i); }
  int64_t rows() const { return shape.empty() ? 0 : shape[0]; }
  int64_t row_size() const;  // product of dims after the first
  int64_t numel() const { return rows() * row_size(); }
  bool contiguous() const { return row_stride == row_size(); }

  template <typename T>
  T* ptr() const { return static_cast<T*>(data); }

  // Rows [begin, end) of dim 0, same stride.
  Tensor slice_rows(int64_t begin, int64_t end) const;
  // Columns [begin, end) of a 2-D view: the result keeps the parent's row stride.
  Tensor slice_cols(int64_t begin, int64_t end) const;
  // Same memory, new shape for the dims after the first (row stride kept).
  Tensor view_rows_as(std::vector<int64_t> inner_shape) const;
};

// Owns device (or host) memory through a deleter supplied by the backend that made it.
class Buffer {
 public:
  Buffer() = default;
  Buffer(void* data, size_t bytes, std::function<void(void*)> deleter);
  ~Buffer();
  Buffer(Buffer&& other) noexcept;
  Buffer& operator=(Buffer&& other) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  // A contiguous view of the buffer's first numel(shape) elements.
  Tensor as(DType dtype, std::vector<int64_t> shape) const;

 private:
  void reset();
  void* data_ = nullptr;
  size_t bytes_ = 0;
  std::function<void(void*)> deleter_;
};

// "[2, 3]": shapes in error messages.
std::string shape_string(const std::vector<int64_t>& shape);

// A tensor in host memory with its owner, for weights on their way to a backend.
struct HostTensor {
  std::vector<int64_t> shape;
  std::vector<float> values;
  int64_t numel() const;
};

}  // namespace octavo
