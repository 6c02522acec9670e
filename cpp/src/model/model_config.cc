#include "model/model_config.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "octavo/errors.h"

namespace octavo {
namespace {

using nlohmann::json;

const std::vector<std::string>& supported_rope_types() {
  static const std::vector<std::string> types = {"default", "llama3"};
  return types;
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty()) out += ", ";
    out += item;
  }
  return out;
}

// HF writes optional fields either absent or as null; both mean "use the default".
bool has_value(const json& obj, const char* key) {
  auto it = obj.find(key);
  return it != obj.end() && !it->is_null();
}

[[noreturn]] void bad_field(const std::string& field, const json& value, const char* expected) {
  throw InvalidArgument("config.json field " + field + " must be " + expected + ", got " +
                        value.dump());
}

int64_t as_integer(const json& value, const std::string& field) {
  if (value.is_number_integer()) return value.get<int64_t>();
  // Some exporters write sizes as 4096.0; accept those, not 4096.5.
  if (value.is_number_float()) {
    const double d = value.get<double>();
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.0e18) {
      return static_cast<int64_t>(d);
    }
  }
  bad_field(field, value, "an integer");
}

int32_t as_int32(const json& value, const std::string& field) {
  const int64_t v = as_integer(value, field);
  if (v < std::numeric_limits<int32_t>::min() || v > std::numeric_limits<int32_t>::max()) {
    bad_field(field, value, "a 32-bit integer");
  }
  return static_cast<int32_t>(v);
}

double as_double(const json& value, const std::string& field) {
  if (!value.is_number()) bad_field(field, value, "a number");
  return value.get<double>();
}

int32_t required_int(const json& obj, const char* key) {
  if (!has_value(obj, key)) throw InvalidArgument(std::string("config.json is missing ") + key);
  return as_int32(obj.at(key), key);
}

int32_t optional_int(const json& obj, const char* key, int32_t fallback) {
  return has_value(obj, key) ? as_int32(obj.at(key), key) : fallback;
}

double optional_double(const json& obj, const char* key, double fallback) {
  return has_value(obj, key) ? as_double(obj.at(key), key) : fallback;
}

bool optional_bool(const json& obj, const char* key, bool fallback) {
  if (!has_value(obj, key)) return fallback;
  const json& value = obj.at(key);
  if (!value.is_boolean()) bad_field(key, value, "true or false");
  return value.get<bool>();
}

std::string optional_string(const json& obj, const char* key) {
  if (!has_value(obj, key)) return "";
  const json& value = obj.at(key);
  if (!value.is_string()) bad_field(key, value, "a string");
  return value.get<std::string>();
}

void require_positive(const char* field, int64_t value) {
  if (value <= 0) {
    throw InvalidArgument(std::string("config.json field ") + field + " must be positive, got " +
                          std::to_string(value));
  }
}

std::string parse_architecture(const json& config) {
  if (!has_value(config, "architectures")) {
    throw InvalidArgument("config.json has no \"architectures\" field naming the model class");
  }
  const json& archs = config.at("architectures");
  if (!archs.is_array() || archs.empty() || !archs[0].is_string()) {
    bad_field("architectures", archs, "a non-empty list of class names");
  }
  std::string arch = archs[0].get<std::string>();
  const auto& supported = supported_architectures();
  if (std::find(supported.begin(), supported.end(), arch) == supported.end()) {
    throw Unsupported("Model architecture " + arch + " is not supported by octavo; supported: " +
                      join(supported));
  }
  return arch;
}

std::vector<int32_t> parse_eos_token_ids(const json& config) {
  std::vector<int32_t> ids;
  if (!has_value(config, "eos_token_id")) return ids;
  const json& value = config.at("eos_token_id");
  if (value.is_array()) {
    for (const auto& id : value) ids.push_back(as_int32(id, "eos_token_id"));
  } else {
    ids.push_back(as_int32(value, "eos_token_id"));
  }
  return ids;
}

std::string parse_dtype(const json& config) {
  // transformers 5 writes "dtype", transformers 4 "torch_dtype".
  std::string dtype = optional_string(config, "dtype");
  if (dtype.empty()) dtype = optional_string(config, "torch_dtype");
  if (dtype.empty() || dtype == "float32" || dtype == "float16" || dtype == "bfloat16") {
    return dtype;
  }
  throw Unsupported("config.json dtype " + dtype +
                    " is not supported by octavo; supported: float32, float16, bfloat16");
}

