#include "model/weight_source.h"

#include "model/dummy_weights.h"
#include "octavo/errors.h"

namespace octavo {

SafetensorsWeightSource::SafetensorsWeightSource(const std::string& model_dir) : reader_(model_dir) {}

bool SafetensorsWeightSource::contains(const std::string& name) const { return reader_.contains(name); }

HostTensor SafetensorsWeightSource::read(const std::string& name, const std::vector<int64_t>& shape) const {
  const TensorInfo& info = reader_.get(name);
  if (info.shape != shape) {
    throw InvalidArgument("tensor " + name + " has shape " + shape_string(info.shape) +
                          ", the config calls for " + shape_string(shape));
  }
  HostTensor host;
  host.shape = shape;
  host.values.resize(static_cast<size_t>(info.numel()));
  convert_to_float(info.dtype, info.data, host.values.data(), host.values.size());
  return host;
}

LoadFormat parse_load_format(const std::string& name) {
  if (name == "auto" || name == "safetensors") return LoadFormat::kSafetensors;
  if (name == "dummy") return LoadFormat::kDummy;
  throw InvalidArgument("load_format must be 'auto', 'safetensors' or 'dummy', got '" + name + "'");
}

std::unique_ptr<WeightSource> make_weight_source(LoadFormat format, const std::string& model_dir,
                                                 const ModelConfig& config, uint64_t seed,
                                                 int32_t num_threads) {
  if (format == LoadFormat::kDummy) {
    return std::make_unique<DummyWeightSource>(seed, config.tie_word_embeddings, num_threads);
  }
  return std::make_unique<SafetensorsWeightSource>(model_dir);
}

}  // namespace octavo
