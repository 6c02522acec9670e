#include "core/tensor.h"

#include <sstream>
#include <utility>

#include "octavo/errors.h"

namespace octavo {

namespace {
int64_t product(const std::vector<int64_t>& dims, size_t from) {
  int64_t n = 1;
  for (size_t i = from; i < dims.size(); ++i) n *= dims[i];
  return n;
}
}  // namespace

Tensor::Tensor(void* data_, DType dtype_, std::vector<int64_t> shape_, int64_t row_stride_)
    : data(data_), dtype(dtype_), shape(std::move(shape_)), row_stride(row_stride_) {
  if (row_stride < 0) row_stride = row_size();
}

int64_t Tensor::row_size() const { return shape.empty() ? 0 : product(shape, 1); }

Tensor Tensor::slice_rows(int64_t begin, int64_t end) const {
  if (begin < 0 || end > rows() || begin > end) throw Error("Tensor::slice_rows out of range");
  Tensor out = *this;
  out.data = static_cast<char*>(data) + begin * row_stride * static_cast<int64_t>(dtype_size(dtype));
  out.shape[0] = end - begin;
  return out;
}

Tensor Tensor::slice_cols(int64_t begin, int64_t end) const {
  if (shape.size() != 2 || begin < 0 || end > shape[1] || begin > end) {
    throw Error("Tensor::slice_cols needs a 2-D view and a range inside it");
  }
  Tensor out = *this;
  out.data = static_cast<char*>(data) + begin * static_cast<int64_t>(dtype_size(dtype));
  out.shape[1] = end - begin;
  return out;
}

Tensor Tensor::view_rows_as(std::vector<int64_t> inner_shape) const {
  if (product(inner_shape, 0) != row_size()) throw Error("Tensor::view_rows_as changes the row size");
  Tensor out = *this;
  out.shape.assign(1, rows());
  out.shape.insert(out.shape.end(), inner_shape.begin(), inner_shape.end());
  return out;
}

Buffer::Buffer(void* data, size_t bytes, std::function<void(void*)> deleter)
    : data_(data), bytes_(bytes), deleter_(std::move(deleter)) {}

Buffer::~Buffer() { reset(); }

Buffer::Buffer(Buffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      bytes_(std::exchange(other.bytes_, 0)),
      deleter_(std::move(other.deleter_)) {}

Buffer& Buffer::operator=(Buffer&& other) noexcept {
  if (this != &other) {
    reset();
    data_ = std::exchange(other.data_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
    deleter_ = std::move(other.deleter_);
  }
  return *this;
}

void Buffer::reset() {
  if (data_ != nullptr && deleter_) deleter_(data_);
  data_ = nullptr;
  bytes_ = 0;
}

Tensor Buffer::as(DType dtype, std::vector<int64_t> shape) const {
  Tensor t(data_, dtype, std::move(shape));
  if (static_cast<size_t>(t.numel()) * dtype_size(dtype) > bytes_) {
    throw Error("Buffer::as: view is larger than the buffer");
  }
  return t;
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::ostringstream out;
  out << "[";
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << "]";
  return out.str();
}

int64_t HostTensor::numel() const { return product(shape, 0); }

}  // namespace octavo
