#include "model/model_config.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "octavo/errors.h"

namespace octavo {
namespace {

using nlohmann::json;

// Written by transformers 5.23: LlamaConfig(vocab_size=256, hidden_size=64,
// intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
// with architectures set, then to_json_string().
const char* kLlamaV5 = R"({
  "architectures": ["LlamaForCausalLM"],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "bos_token_id": 1,
  "eos_token_id": 2,
  "head_dim": 16,
  "hidden_act": "silu",
  "hidden_size": 64,
  "initializer_range": 0.02,
  "intermediate_size": 128,
  "max_position_embeddings": 2048,
  "mlp_bias": false,
  "model_type": "llama",
  "num_attention_heads": 4,
  "num_hidden_layers": 2,
  "num_key_value_heads": 2,
  "pad_token_id": null,
  "pretraining_tp": 1,
  "rms_norm_eps": 1e-06,
  "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"},
  "tie_word_embeddings": false,
  "transformers_version": "5.23.0",
  "use_cache": true,
  "vocab_size": 256
})";

// transformers 5.23 Qwen2Config with the same sizes: no head_dim, no attention_bias,
// sliding_window null, layer_types written out.
const char* kQwen2V5 = R"({
  "architectures": ["Qwen2ForCausalLM"],
  "attention_dropout": 0.0,
  "bos_token_id": null,
  "eos_token_id": null,
  "hidden_act": "silu",
  "hidden_size": 64,
  "initializer_range": 0.02,
  "intermediate_size": 128,
  "layer_types": ["full_attention", "full_attention"],
  "max_position_embeddings": 32768,
  "max_window_layers": 28,
  "model_type": "qwen2",
  "num_attention_heads": 4,
  "num_hidden_layers": 2,
  "num_key_value_heads": 2,
  "pad_token_id": null,
  "rms_norm_eps": 1e-06,
  "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"},
  "sliding_window": null,
  "tie_word_embeddings": false,
  "transformers_version": "5.23.0",
  "use_cache": true,
  "use_sliding_window": false,
  "vocab_size": 256
})";

// transformers 5.23 Qwen3Config: head_dim defaults to 128, not hidden_size / heads.
const char* kQwen3V5 = R"({
  "architectures": ["Qwen3ForCausalLM"],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "bos_token_id": null,
  "dtype": "bfloat16",
  "eos_token_id": null,
  "head_dim": 128,
  "hidden_act": "silu",
  "hidden_size": 64,
  "initializer_range": 0.02,
  "intermediate_size": 128,
  "layer_types": ["full_attention", "full_attention"],
  "max_position_embeddings": 32768,
  "max_window_layers": 28,
  "model_type": "qwen3",
  "num_attention_heads": 4,
  "num_hidden_layers": 2,
  "num_key_value_heads": 2,
  "pad_token_id": null,
  "rms_norm_eps": 1e-06,
  "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"},
  "sliding_window": null,
  "tie_word_embeddings": false,
  "transformers_version": "5.23.0",
  "use_cache": true,
  "use_sliding_window": false,
  "vocab_size": 256
})";

// transformers 5.23 MistralConfig: sliding_window 4096 by default.
const char* kMistralV5 = R"({
  "architectures": ["MistralForCausalLM"],
  "attention_dropout": 0.0,
  "bos_token_id": 1,
  "eos_token_id": 2,
  "head_dim": 16,
  "hidden_act": "silu",
  "hidden_size": 64,
  "initializer_range": 0.02,
  "intermediate_size": 128,
  "max_position_embeddings": 131072,
  "model_type": "mistral",
  "num_attention_heads": 4,
  "num_hidden_layers": 2,
  "num_key_value_heads": 2,
  "pad_token_id": null,
  "rms_norm_eps": 1e-06,
  "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"},
  "sliding_window": 4096,
  "tie_word_embeddings": false,
  "transformers_version": "5.23.0",
  "use_cache": true,
  "vocab_size": 256
})";

