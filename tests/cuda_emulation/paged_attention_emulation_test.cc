// launch_paged_attention (and the simple path) against a float64 reference of the CPU
// backend's semantics, on random mixed batches (decode rows long enough to split, prefill,
// chunked prefill with cached context, empty rows), every supported head_dim, GQA groups
// 1..12, power-of-two and other block sizes, sliding windows, strided q/out rows, fp32,
// fp16 and bf16. Outputs start as NaN (every element must be written; row padding must stay
// untouched); cache slots past each sequence and block-table entries before a window are
// poisoned. Runs the kernels through cuda_emulation.h; see run.sh.
//   paged_attention_emulation_test CASES SEED   random cases
//   paged_attention_emulation_test 0 SEED fixed the cases of tests/gpu/backend_ops_test.cc
//   paged_attention_emulation_test 0 SEED long  long rows: prefill over several 128-row and
//                                               64-key tiles with cached context, decode rows
//                                               with many splits, groups 1..16
// EMU_SMEM=<bytes> sets the device's shared-memory limit (picks the prefill path).
#include <cstdlib>

#include "attention/paged_attention.h"
#include "emulated_runtime.h"

#include <cstdio>
#include <random>
#include <string>
#include <climits>

using namespace octavo::cuda;

struct Row { int q_len, seq_len; };
struct Case {
  std::vector<Row> rows; int kv_heads, group, head_dim, block_size, window; int dtype; int pad_q, pad_out;
};


static int failures = 0;

