#include "model/bpe.hpp"

#include <cstdint>
#include <queue>

namespace codecllm::model {
namespace {

constexpr size_t kNone = SIZE_MAX;

struct Node {
  BpeSymbol symbol;
  size_t prev, next;
  uint32_t version = 0;  // bumped whenever the symbol grows or is absorbed
  bool alive = true;
};

struct Candidate {
  BpeMerge merge;
  size_t left, right;
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
  std::priority_queue<Candidate, std::vector<Candidate>, MergesLater> heap;
  const auto consider = [&](size_t left, size_t right) {
    if (left == kNone || right == kNone) return;
    BpeMerge m;
    if (pair(nodes[left].symbol, nodes[right].symbol, &m)) {
      heap.push({m, left, right, nodes[left].version, nodes[right].version});
    }
  };
  for (size_t i = 0; i + 1 < nodes.size(); ++i) consider(i, i + 1);

  while (!heap.empty()) {
    const Candidate c = heap.top();
    heap.pop();
    Node& left = nodes[c.left];
    Node& right = nodes[c.right];
    // Adjacent pairs never get separated, so unchanged versions mean "still this pair".
    if (!left.alive || !right.alive || left.version != c.left_version ||
        right.version != c.right_version) {
      continue;
    }
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
