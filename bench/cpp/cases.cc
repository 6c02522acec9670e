#include "cases.h"

namespace octavo::bench {

namespace {

// Small shapes, odd sizes included (a context that ends mid-block, GQA group 4), so the
// smoke run touches the same code paths as the grid in well under a second per op.
CaseTable quick_cases() {
  CaseTable t;
  t.decode_attention = {{2, 300, 8, 2, 64}};
  t.prefill_attention = {{128, 8, 2, 64}};
  t.kv_write = {{16, 2, 64, false}, {100, 2, 64, true}};
  t.rms_norm = {{4, 256}};
  t.add_rms_norm = {{4, 256}};
  t.rope = {{4, 8, 2, 64}};
  t.silu_mul = {{4, 512}};
  t.embedding = {{8, 256, 1024}};
  t.sampling = {{4, 4096, SamplingKind::kGreedy, 1.0f},
                {4, 4096, SamplingKind::kTopP, 0.9f},
                {4, 4096, SamplingKind::kFull, 0.9f}};
  t.gemm = {{"decode", 1, 256, 128}, {"decode", 8, 256, 128}, {"prefill", 64, 256, 256}};
  return t;
}

// Llama-3-8B shapes. Decode: batch 1..64 over 0.5k..8k contexts; prefill: one 1k prompt.
// Kept to what runs in under a minute on a 2-core CPU (the CPU backend's scalar attention
// takes seconds per call for a 2k prompt); a GPU run can afford a larger grid.
CaseTable grid_cases() {
  CaseTable t;
  t.decode_attention = {{1, 1024, 32, 8, 128},
                        {1, 8192, 32, 8, 128},
                        {16, 2048, 32, 8, 128},
                        {64, 512, 32, 8, 128},
                        {64, 1024, 32, 8, 128}};
  t.prefill_attention = {{1024, 32, 8, 128}};
  t.kv_write = {{64, 8, 128, false}, {2048, 8, 128, true}};
  t.rms_norm = {{1, 4096}, {64, 4096}, {2048, 4096}};
  t.add_rms_norm = {{1, 4096}, {64, 4096}, {2048, 4096}};
  t.rope = {{64, 32, 8, 128}, {2048, 32, 8, 128}};
  t.silu_mul = {{1, 14336}, {64, 14336}, {2048, 14336}};
  t.embedding = {{64, 4096, 16384}, {2048, 4096, 16384}};
  // Sampling at batch 1 (one decode stream; top_p 1 is temperature 1 alone, vLLM's latency
  // benchmark), at 8 and 16 (either side of the CUDA sampler's split-path limit), and at 64
  // and 256 (the CUDA backend's largest decode batches).
  t.sampling = {{1, 128256, SamplingKind::kGreedy, 1.0f},   {1, 128256, SamplingKind::kTopP, 1.0f},
                {8, 128256, SamplingKind::kTopP, 1.0f},     {16, 128256, SamplingKind::kTopP, 1.0f},
                {64, 128256, SamplingKind::kGreedy, 1.0f},  {64, 128256, SamplingKind::kTopP, 0.9f},
                {256, 128256, SamplingKind::kGreedy, 1.0f}, {256, 128256, SamplingKind::kTopP, 0.9f},
                {256, 128256, SamplingKind::kFull, 0.9f}};
  // Decode: the fused qkv projection (6144 = (32 + 2 * 8) * 128) and down (4096 x 14336)
  // at m = 1, 16, 64; prefill: qkv and o at m = 512.
  t.gemm = {{"qkv", 1, 6144, 4096},  {"qkv", 16, 6144, 4096},  {"qkv", 64, 6144, 4096},
            {"down", 1, 4096, 14336}, {"down", 64, 4096, 14336}, {"qkv", 512, 6144, 4096},
            {"o", 512, 4096, 4096}};
  return t;
}

// The grid plus what only a GPU runs in reasonable time: the short contexts of a batch-1
// chat step (~150 tokens), the decode target (batch 64, context 4096) and its
// prefill target (8k tokens causal, 32 heads x 128), with 8 kv heads (Llama-3-8B) and with 32
// (the MHA shape PyTorch's SDPA is usually quoted at; bench/sdpa_prefill.py runs both).
CaseTable device_cases() {
  CaseTable t = grid_cases();
  t.decode_attention.insert(t.decode_attention.begin(), {1, 150, 32, 8, 128});
  t.decode_attention.push_back({64, 4096, 32, 8, 128});
  t.prefill_attention.push_back({8192, 32, 8, 128});
  t.prefill_attention.push_back({8192, 32, 32, 128});
  return t;
}

}  // namespace

const CaseTable& kernel_cases(bool quick, bool device) {
  static const CaseTable quick_table = quick_cases();
  static const CaseTable grid_table = grid_cases();
  static const CaseTable device_table = device_cases();
  if (quick) return quick_table;
  return device ? device_table : grid_table;
}

}  // namespace octavo::bench
