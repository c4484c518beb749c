// Lossless float transforms: split each value's bytes into planes so that the exponent,
// which carries almost all of the redundancy of trained weights, becomes one byte plane of
// its own, and sign and mantissa bits (close to random) land in planes stored as they are.
//
//   BF16 (FloatSplit): exponent = bits 14..7; sign_mantissa = sign << 7 | mantissa[6:0]
//   F32  (FloatSplit): exponent = bits 30..23; sign_mantissa = sign << 7 | mantissa[22:16];
//                      mantissa_mid = mantissa[15:8]; mantissa_lo = mantissa[7:0]
//   other widths (BytePlanes): plane k holds byte k of every little-endian element
//                      (for F16, byte1 carries sign, the 5 exponent bits and 2 mantissa bits)
#pragma once

#include <string>
#include <vector>

#include "codecllm/dtype.hpp"
#include "codecllm/span.hpp"
#include "format/index.hpp"

namespace codecllm::codec {

// The transform used for a dtype in lossless mode.
format::Transform lossless_transform(DType dtype);

// Plane roles in payload order for a transform and element width.
std::vector<std::string> plane_roles(format::Transform t, size_t element_size);

// Splits `bytes` (n elements of element_size) into planes[k][i].
std::vector<std::vector<uint8_t>> split_planes(format::Transform t, size_t element_size, ByteSpan bytes);

// The same for n elements at src, into caller memory: dst[k][0, n) for each plane k (one plane
// of n * element_size bytes for Transform::None). Lets callers split block by block.
void split_planes_into(format::Transform t, size_t element_size, const uint8_t* src, size_t n, uint8_t* const* dst);

// Inverse of split_planes. Every plane must hold out.size() / element_size bytes.
void merge_planes(format::Transform t, size_t element_size, const std::vector<ByteSpan>& planes, MutableByteSpan out);

}  // namespace codecllm::codec