// transformers 5.23 LlamaConfig(dtype=bfloat16, tie_word_embeddings=True, eos list,
// rope_parameters llama3, max_position_embeddings=131072): Llama 3.2 as transformers 5
// writes it.
const char* kLlama32V5 = R"({
  "attention_bias": false,
  "attention_dropout": 0.0,
  "architectures": ["LlamaForCausalLM"],
  "bos_token_id": 1,
  "dtype": "bfloat16",
  "eos_token_id": [128001, 128008, 128009],
  "head_dim": 128,
  "hidden_act": "silu",
  "hidden_size": 4096,
  "initializer_range": 0.02,
  "intermediate_size": 11008,
  "max_position_embeddings": 131072,
  "mlp_bias": false,
  "model_type": "llama",
  "num_attention_heads": 32,
  "num_hidden_layers": 32,
  "num_key_value_heads": 32,
  "pad_token_id": null,
  "pretraining_tp": 1,
  "rms_norm_eps": 1e-06,
  "rope_parameters": {
    "factor": 8.0,
    "high_freq_factor": 4.0,
    "low_freq_factor": 1.0,
    "original_max_position_embeddings": 8192,
    "rope_theta": 500000.0,
    "rope_type": "llama3"
  },
  "tie_word_embeddings": true,
  "transformers_version": "5.23.0",
  "use_cache": true,
  "vocab_size": 32000
})";

// Llama 3.1 8B Instruct as transformers 4.43 wrote it: rope_theta at the top level,
// rope_scaling llama3, torch_dtype.
const char* kLlama31V4 = R"({
  "architectures": ["LlamaForCausalLM"],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "bos_token_id": 128000,
  "eos_token_id": [128001, 128008, 128009],
  "hidden_act": "silu",
  "hidden_size": 4096,
  "initializer_range": 0.02,
  "intermediate_size": 14336,
  "max_position_embeddings": 131072,
  "mlp_bias": false,
  "model_type": "llama",
  "num_attention_heads": 32,
  "num_hidden_layers": 32,
  "num_key_value_heads": 8,
  "pretraining_tp": 1,
  "rms_norm_eps": 1e-05,
  "rope_scaling": {
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192,
    "rope_type": "llama3"
  },
  "rope_theta": 500000.0,
  "tie_word_embeddings": false,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.43.0.dev0",
  "use_cache": true,
  "vocab_size": 128256
})";

// Qwen2.5 0.5B Instruct as transformers 4 wrote it: a sliding_window value that must be
// ignored because use_sliding_window is false.
const char* kQwen25V4 = R"({
  "architectures": ["Qwen2ForCausalLM"],
  "attention_dropout": 0.0,
  "bos_token_id": 151643,
  "eos_token_id": 151645,
  "hidden_act": "silu",
  "hidden_size": 896,
  "initializer_range": 0.02,
  "intermediate_size": 4864,
  "max_position_embeddings": 32768,
  "max_window_layers": 21,
  "model_type": "qwen2",
  "num_attention_heads": 14,
  "num_hidden_layers": 24,
  "num_key_value_heads": 2,
  "rms_norm_eps": 1e-06,
  "rope_theta": 1000000.0,
  "sliding_window": 32768,
  "tie_word_embeddings": true,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.43.1",
  "use_cache": true,
  "use_sliding_window": false,
  "vocab_size": 151936
})";

// Mistral 7B Instruct v0.3 as transformers 4 wrote it: head_dim and sliding_window null.
const char* kMistralV4 = R"({
  "architectures": ["MistralForCausalLM"],
  "attention_dropout": 0.0,
  "bos_token_id": 1,
  "eos_token_id": 2,
  "head_dim": null,
  "hidden_act": "silu",
  "hidden_size": 4096,
  "initializer_range": 0.02,
  "intermediate_size": 14336,
  "max_position_embeddings": 32768,
  "model_type": "mistral",
  "num_attention_heads": 32,
  "num_hidden_layers": 32,
  "num_key_value_heads": 8,
  "rms_norm_eps": 1e-05,
  "rope_theta": 1000000.0,
  "sliding_window": null,
  "tie_word_embeddings": false,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.42.0.dev0",
  "use_cache": true,
  "vocab_size": 32768
})";

// base with the keys of patch set (a null value is kept as null).
std::string with(const char* base, const json& patch) {
  json config = json::parse(base);
  config.update(patch);
  return config.dump();
}

std::string without(const char* base, const std::string& key) {
  json config = json::parse(base);
  config.erase(key);
  return config.dump();
}

template <typename E>
std::string error_of(const std::string& text) {
  try {
    parse_model_config(text);
  } catch (const E& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw the wrong exception type: " << e.what();
    return "";
  }
  ADD_FAILURE() << "parse_model_config did not throw";
  return "";
}

