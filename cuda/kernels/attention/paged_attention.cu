// Paged attention: argument checks, the choice of path, and the simple kernel every other
// path falls back to.
//
// Paths, chosen by choose_paths from a small descriptor (head_dim, dtype, group, alignment,
// block_size, the device's shared-memory limit):
// - decode_mma (paged_attention_decode_mma.cu): rows with one query, fp16/bf16 on sm_80+;
//   flash-decoding with split-K on tensor cores, K/V streamed through cp.async rings.
// - decode (paged_attention_decode.cu): the same rows in fp32 (or below sm_80), CUDA cores.
// - prefill (paged_attention_prefill.cu): rows with more than one query; tiled, CUDA cores.
// - prefill_wgmma (paged_attention_prefill_wgmma.cu): rows with more than one query, fp16/bf16
//   at head_dim 64 and 128 on sm_90 (compute capability 9.0) when the binary carries sm_90a
//   code; FlashAttention-3 style (wgmma, a warp-specialized cp.async producer).
// - prefill_flash (paged_attention_prefill_flash.cu): the same rows on sm_80+ (and on sm_90
//   with OCTAVO_PREFILL_FLASH=1); FlashAttention-2 style on tensor cores (mma.sync).
// - prefill_mma (paged_attention_prefill_mma.cu): the tiled kernel on tensor cores (wmma) for
//   the other head sizes in fp16/bf16.
// - simple (here): one warp per (query, head), any block_size and alignment. Used for
//   head_dim 16, non-power-of-two block sizes, misaligned q or caches, decode rows of groups
//   above 16 (above 8 off the tensor-core path), and prefill rows when a device lacks the
//   tiles' shared memory.
//
// Head sizes compiled: 128 (Llama 2/3 7B-70B, Mistral 7B, Qwen2/2.5 1.5B and up, Qwen3),
// 64 (Llama 3.2 1B, TinyLlama, Qwen2.5 0.5B, SmolLM), 96 (Phi-3 mini), 32 and 16 (the tiny
// test checkpoints of python/octavo/testing/tiny_models.py; 16 only on the simple path).
#include "attention/paged_attention.h"

#include <algorithm>
#include <array>
#include <cstdlib>
#include <atomic>
#include <climits>
#include <cmath>
#include <string>
#include <type_traits>

#include "attention/paged_attention_internal.cuh"

namespace octavo::cuda {

namespace paged_attention_detail {

namespace {

constexpr int kSimpleWarps = 4;  // query heads of one token per block

// One warp per (token, q head): lanes stride over head_dim, a warp-wide dot product per key,
// online softmax one key at a time. q (scaled) and the accumulator sit in shared memory
// [warp][2][head_dim], each lane touching only its own columns.
template <typename T>
__global__ void __launch_bounds__(kSimpleWarps * 32)
    paged_attention_simple_kernel(Params p, RowFilter rows) {
  extern __shared__ float smem[];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int token = blockIdx.x;
  const int head = blockIdx.y * kSimpleWarps + warp;
  if (head >= p.q_heads) return;  // no block-wide barriers below
  const int D = p.head_dim;
  float* q_s = smem + warp * 2 * D;
  float* acc = q_s + D;

  // The row holding this token: the last row starting at or before it (rows with no queries
  // start where the next one does, so the last such row is the one that owns the token).
  int lo = 0, hi = p.num_seqs - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (p.query_start_loc[mid] <= token) lo = mid;
    else hi = mid - 1;
  }
  const int seq = lo;
  const int q_begin = p.query_start_loc[seq];
  const int q_len = p.query_start_loc[seq + 1] - q_begin;
  if ((rows == RowFilter::kSingleQuery && q_len != 1) ||
      (rows == RowFilter::kMultiQuery && q_len == 1)) {
    return;
  }
  const int pos = p.seq_lens[seq] - q_len + (token - q_begin);
  const int first = first_key_pos(pos, p.sliding_window);
  const int kv_head = head / p.group;

  const T* q = static_cast<const T*>(p.q) + int64_t{token} * p.q_row_stride + int64_t{head} * D;
  for (int d = lane; d < D; d += 32) {
    q_s[d] = to_float(q[d]) * p.scale;
    acc[d] = 0.0f;
  }
  const int32_t* table = p.block_tables + int64_t{seq} * p.max_blocks_per_seq;
  const int64_t slot_stride = int64_t{p.kv_heads} * D;
  const T* k_cache = static_cast<const T*>(p.k_cache) + int64_t{kv_head} * D;
  const T* v_cache = static_cast<const T*>(p.v_cache) + int64_t{kv_head} * D;

