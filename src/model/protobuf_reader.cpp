#include "model/protobuf_reader.hpp"

#include "codecllm/error.hpp"

namespace codecllm::model {

bool ProtoReader::next(ProtoField* field) {
  if (pos_ == data_.size()) return false;
  const uint64_t key = varint();
  if (key >> 3 == 0 || key >> 3 > UINT32_MAX) fail("invalid field number");
  field->number = static_cast<uint32_t>(key >> 3);
  field->bytes = {};
  field->value = 0;
  const auto take = [&](uint64_t n) {
    if (n > data_.size() - pos_) fail("field " + std::to_string(field->number) + " is truncated");
    const std::string_view out = data_.substr(pos_, static_cast<size_t>(n));
    pos_ += static_cast<size_t>(n);
    return out;
  };
  const auto little_endian = [&](size_t n) {
    uint64_t v = 0;
    const std::string_view b = take(n);
    for (size_t i = n; i-- > 0;) v = v << 8 | static_cast<uint8_t>(b[i]);
    return v;
  };
  switch (key & 7) {
    case 0:
      field->type = WireType::Varint;
      field->value = varint();
      break;
    case 1:
      field->type = WireType::Fixed64;
      field->value = little_endian(8);
      break;
    case 2: {
      field->type = WireType::Bytes;
      field->bytes = take(varint());
      break;
    }
    case 5:
      field->type = WireType::Fixed32;
      field->value = little_endian(4);
      break;
    default:
      fail("unsupported wire type " + std::to_string(key & 7));
  }
  return true;
}

uint64_t ProtoReader::varint() {
  uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (pos_ == data_.size()) fail("varint is truncated");
    const uint8_t b = static_cast<uint8_t>(data_[pos_++]);
    v |= uint64_t{b & 0x7Fu} << shift;
    if ((b & 0x80) == 0) return v;
  }
  fail("varint is longer than 10 bytes");
}

void ProtoReader::fail(const std::string& problem) const {
  throw FormatError(what_ + ": malformed protobuf at byte " + std::to_string(pos_) + ": " + problem);
}

}  // namespace codecllm::model
