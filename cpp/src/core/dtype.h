// Element types the engine stores, and the host conversions between them.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>

namespace octavo {

enum class DType { kFloat32, kFloat16, kBFloat16, kInt32, kInt64 };

size_t dtype_size(DType dtype);
std::string dtype_name(DType dtype);

// IEEE half and bfloat16 bit patterns to float (exact) and back (round to nearest even).
float half_to_float(uint16_t bits);
float bfloat16_to_float(uint16_t bits);
uint16_t float_to_bfloat16(float value);

// Converts n elements of src (kFloat32, kFloat16 or kBFloat16) to float.
void convert_to_float(DType src_dtype, const void* src, float* dst, size_t n);

}  // namespace octavo