  float m = -INFINITY, l = 0.0f;
  for (int key_pos = first; key_pos <= pos; ++key_pos) {
    const int64_t slot =
        (int64_t{table[key_pos / p.block_size]} * p.block_size + key_pos % p.block_size) *
        slot_stride;
    float s = 0.0f;
    for (int d = lane; d < D; d += 32) s = fmaf(q_s[d], to_float(k_cache[slot + d]), s);
    s = warp_sum(s);
    const float m_new = fmaxf(m, s);
    const float alpha = expf(m - m_new);  // 0 for the first key
    const float w = expf(s - m_new);
    l = l * alpha + w;
    for (int d = lane; d < D; d += 32)
      acc[d] = fmaf(w, to_float(v_cache[slot + d]), acc[d] * alpha);
    m = m_new;
  }
  T* out = static_cast<T*>(p.out) + int64_t{token} * p.out_row_stride + int64_t{head} * D;
  for (int d = lane; d < D; d += 32) out[d] = from_float<T>(acc[d] / l);
}

}  // namespace

template <typename T>
void launch_simple(const Params& p, RowFilter rows, cudaStream_t stream) {
  const dim3 grid(grid_x(p.num_tokens, "paged_attention"),
                  static_cast<unsigned>(ceil_div(p.q_heads, kSimpleWarps)));
  const size_t smem = sizeof(float) * kSimpleWarps * 2 * p.head_dim;
  paged_attention_simple_kernel<T>
      <<<grid, kSimpleWarps * 32, smem, stream>>>(p, rows);
  OCTAVO_CUDA_CHECK_LAUNCH();
}

}  // namespace paged_attention_detail

