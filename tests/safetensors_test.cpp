// Safetensors parsing against hostile headers, writing, and the real pycode24M file.
#include "model/safetensors.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "codecllm/error.hpp"
#include "format/mapped_file.hpp"

namespace codecllm::model {
namespace {

namespace fs = std::filesystem;

// A safetensors file from header text and `data_bytes` bytes of data (values 0, 1, 2, ...).
std::vector<uint8_t> make_file(const std::string& header, size_t data_bytes) {
  // Sized up front and filled by index: vector::insert trips a GCC 12 -Warray-bounds false
  // positive here.
  std::vector<uint8_t> file(8 + header.size() + data_bytes);
  const uint64_t len = header.size();
  for (size_t i = 0; i < 8; ++i) file[i] = static_cast<uint8_t>(len >> (8 * i));
  for (size_t i = 0; i < header.size(); ++i) file[8 + i] = static_cast<uint8_t>(header[i]);
  for (size_t i = 0; i < data_bytes; ++i) file[8 + header.size() + i] = static_cast<uint8_t>(i);
  return file;
}

// Expects a FormatError whose message names the file and contains `problem`.
void expect_rejected(const std::vector<uint8_t>& file, const std::string& problem) {
  try {
    parse_safetensors(ByteSpan(file.data(), file.size()), "bad.safetensors");
    ADD_FAILURE() << "accepted; expected an error containing '" << problem << "'";
  } catch (const FormatError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("bad.safetensors"), std::string::npos) << msg;
    EXPECT_NE(msg.find(problem), std::string::npos) << msg;
  }
}

void expect_header_rejected(const std::string& header, size_t data_bytes, const std::string& problem) {
  SCOPED_TRACE(header);
  expect_rejected(make_file(header, data_bytes), problem);
}

TEST(Safetensors, ParsesMinimalFile) {
  const auto file =
      make_file(R"({"__metadata__":{"format":"pt"},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]},)"
                R"("a":{"dtype":"BF16","shape":[2,2],"data_offsets":[0,8]}})",
                16);
  const SafetensorsFile st = parse_safetensors(ByteSpan(file.data(), file.size()), "x");
  ASSERT_EQ(st.tensors.size(), 2u);
  EXPECT_EQ(st.metadata.at("format"), "pt");
  EXPECT_EQ(st.tensors[0].name, "a");  // ordered by data position
  EXPECT_EQ(st.tensors[0].dtype, DType::BF16);
  EXPECT_EQ(st.tensors[0].shape, (std::vector<uint64_t>{2, 2}));
  EXPECT_EQ(st.tensors[1].name, "b");
  EXPECT_EQ(st.tensors[1].data.data(), file.data() + st.data_start + 8);
  EXPECT_EQ(st.tensors[1].data.size(), 8u);
}

TEST(Safetensors, KeepsUnknownDtype) {
  const auto file = make_file(R"({"q":{"dtype":"F4","shape":[3],"data_offsets":[0,5]}})", 5);
  const SafetensorsFile st = parse_safetensors(ByteSpan(file.data(), file.size()), "x");
  ASSERT_EQ(st.tensors.size(), 1u);
  EXPECT_EQ(st.tensors[0].dtype, DType::Unknown);
  EXPECT_EQ(st.tensors[0].dtype_name, "F4");
  EXPECT_EQ(st.tensors[0].data.size(), 5u);
}

TEST(Safetensors, AcceptsZeroElementTensors) {
  const auto file = make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                              R"("e":{"dtype":"F32","shape":[0,4],"data_offsets":[4,4]},)"
                              R"("z":{"dtype":"I64","shape":[0],"data_offsets":[8,8]}})",
                              8);
  const SafetensorsFile st = parse_safetensors(ByteSpan(file.data(), file.size()), "x");
  ASSERT_EQ(st.tensors.size(), 3u);
  EXPECT_TRUE(st.tensors[1].data.empty());
  EXPECT_EQ(st.tensors[1].shape, (std::vector<uint64_t>{0, 4}));
}

TEST(Safetensors, AcceptsEmptyHeaderObject) {
  const auto file = make_file("{}      ", 0);
  EXPECT_TRUE(parse_safetensors(ByteSpan(file.data(), file.size()), "x").tensors.empty());
}

TEST(SafetensorsHostile, ShortFile) {
  expect_rejected({1, 2, 3, 4, 5, 6, 7}, "too short");
  expect_rejected({}, "too short");
}

TEST(SafetensorsHostile, HeaderLengthPastEnd) {
  auto file = make_file("{}", 0);
  file[0] = 3;  // claims 3 header bytes, 2 present
  expect_rejected(file, "exceeds the 2 bytes");
}

TEST(SafetensorsHostile, HeaderLengthOverLimit) {
  auto file = make_file("{}", 0);
  file[0] = 0;
  file[4] = 1;  // 2^32
  expect_rejected(file, "limit");
  std::memset(file.data(), 0xff, 8);  // 2^64 - 1
  expect_rejected(file, "limit");
}

