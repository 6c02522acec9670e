// The sampling kernel: one CTA per logits row computes what cpu::sample_row computes, in
// the order cpu_sampling.h fixes, without sorting the vocabulary. Every pass over a row
// streams it with 16-byte loads (sampling_block.cuh's for_each_logit).
//
//  0. Raw logprobs (rows that ask): max and log-sum-exp of the untouched row, then the top
//     N by radix select on (logit desc, id asc) composite keys and a bitonic sort of the N.
//  1. Allowed tokens: a bit mask of the vocabulary in shared memory; every read of the row
//     sees -inf outside it (RowLogits).
//  2-4. Bans, logit bias and penalties as sparse edits in place, the raw values kept in
//     edit_scratch and put back at the end.
//  5. Greedy rows: argmax (lowest id on ties).
//  6-9. Others read processed logits p = l / T on the fly and narrow them to one threshold
//     each:
//       min_p: the smallest key whose exp(p - max) >= min_p, by bisection on one thread
//              (no pass over the row);
//       top_k: radix select of the k-th largest key (ties survive), counts only;
//       top_p: the token at which the descending running mass reaches top_p x total: the
//              1024 largest candidates (radix select by count) sorted and scanned, or, when
//              the cut lies past them, radix passes with a fixed-point mass per bin.
//     Every filter keeps an upper set of the (p desc, id asc) order, so "min_p/top_k key
//     threshold and top_p composite cut" is the whole filtered state.
//  10. The draw: weights exp(p - max) of the kept tokens, summed in double per warp segment
//     and per 128-token chunk in a fixed order; the segment, then the chunk, then the token
//     where the running sum first exceeds counter_uniform(seed, draw_index) x total
//     (sampling_draw.cuh).
// Then the token's raw logprob and rank. Rows with a given token (prompt logprobs) do step
// 0 and that report only.
//
// The split path (small batches): a row with no allowed list, no edit and no filter, and no
// top-N logprobs, is spread over kWarps CTAs, CTA s holding the draw's segment s, in two
// launches whose grids depend on the row count only:
//   first kernel: each CTA's segment max and argmax (lowest id on ties) and a NaN flag. Rows
//     that do not qualify run the one-CTA path above in their CTA 0 (the others return).
//   second kernel: every CTA combines the segments' maxima (exact, in any order), the greedy
//     token or the status; sampled rows sum their segment's weights exactly as the one-CTA
//     path sums that segment, rows asking num_logprobs = 0 their part of the raw log-sum-exp.
//     Each CTA publishes its partials in the split workspace and counts itself in the row's
//     arrival counter (zeroed by the first kernel); the last to arrive combines the segment
//     totals in segment order, finds the chunk and the token, and counts the rank.
// The same numbers are added in the same order as in the one-CTA path, so the two paths draw
// the same token bit for bit; only the raw log-sum-exp (a reported logprob) is summed in
// another order.
#include "sampling/sampling.h"

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "common/dependent_launch.cuh"
#include "common/kernel_dtype.h"
#include "core/splitmix64.h"
#include "sampling/sampling_block.cuh"
#include "sampling/sampling_draw.cuh"