TEST(ModelConfig, ParsesTransformers5Llama) {
  const ModelConfig c = parse_model_config(kLlamaV5);
  EXPECT_EQ(c.architecture, "LlamaForCausalLM");
  EXPECT_EQ(c.model_type, "llama");
  EXPECT_EQ(c.vocab_size, 256);
  EXPECT_EQ(c.hidden_size, 64);
  EXPECT_EQ(c.intermediate_size, 128);
  EXPECT_EQ(c.num_layers, 2);
  EXPECT_EQ(c.num_heads, 4);
  EXPECT_EQ(c.num_kv_heads, 2);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.max_position_embeddings, 2048);
  EXPECT_FLOAT_EQ(c.rms_norm_eps, 1e-6f);
  EXPECT_DOUBLE_EQ(c.rope_theta, 10000.0);
  EXPECT_EQ(c.rope_scaling.type, "default");
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_FALSE(c.qk_norm);
  EXPECT_EQ(c.sliding_window, 0);
  EXPECT_EQ(c.eos_token_ids, std::vector<int32_t>{2});
  EXPECT_EQ(c.torch_dtype, "");
}

TEST(ModelConfig, Qwen2HasQkvBiasAndDerivedHeadDim) {
  const ModelConfig c = parse_model_config(kQwen2V5);
  EXPECT_EQ(c.architecture, "Qwen2ForCausalLM");
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_FALSE(c.qk_norm);
  EXPECT_EQ(c.sliding_window, 0);
  EXPECT_TRUE(c.eos_token_ids.empty());
  EXPECT_EQ(c.max_position_embeddings, 32768);
}

TEST(ModelConfig, Qwen3HasQkNormAndNoBias) {
  const ModelConfig c = parse_model_config(kQwen3V5);
  EXPECT_EQ(c.architecture, "Qwen3ForCausalLM");
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_TRUE(c.qk_norm);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_EQ(c.torch_dtype, "bfloat16");
  EXPECT_TRUE(parse_model_config(with(kQwen3V5, {{"attention_bias", true}})).qkv_bias);
}

TEST(ModelConfig, Qwen3HeadDimDefaultsTo128LikeTransformers) {
  EXPECT_EQ(parse_model_config(without(kQwen3V5, "head_dim")).head_dim, 128);
}

TEST(ModelConfig, MistralUsesItsSlidingWindow) {
  const ModelConfig c = parse_model_config(kMistralV5);
  EXPECT_EQ(c.architecture, "MistralForCausalLM");
  EXPECT_EQ(c.sliding_window, 4096);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_FALSE(c.qk_norm);
}

TEST(ModelConfig, MistralV4NullHeadDimAndNullSlidingWindow) {
  const ModelConfig c = parse_model_config(kMistralV4);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.sliding_window, 0);
  EXPECT_EQ(c.num_kv_heads, 8);
  EXPECT_DOUBLE_EQ(c.rope_theta, 1e6);
  EXPECT_FLOAT_EQ(c.rms_norm_eps, 1e-5f);
  EXPECT_EQ(c.vocab_size, 32768);
}

TEST(ModelConfig, Llama31Transformers4RopeScaling) {
  const ModelConfig c = parse_model_config(kLlama31V4);
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
  EXPECT_EQ(c.rope_scaling.type, "llama3");
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 8.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling.low_freq_factor, 1.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling.high_freq_factor, 4.0);
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 8192);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int32_t>{128001, 128008, 128009}));
  EXPECT_EQ(c.torch_dtype, "bfloat16");
  EXPECT_EQ(c.num_kv_heads, 8);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.vocab_size, 128256);
  EXPECT_EQ(c.max_position_embeddings, 131072);
  EXPECT_FLOAT_EQ(c.rms_norm_eps, 1e-5f);
}

TEST(ModelConfig, Llama3Transformers5RopeParameters) {
  const ModelConfig c = parse_model_config(kLlama32V5);
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
  EXPECT_EQ(c.rope_scaling.type, "llama3");
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 8.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling.low_freq_factor, 1.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling.high_freq_factor, 4.0);
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 8192);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.torch_dtype, "bfloat16");
  EXPECT_EQ(c.eos_token_ids, (std::vector<int32_t>{128001, 128008, 128009}));
}

