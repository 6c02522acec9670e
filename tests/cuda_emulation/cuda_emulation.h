// Runs the CUDA attention, sampling, norm and rope kernels on the CPU, to check their indexing, masking
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
#include <map>
#include <stdexcept>
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
struct EmuMbar { int expected = 0, pending = 0; unsigned phase = 0; };
// One wgmma.mma_async of one thread, run when a wgmma.wait_group retires its group: its
// accumulators (the thread's registers), its shared-memory operands (read then, so a stage
// released or refilled too early shows up), A's rows from registers (gathered at issue).
struct EmuWgmma {
  float* d;
  int n_regs;
  bool accumulate, a_in_regs, trans_b, bf16;
  uint64_t desc_a, desc_b;
  float a[2][16];
};
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
  // hopper_ptx.cuh: mbarriers by shared address, named barriers, and per thread the wgmma
  // operations not yet committed and the committed groups not yet waited for.
  std::map<uint32_t, EmuMbar> mbars;
  std::vector<EmuBar> named_bars;
  std::vector<std::vector<EmuWgmma>> wgmma_open;
  std::vector<std::vector<std::vector<EmuWgmma>>> wgmma_groups;
};
inline EmuState& emu() { static EmuState s; return s; }
inline uint3 emu_threadIdx;
inline uint3 emu_blockIdx;
inline dim3 emu_blockDim, emu_gridDim;
#define threadIdx emu_threadIdx
#define blockIdx emu_blockIdx
#define blockDim emu_blockDim
#define gridDim emu_gridDim
// The running thread's linear index in its block (threadIdx.x + blockDim.x * (threadIdx.y +
// ...)): warps, barriers and per-thread state are indexed by it, as on the hardware.
inline int emu_tid() { return emu().cur; }
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
inline void __syncwarp(unsigned = 0xffffffffu) { emu_wait(emu().warp_bar[emu_tid() / 32]); }
// Lane `lane` reads lane src_of(lane)'s value (its own when src_of leaves the warp).
template <typename V, typename F>
V emu_shuffle(V v, F src_of) {
  static_assert(sizeof(V) <= sizeof(double), "shuffled values are at most 8 bytes");
  const int lane = emu_tid() % 32, w = emu_tid() / 32;
  std::memcpy(&emu().xchg[emu_tid()], &v, sizeof(V));
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
    e.mbars.clear();
    e.named_bars.assign(16, EmuBar{});
    e.wgmma_open.assign(nt, {});
    e.wgmma_groups.assign(nt, {});
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
        emu_threadIdx = make_uint3(t % block.x, (t / block.x) % block.y, t / (block.x * block.y));
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
  e.open_copies[emu_tid()].push_back(c);
}
inline void cp_async_commit() {
  auto& e = emu();
  e.copy_groups[emu_tid()].push_back(std::move(e.open_copies[emu_tid()]));
  e.open_copies[emu_tid()].clear();
}
template <int N>
void cp_async_wait() {
  auto& groups = emu().copy_groups[emu_tid()];
  while (groups.size() > static_cast<size_t>(N)) {
    for (const EmuCopy& c : groups.front()) std::memcpy(c.dst, c.bytes, 16);
    groups.erase(groups.begin());
  }
}
// This lane's slot of the current collective's exchange buffer, and lane `src`'s.
inline uint32_t* emu_coll_slot(int lane_of_warp) {
  auto& e = emu();
  const int w = emu_tid() / 32;
  const unsigned parity = e.coll_count[emu_tid()] & 1u;
  return &e.coll[(((size_t)w * 2 + parity) * 32 + lane_of_warp) * 8];
}
inline void emu_coll_publish(const void* data, size_t bytes) {
  std::memcpy(emu_coll_slot(emu_tid() % 32), data, bytes);
  __syncwarp();
}
inline void emu_coll_done() { ++emu().coll_count[emu_tid()]; }
inline uint16_t emu_ld16(const unsigned char* row, int elem) {
  uint16_t v;
  std::memcpy(&v, row + 2 * elem, 2);
  return v;
}
template <bool kTrans>
void emu_ldmatrix_x4(uint32_t (&r)[4], const void* row) {
  emu_coll_publish(&row, sizeof row);
  const int lane = emu_tid() % 32;
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
  const int lane = emu_tid() % 32, g = lane / 4, t = lane % 4;
  for (int i = 0; i < 4; ++i) {
    const int row = g + (i >= 2 ? 8 : 0), col = 2 * t + (i % 2);
    float acc = d[i];
    for (int k = 0; k < 16; ++k) acc += a_at(row, k) * b_at(k, col);
    d[i] = acc;
  }
  emu_coll_done();
}
}  // namespace octavo::cuda::ptx