template <typename T>
void run_case(const Case& c, std::mt19937& rng, bool simple_only, const char* label) {
  const int D = c.head_dim, kvh = c.kv_heads, qh = kvh * c.group, bs = c.block_size;
  const int ns = c.rows.size();
  std::vector<int32_t> qsl(ns + 1, 0), seq_lens(ns);
  int max_q = 0, max_s = 0;
  for (int i = 0; i < ns; ++i) { qsl[i + 1] = qsl[i] + c.rows[i].q_len; seq_lens[i] = c.rows[i].seq_len; max_q = std::max(max_q, c.rows[i].q_len); max_s = std::max(max_s, c.rows[i].seq_len); }
  const int tokens = qsl[ns];
  int max_blocks = (max_s + bs - 1) / bs + 1;
  int nblocks_needed = 0; for (auto& r : c.rows) nblocks_needed += (r.seq_len + bs - 1) / bs;
  const int num_blocks = nblocks_needed + 3;
  std::vector<int> perm(num_blocks); for (int i = 0; i < num_blocks; ++i) perm[i] = i; std::shuffle(perm.begin(), perm.end(), rng);
  std::vector<int32_t> table(ns * max_blocks, INT_MAX / 4);
  int next = 0;
  for (int i = 0; i < ns; ++i) {
    const auto& r = c.rows[i];
    const int first_q = r.seq_len - r.q_len;
    const int first_read = c.window > 0 ? std::max(0, first_q - c.window + 1) : 0;
    for (int lb = 0; lb < (r.seq_len + bs - 1) / bs; ++lb) {
      int blk = perm[next++];
      if (lb >= first_read / bs) table[i * max_blocks + lb] = blk;  // older blocks: poison
    }
  }
  std::normal_distribution<float> nd(0.f, 1.f);
  const size_t slot = (size_t)kvh * D;
  std::vector<T> kc((size_t)num_blocks * bs * slot), vc(kc.size());
  for (auto& x : kc) x = cvt<T>(nd(rng));
  for (auto& x : vc) x = cvt<T>(nd(rng));
  // Slots past each sequence's end: NaN (never read with a nonzero weight).
  for (int i = 0; i < ns; ++i) {
    const auto& r = c.rows[i];
    for (int pos = r.seq_len; pos < ((r.seq_len + bs - 1) / bs) * bs; ++pos) {
      int blk = table[i * max_blocks + pos / bs];
      for (size_t e = 0; e < slot; ++e) { kc[((size_t)blk * bs + pos % bs) * slot + e] = cvt<T>(NAN); vc[((size_t)blk * bs + pos % bs) * slot + e] = cvt<T>(NAN); }
    }
  }
  const int64_t qs = qh * D + c.pad_q, os = qh * D + c.pad_out;
  std::vector<T> q((size_t)std::max(tokens, 1) * qs), out((size_t)std::max(tokens, 1) * os, cvt<T>(NAN));
  for (auto& x : q) x = cvt<T>(nd(rng));
  const float scale = 1.5f / std::sqrt((float)D);
  const KernelDType dt = std::is_same<T, float>::value ? KernelDType::kFloat32 : std::is_same<T, __half>::value ? KernelDType::kFloat16 : KernelDType::kBFloat16;
  if (getenv("EMU_TRACE")) {
    fprintf(stderr, "case dt=%d D=%d kvh=%d g=%d bs=%d win=%d rows=", c.dtype, D, kvh, c.group, bs, c.window);
    for (auto& r : c.rows) fprintf(stderr, "%d/%d ", r.q_len, r.seq_len);
    fprintf(stderr, "simple=%d\n", (int)simple_only);
  }
  size_t wsb = paged_attention_workspace_bytes(ns, qh, kvh, D, max_s);
  std::vector<float> ws(wsb / 4 + 1, NAN);  // partials poisoned: a read before a write shows
  std::fill(ws.begin(), ws.begin() + std::min(ws.size(), size_t{2048} / 4), 0.0f);  // the counters start at zero
  if (simple_only)
    launch_paged_attention_simple(out.data(), os, q.data(), qs, kc.data(), vc.data(), qsl.data(), seq_lens.data(), table.data(), ns, max_blocks, bs, tokens, qh, kvh, D, scale, c.window, dt, nullptr);
  else
    launch_paged_attention(out.data(), os, q.data(), qs, kc.data(), vc.data(), qsl.data(), seq_lens.data(), table.data(), ns, max_blocks, bs, tokens, max_q, max_s, qh, kvh, D, scale, c.window, dt, wsb ? ws.data() : nullptr, wsb, nullptr);
  // Reference (double).
  double err2 = 0, ref2 = 0; long unwritten = 0, clobbered = 0;
  for (int i = 0; i < ns; ++i) {
    const auto& r = c.rows[i];
    for (int t = qsl[i]; t < qsl[i + 1]; ++t) {
      const int pos = r.seq_len - r.q_len + (t - qsl[i]);
      const int first = c.window > 0 ? std::max(0, pos - c.window + 1) : 0;
      for (int h = 0; h < qh; ++h) {
        const int kh = h / c.group;
        std::vector<double> s(pos - first + 1);
        double mx = -1e300;
        for (int p = first; p <= pos; ++p) {
          const size_t base = ((size_t)table[i * max_blocks + p / bs] * bs + p % bs) * slot + (size_t)kh * D;
          double d = 0; for (int e = 0; e < D; ++e) d += (double)back(q[(size_t)t * qs + h * D + e]) * scale * back(kc[base + e]);
          s[p - first] = d; mx = std::max(mx, d);
        }
        double sum = 0; for (auto& x : s) { x = std::exp(x - mx); sum += x; }
        for (int e = 0; e < D; ++e) {
          double o = 0;
          for (int p = first; p <= pos; ++p) {
            const size_t base = ((size_t)table[i * max_blocks + p / bs] * bs + p % bs) * slot + (size_t)kh * D;
            o += s[p - first] * back(vc[base + e]);
          }
          o /= sum;
          const float got = back(out[(size_t)t * os + h * D + e]);
          if (std::isnan(got)) ++unwritten;
          else { err2 += (got - o) * (got - o); }
          ref2 += o * o;
        }
      }
      for (int e = qh * D; e < os; ++e) if (!std::isnan(back(out[(size_t)t * os + e]))) ++clobbered;
    }
  }
  const double rel = std::sqrt(err2 / std::max(ref2, 1e-30));
  const double tol = std::is_same<T, float>::value ? 2e-6 : std::is_same<T, __half>::value ? 2e-3 : 1e-2;
  const bool ok = unwritten == 0 && clobbered == 0 && rel < tol;
  if (!ok) ++failures;
  std::string rows; for (auto& r : c.rows) rows += std::to_string(r.q_len) + "/" + std::to_string(r.seq_len) + " ";
  printf("%s %s dt=%d D=%d kvh=%d g=%d bs=%d win=%d ws=%zu rows=[%s] rel=%.2e unwritten=%ld clobbered=%ld\n", ok ? "ok  " : "FAIL", label, c.dtype, D, kvh, c.group, bs, c.window, wsb, rows.c_str(), rel, unwritten, clobbered);
  fflush(stdout);
}

