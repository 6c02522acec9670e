// Reads safetensors checkpoints, single-file or sharded (model.safetensors.index.json),
// memory-mapped: tensors are views into the mapping, copied only when converted.
// Any malformed file (bad header length, bad JSON, offsets outside the file, a shape that
// disagrees with its byte range, an unknown dtype) throws InvalidArgument naming the file.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace octavo {

struct TensorInfo {
  DType dtype = DType::kFloat32;
  std::vector<int64_t> shape;
  const void* data = nullptr;  // inside the mapping; valid while the reader lives
  size_t bytes = 0;
  std::string file;            // for error messages

  int64_t numel() const;
};

// One mapped .safetensors file.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }

 private:
  std::string path_;
  void* mapping_ = nullptr;
  size_t size_ = 0;
  std::map<std::string, TensorInfo> tensors_;
};

// All tensors of a model directory: model.safetensors, or the shards that
// model.safetensors.index.json names (or, lacking both, every *.safetensors file).
class SafetensorsReader {
 public:
  // Throws NotFound when the directory holds no safetensors file.
  explicit SafetensorsReader(const std::string& model_dir);

  bool contains(const std::string& name) const;
  // Throws InvalidArgument naming the tensor when it is missing.
  const TensorInfo& get(const std::string& name) const;
  std::vector<std::string> names() const;

 private:
  std::string model_dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const TensorInfo*> index_;
};

}  // namespace octavo
