#include "model/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>

#include "core/tensor.h"
#include "octavo/errors.h"

namespace octavo {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr size_t kHeaderLengthBytes = 8;
constexpr const char* kIndexFileName = "model.safetensors.index.json";
constexpr const char* kSingleFileName = "model.safetensors";

std::optional<DType> dtype_from_safetensors(const std::string& name) {
  if (name == "F32") return DType::kFloat32;
  if (name == "F16") return DType::kFloat16;
  if (name == "BF16") return DType::kBFloat16;
  if (name == "I32") return DType::kInt32;
  if (name == "I64") return DType::kInt64;
  return std::nullopt;
}

std::string errno_text(int err) { return std::strerror(err); }

// Closes a descriptor on every path out of the constructor; the mapping outlives it.
class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) : fd_(fd) {}
  ~FileDescriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

uint64_t read_le_u64(const uint8_t* bytes) {
  uint64_t value = 0;
  for (size_t i = 0; i < 8; ++i) value |= static_cast<uint64_t>(bytes[i]) << (8 * i);
  return value;
}

uint64_t as_unsigned(const json& value, const std::string& where, const char* what) {
  if (!value.is_number_unsigned()) {
    throw InvalidArgument(where + ": " + what + " must be non-negative integers, got " +
                          value.dump());
  }
  return value.get<uint64_t>();
}

const json& require_key(const json& entry, const char* key, const std::string& where) {
  auto it = entry.find(key);
  if (it == entry.end()) throw InvalidArgument(where + ": missing \"" + key + "\"");
  return *it;
}

// Validates one header entry against the data section [data, data + data_bytes).
TensorInfo parse_tensor_entry(const std::string& path, const std::string& name, const json& entry,
                              const uint8_t* data, uint64_t data_bytes) {
  const std::string where = path + ": tensor " + name;
  if (!entry.is_object()) throw InvalidArgument(where + ": header entry is not an object");

  const json& dtype_value = require_key(entry, "dtype", where);
  if (!dtype_value.is_string()) {
    throw InvalidArgument(where + ": dtype must be a string, got " + dtype_value.dump());
  }
  const std::string dtype_text = dtype_value.get<std::string>();
  const std::optional<DType> dtype = dtype_from_safetensors(dtype_text);
  if (!dtype) {
    throw InvalidArgument(where + ": unsupported dtype " + dtype_text +
                          " (octavo loads F32, F16, BF16, I32, I64)");
  }

  TensorInfo info;
  info.dtype = *dtype;
  info.file = path;

  const json& shape_value = require_key(entry, "shape", where);
  if (!shape_value.is_array()) {
    throw InvalidArgument(where + ": shape must be a list, got " + shape_value.dump());
  }
  constexpr uint64_t kMaxElements = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  uint64_t numel = 1;
  for (const auto& dim_value : shape_value) {
    const uint64_t dim = as_unsigned(dim_value, where, "shape dimensions");
    if (dim > kMaxElements || (dim != 0 && numel > kMaxElements / dim)) {
      throw InvalidArgument(where + ": shape " + shape_value.dump() + " has too many elements");
    }
    numel *= dim;
    info.shape.push_back(static_cast<int64_t>(dim));
  }

  const json& offsets = require_key(entry, "data_offsets", where);
  if (!offsets.is_array() || offsets.size() != 2) {
    throw InvalidArgument(where + ": data_offsets must be [begin, end], got " + offsets.dump());
  }
  const uint64_t begin = as_unsigned(offsets[0], where, "data_offsets");
  const uint64_t end = as_unsigned(offsets[1], where, "data_offsets");
  if (begin > end) {
    throw InvalidArgument(where + ": data_offsets begin " + std::to_string(begin) +
                          " is after end " + std::to_string(end));
  }
  if (end > data_bytes) {
    throw InvalidArgument(where + ": data_offsets end " + std::to_string(end) +
                          " is beyond the " + std::to_string(data_bytes) +
                          " bytes of tensor data in the file");
  }
  const uint64_t element_bytes = dtype_size(info.dtype);
  if (numel > std::numeric_limits<uint64_t>::max() / element_bytes ||
      numel * element_bytes != end - begin) {
    throw InvalidArgument(where + ": shape " + shape_string(info.shape) + " of " + dtype_text +
                          " needs " + std::to_string(numel) + " x " +
                          std::to_string(element_bytes) + " bytes but data_offsets cover " +
                          std::to_string(end - begin));
  }
  info.data = data + begin;
  info.bytes = static_cast<size_t>(end - begin);
  return info;
}

