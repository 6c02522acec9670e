// ModelWeights: a decoder's parameters on a backend, in the engine's layout: q/k/v fused
// into one matrix (and bias), gate/up fused into one, every matrix [out, in] as in HF.
#pragma once

#include <cstdint>
#include <vector>

#include "backend/backend.h"
#include "model/model_config.h"
#include "model/weight_source.h"

namespace octavo {

struct LayerWeights {
  Buffer input_norm;  // [hidden]
  Buffer qkv;         // [(q_heads + 2 * kv_heads) * head_dim, hidden]
  Buffer qkv_bias;    // [(q_heads + 2 * kv_heads) * head_dim] or empty
  Buffer q_norm;      // [head_dim] (Qwen3) or empty
  Buffer k_norm;      // [head_dim] (Qwen3) or empty
  Buffer o_proj;      // [hidden, q_heads * head_dim]
  Buffer post_norm;   // [hidden]
  Buffer gate_up;     // [2 * intermediate, hidden]: gate rows, then up rows
  Buffer down;        // [hidden, intermediate]
};

struct ModelWeights {
  Buffer embed;       // [vocab, hidden]
  std::vector<LayerWeights> layers;
  Buffer final_norm;  // [hidden]
  Buffer lm_head;     // [vocab, hidden]; empty when tied to embed
  int64_t bytes = 0;  // on the backend
};

// Reads every tensor the config calls for from `source` (which checks its shape), fuses
// and uploads it. Throws InvalidArgument naming a missing tensor or one of the wrong shape.
ModelWeights load_weights(const ModelConfig& config, const WeightSource& source, Backend& backend);

// How many weight elements load_weights stores for `config` (fused tensors included), so
// the memory plan can refuse a model that cannot fit before loading any of it.
int64_t count_weight_elements(const ModelConfig& config);

// A copy of `weights` in host memory (to_host) or on the backend's device (from a host copy),
// buffer for buffer, for sleep level 1: the device copy can then be freed and restored later.
ModelWeights copy_weights(const ModelWeights& weights, Backend& backend, bool to_host);

}  // namespace octavo
