#include "model/hf_bpe.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <string_view>
#include <unordered_map>

#include "model/added_tokens.hpp"
#include "model/bpe.hpp"
#include "model/byte_level.hpp"
#include "model/utf8.hpp"

namespace codecllm::model {
namespace {

std::string replace_all(std::string_view text, std::string_view from, std::string_view to) {
  if (from.empty()) return std::string(text);
  std::string out;
  for (size_t i = 0;;) {
    const size_t at = text.find(from, i);
    out.append(text.substr(i, at - i));
    if (at == std::string_view::npos) return out;
    out.append(to);
    i = at + from.size();
  }
}

bool starts_with(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }

// A stretch of text during pre-tokenization. `at_zero`: it starts at offset 0 of the
// input, which is where Metaspace's "first" scheme puts the dummy prefix.
struct Piece {
  std::string text;
  bool at_zero = false;
};

class HfBpe : public Tokenizer {
 public:
  explicit HfBpe(HfConfig config)
      : c_(std::move(config)), raw_added_(patterns(false)), normalized_added_(patterns(true)) {
    size_t n = c_.tokens.size();
    for (const HfAddedToken& a : c_.added) n = std::max(n, static_cast<size_t>(a.id) + 1);
    text_of_ = c_.tokens;
    text_of_.resize(n);
    special_.assign(n, false);
    byte_ids_.fill(-1);
    // Views into c_.tokens, which is never resized again.
    for (size_t id = 0; id < c_.tokens.size(); ++id) {
      const std::string_view token = c_.tokens[id];
      if (token.empty()) continue;
      token_ids_.emplace(token, static_cast<int>(id));
      const int byte = parse_byte_piece(token);
      if (byte >= 0 && byte_ids_[byte] < 0) byte_ids_[byte] = static_cast<int>(id);
    }
    // Later duplicates of a pair win, as in `tokenizers` (it collects merges into a map).
    for (size_t rank = 0; rank < c_.merges.size(); ++rank) {
      const HfMerge& m = c_.merges[rank];
      pairs_[pair_key(m.left, m.right)] = {static_cast<float>(rank), m.merged};
      words_merge_alone_ = words_merge_alone_ && !spans_word_start(c_.tokens[m.merged]);
    }
    // A "normalized" added token reads back as its normalized form, as in `tokenizers`.
    for (const HfAddedToken& a : c_.added) {
      text_of_[a.id] = a.normalized ? normalize(a.content) : a.content;
      special_[a.id] = a.special;
    }
  }

  std::vector<int> encode(const std::string& text, bool add_bos) const override {
    std::vector<int> ids;
    if (add_bos && c_.bos_id >= 0) ids.push_back(c_.bos_id);
    for (const AddedTokenSplitter::Part& raw : raw_added_.split(text)) {
      if (!raw.text.empty()) {
        const std::string norm = normalize(raw.text);
        for (const AddedTokenSplitter::Part& part : normalized_added_.split(norm)) {
          encode_segment(part.text, raw.offset == 0 && part.offset == 0, &ids);
          if (part.token >= 0) ids.push_back(part.token);
        }
      }
      if (raw.token >= 0) ids.push_back(raw.token);
    }
    return ids;
  }

  std::string decode_token(int prev, int id) const override {
    if (id < 0 || id >= vocab_size() || special_[id]) return "";
    const std::string& token = text_of_[id];
    const HfDecoder& d = c_.decoder;
    if (d.byte_fallback) {
      const int byte = parse_byte_piece(token);
      if (byte >= 0) return std::string(1, static_cast<char>(byte));
    }
    std::string out = token;
    for (const auto& [from, to] : d.replaces) out = replace_all(out, from, to);
    if (d.byte_level) out = byte_level_decode(out);
    if (prev < 0 || prev == c_.bos_id) {
      size_t strip = 0;
      while (strip < static_cast<size_t>(d.strip_start) && strip < out.size() && out[strip] == ' ') {
        ++strip;
      }
      out.erase(0, strip);
    }
    return out;
  }

  std::string decode(const std::vector<int>& ids) const override {
    std::string out;
    int prev = -1;
    for (const int id : ids) {
      if (id < 0 || id >= vocab_size() || special_[id]) continue;
      out += decode_token(prev, id);
      prev = id;
    }
    return out;
  }

  int vocab_size() const override { return static_cast<int>(text_of_.size()); }
  int bos_id() const override { return c_.bos_id; }
  int eos_id() const override { return c_.eos_id; }

 private:
  static uint64_t pair_key(int left, int right) {
    return static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32 | static_cast<uint32_t>(right);
  }

  // What the splitters look for: "normalized" tokens are matched in their normalized form.
  std::vector<AddedTokenSplitter::Pattern> patterns(bool normalized) const {
    std::vector<AddedTokenSplitter::Pattern> out;
    for (const HfAddedToken& a : c_.added) {
      if (a.normalized != normalized) continue;
      out.push_back({normalized ? normalize(a.content) : a.content, a.id, a.lstrip, a.rstrip});
    }
    return out;
  }

