// UTF-8 helpers for the tokenizers. Text handed to a tokenizer is not trusted to be valid
// UTF-8: every function here accepts any bytes and treats a byte that does not start a
// well-formed character as a one-byte character of its own, so that byte fallback can
// still represent it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace codecllm::model::utf8 {

// Byte length (1..4) of the character at s[i] (i < s.size()); 1 for an ill-formed byte.
size_t char_len(std::string_view s, size_t i);

// Code point of the character at s[i]; an ill-formed byte decodes to kInvalid.
constexpr uint32_t kInvalid = 0xFFFFFFFF;
uint32_t decode(std::string_view s, size_t i);

// Appends the UTF-8 encoding of a code point (cp <= 0x10FFFF).
void append(std::string* out, uint32_t cp);

}  // namespace codecllm::model::utf8
