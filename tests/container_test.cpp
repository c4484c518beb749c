// The .cllm container: round trips, atomic output, and detection of every kind of damage.
#include "format/container.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <random>

#include "codec/tensor_codec.hpp"
#include "codecllm/error.hpp"
#include "format/checksum.hpp"
#include "test_util.hpp"

namespace codecllm {
namespace {

using format::ContainerReader;
using format::ContainerWriter;

// A small container with two tensors (one BF16 matrix, one F32 vector) and a carried file.
std::string write_sample(const std::string& path) {
  std::vector<uint8_t> w = test::gaussian_bf16(64 * 96, 0.02, 7);
  std::vector<uint8_t> v = test::gaussian_f32(96, 1.0, 8);
  ContainerWriter writer(path);
  format::Index index;
  index.mode = "lossless";
  index.source = "test";
  index.producer = "test";
  std::string config = R"({"model_type":"llama"})";
  index.blobs.push_back({"config.json",
                         writer.add_payload(ByteSpan(reinterpret_cast<const uint8_t*>(config.data()), config.size())),
                         config.size(), format::xxh3_64(config.data(), config.size())});
  for (auto& [name, dtype, shape, bytes] :
       std::vector<std::tuple<std::string, DType, std::vector<uint64_t>, std::vector<uint8_t>*>>{
           {"w", DType::BF16, {64, 96}, &w}, {"v", DType::F32, {96}, &v}}) {
    codec::EncodedTensor e = codec::encode_tensor(name, dtype, shape, *bytes, {});
    for (size_t k = 0; k < e.payloads.size(); ++k) e.record.planes[k].offset = writer.add_payload(e.payloads[k]);
    index.tensors.push_back(e.record);
  }
  writer.finish(index);
  return config;
}

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

// Opens and fully decodes; any damage must surface as codecllm::Error.
void open_and_decode(const std::string& path) {
  ContainerReader r(path);
  for (const auto& t : r.index().tensors)
    codec::decode_tensor(
        t, [&](const format::PlaneRecord& p) { return r.payload(p); }, path);
  for (const auto& b : r.index().blobs) r.blob(b.name);
}

TEST(Container, RoundTripAndAlignment) {
  test::TempDir dir;
  const std::string path = dir.path() + "/m.cllm";
  std::string config = write_sample(path);
  ContainerReader r(path);
  ASSERT_EQ(r.index().tensors.size(), 2u);
  for (const auto& t : r.index().tensors)
    for (const auto& p : t.planes) EXPECT_EQ(p.offset % format::kPayloadAlignment, 0u) << t.name << " " << p.role;
  ByteSpan c = r.blob("config.json");
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(c.data()), c.size()), config);
  EXPECT_NO_THROW(open_and_decode(path));
  const format::TensorRecord* w = r.index().find_tensor("w");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->planes.size(), 2u);
  EXPECT_EQ(w->planes[0].role, "exponent");
  EXPECT_EQ(w->planes[0].codec, format::PlaneCodec::Rans);
  EXPECT_EQ(w->planes[1].codec, format::PlaneCodec::Raw);  // sign+mantissa bits do not compress
}

TEST(Container, NoTemporaryLeftAndNoOutputOnFailure) {
  test::TempDir dir;
  const std::string path = dir.path() + "/m.cllm";
  {
    ContainerWriter writer(path);
    std::vector<uint8_t> bytes(100, 1);
    writer.add_payload(bytes);
    // destroyed without finish(): an interrupted compression
  }
  EXPECT_FALSE(test::file_exists(path));
  EXPECT_TRUE(test::list_dir(dir.path()).empty());
  write_sample(path);
  EXPECT_EQ(test::list_dir(dir.path()), std::vector<std::string>{"m.cllm"});
}

TEST(Container, EveryFlippedByteIsDetected) {
  test::TempDir dir;
  const std::string path = dir.path() + "/m.cllm";
  write_sample(path);
  const std::vector<uint8_t> good = read_file(path);
  ContainerReader r(path);
  // Bytes that matter: the header fields, every payload byte, every index byte. (Padding is
  // not covered by any checksum and carries no information.)
  std::vector<size_t> positions;
  for (size_t i = 0; i < format::kHeaderBytes; ++i) positions.push_back(i);
  for (const auto& t : r.index().tensors)
    for (const auto& p : t.planes)
      for (uint64_t i = 0; i < p.size; i += 7) positions.push_back(p.offset + i);
  const format::FileHeader* h = reinterpret_cast<const format::FileHeader*>(good.data());
  for (uint64_t i = 0; i < h->index_size; i += 3) positions.push_back(h->index_offset + i);
  const std::string bad = dir.path() + "/bad.cllm";
  for (size_t pos : positions) {
    std::vector<uint8_t> bytes = good;
    bytes[pos] ^= 0x10;
    write_bytes(bad, bytes);
    EXPECT_THROW(open_and_decode(bad), Error) << "flip at " << pos;
  }
}

TEST(Container, TruncationIsDetected) {
  test::TempDir dir;
  const std::string path = dir.path() + "/m.cllm";
  write_sample(path);
  const std::vector<uint8_t> good = read_file(path);
  const std::string bad = dir.path() + "/bad.cllm";
  for (size_t len : {size_t(0), size_t(10), size_t(63), size_t(64), size_t(4096), good.size() / 2, good.size() - 1}) {
    write_bytes(bad, std::vector<uint8_t>(good.begin(), good.begin() + static_cast<long>(len)));
    try {
      ContainerReader rr(bad);
      FAIL() << "truncated to " << len << " was accepted";
    } catch (const FormatError& e) {
      EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << "error must name the file: " << e.what();
    }
  }
}

TEST(Container, MissingFileNamesThePath) {
  try {
    ContainerReader r("/nonexistent/x.cllm");
    FAIL();
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/x.cllm"), std::string::npos);
  }
}

TEST(Index, HostileBlobNamesAreRejected) {
  EXPECT_TRUE(format::is_plain_file_name("tokenizer.json"));
  EXPECT_FALSE(format::is_plain_file_name("../etc/passwd"));
  EXPECT_FALSE(format::is_plain_file_name("a/b"));
  EXPECT_FALSE(format::is_plain_file_name(".hidden"));
  EXPECT_FALSE(format::is_plain_file_name(""));
}

TEST(Index, JsonRoundTrip) {
  format::Index idx;
  idx.mode = "int8";
  idx.source = "s";
  idx.producer = "p";
  format::TensorRecord t;
  t.name = "x";
  t.shape = {2, 3};
  t.dtype = DType::BF16;
  t.mode = format::TensorMode::Int8;
  t.transform = format::Transform::Int8Rows;
  t.predictor = format::Predictor::Left;
  t.decoded_size = 6;
  t.decoded_xxh3 = 0x0123456789abcdefull;
  t.planes.push_back({"int8", format::PlaneCodec::Raw, 4096, 6, 6, 42, 1.5});
  idx.tensors.push_back(t);
  format::Index back = format::index_from_json(format::index_to_json(idx), 1 << 20, "mem");
  ASSERT_EQ(back.tensors.size(), 1u);
  EXPECT_EQ(back.tensors[0].decoded_xxh3, t.decoded_xxh3);
  EXPECT_EQ(back.tensors[0].predictor, format::Predictor::Left);
  EXPECT_EQ(back.tensors[0].planes[0].payload_xxh3, 42u);
  EXPECT_THROW(format::index_from_json(format::index_to_json(idx), 4000, "mem"), FormatError);  // offset past end
}

}  // namespace
}  // namespace codecllm
