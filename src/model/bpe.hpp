// The merge loop shared by every BPE tokenizer flavour. The flavours differ only in which
// adjacent pairs may merge and in what order (SentencePiece: highest piece score first;
// Hugging Face: lowest merge rank first), which the caller supplies as a pair function.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace codecllm::model {

// A symbol covers bytes [begin, end) of the text being encoded and stands for token `id`
// (or -1 when the flavour resolves ids only after merging).
struct BpeSymbol {
  size_t begin = 0, end = 0;
  int id = -1;
};

// A permitted merge: the merged symbol's id and its priority (lower merges first). float
// holds SentencePiece scores exactly, and merge ranks up to 2^24.
struct BpeMerge {
  float priority = 0;
  int id = -1;
};

// Returns true and fills *merge when `left` followed by `right` may merge.
using BpePairFn = std::function<bool(const BpeSymbol& left, const BpeSymbol& right, BpeMerge* merge)>;

// Repeatedly merges the adjacent pair of lowest priority, the leftmost on ties, until no
// pair may merge; returns the remaining symbols in order. O(n log n) in the symbol count:
// a linked list of symbols and a heap of candidate pairs that are dropped lazily once
// either side has changed.
std::vector<BpeSymbol> bpe_merge(const std::vector<BpeSymbol>& symbols, const BpePairFn& pair);

// SentencePiece-style vocabularies write a space as U+2581 ("▁", 3 bytes in UTF-8).
constexpr std::string_view kSpaceMark = "\xE2\x96\x81";

// True when `token` has a "▁" right after a character other than "▁". SentencePiece-style
// vocabularies have no such token (their pieces are words with one leading "▁", or runs of
// "▁"), and then no merge can cross the start of a word.
bool spans_word_start(std::string_view token);

// bpe_merge run on each word of `symbols` alone, a word starting at each "▁" symbol that
// follows another symbol than "▁" (symbols index `text`). Gives bpe_merge's result when no
// token spans_word_start, with a small heap even on long texts.
std::vector<BpeSymbol> bpe_merge_words(std::string_view text, const std::vector<BpeSymbol>& symbols,
                                       const BpePairFn& pair);

// Byte-fallback tokens are spelled "<0xNN>" (two upper-case hex digits) by SentencePiece
// and Hugging Face alike. Returns the byte, or -1 when `piece` is not such a token.
int parse_byte_piece(std::string_view piece);

}  // namespace codecllm::model
