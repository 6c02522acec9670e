// launch_rms_norm, launch_add_rms_norm, launch_add_slices_rms_norm and launch_rope (with and without its KV-cache write)
// against float64 references, through cuda_emulation.h (see run.sh), on random inputs in
// fp32, fp16 and bf16: block-mode norms with one and with several 16-byte units per thread,
// warp-mode per-head norms (2-D blocks), the scalar paths, padded row strides, out aliasing
// x, residual or delta; rope with full and partial rotary dims, a token without a cache slot,
// and cache slots that must stay untouched. Outputs and caches start as NaN.
//   norm_rope_emulation_test CASES SEED
#include <cstdio>
#include <random>
#include <string>
#include <type_traits>

#include "emulated_runtime.h"
#include "norm/rms_norm.h"
#include "rope/rope.h"

using namespace octavo::cuda;

template <typename T> constexpr KernelDType kdt();
template <> constexpr KernelDType kdt<float>() { return KernelDType::kFloat32; }
template <> constexpr KernelDType kdt<__half>() { return KernelDType::kFloat16; }
template <> constexpr KernelDType kdt<__nv_bfloat16>() { return KernelDType::kBFloat16; }
template <typename T> const char* name() { return sizeof(T) == 4 ? "fp32" : std::is_same_v<T, __half> ? "fp16" : "bf16"; }

// The GPU op tests' bounds: one rounding of the stored outputs, with headroom.
template <typename T> double tolerance() { return sizeof(T) == 4 ? 1e-6 : std::is_same_v<T, __half> ? 8e-4 : 6e-3; }

static int failures = 0;
static std::mt19937 rng;

template <typename T>
std::vector<T> random_values(size_t n, float scale = 1.0f) {
  std::normal_distribution<float> nd(0.f, scale);
  std::vector<T> v(n);
  for (auto& x : v) x = cvt<T>(nd(rng));
  return v;
}

// Relative L2 error of got against want over the listed elements; NaN (unwritten) fails.
template <typename T>
void check(const std::string& what, const std::vector<T>& got, const std::vector<double>& want,
           const std::vector<size_t>& at) {
  double num = 0, den = 0;
  size_t unwritten = 0;
  for (size_t i : at) {
    const double g = back(got[i]);
    if (std::isnan(g)) { ++unwritten; continue; }
    num += (g - want[i]) * (g - want[i]);
    den += want[i] * want[i];
  }
  const double rel = std::sqrt(num / std::max(den, 1e-30));
  const bool ok = unwritten == 0 && rel < tolerance<T>();
  if (!ok) ++failures;
  std::printf("%s %-4s %-58s rel=%.2e unwritten=%zu\n", ok ? "ok  " : "FAIL", name<T>(), what.c_str(), rel, unwritten);
}

