#include "model/hf_bpe.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <string_view>
#include <unordered_map>

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
  explicit HfBpe(HfConfig config) : c_(std::move(config)) {
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
      pairs_[pair_key(m.left, m.right)] = {static_cast<double>(rank), m.merged};
    }
    for (size_t i = 0; i < c_.added.size(); ++i) {
      const HfAddedToken& a = c_.added[i];
      text_of_[a.id] = a.content;
      special_[a.id] = a.special;
      if (!a.content.empty()) added_by_first_byte_[static_cast<uint8_t>(a.content[0])].push_back(i);
    }
    // Longest first, so that the first hit at a position is the leftmost-longest match.
    for (auto& bucket : added_by_first_byte_) {
      std::stable_sort(bucket.begin(), bucket.end(), [&](size_t a, size_t b) {
        return c_.added[a].content.size() > c_.added[b].content.size();
      });
    }
  }

  std::vector<int> encode(const std::string& text, bool add_bos) const override {
    std::vector<int> ids;
    if (add_bos && c_.bos_id >= 0) ids.push_back(c_.bos_id);
    const std::string_view t = text;
    size_t segment = 0;
    for (size_t i = 0; i < t.size();) {
      const HfAddedToken* added = added_at(t, i);
      if (added == nullptr) {
        ++i;
        continue;
      }
      encode_segment(t.substr(segment, i - segment), segment == 0, &ids);
      ids.push_back(added->id);
      i += added->content.size();
      segment = i;
    }
    encode_segment(t.substr(segment), segment == 0, &ids);
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
      while (strip < static_cast<size_t>(d.strip_start) && strip < out.size() && out[strip] == ' ') ++strip;
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

  const HfAddedToken* added_at(std::string_view text, size_t i) const {
    for (const size_t k : added_by_first_byte_[static_cast<uint8_t>(text[i])]) {
      if (starts_with(text.substr(i), c_.added[k].content)) return &c_.added[k];
    }
    return nullptr;
  }

  void encode_segment(std::string_view segment, bool at_zero, std::vector<int>* ids) const {
    if (segment.empty()) return;
    std::string text(segment);
    for (const HfNormalizerStep& step : c_.normalizer) {
      if (step.kind == HfNormalizerStep::Kind::Prepend) {
        text = step.to + text;
      } else {
        text = replace_all(text, step.from, step.to);
      }
    }
    std::vector<Piece> pieces{{std::move(text), at_zero}};
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
    for (const BpeSymbol& s : bpe_merge(symbols, pair)) ids->push_back(s.id);
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
  std::array<std::vector<size_t>, 256> added_by_first_byte_;
};

}  // namespace

std::unique_ptr<Tokenizer> make_hf_bpe(HfConfig config) { return std::make_unique<HfBpe>(std::move(config)); }

}  // namespace codecllm::model
