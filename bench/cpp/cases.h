// The shapes every kernel benchmark runs, in one table (TurboMind's tests/*/cases.py
// style): a few small shapes for --quick (the ctest smoke run) and a grid of real model
// shapes otherwise. Most grid shapes are Llama-3-8B's: hidden 4096, 32 query heads, 8 kv
// heads, head_dim 128, intermediate 14336, vocab 128256.
#pragma once

#include <string>
#include <vector>

namespace octavo::bench {

// The engine's default KV block size (EngineConfig::block_size).
constexpr int kBlockSize = 16;

struct DecodeAttentionCase {
  int batch, context, q_heads, kv_heads, head_dim;
};
// One causal sequence attending over itself (the prompt of a prefill step).
struct PrefillAttentionCase {
  int tokens, q_heads, kv_heads, head_dim;
};
// one_sequence: the tokens fill consecutive slots of one sequence (prefill); otherwise
// each token is a different sequence's next slot (decode).
struct KvWriteCase {
  int tokens, kv_heads, head_dim;
  bool one_sequence;
};
struct NormCase {
  int rows, hidden;
};
struct RopeCase {
  int tokens, q_heads, kv_heads, head_dim;
};
struct SiluMulCase {
  int tokens, intermediate;
};
// table_rows: rows of the embedding table the ids are drawn from. Any table well over the
// LLC misses the cache like a full vocabulary does; the grid uses 16384 rows (256 MiB at
// hidden 4096) rather than 128256 (2 GiB) to keep setup short.
struct EmbeddingCase {
  int tokens, hidden, table_rows;
};
// kGreedy: argmax. kTopP: temperature 1 with top_p. kFull: every step at once, as a busy
// server's rows might ask: temperature 0.8, top_k 50, top_p, min_p 0.05, repetition /
// frequency / presence penalties over 256 tokens of history, and 20 logprobs.
enum class SamplingKind { kGreedy, kTopP, kFull };
struct SamplingCase {
  int batch, vocab;
  SamplingKind kind;
  float top_p;
};
// y[m, n] = x[m, k] . w[n, k]^T; label names the projection (qkv, o, gate_up, down).
struct GemmCase {
  std::string label;
  int m, n, k;
};

struct CaseTable {
  std::vector<DecodeAttentionCase> decode_attention;
  std::vector<PrefillAttentionCase> prefill_attention;
  std::vector<KvWriteCase> kv_write;
  std::vector<NormCase> rms_norm;
  std::vector<NormCase> add_rms_norm;
  std::vector<RopeCase> rope;
  std::vector<SiluMulCase> silu_mul;
  std::vector<EmbeddingCase> embedding;
  std::vector<SamplingCase> sampling;
  std::vector<GemmCase> gemm;
};

// device: the grid for a GPU backend, which adds the attention target shapes (decode
// batch 64 over 4k contexts, an 8k-token causal prefill) that a CPU run cannot afford.
const CaseTable& kernel_cases(bool quick, bool device = false);

}  // namespace octavo::bench