TEST(ModelConfig, RopeLlama3FieldsAreRequired) {
  for (const char* key :
       {"factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"}) {
    json config = json::parse(kLlama31V4);
    config["rope_scaling"].erase(key);
    EXPECT_NE(error_of<InvalidArgument>(config.dump()).find(key), std::string::npos) << key;
  }
}

TEST(ModelConfig, RopeLlama3RejectsHighFreqNotAboveLowFreq) {
  json config = json::parse(kLlama32V5);
  config["rope_parameters"]["high_freq_factor"] = 1.0;
  EXPECT_NE(error_of<InvalidArgument>(config.dump()).find("high_freq_factor"), std::string::npos);
}

TEST(ModelConfig, Transformers4QwenRopeThetaAndIgnoredSlidingWindow) {
  const ModelConfig c = parse_model_config(kQwen25V4);
  EXPECT_DOUBLE_EQ(c.rope_theta, 1e6);
  EXPECT_EQ(c.rope_scaling.type, "default");
  EXPECT_EQ(c.sliding_window, 0);
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.eos_token_ids, std::vector<int32_t>{151645});
}

TEST(ModelConfig, RopeThetaDefaultsTo10000) {
  EXPECT_DOUBLE_EQ(parse_model_config(without(kQwen25V4, "rope_theta")).rope_theta, 10000.0);
  EXPECT_DOUBLE_EQ(parse_model_config(without(kLlamaV5, "rope_parameters")).rope_theta, 10000.0);
}

TEST(ModelConfig, NullRopeScalingIsDefault) {
  const ModelConfig c = parse_model_config(with(kQwen25V4, {{"rope_scaling", nullptr}}));
  EXPECT_EQ(c.rope_scaling.type, "default");
  EXPECT_DOUBLE_EQ(c.rope_theta, 1e6);
}

TEST(ModelConfig, RopeScalingTypeKeyIsAccepted) {
  json config = json::parse(kLlama31V4);
  config["rope_scaling"].erase("rope_type");
  config["rope_scaling"]["type"] = "llama3";
  EXPECT_EQ(parse_model_config(config.dump()).rope_scaling.type, "llama3");
}

// What transformers 5.23 LlamaConfig.from_dict makes of a config holding both styles:
// a non-null rope_scaling wins, and a theta inside the dict beats the top-level one.
TEST(ModelConfig, RopeStylePrecedenceMatchesTransformers) {
  json both = json::parse(kLlama31V4);
  both["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 10000.0}};
  ModelConfig c = parse_model_config(both.dump());
  EXPECT_EQ(c.rope_scaling.type, "llama3");
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);

  both["rope_scaling"] = nullptr;
  both["rope_parameters"]["rope_theta"] = 20000.0;
  c = parse_model_config(both.dump());
  EXPECT_EQ(c.rope_scaling.type, "default");
  EXPECT_DOUBLE_EQ(c.rope_theta, 20000.0);
}

TEST(ModelConfig, UnsupportedRopeTypesAreNamed) {
  for (const char* type : {"linear", "dynamic", "yarn", "longrope"}) {
    const std::string v4 = with(kQwen25V4, {{"rope_scaling", {{"type", type}, {"factor", 2.0}}}});
    const std::string v5 = with(
        kLlamaV5,
        {{"rope_parameters", {{"rope_type", type}, {"rope_theta", 10000.0}, {"factor", 2.0}}}});
    for (const std::string& text : {v4, v5}) {
      const std::string message = error_of<Unsupported>(text);
      EXPECT_NE(message.find(type), std::string::npos) << message;
      EXPECT_NE(message.find("default, llama3"), std::string::npos) << message;
    }
  }
}

TEST(ModelConfig, PartialRotaryFactorOtherThanOneIsUnsupported) {
  EXPECT_NE(error_of<Unsupported>(with(kLlamaV5, {{"partial_rotary_factor", 0.5}}))
                .find("partial_rotary_factor"),
            std::string::npos);
  json config = json::parse(kLlamaV5);
  config["rope_parameters"]["partial_rotary_factor"] = 0.25;
  EXPECT_NE(error_of<Unsupported>(config.dump()).find("partial_rotary_factor"), std::string::npos);
  EXPECT_EQ(parse_model_config(with(kLlamaV5, {{"partial_rotary_factor", 1.0}})).head_dim, 16);
}

