#include "model/bpe.hpp"

#include <cstdint>
#include <queue>
#include <utility>

namespace codecllm::model {
namespace {

constexpr size_t kNone = SIZE_MAX;

struct Node {
  BpeSymbol symbol;
  size_t prev, next;
  uint32_t version = 0;  // bumped whenever the symbol grows
  bool alive = true;
};

// Kept small (20 bytes): on long texts the heap is large and popping it is memory-bound.
// The right symbol is the left one's next for as long as the left one is unchanged.
struct Candidate {
  BpeMerge merge;
  uint32_t left;
  uint32_t left_version, right_version;
};

// std::priority_queue pops the greatest element, so "greater" means "merges first".
struct MergesLater {
  bool operator()(const Candidate& a, const Candidate& b) const {
    if (a.merge.priority != b.merge.priority) return a.merge.priority > b.merge.priority;
    return a.left > b.left;
  }
};

}  // namespace

std::vector<BpeSymbol> bpe_merge(const std::vector<BpeSymbol>& symbols, const BpePairFn& pair) {
  std::vector<Node> nodes;
  nodes.reserve(symbols.size());
  for (size_t i = 0; i < symbols.size(); ++i) {
    nodes.push_back({symbols[i], i == 0 ? kNone : i - 1, i + 1 == symbols.size() ? kNone : i + 1});
  }
  std::vector<Candidate> initial;
  const auto candidate = [&](size_t left, size_t right, Candidate* c) {
    if (left == kNone || right == kNone || !pair(nodes[left].symbol, nodes[right].symbol, &c->merge)) {
      return false;
    }
    c->left = static_cast<uint32_t>(left);
    c->left_version = nodes[left].version;
    c->right_version = nodes[right].version;
    return true;
  };
  for (size_t i = 0; i + 1 < nodes.size(); ++i) {
    Candidate c;
    if (candidate(i, i + 1, &c)) initial.push_back(c);
  }
  std::priority_queue<Candidate, std::vector<Candidate>, MergesLater> heap(MergesLater(), std::move(initial));
  const auto consider = [&](size_t left, size_t right) {
    Candidate c;
    if (candidate(left, right, &c)) heap.push(c);
  };

  while (!heap.empty()) {
    const Candidate c = heap.top();
    heap.pop();
    // Stale when either side has changed since. While the left symbol is unchanged its
    // right neighbour is still the same symbol (only the left one can absorb it).
    Node& left = nodes[c.left];
    if (!left.alive || left.version != c.left_version) continue;
    Node& right = nodes[left.next];
    if (right.version != c.right_version) continue;
    left.symbol.end = right.symbol.end;
    left.symbol.id = c.merge.id;
    ++left.version;
    right.alive = false;
    left.next = right.next;
    if (right.next != kNone) nodes[right.next].prev = c.left;
    consider(left.prev, c.left);
    consider(c.left, left.next);
  }

  std::vector<BpeSymbol> out;
  for (size_t i = nodes.empty() ? kNone : 0; i != kNone; i = nodes[i].next) {
    out.push_back(nodes[i].symbol);
  }
  return out;
}

bool spans_word_start(std::string_view token) {
  for (size_t at = token.find(kSpaceMark, 1); at != std::string_view::npos; at = token.find(kSpaceMark, at + 1)) {
    if (at < kSpaceMark.size() || token.substr(at - kSpaceMark.size(), kSpaceMark.size()) != kSpaceMark) {
      return true;
    }
  }
  return false;
}

std::vector<BpeSymbol> bpe_merge_words(std::string_view text, const std::vector<BpeSymbol>& symbols,
                                       const BpePairFn& pair) {
  const auto is_mark = [&](const BpeSymbol& s) { return text.substr(s.begin, s.end - s.begin) == kSpaceMark; };
  std::vector<BpeSymbol> out, word;
  for (size_t i = 0; i <= symbols.size(); ++i) {
    const bool cut = i == symbols.size() || (i > 0 && is_mark(symbols[i]) && !is_mark(symbols[i - 1]));
    if (cut && !word.empty()) {
      for (const BpeSymbol& s : bpe_merge(word, pair)) out.push_back(s);
      word.clear();
    }
    if (i < symbols.size()) word.push_back(symbols[i]);
  }
  return out;
}

int parse_byte_piece(std::string_view piece) {
  if (piece.size() != 6 || piece.substr(0, 3) != "<0x" || piece[5] != '>') return -1;
  int value = 0;
  for (const char c : piece.substr(3, 2)) {
    const int digit = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (digit < 0) return -1;
    value = value * 16 + digit;
  }
  return value;
}

}  // namespace codecllm::model
