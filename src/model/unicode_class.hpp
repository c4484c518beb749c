// Unicode character classes used by the pre-tokenizer patterns of byte-level BPE
// tokenizers (\p{L}, \p{N} and \s in the GPT-2 and Llama 3 split regexes).
#pragma once

#include <cstdint>

namespace codecllm::model {

enum class CharClass { Letter, Number, Space, Other };

// Class of a code point; utf8::kInvalid (an ill-formed byte) is Other.
CharClass char_class(uint32_t cp);

}  // namespace codecllm::model