namespace octavo::cuda {

namespace {

using sampling::AddOp;
using sampling::ArgMax;
using sampling::DrawSegment;
using sampling::DrawShared;
using sampling::kThreads;
using sampling::kWarps;
using sampling::kWarpSize;
using sampling::u64;

// Key of -inf (every smaller key is a NaN).
constexpr uint32_t kNegInfKey = 0x007fffffu;

// Order-preserving 32-bit key: a > b as floats iff key(a) > key(b). -0 and +0 share a key
// because they compare equal (so they tie, as on the CPU).
__device__ __forceinline__ uint32_t order_key(float x) {
  const uint32_t u = __float_as_uint(x == 0.0f ? 0.0f : x);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
__device__ __forceinline__ float key_value(uint32_t key) {
  return __uint_as_float((key & 0x80000000u) ? (key & 0x7fffffffu) : ~key);
}

// Composite key of (logit, token id): descending key order is logit descending, then id
// ascending (the top-N order and the order top_p cuts in). id_bits is just wide enough for
// the vocabulary, so ties take few extra radix passes.
struct KeyLayout {
  int id_bits;
  uint32_t id_mask;
  int key_bits;
  __device__ explicit KeyLayout(int32_t vocab) : id_bits(1) {
    while (id_bits < 31 && (1u << id_bits) < static_cast<uint32_t>(vocab)) ++id_bits;
    id_mask = (1u << id_bits) - 1u;
    key_bits = 32 + id_bits;
  }
  __device__ uint64_t compose(uint32_t okey, int32_t id) const {
    return (static_cast<uint64_t>(okey) << id_bits) | (id_mask - static_cast<uint32_t>(id));
  }
  __device__ int32_t id_of(uint64_t key) const { return static_cast<int32_t>(id_mask - (key & id_mask)); }
  __device__ uint32_t okey_of(uint64_t key) const { return static_cast<uint32_t>(key >> id_bits); }
};

// exp in double, rounded once to float: correctly rounded but where the double lies within
// an ulp of a float rounding boundary. The CPU sampler's glibc expf gave the same float on
// all but 6e-4 of 5e7 arguments in [-90, 0] (1 ulp apart there); CUDA's expf may be 2 ulp
// off. Weights, masses and the log-sum-exp all use it.
__device__ __forceinline__ float sampling_exp(float x) { return static_cast<float>(exp(static_cast<double>(x))); }

// The CPU sampler's counter-based uniform (cpu::counter_uniform), bit for bit.
__device__ __forceinline__ double counter_uniform(uint64_t seed, uint64_t draw_index) {
  const uint64_t bits = splitmix64(splitmix64(seed ^ (draw_index * kSplitMix64Increment)));
  return static_cast<double>(bits >> 11) * 0x1.0p-53;
}

// One edited token's new logit, in the CPU sampler's order: ban, logit bias, then
// cpu::apply_penalties' repetition, frequency and presence penalties.
__device__ __forceinline__ float apply_edit(float l, const SamplingEdit& e, const SamplingRowParams& p) {
  if (e.flags & kSamplingEditBanned) l = -INFINITY;
  if (e.flags & kSamplingEditBias) l += e.bias;
  if ((e.flags & kSamplingEditRepetition) && p.repetition_penalty != 1.0f) {
    l = l > 0.0f ? l / p.repetition_penalty : l * p.repetition_penalty;
  }
  if (e.output_count > 0 && (p.frequency_penalty != 0.0f || p.presence_penalty != 0.0f)) {
    // The CPU sampler's `l -= f * count` is contracted to one fused multiply-add by its
    // compiler (gcc, -march=native, -ffp-contract=fast by default): say so explicitly here.
    l = fmaf(-p.frequency_penalty, static_cast<float>(e.output_count), l);
    l -= p.presence_penalty;
  }
  return l;
}

struct RowShared {
  int32_t token;
  int32_t status;
  uint32_t min_p_key;
  int32_t gathered;
  DrawShared draw;
};

// A row's logits as steps 1-4 leave them: the row itself holds the edited values (step 2-4's
// sparse edits), and a row with an allowed list reads -inf outside it, from a bit mask of
// the vocabulary in shared memory (null: every token allowed).
struct RowLogits {
  const uint32_t* allowed_bits;
  __device__ __forceinline__ float operator()(int32_t i, float v) const {
    return allowed_bits != nullptr && !((allowed_bits[i >> 5] >> (i & 31)) & 1u) ? -INFINITY : v;
  }
};

// The processed logit of a sampled row: temperature applied on the fly, an exact division
// as on the CPU.
__device__ __forceinline__ float processed_logit(const RowLogits& logit, int32_t i, float v, float temperature) {
  return logit(i, v) / temperature;
}

// Smallest key whose logit passes min_p (exp(p - max) >= min_p): bisection over keys in
// (key(-inf), key(max)], valid because exp is monotone. Returns 0 when even the maximum
// fails (min_p > 1), which leaves nothing to sample.
__device__ uint32_t min_p_threshold(float max_p, float min_p) {
  auto passes = [&](uint32_t key) { return sampling_exp(key_value(key) - max_p) >= min_p; };
  uint32_t lo = kNegInfKey, hi = order_key(max_p);
  if (!passes(hi)) return 0;
  while (hi - lo > 1) {
    const uint32_t mid = lo + (hi - lo) / 2;
    if (passes(mid)) hi = mid;
    else lo = mid;
  }
  return hi;
}

// Collects the keys of the count (<= kThreads) elements that selected(i, v, key) accepts
// into sort_keys and sorts them in descending order.
template <typename Selected>
__device__ void gather_sorted(const float* row, int32_t vocab, int32_t count, Selected selected, u64* sort_keys,
                              RowShared& shared) {
  const int tid = threadIdx.x;
  if (tid == 0) shared.gathered = 0;
  __syncthreads();
  sampling::for_each_logit(row, vocab, [&](int32_t i, float v) {
    uint64_t key;
    if (!selected(i, v, key)) return;
    const int32_t slot = atomicAdd(&shared.gathered, 1);
    if (slot < kThreads) sort_keys[slot] = key;
  });
  __syncthreads();
  int size = 1;
  while (size < count) size <<= 1;
  for (int j = count + tid; j < size; j += kThreads) sort_keys[j] = 0;  // padding sorts last
  __syncthreads();
  sampling::bitonic_sort_descending(sort_keys, size);
}


// Step 1's top N: chunks of up to kThreads keys, each selected by radix select below the
// previous chunk and sorted in shared memory (one chunk for any N up to kThreads).
__device__ void write_top_logprobs(const float* row, int32_t vocab, int32_t n, float max_logit, double log_normaliser,
                                   const KeyLayout& layout, sampling::RadixShared& radix, u64* sort_keys,
                                   RowShared& shared, int32_t* top_tokens, float* top_logprobs) {
  const uint32_t top_key = order_key(max_logit);
  const int tid = threadIdx.x;
  auto key_of = [&](int32_t i, float v, uint64_t& key, float&) {
    key = layout.compose(order_key(v), i);
    return true;
  };
  uint64_t previous = 0;
  for (int32_t start = 0; start < n; start += kThreads) {
    const int32_t count = n - start < kThreads ? n - start : kThreads;
    const uint64_t threshold = sampling::radix_select<false>(radix, row, vocab, layout.key_bits,
                                                             static_cast<uint32_t>(start + count - 1), 0.0,
                                                             top_key, key_of, sampling::NoMass{});
    gather_sorted(row, vocab, count,
                  [&](int32_t i, float v, uint64_t& key) {
                    key = layout.compose(order_key(v), i);
                    return key >= threshold && (start == 0 || key < previous);
                  },
                  sort_keys, shared);
    for (int j = tid; j < count; j += kThreads) {
      const uint64_t key = sort_keys[j];
      top_tokens[start + j] = layout.id_of(key);
      top_logprobs[start + j] =
          static_cast<float>(static_cast<double>(key_value(layout.okey_of(key))) - log_normaliser);
    }
    previous = threshold;
    __syncthreads();
  }
}

// top_p: the composite key of the last token it keeps, among the tokens with key >= floor
// (what min_p and top_k left) in (logit desc, id asc) order: the first at which the running
// mass reaches top_p x total. Usually among the kThreads largest: those are selected (radix
// select by count), sorted and scanned exactly. Otherwise (a flat distribution) a radix
// search over every candidate with a fixed-point mass per bin.
__device__ uint64_t top_p_cut(const float* row, int32_t vocab, const RowLogits& logit, float temperature,
                              float max_p, uint32_t floor, float top_p, const KeyLayout& layout,
                              sampling::RadixShared& radix, u64* sort_keys, RowShared& shared) {
  const int tid = threadIdx.x;
  double total = 0.0;
  int32_t candidates = 0;
  sampling::for_each_logit(row, vocab, [&](int32_t i, float v) {
    const float pl = processed_logit(logit, i, v, temperature);
    if (order_key(pl) < floor) return;
    ++candidates;
    total += sampling_exp(pl - max_p);
  });
  total = sampling::block_all_reduce(total, AddOp{});
  candidates = sampling::block_all_reduce(candidates, AddOp{});
  const double keep = static_cast<double>(top_p) * total;
  auto candidate_key = [&](int32_t i, float v, uint64_t& key, float& aux) {
    const float pl = processed_logit(logit, i, v, temperature);
    const uint32_t k = order_key(pl);
    if (k < floor) return false;
    key = layout.compose(k, i);
    aux = pl;
    return true;
  };

  const int32_t count = candidates < kThreads ? candidates : kThreads;
  const uint64_t threshold = candidates > kThreads
                                 ? sampling::radix_select<false>(radix, row, vocab, layout.key_bits, kThreads - 1,
                                                                 0.0, order_key(max_p), candidate_key,
                                                                 sampling::NoMass{})
                                 : 0;
  gather_sorted(row, vocab, count,
                [&](int32_t i, float v, uint64_t& key) {
                  float aux;
                  return candidate_key(i, v, key, aux) && key >= threshold;
                },
                sort_keys, shared);
  const double w = tid < count ? sampling_exp(key_value(layout.okey_of(sort_keys[tid])) - max_p) : 0.0;
  const double running = sampling::block_inclusive_scan(w);
  const int32_t first = sampling::block_all_reduce(tid < count && running >= keep ? tid : INT32_MAX,
                                                   sampling::MinIntOp{});
  if (first < count) return sort_keys[first];

  // Fixed-point masses: weights (<= 1) times 2^(62 - id_bits), rounded; the vocabulary's
  // sum stays below 2^62, so a u64 never overflows.
  const double scale = static_cast<double>(1ull << (62 - layout.id_bits));
  auto mass_of = [&](float pl, u64& q) {
    const float wl = sampling_exp(pl - max_p);
    q = static_cast<u64>(static_cast<double>(wl) * scale + 0.5);
    return wl > 0.0f;
  };
  return sampling::radix_select<true>(radix, row, vocab, layout.key_bits, 0, static_cast<double>(top_p), 0,
                                      candidate_key, mass_of);
}

// Shared memory each row with an allowed list needs for its mask, at most: 96 KiB (a
// vocabulary of 786432 tokens) fits beside the kernel's 35 KiB of static shared memory on
// sm_80 (164 KiB a block) and sm_90 (227 KiB).
constexpr size_t kMaxAllowedMaskBytes = 96u << 10;

// Row r in one CTA: every step above (the one-CTA path).
__device__ void sample_one_row(int32_t r, float* __restrict__ logits, int64_t row_stride, int32_t vocab,
                               const SamplingRowParams* __restrict__ params, const SamplingEdit* __restrict__ edits,
                               const int32_t* __restrict__ allowed, float* __restrict__ edit_scratch,
                               SampledToken* __restrict__ out, int32_t* __restrict__ top_tokens,
                               float* __restrict__ top_logprobs, int32_t top_stride) {
  __shared__ sampling::RadixShared radix;
  __shared__ u64 sort_keys[kThreads];
  __shared__ RowShared shared;
  extern __shared__ unsigned char allowed_mask[];  // [ceil(vocab / 32)] words when a row has a list
  const int tid = threadIdx.x;
  const SamplingRowParams p = params[r];
  float* row = logits + static_cast<int64_t>(r) * row_stride;
  const KeyLayout layout(vocab);

  // 0. Raw logprobs, from the row as it came.
  double log_normaliser = 0.0;
  if (p.num_logprobs >= 0) {
    float m = -INFINITY;
    sampling::for_each_logit(row, vocab, [&](int32_t, float v) { m = fmaxf(m, v); });
    m = sampling::block_all_reduce(m, sampling::MaxFloatOp{});
    double sum = 0.0;  // float exps summed in double, as the CPU sampler
    sampling::for_each_logit(row, vocab, [&](int32_t, float v) { sum += sampling_exp(v - m); });
    sum = sampling::block_all_reduce(sum, AddOp{});
    log_normaliser = static_cast<double>(m) + log(sum);
    const int32_t n = p.num_logprobs < vocab ? p.num_logprobs : vocab;
    if (n > 0) {
      write_top_logprobs(row, vocab, n, m, log_normaliser, layout, radix, sort_keys, shared,
                         top_tokens + static_cast<int64_t>(r) * top_stride,
                         top_logprobs + static_cast<int64_t>(r) * top_stride);
    }
  }
  if (tid == 0) {
    shared.status = kSampleOk;
    shared.token = p.given_token;
  }

  // 1. The allowed-token mask (only rows that sample).
  RowLogits logit{nullptr};
  const bool sampled = p.given_token < 0;
  if (sampled && p.num_allowed > 0) {
    uint32_t* bits = reinterpret_cast<uint32_t*>(allowed_mask);
    for (int32_t w = tid; w < (vocab + 31) / 32; w += kThreads) bits[w] = 0u;
    __syncthreads();
    for (int32_t a = tid; a < p.num_allowed; a += kThreads) {
      const int32_t id = allowed[p.allowed_begin + a];
      atomicOr(&bits[id >> 5], 1u << (id & 31));
    }
    logit.allowed_bits = bits;
  }

  // 2-4. Sparse edits (each token once per row, so no two threads touch one logit).
  const SamplingEdit* row_edits = edits + p.edit_begin;
  float* saved = edit_scratch + p.edit_begin;
  const int32_t num_edits = sampled ? p.num_edits : 0;
  for (int32_t e = tid; e < num_edits; e += kThreads) {
    const SamplingEdit edit = row_edits[e];
    const float l = row[edit.token];
    saved[e] = l;
    row[edit.token] = apply_edit(l, edit, p);
  }
  __syncthreads();

  // 5-10. Greedy, or the filters and the draw.
  if (sampled && p.temperature < kSamplingGreedyTemperature) {
    ArgMax best{-INFINITY, INT32_MAX};
    sampling::for_each_logit(row, vocab, [&](int32_t i, float v) {
      const float l = logit(i, v);
      if (sampling::better(l, i, best)) best = ArgMax{l, i};
    });
    best = sampling::block_argmax(best);
    if (tid == 0) {
      if (best.value > -INFINITY) shared.token = best.index;
      else shared.status = kSampleGreedyNoFiniteLogit;
    }
    __syncthreads();
  } else if (sampled) {
    const float temperature = p.temperature;
    float m = -INFINITY;
    int nan = 0;
    sampling::for_each_logit(row, vocab, [&](int32_t i, float v) {
      const float l = logit(i, v);
      m = fmaxf(m, l);
      nan |= l != l;
    });
    m = sampling::block_all_reduce(m, sampling::MaxFloatOp{});
    nan = sampling::block_all_reduce(nan, sampling::MaxIntOp{});
    // Division is monotone, so the largest processed logit is the largest logit divided.
    const float max_p = m / temperature;
    if (tid == 0) {
      if (!(max_p > -INFINITY) || max_p == INFINITY) shared.status = kSampleNoFiniteLogit;
      else if (nan) shared.status = kSampleNotFinite;
      shared.min_p_key = 0;
      if (shared.status == kSampleOk && p.min_p > 0.0f) {
        shared.min_p_key = min_p_threshold(max_p, p.min_p);
        if (shared.min_p_key == 0) shared.status = kSampleNoFiniteLogit;
      }
    }
    __syncthreads();
    if (shared.status == kSampleOk) {
      // Kept: key(p) >= key_floor (min_p and top_k) and, with top_p, composite key >= cut.
      uint32_t key_floor = shared.min_p_key;
      if (p.top_k > 0 && p.top_k < vocab) {
        // The CPU takes the k-th largest of the row after min_p (its drops at -inf). When k
        // tokens pass min_p that is the k-th largest of the whole row; when fewer do, it is
        // -inf and top_k keeps everything, and the whole row's k-th largest then lies below
        // min_p's floor: either way the floor is the larger of the two.
        auto key_of = [&](int32_t i, float v, uint64_t& key, float&) {
          key = order_key(processed_logit(logit, i, v, temperature));
          return true;
        };
        const uint32_t kth = static_cast<uint32_t>(sampling::radix_select<false>(
            radix, row, vocab, 32, static_cast<uint32_t>(p.top_k - 1), 0.0, order_key(max_p), key_of,
            sampling::NoMass{}));
        if (kth > key_floor) key_floor = kth;
      }
      const bool has_cut = p.top_p < 1.0f;
      const uint64_t cut = has_cut ? top_p_cut(row, vocab, logit, temperature, max_p, key_floor, p.top_p, layout,
                                               radix, sort_keys, shared)
                                   : 0;
      const uint32_t floor = key_floor;
      auto weight = [&](int32_t i, float v) {
        const float pl = processed_logit(logit, i, v, temperature);
        const uint32_t k = order_key(pl);
        if (k < floor || (has_cut && layout.compose(k, i) < cut)) return 0.0f;
        return sampling_exp(pl - max_p);
      };
      const int32_t token =
          sampling::draw_token(row, vocab, counter_uniform(p.seed, p.draw_index), weight, shared.draw);
      if (tid == 0) {
        shared.token = token;
        // Unreachable (the largest logit always survives with weight 1); never report a -1 token.
        if (token < 0) shared.status = kSampleNoFiniteLogit;
      }
    }
  }

  // Restore the edited logits, then the token's raw logprob and rank (step 0's report).
  __syncthreads();
  for (int32_t e = tid; e < num_edits; e += kThreads) row[row_edits[e].token] = saved[e];
  __syncthreads();
  const int32_t token = shared.token;
  const int32_t status = shared.status;
  float logprob = 0.0f;
  int32_t rank = 0;
  if (p.num_logprobs >= 0 && status == kSampleOk) {
    const float chosen = row[token];
    int32_t at_least = 0;  // vLLM's rank: the raw logits >= the token's own, itself included
    sampling::for_each_logit(row, vocab, [&](int32_t, float v) { at_least += v >= chosen; });
    rank = sampling::block_all_reduce(at_least, AddOp{});
    logprob = static_cast<float>(static_cast<double>(chosen) - log_normaliser);
  }
  if (tid == 0) out[r] = SampledToken{status == kSampleOk ? token : -1, logprob, rank, status};
}

__global__ void __launch_bounds__(kThreads)
    sample_kernel(float* __restrict__ logits, int64_t row_stride, int32_t vocab,
                  const SamplingRowParams* __restrict__ params, const SamplingEdit* __restrict__ edits,
                  const int32_t* __restrict__ allowed, float* __restrict__ edit_scratch,
                  SampledToken* __restrict__ out, int32_t* __restrict__ top_tokens, float* __restrict__ top_logprobs,
                  int32_t top_stride) {
  sample_one_row(blockIdx.x, logits, row_stride, vocab, params, edits, allowed, edit_scratch, out, top_tokens,
                 top_logprobs, top_stride);
}

// ---- The split path -------------------------------------------------------------------

// One segment's partial results, written by the CTA holding it.
struct SplitSegment {
  ArgMax best;     // first kernel: the segment's largest logit, lowest id on ties (NaNs never win)
  int32_t nan;     // first kernel: a NaN in the segment
  int32_t last;    // second kernel: the segment's last token of positive draw weight, -1: none
  double total;    // second kernel: the segment's draw total, in sampling_draw.cuh's order
  double raw_sum;  // second kernel: sum of exp(l - max) over the segment's raw logits
};

// The split path's device workspace (launch_sample's split_workspace).
struct SplitWorkspace {
  SplitSegment segments[kSamplingSplitMaxRows][kWarps];
  // Second-kernel CTAs done with the row; the first kernel zeroes it, so no launch depends
  // on the state the previous one left.
  uint32_t arrived[kSamplingSplitMaxRows];
};

// Whether row p may take the split path: it samples (no given token), has no allowed list
// and no edit, asks no top-N logprobs, and is greedy or has top_k, top_p and min_p off (the
// one-CTA path's own tests of those settings, negated).
__device__ __forceinline__ bool takes_split_path(const SamplingRowParams& p, int32_t vocab) {
  if (p.given_token >= 0 || p.num_allowed > 0 || p.num_edits > 0 || p.num_logprobs > 0) return false;
  if (p.temperature < kSamplingGreedyTemperature) return true;
  return !(p.min_p > 0.0f) && !(p.top_k > 0 && p.top_k < vocab) && !(p.top_p < 1.0f);
}

// A value another CTA of this launch wrote before its __threadfence: read through volatile,
// from L2, not from a stale L1 line.
template <typename T>
__device__ __forceinline__ T load_published(const T& x) {
  return *const_cast<const volatile T*>(&x);
}

// Grid (kWarps, rows). Split rows: CTA s reduces segment s. Other rows: the one-CTA path in
// CTA 0.
__global__ void __launch_bounds__(kThreads)
    sample_split_first_kernel(float* __restrict__ logits, int64_t row_stride, int32_t vocab,
                              const SamplingRowParams* __restrict__ params, const SamplingEdit* __restrict__ edits,
                              const int32_t* __restrict__ allowed, float* __restrict__ edit_scratch,
                              SampledToken* __restrict__ out, int32_t* __restrict__ top_tokens,
                              float* __restrict__ top_logprobs, int32_t top_stride,
                              SplitWorkspace* __restrict__ workspace) {
  const int32_t r = blockIdx.y;
  const int s = blockIdx.x;
  if (!takes_split_path(params[r], vocab)) {
    if (s == 0) {
      sample_one_row(r, logits, row_stride, vocab, params, edits, allowed, edit_scratch, out, top_tokens,
                     top_logprobs, top_stride);
    }
    return;
  }
  const float* row = logits + static_cast<int64_t>(r) * row_stride;
  const DrawSegment seg = sampling::draw_segment(vocab, s);
  ArgMax best{-INFINITY, INT32_MAX};
  int nan = 0;
  sampling::for_each_logit(row + seg.begin, seg.end - seg.begin, [&](int32_t i, float v) {
    nan |= v != v;
    if (sampling::better(v, seg.begin + i, best)) best = ArgMax{v, seg.begin + i};
  });
  best = sampling::block_argmax(best);
  nan = sampling::block_all_reduce(nan, sampling::MaxIntOp{});
  if (threadIdx.x == 0) {
    workspace->segments[r][s].best = best;
    workspace->segments[r][s].nan = nan;
    if (s == 0) workspace->arrived[r] = 0;
  }
}

// Grid (kWarps, rows), after the first kernel. Split rows only: the greedy token or the
// status from the segments' maxima; the draw and the log-sum-exp summed per segment; the
// last CTA of the row to finish combines them and writes the row's result.
__global__ void __launch_bounds__(kThreads)
    sample_split_final_kernel(const float* __restrict__ logits, int64_t row_stride, int32_t vocab,
                              const SamplingRowParams* __restrict__ params, SampledToken* __restrict__ out,
                              SplitWorkspace* __restrict__ workspace) {
  __shared__ DrawShared draw;
  __shared__ int finishing;
  wait_for_producer();  // every block, early exits included (dependent_launch.cuh)
  const int tid = threadIdx.x;
  const int32_t r = blockIdx.y;
  const int s = blockIdx.x;
  const SamplingRowParams p = params[r];
  if (!takes_split_path(p, vocab)) return;
  const float* row = logits + static_cast<int64_t>(r) * row_stride;
  SplitSegment* segments = workspace->segments[r];

  // The row's largest logit and argmax (the greedy token), the same in every thread.
  ArgMax best{-INFINITY, INT32_MAX};
  int nan = 0;
  for (int k = 0; k < kWarps; ++k) {
    const ArgMax b = segments[k].best;
    if (sampling::better(b.value, b.index, best)) best = b;
    nan |= segments[k].nan;
  }
  // The one-CTA path's statuses: greedy rows ignore NaNs, sampled rows refuse them.
  const bool greedy = p.temperature < kSamplingGreedyTemperature;
  const float temperature = p.temperature;
  const float max_p = best.value / temperature;  // division is monotone: the largest processed logit
  int32_t status = kSampleOk;
  if (greedy) {
    if (!(best.value > -INFINITY)) status = kSampleGreedyNoFiniteLogit;
  } else if (!(max_p > -INFINITY) || max_p == INFINITY) {
    status = kSampleNoFiniteLogit;
  } else if (nan) {
    status = kSampleNotFinite;
  }
  const bool draws = !greedy && status == kSampleOk;
  const bool reports = p.num_logprobs == 0 && status == kSampleOk;
  if (!draws && !reports) {  // the greedy token or the error: nothing to sum
    if (s == 0 && tid == 0) out[r] = SampledToken{status == kSampleOk ? best.index : -1, 0.0f, 0, status};
    return;
  }

  // This CTA's segment: its draw total (the one-CTA path's sum of it, bit for bit) and its
  // part of the raw log-sum-exp (any order: a logprob, within 1e-5 of the CPU's).
  auto weight = [&](int32_t, float v) { return sampling_exp(v / temperature - max_p); };
  const DrawSegment seg = sampling::draw_segment(vocab, s);
  double total = 0.0;
  int32_t last = -1;
  if (draws) sampling::split_segment_total(row, seg, weight, draw, total, last);
  double raw_sum = 0.0;
  if (reports) {
    const float m = best.value;
    sampling::for_each_logit(row + seg.begin, seg.end - seg.begin,
                             [&](int32_t, float v) { raw_sum += sampling_exp(v - m); });
    raw_sum = sampling::block_all_reduce(raw_sum, AddOp{});
  }
  if (tid == 0) {
    segments[s].total = total;
    segments[s].last = last;
    segments[s].raw_sum = raw_sum;
    __threadfence();  // the partials are visible before the count says so
    finishing = atomicAdd(&workspace->arrived[r], 1u) == static_cast<uint32_t>(kWarps - 1);
  }
  __syncthreads();
  if (!finishing) return;
  __threadfence();

  // The last CTA of the row: the draw over the segment totals in segment order, then the
  // chunk and the token in the chosen segment; then the token's raw logprob and rank.
  int32_t token = best.index;
  if (draws) {
    if (tid < kWarps) {
      draw.segment_total[tid] = load_published(segments[tid].total);
      draw.segment_last[tid] = load_published(segments[tid].last);
    }
    __syncthreads();
    if (tid == 0) sampling::choose_segment(draw, counter_uniform(p.seed, p.draw_index));
    __syncthreads();
    sampling::split_find_token(row, vocab, weight, draw);
    __syncthreads();
    token = draw.token;
    // Unreachable (the largest logit always has weight 1); never report a -1 token.
    if (token < 0) status = kSampleNoFiniteLogit;
  }
  float logprob = 0.0f;
  int32_t rank = 0;
  if (reports && status == kSampleOk) {
    const float chosen = row[token];
    int32_t at_least = 0;  // vLLM's rank: the raw logits >= the token's own, itself included
    sampling::for_each_logit(row, vocab, [&](int32_t, float v) { at_least += v >= chosen; });
    rank = sampling::block_all_reduce(at_least, AddOp{});
    if (tid == 0) {
      double sum = 0.0;
      for (int k = 0; k < kWarps; ++k) sum += load_published(segments[k].raw_sum);
      logprob = static_cast<float>(static_cast<double>(chosen) - (static_cast<double>(best.value) + log(sum)));
    }
  }
  if (tid == 0) out[r] = SampledToken{status == kSampleOk ? token : -1, logprob, rank, status};
}

}  // namespace

size_t sampling_split_workspace_bytes() { return sizeof(SplitWorkspace); }

void launch_sample(float* logits, int64_t row_stride, int32_t rows, int32_t vocab, const SamplingRowParams* params,
                   const SamplingEdit* edits, const int32_t* allowed, bool any_allowed, float* edit_scratch,
                   SampledToken* out, int32_t* top_tokens, float* top_logprobs, int32_t top_stride,
                   void* split_workspace, cudaStream_t stream) {
  if (vocab <= 0) throw std::invalid_argument("launch_sample: vocab must be positive, got " + std::to_string(vocab));
  if (rows < 0) throw std::invalid_argument("launch_sample: rows must be non-negative, got " + std::to_string(rows));
  if (rows > 1 && row_stride < vocab) {
    throw std::invalid_argument("launch_sample: row stride " + std::to_string(row_stride) +
                                " is shorter than the vocabulary " + std::to_string(vocab));
  }
  if (top_stride < 0) throw std::invalid_argument("launch_sample: top_stride must be non-negative");
  const size_t mask_bytes = any_allowed ? (static_cast<size_t>(vocab) + 31) / 32 * sizeof(uint32_t) : 0;
  if (mask_bytes > kMaxAllowedMaskBytes) {
    throw std::invalid_argument("launch_sample: allowed-token lists need a " + std::to_string(mask_bytes) +
                                "-byte mask, more than the " + std::to_string(kMaxAllowedMaskBytes) +
                                " bytes of shared memory kept for it (vocab " + std::to_string(vocab) + ")");
  }
  if (rows == 0) return;
  // The path is chosen from the row count alone (each row's own settings pick between the
  // split and the one-CTA path on the device), so a captured graph replays at any settings.
  if (split_workspace == nullptr || rows > kSamplingSplitMaxRows) {
    if (mask_bytes > 0) {
      OCTAVO_CUDA_CHECK(cudaFuncSetAttribute(sample_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             static_cast<int>(mask_bytes)));
    }
    sample_kernel<<<rows, kThreads, mask_bytes, stream>>>(logits, row_stride, vocab, params, edits, allowed,
                                                          edit_scratch, out, top_tokens, top_logprobs, top_stride);
    OCTAVO_CUDA_CHECK_LAUNCH();
    return;
  }
  if (mask_bytes > 0) {
    OCTAVO_CUDA_CHECK(cudaFuncSetAttribute(sample_split_first_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           static_cast<int>(mask_bytes)));
  }
  auto* workspace = static_cast<SplitWorkspace*>(split_workspace);
  const dim3 grid(kWarps, rows);
  sample_split_first_kernel<<<grid, kThreads, mask_bytes, stream>>>(logits, row_stride, vocab, params, edits,
                                                                    allowed, edit_scratch, out, top_tokens,
                                                                    top_logprobs, top_stride, workspace);
  OCTAVO_CUDA_CHECK_LAUNCH();
  // Launched while the first kernel finishes (programmatic dependent launch on sm_90).
  launch_dependent(sample_split_final_kernel, grid, kThreads, 0, stream, logits, row_stride, vocab, params, out,
                   workspace);
}

}  // namespace octavo::cuda
