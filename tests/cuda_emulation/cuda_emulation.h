// Runs the CUDA attention and sampling kernels on the CPU, to check their indexing, masking
// and barriers on a machine without a GPU. Force-included (g++ -include) before a kernel source that
// to_host_source.py has rewritten (launches become emu_launch calls, dynamic shared memory a
// buffer). Blocks run one at a time; each CUDA thread is a ucontext fiber that yields at
// barriers, so __syncthreads, __syncwarp and shuffles are exact, and a shuffle or barrier
// not reached by every lane deadlocks instead of passing. wmma fragments are emulated as
// whole 16x16 fp32 tiles per thread. Not a timing tool, and it cannot see hardware-only
// faults (alignment traps, bank conflicts).
#pragma once
#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <vector>
#include <algorithm>
#include "common/kernel_dtype.h"
#undef OCTAVO_CUDA_CHECK_LAUNCH
#define OCTAVO_CUDA_CHECK_LAUNCH() ((void)0)
#undef __shared__
#define __shared__ static
#undef __launch_bounds__
#define __launch_bounds__(...)
#undef __global__
#define __global__
#undef __device__
#define __device__
#undef __host__
#define __host__
#define cudaFuncSetAttribute(...) cudaSuccess

inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }

#include <ucontext.h>
struct EmuBar { int count = 0, arrived = 0; long gen = 0; };
struct EmuState {
  std::vector<ucontext_t> ctx;
  ucontext_t sched;
  std::vector<std::vector<char>> stacks;
  std::vector<char> done;
  int cur = 0;
  EmuBar block_bar;
  std::vector<EmuBar> warp_bar;
  std::vector<double> xchg;
  std::vector<float> dyn_smem;
};
inline EmuState& emu() { static EmuState s; return s; }
inline uint3 emu_threadIdx;
inline uint3 emu_blockIdx;
inline dim3 emu_blockDim, emu_gridDim;
#define threadIdx emu_threadIdx
#define blockIdx emu_blockIdx
#define blockDim emu_blockDim
#define gridDim emu_gridDim
inline float* emu_dyn_smem() { return emu().dyn_smem.data(); }
inline void emu_yield() { auto& e = emu(); swapcontext(&e.ctx[e.cur], &e.sched); }
inline void emu_wait(EmuBar& b) {
  const long g = b.gen;
  if (++b.arrived == b.count) { b.arrived = 0; ++b.gen; return; }
  while (b.gen == g) emu_yield();
}
inline void __syncthreads() { emu_wait(emu().block_bar); }
inline void __syncwarp(unsigned = 0xffffffffu) { emu_wait(emu().warp_bar[threadIdx.x / 32]); }
// Lane `lane` reads lane src_of(lane)'s value (its own when src_of leaves the warp).
template <typename V, typename F>
V emu_shuffle(V v, F src_of) {
  static_assert(sizeof(V) <= sizeof(double), "shuffled values are at most 8 bytes");
  const int lane = threadIdx.x % 32, w = threadIdx.x / 32;
  std::memcpy(&emu().xchg[threadIdx.x], &v, sizeof(V));
  __syncwarp();
  const int src = src_of(lane);
  V r;
  std::memcpy(&r, &emu().xchg[w * 32 + (src >= 0 && src < 32 ? src : lane)], sizeof(V));
  __syncwarp();
  return r;
}
template <typename V>
V __shfl_xor_sync(unsigned, V v, int off) { return emu_shuffle(v, [&](int l) { return l ^ off; }); }
template <typename V>
V __shfl_up_sync(unsigned, V v, unsigned off) { return emu_shuffle(v, [&](int l) { return l - (int)off; }); }
template <typename V>
V __shfl_sync(unsigned, V v, int src) { return emu_shuffle(v, [&](int) { return src; }); }
// Atomics: fibers never preempt each other, so a plain read-modify-write is atomic.
inline unsigned atomicAdd(unsigned* p, unsigned v) { const unsigned old = *p; *p = old + v; return old; }
inline int atomicAdd(int* p, int v) { const int old = *p; *p = old + v; return old; }
inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) {
  const unsigned long long old = *p; *p = old + v; return old;
}
inline unsigned atomicOr(unsigned* p, unsigned v) { const unsigned old = *p; *p = old | v; return old; }
inline unsigned __float_as_uint(float x) { unsigned u; std::memcpy(&u, &x, sizeof u); return u; }
inline float __uint_as_float(unsigned u) { float x; std::memcpy(&x, &u, sizeof x); return x; }
inline std::function<void()> emu_body;
inline void emu_entry() { emu_body(); emu().done[emu().cur] = 1; swapcontext(&emu().ctx[emu().cur], &emu().sched); }
template <typename... KArgs, typename... Args>
void emu_launch(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t, Args... args) {
  auto& e = emu();
  const int nt = block.x * block.y * block.z;
  if (nt % 32) throw std::runtime_error("emu: block not a whole number of warps");
  emu_gridDim = grid; emu_blockDim = block;
  e.dyn_smem.assign(smem / 4 + 16, std::nanf(""));
  e.xchg.assign(nt, 0.f);
  e.ctx.resize(nt); e.stacks.resize(nt); e.done.assign(nt, 0);
  for (auto& st : e.stacks) st.resize(1 << 18);
  emu_body = [&] { kernel(args...); };
  for (unsigned z = 0; z < grid.z; ++z) for (unsigned y = 0; y < grid.y; ++y) for (unsigned x = 0; x < grid.x; ++x) {
    emu_blockIdx = make_uint3(x, y, z);
    e.block_bar = EmuBar{nt};
    e.warp_bar.assign(nt / 32, EmuBar{32});
    for (int t = 0; t < nt; ++t) {
      e.done[t] = 0;
      getcontext(&e.ctx[t]);
      e.ctx[t].uc_stack.ss_sp = e.stacks[t].data();
      e.ctx[t].uc_stack.ss_size = e.stacks[t].size();
      e.ctx[t].uc_link = nullptr;
      makecontext(&e.ctx[t], emu_entry, 0);
    }
    for (;;) {
      bool any = false;
      for (int t = 0; t < nt; ++t) {
        if (e.done[t]) continue;
        any = true;
        e.cur = t;
        emu_threadIdx = make_uint3(t, 0, 0);
        swapcontext(&e.sched, &e.ctx[t]);
      }
      if (!any) break;
    }
  }
}
namespace nvcuda { namespace wmma {
struct row_major {}; struct col_major {}; struct matrix_a {}; struct matrix_b {}; struct accumulator {};
enum layout_t { mem_row_major, mem_col_major };
template <class Use, int M, int N, int K, class T, class Layout = void> struct fragment { float m[16][16]; };
template <class F> void fill_fragment(F& f, float v) { for (auto& r : f.m) for (auto& x : r) x = v; }
template <class T> float emu_f(T x) { return (float)x; }
inline float emu_f(__half x) { return __half2float(x); }
inline float emu_f(__nv_bfloat16 x) { return __bfloat162float(x); }
template <class U, class T> void load_matrix_sync(fragment<U, 16, 16, 16, T, row_major>& f, const T* p, unsigned ld) {
  for (int i = 0; i < 16; ++i) for (int j = 0; j < 16; ++j) f.m[i][j] = emu_f(p[i * ld + j]);
}
template <class U, class T> void load_matrix_sync(fragment<U, 16, 16, 16, T, col_major>& f, const T* p, unsigned ld) {
  for (int i = 0; i < 16; ++i) for (int j = 0; j < 16; ++j) f.m[i][j] = emu_f(p[j * ld + i]);
}
template <class A, class B, class T>
void mma_sync(fragment<accumulator, 16, 16, 16, float>& d, const fragment<matrix_a, 16, 16, 16, T, A>& a,
              const fragment<matrix_b, 16, 16, 16, T, B>& b, const fragment<accumulator, 16, 16, 16, float>& c) {
  float r[16][16];
  for (int i = 0; i < 16; ++i) for (int j = 0; j < 16; ++j) { float s = c.m[i][j]; for (int k = 0; k < 16; ++k) s += a.m[i][k] * b.m[k][j]; r[i][j] = s; }
  std::memcpy(d.m, r, sizeof r);
}
inline void store_matrix_sync(float* p, const fragment<accumulator, 16, 16, 16, float>& f, unsigned ld, layout_t l) {
  for (int i = 0; i < 16; ++i) for (int j = 0; j < 16; ++j) (l == mem_row_major ? p[i * ld + j] : p[j * ld + i]) = f.m[i][j];
}
}}
