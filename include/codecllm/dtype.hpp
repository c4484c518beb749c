// Element types of tensors as checkpoints name them (safetensors spelling).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace codecllm {

enum class DType : uint8_t { F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL, F8_E4M3, F8_E5M2, Unknown };

// Size of one element in bytes; 0 for Unknown.
size_t dtype_size(DType t);
// Safetensors spelling ("BF16", "F32", ...).
const char* dtype_name(DType t);
// Parses a safetensors dtype string; returns DType::Unknown for anything else.
DType dtype_from_name(const std::string& name);
// True for the float types the lossless float transform understands (BF16, F16, F32).
bool is_codec_float(DType t);

}  // namespace codecllm
