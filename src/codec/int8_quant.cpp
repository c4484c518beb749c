#include "codec/int8_quant.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "codecllm/error.hpp"

namespace codecllm::codec {

float bf16_to_float(uint16_t v) {
  uint32_t bits = uint32_t(v) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t float_to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if (std::isnan(f)) return static_cast<uint16_t>((bits >> 16) | 0x40);  // keep it a NaN
  bits += 0x7FFF + ((bits >> 16) & 1);
  return static_cast<uint16_t>(bits >> 16);
}

uint16_t float_to_f16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000;
  const uint32_t a = x & 0x7FFFFFFF;
  if (a >= 0x7F800000) return static_cast<uint16_t>(sign | 0x7C00 | (a > 0x7F800000 ? 0x200 : 0));
  if (a >= 0x477FF000) return static_cast<uint16_t>(sign | 0x7C00);  // rounds past 65504
  if (a < 0x38800000) {  // below 2^-14: an f16 subnormal; scaling by 2^24 is exact
    float v;
    std::memcpy(&v, &a, 4);
    return static_cast<uint16_t>(sign | static_cast<uint32_t>(std::nearbyint(v * 16777216.0f)));
  }
  uint32_t h = ((((a >> 23) - 127 + 15) << 10) | ((a & 0x7FFFFF) >> 13));
  const uint32_t rem = a & 0x1FFF;
  if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) ++h;  // ties to even; may carry into the exponent
  return static_cast<uint16_t>(sign | h);
}

std::vector<uint8_t> dequantize_rows(const int8_t* q, const std::vector<float>& scales, uint64_t cols, DType dtype) {
  const size_t width = dtype_size(dtype);
  std::vector<uint8_t> out(scales.size() * cols * width);
  for (uint64_t r = 0; r < scales.size(); ++r) {
    for (uint64_t i = 0; i < cols; ++i) {
      const uint64_t k = r * cols + i;
      const float w = static_cast<float>(q[k]) * scales[r];
      if (dtype == DType::F32) {
        std::memcpy(&out[k * 4], &w, 4);
      } else {
        const uint16_t h = dtype == DType::BF16 ? float_to_bf16(w) : float_to_f16(w);
        std::memcpy(&out[k * 2], &h, 2);
      }
    }
  }
  return out;
}

float f16_to_float(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1F;
  uint32_t mant = h & 0x3FF;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalize
      int e = -1;
      do {
        mant <<= 1;
        ++e;
      } while ((mant & 0x400) == 0);
      bits = sign | (uint32_t(127 - 15 - e) << 23) | ((mant & 0x3FF) << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7F800000 | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

std::vector<float> to_float(DType dtype, ByteSpan bytes) {
  size_t width = dtype_size(dtype);
  if (!is_codec_float(dtype)) throw Error(std::string("cannot read dtype ") + dtype_name(dtype) + " as float");
  const size_t n = bytes.size() / width;
  std::vector<float> out(n);
  // One loop per dtype, so that the compiler vectorizes each (a per-element switch did not).
  if (dtype == DType::F32) {
    if (n > 0) std::memcpy(out.data(), bytes.data(), 4 * n);
  } else if (dtype == DType::BF16) {
    for (size_t i = 0; i < n; ++i) {
      uint16_t v;
      std::memcpy(&v, bytes.data() + 2 * i, 2);
      out[i] = bf16_to_float(v);
    }
  } else {
    for (size_t i = 0; i < n; ++i) {
      uint16_t v;
      std::memcpy(&v, bytes.data() + 2 * i, 2);
      out[i] = f16_to_float(v);
    }
  }
  return out;
}

namespace {

// clamp(roundf(x), -127, 127) for |x| < 2^31 (quantized values are at most a few hundred),
// in arithmetic the compiler vectorizes: t = trunc(x) and x - t are exact in float, and a
// fraction of at least one half in magnitude moves t one step away from zero, which is what
// roundf does. The clamp is on integers: a float min/max stays a branch (a float comparison
// may trap, so GCC will not if-convert it) and keeps the loop scalar.
inline int8_t round_to_int8(float x) {
  const auto t = static_cast<int32_t>(x);
  const float d = x - static_cast<float>(t);
  const int32_t r = t + static_cast<int32_t>(d >= 0.5f) - static_cast<int32_t>(d <= -0.5f);
  return static_cast<int8_t>(std::min(std::max(r, -127), 127));
}

}  // namespace

QuantizedMatrix quantize_rows(const std::vector<float>& w, uint64_t rows, uint64_t cols) {
  QuantizedMatrix m;
  m.q.resize(rows * cols);
  m.scales.resize(rows);
  for (uint64_t r = 0; r < rows; ++r) {
    const float* row = w.data() + r * cols;
    float amax = 0.0f;
    for (uint64_t i = 0; i < cols; ++i) amax = std::max(amax, std::fabs(row[i]));
    float scale = amax / 127.0f;
    m.scales[r] = scale;
    int8_t* q = m.q.data() + r * cols;
    if (scale == 0.0f) {
      std::fill(q, q + cols, int8_t{0});
      continue;
    }
    for (uint64_t i = 0; i < cols; ++i) q[i] = round_to_int8(row[i] / scale);
  }
  return m;
}

namespace {

float f32_from_bits(uint32_t v) {
  float f;
  std::memcpy(&f, &v, 4);
  return f;
}

// quantize_rows for one row of raw bits U of a float type, converted as it is read. The
// magnitude |x| of these formats is the bit pattern without the sign, and its integer order
// is the order of |x|: max|x| is an integer max (it vectorizes, where a float max reduction
// does not without -ffast-math), and a row holds a NaN or an Inf iff that max reaches the
// all-ones exponent `inf`.
template <typename U, U kAbsMask, U kInf, float (*ToFloat)(U)>
bool quantize_row_bits(const uint8_t* src, uint64_t cols, int8_t* q, float& scale) {
  U amax = 0;
  for (uint64_t i = 0; i < cols; ++i) {
    U v;
    std::memcpy(&v, src + sizeof(U) * i, sizeof(U));
    amax = std::max<U>(amax, v & kAbsMask);
  }
  if (amax >= kInf) return false;
  scale = ToFloat(amax) / 127.0f;  // ToFloat is exact: the same value as max(fabs(x))
  if (scale == 0.0f) {
    std::fill(q, q + cols, int8_t{0});
    return true;
  }
  for (uint64_t i = 0; i < cols; ++i) {
    U v;
    std::memcpy(&v, src + sizeof(U) * i, sizeof(U));
    q[i] = round_to_int8(ToFloat(v) / scale);
  }
  return true;
}

}  // namespace

bool quantize_row(DType dtype, const uint8_t* src, uint64_t cols, int8_t* q, float& scale) {
  switch (dtype) {
    case DType::BF16:
      return quantize_row_bits<uint16_t, 0x7FFF, 0x7F80, bf16_to_float>(src, cols, q, scale);
    case DType::F16:
      return quantize_row_bits<uint16_t, 0x7FFF, 0x7C00, f16_to_float>(src, cols, q, scale);
    case DType::F32:
      return quantize_row_bits<uint32_t, 0x7FFFFFFF, 0x7F800000, f32_from_bits>(src, cols, q, scale);
    default:
      throw Error(std::string("cannot quantize dtype ") + dtype_name(dtype));
  }
}

}  // namespace codecllm::codec