  std::string normalize(std::string_view text) const {
    std::string out(text);
    for (const HfNormalizerStep& step : c_.normalizer) {
      if (step.kind == HfNormalizerStep::Kind::Prepend) {
        if (!out.empty()) out.insert(0, step.to);
      } else {
        out = replace_all(out, step.from, step.to);
      }
    }
    return out;
  }

  void encode_segment(std::string_view segment, bool at_zero, std::vector<int>* ids) const {
    if (segment.empty()) return;
    std::vector<Piece> pieces{{std::string(segment), at_zero}};
    for (const HfPreTokenizerStep& step : c_.pre_tokenizer) {
      std::vector<Piece> next;
      for (Piece& p : pieces) pre_tokenize(step, std::move(p), &next);
      pieces = std::move(next);
    }
    for (const Piece& p : pieces) encode_word(p.text, ids);
  }

  static void pre_tokenize(const HfPreTokenizerStep& step, Piece p, std::vector<Piece>* out) {
    using Kind = HfPreTokenizerStep::Kind;
    const auto emit = [&](std::string_view word, bool first) {
      if (!word.empty()) out->push_back({std::string(word), first && p.at_zero});
    };
    if (step.kind == Kind::Metaspace) {
      std::string text = replace_all(p.text, " ", step.replacement);
      const bool prepend = step.prepend == HfPreTokenizerStep::Prepend::Always ||
                           (step.prepend == HfPreTokenizerStep::Prepend::First && p.at_zero);
      if (prepend && !starts_with(text, step.replacement)) text = step.replacement + text;
      if (!step.split || step.replacement.empty()) return emit(text, true);
      // Each replacement character starts a new word.
      size_t start = 0;
      for (size_t at = text.find(step.replacement, 1); at != std::string::npos;
           at = text.find(step.replacement, at + step.replacement.size())) {
        emit(std::string_view(text).substr(start, at - start), start == 0);
        start = at;
      }
      return emit(std::string_view(text).substr(start), start == 0);
    }
    if (step.kind == Kind::ByteLevel) {
      std::string text = std::move(p.text);
      if (step.add_prefix_space && !starts_with(text, " ")) text.insert(0, " ");
      if (!step.use_regex) return emit(byte_level_encode(text), true);
      bool first = true;
      for (const std::string_view w : split_words(text, SplitPattern::Gpt2)) {
        emit(byte_level_encode(w), first);
        first = false;
      }
      return;
    }
    bool first = true;
    for (const std::string_view w : split_words(p.text, step.pattern)) {
      emit(w, first);
      first = false;
    }
  }

  // BPE of one word: characters (or their byte tokens, or <unk>) merged by merge rank.
  void encode_word(const std::string& word, std::vector<int>* ids) const {
    if (c_.ignore_merges) {
      const auto it = token_ids_.find(word);
      if (it != token_ids_.end()) return ids->push_back(it->second);
    }
    std::vector<BpeSymbol> symbols;
    for (size_t i = 0; i < word.size();) {
      const size_t len = utf8::char_len(word, i);
      const auto it = token_ids_.find(std::string_view(word).substr(i, len));
      if (it != token_ids_.end()) {
        symbols.push_back({i, i + len, it->second});
      } else if (c_.byte_fallback && all_bytes_known(word, i, len)) {
        for (size_t k = i; k < i + len; ++k) {
          symbols.push_back({k, k + 1, byte_ids_[static_cast<uint8_t>(word[k])]});
        }
      } else if (c_.unk_id >= 0) {
        if (c_.fuse_unk && !symbols.empty() && symbols.back().id == c_.unk_id) {
          symbols.back().end = i + len;
        } else {
          symbols.push_back({i, i + len, c_.unk_id});
        }
      }  // else: `tokenizers` drops a character it cannot represent
      i += len;
    }
    const auto pair = [&](const BpeSymbol& l, const BpeSymbol& r, BpeMerge* m) {
      const auto it = pairs_.find(pair_key(l.id, r.id));
      if (it == pairs_.end()) return false;
      *m = it->second;
      return true;
    };
    for (const BpeSymbol& s : words_merge_alone_ ? bpe_merge_words(word, symbols, pair) : bpe_merge(symbols, pair)) {
      ids->push_back(s.id);
    }
  }

  bool all_bytes_known(const std::string& word, size_t i, size_t len) const {
    for (size_t k = i; k < i + len; ++k) {
      if (byte_ids_[static_cast<uint8_t>(word[k])] < 0) return false;
    }
    return true;
  }

  HfConfig c_;
  std::vector<std::string> text_of_;  // by id: added token content, else the vocabulary's
  std::vector<bool> special_;
  std::unordered_map<std::string_view, int> token_ids_;
  std::unordered_map<uint64_t, BpeMerge> pairs_;
  std::array<int, 256> byte_ids_{};
  AddedTokenSplitter raw_added_, normalized_added_;
  bool words_merge_alone_ = true;  // no merge result spans_word_start
};

}  // namespace

std::unique_ptr<Tokenizer> make_hf_bpe(HfConfig config) { return std::make_unique<HfBpe>(std::move(config)); }

}  // namespace codecllm::model
