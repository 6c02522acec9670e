#include "model/dummy_weights.h"

#include <omp.h>

#include "core/splitmix64.h"
#include "octavo/errors.h"

namespace octavo {

namespace {


// FNV-1a, 64-bit (offset basis and prime from the published definition).
uint64_t fnv1a64(const std::string& text) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (unsigned char c : text) {
    h ^= c;
    h *= 0x100000001B3ull;
  }
  return h;
}

}  // namespace

void fill_uniform(uint64_t key, float low, float high, float* out, int64_t n, int32_t num_threads) {
  if (n <= 0) return;
  const int threads = num_threads > 0 ? num_threads : omp_get_num_procs();
  const float span = high - low;
  // The top 24 bits give every float of [0, 1) at spacing 2^-24, as float's mantissa allows.
  const float scale = span * 0x1.0p-24f;
  // Below ~1M elements (a norm weight, a bias) threads cost more than they save.
#pragma omp parallel for schedule(static) num_threads(threads) if (n >= (int64_t{1} << 20))
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t bits = splitmix64_mix(key + static_cast<uint64_t>(i + 1) * kSplitMix64Increment);
    out[i] = low + static_cast<float>(bits >> 40) * scale;
  }
}

uint64_t dummy_tensor_key(uint64_t seed, const std::string& name) {
  return splitmix64_mix(splitmix64(seed) ^ fnv1a64(name));
}

DummyWeightSource::DummyWeightSource(uint64_t seed, bool tie_word_embeddings, int32_t num_threads)
    : seed_(seed), tie_word_embeddings_(tie_word_embeddings), num_threads_(num_threads) {
  if (num_threads < 0) throw InvalidArgument("num_threads must be >= 0, got " + std::to_string(num_threads));
}

bool DummyWeightSource::contains(const std::string& name) const {
  return !(tie_word_embeddings_ && name == "lm_head.weight");
}

HostTensor DummyWeightSource::read(const std::string& name, const std::vector<int64_t>& shape) const {
  if (!contains(name)) throw InvalidArgument("tensor " + name + " not found: the model ties it to the embedding");
  HostTensor host;
  host.shape = shape;
  const int64_t n = host.numel();
  if (n < 0) throw InvalidArgument("tensor " + name + " has a negative dimension: " + shape_string(shape));
  host.values.resize(static_cast<size_t>(n));
  fill_uniform(dummy_tensor_key(seed_, name), kDummyWeightLow, kDummyWeightHigh, host.values.data(), n,
               num_threads_);
  return host;
}

bool DummyWeightSource::uniform_stream(const std::string& name, uint64_t& key, float& low, float& high) const {
  if (!contains(name)) return false;
  key = dummy_tensor_key(seed_, name);
  low = kDummyWeightLow;
  high = kDummyWeightHigh;
  return true;
}

}  // namespace octavo
