// splitmix64 (Steele, Lea & Flood, "Fast splittable pseudorandom number generators", 2014),
// with the published constants; its stream passes BigCrush. One definition for the host and
// the CUDA kernels, which must draw the same bits: the seeded sampler (CPU and GPU), dummy
// weights (CPU and GPU fill), default request seeds and the prefix-cache block hash.
// Header-only and dependency-free, so kernels may include it too.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define OCTAVO_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define OCTAVO_HOST_DEVICE inline
#endif

namespace octavo {

// 2^64 / golden ratio: the generator's increment.
constexpr uint64_t kSplitMix64Increment = 0x9E3779B97F4A7C15ull;

// The output function: a bijective 64-bit mix.
OCTAVO_HOST_DEVICE constexpr uint64_t splitmix64_mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// The output for state x: the mix of the next state, x + increment.
OCTAVO_HOST_DEVICE constexpr uint64_t splitmix64(uint64_t x) { return splitmix64_mix(x + kSplitMix64Increment); }

}  // namespace octavo