std::map<std::string, TensorInfo> parse_file(const std::string& path, const uint8_t* bytes,
                                             size_t size) {
  const uint64_t header_bytes = read_le_u64(bytes);
  const uint64_t after_length = size - kHeaderLengthBytes;
  if (header_bytes > after_length) {
    throw InvalidArgument(path + ": header length " + std::to_string(header_bytes) +
                          " exceeds the " + std::to_string(after_length) +
                          " bytes that follow the length field");
  }
  const char* header_begin = reinterpret_cast<const char*>(bytes + kHeaderLengthBytes);
  json header;
  try {
    header = json::parse(header_begin, header_begin + header_bytes);
  } catch (const json::parse_error& e) {
    throw InvalidArgument(path + ": header is not valid JSON: " + e.what());
  }
  if (!header.is_object()) {
    throw InvalidArgument(path + ": header must be a JSON object, got " +
                          std::string(header.type_name()));
  }

  const uint8_t* data = bytes + kHeaderLengthBytes + header_bytes;
  const uint64_t data_bytes = after_length - header_bytes;
  std::map<std::string, TensorInfo> tensors;
  for (const auto& item : header.items()) {
    if (item.key() == "__metadata__") {
      if (!item.value().is_object()) {
        throw InvalidArgument(path + ": __metadata__ must be an object, got " +
                              item.value().dump());
      }
      continue;
    }
    tensors.emplace(item.key(), parse_tensor_entry(path, item.key(), item.value(), data,
                                                   data_bytes));
  }
  return tensors;
}

// A shard name from the index is joined to the model directory; anything but a plain
// file name could point outside it.
bool is_plain_file_name(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos;
}

std::map<std::string, std::string> read_weight_map(const fs::path& index_path) {
  const std::string where = index_path.string();
  std::ifstream in(index_path, std::ios::binary);
  if (!in) throw NotFound(where + ": cannot be read");
  std::ostringstream text;
  text << in.rdbuf();

  json index;
  try {
    index = json::parse(text.str());
  } catch (const json::parse_error& e) {
    throw InvalidArgument(where + ": not valid JSON: " + e.what());
  }
  if (!index.is_object() || !index.contains("weight_map")) {
    throw InvalidArgument(where + ": missing \"weight_map\"");
  }
  const json& weight_map = index.at("weight_map");
  if (!weight_map.is_object()) {
    throw InvalidArgument(where + ": weight_map must be an object, got " + weight_map.dump());
  }
  if (weight_map.empty()) throw InvalidArgument(where + ": weight_map is empty");

  std::map<std::string, std::string> out;
  for (const auto& item : weight_map.items()) {
    if (!item.value().is_string() || !is_plain_file_name(item.value().get<std::string>())) {
      throw InvalidArgument(where + ": weight_map entry for " + item.key() +
                            " must be a file name in the model directory, got " +
                            item.value().dump());
    }
    out.emplace(item.key(), item.value().get<std::string>());
  }
  return out;
}