// rows x heads items of dim, rows `stride` elements apart (stride >= heads * dim).
template <typename T>
void norm_case(int64_t rows, int64_t heads, int64_t dim, int64_t pad, bool add, int alias) {
  const int64_t stride = heads * dim + pad;
  const size_t n = static_cast<size_t>(rows * stride);
  const float eps = 1e-5f;
  std::vector<T> x = random_values<T>(n, 2.0f), delta = random_values<T>(n), w = random_values<T>(dim, 0.5f);
  std::vector<T> out(n, cvt<T>(std::nanf("")));
  const std::vector<T> x0 = x;
  // alias 1: out is x (the residual with add); alias 2: out is delta (add only).
  T* out_ptr = alias == 1 ? x.data() : alias == 2 ? delta.data() : out.data();
  const std::vector<T> delta0 = delta;
  std::vector<double> want(n, 0.0), want_residual(n, 0.0);
  std::vector<size_t> at;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t h = 0; h < heads; ++h) {
      const size_t base = static_cast<size_t>(r * stride + h * dim);
      std::vector<double> v(dim);
      double ss = 0;
      for (int64_t i = 0; i < dim; ++i) {
        const float s = add ? back(cvt<T>(back(x0[base + i]) + back(delta0[base + i]))) : back(x0[base + i]);
        v[i] = s;
        want_residual[base + i] = s;
        ss += v[i] * v[i];
        at.push_back(base + i);
      }
      const double inv = 1.0 / std::sqrt(ss / dim + eps);
      for (int64_t i = 0; i < dim; ++i) want[base + i] = v[i] * inv * back(w[i]);
    }
  }
  if (add) {
    launch_add_rms_norm(x.data(), stride, delta.data(), stride, w.data(), out_ptr, stride, rows, dim, eps, kdt<T>(),
                        nullptr);
  } else {
    launch_rms_norm(out_ptr, stride, x.data(), stride, w.data(), rows, heads, dim, eps, kdt<T>(), nullptr);
  }
  const std::string what = std::string(add ? "add_rms_norm" : "rms_norm") + " rows=" + std::to_string(rows) +
                           " heads=" + std::to_string(heads) + " dim=" + std::to_string(dim) + " pad=" +
                           std::to_string(pad) + (alias == 1 ? " out=x" : alias == 2 ? " out=delta" : "");
  const std::vector<T>& result = alias == 1 ? x : alias == 2 ? delta : out;
  check(what, result, want, at);
  if (add && alias != 1) {
    // The stored residual is the rounded sum, exactly.
    size_t wrong = 0;
    for (size_t i : at) wrong += back(x[i]) != want_residual[i];
    if (wrong) ++failures;
    std::printf("%s %-4s %-58s %zu wrong\n", wrong ? "FAIL" : "ok  ", name<T>(), (what + " residual").c_str(), wrong);
  }
  // Row padding of a separate out (NaN before the call) is never written.
  size_t touched = 0;
  for (int64_t r = 0; r < rows && alias == 0; ++r)
    for (int64_t i = heads * dim; i < stride; ++i) touched += !std::isnan(back(out[r * stride + i]));
  if (touched) { ++failures; std::printf("FAIL %s: %zu padding elements written\n", what.c_str(), touched); }
}

// launch_add_slices_rms_norm: residual += (the fp32 sum of num_slices slices, rounded to T).
// The stored residual must be exact (the slices summed in order in fp32, as the kernel
// does), the output within tolerance of float64.
template <typename T>
void slices_case(int64_t rows, int64_t dim, int64_t pad, int64_t num_slices, bool out_is_residual) {
  const int64_t stride = dim + pad;
  const size_t n = static_cast<size_t>(rows * stride);
  const float eps = 1e-5f;
  std::vector<T> x = random_values<T>(n, 2.0f), w = random_values<T>(dim, 0.5f);
  std::vector<float> slices(static_cast<size_t>(num_slices * rows * dim));
  std::normal_distribution<float> nd(0.f, 1.f);
  for (float& v : slices) v = nd(rng);
  std::vector<T> out(n, cvt<T>(std::nanf("")));
  const std::vector<T> x0 = x;
  std::vector<double> want(n, 0.0), want_residual(n, 0.0);
  std::vector<size_t> at;
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0;
    for (int64_t i = 0; i < dim; ++i) {
      float sum = 0.0f;
      for (int64_t s = 0; s < num_slices; ++s) sum += slices[(s * rows + r) * dim + i];
      const size_t e = static_cast<size_t>(r * stride + i);
      want_residual[e] = back(cvt<T>(back(x0[e]) + back(cvt<T>(sum))));
      ss += want_residual[e] * want_residual[e];
      at.push_back(e);
    }
    const double inv = 1.0 / std::sqrt(ss / dim + eps);
    for (int64_t i = 0; i < dim; ++i) want[r * stride + i] = want_residual[r * stride + i] * inv * back(w[i]);
  }
  T* out_ptr = out_is_residual ? x.data() : out.data();
  launch_add_slices_rms_norm(x.data(), stride, slices.data(), num_slices, w.data(), out_ptr, stride, rows, dim, eps,
                             kdt<T>(), nullptr);
  const std::string what = "add_slices_rms_norm rows=" + std::to_string(rows) + " dim=" + std::to_string(dim) +
                           " pad=" + std::to_string(pad) + " slices=" + std::to_string(num_slices) +
                           (out_is_residual ? " out=x" : "");
  check(what, out_is_residual ? x : out, want, at);
  if (!out_is_residual) {
    size_t wrong = 0, touched = 0;
    for (size_t i : at) wrong += back(x[i]) != want_residual[i];
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t i = dim; i < stride; ++i) touched += !std::isnan(back(out[r * stride + i]));
    if (wrong || touched) ++failures;
    std::printf("%s %-4s %-58s %zu wrong, %zu padding written\n", wrong || touched ? "FAIL" : "ok  ", name<T>(),
                (what + " residual").c_str(), wrong, touched);
  }
}

