// Each matcher walks the regex's alternatives in order, as a backtracking regex engine
// would, and returns the length of the first that matches at the position.
#include "model/split_regex.hpp"

#include <cstdint>

#include "model/unicode_class.hpp"
#include "model/utf8.hpp"

namespace codecllm::model {
namespace {

constexpr std::string_view kGpt2Regex = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr std::string_view kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

struct Char {
  uint32_t cp = 0;
  size_t len = 0;  // 0 past the end of the text
  CharClass cls = CharClass::Other;
};

class Matcher {
 public:
  explicit Matcher(std::string_view text) : text_(text) {}

  Char at(size_t i) const {
    if (i >= text_.size()) return {};
    const uint32_t cp = utf8::decode(text_, i);
    return {cp, utf8::char_len(text_, i), char_class(cp)};
  }

  // End of the run of characters of class `cls` starting at i, at most `max` of them.
  size_t run(size_t i, CharClass cls, size_t max = SIZE_MAX) const {
    for (Char c = at(i); c.len > 0 && c.cls == cls && max > 0; c = at(i), --max) i += c.len;
    return i;
  }

  // 's 't 're 've 'm 'll 'd; the length matched, or 0.
  size_t contraction(size_t i, bool ignore_case) const {
    if (text_[i] != '\'') return 0;
    for (const std::string_view suffix : {"s", "t", "re", "ve", "m", "ll", "d"}) {
      if (text_.size() - i - 1 < suffix.size()) continue;
      bool same = true;
      for (size_t k = 0; k < suffix.size(); ++k) {
        char c = text_[i + 1 + k];
        if (ignore_case && c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
        same = same && c == suffix[k];
      }
      if (same) return 1 + suffix.size();
    }
    return 0;
  }

  // \s+(?!\S)|\s+ at a whitespace character: the whole run when it ends the text, else the
  // run less its last character (which then leads the next word), else one character.
  size_t spaces(size_t i) const {
    size_t end = i, last = i;
    for (Char c = at(end); c.len > 0 && c.cls == CharClass::Space; c = at(end)) {
      last = end;
      end += c.len;
    }
    if (end == text_.size() || last == i) return end - i;
    return last - i;
  }

  size_t gpt2(size_t i) const {
    if (const size_t n = contraction(i, false)) return n;
    // " ?\p{L}+", " ?\p{N}+", " ?[^\s\p{L}\p{N}]+": an optional space, then a run of one class.
    const Char c = at(i);
    const Char next = at(i + c.len);
    if (c.cp == ' ' && next.len > 0 && next.cls != CharClass::Space) {
      return run(i + c.len, next.cls) - i;
    }
    if (c.cls != CharClass::Space) return run(i, c.cls) - i;
    return spaces(i);
  }

  size_t llama3(size_t i, size_t max_digits) const {
    if (const size_t n = contraction(i, true)) return n;
    const Char c = at(i);
    const Char next = at(i + c.len);
    const bool newline = c.cp == '\r' || c.cp == '\n';
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if (c.cls == CharClass::Letter) return run(i, CharClass::Letter) - i;
    if (!newline && c.cls != CharClass::Number && next.cls == CharClass::Letter) {
      return run(i + c.len, CharClass::Letter) - i;
    }
    // \p{N}{1,3}
    if (c.cls == CharClass::Number) return run(i, CharClass::Number, max_digits) - i;
    // " ?[^\s\p{L}\p{N}]+[\r\n]*"
    const bool space_then_other = c.cp == ' ' && next.len > 0 && next.cls == CharClass::Other;
    if (c.cls == CharClass::Other || space_then_other) {
      size_t end = run(space_then_other ? i + 1 : i, CharClass::Other);
      while (end < text_.size() && (text_[end] == '\r' || text_[end] == '\n')) ++end;
      return end - i;
    }
    // \s*[\r\n]+: whitespace up to and including the run's last newline.
    size_t end = i, after_newline = 0;
    for (Char s = at(end); s.len > 0 && s.cls == CharClass::Space; s = at(end)) {
      end += s.len;
      if (s.cp == '\r' || s.cp == '\n') after_newline = end;
    }
    if (after_newline > 0) return after_newline - i;
    return spaces(i);
  }

 private:
  std::string_view text_;
};

}  // namespace

bool split_pattern_of(const std::string& regex, SplitPattern* pattern) {
  if (regex == kGpt2Regex) {
    *pattern = SplitPattern::Gpt2;
  } else if (regex == kLlama3Regex) {
    *pattern = SplitPattern::Llama3;
  } else if (regex == kQwen2Regex) {
    *pattern = SplitPattern::Qwen2;
  } else {
    return false;
  }
  return true;
}

std::vector<std::string_view> split_words(std::string_view text, SplitPattern pattern) {
  const Matcher m(text);
  std::vector<std::string_view> words;
  for (size_t i = 0; i < text.size();) {
    const size_t len = pattern == SplitPattern::Gpt2     ? m.gpt2(i)
                       : pattern == SplitPattern::Llama3 ? m.llama3(i, 3)
                                                         : m.llama3(i, 1);
    words.push_back(text.substr(i, len));
    i += len;
  }
  return words;
}

}  // namespace codecllm::model