// ---- hopper_ptx.cuh on the emulator -----------------------------------------------------
// Shared addresses are offsets into the emulated dynamic shared memory plus kEmuSmemBase, 16
// bytes past a 1024-byte boundary, so a kernel that needs 1024-byte alignment must align.
// cp.async copies land at the thread's next cp.async.mbarrier.arrive or wait_all; mbarrier
// waits spin (yielding) on the phase; wgmma operations run when a wait_group retires their
// group, reading shared memory through the descriptors by the canonical 128-byte-swizzle
// layouts (a model of the hardware, the one tests/cpp/wgmma_layout_test.cc checks the
// kernel's layout against), so a result read before its wait is stale and a stage released
// before its wait is read after the producer poisoned it.
#include "attention/wgmma_layout.h"
namespace octavo::cuda::ptx {
constexpr uint32_t kEmuSmemBase = 0x410;
inline uint32_t smem_addr(const void* p) {
  return kEmuSmemBase + (uint32_t)((const unsigned char*)p - (const unsigned char*)emu().dyn_smem.data());
}
inline unsigned char* emu_smem_ptr(uint32_t a, size_t bytes) {
  auto& e = emu();
  if (a < kEmuSmemBase || a - kEmuSmemBase + bytes > e.dyn_smem.size() * sizeof(float))
    throw std::runtime_error("emu: shared address out of the dynamic shared memory");
  return (unsigned char*)e.dyn_smem.data() + (a - kEmuSmemBase);
}
inline void emu_deliver_copies() {
  auto& e = emu();
  const int t = emu_tid();
  for (auto& g : e.copy_groups[t]) for (const EmuCopy& c : g) std::memcpy(c.dst, c.bytes, 16);
  e.copy_groups[t].clear();
  for (const EmuCopy& c : e.open_copies[t]) std::memcpy(c.dst, c.bytes, 16);
  e.open_copies[t].clear();
}
inline void cp_async_16_shared(uint32_t dst, const void* src, bool valid) {
  cp_async_16(emu_smem_ptr(dst, 16), src, valid);
}
inline void cp_async_wait_all() { emu_deliver_copies(); }
inline void mbarrier_init(uint32_t bar, uint32_t count) {
  emu_smem_ptr(bar, 8);
  if (bar % 8) throw std::runtime_error("emu: misaligned mbarrier");
  emu().mbars[bar] = EmuMbar{(int)count, (int)count, 0};
}
inline void fence_mbarrier_init() {}
inline EmuMbar& emu_mbar(uint32_t bar) {
  auto it = emu().mbars.find(bar);
  if (it == emu().mbars.end()) throw std::runtime_error("emu: mbarrier used before init");
  return it->second;
}
inline void mbarrier_arrive(uint32_t bar) {
  EmuMbar& m = emu_mbar(bar);
  if (--m.pending == 0) { ++m.phase; m.pending = m.expected; }
}
inline void mbarrier_wait(uint32_t bar, uint32_t parity) {
  long spins = 0;
  while ((emu_mbar(bar).phase & 1u) == (parity & 1u)) {
    if (++spins > 2000000) throw std::runtime_error("emu: mbarrier wait never completes (deadlock)");
    emu_yield();
  }
}
inline void cp_async_mbarrier_arrive(uint32_t bar) {
  emu_deliver_copies();
  mbarrier_arrive(bar);
}
inline void fence_proxy_async_shared() {}
inline void named_barrier_sync(int id, int threads) {
  EmuBar& b = emu().named_bars.at(id);
  if (b.count == 0) b.count = threads;
  if (b.count != threads) throw std::runtime_error("emu: named barrier used with two thread counts");
  emu_wait(b);
}
template <int kRegs> void setmaxnreg_dec() {}
template <int kRegs> void setmaxnreg_inc() {}
template <int N> void fence_operands(float (&)[N]) {}
template <int N> void fence_operands(uint32_t (&)[N]) {}
inline void wgmma_fence() {}
inline void wgmma_commit() {
  auto& e = emu();
  e.wgmma_groups[emu_tid()].push_back(std::move(e.wgmma_open[emu_tid()]));
  e.wgmma_open[emu_tid()].clear();
}
// The model of how wgmma addresses a 128-byte-swizzled operand: element (mn, k) of a k-step.
inline uint32_t emu_wgmma_address(uint64_t desc, int mn, int k, bool mn_major) {
  if ((desc >> 62) != 1 || ((desc >> 49) & 7) != 0) throw std::runtime_error("emu: only 128-byte swizzle, base offset 0");
  const uint32_t start = (uint32_t)(desc & 0x3FFF) << 4, lbo = (uint32_t)((desc >> 16) & 0x3FFF) << 4,
                 sbo = (uint32_t)((desc >> 32) & 0x3FFF) << 4;
  const uint32_t a = mn_major ? start + (mn % 64) * 2 + (mn / 64) * lbo + (k % 8) * 128 + (k / 8) * sbo
                              : start + (mn % 8) * 128 + (mn / 8) * sbo + k * 2;
  return a ^ (((a >> 7) & 7) << 4);
}
inline float emu_wgmma_load(uint32_t addr, bool bf16) {
  const uint16_t bits = emu_ld16(emu_smem_ptr(addr, 2), 0);
  return bf16 ? emu_bits_to_float(bits, (__nv_bfloat16*)nullptr) : emu_bits_to_float(bits, (__half*)nullptr);
}
inline void emu_run_wgmma(const EmuWgmma& op) {
  const int tid = emu_tid() % 128;
  const int row0 = wgmma::accumulator_element(tid, 0).row;
  for (int i = 0; i < op.n_regs; ++i) {
    const wgmma::RowCol rc = wgmma::accumulator_element(tid, i);
    float acc = op.accumulate ? op.d[i] : 0.0f;
    for (int k = 0; k < 16; ++k) {
      const float a = op.a_in_regs ? op.a[rc.row == row0 ? 0 : 1][k]
                                   : emu_wgmma_load(emu_wgmma_address(op.desc_a, rc.row, k, false), op.bf16);
      const float b = emu_wgmma_load(emu_wgmma_address(op.desc_b, rc.col, k, op.trans_b), op.bf16);
      acc += a * b;
    }
    op.d[i] = acc;
  }
}
template <int N>
void wgmma_wait() {
  auto& groups = emu().wgmma_groups[emu_tid()];
  while (groups.size() > static_cast<size_t>(N)) {
    for (const EmuWgmma& op : groups.front()) emu_run_wgmma(op);
    groups.erase(groups.begin());
  }
}
template <typename T>
void wgmma_m64n128k16_ss(float (&d)[64], uint64_t desc_a, uint64_t desc_b, uint32_t accumulate) {
  EmuWgmma op{};
  op.d = d; op.n_regs = 64; op.accumulate = accumulate != 0; op.a_in_regs = false; op.trans_b = false;
  op.bf16 = std::is_same_v<T, __nv_bfloat16>; op.desc_a = desc_a; op.desc_b = desc_b;
  emu().wgmma_open[emu_tid()].push_back(op);
}
// A from registers: every lane publishes its four registers; each keeps the 16 elements of
// its two rows (wgmma::a_fragment_element says who holds what).
template <typename T, int N>
void wgmma_m64nNk16_rs(float (&d)[N], const uint32_t (&a)[4], uint64_t desc_b) {
  EmuWgmma op{};
  op.d = d; op.n_regs = N; op.accumulate = true; op.a_in_regs = true; op.trans_b = true;
  op.bf16 = std::is_same_v<T, __nv_bfloat16>; op.desc_b = desc_b;
  emu_coll_publish(a, sizeof a);
  const int tid = emu_tid() % 128, warp = tid / 32;
  const int row0 = wgmma::accumulator_element(tid, 0).row;
  for (int lane = 0; lane < 32; ++lane) {
    const uint32_t* slot = emu_coll_slot(lane);
    for (int e = 0; e < 8; ++e) {
      const wgmma::RowCol rc = wgmma::a_fragment_element(32 * warp + lane, e);
      const uint16_t bits = (uint16_t)(slot[e / 2] >> (16 * (e % 2)));
      const float v = emu_bits_to_float(bits, (T*)nullptr);
      if (rc.row == row0) op.a[0][rc.col] = v;
      if (rc.row == row0 + 8) op.a[1][rc.col] = v;
    }
  }
  emu_coll_done();
  emu().wgmma_open[emu_tid()].push_back(op);
}
}  // namespace octavo::cuda::ptx