void check_partial_rotary_factor(const json& obj) {
  if (!has_value(obj, "partial_rotary_factor")) return;
  const double factor = as_double(obj.at("partial_rotary_factor"), "partial_rotary_factor");
  if (factor != 1.0) {
    throw Unsupported("partial_rotary_factor " + obj.at("partial_rotary_factor").dump() +
                      " is not supported by octavo; only rotary embedding over the whole head "
                      "(partial_rotary_factor 1) is");
  }
}

// Reads the rope settings the way transformers 5 does: a non-null "rope_scaling" (the 4.x
// name) wins over "rope_parameters", and a theta missing from the dict comes from the
// top-level "rope_theta".
void parse_rope(const json& config, ModelConfig& out) {
  json empty = json::object();
  const json* params = &empty;
  const char* params_name = "rope_parameters";
  for (const char* key : {"rope_scaling", "rope_parameters"}) {
    if (has_value(config, key)) {
      params = &config.at(key);
      params_name = key;
      break;
    }
  }
  if (!params->is_object()) bad_field(params_name, *params, "an object");

  check_partial_rotary_factor(config);
  check_partial_rotary_factor(*params);

  out.rope_theta = has_value(*params, "rope_theta")
                       ? as_double(params->at("rope_theta"), "rope_theta")
                       : optional_double(config, "rope_theta", 10000.0);
  if (!(out.rope_theta > 0.0) || !std::isfinite(out.rope_theta)) {
    bad_field("rope_theta", json(out.rope_theta), "a positive number");
  }

  std::string type = optional_string(*params, "rope_type");
  if (type.empty()) type = optional_string(*params, "type");
  if (type.empty()) type = "default";

  RopeScaling scaling;
  scaling.type = type;
  if (type == "llama3") {
    const std::string prefix = std::string(params_name) + ".";
    auto need = [&](const char* key) -> const json& {
      if (!has_value(*params, key)) {
        throw InvalidArgument("config.json " + prefix + key + " is required for rope type llama3");
      }
      return params->at(key);
    };
    scaling.factor = as_double(need("factor"), prefix + "factor");
    scaling.low_freq_factor = as_double(need("low_freq_factor"), prefix + "low_freq_factor");
    scaling.high_freq_factor = as_double(need("high_freq_factor"), prefix + "high_freq_factor");
    scaling.original_max_position_embeddings = as_integer(
        need("original_max_position_embeddings"), prefix + "original_max_position_embeddings");
    if (!(scaling.factor > 0.0)) {
      bad_field(prefix + "factor", params->at("factor"), "positive");
    }
    if (!(scaling.low_freq_factor > 0.0)) {
      bad_field(prefix + "low_freq_factor", params->at("low_freq_factor"), "positive");
    }
    // The llama3 frequency ramp divides by (high_freq_factor - low_freq_factor).
    if (!(scaling.high_freq_factor > scaling.low_freq_factor)) {
      bad_field(prefix + "high_freq_factor", params->at("high_freq_factor"),
                "greater than low_freq_factor");
    }
    if (scaling.original_max_position_embeddings <= 0) {
      bad_field(prefix + "original_max_position_embeddings",
                params->at("original_max_position_embeddings"), "positive");
    }
  } else if (type != "default") {
    throw Unsupported("RoPE type " + type + " is not supported by octavo; supported: " +
                      join(supported_rope_types()));
  }
  out.rope_scaling = scaling;
}

// Qwen2/Qwen3 slide only when use_sliding_window is set, and then only on the layers that
// layer_types (or, in older configs, max_window_layers) marks; octavo has one window for
// the whole model, so a mix of sliding and full layers cannot be run.
int32_t parse_qwen_sliding_window(const json& config, int32_t num_layers) {
  if (!optional_bool(config, "use_sliding_window", false)) return 0;
  const int32_t window = optional_int(config, "sliding_window", 0);
  if (window == 0) return 0;
  int32_t sliding_layers = 0;
  if (has_value(config, "layer_types")) {
    const json& types = config.at("layer_types");
    if (!types.is_array()) bad_field("layer_types", types, "a list");
    for (const auto& t : types) {
      if (t == "sliding_attention") ++sliding_layers;
    }
  } else {
    const int32_t max_window_layers = optional_int(config, "max_window_layers", 28);
    for (int32_t i = 0; i < num_layers; ++i) {
      if (i >= max_window_layers) ++sliding_layers;
    }
  }
  if (sliding_layers == 0) return 0;
  if (sliding_layers != num_layers) {
    throw Unsupported("sliding window attention on " + std::to_string(sliding_layers) + " of " +
                      std::to_string(num_layers) +
                      " layers is not supported by octavo; only all layers or none");
  }
  return window;
}

}  // namespace