TEST(SafetensorsHostile, BadJson) {
  expect_header_rejected("", 0, "not valid JSON");
  expect_header_rejected("{\"a\":", 0, "not valid JSON");
  expect_header_rejected("{\"a\":1}trailing", 0, "not valid JSON");
  expect_header_rejected(std::string(64, '[') + std::string(64, ']'), 0, "nests deeper");
}

TEST(SafetensorsHostile, NotAnObject) {
  expect_header_rejected("[1,2]", 0, "not a JSON object");
  expect_header_rejected("\"x\"", 0, "not a JSON object");
}

TEST(SafetensorsHostile, InvalidUtf8Name) {
  expect_header_rejected("{\"a\xff\xfe\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}}", 0,
                         "not valid JSON");
  expect_header_rejected("{\"\xc3\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}}", 0, "not valid JSON");
}

TEST(SafetensorsHostile, EntryFields) {
  expect_header_rejected(R"({"a":5})", 0, "not a JSON object");
  expect_header_rejected(R"({"":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}})", 0, "empty name");
  expect_header_rejected(R"({"a":{"shape":[1],"data_offsets":[0,1]}})", 1, "missing dtype");
  expect_header_rejected(R"({"a":{"dtype":7,"shape":[1],"data_offsets":[0,1]}})", 1, "dtype is not a string");
  expect_header_rejected(R"({"a":{"dtype":"U8","data_offsets":[0,1]}})", 1, "missing shape");
  expect_header_rejected(R"({"a":{"dtype":"U8","shape":1,"data_offsets":[0,1]}})", 1, "shape is not an array");
  expect_header_rejected(R"({"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,1]}})", 1, "non-integer or negative");
  expect_header_rejected(R"({"a":{"dtype":"U8","shape":[1.0],"data_offsets":[0,1]}})", 1, "non-integer or negative");
  expect_header_rejected(R"({"a":{"dtype":"U8","shape":["1"],"data_offsets":[0,1]}})", 1, "non-integer or negative");
  expect_header_rejected(R"({"a":{"dtype":"U8","shape":[1]}})", 1, "missing data_offsets");
  expect_header_rejected(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0]}})", 1, "two non-negative integers");
  expect_header_rejected(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1,2]}})", 1, "two non-negative integers");
  expect_header_rejected(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[-1,0]}})", 1, "two non-negative integers");
  expect_header_rejected(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":{"0":1}}})", 1, "two non-negative integers");
}

TEST(SafetensorsHostile, ShapeOverflow) {
  expect_header_rejected(R"({"a":{"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,0]}})", 0,
                         "overflows");
  // Unknown dtypes are not size-checked, but the shape product still must fit.
  expect_header_rejected(R"({"a":{"dtype":"X","shape":[4294967296,0,4294967296],"data_offsets":[0,0]}})", 0,
                         "overflows");
  // Fits in elements, overflows in bytes.
  expect_header_rejected(R"({"a":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,0]}})", 0, "overflows");
}

TEST(SafetensorsHostile, DataOffsets) {
  expect_header_rejected(R"({"a":{"dtype":"U8","shape":[0],"data_offsets":[4,2]}})", 4, "before begin");
  expect_header_rejected(R"({"a":{"dtype":"U8","shape":[5],"data_offsets":[0,5]}})", 4, "past the 4-byte data region");
  expect_header_rejected(
      R"({"a":{"dtype":"U8","shape":[0],"data_offsets":[18446744073709551615,18446744073709551615]}})", 4,
      "past the 4-byte data region");
  expect_header_rejected(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", 8, "needs 8");
  expect_header_rejected(R"({"a":{"dtype":"BF16","shape":[],"data_offsets":[0,1]}})", 8, "needs 2");
}

TEST(SafetensorsHostile, Overlap) {
  expect_header_rejected(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                         R"("b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}})",
                         8, "overlap");
  // Contained range, and a later range that only the first one reaches.
  expect_header_rejected(R"({"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]},)"
                         R"("b":{"dtype":"U8","shape":[1],"data_offsets":[1,2]},)"
                         R"("c":{"dtype":"U8","shape":[2],"data_offsets":[6,8]}})",
                         8, "overlap");
  // Identical ranges.
  expect_header_rejected(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                         R"("b":{"dtype":"X","shape":[4],"data_offsets":[0,4]}})",
                         8, "overlap");
}

TEST(SafetensorsHostile, Metadata) {
  expect_header_rejected(R"({"__metadata__":[1]})", 0, "__metadata__ is not a JSON object");
  expect_header_rejected(R"({"__metadata__":{"format":1}})", 0, "is not a string");
  expect_header_rejected(R"({"__metadata__":{"x":{"y":"z"}}})", 0, "is not a string");
}