int main(int argc, char** argv) {
  const int n = argc > 1 ? atoi(argv[1]) : 20;
  const unsigned seed = argc > 2 ? atoi(argv[2]) : 1;
  std::mt19937 rng(seed);
  auto pick = [&](std::initializer_list<int> v) { std::vector<int> a(v); return a[rng() % a.size()]; };
  if (argc > 3 && std::string(argv[3]) == "long") {
    struct L { int kvh, group, d, bs, win; std::vector<Row> rows; };
    const std::vector<L> cases = {
        {1, 8, 128, 16, 0, {{300, 1000}, {1, 5000}, {1, 17}, {1, 4096}, {65, 65}, {2, 130}}},
        {2, 16, 64, 8, 100, {{200, 900}, {1, 3000}, {1, 100}, {129, 129}}},
        {1, 1, 128, 64, 0, {{257, 257}, {1, 2049}, {3, 3}}},
        {1, 5, 64, 32, 1000, {{150, 2150}, {1, 2500}, {1, 1001}}},
        // Llama-3-8B's group 4: a window starting mid-tile, a whole prompt of 700.
        {2, 4, 128, 16, 257, {{300, 1300}, {97, 130}, {1, 5000}}},
        {1, 4, 128, 16, 0, {{700, 700}, {2, 2}}},
    };
    for (size_t i = 0; i < cases.size(); ++i) {
      for (int dt = i == 0 ? 0 : 1; dt < 3; ++dt) {
        const L& l = cases[i];
        Case c;
        c.head_dim = l.d; c.group = l.group; c.kv_heads = l.kvh; c.block_size = l.bs; c.window = l.win;
        c.dtype = dt; c.pad_q = 0; c.pad_out = 8; c.rows = l.rows;
        if (dt == 0) run_case<float>(c, rng, false, "long  ");
        else if (dt == 1) run_case<__half>(c, rng, false, "long  ");
        else run_case<__nv_bfloat16>(c, rng, false, "long  ");
      }
    }
    printf("%d failures\n", failures);
    return failures != 0;
  }
  if (argc > 3) {  // the backend ops test's cases
    struct C { int qh, kvh, d, bs, win; };
    for (C f : {C{8, 8, 64, 16, 0}, C{8, 2, 128, 16, 0}, C{4, 1, 64, 32, 0}, C{8, 2, 128, 16, 24}})
      for (int dt = 0; dt < 3; ++dt) {
        Case c;
        c.head_dim = f.d; c.group = f.qh / f.kvh; c.kv_heads = f.kvh; c.block_size = f.bs; c.window = f.win;
        c.dtype = dt; c.pad_q = 2 * f.kvh * f.d; c.pad_out = 0;
        for (auto [ctx, nq] : std::vector<std::pair<int, int>>{{0, 40}, {57, 1}, {300, 1}, {16, 17}, {0, 1}, {1000, 1}})
          c.rows.push_back(Row{nq, ctx + nq});
        if (dt == 0) run_case<float>(c, rng, false, "fixed ");
        else if (dt == 1) run_case<__half>(c, rng, false, "fixed ");
        else run_case<__nv_bfloat16>(c, rng, false, "fixed ");
      }
    printf("%d failures\n", failures);
    return failures != 0;
  }
  for (int it = 0; it < n; ++it) {
    Case c;
    c.head_dim = pick({16, 32, 64, 96, 128, 64, 128});
    c.group = pick({1, 2, 3, 4, 5, 7, 8, 12});
    c.kv_heads = pick({1, 2});
    c.block_size = pick({16, 32, 16, 32, 8, 12});
    c.window = pick({0, 0, 20, 300});
    c.dtype = rng() % 3;
    c.pad_q = pick({0, 0, 8, 3 * 8}); c.pad_out = pick({0, 5});
    // Now and then a wide batch: many short decode rows around a few prefill rows, so the
    // prefill work-item scan runs over more rows than one block has threads.
    const bool wide = rng() % 6 == 0;
    const int nrows = wide ? 130 + rng() % 200 : 1 + rng() % 4;
    for (int r = 0; r < nrows; ++r) {
      if (wide) {
        const bool prefill = rng() % 60 == 0;
        const int q_len = prefill ? 2 + rng() % 70 : 1;
        c.rows.push_back(Row{q_len, q_len + static_cast<int>(rng() % 30)});
        continue;
      }
      int kind = rng() % 4;
      Row row;
      if (kind == 0) { row.q_len = 1; row.seq_len = 1 + rng() % 1300; }
      else if (kind == 1) { row.q_len = 2 + rng() % 90; row.seq_len = row.q_len; }
      else if (kind == 2) { row.q_len = 2 + rng() % 60; row.seq_len = row.q_len + rng() % 400; }
      else { row.q_len = rng() % 3 == 0 ? 0 : 1; row.seq_len = row.q_len + rng() % 40; }
      c.rows.push_back(row);
    }
    const bool simple = rng() % 5 == 0;
    const char* label = simple ? "simple" : "auto  ";
    if (c.dtype == 0) run_case<float>(c, rng, simple, label);
    else if (c.dtype == 1) run_case<__half>(c, rng, simple, label);
    else run_case<__nv_bfloat16>(c, rng, simple, label);
  }
  printf("%d failures\n", failures);
  return failures != 0;
}
