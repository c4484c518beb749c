// A minimal reader of the protobuf wire format, enough to walk SentencePiece's ModelProto
// without the protobuf library. Every length is checked against the remaining bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

namespace codecllm::model {

enum class WireType { Varint = 0, Fixed64 = 1, Bytes = 2, Fixed32 = 5 };

struct ProtoField {
  uint32_t number = 0;
  WireType type = WireType::Varint;
  uint64_t value = 0;      // Varint, Fixed64 and Fixed32 payloads
  std::string_view bytes;  // Bytes payload (strings and nested messages)
};

class ProtoReader {
 public:
  // `what` names the message in errors, e.g. "tokenizer.model: pieces[3]".
  ProtoReader(std::string_view data, std::string what) : data_(data), what_(std::move(what)) {}

  // Reads the next field into *field; false at the end of the message. Throws FormatError
  // on truncation, a malformed varint, field number 0, or group wire types.
  bool next(ProtoField* field);

  const std::string& what() const { return what_; }

 private:
  uint64_t varint();
  [[noreturn]] void fail(const std::string& problem) const;

  std::string_view data_;
  size_t pos_ = 0;
  std::string what_;
};

}  // namespace codecllm::model
