// Transforms and whole-tensor coding: bit-exact lossless round trips for every float type
// (special values included) and the exact int8 rules.
#include "codec/tensor_codec.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "codec/byte_planes.hpp"
#include "codec/delta.hpp"
#include "codec/int8_quant.hpp"
#include "codecllm/error.hpp"
#include "test_util.hpp"

namespace codecllm {
namespace {

using codec::EncodedTensor;
using format::TensorMode;

void expect_lossless(DType dtype, const std::vector<uint64_t>& shape, const std::vector<uint8_t>& bytes) {
  EncodedTensor e = codec::encode_tensor("t", dtype, shape, bytes, {});
  EXPECT_EQ(e.record.mode, TensorMode::Lossless);
  codec::DecodedTensor d = test::decode(e);
  ASSERT_EQ(d.bytes, bytes) << dtype_name(dtype);
}

TEST(BytePlanes, AllBitPatternsOfBf16AndF16RoundTrip) {
  std::vector<uint8_t> all(2 * 65536);
  for (uint32_t v = 0; v < 65536; ++v) std::memcpy(&all[2 * v], &v, 2);
  expect_lossless(DType::BF16, {65536}, all);
  expect_lossless(DType::F16, {256, 256}, all);
}

TEST(BytePlanes, F32SpecialValuesRoundTrip) {
  std::vector<float> v = {0.0f,
                          -0.0f,
                          1.0f,
                          -1.0f,
                          std::numeric_limits<float>::infinity(),
                          -std::numeric_limits<float>::infinity(),
                          std::numeric_limits<float>::quiet_NaN(),
                          std::numeric_limits<float>::denorm_min(),
                          std::numeric_limits<float>::max(),
                          3.14159f};
  std::vector<uint8_t> bytes(v.size() * 4);
  std::memcpy(bytes.data(), v.data(), bytes.size());
  expect_lossless(DType::F32, {v.size()}, bytes);
}

TEST(BytePlanes, SizesAroundChunkBoundaries) {
  for (size_t n :
       {size_t(0), size_t(1), size_t(31), size_t(32), size_t(33), size_t(65535), size_t(65536), size_t(65537)}) {
    expect_lossless(DType::BF16, {n}, test::gaussian_bf16(n, 0.02, n));
    expect_lossless(DType::F32, {n}, test::gaussian_f32(n, 0.02, n + 1));
    expect_lossless(DType::F16, {n}, test::gaussian_f16(n, 0.02, n + 2));
  }
}

TEST(BytePlanes, Bf16ExponentPlaneIsCodedAndMantissaRaw) {
  EncodedTensor e = codec::encode_tensor("t", DType::BF16, {1 << 20}, test::gaussian_bf16(1 << 20, 0.02, 1), {});
  ASSERT_EQ(e.record.planes.size(), 2u);
  EXPECT_EQ(e.record.planes[0].codec, format::PlaneCodec::Rans);
  EXPECT_EQ(e.record.planes[1].codec, format::PlaneCodec::Raw);
  const double bits = 8.0 * double(e.payloads[0].size() + e.payloads[1].size()) / double(1 << 20);
  EXPECT_LT(bits, 11.0) << "Gaussian BF16 should cost about 8 + 2.7 bits";
}

TEST(BytePlanes, UnknownAndIntegerDtypesAreStoredAsBytes) {
  std::vector<uint8_t> bytes = {1, 2, 3, 4, 5, 6, 7, 8};
  EncodedTensor e = codec::encode_tensor("t", DType::Unknown, {8}, bytes, {});
  EXPECT_EQ(e.record.transform, format::Transform::None);
  EXPECT_EQ(test::decode(e).bytes, bytes);
  expect_lossless(DType::I64, {1}, bytes);
}

TEST(Int8, QuantizerFollowsTheSpecifiedRule) {
  // Row 0: max 1.27 -> scale 0.01; values on exact halves round away from zero.
  std::vector<float> w = {1.27f, -1.27f, 0.005f, -0.005f, 0.0f, 0.635f};
  codec::QuantizedMatrix m = codec::quantize_rows(w, 1, 6);
  const float scale = 1.27f / 127.0f;
  EXPECT_EQ(m.scales[0], scale);
  for (size_t i = 0; i < w.size(); ++i) {
    float expect = std::round(w[i] / scale);
    EXPECT_EQ(m.q[i], static_cast<int8_t>(std::clamp(expect, -127.0f, 127.0f))) << i;
  }
  EXPECT_EQ(m.q[0], 127);
  EXPECT_EQ(m.q[1], -127);
}

TEST(Int8, RoundingMatchesRoundfOnHalvesAndRandomValues) {
  // Values whose quotient lands exactly on, just below and just above every half-integer.
  std::vector<float> w;
  for (int k = -254; k <= 254; ++k) {
    const float x = static_cast<float>(k) * 0.5f;
    w.push_back(x);
    w.push_back(std::nextafter(x, 0.0f));
    w.push_back(std::nextafter(x, 1000.0f));
  }
  std::vector<float> g = test::gaussian(200000, 0.02, 77);
  w.insert(w.end(), g.begin(), g.end());
  w.push_back(127.0f);  // sets max|row|, so scale == 1 for the exact cases
  const uint64_t cols = w.size();
  codec::QuantizedMatrix m = codec::quantize_rows(w, 1, cols);
  for (uint64_t i = 0; i < cols; ++i) {
    const float expect = std::clamp(std::round(w[i] / m.scales[0]), -127.0f, 127.0f);
    ASSERT_EQ(m.q[i], static_cast<int8_t>(expect)) << "value " << w[i];
  }
}

TEST(Int8, AllZeroRowsAndPredictorOnOff) {
  const uint64_t rows = 64, cols = 300;
  std::vector<float> f = test::gaussian(rows * cols, 0.02, 3);
  for (uint64_t i = 0; i < cols; ++i) f[5 * cols + i] = 0.0f;  // an all-zero row
  std::vector<uint8_t> bytes(f.size() * 2);
  for (size_t i = 0; i < f.size(); ++i) {
    uint16_t h = codec::float_to_bf16(f[i]);
    std::memcpy(&bytes[2 * i], &h, 2);
  }
  for (auto choice : {codec::PredictorChoice::Off, codec::PredictorChoice::On, codec::PredictorChoice::Auto}) {
    codec::EncodeOptions o;
    o.mode = TensorMode::Int8;
    o.predictor = choice;
    EncodedTensor e = codec::encode_tensor("model.layers.0.mlp.up_proj.weight", DType::BF16, {rows, cols}, bytes, o);
    ASSERT_EQ(e.record.mode, TensorMode::Int8);
    if (choice == codec::PredictorChoice::On) {
      EXPECT_EQ(e.record.predictor, format::Predictor::Left);
    } else if (choice == codec::PredictorChoice::Off) {
      EXPECT_EQ(e.record.predictor, format::Predictor::None);
    }
    codec::DecodedTensor d = test::decode(e);
    codec::QuantizedMatrix ref = codec::quantize_rows(codec::to_float(DType::BF16, bytes), rows, cols);
    ASSERT_EQ(std::memcmp(d.bytes.data(), ref.q.data(), ref.q.size()), 0);
    ASSERT_EQ(d.scales, ref.scales);
    EXPECT_EQ(d.scales[5], 0.0f);
  }
}

TEST(Int8, NormsEmbeddingsAndNonFiniteStayLossless) {
  codec::EncodeOptions o;
  o.mode = TensorMode::Int8;
  std::vector<uint8_t> vec = test::gaussian_bf16(64, 1.0, 1);
  EXPECT_EQ(codec::encode_tensor("model.norm.weight", DType::BF16, {64}, vec, o).record.mode, TensorMode::Lossless);
  std::vector<uint8_t> mat = test::gaussian_bf16(64 * 8, 1.0, 2);
  EXPECT_EQ(codec::encode_tensor("model.embed_tokens.weight", DType::BF16, {64, 8}, mat, o).record.mode,
            TensorMode::Lossless);
  o.quantize_embeddings = true;
  EXPECT_EQ(codec::encode_tensor("model.embed_tokens.weight", DType::BF16, {64, 8}, mat, o).record.mode,
            TensorMode::Int8);
  uint16_t inf = 0x7F80;
  std::memcpy(&mat[6], &inf, 2);
  EncodedTensor e = codec::encode_tensor("w", DType::BF16, {64, 8}, mat, o);
  EXPECT_EQ(e.record.mode, TensorMode::Lossless);
  EXPECT_FALSE(e.note.empty());
  EXPECT_EQ(test::decode(e).bytes, mat);
}

TEST(Delta, PerRowPrefixSumInvertsTheResiduals) {
  std::vector<uint8_t> in = {10, 12, 250, 3, 100, 99, 98, 0, 255};
  std::vector<uint8_t> res(in.size());
  codec::delta_left_encode(in, 4, res);
  EXPECT_EQ(res[0], 10);
  EXPECT_EQ(res[4], 100);  // first value of the second row is kept
  codec::delta_left_decode(res, 4);
  EXPECT_EQ(res, in);
}

TEST(Float, F16ConversionRoundTripsEveryFiniteValue) {
  for (uint32_t v = 0; v < 65536; ++v) {
    const auto h = static_cast<uint16_t>(v);
    float f = codec::f16_to_float(h);
    if (std::isnan(f)) continue;
    EXPECT_EQ(codec::float_to_f16(f), h) << v;
  }
  for (uint32_t v = 0; v < 65536; ++v) {
    const auto h = static_cast<uint16_t>(v);
    float f = codec::bf16_to_float(h);
    if (!std::isnan(f)) {
      EXPECT_EQ(codec::float_to_bf16(f), h) << v;
    }
  }
}

}  // namespace
}  // namespace codecllm
