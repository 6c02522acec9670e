// load_format="dummy": random weights of the config's shapes, with no checkpoint file.
#include "model/dummy_weights.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "model/model_config.h"
#include "model/weights.h"
#include "octavo/engine.h"
#include "octavo/errors.h"

namespace octavo {
namespace {

namespace fs = std::filesystem;

// A Qwen2-shaped config (q/k/v biases) with sizes small enough to check every buffer.
std::string qwen2_config(bool tie_word_embeddings) {
  return std::string(R"({
    "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_act": "silu",
    "vocab_size": 96, "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 64,
    "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "eos_token_id": 2,
    "tie_word_embeddings": )") +
         (tie_word_embeddings ? "true" : "false") + "}";
}

std::vector<float> floats_of(const Buffer& buffer) {
  const float* p = static_cast<const float*>(buffer.data());
  return std::vector<float>(p, p + buffer.bytes() / sizeof(float));
}

TEST(DummyWeightsTest, LoadWeightsGivesEveryBufferTheSizeTheConfigCallsFor) {
  for (bool tied : {false, true}) {
    SCOPED_TRACE(tied ? "tied" : "untied");
    const ModelConfig c = parse_model_config(qwen2_config(tied));
    auto backend = make_cpu_backend(1);
    DummyWeightSource source(7, c.tie_word_embeddings);
    const ModelWeights w = load_weights(c, source, *backend);

    // Sizes worked out by hand: hidden 32, head_dim 8, 4 q heads, 2 kv heads, inter 48.
    const size_t f = sizeof(float);
    EXPECT_EQ(w.embed.bytes(), 96u * 32 * f);
    ASSERT_EQ(w.layers.size(), 2u);
    for (const LayerWeights& l : w.layers) {
      EXPECT_EQ(l.input_norm.bytes(), 32u * f);
      EXPECT_EQ(l.qkv.bytes(), (32u + 16 + 16) * 32 * f);
      EXPECT_EQ(l.qkv_bias.bytes(), (32u + 16 + 16) * f);
      EXPECT_EQ(l.q_norm.bytes(), 0u);
      EXPECT_EQ(l.o_proj.bytes(), 32u * 32 * f);
      EXPECT_EQ(l.post_norm.bytes(), 32u * f);
      EXPECT_EQ(l.gate_up.bytes(), 2u * 48 * 32 * f);
      EXPECT_EQ(l.down.bytes(), 32u * 48 * f);
    }
    EXPECT_EQ(w.final_norm.bytes(), 32u * f);
    EXPECT_EQ(w.lm_head.bytes(), tied ? 0u : 96u * 32 * f);
    const int64_t per_layer = 32 + 64 * 32 + 64 + 32 * 32 + 32 + 2 * 48 * 32 + 32 * 48;
    EXPECT_EQ(w.bytes, static_cast<int64_t>(f) * (96 * 32 * (tied ? 1 : 2) + 2 * per_layer + 32));
    // The memory plan's count, made before loading, is what loading stores.
    EXPECT_EQ(count_weight_elements(c) * static_cast<int64_t>(f), w.bytes);

    // Every value, norms and biases included, lies in vLLM's dummy range, and none is zero
    // (an unfilled buffer would be).
    for (const Buffer* b : {&w.embed, &w.layers[1].qkv, &w.layers[0].qkv_bias, &w.layers[0].input_norm,
                            &w.final_norm}) {
      for (float v : floats_of(*b)) {
        ASSERT_GE(v, -1e-3f);
        ASSERT_LE(v, 1e-3f);
        ASSERT_NE(v, 0.0f);
      }
    }
  }
}

TEST(DummyWeightsTest, TiedModelHasNoLmHeadAndUntiedOneHas) {
  EXPECT_FALSE(DummyWeightSource(0, true).contains("lm_head.weight"));
  EXPECT_THROW(DummyWeightSource(0, true).read("lm_head.weight", {4, 4}), InvalidArgument);
  EXPECT_TRUE(DummyWeightSource(0, false).contains("lm_head.weight"));
  EXPECT_TRUE(DummyWeightSource(0, true).contains("model.embed_tokens.weight"));
}

TEST(DummyWeightsTest, ValuesAreUniformOverTheDummyRange) {
  const int64_t n = 1 << 21;
  const HostTensor t = DummyWeightSource(3, false).read("model.layers.0.mlp.down_proj.weight", {1024, 2048});
  ASSERT_EQ(t.shape, (std::vector<int64_t>{1024, 2048}));
  ASSERT_EQ(static_cast<int64_t>(t.values.size()), n);

  // U(-a, a): mean 0, variance a^2 / 3, and each of 10 equal bins holds n / 10 values.
  // Tolerances are 6 standard errors of each statistic.
  const double a = 1e-3;
  double sum = 0, sum_sq = 0;
  std::vector<int64_t> bins(10, 0);
  for (float v : t.values) {
    ASSERT_GE(v, -a);
    ASSERT_LE(v, a);
    sum += v;
    sum_sq += static_cast<double>(v) * v;
    ++bins[std::min<int64_t>(9, static_cast<int64_t>((v + a) / (2 * a) * 10))];
  }
  const double mean = sum / n;
  const double var = sum_sq / n - mean * mean;
  EXPECT_NEAR(mean, 0.0, 6 * a / std::sqrt(3.0 * n));
  EXPECT_NEAR(var, a * a / 3, 6 * a * a * std::sqrt(4.0 / 45 / n));  // Var(v^2) = 4a^4/45
  const double expected = n / 10.0;
  for (int64_t count : bins) EXPECT_NEAR(static_cast<double>(count), expected, 6 * std::sqrt(expected * 0.9));
}

TEST(DummyWeightsTest, SameSeedGivesSameValuesOnAnyThreadCount) {
  const std::vector<int64_t> shape = {1500, 1024};  // above the parallel threshold
  const std::string name = "model.embed_tokens.weight";
  const HostTensor one = DummyWeightSource(11, false, 1).read(name, shape);
  const HostTensor two = DummyWeightSource(11, false, 2).read(name, shape);
  const HostTensor three = DummyWeightSource(11, false, 3).read(name, shape);
  EXPECT_EQ(one.values, two.values);
  EXPECT_EQ(one.values, three.values);
}

// Fraction of positions where two equally long arrays differ.
double fraction_different(const std::vector<float>& x, const std::vector<float>& y) {
  int64_t differ = 0;
  for (size_t i = 0; i < x.size(); ++i) differ += x[i] != y[i];
  return static_cast<double>(differ) / static_cast<double>(x.size());
}

TEST(DummyWeightsTest, SeedsAndTensorNamesEachGiveTheirOwnValues) {
  const std::vector<int64_t> shape = {64, 64};
  const HostTensor base = DummyWeightSource(1, false).read("model.layers.0.self_attn.q_proj.weight", shape);
  const HostTensor other_seed = DummyWeightSource(2, false).read("model.layers.0.self_attn.q_proj.weight", shape);
  const HostTensor other_name = DummyWeightSource(1, false).read("model.layers.1.self_attn.q_proj.weight", shape);
  // Independent draws over 2^24 levels agree on a position with probability about 2^-24.
  EXPECT_GT(fraction_different(base.values, other_seed.values), 0.99);
  EXPECT_GT(fraction_different(base.values, other_name.values), 0.99);
  // Within a tensor, the values do not repeat a short pattern.
  std::vector<float> sorted = base.values;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_GT(std::unique(sorted.begin(), sorted.end()) - sorted.begin(), static_cast<int64_t>(sorted.size()) - 10);
}

TEST(DummyWeightsTest, FillUniformHonoursItsBounds) {
  std::vector<float> out(10000);
  fill_uniform(42, 2.0f, 3.0f, out.data(), static_cast<int64_t>(out.size()));
  EXPECT_GE(*std::min_element(out.begin(), out.end()), 2.0f);
  EXPECT_LE(*std::max_element(out.begin(), out.end()), 3.0f);
  EXPECT_LT(*std::min_element(out.begin(), out.end()), 2.01f);
  EXPECT_GT(*std::max_element(out.begin(), out.end()), 2.99f);
}

TEST(LoadFormatTest, AcceptsAutoSafetensorsAndDummyAndNamesThemOtherwise) {
  EXPECT_EQ(parse_load_format("auto"), LoadFormat::kSafetensors);
  EXPECT_EQ(parse_load_format("safetensors"), LoadFormat::kSafetensors);
  EXPECT_EQ(parse_load_format("dummy"), LoadFormat::kDummy);
  try {
    parse_load_format("pt");
    FAIL() << "pt was accepted";
  } catch (const InvalidArgument& e) {
    const std::string message = e.what();
    for (const char* name : {"'auto'", "'safetensors'", "'dummy'", "'pt'"}) {
      EXPECT_NE(message.find(name), std::string::npos) << message;
    }
  }
}

// Runs one request of `max_tokens` tokens to the end and returns its tokens.
std::vector<int32_t> generate(const EngineConfig& config, int32_t max_tokens) {
  Engine engine(config);
  SamplingParams params;
  params.temperature = 0.0f;
  params.max_tokens = max_tokens;
  params.ignore_eos = true;
  engine.add_request(1, {5, 6, 7, 8}, params);
  std::vector<int32_t> tokens;
  while (engine.has_unfinished()) {
    for (const RequestOutput& out : engine.step()) tokens = out.token_ids;
  }
  return tokens;
}

EngineConfig dummy_engine_config(uint64_t seed) {
  EngineConfig config;
  config.config_json = qwen2_config(false);
  config.load_format = "dummy";
  config.seed = seed;
  config.max_num_seqs = 4;
  config.kv_cache_memory_bytes = 1 << 20;
  config.num_threads = 1;
  return config;
}

TEST(DummyEngineTest, RunsFromConfigJsonAloneWithNoModelDirectory) {
  EngineConfig config = dummy_engine_config(0);
  config.model_dir = "";
  EXPECT_EQ(generate(config, 6).size(), 6u);
  config.model_dir = "/nonexistent/octavo/model";
  EXPECT_EQ(generate(config, 3).size(), 3u);
}

TEST(DummyEngineTest, OpensNoSafetensorsFile) {
  char pattern[] = "/tmp/octavo_dummy_XXXXXX";
  ASSERT_NE(mkdtemp(pattern), nullptr);
  const fs::path dir = pattern;
  std::ofstream(dir / "config.json") << qwen2_config(false);
  std::ofstream(dir / "model.safetensors") << "not a safetensors file";
  EngineConfig config = dummy_engine_config(0);
  config.config_json.clear();
  config.model_dir = dir.string();
  EXPECT_EQ(generate(config, 4).size(), 4u);
  // The same directory with auto does read the file, and refuses it.
  config.load_format = "auto";
  EXPECT_THROW(Engine{config}, InvalidArgument);
  fs::remove_all(dir);
}

TEST(DummyEngineTest, RefusesAnUnknownLoadFormat) {
  EngineConfig config = dummy_engine_config(0);
  config.load_format = "gguf";
  EXPECT_THROW(Engine{config}, InvalidArgument);
}

TEST(DummyEngineTest, EngineSeedFixesTheWeights) {
  // 20 greedy tokens over a 96-token vocabulary: two different weight draws agree on all
  // of them only by a coincidence far below the test's tolerance for flakiness.
  EXPECT_EQ(generate(dummy_engine_config(5), 20), generate(dummy_engine_config(5), 20));
  EXPECT_NE(generate(dummy_engine_config(5), 20), generate(dummy_engine_config(6), 20));
}

}  // namespace
}  // namespace octavo
