#include "model/added_tokens.hpp"

#include <algorithm>
#include <cstdint>
#include <utility>

#include "model/unicode_class.hpp"
#include "model/utf8.hpp"

namespace codecllm::model {
namespace {

bool is_space_at(std::string_view text, size_t i) { return char_class(utf8::decode(text, i)) == CharClass::Space; }

}  // namespace

AddedTokenSplitter::AddedTokenSplitter(std::vector<Pattern> patterns) : patterns_(std::move(patterns)) {
  for (size_t i = 0; i < patterns_.size(); ++i) {
    if (!patterns_[i].text.empty()) {
      by_first_byte_[static_cast<uint8_t>(patterns_[i].text[0])].push_back(i);
    }
  }
  for (auto& bucket : by_first_byte_) {
    std::stable_sort(bucket.begin(), bucket.end(),
                     [&](size_t a, size_t b) { return patterns_[a].text.size() > patterns_[b].text.size(); });
  }
}

const AddedTokenSplitter::Pattern* AddedTokenSplitter::match_at(std::string_view text, size_t i) const {
  for (const size_t k : by_first_byte_[static_cast<uint8_t>(text[i])]) {
    if (text.substr(i, patterns_[k].text.size()) == patterns_[k].text) return &patterns_[k];
  }
  return nullptr;
}

std::vector<AddedTokenSplitter::Part> AddedTokenSplitter::split(std::string_view text) const {
  std::vector<Part> parts;
  size_t start = 0;  // of the current stretch
  for (size_t i = 0; i < text.size();) {
    const Pattern* p = match_at(text, i);
    if (p == nullptr) {
      ++i;
      continue;
    }
    size_t end = i;
    if (p->lstrip) {  // the stretch ends after its last non-space character
      end = start;
      for (size_t k = start; k < i; k += utf8::char_len(text, k)) {
        if (!is_space_at(text, k)) end = k + utf8::char_len(text, k);
      }
    }
    parts.push_back({text.substr(start, end - start), start, p->id});
    i += p->text.size();
    while (p->rstrip && i < text.size() && is_space_at(text, i)) i += utf8::char_len(text, i);
    start = i;
  }
  parts.push_back({text.substr(start), start, -1});
  return parts;
}

}  // namespace codecllm::model
