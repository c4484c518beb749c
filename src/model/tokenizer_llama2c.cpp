// llama2.c's tokenizer.bin: the pieces and scores of a SentencePiece BPE model with spaces
// written as ' ' instead of "▁" and no piece types. llama2.c fixes the types by position
// (0 <unk>, 1 BOS, 2 EOS) and by spelling (<0xNN> byte tokens); encoding then follows
// SentencePiece, which is what llama2.c's own encoder approximates.
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "codecllm/error.hpp"
#include "model/bpe.hpp"
#include "model/sentencepiece_bpe.hpp"
#include "model/tokenizer.hpp"

namespace codecllm::model {

std::unique_ptr<Tokenizer> load_llama2c_tokenizer(const std::string& bytes, int vocab_size, const std::string& what) {
  if (vocab_size < 3) {
    throw FormatError(what + ": vocabulary of " + std::to_string(vocab_size) +
                      " tokens has no room for <unk>, BOS and EOS");
  }
  // Each token takes at least 8 bytes: reject impossible sizes before allocating for them.
  if ((bytes.size() < 4 ? 0 : (bytes.size() - 4) / 8) < static_cast<size_t>(vocab_size)) {
    throw FormatError(what + ": " + std::to_string(bytes.size()) + " bytes cannot hold " + std::to_string(vocab_size) +
                      " tokens");
  }
  size_t pos = 0;
  const auto take = [&](size_t n, const char* field, int index) {
    if (bytes.size() - pos < n) {
      throw FormatError(what + ": truncated at token " + std::to_string(index) + " (" + field + "); expected " +
                        std::to_string(vocab_size) + " tokens");
    }
    const std::string_view out(bytes.data() + pos, n);
    pos += n;
    return out;
  };
  const auto read32 = [&](void* out, const char* field, int index) {
    std::memcpy(out, take(4, field, index).data(), 4);
  };
  take(4, "header", 0);  // max_token_length: a buffer size for llama2.c, not needed here

  std::vector<SpPiece> pieces(static_cast<size_t>(vocab_size));
  for (int i = 0; i < vocab_size; ++i) {
    SpPiece& p = pieces[i];
    int32_t len = 0;
    read32(&p.score, "score", i);
    read32(&len, "length", i);
    if (len < 0) throw FormatError(what + ": token " + std::to_string(i) + " has negative length");
    const std::string_view text = take(static_cast<size_t>(len), "bytes", i);
    for (const char c : text) {
      if (c == ' ') {
        p.text += kSpaceMark;
      } else {
        p.text += c;
      }
    }
    p.type = i == 0                          ? PieceType::Unknown
             : i <= 2                        ? PieceType::Control
             : parse_byte_piece(p.text) >= 0 ? PieceType::Byte
                                             : PieceType::Normal;
  }
  if (pos != bytes.size()) {
    throw FormatError(what + ": " + std::to_string(bytes.size() - pos) + " bytes follow the " +
                      std::to_string(vocab_size) + " tokens (wrong vocabulary size?)");
  }
  return make_sentencepiece_bpe(std::move(pieces), SpOptions{}, what);
}

}  // namespace codecllm::model
