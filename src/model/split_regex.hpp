// The word-splitting regexes of byte-level BPE tokenizers, matched by hand: std::regex
// has no \p{L} or \p{N}. Only these known patterns are supported; a tokenizer.json with
// another pattern is rejected rather than split differently.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace codecllm::model {

enum class SplitPattern {
  Gpt2,    // GPT-2's: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  Llama3,  // Llama 3's: case-insensitive contractions, letters with one leading non-letter,
           // numbers in groups of up to 3, punctuation runs taking trailing newlines
  Qwen2,   // Llama 3's with single digits (\p{N} instead of \p{N}{1,3})
};

// The pattern a regex string names, or false when it is not one of the supported ones.
bool split_pattern_of(const std::string& regex, SplitPattern* pattern);

// Splits text into consecutive matches of the pattern (they always cover the whole text).
std::vector<std::string_view> split_words(std::string_view text, SplitPattern pattern);

}  // namespace codecllm::model
