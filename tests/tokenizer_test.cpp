// Tokenizers against reference ids from the libraries that define them: Hugging Face
// `tokenizers` (tokenizer-cases.json) and sentencepiece 0.2.3 (the ids written below), on
// the real vocabularies under ../shared/models; and every loader against hostile files.
#include "model/tokenizer.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "codecllm/error.hpp"
#include "model/bpe.hpp"
#include "model/byte_level.hpp"
#include "model/split_regex.hpp"

namespace codecllm::model {
namespace {

const std::string kModels = CODECLLM_SHARED_MODELS;

std::optional<std::string> read_shared(const std::string& relative) {
  std::ifstream in(kModels + "/" + relative, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

#define LOAD_SHARED(var, relative)                              \
  const std::optional<std::string> var = read_shared(relative); \
  if (!var) GTEST_SKIP() << kModels << "/" << (relative) << " is absent"

// An order-sensitive digest of a long id sequence (the values below come from Python).
uint64_t digest(const std::vector<int>& ids) {
  uint64_t h = 0;
  for (const int id : ids) h = h * 1000003 + static_cast<uint64_t>(id) + 1;
  return h;
}

struct Case {
  std::string text, decoded;
  std::vector<int> ids;
};

std::vector<Case> reference_cases(const std::string& cases_json, const std::string& tokenizer) {
  std::vector<Case> cases;
  const nlohmann::json all = nlohmann::json::parse(cases_json);  // must outlive the loop below
  for (const auto& c : all.at(tokenizer)) {
    cases.push_back({c.at("text"), c.at("decoded"), c.at("ids").get<std::vector<int>>()});
  }
  return cases;
}

// Bytes of `ids` decoded one token at a time, as a streaming caller prints them.
std::string stream(const Tokenizer& tok, const std::vector<int>& ids) {
  std::string out;
  for (size_t i = 0; i < ids.size(); ++i) out += tok.decode_token(i == 0 ? -1 : ids[i - 1], ids[i]);
  return out;
}

template <typename F>
void expect_format_error(F&& load, const std::string& problem) {
  try {
    load();
    ADD_FAILURE() << "accepted; expected an error containing '" << problem << "'";
  } catch (const FormatError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("bad.tok"), std::string::npos) << msg;
    EXPECT_NE(msg.find(problem), std::string::npos) << msg;
  }
}

// ---- Hugging Face tokenizer.json against `tokenizers` -------------------------------

TEST(HfTokenizer, Llama2JsonMatchesReferenceCases) {
  LOAD_SHARED(json, "tokenizers/llama2-tokenizer.json");
  LOAD_SHARED(cases, "tokenizers/tokenizer-cases.json");
  const auto tok = load_hf_tokenizer_json(*json, "llama2-tokenizer.json");
  EXPECT_EQ(tok->vocab_size(), 32000);
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_id(), 2);
  for (const Case& c : reference_cases(*cases, "llama2-tokenizer.json")) {
    SCOPED_TRACE(c.text);
    EXPECT_EQ(tok->encode(c.text, false), c.ids);
    // The cases were decoded keeping special tokens; decode() drops them, like
    // decode(skip_special_tokens=True), which gives "not special" for [<s>, not, special, </s>].
    EXPECT_EQ(tok->decode(c.ids), c.text == "<s>not special</s>" ? "not special" : c.decoded);
  }
}

TEST(HfTokenizer, ByteLevelJsonMatchesReferenceCases) {
  LOAD_SHARED(json, "tokenizers/bytelevel-bpe.json");
  LOAD_SHARED(cases, "tokenizers/tokenizer-cases.json");
  const auto tok = load_hf_tokenizer_json(*json, "bytelevel-bpe.json");
  EXPECT_EQ(tok->vocab_size(), 4096);
  EXPECT_EQ(tok->bos_id(), 0);
  EXPECT_EQ(tok->eos_id(), 1);
  for (const Case& c : reference_cases(*cases, "bytelevel-bpe.json")) {
    SCOPED_TRACE(c.text);
    EXPECT_EQ(tok->encode(c.text, false), c.ids);
    EXPECT_EQ(tok->decode(c.ids), c.decoded);
    EXPECT_EQ(stream(*tok, c.ids), c.text);  // bytes, even where a token splits a character
  }
  // Added tokens are cut out of the text; decode drops the special ones.
  const std::vector<int> ids = tok->encode("<|begin_of_text|>hi<|end_of_text|>", false);
  EXPECT_EQ(ids, (std::vector<int>{0, 73, 74, 1}));
  EXPECT_EQ(tok->decode(ids), "hi");
  EXPECT_EQ(tok->encode("hi", true), (std::vector<int>{0, 73, 74}));
}

TEST(HfTokenizer, Llama2JsonStreamsText) {
  LOAD_SHARED(json, "tokenizers/llama2-tokenizer.json");
  const auto tok = load_hf_tokenizer_json(*json, "llama2-tokenizer.json");
  const std::string text = "Unicode: naïve café — 東京 🚀\n    return x";
  const std::vector<int> ids = tok->encode(text, true);
  EXPECT_EQ(ids.front(), 1);
  EXPECT_EQ(stream(*tok, ids), text);  // the BOS drops the first token's space
  EXPECT_EQ(tok->decode(ids), text);
}

// A hand-made SentencePiece-style tokenizer.json: merges go by rank, not by score.
constexpr const char* kTinyJson = R"({"version": "1.0",
  "added_tokens": [
    {"id": 0, "content": "<s>", "lstrip": false, "rstrip": false, "normalized": false, "special": true},
    {"id": 1, "content": "</s>", "lstrip": false, "rstrip": false, "normalized": false, "special": true}],
  "normalizer": null,
  "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": false},
  "post_processor": null,
  "decoder": {"type": "Sequence", "decoders": [
    {"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"},
    {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
  "model": {"type": "BPE", "dropout": null, "unk_token": null, "fuse_unk": false, "byte_fallback": true,
    "vocab": {"<s>": 0, "</s>": 1, "▁": 2, "a": 3, "b": 4, "▁a": 5, "ab": 6, "▁ab": 7, "<0x63>": 8},
    "merges": [["a", "b"], ["▁", "a"], ["▁", "ab"]]}})";

TEST(HfTokenizer, TinyJsonMatchesTokenizers) {
  // Expected ids from `tokenizers` 0.23.3 on the same JSON.
  const auto tok = load_hf_tokenizer_json(kTinyJson, "tiny.json");
  EXPECT_EQ(tok->encode("ab c", false), (std::vector<int>{7, 2, 8}));       // "c" by byte fallback
  EXPECT_EQ(tok->encode("aab", false), (std::vector<int>{5, 6}));           // a+b (rank 0) first
  EXPECT_EQ(tok->encode("<s>ab</s>", false), (std::vector<int>{0, 6, 1}));  // no "▁" after <s>
  EXPECT_EQ(tok->decode({7, 2, 8}), "ab c");
  EXPECT_EQ(tok->decode({0, 6, 1}), "ab");
  EXPECT_EQ(tok->decode_token(5, 99), "");  // outside the vocabulary
  EXPECT_EQ(tok->bos_id(), 0);
  EXPECT_EQ(tok->eos_id(), 1);
}

TEST(HfTokenizer, RejectsMalformedAndUnsupportedJson) {
  const auto load = [](const std::string& json) { return [json] { load_hf_tokenizer_json(json, "bad.tok"); }; };
  const auto with_model = [](const std::string& model, const std::string& rest = "") {
    return R"({"model": )" + model + rest + "}";
  };
  expect_format_error(load("{not json"), "invalid tokenizer.json");
  expect_format_error(load("{}"), "invalid tokenizer.json");
  expect_format_error(load(with_model(R"({"type": "WordPiece", "vocab": {}})")), "WordPiece");
  expect_format_error(load(with_model(R"({"vocab": {"a": 0}, "merges": [["a", "b"]]})")), "not in the vocabulary");
  expect_format_error(load(with_model(R"({"vocab": {"a": 0, "b": 1}, "merges": ["a b c"]})")), "not two tokens");
  expect_format_error(load(with_model(R"({"vocab": {"a": 0, "b": 7}, "merges": []})")), "outside");
  expect_format_error(load(with_model(R"({"vocab": {"a": 0, "b": 0}, "merges": []})")), "two tokens");
  expect_format_error(load(with_model(R"({"vocab": {"a": -1}, "merges": []})")), "outside");
  expect_format_error(load(with_model(R"({"vocab": ["a"], "merges": []})")), "not an object");
  expect_format_error(load(with_model(R"({"vocab": {"a": "x"}, "merges": []})")), "invalid tokenizer.json");
  const std::string ok_model = R"({"vocab": {"a": 0}, "merges": []})";
  expect_format_error(load(with_model(ok_model, R"(, "pre_tokenizer": {"type": "Whitespace"})")), "Whitespace");
  expect_format_error(
      load(with_model(ok_model,
                      R"(, "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "\\w+"}, "behavior": "Isolated"})")),
      "Split pattern");
  expect_format_error(load(with_model(ok_model, R"(, "normalizer": {"type": "NFKC"})")), "NFKC");
  expect_format_error(load(with_model(ok_model, R"(, "decoder": {"type": "WordPiece"})")), "WordPiece");
  expect_format_error(load(with_model(R"({"vocab": {"a": 0}, "merges": [], "continuing_subword_prefix": "##"})")),
                      "continuing_subword_prefix");
}

// ---- SentencePiece: tokenizer.model and llama2.c's tokenizer.bin ---------------------

// sentencepiece 0.2.3 differs from `tokenizers` on these texts (it merges by piece score,
// always adds the dummy "▁" and reads "<s>" as text); on the others it gives the same ids.
const std::map<std::string, std::vector<int>> kSentencePieceIds = {
    {"def forward(self, x):\n    return x * 2  # twice",
     {822, 6375, 29898, 1311, 29892, 921, 1125, 13, 1678, 736, 921, 334, 29871, 29906, 29871, 396, 8951}},
    {"  leading spaces and\ttabs", {259, 8236, 8162, 322, 12, 21175}},
    {" ", {259}},
    {"<s>not special</s>", {529, 29879, 29958, 1333, 4266, 829, 29879, 29958}},
};

void expect_llama2_sentencepiece(const Tokenizer& tok, const std::string& cases_json) {
  EXPECT_EQ(tok.vocab_size(), 32000);
  EXPECT_EQ(tok.bos_id(), 1);
  EXPECT_EQ(tok.eos_id(), 2);
  for (const Case& c : reference_cases(cases_json, "llama2-tokenizer.json")) {
    SCOPED_TRACE(c.text);
    const auto sp = kSentencePieceIds.find(c.text);
    const std::vector<int>& expected = sp == kSentencePieceIds.end() ? c.ids : sp->second;
    EXPECT_EQ(tok.encode(c.text, false), expected);
    EXPECT_EQ(tok.decode(expected), c.text);  // sentencepiece's decode gives the text back
    std::vector<int> with_bos = expected;
    with_bos.insert(with_bos.begin(), 1);
    EXPECT_EQ(tok.encode(c.text, true), with_bos);
    EXPECT_EQ(stream(tok, with_bos), c.text);
  }
  // The prompts of pycode24M/README.md.
  EXPECT_EQ(tok.encode("def ", true), (std::vector<int>{1, 822, 29871}));
  EXPECT_EQ(tok.encode("class ", true), (std::vector<int>{1, 770, 29871}));
  EXPECT_EQ(tok.encode("import ", true), (std::vector<int>{1, 1053, 29871}));
}

TEST(SentencePiece, Llama2ModelMatchesSentencePiece) {
  LOAD_SHARED(model, "pycode24M/tokenizer.model");
  LOAD_SHARED(cases, "tokenizers/tokenizer-cases.json");
  expect_llama2_sentencepiece(*load_sentencepiece_model(*model, "tokenizer.model"), *cases);
}

TEST(SentencePiece, Llama2cBinMatchesSentencePiece) {
  LOAD_SHARED(bin, "llama2-tokenizer/tokenizer.bin");
  LOAD_SHARED(cases, "tokenizers/tokenizer-cases.json");
  expect_llama2_sentencepiece(*load_llama2c_tokenizer(*bin, 32000, "tokenizer.bin"), *cases);
}

TEST(SentencePiece, Stories260kTokenizers) {
  LOAD_SHARED(bin, "stories260K/tok512.bin");
  LOAD_SHARED(model, "stories260K/tok512.model");
  const std::string text = "Once upon a time, there was a little girl named Lily.";
  const std::vector<int> ids = {403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426};
  const std::unique_ptr<Tokenizer> both[] = {load_llama2c_tokenizer(*bin, 512, "tok512.bin"),
                                             load_sentencepiece_model(*model, "tok512.model")};
  for (const auto& tok : both) {
    EXPECT_EQ(tok->vocab_size(), 512);
    EXPECT_EQ(tok->encode("Once upon a time", false), (std::vector<int>{403, 407, 261, 378}));
    EXPECT_EQ(tok->decode(tok->encode("Once upon a time", true)), "Once upon a time");
    EXPECT_EQ(tok->encode(text, false), ids);
    EXPECT_EQ(tok->decode(ids), text);
  }
  // tok512.model keeps SentencePiece's default remove_extra_whitespaces (llama2.c does not).
  const auto tok = load_sentencepiece_model(*model, "tok512.model");
  const std::vector<int> spaced = {259, 424, 414, 262, 427, 412, 331, 419};
  EXPECT_EQ(tok->encode("  two  spaces  ", false), spaced);
  EXPECT_EQ(tok->decode(spaced), "two spaces");
}

// ---- Whole val.txt: exact ids and speed ----------------------------------------------

void expect_val_txt(const Tokenizer& tok, const std::string& text, size_t count, uint64_t hash) {
  const auto start = std::chrono::steady_clock::now();
  const std::vector<int> ids = tok.encode(text, false);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(ids.size(), count);
  EXPECT_EQ(digest(ids), hash);
  std::cout << "  encoded " << text.size() << " bytes in " << seconds * 1000 << " ms\n";
  // O(n^2) merging would take minutes; this bound leaves room for sanitizer builds.
  EXPECT_LT(seconds, 10.0);
}

TEST(ValTxt, SentencePieceIdsMatch) {
  LOAD_SHARED(val, "pycode24M/val.txt");
  LOAD_SHARED(model, "pycode24M/tokenizer.model");
  LOAD_SHARED(bin, "llama2-tokenizer/tokenizer.bin");
  // sentencepiece's count; with the BOS it is README's 67,537.
  expect_val_txt(*load_sentencepiece_model(*model, "tokenizer.model"), *val, 67536, 0xFA2E7180209095C3ULL);
  expect_val_txt(*load_llama2c_tokenizer(*bin, 32000, "tokenizer.bin"), *val, 67536, 0xFA2E7180209095C3ULL);
}

TEST(ValTxt, HfIdsMatch) {
  LOAD_SHARED(val, "pycode24M/val.txt");
  LOAD_SHARED(llama, "tokenizers/llama2-tokenizer.json");
  LOAD_SHARED(byte_level, "tokenizers/bytelevel-bpe.json");
  expect_val_txt(*load_hf_tokenizer_json(*llama, "llama2-tokenizer.json"), *val, 67849, 0x8F0EEE808999EB26ULL);
  const auto tok = load_hf_tokenizer_json(*byte_level, "bytelevel-bpe.json");
  expect_val_txt(*tok, *val, 61394, 0xEE7EAA18F62575C3ULL);
  EXPECT_EQ(tok->decode(tok->encode(*val, false)), *val);
}

// ---- Synthetic SentencePiece models ---------------------------------------------------

// Protobuf wire-format writer for hand-made ModelProto messages.
class Proto {
 public:
  Proto& varint(uint32_t field, uint64_t v) {
    key(field, 0);
    raw_varint(v);
    return *this;
  }
  Proto& fixed32(uint32_t field, uint32_t v) {
    key(field, 5);
    for (int i = 0; i < 4; ++i) bytes_ += static_cast<char>(v >> (8 * i));
    return *this;
  }
  Proto& fixed64(uint32_t field, uint64_t v) {
    key(field, 1);
    for (int i = 0; i < 8; ++i) bytes_ += static_cast<char>(v >> (8 * i));
    return *this;
  }
  Proto& bytes(uint32_t field, const std::string& b) {
    key(field, 2);
    raw_varint(b.size());
    bytes_ += b;
    return *this;
  }
  Proto& piece(const std::string& text, float score, int type) {
    uint32_t bits = 0;
    std::memcpy(&bits, &score, 4);
    return bytes(1, Proto().bytes(1, text).fixed32(2, bits).varint(3, static_cast<uint64_t>(type)).str());
  }
  const std::string& str() const { return bytes_; }

 private:
  void key(uint32_t field, uint32_t wire) { raw_varint(uint64_t{field} << 3 | wire); }
  void raw_varint(uint64_t v) {
    for (; v >= 0x80; v >>= 7) bytes_ += static_cast<char>(v | 0x80);
    bytes_ += static_cast<char>(v);
  }
  std::string bytes_;
};

// Pieces 0..8: <unk> <s> </s> a b ab ▁ ▁ab <x>(user-defined); BPE, no byte fallback.
Proto tiny_pieces() {
  return Proto()
      .piece("<unk>", 0, 2)
      .piece("<s>", 0, 3)
      .piece("</s>", 0, 3)
      .piece("a", -1, 1)
      .piece("b", -2, 1)
      .piece("ab", -0.5f, 1)
      .piece("\xE2\x96\x81", -3, 1)
      .piece(
          "\xE2\x96\x81"
          "ab",
          -0.1f, 1)
      .piece("<x>", 0, 4);
}

std::string trainer_spec(uint64_t model_type) {
  return Proto().varint(3, model_type).fixed64(99, 7).varint(40, 0).varint(41, 1).varint(42, 2).str();
}

TEST(SentencePiece, SyntheticModel) {
  const std::string normalizer = Proto().bytes(1, "identity").varint(3, 1).varint(4, 0).str();
  Proto model = tiny_pieces();
  model.bytes(2, trainer_spec(2)).bytes(3, normalizer).bytes(7, Proto().varint(1, 5).str());  // 7: unknown
  const auto tok = load_sentencepiece_model(model.str(), "tiny.model");
  // "▁ab<x>ac": a+b (score -0.5) merges before ▁+ab; <x> stays whole; "c" is unknown.
  EXPECT_EQ(tok->encode("ab<x>ac", false), (std::vector<int>{7, 8, 3, 0}));
  EXPECT_EQ(tok->encode("", true), (std::vector<int>{1}));
  EXPECT_EQ(tok->decode({1, 7, 8, 3, 0, 2}), "ab<x>a");  // control and unknown pieces drop
  EXPECT_EQ(tok->decode_token(1, 7), "ab");
  EXPECT_EQ(tok->decode_token(3, 7), " ab");
}

TEST(SentencePiece, RejectsMalformedModels) {
  const auto load = [](const std::string& bytes) { return [bytes] { load_sentencepiece_model(bytes, "bad.tok"); }; };
  const std::string good = Proto(tiny_pieces()).bytes(2, trainer_spec(2)).str();
  ASSERT_NO_THROW(load_sentencepiece_model(good, "good"));
  expect_format_error(load(good.substr(0, good.size() - 1)), "truncated");
  expect_format_error(load(Proto(tiny_pieces()).bytes(2, trainer_spec(1)).str()), "model type 1");
  expect_format_error(load(tiny_pieces().str()), "no trainer_spec");
  expect_format_error(load(good + "\x0b"), "wire type");  // field 1, group
  expect_format_error(load(good + std::string(11, '\xff')), "varint");
  expect_format_error(load(good + "\x08"), "varint is truncated");
  expect_format_error(load(Proto().varint(1, 3).str()), "wrong wire type");  // pieces as varint
  expect_format_error(load(Proto().piece("x", 0, 9).bytes(2, trainer_spec(2)).str()), "piece type");
  expect_format_error(load(tiny_pieces().piece("<0xZZ>", 0, 6).bytes(2, trainer_spec(2)).str()), "byte piece");
  expect_format_error(load(Proto().bytes(2, trainer_spec(2)).str()), "no pieces");
  expect_format_error(load(tiny_pieces().piece("n", NAN, 1).bytes(2, trainer_spec(2)).str()), "NaN");
  expect_format_error(load(Proto(tiny_pieces()).bytes(2, Proto(Proto().varint(3, 2)).varint(40, 99).str()).str()),
                      "outside the vocabulary");
}

// ---- Synthetic llama2.c tokenizer.bin -------------------------------------------------

std::string llama2c_bin(const std::vector<std::pair<std::string, float>>& tokens) {
  std::string out(4, '\0');  // max_token_length, unused
  for (const auto& [text, score] : tokens) {
    const auto len = static_cast<int32_t>(text.size());
    out.append(reinterpret_cast<const char*>(&score), 4);
    out.append(reinterpret_cast<const char*>(&len), 4);
    out += text;
  }
  return out;
}

const std::vector<std::pair<std::string, float>> kTinyBin = {
    {"<unk>", 0}, {"\n<s>\n", 0}, {"\n</s>\n", 0}, {"<0x63>", 0}, {" ", -5},
    {"a", -6},    {"b", -7},      {" a", -1},      {"ab", -2},    {" ab", -3}};

TEST(Llama2c, SyntheticBin) {
  const auto tok = load_llama2c_tokenizer(llama2c_bin(kTinyBin), 10, "tiny.bin");
  // "▁ab▁c": ▁+a (score -1) first, then ▁a+b; "c" is not a piece: byte token <0x63>.
  EXPECT_EQ(tok->encode("ab c", true), (std::vector<int>{1, 9, 4, 3}));
  EXPECT_EQ(tok->decode({1, 9, 4, 3, 2}), "ab c");
  EXPECT_EQ(tok->decode_token(1, 9), "ab");  // the dummy prefix's space goes after BOS
  EXPECT_EQ(tok->decode_token(3, 9), " ab");
  EXPECT_EQ(tok->decode_token(9, 3), "c");
}

TEST(Llama2c, RejectsMalformedBin) {
  const auto load = [](const std::string& bytes, int vocab) {
    return [bytes, vocab] { load_llama2c_tokenizer(bytes, vocab, "bad.tok"); };
  };
  const std::string good = llama2c_bin(kTinyBin);
  expect_format_error(load(good.substr(0, good.size() - 1), 10), "truncated at token 9");
  expect_format_error(load(good, 9), "follow");
  expect_format_error(load(good, 11), "truncated at token 10");
  expect_format_error(load(good, 2), "no room");
  expect_format_error(load(good, 1 << 30), "cannot hold");
  expect_format_error(load(llama2c_bin({{"<unk>", 0}, {"s", 0}, {"", 0}}).replace(21, 4, "\xff\xff\xff\xff"), 3),
                      "negative length");
}

// ---- Shared pieces ---------------------------------------------------------------------

TEST(SplitRegex, MatchesTokenizersOnMixedText) {
  // Expected words from `tokenizers` 0.23.3's Split pre-tokenizer with each regex.
  const std::string text = "It's  HE'LL cost 1234567 €, naïve!\n\n\t  x.\r\n (東京)  ";
  const auto words = [&](SplitPattern p) {
    std::vector<std::string> out;
    for (const std::string_view w : split_words(text, p)) out.emplace_back(w);
    return out;
  };
  EXPECT_EQ(words(SplitPattern::Gpt2),
            (std::vector<std::string>{"It", "'s", " ", " HE", "'", "LL", " cost", " 1234567", " €,", " naïve", "!",
                                      "\n\n\t ", " x", ".", "\r\n", " (", "東京", ")", "  "}));
  EXPECT_EQ(words(SplitPattern::Llama3),
            (std::vector<std::string>{"It",  "'s",     " ",     " HE", "'LL", " cost", " ",  "123",  "456", "7",
                                      " €,", " naïve", "!\n\n", "\t ", " x",  ".\r\n", " (", "東京", ")",   "  "}));
  EXPECT_EQ(words(SplitPattern::Qwen2),
            (std::vector<std::string>{"It",    "'s",  " ",  " HE",   "'LL", " cost", " ",   "1",
                                      "2",     "3",   "4",  "5",     "6",   "7",     " €,", " naïve",
                                      "!\n\n", "\t ", " x", ".\r\n", " (",  "東京",  ")",   "  "}));
  // Invalid UTF-8 is split too, byte by byte, and nothing is lost.
  std::string joined;
  for (const std::string_view w : split_words("a\xff\xfe b\xc3", SplitPattern::Llama3)) joined += w;
  EXPECT_EQ(joined, "a\xff\xfe b\xc3");
}

TEST(ByteLevel, RoundTripsEveryByte) {
  std::string all;
  for (int b = 0; b < 256; ++b) all += static_cast<char>(b);
  const std::string mapped = byte_level_encode(all);
  EXPECT_EQ(byte_level_encode(" "), "\xC4\xA0");  // "Ġ"
  EXPECT_EQ(byte_level_decode(mapped), all);
}

TEST(Bpe, LeftmostPairMergesFirstOnTies) {
  // "aaa" with a+a allowed: the left pair merges, leaving "aa", "a".
  const std::vector<BpeSymbol> chars = {{0, 1, 0}, {1, 2, 0}, {2, 3, 0}};
  const auto pair = [](const BpeSymbol& l, const BpeSymbol& r, BpeMerge* m) {
    if (l.id != 0 || r.id != 0) return false;
    *m = {1, 1};
    return true;
  };
  const std::vector<BpeSymbol> out = bpe_merge(chars, pair);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].id, 1);
  EXPECT_EQ(out[0].end, 2u);
  EXPECT_EQ(out[1].id, 0);
  EXPECT_TRUE(bpe_merge({}, pair).empty());
  EXPECT_TRUE(
      spans_word_start("a\xE2\x96\x81"
                       "b"));
  EXPECT_FALSE(
      spans_word_start("\xE2\x96\x81\xE2\x96\x81"
                       "ab"));
}

}  // namespace
}  // namespace codecllm::model