std::vector<fs::path> all_safetensors_files(const fs::path& dir) {
  std::vector<fs::path> files;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    // is_regular_file follows symlinks, as in a Hugging Face cache snapshot.
    if (it->path().extension() == ".safetensors" && fs::is_regular_file(it->path())) {
      files.push_back(it->path());
    }
  }
  if (ec) throw NotFound(dir.string() + ": cannot be listed: " + ec.message());
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t dim : shape) n *= dim;
  return n;
}

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    const int err = errno;
    throw NotFound(path + ": " + errno_text(err));
  }

  struct stat st;
  if (::fstat(fd.get(), &st) != 0) {
    const int err = errno;
    throw NotFound(path + ": " + errno_text(err));
  }
  if (!S_ISREG(st.st_mode)) throw InvalidArgument(path + ": not a regular file");
  const size_t size = static_cast<size_t>(st.st_size);
  if (size < kHeaderLengthBytes) {
    throw InvalidArgument(path + ": file is " + std::to_string(size) +
                          " bytes, too short for the 8-byte header length");
  }

  void* mapping = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd.get(), 0);
  if (mapping == MAP_FAILED) {
    const int err = errno;
    throw Error(path + ": mmap failed: " + errno_text(err));
  }
  mapping_ = mapping;
  size_ = size;
  // The destructor does not run for a constructor that throws.
  try {
    tensors_ = parse_file(path_, static_cast<const uint8_t*>(mapping_), size_);
  } catch (...) {
    ::munmap(mapping_, size_);
    mapping_ = nullptr;
    throw;
  }
}

SafetensorsFile::~SafetensorsFile() {
  if (mapping_ != nullptr) ::munmap(mapping_, size_);
}

SafetensorsReader::SafetensorsReader(const std::string& model_dir) : model_dir_(model_dir) {
  const fs::path dir(model_dir);
  std::error_code ec;
  if (!fs::exists(dir, ec)) throw NotFound("model directory " + model_dir + " does not exist");
  if (!fs::is_directory(dir, ec)) throw NotFound(model_dir + " is not a directory");

  const fs::path index_path = dir / kIndexFileName;
  std::map<std::string, std::string> weight_map;
  std::vector<fs::path> paths;
  if (fs::exists(index_path, ec)) {
    weight_map = read_weight_map(index_path);
    std::set<std::string> shards;
    for (const auto& entry : weight_map) shards.insert(entry.second);
    for (const auto& shard : shards) {
      const fs::path shard_path = dir / shard;
      if (!fs::exists(shard_path, ec)) {
        throw NotFound(index_path.string() + " names shard " + shard +
                       ", which is missing from " + model_dir);
      }
      paths.push_back(shard_path);
    }
  } else if (fs::exists(dir / kSingleFileName, ec)) {
    paths.push_back(dir / kSingleFileName);
  } else {
    paths = all_safetensors_files(dir);
  }
  if (paths.empty()) throw NotFound("no .safetensors files in " + model_dir);

  std::map<std::string, const SafetensorsFile*> by_file_name;
  for (const auto& path : paths) {
    files_.push_back(std::make_unique<SafetensorsFile>(path.string()));
    const SafetensorsFile& file = *files_.back();
    by_file_name[path.filename().string()] = &file;
    for (const auto& [name, info] : file.tensors()) {
      auto [it, inserted] = index_.emplace(name, &info);
      if (!inserted) {
        throw InvalidArgument("tensor " + name + " appears in both " + it->second->file +
                              " and " + info.file);
      }
    }
  }

  for (const auto& [name, shard] : weight_map) {
    if (by_file_name.at(shard)->tensors().count(name) == 0) {
      throw InvalidArgument(index_path.string() + ": tensor " + name + " is mapped to shard " +
                            shard + ", which does not contain it");
    }
  }
}

bool SafetensorsReader::contains(const std::string& name) const { return index_.count(name) != 0; }

const TensorInfo& SafetensorsReader::get(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) {
    throw InvalidArgument("tensor " + name + " not found in the checkpoint at " + model_dir_);
  }
  return *it->second;
}

std::vector<std::string> SafetensorsReader::names() const {
  std::vector<std::string> out;
  out.reserve(index_.size());
  for (const auto& entry : index_) out.push_back(entry.first);
  return out;
}

}  // namespace octavo
