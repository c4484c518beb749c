// Zstd planes: round trips through libzstd, the choice between byte planes and whole values,
// and the refusal of every malformed payload (wrong sizes, frames that lie, bytes flipped).
#include "codec/zstd_plane.hpp"

#include <gtest/gtest.h>

#include <cstring>

#include "codec/tensor_codec.hpp"
#include "codecllm/bytes.hpp"
#include "codecllm/error.hpp"
#include "test_util.hpp"

namespace codecllm {
namespace {

using codec::PlaneCoder;
using format::PlaneCodec;

std::vector<uint8_t> decode_plane_bytes(const std::vector<uint8_t>& payload, size_t n) {
  std::vector<uint8_t> out(n);
  codec::zstd_decode(payload, out, "test");
  return out;
}

TEST(ZstdPlane, RoundTripsEveryChunkLayout) {
  for (size_t n : {size_t{0}, size_t{1}, size_t{4095}, size_t{4096}, size_t{4097}, size_t{300000}}) {
    std::vector<uint8_t> plane(n);
    for (size_t i = 0; i < n; ++i) plane[i] = uint8_t((i * 7) ^ (i >> 5));
    const std::vector<uint8_t> payload = codec::zstd_encode(plane, {3, 4096});
    const codec::ZstdPlaneHeader h = codec::zstd_parse_header(payload, "test");
    EXPECT_EQ(h.num_chunks, (n + 4095) / 4096);
    for (const codec::ZstdFrame& f : codec::zstd_frames(payload, h)) EXPECT_EQ(f.begin % codec::kZstdFrameAlign, 0u);
    EXPECT_EQ(decode_plane_bytes(payload, n), plane) << n;
  }
}

TEST(ZstdPlane, RefusesMalformedPayloads) {
  std::vector<uint8_t> plane(20000);
  for (size_t i = 0; i < plane.size(); ++i) plane[i] = uint8_t(i % 13);
  const std::vector<uint8_t> good = codec::zstd_encode(plane, {3, 8192});
  auto refuses = [&](std::vector<uint8_t> bad, size_t n, const char* why) {
    std::vector<uint8_t> out(n);
    EXPECT_THROW(codec::zstd_decode(bad, out, "test"), FormatError) << why;
  };
  refuses(good, plane.size() - 1, "wrong decoded size");
  refuses(std::vector<uint8_t>(good.begin(), good.end() - 1), plane.size(), "truncated");
  auto with = [&](size_t at, uint64_t v, int bytes) {
    std::vector<uint8_t> b = good;
    if (bytes == 4) store_le32(b.data() + at, uint32_t(v));
    if (bytes == 8) store_le64(b.data() + at, v);
    return b;
  };
  refuses(with(0, 0x12345678, 4), plane.size(), "magic");
  refuses(with(4, 0, 4), plane.size(), "chunk size 0");
  refuses(with(16, 7, 4), plane.size(), "chunk count");
  refuses(with(20, 1, 4), plane.size(), "reserved");
  refuses(with(24, 1ull << 40, 8), plane.size(), "frame end out of bounds");
  refuses(with(24, load_le64(good.data() + 32), 8), plane.size(), "two frames in one chunk's bytes");
  // Every byte of the frames flipped in turn: the frame checksum or its structure catches it.
  const size_t frames_at = 24 + 8 * 3;
  for (size_t at = frames_at; at < good.size(); at += 97) {
    std::vector<uint8_t> b = good;
    b[at] ^= 0x5a;
    std::vector<uint8_t> out(plane.size());
    try {
      codec::zstd_decode(b, out, "test");
      ADD_FAILURE() << "a flipped byte at " << at << " went unnoticed";
    } catch (const FormatError&) {
    }
  }
}

codec::EncodeOptions zstd_options(format::TensorMode mode = format::TensorMode::Lossless) {
  codec::EncodeOptions o;
  o.mode = mode;
  o.coder = PlaneCoder::Zstd;
  return o;
}

TEST(ZstdTensor, GaussianBf16KeepsBytePlanesAndRoundTrips) {
  const std::vector<uint8_t> w = test::gaussian_bf16(256 * 512, 0.02, 1);
  const codec::EncodedTensor e = codec::encode_tensor("w", DType::BF16, {256, 512}, w, zstd_options());
  // Near-random mantissas hide the exponents' redundancy from an LZ coder of whole values.
  EXPECT_EQ(e.record.transform, format::Transform::FloatSplit);
  EXPECT_EQ(e.record.planes[0].codec, PlaneCodec::Zstd);
  EXPECT_EQ(e.record.planes[1].codec, PlaneCodec::Raw);
  EXPECT_EQ(test::decode(e).bytes, w);
}

TEST(ZstdTensor, RepetitiveValuesKeepWholeValues) {
  std::vector<uint8_t> w(2 * 64 * 1024);
  for (size_t i = 0; i < w.size() / 2; ++i) {
    const uint16_t v = uint16_t(0x3c00 + (i % 5) * 0x1234);
    std::memcpy(&w[2 * i], &v, 2);
  }
  codec::EncodeOptions small_frames = zstd_options();
  small_frames.zstd.chunk_bytes = 4096;  // as tests/gpu_decode_test.cpp codes it
  EXPECT_EQ(codec::encode_tensor("w", DType::BF16, {64, 1024}, w, small_frames).record.transform,
            format::Transform::None);
  const codec::EncodedTensor e = codec::encode_tensor("w", DType::BF16, {64, 1024}, w, zstd_options());
  EXPECT_EQ(e.record.transform, format::Transform::None);
  ASSERT_EQ(e.record.planes.size(), 1u);
  EXPECT_EQ(e.record.planes[0].codec, PlaneCodec::Zstd);
  EXPECT_EQ(test::decode(e).bytes, w);
}

TEST(ZstdTensor, Int8GoesUnpredictedAndExact) {
  const std::vector<uint8_t> w = test::gaussian_bf16(128 * 256, 0.02, 2);
  const codec::EncodedTensor e =
      codec::encode_tensor("w", DType::BF16, {128, 256}, w, zstd_options(format::TensorMode::Int8));
  ASSERT_EQ(e.record.mode, format::TensorMode::Int8);
  EXPECT_EQ(e.record.predictor, format::Predictor::None);
  EXPECT_EQ(e.record.plane("int8")->codec, PlaneCodec::Zstd);
  const codec::EncodedTensor r = codec::encode_tensor("w", DType::BF16, {128, 256}, w, [] {
    codec::EncodeOptions o;
    o.mode = format::TensorMode::Int8;
    o.predictor = codec::PredictorChoice::Off;
    return o;
  }());
  EXPECT_EQ(test::decode(e).bytes, test::decode(r).bytes);  // the same int8 values whichever coder holds them
}

}  // namespace
}  // namespace codecllm
