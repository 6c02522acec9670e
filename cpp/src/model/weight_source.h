// WeightSource: where load_weights gets each checkpoint tensor by its HF name, as host
// floats of the shape the config calls for. A safetensors directory is one source; random
// "dummy" weights (vLLM's load_format="dummy", model/dummy_weights.h) are another.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "model/model_config.h"
#include "model/safetensors.h"

namespace octavo {

class WeightSource {
 public:
  virtual ~WeightSource() = default;

  virtual bool contains(const std::string& name) const = 0;
  // The tensor `name` as floats of exactly `shape`. Throws InvalidArgument naming a missing
  // tensor or one whose stored shape differs.
  virtual HostTensor read(const std::string& name, const std::vector<int64_t>& shape) const = 0;
  // For generated weights: the fill_uniform stream (model/dummy_weights.h) that read() would
  // return for `name`, so a backend can make it in place. False for stored weights.
  virtual bool uniform_stream(const std::string& name, uint64_t& key, float& low, float& high) const {
    (void)name, (void)key, (void)low, (void)high;
    return false;
  }
};

// The tensors of a model directory's safetensors files, converted to float on read.
class SafetensorsWeightSource final : public WeightSource {
 public:
  // Throws NotFound when the directory holds no safetensors file.
  explicit SafetensorsWeightSource(const std::string& model_dir);

  bool contains(const std::string& name) const override;
  HostTensor read(const std::string& name, const std::vector<int64_t>& shape) const override;

 private:
  SafetensorsReader reader_;
};

// EngineConfig::load_format. "auto" reads safetensors too: octavo reads no other format.
enum class LoadFormat { kSafetensors, kDummy };

// Throws InvalidArgument listing the accepted names for anything but "auto", "safetensors"
// or "dummy".
LoadFormat parse_load_format(const std::string& name);

// The source a load format reads from. kSafetensors opens model_dir's files; kDummy opens
// nothing and draws weights from `seed` on `num_threads` threads (0: all cores).
std::unique_ptr<WeightSource> make_weight_source(LoadFormat format, const std::string& model_dir,
                                                 const ModelConfig& config, uint64_t seed,
                                                 int32_t num_threads);

}  // namespace octavo
