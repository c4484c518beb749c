// Tokenizers of the Llama family, built from the tokenizer file carried inside a .cllm:
// llama2.c's tokenizer.bin, SentencePiece's tokenizer.model and Hugging Face's
// tokenizer.json (SentencePiece-style and byte-level BPE). Each flavour reproduces the
// library that defines it: SentencePiece for .bin/.model, `tokenizers` for .json.
#pragma once

#include <memory>
#include <string>
#include <vector>

namespace codecllm::model {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // Text -> ids; with add_bos the BOS id is prepended (when the tokenizer has one).
  virtual std::vector<int> encode(const std::string& text, bool add_bos) const = 0;
  // Bytes of token `id` when it follows `prev` (-1 at the start): drops the leading space
  // SentencePiece-style tokens carry at the start or after BOS, turns byte tokens <0xNN>
  // into their byte, and maps byte-level BPE characters back to bytes. A character split
  // over byte tokens comes out as partial UTF-8: callers print bytes as they come.
  // Special tokens and ids outside the vocabulary give "".
  virtual std::string decode_token(int prev, int id) const = 0;
  // Whole-sequence decode, skipping special tokens (Hugging Face's
  // decode(skip_special_tokens=True)).
  virtual std::string decode(const std::vector<int>& ids) const = 0;
  virtual int vocab_size() const = 0;
  virtual int bos_id() const = 0;  // -1 when there is none
  virtual int eos_id() const = 0;  // -1 when there is none
};

// Loaders from the carried file bytes; `what` names the source in error messages. Each
// throws codecllm::FormatError on malformed or unsupported input.

// llama2.c layout: int32 max_token_length, then per token float32 score, int32 length and
// the bytes. `vocab_size` comes from the checkpoint header; the file must hold exactly
// that many tokens.
std::unique_ptr<Tokenizer> load_llama2c_tokenizer(const std::string& bytes, int vocab_size, const std::string& what);

// SentencePiece ModelProto (tokenizer.model) of a BPE model.
std::unique_ptr<Tokenizer> load_sentencepiece_model(const std::string& bytes, const std::string& what);

// Hugging Face tokenizer.json with a BPE model: SentencePiece-style (Metaspace, byte
// fallback) or byte-level (GPT-2, Llama 3, Qwen2 pre-tokenizers).
std::unique_ptr<Tokenizer> load_hf_tokenizer_json(const std::string& bytes, const std::string& what);

}  // namespace codecllm::model
