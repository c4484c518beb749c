// Follows sentencepiece's bpe_model.cc: text is normalized (spaces -> "▁", a "▁" dummy
// prefix), split into characters (user-defined pieces kept whole and frozen), and the
// adjacent pair whose concatenation is the highest-scoring Normal or UserDefined piece
// merges first. Leftover characters outside the vocabulary become byte tokens <0xNN>.
#include "model/sentencepiece_bpe.hpp"

#include <array>
#include <cmath>
#include <set>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "codecllm/error.hpp"
#include "model/bpe.hpp"
#include "model/utf8.hpp"

namespace codecllm::model {
namespace {

class SentencePieceBpe : public Tokenizer {
 public:
  SentencePieceBpe(std::vector<SpPiece> pieces, const SpOptions& options, const std::string& what)
      : pieces_(std::move(pieces)), options_(options) {
    const int n = static_cast<int>(pieces_.size());
    if (n == 0) throw FormatError(what + ": tokenizer has no pieces");
    if (options_.unk_id < 0 || options_.unk_id >= n) {
      throw FormatError(what + ": unknown-token id " + std::to_string(options_.unk_id) +
                        " is outside the vocabulary of " + std::to_string(n));
    }
    for (const int id : {options_.bos_id, options_.eos_id}) {
      if (id < -1 || id >= n) {
        throw FormatError(what + ": special token id " + std::to_string(id) + " is outside the vocabulary of " +
                          std::to_string(n));
      }
    }
    byte_ids_.fill(-1);
    // Views into pieces_, which is never resized again. On duplicates the first piece wins.
    for (int id = 0; id < n; ++id) {
      const SpPiece& p = pieces_[id];
      const std::string_view text = p.text;
      // Scores order merges; a NaN would break the heap's ordering.
      if (std::isnan(p.score)) throw FormatError(what + ": piece " + std::to_string(id) + " has a NaN score");
      switch (p.type) {
        case PieceType::UserDefined:
          if (!text.empty()) {
            user_defined_.insert(text);
            user_defined_lengths_.insert(text.size());
          }
          [[fallthrough]];
        case PieceType::Normal:
          mergeable_.emplace(text, id);
          words_merge_alone_ = words_merge_alone_ && !spans_word_start(text);
          break;
        case PieceType::Byte: {
          const int byte = parse_byte_piece(text);
          if (byte < 0) {
            throw FormatError(what + ": byte piece " + std::to_string(id) + " is not <0xNN>");
          }
          if (byte_ids_[byte] < 0) byte_ids_[byte] = id;
          break;
        }
        // Unused pieces never form: sentencepiece would form them and split them again.
        case PieceType::Unused:
        case PieceType::Unknown:
        case PieceType::Control:
          break;
      }
    }
  }

  std::vector<int> encode(const std::string& text, bool add_bos) const override {
    std::vector<int> ids;
    if (add_bos && options_.bos_id >= 0) ids.push_back(options_.bos_id);
    const std::string norm = normalize(text);
    std::vector<bool> frozen;
    const std::vector<BpeSymbol> chars = split(norm, &frozen);
    const auto pair = [&](const BpeSymbol& l, const BpeSymbol& r, BpeMerge* m) {
      if (!frozen.empty() && (frozen[l.begin] || frozen[r.begin])) return false;
      const int id = lookup(std::string_view(norm).substr(l.begin, r.end - l.begin));
      if (id < 0) return false;
      *m = {-pieces_[id].score, id};
      return true;
    };
    for (const BpeSymbol& s : words_merge_alone_ ? bpe_merge_words(norm, chars, pair) : bpe_merge(chars, pair)) {
      if (s.id >= 0) {
        ids.push_back(s.id);
      } else if (options_.byte_fallback) {
        for (size_t i = s.begin; i < s.end; ++i) {
          const int id = byte_ids_[static_cast<uint8_t>(norm[i])];
          ids.push_back(id >= 0 ? id : options_.unk_id);
        }
      } else {
        ids.push_back(options_.unk_id);
      }
    }
    return ids;
  }

  std::string decode_token(int prev, int id) const override {
    bool consumed = false;
    return surface(id, prev < 0 || prev == options_.bos_id, &consumed);
  }

  // As sentencepiece's Decode: the leading "▁" of the first piece is the dummy prefix, and
  // with remove_extra_whitespaces every leading "▁" is, until some text has come out.
  std::string decode(const std::vector<int>& ids) const override {
    std::string out;
    bool at_start = true;
    for (const int id : ids) {
      bool consumed = false;
      const std::string text = surface(id, at_start, &consumed);
      out += text;
      if (!text.empty() || (consumed && !options_.remove_extra_whitespaces)) at_start = false;
    }
    return out;
  }

