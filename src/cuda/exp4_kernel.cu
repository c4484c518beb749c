// Exp4 tensors on the GPU: BF16 weights rebuilt from 4-bit exponent codes and raw sign_mantissa
// bytes (codec/exp4_plane.hpp), either written out (a decode) or multiplied at once with x (a
// fused product that reads 12 bits a weight instead of 16 and writes nothing but y).
//
// A thread rebuilds 8 weights from one 32-bit word of codes and 8 sign_mantissa bytes with
// byte permutes, masks and one multiply-add per pair of weights: no table, no serial state, so
// the product runs at the rate its bytes arrive. A code 15 (an escape: one weight in 4200 of a
// trained model, one in 1250 of the random 8B shape) is rewritten from its block's list: in the
// products, staged in shared memory with each vector's first entry indexed, and read there by the
// lane that meets it (patch), which keeps the loops' registers (nothing spilled at 64 a thread);
// in the decode, by a search.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "codec/exp4_plane.hpp"
#include "codecllm/error.hpp"
#include "cuda/cuda_check.hpp"
#include "cuda/decode_desc.hpp"
#include "cuda/decode_launch.hpp"
#include "cuda/exp4_row_slots.hpp"
#include "cuda/gemv_dot.cuh"
#include "cuda/pdl.cuh"
#include "cuda/skinny_gemm.cuh"
#include "cuda/stream_loads.cuh"