namespace {

using paged_attention_detail::Params;
constexpr const char* kOp = "paged_attention";

bool is_supported_head_dim(int64_t d) {
  return d == 16 || d == 32 || d == 64 || d == 96 || d == 128;
}

int log2_if_pow2(int64_t x) {
  if (x <= 0 || (x & (x - 1)) != 0) return -1;
  int s = 0;
  while ((int64_t{1} << s) < x) ++s;
  return s;
}

// Checks what the kernels rely on and fills their parameters.
Params make_params(void* out, int64_t out_row_stride, const void* q, int64_t q_row_stride,
                   const void* k_cache, const void* v_cache, const int32_t* query_start_loc,
                   const int32_t* seq_lens, const int32_t* block_tables, int64_t num_seqs,
                   int64_t max_blocks_per_seq, int64_t block_size, int64_t num_tokens,
                   int64_t q_heads, int64_t kv_heads, int64_t head_dim, float scale,
                   int64_t sliding_window) {
  require_arg(is_supported_head_dim(head_dim), kOp,
              "head_dim " + std::to_string(head_dim) + " is not one of 16, 32, 64, 96, 128");
  require_arg(q_heads > 0 && kv_heads > 0 && q_heads % kv_heads == 0, kOp,
              "q_heads (" + std::to_string(q_heads) + ") must be a positive multiple of kv_heads (" +
                  std::to_string(kv_heads) + ")");
  require_arg(q_heads <= INT_MAX / head_dim, kOp, "too many heads");
  require_arg(block_size > 0 && block_size <= INT_MAX, kOp, "block_size must be positive");
  require_arg(num_seqs >= 0 && num_seqs <= kMaxGridY, kOp,
              "num_seqs must be in [0, " + std::to_string(kMaxGridY) + "]");
  require_arg(num_tokens >= 0 && num_tokens <= INT_MAX, kOp, "bad num_tokens");
  require_arg(kv_heads <= kMaxGridY, kOp, "too many kv heads");
  require_arg(max_blocks_per_seq >= 0, kOp, "negative max_blocks_per_seq");
  require_row_stride(q_row_stride, q_heads * head_dim, num_tokens, kOp, "q");
  require_row_stride(out_row_stride, q_heads * head_dim, num_tokens, kOp, "out");
  Params p{};
  p.out = out;
  p.out_row_stride = out_row_stride;
  p.q = q;
  p.q_row_stride = q_row_stride;
  p.k_cache = k_cache;
  p.v_cache = v_cache;
  p.query_start_loc = query_start_loc;
  p.seq_lens = seq_lens;
  p.block_tables = block_tables;
  p.max_blocks_per_seq = max_blocks_per_seq;
  p.num_seqs = static_cast<int32_t>(num_seqs);
  p.num_tokens = static_cast<int32_t>(num_tokens);
  p.block_size = static_cast<int32_t>(block_size);
  p.block_shift = log2_if_pow2(block_size);
  p.q_heads = static_cast<int32_t>(q_heads);
  p.kv_heads = static_cast<int32_t>(kv_heads);
  p.head_dim = static_cast<int32_t>(head_dim);
  p.group = static_cast<int32_t>(q_heads / kv_heads);
  // A window longer than any position is no window (seq_lens are int32).
  p.sliding_window = sliding_window > 0 && sliding_window < INT_MAX ? static_cast<int32_t>(sliding_window) : 0;
  p.scale = scale;
  p.min_split_steps = paged_attention_detail::decode_min_split_steps();
  return p;
}

// What picks the kernels: the shape, the element type, the alignment the 16-byte paths need
// and the device's shared-memory limit per block.
struct AttentionDescriptor {
  int64_t head_dim = 0;
  KernelDType dtype = KernelDType::kFloat32;
  int64_t group = 1;
  bool vec16_aligned = false;  // q, caches and their strides allow 16-byte loads
  bool pow2_block_size = false;
  size_t max_smem_per_block = 0;  // opt-in limit of the current device
  int compute_capability = 0;     // major * 10 + minor
};

enum class DecodePath { kTensorCore, kSplitK, kSimple };
enum class PrefillPath { kWgmma, kFlash, kTensorCore, kTiled, kSimple };
struct Paths {
  DecodePath decode;
  PrefillPath prefill;
};

struct DeviceLimits {
  size_t max_smem_per_block;
  int compute_capability;
};

// Queried once per device (every layer of every step asks).
DeviceLimits current_device_limits() {
  constexpr int kMaxDevices = 64;
  static std::array<std::atomic<int64_t>, kMaxDevices> cache{};  // 0: not yet queried
  int device = 0;
  OCTAVO_CUDA_CHECK(cudaGetDevice(&device));
  const int64_t cached = device < kMaxDevices ? cache[device].load(std::memory_order_relaxed) : 0;
  if (cached != 0) return {static_cast<size_t>(cached >> 8), static_cast<int>(cached & 0xff)};
  int optin = 0, major = 0, minor = 0;
  OCTAVO_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  OCTAVO_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  OCTAVO_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
  const DeviceLimits limits{static_cast<size_t>(optin), major * 10 + minor};
  if (device < kMaxDevices) {
    cache[device].store((int64_t{optin} << 8) | limits.compute_capability,
                        std::memory_order_relaxed);
  }
  return limits;
}

AttentionDescriptor describe(const Params& p, KernelDType dtype, const void* q,
                             const void* k_cache, const void* v_cache) {
  const size_t elem = dtype == KernelDType::kFloat32 ? 4 : 2;
  AttentionDescriptor d;
  d.head_dim = p.head_dim;
  d.dtype = dtype;
  d.group = p.group;
  d.vec16_aligned = allows_vec16(elem, {q, k_cache, v_cache},
                                 {p.q_row_stride, p.head_dim, int64_t{p.kv_heads} * p.head_dim});
  d.pow2_block_size = p.block_shift >= 0;
  const DeviceLimits limits = current_device_limits();
  d.max_smem_per_block = limits.max_smem_per_block;
  d.compute_capability = limits.compute_capability;
  return d;
}

// The tensor-core decode and the FlashAttention-2-style prefill are the default on sm_80+ in
// fp16/bf16. OCTAVO_CLASSIC_ATTENTION=1 takes the earlier CUDA-core decode and wmma prefill
// instead: the op tests and the microbenchmarks run both ways, and the emulator too.
bool tensor_core_kernels_enabled() {
  static const bool enabled = [] {
    const char* value = std::getenv("OCTAVO_CLASSIC_ATTENTION");
    return value == nullptr || value[0] != '1';
  }();
  return enabled;
}

// OCTAVO_PREFILL_FLASH=1 keeps prefill rows on prefill_flash where prefill_wgmma would run
// (sm_90): A/B measurements and a fallback. OCTAVO_CLASSIC_ATTENTION=1 excludes both.
bool wgmma_prefill_enabled() {
  static const bool enabled = [] {
    const char* value = std::getenv("OCTAVO_PREFILL_FLASH");
    return value == nullptr || value[0] != '1';
  }();
  return enabled;
}

Paths choose_paths(const AttentionDescriptor& d, PrefillKernel forced) {
  namespace detail = paged_attention_detail;
  // The fast paths are compiled for head_dim 32..128 and read 16-byte pieces of K/V rows
  // located with shifts.
  const bool fast = d.head_dim != 16 && d.vec16_aligned && d.pow2_block_size;
  if (!fast) {
    require_arg(forced == PrefillKernel::kAuto || forced == PrefillKernel::kSimple, kOp,
                "a fast prefill kernel needs 16-byte aligned q and caches and a power-of-two block_size");
    return {DecodePath::kSimple, PrefillPath::kSimple};
  }
  // The opt-in limit covers dynamic plus static shared memory (the work-item scan's few ints).
  constexpr size_t kStaticSmemSlack = 1024;
  // bf16 mma.sync / wmma (and the kernels' fp16 twins) need sm_80.
  const bool tensor_cores = d.dtype != KernelDType::kFloat32 && d.compute_capability >= 80;
  const bool newest = tensor_cores && tensor_core_kernels_enabled();
  Paths paths{d.group <= detail::kMaxDecodeGroup ? DecodePath::kSplitK : DecodePath::kSimple,
              PrefillPath::kSimple};
  if (newest && d.group <= detail::kMaxDecodeMmaGroup &&
      detail::decode_mma_smem_bytes(d.head_dim) + kStaticSmemSlack <= d.max_smem_per_block) {
    paths.decode = DecodePath::kTensorCore;
  }
  // wgmma and setmaxnreg exist on sm_90a only: compute capability 9.0 exactly, and this binary
  // must carry the sm_90a kernel (prefill_wgmma_compiled).
  const size_t wgmma_smem = detail::prefill_wgmma_smem_bytes(d.head_dim);
  const bool wgmma_fits = tensor_cores && d.compute_capability == 90 && wgmma_smem != 0 &&
                          wgmma_smem + kStaticSmemSlack <= d.max_smem_per_block &&
                          detail::prefill_wgmma_compiled();
  const size_t flash_smem = detail::prefill_flash_smem_bytes(d.head_dim);
  const bool flash_fits = tensor_cores && flash_smem != 0 && flash_smem + kStaticSmemSlack <= d.max_smem_per_block;
  switch (forced) {
    case PrefillKernel::kAuto: break;
    case PrefillKernel::kWgmma:
      require_arg(wgmma_fits, kOp, "the wgmma prefill kernel cannot run this shape on this device");
      paths.prefill = PrefillPath::kWgmma;
      return paths;
    case PrefillKernel::kFlash:
      require_arg(flash_fits, kOp, "the flash prefill kernel cannot run this shape on this device");
      paths.prefill = PrefillPath::kFlash;
      return paths;
    case PrefillKernel::kSimple: paths.prefill = PrefillPath::kSimple; return paths;
  }
  if (newest && wgmma_fits && wgmma_prefill_enabled()) {
    paths.prefill = PrefillPath::kWgmma;
  } else if (newest && flash_fits) {
    paths.prefill = PrefillPath::kFlash;
  } else if (tensor_cores &&
             detail::prefill_mma_smem_bytes(d.head_dim) + kStaticSmemSlack <= d.max_smem_per_block) {
    paths.prefill = PrefillPath::kTensorCore;
  } else if (detail::prefill_smem_bytes(d.head_dim) + kStaticSmemSlack <= d.max_smem_per_block) {
    paths.prefill = PrefillPath::kTiled;
  }
  return paths;
}

}  // namespace

