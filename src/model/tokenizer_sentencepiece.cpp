// tokenizer.model: SentencePiece's ModelProto, read field by field. Only what changes
// encoding is kept: the pieces, the model type (BPE only), byte fallback, the special ids
// and the normalizer's whitespace switches. precompiled_charsmap (a Unicode normalization
// such as NFKC) is not applied; the Llama models use the identity normalization.
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "codecllm/error.hpp"
#include "model/protobuf_reader.hpp"
#include "model/sentencepiece_bpe.hpp"
#include "model/tokenizer.hpp"

namespace codecllm::model {
namespace {

// Field numbers in sentencepiece_model.proto.
constexpr uint32_t kModelPieces = 1, kModelTrainerSpec = 2, kModelNormalizerSpec = 3;
constexpr uint32_t kPieceText = 1, kPieceScore = 2, kPieceType = 3;
constexpr uint32_t kTrainerModelType = 3, kTrainerByteFallback = 35, kTrainerUnkId = 40, kTrainerBosId = 41,
                   kTrainerEosId = 42;
constexpr uint32_t kNormalizerAddDummyPrefix = 3, kNormalizerRemoveExtraWhitespaces = 4;
constexpr uint64_t kModelTypeBpe = 2;

void expect(const ProtoReader& r, const ProtoField& f, WireType type) {
  if (f.type != type) {
    throw FormatError(r.what() + ": field " + std::to_string(f.number) + " has the wrong wire type");
  }
}

// int32 fields are varints of the value sign-extended to 64 bits.
int to_int32(uint64_t v) { return static_cast<int32_t>(static_cast<uint32_t>(v)); }

SpPiece read_piece(std::string_view bytes, const std::string& what) {
  ProtoReader r(bytes, what);
  SpPiece piece;
  ProtoField f;
  while (r.next(&f)) {
    if (f.number == kPieceText) {
      expect(r, f, WireType::Bytes);
      piece.text = std::string(f.bytes);
    } else if (f.number == kPieceScore) {
      expect(r, f, WireType::Fixed32);
      const auto bits = static_cast<uint32_t>(f.value);
      std::memcpy(&piece.score, &bits, sizeof bits);
    } else if (f.number == kPieceType) {
      expect(r, f, WireType::Varint);
      if (f.value < 1 || f.value > 6) {
        throw FormatError(what + ": unknown piece type " + std::to_string(f.value));
      }
      piece.type = static_cast<PieceType>(f.value);
    }
  }
  return piece;
}

void read_trainer_spec(std::string_view bytes, const std::string& what, SpOptions* options) {
  ProtoReader r(bytes, what);
  uint64_t model_type = 1;  // the proto default, UNIGRAM
  ProtoField f;
  while (r.next(&f)) {
    if (f.type != WireType::Varint) continue;
    switch (f.number) {
      case kTrainerModelType:
        model_type = f.value;
        break;
      case kTrainerByteFallback:
        options->byte_fallback = f.value != 0;
        break;
      case kTrainerUnkId:
        options->unk_id = to_int32(f.value);
        break;
      case kTrainerBosId:
        options->bos_id = to_int32(f.value);
        break;
      case kTrainerEosId:
        options->eos_id = to_int32(f.value);
        break;
      default:
        break;
    }
  }
  if (model_type != kModelTypeBpe) {
    throw FormatError(what + ": SentencePiece model type " + std::to_string(model_type) +
                      " is not supported (only BPE, type 2)");
  }
}

void read_normalizer_spec(std::string_view bytes, const std::string& what, SpOptions* options) {
  ProtoReader r(bytes, what);
  ProtoField f;
  while (r.next(&f)) {
    if (f.type != WireType::Varint) continue;
    if (f.number == kNormalizerAddDummyPrefix) options->add_dummy_prefix = f.value != 0;
    if (f.number == kNormalizerRemoveExtraWhitespaces) {
      options->remove_extra_whitespaces = f.value != 0;
    }
  }
}

}  // namespace

std::unique_ptr<Tokenizer> load_sentencepiece_model(const std::string& bytes, const std::string& what) {
  // Proto defaults for the fields a file may leave out.
  SpOptions options;
  options.byte_fallback = false;
  options.remove_extra_whitespaces = true;
  bool has_trainer_spec = false;
  std::vector<SpPiece> pieces;
  ProtoReader r(bytes, what);
  ProtoField f;
  while (r.next(&f)) {
    if (f.number == kModelPieces) {
      expect(r, f, WireType::Bytes);
      pieces.push_back(read_piece(f.bytes, what + ": pieces[" + std::to_string(pieces.size()) + "]"));
    } else if (f.number == kModelTrainerSpec) {
      expect(r, f, WireType::Bytes);
      read_trainer_spec(f.bytes, what + ": trainer_spec", &options);
      has_trainer_spec = true;
    } else if (f.number == kModelNormalizerSpec) {
      expect(r, f, WireType::Bytes);
      read_normalizer_spec(f.bytes, what + ": normalizer_spec", &options);
    }
  }
  // Without a trainer_spec the model type would default to UNIGRAM, which is not supported.
  if (!has_trainer_spec) throw FormatError(what + ": SentencePiece model has no trainer_spec");
  return make_sentencepiece_bpe(std::move(pieces), options, what);
}

}  // namespace codecllm::model