template <typename T>
void rope_case(int tokens, int q_heads, int kv_heads, int head_dim, int rot_dim, bool with_cache) {
  const int max_pos = 64, half = rot_dim / 2;
  const int64_t q_stride = q_heads * head_dim + 8, k_stride = (q_heads + 2 * kv_heads) * head_dim;  // k, v: slices of a qkv row
  std::vector<T> q = random_values<T>(tokens * q_stride), kv = random_values<T>(tokens * k_stride);
  const std::vector<T> q0 = q, kv0 = kv;
  T* k = kv.data();                         // k at column 0 of each row
  T* v = kv.data() + kv_heads * head_dim;   // v right after
  std::vector<float> table(max_pos * rot_dim);
  for (int p = 0; p < max_pos; ++p)
    for (int i = 0; i < half; ++i) {
      const double a = p * std::pow(10000.0, -2.0 * i / rot_dim);
      table[p * rot_dim + i] = static_cast<float>(std::cos(a));
      table[p * rot_dim + half + i] = static_cast<float>(std::sin(a));
    }
  std::vector<int32_t> positions(tokens);
  for (auto& p : positions) p = static_cast<int32_t>(rng() % max_pos);
  const int block_size = 16, num_blocks = 4, slot_width = kv_heads * head_dim;
  std::vector<int64_t> slots(tokens);
  std::vector<int> perm(num_blocks * block_size);
  for (size_t i = 0; i < perm.size(); ++i) perm[i] = static_cast<int>(i);
  std::shuffle(perm.begin(), perm.end(), rng);
  for (int t = 0; t < tokens; ++t) slots[t] = t == 1 ? -1 : perm[t];  // token 1: no slot
  std::vector<T> k_cache(num_blocks * block_size * slot_width, cvt<T>(std::nanf(""))), v_cache = k_cache;
  const RopeCacheWrite cache{v, k_stride, slots.data(), k_cache.data(), v_cache.data()};
  launch_rope(q.data(), q_stride, k, k_stride, positions.data(), table.data(), rot_dim, rot_dim, tokens, q_heads,
              kv_heads, head_dim, kdt<T>(), nullptr, with_cache ? &cache : nullptr);

  std::vector<double> want_q(q.size()), want_kv(kv.size());
  std::vector<size_t> at_q, at_k;
  auto rotate = [&](const std::vector<T>& src, std::vector<double>& dst, size_t base, int pos, std::vector<size_t>& at) {
    for (int i = 0; i < head_dim; ++i) {
      at.push_back(base + i);
      if (i >= rot_dim) { dst[base + i] = back(src[base + i]); continue; }
      const int j = i < half ? i : i - half;
      const double c = table[pos * rot_dim + j], s = table[pos * rot_dim + half + j];
      const double x1 = back(src[base + j]), x2 = back(src[base + j + half]);
      dst[base + i] = i < half ? x1 * c - x2 * s : x2 * c + x1 * s;
    }
  };
  for (int t = 0; t < tokens; ++t) {
    for (int h = 0; h < q_heads; ++h) rotate(q0, want_q, t * q_stride + h * head_dim, positions[t], at_q);
    for (int h = 0; h < kv_heads; ++h) rotate(kv0, want_kv, t * k_stride + h * head_dim, positions[t], at_k);
  }
  const std::string what = "rope tokens=" + std::to_string(tokens) + " heads=" + std::to_string(q_heads) + "/" +
                           std::to_string(kv_heads) + " d=" + std::to_string(head_dim) + " rot=" +
                           std::to_string(rot_dim) + (with_cache ? " +cache" : "");
  check(what + " q", q, want_q, at_q);
  check(what + " k", kv, want_kv, at_k);
  // v and the q row padding are left as they were.
  size_t changed = 0;
  for (int t = 0; t < tokens; ++t) {
    for (int i = kv_heads * head_dim; i < k_stride; ++i) changed += back(kv[t * k_stride + i]) != back(kv0[t * k_stride + i]);
    for (int i = q_heads * head_dim; i < q_stride; ++i) changed += back(q[t * q_stride + i]) != back(q0[t * q_stride + i]);
  }
  // The cache: the rotated k and v, exactly, at each token's slot; every other slot untouched.
  size_t wrong = 0, touched = 0;
  std::vector<char> used(num_blocks * block_size, 0);
  for (int t = 0; t < tokens && with_cache; ++t) {
    if (slots[t] < 0) continue;
    used[slots[t]] = 1;
    for (int i = 0; i < slot_width; ++i) {
      wrong += back(k_cache[slots[t] * slot_width + i]) != back(kv[t * k_stride + i]);
      wrong += back(v_cache[slots[t] * slot_width + i]) != back(v[t * k_stride + i]);
    }
  }
  for (size_t s = 0; s < used.size(); ++s)
    for (int i = 0; i < slot_width && !used[s]; ++i)
      touched += !std::isnan(back(k_cache[s * slot_width + i])) + !std::isnan(back(v_cache[s * slot_width + i]));
  const bool ok = changed == 0 && wrong == 0 && touched == 0;
  if (!ok) ++failures;
  std::printf("%s %-4s %-58s changed=%zu cache_wrong=%zu cache_touched=%zu\n", ok ? "ok  " : "FAIL", name<T>(),
              (what + " rest").c_str(), changed, wrong, touched);
}