  int vocab_size() const override { return static_cast<int>(pieces_.size()); }
  int bos_id() const override { return options_.bos_id; }
  int eos_id() const override { return options_.eos_id; }

 private:
  // Text of one piece: "▁" becomes a space, and at the start one leading "▁" is dropped
  // (*consumed says so). Control and unknown pieces have no text.
  std::string surface(int id, bool at_start, bool* consumed) const {
    if (id < 0 || id >= vocab_size()) return "";
    const SpPiece& p = pieces_[id];
    if (p.type == PieceType::Control || p.type == PieceType::Unknown) return "";
    if (p.type == PieceType::Byte) {
      return std::string(1, static_cast<char>(parse_byte_piece(p.text)));
    }
    std::string_view text = p.text;
    const bool strips = options_.add_dummy_prefix || options_.remove_extra_whitespaces;
    *consumed = at_start && strips && text.substr(0, kSpaceMark.size()) == kSpaceMark;
    if (*consumed) text.remove_prefix(kSpaceMark.size());
    std::string out;
    for (size_t i = 0; i < text.size();) {
      if (text.substr(i, kSpaceMark.size()) == kSpaceMark) {
        out += ' ';
        i += kSpaceMark.size();
      } else {
        out += text[i++];
      }
    }
    return out;
  }

  // SentencePiece's identity normalization (normalizer.cc): spaces become "▁" and
  // non-empty text gets the dummy prefix "▁". remove_extra_whitespaces drops leading
  // spaces, collapses runs of them and finally drops every trailing "▁", including any
  // "▁" that was in the input text.
  std::string normalize(const std::string& text) const {
    const bool tidy = options_.remove_extra_whitespaces;
    size_t i = 0;
    while (tidy && i < text.size() && text[i] == ' ') ++i;
    std::string out;
    if (i == text.size()) return out;
    if (options_.add_dummy_prefix) out += kSpaceMark;
    bool prev_space = false;
    for (; i < text.size(); ++i) {
      const bool space = text[i] == ' ';
      if (space && !(tidy && prev_space)) out += kSpaceMark;
      if (!space) out += text[i];
      prev_space = space;
    }
    while (tidy && out.size() >= kSpaceMark.size() &&
           std::string_view(out).substr(out.size() - kSpaceMark.size()) == kSpaceMark) {
      out.resize(out.size() - kSpaceMark.size());
    }
    return out;
  }

  // Initial symbols: user-defined pieces (longest match, marked in *frozen by start
  // offset: they never merge) and single characters.
  std::vector<BpeSymbol> split(const std::string& norm, std::vector<bool>* frozen) const {
    std::vector<BpeSymbol> symbols;
    frozen->assign(user_defined_.empty() ? 0 : norm.size(), false);
    for (size_t i = 0; i < norm.size();) {
      size_t len = user_defined_at(norm, i);
      if (len > 0) {
        (*frozen)[i] = true;
      } else {
        len = utf8::char_len(norm, i);
      }
      symbols.push_back({i, i + len, lookup(std::string_view(norm).substr(i, len))});
      i += len;
    }
    return symbols;
  }

  size_t user_defined_at(const std::string& norm, size_t i) const {
    for (auto it = user_defined_lengths_.rbegin(); it != user_defined_lengths_.rend(); ++it) {
      if (*it <= norm.size() - i && user_defined_.count(std::string_view(norm).substr(i, *it))) {
        return *it;
      }
    }
    return 0;
  }

  int lookup(std::string_view piece) const {
    const auto it = mergeable_.find(piece);
    return it == mergeable_.end() ? -1 : it->second;
  }

  std::vector<SpPiece> pieces_;
  SpOptions options_;
  std::unordered_map<std::string_view, int> mergeable_;
  std::unordered_set<std::string_view> user_defined_;
  std::set<size_t> user_defined_lengths_;
  std::array<int, 256> byte_ids_{};
  bool words_merge_alone_ = true;  // no piece spans_word_start
};

}  // namespace

std::unique_ptr<Tokenizer> make_sentencepiece_bpe(std::vector<SpPiece> pieces, const SpOptions& options,
                                                  const std::string& what) {
  return std::make_unique<SentencePieceBpe>(std::move(pieces), options, what);
}

}  // namespace codecllm::model
