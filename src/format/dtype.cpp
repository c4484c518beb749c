#include "codecllm/dtype.hpp"

namespace codecllm {

namespace {
struct DTypeInfo {
  DType type;
  const char* name;
  size_t size;
};
constexpr DTypeInfo kTypes[] = {
    {DType::F32, "F32", 4}, {DType::F16, "F16", 2},   {DType::BF16, "BF16", 2},       {DType::F64, "F64", 8},
    {DType::I64, "I64", 8}, {DType::I32, "I32", 4},   {DType::I16, "I16", 2},         {DType::I8, "I8", 1},
    {DType::U8, "U8", 1},   {DType::BOOL, "BOOL", 1}, {DType::F8_E4M3, "F8_E4M3", 1}, {DType::F8_E5M2, "F8_E5M2", 1},
};
}  // namespace

size_t dtype_size(DType t) {
  for (const auto& i : kTypes)
    if (i.type == t) return i.size;
  return 0;
}

const char* dtype_name(DType t) {
  for (const auto& i : kTypes)
    if (i.type == t) return i.name;
  return "UNKNOWN";
}

DType dtype_from_name(const std::string& name) {
  for (const auto& i : kTypes)
    if (name == i.name) return i.type;
  return DType::Unknown;
}

bool is_codec_float(DType t) { return t == DType::BF16 || t == DType::F16 || t == DType::F32; }

}  // namespace codecllm