TEST(ModelConfig, MalformedJsonIsInvalidArgument) {
  const std::string message =
      error_of<InvalidArgument>("{\"architectures\": [\"LlamaForCausalLM\"");
  EXPECT_EQ(message.rfind("config.json is not valid JSON: ", 0), 0u) << message;
  EXPECT_NE(error_of<InvalidArgument>("[1, 2]").find("object"), std::string::npos);
}

TEST(ModelConfig, MissingArchitecturesIsInvalidArgument) {
  EXPECT_NE(error_of<InvalidArgument>(without(kLlamaV5, "architectures")).find("architectures"),
            std::string::npos);
  EXPECT_NE(error_of<InvalidArgument>(with(kLlamaV5, {{"architectures", json::array()}}))
                .find("architectures"),
            std::string::npos);
}

TEST(ModelConfig, UnsupportedArchitectureListsSupportedOnes) {
  const std::string message =
      error_of<Unsupported>(with(kLlamaV5, {{"architectures", {"GemmaForCausalLM"}}}));
  EXPECT_NE(message.find("Model architecture GemmaForCausalLM is not supported by octavo"),
            std::string::npos)
      << message;
  EXPECT_NE(message.find("supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, "
                         "Qwen3ForCausalLM"),
            std::string::npos)
      << message;
}

TEST(ModelConfig, SupportedArchitecturesInOrder) {
  EXPECT_EQ(supported_architectures(),
            (std::vector<std::string>{"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM",
                                      "Qwen3ForCausalLM"}));
}

TEST(ModelConfig, OnlySiluActivation) {
  const std::string message = error_of<Unsupported>(with(kLlamaV5, {{"hidden_act", "gelu"}}));
  EXPECT_NE(message.find("gelu"), std::string::npos) << message;
}

TEST(ModelConfig, KvHeadsDefaultToAttentionHeads) {
  EXPECT_EQ(parse_model_config(without(kLlamaV5, "num_key_value_heads")).num_kv_heads, 4);
  EXPECT_EQ(parse_model_config(with(kLlamaV5, {{"num_key_value_heads", nullptr}})).num_kv_heads,
            4);
}

TEST(ModelConfig, HeadDimDefaultsToHiddenOverHeads) {
  const std::string null_head_dim = with(kLlamaV5, {{"head_dim", nullptr}, {"hidden_size", 96}});
  EXPECT_EQ(parse_model_config(null_head_dim).head_dim, 24);
  EXPECT_EQ(parse_model_config(without(kLlamaV5, "head_dim")).head_dim, 16);
}

TEST(ModelConfig, HeadsMustBeAMultipleOfKvHeads) {
  const std::string message = error_of<InvalidArgument>(
      with(kLlamaV5, {{"num_attention_heads", 6}, {"num_key_value_heads", 4}}));
  EXPECT_NE(message.find("num_attention_heads (6)"), std::string::npos) << message;
  EXPECT_NE(message.find("num_key_value_heads (4)"), std::string::npos) << message;
}

TEST(ModelConfig, HeadDimMustBeEven) {
  const std::string message = error_of<InvalidArgument>(with(kLlamaV5, {{"head_dim", 15}}));
  EXPECT_NE(message.find("head_dim"), std::string::npos) << message;
  EXPECT_NE(message.find("15"), std::string::npos) << message;
}

TEST(ModelConfig, SizesMustBePositive) {
  for (const char* key : {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                          "num_attention_heads", "num_key_value_heads",
                          "max_position_embeddings", "head_dim"}) {
    for (int value : {0, -4}) {
      const std::string message = error_of<InvalidArgument>(with(kLlamaV5, {{key, value}}));
      EXPECT_NE(message.find(key), std::string::npos) << message;
      EXPECT_NE(message.find(std::to_string(value)), std::string::npos) << message;
    }
  }
}

TEST(ModelConfig, RequiredSizesMustBePresent) {
  for (const char* key : {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                          "num_attention_heads", "max_position_embeddings"}) {
    EXPECT_NE(error_of<InvalidArgument>(without(kLlamaV5, key)).find(key), std::string::npos)
        << key;
  }
}

