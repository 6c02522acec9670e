#include "bench_data.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "core/splitmix64.h"
#include "octavo/errors.h"

namespace octavo::bench {

namespace {

// Elements generated per host chunk before one copy to the device: 256 KiB of float32,
// which stays in a core's L2 between generating and copying.
constexpr int64_t kChunkElements = int64_t{1} << 16;

void require_float_dtype(DType dtype) {
  if (dtype != DType::kFloat32 && dtype != DType::kBFloat16 && dtype != DType::kFloat16) {
    throw Unsupported("bench inputs: no random fill for " + dtype_name(dtype) +
                      " (float32, bfloat16 and float16 only)");
  }
}

// IEEE half bits of a float, round to nearest even; overflow to infinity, subnormals kept.
uint16_t float_to_half(float value) {
  uint32_t x;
  std::memcpy(&x, &value, sizeof x);
  const auto sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  x &= 0x7fffffffu;
  if (x >= 0x7f800000u) return sign | 0x7c00u | (x > 0x7f800000u ? 0x0200u : 0u);  // inf, NaN
  if (x >= 0x477ff000u) return sign | 0x7c00u;  // rounds to 65520 or more: infinity
  if (x < 0x38800000u) {                        // under 2^-14: a half subnormal (units of 2^-24)
    float magnitude;
    std::memcpy(&magnitude, &x, sizeof magnitude);
    return sign | static_cast<uint16_t>(std::nearbyint(magnitude * 16777216.0f));
  }
  // Normal: rebias the exponent (127 - 15 = 112) and round the 13 dropped mantissa bits.
  x += 0xc8000fffu + ((x >> 13) & 1u);
  return sign | static_cast<uint16_t>(x >> 13);
}

// Converts float32 values in place to dtype's bytes at the front of the same array.
void convert_in_place(std::vector<float>& values, int64_t count, DType dtype) {
  if (dtype == DType::kFloat32) return;
  auto* out = reinterpret_cast<uint16_t*>(values.data());
  if (dtype == DType::kFloat16) {
    for (int64_t i = 0; i < count; ++i) out[i] = float_to_half(values[i]);
  } else {
    for (int64_t i = 0; i < count; ++i) out[i] = float_to_bfloat16(values[i]);
  }
}

}  // namespace

void fill_uniform(Backend& backend, void* dst, DType dtype, int64_t count, uint64_t seed,
                  float lo, float hi) {
  require_float_dtype(dtype);
  const int64_t elem = static_cast<int64_t>(dtype_size(dtype));
  const int64_t chunks = (count + kChunkElements - 1) / kChunkElements;
  const uint64_t stream = splitmix64(seed);
  const float scale = (hi - lo) / static_cast<float>(1 << 24);
#pragma omp parallel if (chunks > 1)
  {
    std::vector<float> host(static_cast<size_t>(kChunkElements));
#pragma omp for schedule(static)
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t begin = c * kChunkElements;
      const int64_t n = std::min(kChunkElements, count - begin);
      for (int64_t i = 0; i < n; ++i) {
        // The top 24 bits: a float in [0, 1) with every value exactly representable.
        const uint64_t bits = splitmix64(stream + static_cast<uint64_t>(begin + i)) >> 40;
        host[i] = lo + scale * static_cast<float>(bits);
      }
      convert_in_place(host, n, dtype);
      backend.copy_to_device(static_cast<char*>(dst) + begin * elem, host.data(),
                             static_cast<size_t>(n * elem));
    }
  }
}

Buffer upload_floats(Backend& backend, DType dtype, const std::vector<float>& values) {
  require_float_dtype(dtype);
  const int64_t count = static_cast<int64_t>(values.size());
  Buffer buffer = backend.allocate(static_cast<size_t>(count) * dtype_size(dtype));
  std::vector<float> copy = values;
  convert_in_place(copy, count, dtype);
  backend.copy_to_device(buffer.data(), copy.data(), static_cast<size_t>(count) * dtype_size(dtype));
  return buffer;
}

Buffer upload_int32(Backend& backend, const std::vector<int32_t>& values) {
  const size_t bytes = values.size() * sizeof(int32_t);
  Buffer buffer = backend.allocate(bytes);
  backend.copy_to_device(buffer.data(), values.data(), bytes);
  return buffer;
}

Buffer upload_int64(Backend& backend, const std::vector<int64_t>& values) {
  const size_t bytes = values.size() * sizeof(int64_t);
  Buffer buffer = backend.allocate(bytes);
  backend.copy_to_device(buffer.data(), values.data(), bytes);
  return buffer;
}

TensorSets::TensorSets(Backend& backend, DType dtype, std::vector<int64_t> shape, int sets,
                       uint64_t seed, float lo, float hi)
    : dtype_(dtype), shape_(std::move(shape)) {
  int64_t numel = 1;
  for (int64_t d : shape_) numel *= d;
  bytes_per_set_ = numel * static_cast<int64_t>(dtype_size(dtype));
  constexpr int64_t kAlign = 64;
  stride_bytes_ = (bytes_per_set_ + kAlign - 1) / kAlign * kAlign;
  const int64_t total_bytes = stride_bytes_ * sets;
  buffer_ = backend.allocate(static_cast<size_t>(total_bytes));
  // Fill the padding too: every byte of the allocation is touched before timing.
  fill_uniform(backend, buffer_.data(), dtype, total_bytes / static_cast<int64_t>(dtype_size(dtype)),
               seed, lo, hi);
}

Tensor TensorSets::operator[](int set) const {
  return Tensor(static_cast<char*>(buffer_.data()) + set * stride_bytes_, dtype_, shape_);
}

}  // namespace octavo::bench