size_t paged_attention_workspace_bytes(int64_t max_num_seqs, int64_t q_heads, int64_t kv_heads,
                                       int64_t head_dim, int64_t max_seq_len) {
  using paged_attention_detail::choose_decode_splits;
  using paged_attention_detail::decode_workspace_bytes;
  require_arg(q_heads > 0 && kv_heads > 0 && head_dim > 0 && max_num_seqs >= 0, kOp,
              "workspace: heads and head_dim must be positive");
  // The split count falls as sequences are added, so the most rows * splits may come from a
  // smaller batch than the largest: try each (splits reach 1 within a few hundred rows).
  size_t bytes = 0;
  for (int64_t n = 1; n <= max_num_seqs; ++n) {
    const int splits = choose_decode_splits(n, kv_heads, max_seq_len);
    if (splits == 1) break;  // and stays 1 for every larger n
    bytes = std::max(bytes, decode_workspace_bytes(n, q_heads, head_dim, splits));
  }
  return bytes;
}

void launch_paged_attention(void* out, int64_t out_row_stride, const void* q,
                            int64_t q_row_stride, const void* k_cache, const void* v_cache,
                            const int32_t* query_start_loc, const int32_t* seq_lens,
                            const int32_t* block_tables, int64_t num_seqs,
                            int64_t max_blocks_per_seq, int64_t block_size, int64_t num_tokens,
                            int64_t max_query_len, int64_t max_seq_len, int64_t q_heads,
                            int64_t kv_heads, int64_t head_dim, float scale,
                            int64_t sliding_window, KernelDType dtype, void* workspace,
                            size_t workspace_bytes, cudaStream_t stream, PrefillKernel prefill_kernel) {
  Params p = make_params(out, out_row_stride, q, q_row_stride, k_cache, v_cache,
                         query_start_loc, seq_lens, block_tables, num_seqs, max_blocks_per_seq,
                         block_size, num_tokens, q_heads, kv_heads, head_dim, scale,
                         sliding_window);
  require_arg(max_query_len >= 0 && max_seq_len >= 0, kOp, "negative max_query_len or max_seq_len");
  p.out_vec16 = allows_vec16(dtype == KernelDType::kFloat32 ? 4 : 2, {out},
                             {out_row_stride, head_dim});
  if (num_tokens == 0 || num_seqs == 0) return;

  const Paths paths = choose_paths(describe(p, dtype, q, k_cache, v_cache), prefill_kernel);
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    namespace detail = paged_attention_detail;
    using detail::RowFilter;
    if (paths.decode == DecodePath::kSimple && paths.prefill == PrefillPath::kSimple) {
      detail::launch_simple<T>(p, RowFilter::kAll, stream);
      return;
    }
    // Each grid covers every row; rows of the other kind leave at once.
    if (paths.decode != DecodePath::kSimple) {
      // Keys from the first step's start: a window may begin mid-step. Never above
      // max_seq_len, so paged_attention_workspace_bytes (sized by it) covers the splits.
      const int64_t max_context =
          p.sliding_window > 0
              ? std::min<int64_t>(max_seq_len, int64_t{p.sliding_window} + detail::kDecodeStepKeys - 1)
              : max_seq_len;
      const int splits = detail::choose_decode_splits(num_seqs, kv_heads, max_context);
      const size_t needed = detail::decode_workspace_bytes(num_seqs, q_heads, head_dim, splits);
      require_arg(needed == 0 || (workspace != nullptr && workspace_bytes >= needed), kOp,
                  "workspace of " + std::to_string(workspace_bytes) + " bytes, " +
                      std::to_string(needed) +
                      " needed (size it with paged_attention_workspace_bytes)");
      if constexpr (!std::is_same_v<T, float>) {
        if (paths.decode == DecodePath::kTensorCore) {
          detail::launch_decode_mma<T>(p, splits, workspace, stream);
        } else {
          detail::launch_decode<T>(p, splits, workspace, stream);
        }
      } else {
        detail::launch_decode<T>(p, splits, workspace, stream);
      }
    } else {
      detail::launch_simple<T>(p, RowFilter::kSingleQuery, stream);
    }
    if (max_query_len <= 1) return;  // no prefill rows
    switch (paths.prefill) {
      case PrefillPath::kWgmma:
        if constexpr (!std::is_same_v<T, float>) detail::launch_prefill_wgmma<T>(p, max_query_len, stream);
        break;
      case PrefillPath::kFlash:
        if constexpr (!std::is_same_v<T, float>) detail::launch_prefill_flash<T>(p, max_query_len, stream);
        break;
      case PrefillPath::kTensorCore:
        if constexpr (!std::is_same_v<T, float>) detail::launch_prefill_mma<T>(p, max_query_len, stream);
        break;
      case PrefillPath::kTiled: detail::launch_prefill<T>(p, max_query_len, stream); break;
      case PrefillPath::kSimple: detail::launch_simple<T>(p, RowFilter::kMultiQuery, stream); break;
    }
  });
}

void launch_paged_attention_simple(void* out, int64_t out_row_stride, const void* q,
                                   int64_t q_row_stride, const void* k_cache, const void* v_cache,
                                   const int32_t* query_start_loc, const int32_t* seq_lens,
                                   const int32_t* block_tables, int64_t num_seqs,
                                   int64_t max_blocks_per_seq, int64_t block_size,
                                   int64_t num_tokens, int64_t q_heads, int64_t kv_heads,
                                   int64_t head_dim, float scale, int64_t sliding_window,
                                   KernelDType dtype, cudaStream_t stream) {
  const Params p = make_params(out, out_row_stride, q, q_row_stride, k_cache, v_cache,
                               query_start_loc, seq_lens, block_tables, num_seqs,
                               max_blocks_per_seq, block_size, num_tokens, q_heads, kv_heads,
                               head_dim, scale, sliding_window);
  if (num_tokens == 0 || num_seqs == 0) return;
  dispatch_dtype(dtype, [&](auto tag) {
    paged_attention_detail::launch_simple<decltype(tag)>(p, paged_attention_detail::RowFilter::kAll,
                                                         stream);
  });
}

}  // namespace octavo::cuda