namespace codecllm::cuda {
namespace {

constexpr int kDecodeThreads = 256;
constexpr int kGemvWarps = 8;  // beside the decode kernels, as the engine's GEMVs pick there
constexpr int kGemvBlocksPerSm = 4;
constexpr int kGemvUnroll = 4;             // 8-weight vectors per lane in flight: 48 bytes, at 4 blocks of 8 warps a SM
constexpr uint32_t kGemvFloatCols = 8192;  // rows the GEMV stages x for as floats: 4 blocks an SM still fit
constexpr uint32_t kGemvStaged = 64;       // escapes a product row keeps in shared memory (~3 on a 4096-long row)
constexpr uint32_t kDecodeSpan = 32768;    // elements a decode block takes: 16 vectors a thread
constexpr uint32_t kDecodeStaged = 1024;   // escapes a decode block keeps in shared memory
constexpr uint32_t kGemmStaged = 1024;     // escapes of a product block's 16 rows kept in shared memory
static_assert(kMaxSlotsPerRow <= kGemvStaged && kMaxSlotsPerRow <= 255,
              "a row's slots fit a GEMV warp's, indexed by byte");
static_assert(kSkinnyRows * kMaxSlotsPerRow <= kGemmStaged, "a tile's slots fit a block's staged escapes");

// Bit 4i set where code i of the word is 15: the exact list the slow path walks.
__device__ __forceinline__ uint32_t escapes_in(uint32_t codes) {
  return codes & (codes >> 1) & (codes >> 2) & (codes >> 3) & 0x11111111u;
}

// Nonzero exactly when some code of the word is 15 (two instructions, the test every vector
// pays): the classic zero-field test on ~codes, (~c - 0x1..1) & c & 0x8..8, where ~c - 0x1..1 is
// 0xE..E - c. A borrow can only start at a field that is zero in ~c, so the result is nonzero
// iff one is (checked over all 2^32 words when written).
__device__ __forceinline__ bool has_escape(uint32_t codes) {
  return ((0xEEEEEEEEu - codes) & codes & 0x88888888u) != 0;
}

// One BF16 weight from its sign_mantissa byte (sign << 7 | mantissa) and exponent byte.
__device__ __forceinline__ uint32_t bf16_bits(uint32_t sign_mantissa, uint32_t exponent) {
  return (sign_mantissa & 0x80) << 8 | exponent << 7 | (sign_mantissa & 0x7F);
}

// PTX prmt in its default mode: a selector nibble with bit 3 set writes the sign of its byte to
// all 8 bits (0 for a byte below 0x80). __byte_perm reads only 3 bits of each nibble.
__device__ __forceinline__ uint32_t prmt(uint32_t a, uint32_t b, uint32_t selector) {
  uint32_t r;
  asm("prmt.b32 %0, %1, %2, %3;" : "=r"(r) : "r"(a), "r"(b), "r"(selector));
  return r;
}

// Weights 8v .. 8v + 7 as BF16 (4 words, element 2j in the low half of word j) from their
// codes (element 8v + i in bits 4i .. 4i + 3) and sign_mantissa bytes (byte i of the pair).
// Four instructions a pair of weights (and three a word of codes):
//   u = the pair's bytes, each in both bytes of its half: u & 0x807F807F is sign | mantissa;
//   c = the pair's codes, each in the low byte of its half (bytes 1 and 3 sign-filled: 0);
//   w = (u & 0x807F807F) | (c * 128 + base_pair): exponents below 256, so no carry between halves.
// Escaped weights come out wrong here and are patched by patch_escapes.
__device__ __forceinline__ uint4 assemble(uint32_t codes, uint2 sm, uint32_t base_pair) {
  const uint32_t even = codes & 0x0F0F0F0Fu;        // byte j: the code of element 2j
  const uint32_t odd = (codes >> 4) & 0x0F0F0F0Fu;  // byte j: the code of element 2j + 1
  uint32_t w[4];
#pragma unroll
  for (uint32_t j = 0; j < 4; ++j) {
    const uint32_t k = 2 * (j % 2);
    const uint32_t u = prmt(j < 2 ? sm.x : sm.y, 0, k | k << 4 | (k + 1) << 8 | (k + 1) << 12);
    const uint32_t c = prmt(even, odd, j | (8 + j) << 4 | (4 + j) << 8 | (12 + j) << 12);
    w[j] = (u & 0x807F807Fu) | (c * 128u + base_pair);
  }
  return make_uint4(w[0], w[1], w[2], w[3]);
}

// The escape block of element e. The products take tensors of fewer than 2^32 elements
// (GpuDecoder), whose rows and tiles they place with a 32-bit division (kProduct: a dozen
// instructions) instead of a 64-bit one (a call of ~70 a row, and registers saved around it).
template <bool kProduct>
__device__ __forceinline__ uint64_t escape_block(uint64_t e, uint32_t block_symbols) {
  if constexpr (kProduct) return static_cast<uint32_t>(e) / block_symbols;
  return e / block_symbols;
}

// The escapes of the escape blocks that hold elements [first, last], copied to shared memory
// by the threads that will look them up (a warp for a product's row, a block for a decode)
// before any lookup: an escape then costs a short search in shared memory instead of a chain
// of dependent global loads, which a warp would wait on whenever any of its lanes meets one
// (on the 8B shape, a fifth of all product rounds). Entries: position from the first block's
// start << 8 | exponent, in element order. Ranges with more than `capacity` escapes are left
// in global memory and searched there.
struct StagedEscapes {
  const uint32_t* entries;  // the shared memory they were (or would have been) staged in
  uint32_t count;
  uint64_t origin;  // element of position 0: the first block's start
  bool staged;      // false: more than the capacity, left in global memory (a flag, not a null
                    // entries: a shared-memory address may be 0)
};

// Entries [lo, hi) of the escape list of blocks first_block.. (the tables were validated on the
// host: ends non-decreasing and within the list, so every read stays inside the payload).
template <bool kProduct>
__device__ __forceinline__ StagedEscapes stage_escapes(const Exp4Desc& t, const uint8_t* comp, uint64_t first,
                                                       uint64_t last, uint32_t* smem, uint32_t capacity,
                                                       uint32_t thread, uint32_t threads) {
  const auto* ends = reinterpret_cast<const uint32_t*>(comp + t.escape_end);
  const auto* where = reinterpret_cast<const uint16_t*>(comp + t.escape_at);
  const uint8_t* exponents = comp + t.escape_exp;
  const uint64_t b0 = escape_block<kProduct>(first, t.block_symbols),
                 b1 = escape_block<kProduct>(last, t.block_symbols);
  const uint32_t lo = b0 == 0 ? 0 : ends[b0 - 1], hi = ends[b1];
  StagedEscapes s{smem, hi - lo, b0 * t.block_symbols, false};
  if (hi - lo > capacity) return s;
  for (uint32_t k = lo + thread; k < hi; k += threads) {
    uint64_t b = b0;  // the entry's block: few blocks per range
    while (ends[b] <= k) ++b;
    smem[k - lo] = static_cast<uint32_t>((b - b0) * t.block_symbols + where[k]) << 8 | exponents[k];
  }
  s.staged = true;
  return s;
}

// Where block b's escape list (entries [ends[b - 1], ends[b]) of `where`) holds position `at`, or
// ~0u when it does not: the one search of the tensor's lists, for the decode and the products'
// rare paths.
__device__ __forceinline__ uint32_t listed_at(const uint32_t* ends, const uint16_t* where, uint64_t b, uint32_t at) {
  uint32_t lo = b == 0 ? 0 : ends[b - 1];
  const uint32_t end = ends[b];
  uint32_t hi = end;
  while (lo < hi) {
    const uint32_t mid = (lo + hi) / 2;
    if (where[mid] < at) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo < end && where[lo] == at ? lo : ~0u;
}

// The exponent of escaped element e, for the decode: searched in the block's staged entries, or
// in the tensor's lists when they were too many to stage. Missing (a code 15 with no escape): the
// tensor's status records the block, and the exponent reads as 0.
__device__ __forceinline__ uint32_t escaped_exponent(const Exp4Desc& t, const uint8_t* comp, StagedEscapes s,
                                                     uint64_t e, uint32_t* status) {
  if (s.staged) {
    const auto key = static_cast<uint32_t>(e - s.origin);
    uint32_t lo = 0, hi = s.count;
    while (lo < hi) {
      const uint32_t mid = (lo + hi) / 2;
      if ((s.entries[mid] >> 8) < key) {
        lo = mid + 1;
      } else {
        hi = mid;
      }
    }
    if (lo < s.count && (s.entries[lo] >> 8) == key) return s.entries[lo] & 0xFF;
  }
  const uint64_t block = e / t.block_symbols;
  if (!s.staged) {
    const uint32_t k = listed_at(reinterpret_cast<const uint32_t*>(comp + t.escape_end),
                                 reinterpret_cast<const uint16_t*>(comp + t.escape_at), block,
                                 static_cast<uint32_t>(e - block * t.block_symbols));
    if (k != ~0u) return comp[t.escape_exp + k];
  }
  atomicCAS(status + t.tensor, 0u, static_cast<uint32_t>(block) + 1);
  return 0;
}

// w with weight i (0..7) replaced by the BF16 `bits`, without indexing a register array at run
// time (which would put the vector in local memory).
__device__ __forceinline__ uint4 with_weight(uint4 w, uint32_t i, uint32_t bits) {
  const uint32_t shift = 16 * (i % 2), keep = ~(0xFFFFu << shift), put = bits << shift;
  const uint32_t j = i / 2;
  if (j == 0) w.x = (w.x & keep) | put;
  if (j == 1) w.y = (w.y & keep) | put;
  if (j == 2) w.z = (w.z & keep) | put;
  if (j == 3) w.w = (w.w & keep) | put;
  return w;
}

// w with each escaped weight (a code 15 in `codes`) rewritten whole: sign and mantissa from its
// sign_mantissa byte, exponent exponent_of(i) for weight i. Visits the escaped weights only.
template <class ExponentOf>
__device__ __forceinline__ uint4 rewrite_escapes(uint32_t codes, uint2 sm, uint4 w, const ExponentOf& exponent_of) {
  for (uint32_t mask = escapes_in(codes); mask != 0; mask &= mask - 1) {
    const uint32_t i = (__ffs(mask) - 1) / 4;
    const uint32_t byte = ((i < 4 ? sm.x : sm.y) >> (8 * (i % 4))) & 0xFF;
    w = with_weight(w, i, bf16_bits(byte, exponent_of(i)));
  }
  return w;
}

// The decode's vector at element e with its escapes rewritten from the escape list.
__device__ __noinline__ uint4 patch_escapes(const Exp4Desc& t, const uint8_t* comp, StagedEscapes s, uint64_t e,
                                            uint32_t codes, uint2 sm, uint4 w, uint32_t* status) {
  return rewrite_escapes(codes, sm, w, [&](uint32_t i) { return escaped_exponent(t, comp, s, e + i, status); });
}

// A product's staged escapes with, for every 8-weight vector of its rows that has any, the index
// of its first entry: a vector's escapes are consecutive entries in element order, so the lane
// that meets one reads its exponents in turn, no search (a search cost a fifth of the products'
// instructions on the 8B shape). A vector without escapes has no index: its slot is never read.
template <typename Slot>
struct VectorEscapes {
  const uint32_t* entries;  // stage_escapes' entries (shared memory)
  const Slot* first;        // by vector of the rows (shared memory)
  uint32_t count;           // entries, kNotStaged when there were too many to stage
  uint32_t key0;            // the rows' first element, counted from the entries' origin
};
constexpr uint32_t kNotStaged = 0xFFFFFFFFu;

// The count a VectorEscapes takes for staged escapes s.
__device__ __forceinline__ uint32_t staged_count(const StagedEscapes& s) { return s.staged ? s.count : kNotStaged; }

// Entry k of a list (`before` the entry ahead of it, kNoEscape for none) recorded as the first of
// its vector's escapes when it is one, for vectors of elements [key0, key0 + elements) counted
// from the origin; an entry outside them (an unused slot among them) is passed over.
template <typename Slot>
__device__ __forceinline__ void index_entry(uint32_t k, uint32_t entry, uint32_t before, uint32_t key0,
                                            uint32_t elements, Slot* first) {
  const uint32_t at = (entry >> 8) - key0;  // wraps for an entry before the rows
  if (at < elements && (before == kNoEscape || (((before >> 8) - key0) >> 3) != (at >> 3)))
    first[at >> 3] = static_cast<Slot>(k);
}

// Writes the first-entry index of every vector of elements [key0, key0 + elements) (counted from
// the origin) that `s` lists escapes in.
template <typename Slot>
__device__ __forceinline__ void index_vectors(const StagedEscapes& s, uint32_t key0, uint32_t elements, Slot* first,
                                              uint32_t thread, uint32_t threads) {
  if (!s.staged) return;
  for (uint32_t k = thread; k < s.count; k += threads)
    index_entry(k, s.entries[k], k == 0 ? kNoEscape : s.entries[k - 1], key0, elements, first);
}

// The escapes of `rows` rows of t from `row` (counted in the tensor) read from its row slots
// (cuda/exp4_row_slots.hpp) into shared memory: the entries (unused slots included: they match no
// element) and, for every vector of elements [key0, key0 + elements) that has any, the index of
// its first entry, as index_vectors writes it. One trip to memory: each thread reads its slot and
// the one before it, so no thread waits for another's. True when a row had more escapes than
// slots: then nothing written may be used, and the caller stages from the lists.
template <typename Slot>
__device__ __forceinline__ bool load_row_slots(const Exp4Desc& t, uint32_t row, uint32_t rows, uint32_t* entries,
                                               Slot* first, uint32_t key0, uint32_t elements, uint32_t thread,
                                               uint32_t threads) {
  const uint32_t per_row = t.slots_per_row, count = rows * per_row;
  const uint32_t* slots = t.row_slots + uint64_t{row} * per_row;  // rows * per_row may pass 2^32
  bool overflow = false;
  for (uint32_t k = thread; k < count; k += threads) {
    const uint32_t entry = __ldg(slots + k), before = k % per_row == 0 ? kNoEscape : __ldg(slots + k - 1);
    overflow |= entry == kRowOverflow;
    entries[k] = entry;
    index_entry(k, entry, before, key0, elements, first);
  }
  return overflow;
}

// The vector whose first element is `key`, as assemble() made it from `base_pair`, with each
// escaped weight's exponent set from its staged entry: assemble gave it base + 15 (below 256:
// GpuDecoder leaves tensors of a higher base to the decode) and its sign and mantissa already, so
// one XOR of the two exponents, shifted to the weight's half of its word, rewrites it. False when
// the entries are not staged or one is missing (a code 15 without its escape: the slot of a
// vector the list does not name holds anything), for the caller's search to settle.
template <typename Slot>
__device__ __forceinline__ bool patch_vector(const VectorEscapes<Slot>& v, uint32_t key, uint32_t codes,
                                             uint32_t base_pair, uint4& w) {
  if (v.count == kNotStaged) return false;
  const uint32_t assembled = ((base_pair >> 7) & 0xFF) + codec::kExp4Escape;
  uint32_t k = v.first[(key - v.key0) >> 3];
  for (uint32_t mask = escapes_in(codes); mask != 0; mask &= mask - 1, ++k) {
    const uint32_t bit = __ffs(mask) - 1;  // 4i for weight i: word i / 2, half i % 2
    const uint32_t entry = k < v.count ? v.entries[k] : 0xFFFFFFFFu;
    if ((entry >> 8) != key + bit / 4) return false;
    const uint32_t flip = ((entry ^ assembled) & 0xFF) << (7 + 4 * (bit & 4)), word = bit / 8;
    w.x ^= word == 0 ? flip : 0;
    w.y ^= word == 1 ? flip : 0;
    w.z ^= word == 2 ? flip : 0;
    w.w ^= word == 3 ? flip : 0;
  }
  return true;
}

// A tensor's escape lists as a product searches them when its rows' escapes were too many to
// stage, or a code 15 has no staged entry (rare paths), in shared memory and all 32-bit, so that
// the path needs few registers and no 64-bit division (the loop around it would spill).
struct Exp4Lists {
  uint32_t first_block;  // the escape block of key 0 (the staged list's origin)
  uint32_t block_symbols;
  const uint32_t* ends;
  const uint16_t* where;
  const uint8_t* exponents;
  uint32_t* status;  // the tensor's status word
};

__device__ __forceinline__ Exp4Lists lists_of(uint64_t origin, const Exp4Desc& t, const uint8_t* comp,
                                              uint32_t* status) {
  return {static_cast<uint32_t>(escape_block<true>(origin, t.block_symbols)),
          t.block_symbols,
          reinterpret_cast<const uint32_t*>(comp + t.escape_end),
          reinterpret_cast<const uint16_t*>(comp + t.escape_at),
          comp + t.escape_exp,
          status + t.tensor};
}

// The exponent of the escaped element `key` elements past the origin, searched in its block's
// list. A code 15 with no escape records its escape block in the status word (+1), reads as 0.
__device__ __forceinline__ uint32_t listed_exponent(const Exp4Lists& l, uint32_t key) {
  const uint32_t block = key / l.block_symbols;  // counted from first_block
  const uint32_t b = l.first_block + block;
  const uint32_t k = listed_at(l.ends, l.where, b, key - block * l.block_symbols);
  if (k != ~0u) return l.exponents[k];
  atomicCAS(l.status, 0u, b + 1);
  return 0;
}

// The vector whose first element is `key` with each escaped weight rewritten whole: from the
// staged entries, else from the tensor's lists.
template <typename Slot>
__device__ __forceinline__ uint4 patch(const VectorEscapes<Slot>& v, const Exp4Lists& lists, uint32_t key,
                                       uint32_t codes, uint2 sm, uint32_t base_pair, uint4 w) {
  if (patch_vector(v, key, codes, base_pair, w)) return w;
  return rewrite_escapes(codes, sm, w, [&](uint32_t i) { return listed_exponent(lists, key + i); });
}

// The 8 weights at element e (a multiple of 8) from their loaded codes and bytes.
__device__ __forceinline__ uint4 weights(const Exp4Desc& t, const uint8_t* comp, StagedEscapes s, uint64_t e,
                                         uint32_t codes, uint2 sm, uint32_t* status) {
  const uint4 w = assemble(codes, sm, t.base_pair);
  return has_escape(codes) ? patch_escapes(t, comp, s, e, codes, sm, w, status) : w;
}

// One block per kDecodeSpan elements, its escapes staged first (a chain of dependent loads,
// paid once per 16 vectors a thread).
__global__ void __launch_bounds__(kDecodeThreads)
    exp4_decode_kernel(const Exp4Desc t, const uint8_t* __restrict__ comp, uint4* __restrict__ out,
                       uint32_t* __restrict__ status) {
  __shared__ uint32_t staged[kDecodeStaged];
  const uint64_t first = uint64_t{blockIdx.x} * kDecodeSpan;
  const uint64_t end = min(first + kDecodeSpan, t.elements);
  const StagedEscapes s = stage_escapes<false>(t, comp, first, end - 1, staged, kDecodeStaged, threadIdx.x, blockDim.x);
  __syncthreads();
  const auto* codes = reinterpret_cast<const uint32_t*>(comp + t.codes);
  const auto* sm = reinterpret_cast<const uint2*>(comp + t.sign_mantissa);
  const bool aligned = reinterpret_cast<uintptr_t>(out) % 16 == 0;  // else 2-byte aligned: 16-bit stores
  for (uint64_t v = first / 8 + threadIdx.x; v < end / 8; v += blockDim.x) {
    const uint4 w = weights(t, comp, s, 8 * v, load_stream4(codes + v), load_stream8(sm + v), status);
    if (aligned) {
      out[v] = w;
    } else {
      uint16_t* o = reinterpret_cast<uint16_t*>(out) + 8 * v;
      const uint32_t words[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        o[2 * j] = static_cast<uint16_t>(words[j]);
        o[2 * j + 1] = static_cast<uint16_t>(words[j] >> 16);
      }
    }
  }
  // The tensor's last elements % 8 weights, one by one.
  if (end == t.elements && threadIdx.x < t.elements % 8) {
    const uint64_t e = t.elements / 8 * 8 + threadIdx.x;
    const uint32_t code = (comp[t.codes + e / 2] >> (4 * (e % 2))) & 0xF;
    const uint32_t byte = comp[t.sign_mantissa + e];
    const uint32_t exponent = code == 15 ? escaped_exponent(t, comp, s, e, status) : t.base() + code;
    reinterpret_cast<uint16_t*>(out)[e] = static_cast<uint16_t>(bf16_bits(byte, exponent));
  }
}

// Rows of the launch's tensors one after another, one warp at a time: a block's warps take rows
// blockIdx.x * kGemvWarps + warp, then a grid's worth further on, so that x is staged once per
// block rather than once per 8 rows. Lane l takes the 8-weight vectors l, l + 32, ... of a row,
// in that order (cuda/gemv_dot.cuh), kGemvUnroll of them loaded before the first multiply; a
// row's first loads are issued before its escapes are staged, so that the memory is busy
// while they arrive. kFloatX: x staged as floats (rows up to kGemvFloatCols long), which spares
// each 8 weights 8 conversions of x; the same sums, so the same bits.
template <bool kFloatX>
__global__ void __launch_bounds__(kGemvWarps * 32, kGemvBlocksPerSm)
    exp4_gemv_kernel(const Exp4Desc* __restrict__ tensors, const Exp4GemvArgs a, const uint8_t* __restrict__ comp,
                     uint32_t* __restrict__ status) {
  extern __shared__ uint4 xs[];  // x, then each warp's row's first-entry indices (a byte a vector)
  __shared__ uint32_t staged[kGemvWarps][kGemvStaged];
  __shared__ Exp4Lists lists[kGemvWarps];
  const uint32_t lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const uint32_t vecs = a.cols / 8;
  uint8_t* first_entry = reinterpret_cast<uint8_t*>(xs + (kFloatX ? 2 : 1) * vecs) + warp * vecs;
  const auto* xf = reinterpret_cast<const float4*>(xs);
  uint32_t total = a.row_end[0];
#pragma unroll
  for (uint32_t i = 1; i < kMaxExp4PerGemv; ++i)
    if (i < a.count) total = a.row_end[i];
  if constexpr (kFloatX) {
    stage_input_f32(reinterpret_cast<float4*>(xs), a.x, static_cast<int>(a.cols));
  } else {
    stage_input(xs, a.x, static_cast<int>(a.cols));
  }
  // 8 weights at vector c of the row against x.
  const auto dot = [&](uint4 w, uint32_t c) {
    if constexpr (kFloatX) return dot16<__nv_bfloat16>(w, xf[2 * c], xf[2 * c + 1]);
    return dot16<__nv_bfloat16>(w, xs[c]);
  };
  for (uint32_t row = blockIdx.x * kGemvWarps + warp; row < total; row += gridDim.x * kGemvWarps) {
    // The row's tensor, picked with constant indices so that the argument array is never
    // indexed at run time.
    uint32_t ti = 0, first_row = 0;
#pragma unroll
    for (uint32_t i = 1; i < kMaxExp4PerGemv; ++i) {
      if (i < a.count && row >= a.row_end[i - 1]) {
        ti = i;
        first_row = a.row_end[i - 1];
      }
    }
    const Exp4Desc& t = tensors[ti];
    const uint64_t e0 = uint64_t{row - first_row} * a.cols;
    const auto* codes = reinterpret_cast<const uint32_t*>(comp + t.codes) + e0 / 8;
    const auto* sm = reinterpret_cast<const uint2*>(comp + t.sign_mantissa + e0);
    // Rounds are whole for every lane or for none (decided by lane 31), so that the loop's loads
    // need no bounds; the tail takes the rest with idle lanes masked.
    uint32_t c = lane;
    uint32_t cw[kGemvUnroll];
    uint2 sw[kGemvUnroll];
    bool full = c - lane + 31 + 32 * (kGemvUnroll - 1) < vecs;  // a whole unrolled round left
    if (full) {
#pragma unroll
      for (int u = 0; u < kGemvUnroll; ++u) {
        cw[u] = load_stream4(codes + c + 32 * u);
        sw[u] = load_stream8(sm + c + 32 * u);
      }
    }
    // The row's escapes: from its slots when it has them (one trip to memory), else staged from the
    // lists (two).
    const uint32_t in_tensor = row - first_row;
    const uint32_t tile_origin = exp4_tile_origin(in_tensor, a.cols, t.block_symbols);
    StagedEscapes s{staged[warp], t.slots_per_row, tile_origin, true};
    uint32_t key = in_tensor * a.cols - tile_origin;  // the row's first element in the staged list
    const bool slotted =
        t.row_slots != nullptr &&
        !__any_sync(0xFFFFFFFFu, load_row_slots(t, in_tensor, 1, staged[warp], first_entry, key, a.cols, lane, 32));
    if (!slotted) {
      __syncwarp();  // every lane is done with the slots
      s = stage_escapes<true>(t, comp, e0, e0 + a.cols - 1, staged[warp], kGemvStaged, lane, 32);
      key = static_cast<uint32_t>(e0 - s.origin);
      __syncwarp();  // the entries, staged by the warp's lanes, are read by others
      index_vectors(s, key, a.cols, first_entry, lane, 32);
    }
    if (lane == 0) lists[warp] = lists_of(s.origin, t, comp, status);
    __syncwarp();
    const VectorEscapes<uint8_t> esc{staged[warp], first_entry, staged_count(s), key};
    float acc = 0;
    while (full) {
#pragma unroll
      for (int u = 0; u < kGemvUnroll; ++u) {
        uint4 w = assemble(cw[u], sw[u], t.base_pair);
        if (has_escape(cw[u])) w = patch(esc, lists[warp], key + 8 * (c + 32 * u), cw[u], sw[u], t.base_pair, w);
        acc += dot(w, c + 32 * u);
      }
      c += 32 * kGemvUnroll;
      full = c - lane + 31 + 32 * (kGemvUnroll - 1) < vecs;
      if (full) {
#pragma unroll
        for (int u = 0; u < kGemvUnroll; ++u) {
          cw[u] = load_stream4(codes + c + 32 * u);
          sw[u] = load_stream8(sm + c + 32 * u);
        }
      }
    }
    for (; c - lane < vecs; c += 32) {
      const bool here = c < vecs;
      const uint32_t code_word = here ? load_stream4(codes + c) : 0;  // code 0: no escape
      const uint2 sm_word = here ? load_stream8(sm + c) : make_uint2(0, 0);
      uint4 w = assemble(code_word, sm_word, t.base_pair);
      if (has_escape(code_word)) w = patch(esc, lists[warp], key + 8 * c, code_word, sm_word, t.base_pair, w);
      if (here) acc += dot(w, c);
    }
    acc = warp_sum(acc);
    if (lane == 0) store_row(a.y, row, acc, nullptr, a.out);
    __syncwarp();  // the next row's escapes overwrite this row's
  }
  let_successor_launch();
}

// The weights of one tensor's rows for the tensor-core product: 16 codes (8 bytes) and 16
// sign_mantissa bytes a fetch, rebuilt as the decode rebuilds them, escapes from the tile's
// staged list. A lane's view of a row holds the row's addresses, computed once a block.
struct Exp4Rows {
  struct Raw {
    uint2 codes;
    uint4 sm;  // 16 bytes: one load (exp4_gemm_takes asks the plane to be 16-byte aligned)
  };
  struct Lane {
    const uint8_t* codes;  // the row's codes: element k in nibble k
    const uint8_t* sm;     // the row's sign_mantissa bytes
    uint32_t key;          // the row's first element, counted from the staged escapes' origin
    uint32_t base_pair;
    VectorEscapes<uint16_t> escapes;
    const Exp4Lists* lists;
    __device__ __forceinline__ Raw fetch(int k) const {
      return {load_stream8(reinterpret_cast<const uint2*>(codes + k / 2)),
              load_stream(reinterpret_cast<const uint4*>(sm + k))};
    }
    __device__ __forceinline__ void rebuild(const Raw& r, int k, uint4 (&w)[2]) const {
      const uint2 sm_lo = make_uint2(r.sm.x, r.sm.y), sm_hi = make_uint2(r.sm.z, r.sm.w);
      w[0] = assemble(r.codes.x, sm_lo, base_pair);
      w[1] = assemble(r.codes.y, sm_hi, base_pair);
      if (has_escape(r.codes.x)) w[0] = patch(escapes, *lists, key + uint32_t(k), r.codes.x, sm_lo, base_pair, w[0]);
      if (has_escape(r.codes.y))
        w[1] = patch(escapes, *lists, key + uint32_t(k) + 8, r.codes.y, sm_hi, base_pair, w[1]);
    }
  };
  const uint8_t* codes;  // the tensor's codes, element e in nibble e of the plane
  const uint8_t* sm;     // its sign_mantissa bytes
  uint32_t base_pair;
  uint32_t first_row;  // the tensor's first row among the launch's
  uint32_t cols;
  uint64_t origin;  // the staged escapes' origin
  VectorEscapes<uint16_t> escapes;
  const Exp4Lists* lists;
  __device__ __forceinline__ Lane lane(int row) const {
    const uint64_t e = uint64_t(uint32_t(row) - first_row) * cols;
    return {codes + e / 2, sm + e, static_cast<uint32_t>(e - origin), base_pair, escapes, lists};
  }
};

// One block a 16-row tile of the launch's rows (all in one tensor: their counts are multiples of
// 16), the tile's escapes staged and indexed by vector first. Two blocks an SM, 64 registers, no
// spills: a lane's rows are addressed once a block, and an escape costs its lane a shared-memory
// read or two. Measured slower at batch 8 on the 8B shape (H200, docs/BENCHMARKS.md): the next
// chunk's loads in flight (80 registers, one block an SM: 871 tok/s against 1090 at two); each
// warp's first chunk fetched before the escapes are staged (1090 against 1120, and it spills);
// L2 asked for each warp's next chunk (1313 against 1553); sign_mantissa in two 8-byte loads
// (988 against 1029); chunks in flight as asynchronous copies into shared memory (704-743,
// branch gemm-async-stages: its per-lane copies throttle the memory instruction queue).
__global__ void __launch_bounds__(kSkinnyWarps * 32, 2)
    exp4_gemm_kernel(const Exp4Desc* __restrict__ tensors, const Exp4GemvArgs a, const uint8_t* __restrict__ comp,
                     uint32_t* __restrict__ status) {
  extern __shared__ float partial[];  // the warps' sums, then the tile's first-entry indices
  __shared__ uint32_t staged[kGemmStaged];
  __shared__ Exp4Lists lists;
  auto* first_entry = reinterpret_cast<uint16_t*>(partial + kSkinnySharedBytes / sizeof(float));
  const uint32_t row0 = blockIdx.x * kSkinnyRows;
  uint32_t ti = 0, first_row = 0, total = a.row_end[0];
#pragma unroll
  for (uint32_t i = 1; i < kMaxExp4PerGemv; ++i) {
    if (i < a.count) total = a.row_end[i];
    if (i < a.count && row0 >= a.row_end[i - 1]) {
      ti = i;
      first_row = a.row_end[i - 1];
    }
  }
  const Exp4Desc* t = tensors + ti;
  // The tile's escapes: from its rows' slots when they have them (one trip to memory, one
  // barrier), else staged from the lists (two of each). Both count from the tile's origin.
  const uint32_t tile_row = row0 - first_row;
  const uint64_t e0 = uint64_t{tile_row} * a.cols;
  const uint32_t elements = kSkinnyRows * a.cols;
  const auto origin = exp4_tile_origin(tile_row, a.cols, t->block_symbols);
  const auto key0 = tile_row * a.cols - origin;
  if (threadIdx.x == 0) lists = lists_of(origin, *t, comp, status);
  uint32_t count = kSkinnyRows * t->slots_per_row;  // unused slots included: they match no element
  const bool slotted =
      t->row_slots != nullptr && !__syncthreads_or(load_row_slots(*t, tile_row, kSkinnyRows, staged, first_entry, key0,
                                                                  elements, threadIdx.x, blockDim.x));
  if (!slotted) {  // the same origin: the escape block of the tile's first element
    const StagedEscapes s =
        stage_escapes<true>(*t, comp, e0, e0 + elements - 1, staged, kGemmStaged, threadIdx.x, blockDim.x);
    count = staged_count(s);
    __syncthreads();
    index_vectors(s, key0, elements, first_entry, threadIdx.x, blockDim.x);
    __syncthreads();
  }
  const Exp4Rows rows{comp + t->codes,
                      comp + t->sign_mantissa,
                      t->base_pair,
                      first_row,
                      a.cols,
                      origin,
                      {staged, first_entry, count, key0},
                      &lists};
  skinny_gemm_block<__nv_bfloat16, Exp4Rows, false>(rows, static_cast<const __nv_bfloat16*>(a.x), int(a.batch),
                                                    int(a.cols), int(total), int(row0), static_cast<float*>(a.y),
                                                    int(a.ldy), a.out == GemvOut::F32Add, partial);
}

// Rows the batched product takes: whole 16-row tiles of whole 64-element chunks.
bool exp4_gemm_shape(uint64_t rows, uint64_t cols) {
  return rows > 0 && rows % kSkinnyRows == 0 && skinny_takes_rows_of(cols);
}

}  // namespace

void launch_exp4_decode(const Exp4Desc& t, const uint8_t* comp, void* out, uint32_t* status, cudaStream_t stream) {
  if (t.elements == 0) return;
  const uint64_t blocks = (t.elements + kDecodeSpan - 1) / kDecodeSpan;
  if (blocks >= (uint64_t{1} << 31)) throw Error("exp4 decode: tensor too large");
  exp4_decode_kernel<<<static_cast<unsigned>(blocks), kDecodeThreads, 0, stream>>>(t, comp, static_cast<uint4*>(out),
                                                                                   status);
}

void launch_exp4_gemv(const Exp4Desc* tensors, const Exp4GemvArgs& args, const uint8_t* comp, uint32_t* status,
                      bool overlap, cudaStream_t stream) {
  if (args.count == 0 || args.count > kMaxExp4PerGemv) throw Error("exp4 product: 1 to 8 tensors per launch");
  const uint32_t rows = args.row_end[args.count - 1];
  if (rows == 0) return;
  // As many blocks as are resident at once (warps loop over rows), fewer for short matrices.
  int device = 0, sms = 0;
  CLLM_CUDA_CHECK(cudaGetDevice(&device));
  CLLM_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  const uint32_t blocks = std::min<uint32_t>((rows + kGemvWarps - 1) / kGemvWarps, uint32_t(sms) * kGemvBlocksPerSm);
  const bool float_x = args.cols <= kGemvFloatCols;
  const size_t shared = size_t{args.cols} * (float_x ? 4 : 2) + size_t{args.cols} / 8 * kGemvWarps;
  launch_kernel(float_x ? exp4_gemv_kernel<true> : exp4_gemv_kernel<false>, dim3(blocks), dim3(kGemvWarps * 32), shared,
                stream, overlap, tensors, args, comp, status);
}

bool exp4_gemm_takes(const Exp4Desc& t) {
  // Offsets within a range whose start launch_exp4_gemm checks is 16-byte aligned: the kernel
  // reads 16 sign_mantissa bytes and 8 bytes of codes at a time.
  return t.cols > 0 && exp4_gemm_shape(t.elements / t.cols, t.cols) && t.sign_mantissa % 16 == 0 && t.codes % 8 == 0;
}

void launch_exp4_gemm(const Exp4Desc* tensors, const Exp4GemvArgs& args, const uint8_t* comp, uint32_t* status,
                      bool overlap, cudaStream_t stream) {
  if (args.count == 0 || args.count > kMaxExp4PerGemv) throw Error("exp4 product: 1 to 8 tensors per launch");
  if (args.batch < 2 || args.batch > uint32_t(kSkinnyMaxBatch) || args.out == GemvOut::Bf16 || args.ldy == 0)
    throw Error("exp4 product: 2 to 8 sequences into float rows");
  for (uint32_t i = 0; i < args.count; ++i) {
    if (!exp4_gemm_shape(args.row_end[i] - (i == 0 ? 0 : args.row_end[i - 1]), args.cols))
      throw Error("exp4 product: tensors of rows a multiple of 16 and 64 long expected");
  }
  if (reinterpret_cast<uintptr_t>(comp) % 16 != 0) throw Error("exp4 product: compressed range not 16-byte aligned");
  const uint32_t rows = args.row_end[args.count - 1];
  launch_kernel(exp4_gemm_kernel, dim3(rows / kSkinnyRows), dim3(kSkinnyWarps * 32),
                kSkinnySharedBytes + size_t{args.cols} / 8 * kSkinnyRows * sizeof(uint16_t), stream, overlap, tensors,
                args, comp, status);
}

}  // namespace codecllm::cuda
