// SentencePiece's BPE encoder, shared by the tokenizer.model and llama2.c tokenizer.bin
// loaders (both describe the same kind of vocabulary: pieces with scores and types).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "model/tokenizer.hpp"

namespace codecllm::model {

// Values of SentencePiece's ModelProto.SentencePiece.Type.
enum class PieceType { Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6 };

struct SpPiece {
  std::string text;  // with U+2581 "▁" standing for a space
  float score = 0;
  PieceType type = PieceType::Normal;
};

// The NormalizerSpec and TrainerSpec settings that change how text is encoded.
struct SpOptions {
  bool add_dummy_prefix = true;
  bool remove_extra_whitespaces = false;
  bool byte_fallback = true;
  int unk_id = 0, bos_id = 1, eos_id = 2;  // -1: none (except unk, which must exist)
};

std::unique_ptr<Tokenizer> make_sentencepiece_bpe(std::vector<SpPiece> pieces, const SpOptions& options,
                                                  const std::string& what);

}  // namespace codecllm::model