TEST(ModelConfig, WrongTypesAreInvalidArgument) {
  EXPECT_NE(error_of<InvalidArgument>(with(kLlamaV5, {{"hidden_size", "64"}})).find("hidden_size"),
            std::string::npos);
  EXPECT_NE(error_of<InvalidArgument>(with(kLlamaV5, {{"hidden_size", 64.5}})).find("hidden_size"),
            std::string::npos);
  EXPECT_NE(error_of<InvalidArgument>(with(kLlamaV5, {{"tie_word_embeddings", "yes"}}))
                .find("tie_word_embeddings"),
            std::string::npos);
  EXPECT_NE(
      error_of<InvalidArgument>(with(kLlamaV5, {{"vocab_size", 1LL << 40}})).find("vocab_size"),
      std::string::npos);
}

TEST(ModelConfig, EosTokenIdAcceptsIntListOrNull) {
  EXPECT_EQ(parse_model_config(with(kLlamaV5, {{"eos_token_id", 7}})).eos_token_ids,
            std::vector<int32_t>{7});
  EXPECT_EQ(parse_model_config(with(kLlamaV5, {{"eos_token_id", {3, 9}}})).eos_token_ids,
            (std::vector<int32_t>{3, 9}));
  EXPECT_TRUE(
      parse_model_config(with(kLlamaV5, {{"eos_token_id", nullptr}})).eos_token_ids.empty());
  EXPECT_TRUE(parse_model_config(without(kLlamaV5, "eos_token_id")).eos_token_ids.empty());
}

TEST(ModelConfig, DtypeFromEitherKey) {
  EXPECT_EQ(parse_model_config(with(kLlamaV5, {{"dtype", "float16"}})).torch_dtype, "float16");
  EXPECT_EQ(parse_model_config(with(kLlamaV5, {{"torch_dtype", "float32"}})).torch_dtype,
            "float32");
  EXPECT_NE(error_of<Unsupported>(with(kLlamaV5, {{"dtype", "float64"}})).find("float64"),
            std::string::npos);
}

TEST(ModelConfig, AttentionBiasForLlamaAndMistral) {
  EXPECT_TRUE(parse_model_config(with(kLlamaV5, {{"attention_bias", true}})).qkv_bias);
  EXPECT_TRUE(parse_model_config(with(kMistralV5, {{"attention_bias", true}})).qkv_bias);
  EXPECT_FALSE(parse_model_config(without(kLlamaV5, "attention_bias")).qkv_bias);
}

TEST(ModelConfig, LlamaMlpBiasIsUnsupported) {
  EXPECT_NE(error_of<Unsupported>(with(kLlamaV5, {{"mlp_bias", true}})).find("mlp_bias"),
            std::string::npos);
}

TEST(ModelConfig, LlamaIgnoresSlidingWindow) {
  EXPECT_EQ(parse_model_config(with(kLlamaV5, {{"sliding_window", 512}})).sliding_window, 0);
}

TEST(ModelConfig, QwenSlidingWindowOnlyWhenEnabledOnEveryLayer) {
  // Enabled, with every layer sliding (max_window_layers 0): one window for the model.
  const std::string all_sliding =
      with(kQwen25V4, {{"use_sliding_window", true}, {"sliding_window", 4096},
                       {"max_window_layers", 0}});
  EXPECT_EQ(parse_model_config(all_sliding).sliding_window, 4096);
  // Enabled but max_window_layers covers every layer: none slides.
  EXPECT_EQ(parse_model_config(with(kQwen25V4, {{"use_sliding_window", true},
                                                {"max_window_layers", 24}}))
                .sliding_window,
            0);
  // transformers 5 writes layer_types; a mix cannot run with one window.
  const std::string mixed = with(
      kQwen3V5, {{"use_sliding_window", true},
                 {"sliding_window", 4096},
                 {"layer_types", {"full_attention", "sliding_attention"}}});
  EXPECT_NE(error_of<Unsupported>(mixed).find("sliding window"), std::string::npos);
  const std::string both = with(kQwen3V5, {{"use_sliding_window", true},
                                           {"sliding_window", 1024},
                                           {"layer_types", {"sliding_attention",
                                                            "sliding_attention"}}});
  EXPECT_EQ(parse_model_config(both).sliding_window, 1024);
  // Disabled: layer_types and sliding_window do not matter.
  EXPECT_EQ(parse_model_config(with(kQwen3V5, {{"sliding_window", 1024},
                                               {"layer_types", {"sliding_attention",
                                                                "sliding_attention"}}}))
                .sliding_window,
            0);
}

}  // namespace
}  // namespace octavo
