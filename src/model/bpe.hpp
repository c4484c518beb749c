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

// A permitted merge: the merged symbol's id and its priority (lower merges first).
struct BpeMerge {
  double priority = 0;
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

// Byte-fallback tokens are spelled "<0xNN>" (two upper-case hex digits) by SentencePiece
// and Hugging Face alike. Returns the byte, or -1 when `piece` is not such a token.
int parse_byte_piece(std::string_view piece);

}  // namespace codecllm::model
