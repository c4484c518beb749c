// Cuts added tokens (special tokens such as <s> or <|eot_id|>, and extra words) out of
// text before the rest of a Hugging Face pipeline sees it, as `tokenizers` does: the
// leftmost match wins, the longest one at a position; lstrip/rstrip tokens also swallow
// the whitespace beside them.
#pragma once

#include <array>
#include <string>
#include <string_view>
#include <vector>

namespace codecllm::model {

class AddedTokenSplitter {
 public:
  struct Pattern {
    std::string text;
    int id = -1;
    bool lstrip = false, rstrip = false;
  };
  // A stretch of text (at `offset` in the input) and the token that follows it; -1 for the
  // stretch that ends the text.
  struct Part {
    std::string_view text;
    size_t offset = 0;
    int token = -1;
  };

  explicit AddedTokenSplitter(std::vector<Pattern> patterns);

  // The parts of `text`, in order; a text with no added token is one part.
  std::vector<Part> split(std::string_view text) const;

 private:
  const Pattern* match_at(std::string_view text, size_t i) const;

  std::vector<Pattern> patterns_;
  std::array<std::vector<size_t>, 256> by_first_byte_;  // longest pattern first
};

}  // namespace codecllm::model