const std::vector<std::string>& supported_architectures() {
  static const std::vector<std::string> archs = {"LlamaForCausalLM", "MistralForCausalLM",
                                                 "Qwen2ForCausalLM", "Qwen3ForCausalLM"};
  return archs;
}

ModelConfig parse_model_config(const std::string& config_json_text) {
  json config;
  try {
    config = json::parse(config_json_text);
  } catch (const json::parse_error& e) {
    throw InvalidArgument(std::string("config.json is not valid JSON: ") + e.what());
  }
  if (!config.is_object()) {
    throw InvalidArgument("config.json must hold a JSON object, got " +
                          std::string(config.type_name()));
  }

  ModelConfig out;
  out.architecture = parse_architecture(config);
  out.model_type = optional_string(config, "model_type");
  const bool is_llama = out.architecture == "LlamaForCausalLM";
  const bool is_mistral = out.architecture == "MistralForCausalLM";
  const bool is_qwen2 = out.architecture == "Qwen2ForCausalLM";
  const bool is_qwen3 = out.architecture == "Qwen3ForCausalLM";

  // All four architectures default to SiLU in transformers.
  const std::string act = has_value(config, "hidden_act") ? optional_string(config, "hidden_act")
                                                          : std::string("silu");
  if (act != "silu") {
    throw Unsupported("hidden_act " + act + " is not supported by octavo; supported: silu");
  }
  if (is_llama && optional_bool(config, "mlp_bias", false)) {
    throw Unsupported("mlp_bias true is not supported by octavo");
  }

  out.vocab_size = required_int(config, "vocab_size");
  out.hidden_size = required_int(config, "hidden_size");
  out.intermediate_size = required_int(config, "intermediate_size");
  out.num_layers = required_int(config, "num_hidden_layers");
  out.num_heads = required_int(config, "num_attention_heads");
  out.num_kv_heads = optional_int(config, "num_key_value_heads", out.num_heads);
  out.max_position_embeddings = required_int(config, "max_position_embeddings");
  require_positive("vocab_size", out.vocab_size);
  require_positive("hidden_size", out.hidden_size);
  require_positive("intermediate_size", out.intermediate_size);
  require_positive("num_hidden_layers", out.num_layers);
  require_positive("num_attention_heads", out.num_heads);
  require_positive("num_key_value_heads", out.num_kv_heads);
  require_positive("max_position_embeddings", out.max_position_embeddings);

  // Qwen3Config's head_dim defaults to 128 rather than hidden_size / num_attention_heads.
  const int32_t default_head_dim = is_qwen3 ? 128 : out.hidden_size / out.num_heads;
  out.head_dim = optional_int(config, "head_dim", default_head_dim);
  require_positive("head_dim", out.head_dim);
  if (out.num_heads % out.num_kv_heads != 0) {
    throw InvalidArgument("config.json num_attention_heads (" + std::to_string(out.num_heads) +
                          ") must be a multiple of num_key_value_heads (" +
                          std::to_string(out.num_kv_heads) + ")");
  }
  // RoPE rotates pairs of dimensions.
  if (out.head_dim % 2 != 0) {
    throw InvalidArgument("config.json field head_dim must be even, got " +
                          std::to_string(out.head_dim));
  }

  out.rms_norm_eps = static_cast<float>(optional_double(config, "rms_norm_eps", 1e-6));
  if (!(out.rms_norm_eps > 0.0f)) {
    bad_field("rms_norm_eps", config.at("rms_norm_eps"), "positive");
  }
  parse_rope(config, out);

  out.tie_word_embeddings = optional_bool(config, "tie_word_embeddings", false);
  out.qkv_bias = is_qwen2 || optional_bool(config, "attention_bias", false);
  out.qk_norm = is_qwen3;
  if (is_mistral) {
    out.sliding_window = optional_int(config, "sliding_window", 0);
  } else if (is_qwen2 || is_qwen3) {
    out.sliding_window = parse_qwen_sliding_window(config, out.num_layers);
  }
  if (out.sliding_window < 0) {
    bad_field("sliding_window", config.at("sliding_window"), "positive or null");
  }
  out.eos_token_ids = parse_eos_token_ids(config);
  out.torch_dtype = parse_dtype(config);
  return out;
}

}  // namespace octavo
