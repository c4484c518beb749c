// Per-output-channel symmetric INT8 quantization of a row-major matrix [rows, cols]:
//   scale[r] = max_i |w[r,i]| / 127            (float32 arithmetic)
//   q[r,i]   = clamp(round_half_away_from_zero(w[r,i] / scale[r]), -127, 127)
// An all-zero row gets scale 0 and q 0. Dequantization is q * scale in float32.
// The rule is specified bit for bit so that `verify` can recompute the quantizer's output
// and GPU kernels can reproduce dequantized values exactly.
#pragma once

#include <cstdint>
#include <vector>

#include "codecllm/dtype.hpp"
#include "codecllm/span.hpp"

namespace codecllm::codec {

struct QuantizedMatrix {
  std::vector<int8_t> q;
  std::vector<float> scales;
};

// Reads a float matrix of dtype BF16, F16 or F32 as float32 values.
std::vector<float> to_float(DType dtype, ByteSpan bytes);

QuantizedMatrix quantize_rows(const std::vector<float>& w, uint64_t rows, uint64_t cols);

// One row of quantize_rows, read straight from `cols` values of a BF16, F16 or F32 row (no
// float copy of the tensor): writes q[0, cols) and scale, bit for bit as quantize_rows does.
// Returns false, with q and scale unspecified, when the row holds a NaN or an Inf.
bool quantize_row(DType dtype, const uint8_t* src, uint64_t cols, int8_t* q, float& scale);

float bf16_to_float(uint16_t v);
float f16_to_float(uint16_t v);
uint16_t float_to_bf16(float f);  // round to nearest even, as hardware converts
uint16_t float_to_f16(float f);   // round to nearest even

// Dequantized values (q * scale, float32) converted to a float dtype's bytes.
std::vector<uint8_t> dequantize_rows(const int8_t* q, const std::vector<float>& scales, uint64_t cols, DType dtype);

}  // namespace codecllm::codec
