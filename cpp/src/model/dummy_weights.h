// Random weights for load_format="dummy" (as vLLM's): every tensor a config calls for, drawn
// uniform in [-1e-3, 1e-3] with no checkpoint file, for benchmarks and tests of start-up,
// memory and speed on models whose weights are not at hand.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "model/weight_source.h"

namespace octavo {

// vLLM's dummy range (model_executor/model_loader/weight_utils.py initialize_dummy_weights:
// low=-1e-3, high=1e-3).
constexpr float kDummyWeightLow = -1e-3f;
constexpr float kDummyWeightHigh = 1e-3f;

// out[i] = uniform in [low, high], a pure function of (key, i): the splitmix64 stream seeded
// with `key`, element i taken from the i-th output. Threads split [0, n) with no shared
// state, so the values do not depend on the thread count. num_threads 0: all cores.
void fill_uniform(uint64_t key, float low, float high, float* out, int64_t n, int32_t num_threads = 0);

// The key of tensor `name` under engine seed `seed`: a stable hash of both (FNV-1a of the
// name, not std::hash, so the weights are the same with every standard library).
uint64_t dummy_tensor_key(uint64_t seed, const std::string& name);

// Every tensor, norm weights included, is uniform in [kDummyWeightLow, kDummyWeightHigh]:
// vLLM fills every floating-point parameter alike, and so the compute (not the values) is
// what a dummy run measures. Tied models have no lm_head.weight, as their checkpoints
// usually do, so the head is the embedding there too.
class DummyWeightSource final : public WeightSource {
 public:
  DummyWeightSource(uint64_t seed, bool tie_word_embeddings, int32_t num_threads = 0);

  bool contains(const std::string& name) const override;
  HostTensor read(const std::string& name, const std::vector<int64_t>& shape) const override;
  bool uniform_stream(const std::string& name, uint64_t& key, float& low, float& high) const override;

 private:
  uint64_t seed_;
  bool tie_word_embeddings_;
  int32_t num_threads_;
};

}  // namespace octavo
