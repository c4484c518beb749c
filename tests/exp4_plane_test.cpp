// Exp4 planes: round trips with and without escapes at every kind of position, the size the
// coding promises on Gaussian BF16 weights (at most 12.2 bits a weight), and the refusal of
// every malformed payload (header fields, escape tables that lie, codes without escapes).
#include "codec/exp4_plane.hpp"

#include <gtest/gtest.h>

#include <algorithm>

#include "codec/freq_table.hpp"
#include "codec/tensor_codec.hpp"
#include "codecllm/bytes.hpp"
#include "codecllm/error.hpp"
#include "test_util.hpp"

namespace codecllm {
namespace {

using format::PlaneCodec;

std::vector<uint8_t> encode(const std::vector<uint8_t>& plane) {
  return codec::exp4_encode(plane, codec::histogram(plane));
}

std::vector<uint8_t> decode(const std::vector<uint8_t>& payload, size_t n) {
  std::vector<uint8_t> out(n);
  codec::exp4_decode(payload, out, "test");
  return out;
}

TEST(Exp4Plane, RoundTripsWithEscapesAnywhere) {
  for (size_t n : {size_t{0}, size_t{1}, size_t{7}, size_t{4095}, size_t{4096}, size_t{4097}, size_t{70001}}) {
    std::vector<uint8_t> plane(n);
    for (size_t i = 0; i < n; ++i) plane[i] = uint8_t(118 + (i * 2654435761u >> 7) % 9);  // a window's worth
    // Escapes: zeros, the top of the byte range, at block edges, and a run of them.
    for (size_t i : {size_t{0}, size_t{4095}, size_t{4096}, n / 2, n / 2 + 1, n / 2 + 2, n - 1})
      if (i < n) plane[i] = i % 2 == 0 ? 0 : 255;
    const std::vector<uint8_t> payload = encode(plane);
    EXPECT_EQ(decode(payload, n), plane) << n;
    if (n >= 4095) {  // the window holds 118..126, every 0 and 255 is an escape
      const codec::Exp4Layout l = codec::exp4_parse(payload, "test");
      EXPECT_LE(l.header.base, 118u) << n;
      EXPECT_GE(l.header.base + 14, 126u) << n;
      EXPECT_EQ(l.header.escapes,
                size_t(std::count(plane.begin(), plane.end(), 0) + std::count(plane.begin(), plane.end(), 255)))
          << n;
    }
  }
}

TEST(Exp4Plane, EveryExponentCanBeEscaped) {
  std::vector<uint8_t> plane(size_t{256} * 40);
  for (size_t i = 0; i < plane.size(); ++i) plane[i] = uint8_t(i < 256 ? i : 100 + i % 15);
  EXPECT_EQ(decode(encode(plane), plane.size()), plane);
}

// The promise of the coding: Gaussian BF16 weights (the shape of trained ones) cost at most
// 12.2 bits each with the raw sign_mantissa plane, and come back bit for bit.
TEST(Exp4Tensor, GaussianBf16CostsTwelveBitsAndRoundTrips) {
  codec::EncodeOptions o;
  o.coder = codec::PlaneCoder::Exp4;
  for (double sigma : {0.02, 0.005, 1.0}) {
    const std::vector<uint8_t> w = test::gaussian_bf16(size_t{512} * 1024, sigma, 3);
    const codec::EncodedTensor e = codec::encode_tensor("w", DType::BF16, {512, 1024}, w, o);
    ASSERT_EQ(e.record.planes.size(), 2u);
    EXPECT_EQ(e.record.planes[0].codec, PlaneCodec::Exp4);
    EXPECT_EQ(e.record.planes[1].codec, PlaneCodec::Raw);
    const double bits = 8.0 * double(e.record.planes[0].size + e.record.planes[1].size) / (512 * 1024);
    EXPECT_LE(bits, 12.2) << sigma;
    EXPECT_EQ(test::decode(e).bytes, w) << sigma;
  }
}

// Other dtypes and int8 values keep rANS under the exp4 coder: only BF16 exponents use it.
TEST(Exp4Tensor, OnlyBf16ExponentsTakeIt) {
  codec::EncodeOptions o;
  o.coder = codec::PlaneCoder::Exp4;
  const std::vector<uint8_t> w = test::gaussian_bf16(size_t{128} * 256, 0.02, 4);
  std::vector<uint8_t> f16(w.size());
  for (size_t i = 0; i < w.size(); i += 2) {  // a plausible F16 pattern: 0x2xxx..0x3xxx
    f16[i] = w[i];
    f16[i + 1] = uint8_t(0x20 | (w[i + 1] & 0x1f));
  }
  const codec::EncodedTensor h = codec::encode_tensor("w", DType::F16, {128, 256}, f16, o);
  for (const auto& p : h.record.planes) EXPECT_NE(p.codec, PlaneCodec::Exp4);
  o.mode = format::TensorMode::Int8;
  const codec::EncodedTensor q = codec::encode_tensor("w", DType::BF16, {128, 256}, w, o);
  EXPECT_EQ(q.record.mode, format::TensorMode::Int8);
  EXPECT_EQ(q.record.planes[0].codec, PlaneCodec::Rans);
  o.coder = codec::PlaneCoder::Rans;
  EXPECT_EQ(test::decode(q).bytes, test::decode(codec::encode_tensor("w", DType::BF16, {128, 256}, w, o)).bytes);
}

TEST(Exp4Plane, RefusesMalformedPayloads) {
  std::vector<uint8_t> plane(10000);
  for (size_t i = 0; i < plane.size(); ++i) plane[i] = uint8_t(120 + i % 7);
  plane[5] = 3;
  plane[9000] = 250;
  const std::vector<uint8_t> good = encode(plane);
  const codec::Exp4Layout l = codec::exp4_parse(good, "test");
  ASSERT_EQ(l.header.escapes, 2u);
  auto refuses = [&](std::vector<uint8_t> bad, size_t n, const char* why) {
    std::vector<uint8_t> out(n);
    EXPECT_THROW(codec::exp4_decode(bad, out, "test"), FormatError) << why;
  };
  auto with = [&](size_t at, uint64_t v, int bytes) {
    std::vector<uint8_t> b = good;
    if (bytes == 1) b[at] = uint8_t(v);
    if (bytes == 2) store_le16(b.data() + at, uint32_t(v));
    if (bytes == 4) store_le32(b.data() + at, uint32_t(v));
    if (bytes == 8) store_le64(b.data() + at, v);
    return b;
  };
  refuses(good, plane.size() - 1, "wrong decoded size");
  refuses(std::vector<uint8_t>(good.begin(), good.end() - 1), plane.size(), "truncated");
  refuses(with(0, 0x12345678, 4), plane.size(), "magic");
  refuses(with(4, 242, 4), plane.size(), "base past 241");
  refuses(with(8, plane.size() + 1, 8), plane.size(), "symbol count");
  refuses(with(16, 4000, 4), plane.size(), "block size not a multiple of 16");
  refuses(with(20, 2, 4), plane.size(), "block count");
  refuses(with(24, 3, 8), plane.size(), "escape count");
  refuses(with(l.escape_end, 2, 4), plane.size(), "first block claims both escapes");
  refuses(with(l.escape_end + 8, 1, 4), plane.size(), "table ends short of the escape count");
  refuses(with(l.escape_at, 4096, 2), plane.size(), "escape outside its block");
  refuses(with(l.escape_at, 6, 2), plane.size(), "escape at an element whose code is not 15");
  refuses(with(l.codes + 3, 0xF0 | good[l.codes + 3], 1), plane.size(), "code 15 without an escape");
  refuses(with(l.codes + 2, good[l.codes + 2] & 0x0F, 1), plane.size(), "escape whose code is not 15");
}

}  // namespace
}  // namespace codecllm
