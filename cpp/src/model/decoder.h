// DecoderModel: the forward pass of a Llama-family decoder (Llama, Mistral, Qwen2, Qwen3),
// written once against the Backend interface. It owns the weights, the rope table and the
// activation buffers, sized at start-up for the largest step (max_num_batched_tokens).
#pragma once

#include <cstdint>
#include <vector>

#include "backend/backend.h"
#include "model/model_config.h"
#include "model/weights.h"

namespace octavo {

// One step's packed inputs, as device pointers of the backend.
struct ForwardInputs {
  int32_t num_tokens = 0;
  const int32_t* token_ids = nullptr;     // [num_tokens]
  const int32_t* positions = nullptr;     // [num_tokens]
  const int64_t* slot_mapping = nullptr;  // [num_tokens]
  AttentionMetadata attention;
  int32_t num_logit_rows = 0;             // rows whose last token samples
  int32_t num_prompt_logprob_rows = 0;    // prompt tokens whose logits give prompt logprobs
  // [num_logit_rows + num_prompt_logprob_rows] into the packed tokens, sampling rows first
  const int32_t* logit_indices = nullptr;
};

// The paged KV cache of every layer: [num_blocks, block_size, kv_heads, head_dim] each.
struct KVCache {
  Buffer storage;
  std::vector<Tensor> keys;
  std::vector<Tensor> values;
  int32_t num_blocks = 0;
  int32_t block_size = 0;
  int64_t bytes_per_block = 0;  // all layers, keys and values
};

class DecoderModel {
 public:
  DecoderModel(const ModelConfig& config, ModelWeights weights, Backend& backend,
               int32_t max_num_tokens, int32_t max_logit_rows, int32_t max_position);

  const ModelConfig& config() const { return config_; }
  int64_t weight_bytes() const { return weights_.bytes; }
  // Sleep mode: hands the weights out (forward must not run until they are restored) and
  // takes them back, possibly at new addresses (recorded graphs must be recorded again).
  ModelWeights take_weights() { return std::move(weights_); }
  void restore_weights(ModelWeights weights) { weights_ = std::move(weights); }

  // Bytes one block of block_size slots takes across all layers (keys and values).
  int64_t kv_bytes_per_block(int32_t block_size) const;
  KVCache allocate_kv_cache(int32_t num_blocks, int32_t block_size) const;

  // Writes this step's K/V into the cache and returns logits [num_logit_rows, vocab]
  // (a view of an internal buffer, valid until the next forward or prompt_logits call).
  Tensor forward(const ForwardInputs& inputs, KVCache& cache);

  // Logits [count, vocab] of prompt-logprobs rows [first, first + count) of the last
  // forward, count <= max_logit_rows(); they reuse the buffer forward()'s logits are in.
  Tensor prompt_logits(int32_t first, int32_t count);
  int32_t max_logit_rows() const { return max_logit_rows_; }

 private:
  // logits [hidden.rows(), vocab] = hidden . lm_head^T, into logits_.
  Tensor lm_head(const Tensor& hidden);
  // qkv, q/k norms, rope, KV write and attention, into attn_out_ (o_proj is the caller's).
  void attention_block(const LayerWeights& layer, int32_t layer_index, const ForwardInputs& in,
                       KVCache& cache, int32_t n);

  ModelConfig config_;
  ModelWeights weights_;
  Backend& backend_;
  int32_t max_num_tokens_;
  int32_t max_logit_rows_;
  Buffer rope_storage_;
  RopeTable rope_;
  // Activations, [max_num_tokens, ...] each.
  Buffer residual_, hidden_, qkv_, attn_out_, proj_out_, gate_up_, act_;
  // [max_logit_rows, ...]
  Buffer last_residual_, last_delta_, logits_;
  // The last forward's final hidden states of its logit rows (sampling rows first), and
  // how many of them sample.
  Tensor output_hidden_;
  int32_t num_sampling_rows_ = 0;
};

// cos/sin table [max_position, head_dim] as RopeTable expects, with llama3 scaling applied.
HostTensor build_rope_table(const ModelConfig& config, int32_t max_position);

}  // namespace octavo
