#include "codec/byte_planes.hpp"

#include <cstring>

#include "codecllm/error.hpp"

namespace codecllm::codec {

using format::Transform;

format::Transform lossless_transform(DType dtype) {
  if (dtype == DType::BF16 || dtype == DType::F32) return Transform::FloatSplit;
  if (dtype_size(dtype) > 1) return Transform::BytePlanes;
  return Transform::None;  // unknown dtypes and single-byte types: one plane of raw bytes
}

std::vector<std::string> plane_roles(Transform t, size_t element_size) {
  if (t == Transform::FloatSplit && element_size == 2) return {"exponent", "sign_mantissa"};
  if (t == Transform::FloatSplit && element_size == 4)
    return {"exponent", "sign_mantissa", "mantissa_mid", "mantissa_lo"};
  if (t == Transform::BytePlanes) {
    std::vector<std::string> roles;
    for (size_t k = 0; k < element_size; ++k) roles.push_back("byte" + std::to_string(k));
    return roles;
  }
  if (t == Transform::None) return {"bytes"};
  throw Error(std::string("transform ") + format::transform_name(t) + " has no plane layout for width " +
              std::to_string(element_size));
}

void split_planes_into(Transform t, size_t element_size, const uint8_t* src, size_t n, uint8_t* const* dst) {
  if (t == Transform::None) {
    if (n > 0) std::memcpy(dst[0], src, n * element_size);
  } else if (t == Transform::FloatSplit && element_size == 2) {
    // Restrict-qualified locals so that the compiler vectorizes (planes never alias).
    uint8_t* __restrict e = dst[0];
    uint8_t* __restrict sm = dst[1];
    for (size_t i = 0; i < n; ++i) {
      uint16_t v;
      std::memcpy(&v, src + 2 * i, 2);
      e[i] = static_cast<uint8_t>(v >> 7);
      sm[i] = static_cast<uint8_t>(((v >> 8) & 0x80) | (v & 0x7F));
    }
  } else if (t == Transform::FloatSplit && element_size == 4) {
    uint8_t* __restrict e = dst[0];
    uint8_t* __restrict sm = dst[1];
    uint8_t* __restrict mid = dst[2];
    uint8_t* __restrict lo = dst[3];
    for (size_t i = 0; i < n; ++i) {
      uint32_t v;
      std::memcpy(&v, src + 4 * i, 4);
      e[i] = static_cast<uint8_t>(v >> 23);
      sm[i] = static_cast<uint8_t>(((v >> 24) & 0x80) | ((v >> 16) & 0x7F));
      mid[i] = static_cast<uint8_t>(v >> 8);
      lo[i] = static_cast<uint8_t>(v);
    }
  } else {
    for (size_t i = 0; i < n; ++i)
      for (size_t k = 0; k < element_size; ++k) dst[k][i] = src[i * element_size + k];
  }
}

std::vector<std::vector<uint8_t>> split_planes(Transform t, size_t element_size, ByteSpan bytes) {
  const size_t n = bytes.size() / element_size;
  if (t == Transform::None) return {std::vector<uint8_t>(bytes.begin(), bytes.end())};
  std::vector<std::vector<uint8_t>> planes(plane_roles(t, element_size).size(), std::vector<uint8_t>(n));
  std::vector<uint8_t*> dst(planes.size());
  for (size_t k = 0; k < planes.size(); ++k) dst[k] = planes[k].data();
  split_planes_into(t, element_size, bytes.data(), n, dst.data());
  return planes;
}

void merge_planes(Transform t, size_t element_size, const std::vector<ByteSpan>& planes, MutableByteSpan out) {
  const size_t n = out.size() / element_size;
  const size_t expected = plane_roles(t, element_size).size();
  if (planes.size() != expected) throw FormatError("merge_planes: wrong number of planes");
  for (const auto& p : planes)
    if (p.size() != (t == Transform::None ? out.size() : n)) throw FormatError("merge_planes: plane size mismatch");
  uint8_t* dst = out.data();
  if (t == Transform::None) {
    if (n > 0) std::memcpy(dst, planes[0].data(), out.size());
  } else if (t == Transform::FloatSplit && element_size == 2) {
    const uint8_t* e = planes[0].data();
    const uint8_t* sm = planes[1].data();
    for (size_t i = 0; i < n; ++i) {
      auto v = static_cast<uint16_t>(((sm[i] & 0x80) << 8) | (e[i] << 7) | (sm[i] & 0x7F));
      std::memcpy(dst + 2 * i, &v, 2);
    }
  } else if (t == Transform::FloatSplit && element_size == 4) {
    for (size_t i = 0; i < n; ++i) {
      uint32_t sm = planes[1][i];
      uint32_t v = ((sm & 0x80u) << 24) | (uint32_t(planes[0][i]) << 23) | ((sm & 0x7Fu) << 16) |
                   (uint32_t(planes[2][i]) << 8) | planes[3][i];
      std::memcpy(dst + 4 * i, &v, 4);
    }
  } else {
    for (size_t i = 0; i < n; ++i)
      for (size_t k = 0; k < element_size; ++k) dst[i * element_size + k] = planes[k][i];
  }
}

}  // namespace codecllm::codec
