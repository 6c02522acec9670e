#include "model/safetensors.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "octavo/errors.h"

namespace octavo {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// ---- a small safetensors writer, independent of the reader under test ------------------

struct TestTensor {
  std::string name;
  std::string dtype;  // safetensors spelling: "F32", "BF16", ...
  std::vector<int64_t> shape;
  std::string bytes;
};

template <typename T>
std::string raw_bytes(const std::vector<T>& values) {
  return std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(T));
}

std::string le_u64(uint64_t value) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((value >> (8 * i)) & 0xff);
  return out;
}

// The length prefix, the header as given and the data.
std::string with_header(const std::string& header, const std::string& data) {
  return le_u64(header.size()) + header + data;
}

json header_for(const std::vector<TestTensor>& tensors) {
  json header = json::object();
  header["__metadata__"] = {{"format", "pt"}};
  uint64_t offset = 0;
  for (const auto& t : tensors) {
    header[t.name] = {{"dtype", t.dtype},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + t.bytes.size()}}};
    offset += t.bytes.size();
  }
  return header;
}

std::string data_for(const std::vector<TestTensor>& tensors) {
  std::string data;
  for (const auto& t : tensors) data += t.bytes;
  return data;
}

// Pads the header with spaces to a multiple of 8 bytes, as the safetensors package does.
std::string encode(const std::vector<TestTensor>& tensors) {
  std::string header = header_for(tensors).dump();
  header.append((8 - header.size() % 8) % 8, ' ');
  return with_header(header, data_for(tensors));
}

void write_file(const fs::path& path, const std::string& contents) {
  std::ofstream out(path, std::ios::binary);
  out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
  ASSERT_TRUE(out.good()) << path;
}

std::vector<float> to_floats(const TensorInfo& info) {
  std::vector<float> out(static_cast<size_t>(info.numel()));
  convert_to_float(info.dtype, info.data, out.data(), out.size());
  return out;
}

// Tensors whose decoded values are known by hand.
const std::vector<float> kF32Values = {1.0f, -2.5f, 3.25f, 0.0f, 1e-3f, 65504.0f};
const std::vector<uint16_t> kF16Bits = {0x3C00, 0xC000, 0x0001, 0x7BFF};
const std::vector<float> kF16Values = {1.0f, -2.0f, 5.9604644775390625e-8f, 65504.0f};
const std::vector<uint16_t> kBF16Bits = {0x3F80, 0xC040, 0x4049, 0x0000};
const std::vector<float> kBF16Values = {1.0f, -3.0f, 3.140625f, 0.0f};
const std::vector<int32_t> kI32Values = {1, -7, 1 << 30};
const std::vector<int64_t> kI64Values = {int64_t{1} << 40};

std::vector<TestTensor> good_tensors() {
  return {
      {"model.embed_tokens.weight", "F32", {2, 3}, raw_bytes(kF32Values)},
      {"model.norm.weight", "F16", {4}, raw_bytes(kF16Bits)},
      {"lm_head.weight", "BF16", {2, 2}, raw_bytes(kBF16Bits)},
      {"ids", "I32", {3}, raw_bytes(kI32Values)},
      {"step", "I64", {}, raw_bytes(kI64Values)},
      {"empty", "F32", {0, 4}, ""},
  };
}

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::path(::testing::TempDir()) / "octavo_st_XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  std::string write(const std::string& name, const std::string& contents) {
    const fs::path path = dir_ / name;
    write_file(path, contents);
    return path.string();
  }

  // Loading path must throw InvalidArgument whose message names the file and says what.
  void expect_invalid(const std::string& path, const std::string& what) {
    try {
      SafetensorsFile file(path);
      ADD_FAILURE() << path << " loaded; expected an error containing: " << what;
    } catch (const InvalidArgument& e) {
      const std::string message = e.what();
      EXPECT_EQ(message.rfind(path + ": ", 0), 0u) << message;
      EXPECT_NE(message.find(what), std::string::npos) << message;
    }
  }

  fs::path dir_;
};