template <typename T>
void fixed_cases() {
  // Block mode: Llama-3-8B's hidden (one 16-byte unit per thread in 16-bit types), a row
  // wider than 1024 units (several per thread), and the scalar path (dim not a multiple of
  // a unit); warp mode: per-head q/k norms.
  for (int alias : {0, 1}) norm_case<T>(3, 1, 4096, 0, false, alias);
  norm_case<T>(2, 1, 16384, 16, false, 0);
  norm_case<T>(2, 1, 1030, 2, false, 0);
  norm_case<T>(5, 4, 128, 8, false, 1);
  norm_case<T>(3, 2, 100, 0, false, 0);
  for (int alias : {0, 1, 2}) norm_case<T>(3, 1, 4096, 8, true, alias);
  norm_case<T>(2, 1, 16384, 0, true, 0);
  norm_case<T>(2, 1, 1030, 2, true, 2);
  norm_case<T>(4, 1, 128, 0, true, 0);
  // Split-K slices: batch-1 o_proj / down shapes (block mode), a small batch, warp mode, and
  // the scalar path (dim not a multiple of a 16-byte unit).
  slices_case<T>(1, 4096, 0, 4, false);
  slices_case<T>(1, 4096, 0, 14, true);
  slices_case<T>(5, 4096, 8, 2, false);
  slices_case<T>(3, 256, 0, 8, false);
  slices_case<T>(2, 1030, 2, 3, false);
  rope_case<T>(4, 4, 2, 128, 128, true);
  rope_case<T>(3, 4, 2, 64, 32, true);
  rope_case<T>(3, 8, 1, 64, 64, false);
}

template <typename T>
void random_case() {
  // Half the dims a multiple of 16 bytes (the vector paths), half anything (mostly scalar).
  const int64_t dim = rng() % 2 ? 8 * (1 + static_cast<int64_t>(rng() % 1100)) : 1 + static_cast<int64_t>(rng() % 9000);
  const int64_t heads = 1 + rng() % 3;
  const bool add = rng() % 2;
  norm_case<T>(1 + rng() % 3, add ? 1 : heads, dim, rng() % 3 * 8, add, static_cast<int>(rng() % (add ? 3 : 2)));
  slices_case<T>(1 + rng() % 3, dim, rng() % 3 * 8, 1 + rng() % 16, rng() % 2);
  const int head_dim = 16 * (1 + rng() % 8), rot = 2 * (1 + rng() % (head_dim / 2));
  rope_case<T>(1 + rng() % 4, 1 + rng() % 8, 1 + rng() % 3, head_dim, rot, rng() % 2);
}

int main(int argc, char** argv) {
  const int cases = argc > 1 ? std::atoi(argv[1]) : 10;
  rng.seed(argc > 2 ? std::atoi(argv[2]) : 1);
  fixed_cases<float>();
  fixed_cases<__half>();
  fixed_cases<__nv_bfloat16>();
  for (int c = 0; c < cases; ++c) {
    random_case<float>();
    random_case<__half>();
    random_case<__nv_bfloat16>();
  }
  std::printf("%s: %d failures\n", failures ? "FAILED" : "PASSED", failures);
  return failures ? 1 : 0;
}
