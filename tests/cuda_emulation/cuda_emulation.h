// Runs the CUDA attention and sampling kernels on the CPU, to check their indexing, masking
// and barriers on a machine without a GPU. Force-included (g++ -include) before a kernel source that
// to_host_source.py has rewritten (launches become emu_launch calls, dynamic shared memory a
// buffer). Blocks run one at a time; each CUDA thread is a fiber (started with makecontext,
// switched with _setjmp/_longjmp: no signal-mask system call per switch) that yields at
// barriers, so __syncthreads, __syncwarp and shuffles are exact, and a shuffle or barrier
// not reached by every lane deadlocks instead of passing. wmma fragments are emulated as
// whole 16x16 fp32 tiles per thread. The inline-PTX helpers of
// cuda/kernels/attention/tensor_core_ptx.cuh (cp.async, ldmatrix, mma.sync m16n8k16) are
// emulated lane by lane from the PTX ISA's fragment layouts; cp.async poisons its
// destination when issued and delivers the data only at the cp.async.wait_group that covers
// it, so a read before the wait (or a write over data still being read) shows up as NaN.
// Not a timing tool, and it cannot see hardware-only faults (alignment traps, bank
// conflicts).
#pragma once
#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <cmath>
#include <cstdlib>
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
#include <setjmp.h>
#define OCTAVO_CUDA_EMULATION 1
struct EmuJmp { jmp_buf b; };
struct EmuCopy { void* dst; unsigned char bytes[16]; };
struct EmuBar { int count = 0, arrived = 0; long gen = 0; };
struct EmuState {
  std::vector<ucontext_t> ctx;   // first entry of each fiber
  std::vector<EmuJmp> jb;        // where each started fiber resumes
  std::vector<char> started;
  jmp_buf sched;
  std::vector<std::vector<char>> stacks;
  std::vector<char> done;
  int cur = 0;
  EmuBar block_bar;
  std::vector<EmuBar> warp_bar;
  std::vector<double> xchg;
  std::vector<float> dyn_smem;
  // Warp-collective exchange (ldmatrix, mma): [warp][parity][lane][8 words]; the parity
  // alternates per collective, so one __syncwarp per collective suffices.
  std::vector<uint32_t> coll;
  std::vector<unsigned> coll_count;  // per thread
  // cp.async: per thread, the copies not yet committed and the committed groups in flight.
  std::vector<std::vector<EmuCopy>> open_copies;
  std::vector<std::vector<std::vector<EmuCopy>>> copy_groups;
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
inline void emu_yield() {
  auto& e = emu();
  if (!_setjmp(e.jb[e.cur].b)) _longjmp(e.sched, 1);
}
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
// Blocks run one after another, so every write of a finished block is already visible.
inline void __threadfence() {}
inline unsigned __float_as_uint(float x) { unsigned u; std::memcpy(&u, &x, sizeof u); return u; }
inline float __uint_as_float(unsigned u) { float x; std::memcpy(&x, &u, sizeof x); return x; }
inline std::function<void()> emu_body;
inline void emu_entry() { emu_body(); emu().done[emu().cur] = 1; _longjmp(emu().sched, 1); }
template <typename... KArgs, typename... Args>
void emu_launch(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t, Args... args) {
  auto& e = emu();
  const int nt = block.x * block.y * block.z;
  if (nt % 32) throw std::runtime_error("emu: block not a whole number of warps");
  emu_gridDim = grid; emu_blockDim = block;
  e.dyn_smem.assign(smem / 4 + 16, std::nanf(""));
  e.xchg.assign(nt, 0.f);
  e.ctx.resize(nt); e.jb.resize(nt); e.stacks.resize(nt); e.done.assign(nt, 0);
  e.coll.assign((size_t)nt * 2 * 8, 0u);
  for (auto& st : e.stacks) st.resize(1 << 18);
  emu_body = [&] { kernel(args...); };
  // EMU_REVERSE_BLOCKS=1 runs the blocks last first, so that a kernel relying on the order
  // blocks run in (rather than on atomics) shows it.
  const char* reverse_env = std::getenv("EMU_REVERSE_BLOCKS");
  const bool reverse = reverse_env != nullptr && reverse_env[0] == '1';
  const long num_blocks = (long)grid.x * grid.y * grid.z;
  for (long b = 0; b < num_blocks; ++b) {
    const long linear = reverse ? num_blocks - 1 - b : b;
    const unsigned x = linear % grid.x, y = (linear / grid.x) % grid.y, z = linear / ((long)grid.x * grid.y);
    emu_blockIdx = make_uint3(x, y, z);
    e.block_bar = EmuBar{nt};
    e.warp_bar.assign(nt / 32, EmuBar{32});
    e.coll_count.assign(nt, 0u);
    e.open_copies.assign(nt, {});
    e.copy_groups.assign(nt, {});
    e.started.assign(nt, 0);
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
        if (!_setjmp(e.sched)) {
          if (!e.started[t]) {
            e.started[t] = 1;
            setcontext(&e.ctx[t]);
          }
          _longjmp(e.jb[t].b, 1);
        }
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

// ---- tensor_core_ptx.cuh on the emulator ------------------------------------------------
namespace octavo::cuda::ptx {
inline void cp_async_16(void* dst, const void* src, bool valid) {
  auto& e = emu();
  EmuCopy c;
  c.dst = dst;
  if (valid) std::memcpy(c.bytes, src, 16);
  else std::memset(c.bytes, 0, 16);
  std::memset(dst, 0xff, 16);  // NaN in fp32, fp16 and bf16 until the wait delivers
  e.open_copies[threadIdx.x].push_back(c);
}
inline void cp_async_commit() {
  auto& e = emu();
  e.copy_groups[threadIdx.x].push_back(std::move(e.open_copies[threadIdx.x]));
  e.open_copies[threadIdx.x].clear();
}
template <int N>
void cp_async_wait() {
  auto& groups = emu().copy_groups[threadIdx.x];
  while (groups.size() > static_cast<size_t>(N)) {
    for (const EmuCopy& c : groups.front()) std::memcpy(c.dst, c.bytes, 16);
    groups.erase(groups.begin());
  }
}
// This lane's slot of the current collective's exchange buffer, and lane `src`'s.
inline uint32_t* emu_coll_slot(int lane_of_warp) {
  auto& e = emu();
  const int w = threadIdx.x / 32;
  const unsigned parity = e.coll_count[threadIdx.x] & 1u;
  return &e.coll[(((size_t)w * 2 + parity) * 32 + lane_of_warp) * 8];
}
inline void emu_coll_publish(const void* data, size_t bytes) {
  std::memcpy(emu_coll_slot(threadIdx.x % 32), data, bytes);
  __syncwarp();
}
inline void emu_coll_done() { ++emu().coll_count[threadIdx.x]; }
inline uint16_t emu_ld16(const unsigned char* row, int elem) {
  uint16_t v;
  std::memcpy(&v, row + 2 * elem, 2);
  return v;
}
template <bool kTrans>
void emu_ldmatrix_x4(uint32_t (&r)[4], const void* row) {
  emu_coll_publish(&row, sizeof row);
  const int lane = threadIdx.x % 32;
  for (int j = 0; j < 4; ++j) {
    uint16_t lo, hi;
    if (!kTrans) {  // row lane/4, elements 2(lane%4), +1 of matrix j
      const unsigned char* p;
      std::memcpy(&p, emu_coll_slot(8 * j + lane / 4), sizeof p);
      lo = emu_ld16(p, 2 * (lane % 4));
      hi = emu_ld16(p, 2 * (lane % 4) + 1);
    } else {  // elements [2(lane%4)][lane/4] and [2(lane%4)+1][lane/4]
      const unsigned char *p0, *p1;
      std::memcpy(&p0, emu_coll_slot(8 * j + 2 * (lane % 4)), sizeof p0);
      std::memcpy(&p1, emu_coll_slot(8 * j + 2 * (lane % 4) + 1), sizeof p1);
      lo = emu_ld16(p0, lane / 4);
      hi = emu_ld16(p1, lane / 4);
    }
    r[j] = (uint32_t)lo | ((uint32_t)hi << 16);
  }
  emu_coll_done();
}
inline float exp2_approx(float x) { const float y = std::exp2(x); return std::fpclassify(y) == FP_SUBNORMAL ? 0.0f : y; }
inline void ldmatrix_x4(uint32_t (&r)[4], const void* row) { emu_ldmatrix_x4<false>(r, row); }
inline void ldmatrix_x4_trans(uint32_t (&r)[4], const void* row) { emu_ldmatrix_x4<true>(r, row); }
inline float emu_bits_to_float(uint16_t b, __half*) { __half h; std::memcpy(&h, &b, 2); return __half2float(h); }
inline float emu_bits_to_float(uint16_t b, __nv_bfloat16*) { __nv_bfloat16 h; std::memcpy(&h, &b, 2); return __bfloat162float(h); }
// d += a * b; every lane publishes its A and B registers, then computes its own four
// accumulators (rows g and g + 8, columns 2t and 2t + 1) from the gathered tiles.
template <typename T>
void mma_m16n8k16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  const uint32_t mine[6] = {a[0], a[1], a[2], a[3], b0, b1};
  emu_coll_publish(mine, sizeof mine);
  auto half_of = [](const uint32_t* slot, int reg, int hi) {
    return emu_bits_to_float((uint16_t)(slot[reg] >> (16 * hi)), (T*)nullptr);
  };
  auto a_at = [&](int row, int k) {  // A[row][k]: lane 4 (row % 8) + (k % 8) / 2
    const uint32_t* s = emu_coll_slot(4 * (row % 8) + (k % 8) / 2);
    return half_of(s, (row >= 8 ? 1 : 0) + (k >= 8 ? 2 : 0), k % 2);
  };
  auto b_at = [&](int k, int col) {  // B[k][col]: lane 4 col + (k % 8) / 2
    const uint32_t* s = emu_coll_slot(4 * col + (k % 8) / 2);
    return half_of(s, 4 + (k >= 8 ? 1 : 0), k % 2);
  };
  const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  for (int i = 0; i < 4; ++i) {
    const int row = g + (i >= 2 ? 8 : 0), col = 2 * t + (i % 2);
    float acc = d[i];
    for (int k = 0; k < 16; ++k) acc += a_at(row, k) * b_at(k, col);
    d[i] = acc;
  }
  emu_coll_done();
}
}  // namespace octavo::cuda::ptx
