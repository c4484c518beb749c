// GPT-2's byte-to-character table used by byte-level BPE vocabularies: printable bytes
// stand for themselves and the others are moved to U+0100 and up, so that every token is
// printable text.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace codecllm::model {

// Each byte of `bytes` replaced by the UTF-8 of its character.
std::string byte_level_encode(std::string_view bytes);

// The inverse: characters of the table become their bytes; any other character is kept.
std::string byte_level_decode(std::string_view text);

}  // namespace codecllm::model
