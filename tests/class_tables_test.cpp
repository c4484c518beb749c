// Class tables (rANS "RNS2"): round trips on both axes, the coded size against one table,
// rejection of malformed payloads, the fitting of classes, and where the tensor encoder uses
// them (token embeddings and output heads only).
#include "codec/class_tables.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "codec/rans.hpp"
#include "codec/tensor_codec.hpp"
#include "codecllm/error.hpp"

namespace codecllm::codec {
namespace {

using Bytes = std::vector<uint8_t>;

// Exponent bytes of N(0, scale) weights with a scale per row (axis Rows) or per column:
// the statistics class tables are for.
Bytes scaled_exponents(uint32_t rows, uint32_t cols, ClassAxis axis, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> scale(axis == ClassAxis::Rows ? rows : cols);
  for (auto& s : scale) s = std::exp2(float(rng() % 6)) * 0.004f;
  Bytes out(size_t{rows} * cols);
  for (uint32_t r = 0; r < rows; ++r)
    for (uint32_t c = 0; c < cols; ++c) {
      const float v = normal(rng) * scale[axis == ClassAxis::Rows ? r : c];
      uint32_t b;
      std::memcpy(&b, &v, 4);
      out[size_t{r} * cols + c] = static_cast<uint8_t>(b >> 23);
    }
  return out;
}

Bytes decode(const Bytes& payload, size_t n) {
  Bytes out(n);
  rans_decode(payload, out, "t");
  return out;
}

TEST(ClassTables, RoundTripBothAxes) {
  for (ClassAxis axis : {ClassAxis::Rows, ClassAxis::Columns}) {
    for (uint32_t cols : {32u, 96u, 288u, 1000u}) {
      const uint32_t rows = 77;
      const Bytes data = scaled_exponents(rows, cols, axis, cols);
      for (uint32_t K : {2u, 5u, 16u}) {
        ClassMap m{axis, cols, K, {}};
        std::mt19937 rng(K);
        m.classes.resize(axis == ClassAxis::Rows ? rows : cols);
        for (auto& c : m.classes) c = static_cast<uint8_t>(rng() % K);  // some classes may stay empty
        for (uint32_t cs : {32u, 4096u, 1u << 17}) {                    // chunks across rows, partial last chunk
          for (uint32_t p : {8u, 13u}) {
            RansOptions o;
            o.chunk_symbols = cs;
            o.prob_bits = p;
            const Bytes enc = rans_encode_classes(data, o, m);
            ASSERT_TRUE(rans_is_class_plane(enc));
            EXPECT_EQ(decode(enc, data.size()), data) << "cols " << cols << " K " << K << " chunk " << cs;
            const RansClassPlane h = rans_parse_class_plane(enc, "t");
            EXPECT_EQ(h.map.classes, m.classes);
            EXPECT_EQ(h.map.axis, axis);
          }
        }
      }
    }
  }
}

TEST(ClassTables, FittedClassesBeatOneTable) {
  for (ClassAxis axis : {ClassAxis::Rows, ClassAxis::Columns}) {
    const Bytes data = scaled_exponents(2048, 512, axis, 9);
    const std::optional<ClassMap> m = choose_classes(data, 2048, 512);
    ASSERT_TRUE(m.has_value());
    EXPECT_EQ(m->axis, axis);
    const Bytes one = rans_encode(data), classes = rans_encode_classes(data, {}, *m);
    EXPECT_EQ(decode(classes, data.size()), data);
    EXPECT_LT(double(classes.size()), 0.9 * double(one.size())) << "one table " << one.size();
  }
  // Rows and columns alike: nothing to gain, nothing chosen.
  std::mt19937_64 rng(3);
  Bytes iid(2048 * 512);
  for (auto& b : iid) b = static_cast<uint8_t>(120 + rng() % 4 + rng() % 3);
  EXPECT_FALSE(choose_classes(iid, 2048, 512).has_value());
  EXPECT_FALSE(choose_classes(iid, 1, iid.size()).has_value());  // too few rows to classify
}

TEST(ClassTables, DefectsAreNamed) {
  const uint32_t rows = 40, cols = 64;
  const Bytes data = scaled_exponents(rows, cols, ClassAxis::Rows, 5);
  ClassMap m{ClassAxis::Rows, cols, 3, Bytes(rows)};
  for (uint32_t r = 0; r < rows; ++r) m.classes[r] = static_cast<uint8_t>(r % 3);
  RansOptions o;
  o.chunk_symbols = 512;
  const Bytes enc = rans_encode_classes(data, o, m);
  auto expect_error = [&](const Bytes& bad, const char* fragment) {
    Bytes out(data.size());
    try {
      rans_decode(bad, out, "t");
      ADD_FAILURE() << "accepted; expected " << fragment;
    } catch (const FormatError& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  };
  auto patched = [&](size_t at, uint8_t v) {
    Bytes b = enc;
    b[at] = v;
    return b;
  };
  expect_error(patched(32, 2), "class axis");
  expect_error(patched(33, 1), "class tables");
  expect_error(patched(33, 17), "class tables");
  expect_error(patched(24, 63), "not rows of");
  expect_error(patched(36, 41), "class ids do not match");
  expect_error(patched(44, uint8_t(enc[44] ^ 1)), "frequencies sum");  // first table's first frequency
  // Row 0's class id follows the header and the tables: make it name a table that is not there.
  const RansClassPlane h = rans_parse_class_plane(enc, "t");
  size_t at = kRansClassHeaderBytes;
  for (const auto& f : h.freqs) {
    uint32_t lo = 256, hi = 0;
    for (uint32_t s = 0; s < 256; ++s)
      if (f[s] != 0) lo = std::min(lo, s), hi = std::max(hi, s);
    at += 4 + 2 * (hi - lo + 1);
  }
  expect_error(patched(at, 3), "names no table");
  // Flipped word bits: caught by the final-state check, naming the chunk.
  Bytes flipped = enc;
  flipped[h.data_offset + 200] ^= 0x40;
  expect_error(flipped, "chunk 0");
  for (size_t len = 0; len < enc.size(); len += 7) expect_error(Bytes(enc.begin(), enc.begin() + len), "rANS");
}

TEST(ClassTables, UsedForEmbeddingsAndHeadsOnly) {
  const uint32_t rows = 512, cols = 256;
  std::mt19937_64 rng(11);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  Bytes bf16(size_t{rows} * cols * 2);
  for (uint32_t r = 0; r < rows; ++r) {
    const float scale = std::exp2(float(r % 5)) * 0.003f;
    for (uint32_t c = 0; c < cols; ++c) {
      const float v = normal(rng) * scale;
      uint32_t b;
      std::memcpy(&b, &v, 4);
      const auto h = static_cast<uint16_t>(b >> 16);
      std::memcpy(bf16.data() + 2 * (size_t{r} * cols + c), &h, 2);
    }
  }
  auto exponent_payload = [&](const std::string& name, bool allowed) {
    EncodeOptions o;
    o.class_tables = allowed;
    EncodedTensor t = encode_tensor(name, DType::BF16, {rows, cols}, bf16, o);
    const DecodedTensor d = decode_tensor(
        t.record, [&](const format::PlaneRecord& p) { return ByteSpan(t.payloads[&p - t.record.planes.data()]); }, "t");
    EXPECT_EQ(d.bytes, bf16) << name;
    return t.payloads[0];
  };
  EXPECT_TRUE(rans_is_class_plane(exponent_payload("model.embed_tokens.weight", true)));
  EXPECT_TRUE(rans_is_class_plane(exponent_payload("lm_head.weight", true)));
  EXPECT_FALSE(rans_is_class_plane(exponent_payload("lm_head.weight", false)));
  EXPECT_FALSE(rans_is_class_plane(exponent_payload("model.layers.0.mlp.up_proj.weight", true)));
}

}  // namespace
}  // namespace codecllm::codec
