// ModelConfig: what the engine needs from an HF config.json, for the decoder-only
// architectures octavo runs (Llama, Mistral, Qwen2, Qwen3).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace octavo {

struct RopeScaling {
  std::string type = "default";  // "default" or "llama3"
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

struct ModelConfig {
  std::string architecture;  // e.g. "LlamaForCausalLM"
  std::string model_type;    // e.g. "llama"
  int32_t vocab_size = 0;
  int32_t hidden_size = 0;
  int32_t intermediate_size = 0;
  int32_t num_layers = 0;
  int32_t num_heads = 0;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
  int32_t max_position_embeddings = 0;
  float rms_norm_eps = 1e-6f;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool qkv_bias = false;      // Qwen2; Llama/Mistral with attention_bias
  bool qk_norm = false;       // Qwen3: RMSNorm over head_dim on q and k before RoPE
  int32_t sliding_window = 0; // 0: full attention
  std::vector<int32_t> eos_token_ids;
  std::string torch_dtype;    // "float32", "bfloat16", "float16" or empty
};

// The architectures parse_model_config accepts, in the order error messages list them.
const std::vector<std::string>& supported_architectures();

// Parses config.json text. Throws Unsupported for an architecture, activation or rope type
// octavo does not run (listing what it does), InvalidArgument for malformed or missing fields.
ModelConfig parse_model_config(const std::string& config_json_text);

}  // namespace octavo
