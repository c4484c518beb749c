// The Hugging Face `tokenizers` BPE pipeline, as configured by a tokenizer.json: added
// tokens are split out of the raw text first, then each remaining segment is normalized
// (and split again at added tokens marked "normalized"), pre-tokenized into words and
// merged word by word by merge rank. tokenizer_hf.cpp fills
// HfConfig from the JSON; only the components Llama-family tokenizers use are modelled.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "model/split_regex.hpp"
#include "model/tokenizer.hpp"

namespace codecllm::model {

struct HfAddedToken {
  std::string content;
  int id = -1;
  bool special = false;                 // dropped by decode
  bool normalized = false;              // matched in normalized text (after the normalizer)
  bool lstrip = false, rstrip = false;  // swallows the whitespace on that side
};

// One normalizer step (NFC is accepted and treated as the identity: text is rarely not NFC).
struct HfNormalizerStep {
  enum class Kind { Prepend, Replace } kind = Kind::Replace;
  std::string from, to;  // Replace: every `from` becomes `to`; Prepend: `to` goes in front
};

struct HfPreTokenizerStep {
  enum class Kind { Metaspace, ByteLevel, Split } kind = Kind::Split;
  enum class Prepend { Always, First, Never } prepend = Prepend::Never;  // Metaspace
  std::string replacement;                                               // Metaspace: what a space becomes
  bool split = false;             // Metaspace: split before each replacement character
  bool add_prefix_space = false;  // ByteLevel
  bool use_regex = false;         // ByteLevel (with the GPT-2 pattern) and always for Split
  SplitPattern pattern = SplitPattern::Gpt2;
};

struct HfDecoder {
  bool byte_level = false;     // map characters back to bytes (GPT-2 table)
  bool byte_fallback = false;  // <0xNN> tokens become their byte
  std::vector<std::pair<std::string, std::string>> replaces;
  int strip_start = 0;  // spaces dropped at the start of the text
};

struct HfMerge {
  int left = -1, right = -1, merged = -1;
};

struct HfConfig {
  std::vector<std::string> tokens;  // by id; "" where no token has the id
  std::vector<HfMerge> merges;      // by rank
  std::vector<HfAddedToken> added;
  std::vector<HfNormalizerStep> normalizer;
  std::vector<HfPreTokenizerStep> pre_tokenizer;
  HfDecoder decoder;
  bool byte_fallback = false;
  bool ignore_merges = false;  // a word that is a token is taken whole
  bool fuse_unk = false;
  int unk_id = -1, bos_id = -1, eos_id = -1;
};

std::unique_ptr<Tokenizer> make_hf_bpe(HfConfig config);

}  // namespace codecllm::model