// ---- single files ------------------------------------------------------------------------

TEST_F(SafetensorsTest, ReadsShapesDtypesAndValues) {
  const std::string path = write("model.safetensors", encode(good_tensors()));
  SafetensorsFile file(path);
  const auto& tensors = file.tensors();
  ASSERT_EQ(tensors.size(), 6u);
  EXPECT_EQ(tensors.count("__metadata__"), 0u);

  const TensorInfo& f32 = tensors.at("model.embed_tokens.weight");
  EXPECT_EQ(f32.dtype, DType::kFloat32);
  EXPECT_EQ(f32.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(f32.numel(), 6);
  EXPECT_EQ(f32.bytes, 24u);
  EXPECT_EQ(f32.file, path);
  EXPECT_EQ(to_floats(f32), kF32Values);

  const TensorInfo& f16 = tensors.at("model.norm.weight");
  EXPECT_EQ(f16.dtype, DType::kFloat16);
  EXPECT_EQ(f16.shape, (std::vector<int64_t>{4}));
  EXPECT_EQ(f16.bytes, 8u);
  EXPECT_EQ(to_floats(f16), kF16Values);

  const TensorInfo& bf16 = tensors.at("lm_head.weight");
  EXPECT_EQ(bf16.dtype, DType::kBFloat16);
  EXPECT_EQ(bf16.shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(to_floats(bf16), kBF16Values);

  const TensorInfo& i32 = tensors.at("ids");
  EXPECT_EQ(i32.dtype, DType::kInt32);
  std::vector<int32_t> ids(3);
  std::memcpy(ids.data(), i32.data, i32.bytes);
  EXPECT_EQ(ids, kI32Values);

  const TensorInfo& i64 = tensors.at("step");
  EXPECT_EQ(i64.dtype, DType::kInt64);
  EXPECT_TRUE(i64.shape.empty());
  EXPECT_EQ(i64.numel(), 1);
  int64_t step = 0;
  std::memcpy(&step, i64.data, sizeof(step));
  EXPECT_EQ(step, kI64Values[0]);

  const TensorInfo& empty = tensors.at("empty");
  EXPECT_EQ(empty.numel(), 0);
  EXPECT_EQ(empty.bytes, 0u);
}

TEST_F(SafetensorsTest, TensorsPointIntoOneMapping) {
  SafetensorsFile file(write("model.safetensors", encode(good_tensors())));
  const auto* first = static_cast<const char*>(file.tensors().at("model.embed_tokens.weight").data);
  const auto* second = static_cast<const char*>(file.tensors().at("model.norm.weight").data);
  EXPECT_EQ(second - first, 24);
}

TEST_F(SafetensorsTest, MissingFileIsNotFound) {
  const std::string path = (dir_ / "absent.safetensors").string();
  try {
    SafetensorsFile file(path);
    ADD_FAILURE() << "loaded a missing file";
  } catch (const NotFound& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
}

TEST_F(SafetensorsTest, DirectoryIsNotAFile) {
  fs::create_directory(dir_ / "sub.safetensors");
  expect_invalid((dir_ / "sub.safetensors").string(), "not a regular file");
}

TEST_F(SafetensorsTest, FileShorterThanLengthField) {
  expect_invalid(write("empty.safetensors", ""), "too short");
  expect_invalid(write("five.safetensors", std::string("\x10\0\0\0\0", 5)), "too short");
}

TEST_F(SafetensorsTest, HeaderLengthLargerThanFile) {
  std::string contents = encode(good_tensors());
  contents.replace(0, 8, le_u64(contents.size()));
  expect_invalid(write("long.safetensors", contents), "header length");
  contents.replace(0, 8, le_u64(std::numeric_limits<uint64_t>::max()));
  expect_invalid(write("huge.safetensors", contents), "header length");
}

TEST_F(SafetensorsTest, HeaderIsNotJson) {
  expect_invalid(write("bad.safetensors", with_header("{\"a\": {\"dtype\": ", "")),
                 "not valid JSON");
  expect_invalid(write("zero.safetensors", with_header("", "")), "not valid JSON");
  expect_invalid(write("array.safetensors", with_header("[1, 2]", "")), "JSON object");
}

TEST_F(SafetensorsTest, TruncatedData) {
  const std::string contents = encode(good_tensors());
  expect_invalid(write("cut.safetensors", contents.substr(0, contents.size() - 1)),
                 "beyond the");
}

TEST_F(SafetensorsTest, EveryTruncationIsAnErrorNotACrash) {
  const std::string contents = encode(good_tensors());
  for (size_t size = 0; size < contents.size(); ++size) {
    const std::string path = write("cut.safetensors", contents.substr(0, size));
    EXPECT_THROW(SafetensorsFile file(path), InvalidArgument) << "size " << size;
  }
}

TEST_F(SafetensorsTest, CorruptHeaderBytesNeverCrash) {
  const std::string contents = encode(good_tensors());
  const size_t header_end = contents.size() - data_for(good_tensors()).size();
  for (size_t i = 8; i < header_end; ++i) {
    for (char value : {'\0', '"', '9', '-', '}', '\xff'}) {
      std::string corrupt = contents;
      corrupt[i] = value;
      const std::string path = write("flip.safetensors", corrupt);
      try {
        SafetensorsFile file(path);
      } catch (const InvalidArgument&) {
      } catch (const std::exception& e) {
        ADD_FAILURE() << "byte " << i << " = " << int(value) << ": " << e.what();
      }
    }
  }
}

TEST_F(SafetensorsTest, OffsetsPastEnd) {
  json header = header_for(good_tensors());
  header["ids"]["data_offsets"] = {60, 1000};
  expect_invalid(write("past.safetensors", with_header(header.dump(), data_for(good_tensors()))),
                 "tensor ids: data_offsets end 1000 is beyond");
}

TEST_F(SafetensorsTest, OffsetsBeginAfterEnd) {
  json header = header_for(good_tensors());
  header["ids"]["data_offsets"] = {12, 8};
  expect_invalid(write("rev.safetensors", with_header(header.dump(), data_for(good_tensors()))),
                 "begin 12 is after end 8");
}

TEST_F(SafetensorsTest, ShapeDisagreesWithByteRange) {
  json header = header_for(good_tensors());
  header["model.embed_tokens.weight"]["shape"] = {2, 4};
  expect_invalid(write("shape.safetensors", with_header(header.dump(), data_for(good_tensors()))),
                 "tensor model.embed_tokens.weight: shape [2, 4] of F32 needs 8 x 4 bytes but "
                 "data_offsets cover 24");
}

TEST_F(SafetensorsTest, ShapeWhoseByteCountOverflows) {
  json header = header_for(good_tensors());
  header["ids"]["shape"] = {uint64_t{1} << 62, 4};
  expect_invalid(write("big.safetensors", with_header(header.dump(), data_for(good_tensors()))),
                 "tensor ids: shape");
}

TEST_F(SafetensorsTest, UnsupportedDtypesAreNamed) {
  for (const char* dtype : {"F64", "I8", "U8", "BOOL", "F8_E4M3", "float32"}) {
    json header = header_for(good_tensors());
    header["ids"]["dtype"] = dtype;
    expect_invalid(write("dtype.safetensors", with_header(header.dump(), data_for(good_tensors()))),
                   std::string("tensor ids: unsupported dtype ") + dtype);
  }
}

TEST_F(SafetensorsTest, MissingOrMistypedKeys) {
  for (const char* key : {"dtype", "shape", "data_offsets"}) {
    json header = header_for(good_tensors());
    header["ids"].erase(key);
    expect_invalid(write("key.safetensors", with_header(header.dump(), data_for(good_tensors()))),
                   std::string("tensor ids: missing \"") + key + "\"");
  }
  const std::vector<std::pair<json, std::string>> bad_entries = {
      {json(3), "not an object"},
      {{{"dtype", 1}, {"shape", {3}}, {"data_offsets", {60, 72}}}, "dtype must be a string"},
      {{{"dtype", "I32"}, {"shape", 3}, {"data_offsets", {60, 72}}}, "shape must be a list"},
      {{{"dtype", "I32"}, {"shape", {-3}}, {"data_offsets", {60, 72}}}, "non-negative"},
      {{{"dtype", "I32"}, {"shape", {3}}, {"data_offsets", {60}}}, "[begin, end]"},
      {{{"dtype", "I32"}, {"shape", {3}}, {"data_offsets", {60, 72.5}}}, "non-negative"},
  };
  for (const auto& [entry, what] : bad_entries) {
    json header = header_for(good_tensors());
    header["ids"] = entry;
    expect_invalid(write("entry.safetensors", with_header(header.dump(), data_for(good_tensors()))),
                   what);
  }
  json header = header_for(good_tensors());
  header["__metadata__"] = "pt";
  expect_invalid(write("meta.safetensors", with_header(header.dump(), data_for(good_tensors()))),
                 "__metadata__");
}

// ---- model directories -------------------------------------------------------------------

std::string error_of_reader(const std::string& dir) {
  try {
    SafetensorsReader reader(dir);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

TEST_F(SafetensorsTest, ReaderSingleFile) {
  write("model.safetensors", encode(good_tensors()));
  SafetensorsReader reader(dir_.string());
  EXPECT_EQ(reader.names(), (std::vector<std::string>{"empty", "ids", "lm_head.weight",
                                                      "model.embed_tokens.weight",
                                                      "model.norm.weight", "step"}));
  EXPECT_TRUE(reader.contains("lm_head.weight"));
  EXPECT_FALSE(reader.contains("__metadata__"));
  EXPECT_EQ(to_floats(reader.get("model.norm.weight")), kF16Values);
}

TEST_F(SafetensorsTest, ReaderMissingTensorNamesItAndTheDirectory) {
  write("model.safetensors", encode(good_tensors()));
  SafetensorsReader reader(dir_.string());
  try {
    reader.get("model.layers.0.mlp.up_proj.weight");
    ADD_FAILURE() << "found a missing tensor";
  } catch (const InvalidArgument& e) {
    EXPECT_EQ(std::string(e.what()), "tensor model.layers.0.mlp.up_proj.weight not found in the "
                                     "checkpoint at " + dir_.string());
  }
}

TEST_F(SafetensorsTest, ReaderPrefersModelSafetensorsOverOtherFiles) {
  // Mistral repositories ship consolidated.safetensors beside model.safetensors, with the
  // same tensors under other names; only model.safetensors counts.
  write("model.safetensors", encode(good_tensors()));
  write("consolidated.safetensors",
        encode({{"tok_embeddings.weight", "F32", {2, 3}, raw_bytes(kF32Values)},
                {"ids", "I32", {3}, raw_bytes(kI32Values)}}));
  SafetensorsReader reader(dir_.string());
  EXPECT_FALSE(reader.contains("tok_embeddings.weight"));
  EXPECT_EQ(reader.names().size(), 6u);
}

TEST_F(SafetensorsTest, ReaderShardedWithIndex) {
  write("model-00001-of-00002.safetensors",
        encode({{"model.embed_tokens.weight", "F32", {2, 3}, raw_bytes(kF32Values)},
                {"model.norm.weight", "F16", {4}, raw_bytes(kF16Bits)}}));
  const std::string shard2 =
      write("model-00002-of-00002.safetensors",
            encode({{"lm_head.weight", "BF16", {2, 2}, raw_bytes(kBF16Bits)}}));
  json index = {{"metadata", {{"total_size", 40}}},
                {"weight_map",
                 {{"model.embed_tokens.weight", "model-00001-of-00002.safetensors"},
                  {"model.norm.weight", "model-00001-of-00002.safetensors"},
                  {"lm_head.weight", "model-00002-of-00002.safetensors"}}}};
  write("model.safetensors.index.json", index.dump(2));
  // A stray file the index does not name is not read.
  write("extra.safetensors", encode({{"stray", "F32", {1}, raw_bytes(std::vector<float>{1})}}));

  SafetensorsReader reader(dir_.string());
  EXPECT_EQ(reader.names(), (std::vector<std::string>{"lm_head.weight",
                                                      "model.embed_tokens.weight",
                                                      "model.norm.weight"}));
  EXPECT_EQ(reader.get("lm_head.weight").file, shard2);
  EXPECT_EQ(to_floats(reader.get("lm_head.weight")), kBF16Values);
  EXPECT_EQ(to_floats(reader.get("model.embed_tokens.weight")), kF32Values);
  EXPECT_EQ(to_floats(reader.get("model.norm.weight")), kF16Values);
}

TEST_F(SafetensorsTest, ReaderIndexNamingMissingShard) {
  write("model-00001-of-00002.safetensors", encode(good_tensors()));
  json index = {{"weight_map",
                 {{"ids", "model-00001-of-00002.safetensors"},
                  {"lm_head.weight", "model-00002-of-00002.safetensors"}}}};
  write("model.safetensors.index.json", index.dump());
  try {
    SafetensorsReader reader(dir_.string());
    ADD_FAILURE() << "loaded with a shard missing";
  } catch (const NotFound& e) {
    EXPECT_NE(std::string(e.what()).find("model-00002-of-00002.safetensors"), std::string::npos)
        << e.what();
  }
}

TEST_F(SafetensorsTest, ReaderIndexNamingTensorNotInItsShard) {
  write("a.safetensors", encode({{"x", "F32", {1}, raw_bytes(std::vector<float>{1})}}));
  write("b.safetensors", encode({{"y", "F32", {1}, raw_bytes(std::vector<float>{2})}}));
  json index = {{"weight_map", {{"x", "b.safetensors"}, {"y", "b.safetensors"}}}};
  write("model.safetensors.index.json", index.dump());
  try {
    SafetensorsReader reader(dir_.string());
    ADD_FAILURE() << "loaded an index that disagrees with its shard";
  } catch (const InvalidArgument& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("tensor x is mapped to shard b.safetensors"), std::string::npos)
        << message;
  }
}

TEST_F(SafetensorsTest, ReaderRejectsBadIndexes) {
  write("a.safetensors", encode({{"x", "F32", {1}, raw_bytes(std::vector<float>{1})}}));
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{\"weight_map\": ", "not valid JSON"},
      {"{\"metadata\": {}}", "missing \"weight_map\""},
      {"{\"weight_map\": []}", "weight_map must be an object"},
      {"{\"weight_map\": {}}", "weight_map is empty"},
      {"{\"weight_map\": {\"x\": 3}}", "must be a file name"},
      {"{\"weight_map\": {\"x\": \"../a.safetensors\"}}", "must be a file name"},
  };
  for (const auto& [text, what] : cases) {
    write("model.safetensors.index.json", text);
    try {
      SafetensorsReader reader(dir_.string());
      ADD_FAILURE() << "loaded index " << text;
    } catch (const InvalidArgument& e) {
      const std::string message = e.what();
      EXPECT_NE(message.find("model.safetensors.index.json: "), std::string::npos) << message;
      EXPECT_NE(message.find(what), std::string::npos) << message;
    }
  }
}

TEST_F(SafetensorsTest, ReaderWithoutIndexReadsEverySafetensorsFile) {
  write("b.safetensors", encode({{"y", "F32", {1}, raw_bytes(std::vector<float>{2})}}));
  write("a.safetensors", encode({{"x", "F32", {1}, raw_bytes(std::vector<float>{1})}}));
  write("notes.txt", "not a checkpoint");
  SafetensorsReader reader(dir_.string());
  EXPECT_EQ(reader.names(), (std::vector<std::string>{"x", "y"}));
  EXPECT_EQ(to_floats(reader.get("y")), std::vector<float>{2});
}

TEST_F(SafetensorsTest, ReaderFollowsSymlinksLikeAHubCacheSnapshot) {
  fs::create_directory(dir_ / "blobs");
  fs::create_directory(dir_ / "snapshot");
  write("blobs/0123abcd", encode(good_tensors()));
  fs::create_symlink(dir_ / "blobs" / "0123abcd", dir_ / "snapshot" / "weights.safetensors");
  SafetensorsReader reader((dir_ / "snapshot").string());
  EXPECT_EQ(to_floats(reader.get("lm_head.weight")), kBF16Values);
}

TEST_F(SafetensorsTest, ReaderRejectsDuplicateTensorsAcrossFiles) {
  write("a.safetensors", encode({{"x", "F32", {1}, raw_bytes(std::vector<float>{1})}}));
  write("b.safetensors", encode({{"x", "F32", {1}, raw_bytes(std::vector<float>{2})}}));
  try {
    SafetensorsReader reader(dir_.string());
    ADD_FAILURE() << "loaded a tensor defined twice";
  } catch (const InvalidArgument& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("tensor x appears in both"), std::string::npos) << message;
    EXPECT_NE(message.find("a.safetensors"), std::string::npos) << message;
    EXPECT_NE(message.find("b.safetensors"), std::string::npos) << message;
  }
}

TEST_F(SafetensorsTest, ReaderMissingOrEmptyDirectoryIsNotFound) {
  const std::string missing = (dir_ / "nope").string();
  EXPECT_THROW(SafetensorsReader reader(missing), NotFound);
  EXPECT_NE(error_of_reader(missing).find(missing), std::string::npos);

  EXPECT_THROW(SafetensorsReader reader(dir_.string()), NotFound);
  EXPECT_EQ(error_of_reader(dir_.string()), "no .safetensors files in " + dir_.string());
}

TEST_F(SafetensorsTest, ReaderReportsACorruptShard) {
  write("model.safetensors", std::string("\x04\0\0\0\0\0\0\0{}", 10));
  EXPECT_THROW(SafetensorsReader reader(dir_.string()), InvalidArgument);
}

// ---- dtype conversions, against bit patterns worked out by hand --------------------------

TEST(DTypeConversion, HalfKnownPatterns) {
  EXPECT_EQ(half_to_float(0x3C00), 1.0f);
  EXPECT_EQ(half_to_float(0xC000), -2.0f);
  EXPECT_EQ(half_to_float(0x3555), 0.333251953125f);
  EXPECT_EQ(half_to_float(0x7BFF), 65504.0f);
  EXPECT_EQ(half_to_float(0x0400), std::ldexp(1.0f, -14));          // smallest normal
  EXPECT_EQ(half_to_float(0x0001), std::ldexp(1.0f, -24));          // smallest subnormal
  EXPECT_EQ(half_to_float(0x03FF), std::ldexp(1023.0f, -24));       // largest subnormal
  EXPECT_EQ(half_to_float(0x8001), -std::ldexp(1.0f, -24));
  EXPECT_EQ(half_to_float(0x7C00), std::numeric_limits<float>::infinity());
  EXPECT_EQ(half_to_float(0xFC00), -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(half_to_float(0x7E00)));
  EXPECT_TRUE(std::signbit(half_to_float(0x8000)));
  EXPECT_EQ(half_to_float(0x8000), 0.0f);
}

TEST(DTypeConversion, HalfEveryFinitePatternMatchesTheFormula) {
  for (uint32_t bits = 0; bits <= 0xFFFF; ++bits) {
    const uint32_t exponent = (bits >> 10) & 0x1F;
    if (exponent == 0x1F) continue;
    const double mantissa = bits & 0x3FF;
    const double magnitude = exponent == 0
                                 ? std::ldexp(mantissa, -24)
                                 : std::ldexp(1.0 + mantissa / 1024.0, int(exponent) - 15);
    const double expected = (bits & 0x8000) ? -magnitude : magnitude;
    ASSERT_EQ(half_to_float(static_cast<uint16_t>(bits)), static_cast<float>(expected))
        << std::hex << bits;
  }
}

TEST(DTypeConversion, BFloat16KnownPatterns) {
  EXPECT_EQ(bfloat16_to_float(0x3F80), 1.0f);
  EXPECT_EQ(bfloat16_to_float(0xC040), -3.0f);
  EXPECT_EQ(bfloat16_to_float(0x4049), 3.140625f);
  EXPECT_EQ(bfloat16_to_float(0x0001), std::ldexp(1.0f, -133));
  EXPECT_EQ(bfloat16_to_float(0x7F80), std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(bfloat16_to_float(0x7FC0)));
}

float float_from_bits(uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}

TEST(DTypeConversion, FloatToBFloat16RoundsToNearestEven) {
  EXPECT_EQ(float_to_bfloat16(1.0f), 0x3F80);
  EXPECT_EQ(float_to_bfloat16(-1.5f), 0xBFC0);
  EXPECT_EQ(float_to_bfloat16(3.14159265f), 0x4049);  // 3.140625 is nearer than 3.15625
  EXPECT_EQ(float_to_bfloat16(float_from_bits(0x3F807FFF)), 0x3F80);  // below half: down
  EXPECT_EQ(float_to_bfloat16(float_from_bits(0x3F808001)), 0x3F81);  // above half: up
  EXPECT_EQ(float_to_bfloat16(float_from_bits(0x3F808000)), 0x3F80);  // tie, to even 0x3F80
  EXPECT_EQ(float_to_bfloat16(float_from_bits(0x3F818000)), 0x3F82);  // tie, to even 0x3F82
  EXPECT_EQ(float_to_bfloat16(float_from_bits(0xBF818000)), 0xBF82);
  // FLT_MAX is more than half a bfloat16 ulp above the largest bfloat16: rounds to inf.
  EXPECT_EQ(float_to_bfloat16(std::numeric_limits<float>::max()), 0x7F80);
  EXPECT_EQ(float_to_bfloat16(-std::numeric_limits<float>::infinity()), 0xFF80);
  // A NaN whose payload sits in the low bits must not round to infinity.
  EXPECT_TRUE(std::isnan(bfloat16_to_float(float_to_bfloat16(float_from_bits(0x7F800001)))));
  EXPECT_TRUE(std::isnan(bfloat16_to_float(float_to_bfloat16(float_from_bits(0xFFFFFFFF)))));
}

TEST(DTypeConversion, BFloat16RoundTripsEveryNonNanPattern) {
  for (uint32_t bits = 0; bits <= 0xFFFF; ++bits) {
    const float value = bfloat16_to_float(static_cast<uint16_t>(bits));
    if (std::isnan(value)) continue;
    ASSERT_EQ(float_to_bfloat16(value), bits) << std::hex << bits;
  }
}

TEST(DTypeConversion, ConvertToFloat) {
  std::vector<float> out(4);
  convert_to_float(DType::kFloat16, kF16Bits.data(), out.data(), 4);
  EXPECT_EQ(out, kF16Values);
  convert_to_float(DType::kBFloat16, kBF16Bits.data(), out.data(), 4);
  EXPECT_EQ(out, kBF16Values);
  convert_to_float(DType::kFloat32, kF32Values.data(), out.data(), 4);
  EXPECT_EQ(out, std::vector<float>(kF32Values.begin(), kF32Values.begin() + 4));
  EXPECT_THROW(convert_to_float(DType::kInt32, kI32Values.data(), out.data(), 3), InvalidArgument);
}

TEST(DTypeConversion, SizesAndNames) {
  EXPECT_EQ(dtype_size(DType::kFloat32), 4u);
  EXPECT_EQ(dtype_size(DType::kFloat16), 2u);
  EXPECT_EQ(dtype_size(DType::kBFloat16), 2u);
  EXPECT_EQ(dtype_size(DType::kInt32), 4u);
  EXPECT_EQ(dtype_size(DType::kInt64), 8u);
  EXPECT_EQ(dtype_name(DType::kBFloat16), "bfloat16");
}

}  // namespace
}  // namespace octavo
