// What the emulator tests share (one test per binary includes it once): the CUDA runtime
// calls the kernels' launch code makes, answered for an emulated sm_90, and conversions
// between float and the kernels' element types.
// EMU_SMEM=<bytes> sets the device's shared-memory limit (the attention test's prefill path).
#pragma once

#include <cstdlib>

extern "C" const char* cudaGetErrorString(cudaError_t) { return "emulated CUDA error"; }
extern "C" cudaError_t cudaGetDevice(int* d) {
  *d = 0;
  return cudaSuccess;
}
extern "C" cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr attr, int) {
  const char* smem = getenv("EMU_SMEM");
  switch (attr) {
    case cudaDevAttrComputeCapabilityMajor: *v = 9; break;
    case cudaDevAttrComputeCapabilityMinor: *v = 0; break;
    default: *v = smem ? atoi(smem) : 232448; break;  // H100's opt-in limit
  }
  return cudaSuccess;
}

template <typename T> T cvt(float x);
template <> inline float cvt<float>(float x) { return x; }
template <> inline __half cvt<__half>(float x) { return __float2half(x); }
template <> inline __nv_bfloat16 cvt<__nv_bfloat16>(float x) { return __float2bfloat16(x); }
inline float back(float x) { return x; }
inline float back(__half x) { return __half2float(x); }
inline float back(__nv_bfloat16 x) { return __bfloat162float(x); }