class TempDir {
 public:
  TempDir() {
    static int counter = 0;
    path_ = fs::temp_directory_path() /
            ("codecllm-st-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

TensorInfo tensor(const std::string& name, DType dtype, std::vector<uint64_t> shape,
                  const std::vector<uint8_t>& bytes) {
  TensorInfo t;
  t.name = name;
  t.dtype = dtype;
  t.dtype_name = dtype_name(dtype);
  t.shape = std::move(shape);
  t.data = ByteSpan(bytes.data(), bytes.size());
  return t;
}

TEST(SafetensorsWrite, RoundTripKeepsOrderAndBytes) {
  TempDir dir;
  const std::vector<uint8_t> a = {1, 2, 3, 4, 5, 6, 7, 8}, b = {9, 10}, c = {11, 12, 13};
  std::vector<TensorInfo> tensors = {tensor("zeta", DType::F32, {2}, a), tensor("alpha", DType::BF16, {1}, b),
                                     tensor("empty", DType::F16, {3, 0}, {}), tensor("odd", DType::Unknown, {6}, c)};
  tensors[3].dtype_name = "F4";
  const std::string path = dir.file("out.safetensors");
  write_safetensors(path, tensors, {{"format", "pt"}, {"note", "ü"}});
  ASSERT_FALSE(fs::exists(path + ".tmp-" + std::to_string(::getpid())));

  const format::MappedFile map(path);
  const SafetensorsFile st = parse_safetensors(map.bytes(), path);
  EXPECT_EQ(st.data_start % 8, 0u);
  EXPECT_EQ(st.metadata.at("format"), "pt");
  EXPECT_EQ(st.metadata.at("note"), "ü");
  ASSERT_EQ(st.tensors.size(), tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    SCOPED_TRACE(tensors[i].name);
    EXPECT_EQ(st.tensors[i].name, tensors[i].name);
    EXPECT_EQ(st.tensors[i].dtype, tensors[i].dtype);
    EXPECT_EQ(st.tensors[i].dtype_name, tensors[i].dtype_name);
    EXPECT_EQ(st.tensors[i].shape, tensors[i].shape);
    ASSERT_EQ(st.tensors[i].data.size(), tensors[i].data.size());
    if (!tensors[i].data.empty()) {
      EXPECT_EQ(std::memcmp(st.tensors[i].data.data(), tensors[i].data.data(), tensors[i].data.size()), 0);
    }
  }
  EXPECT_EQ(map.size(), st.data_start + a.size() + b.size() + c.size());
}

TEST(SafetensorsWrite, RejectsInconsistentTensorsWithoutOutput) {
  TempDir dir;
  const std::vector<uint8_t> a = {1, 2, 3, 4};
  const std::string path = dir.file("out.safetensors");
  EXPECT_THROW(write_safetensors(path, {tensor("a", DType::F32, {2}, a)}), Error);
  EXPECT_THROW(write_safetensors(path, {tensor("a", DType::U8, {4}, a), tensor("a", DType::U8, {4}, a)}), Error);
  EXPECT_THROW(write_safetensors(path, {tensor("__metadata__", DType::U8, {4}, a)}), Error);
  EXPECT_TRUE(fs::is_empty(dir.file("")));
}

TEST(SafetensorsReal, Pycode24M) {
  const std::string path = std::string(CODECLLM_SHARED_MODELS) + "/pycode24M/model.safetensors";
  if (!fs::exists(path)) GTEST_SKIP() << "real model not found at " << path;
  const format::MappedFile map(path);
  const SafetensorsFile st = parse_safetensors(map.bytes(), path);
  EXPECT_EQ(st.data_start, 8u + 6216u);
  EXPECT_EQ(st.metadata, (std::map<std::string, std::string>{{"format", "pt"}}));
  ASSERT_EQ(st.tensors.size(), 57u);
  uint64_t bytes = 0;
  std::map<std::string, std::vector<uint64_t>> shapes;
  for (const TensorInfo& t : st.tensors) {
    EXPECT_EQ(t.dtype, DType::BF16) << t.name;
    bytes += t.data.size();
    shapes[t.name] = t.shape;
  }
  EXPECT_EQ(bytes, 47488320u);
  using Shape = std::vector<uint64_t>;
  EXPECT_EQ(shapes["model.embed_tokens.weight"], (Shape{32000, 288}));
  EXPECT_EQ(shapes["lm_head.weight"], (Shape{32000, 288}));
  EXPECT_EQ(shapes["model.layers.3.self_attn.k_proj.weight"], (Shape{96, 288}));
  EXPECT_EQ(shapes["model.layers.5.mlp.down_proj.weight"], (Shape{288, 768}));
  EXPECT_EQ(shapes["model.norm.weight"], (Shape{288}));
}

}  // namespace
}  // namespace codecllm::model
