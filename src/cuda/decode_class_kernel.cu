// GPU decode of BF16 tensors with a class-table exponent plane (decode_class.hpp): one warp per
// chunk, lane l holding interleaved state l, every table and word read from global memory.
// Tables have the batched kernels' split layout (gpu_decoder.cpp, append_table).
// The bitstream is the CPU reference's (codec/rans_decode.cpp), step for step; every word read
// is bounds-checked against the chunk, so corrupt data is reported, never read past.
#include <cuda_runtime.h>

#include <cstdint>

#include "codec/rans.hpp"
#include "cuda/cuda_check.hpp"
#include "cuda/decode_class.hpp"
#include "cuda/decode_desc.hpp"

namespace codecllm::cuda {
namespace {

using codec::kChunkStateBytes;
using codec::kRansL;
constexpr uint32_t kFullMask = 0xffffffffu;
constexpr uint32_t kClassWarps = 8;  // chunks per block

// One lane of a coded plane in one chunk: its state and the chunk's word stream.
struct Lane {
  uint32_t x;
  const uint16_t* words;  // the words after the 32 states, zero padding included
  uint32_t avail;         // words in the chunk (padding included): reads stay below it
  uint32_t pos;           // words the warp has consumed
};

// Opens chunk c of plane p: bounds from its chunk_end array (validated on the host: a multiple
// of 16 bytes, at least the states), the initial state of this lane (one below L is corrupt:
// see the CPU).
__device__ Lane open_chunk(const ClassPlaneDesc& p, const uint8_t* comp, uint32_t c, uint32_t lane, bool& bad) {
  const uint32_t* e = reinterpret_cast<const uint32_t*>(comp + p.chunk_ends);
  const uint32_t begin = c == 0 ? 0 : e[c - 1];
  const uint8_t* chunk = comp + p.bytes + begin;
  Lane s;
  s.x = reinterpret_cast<const uint32_t*>(chunk)[lane];
  s.words = reinterpret_cast<const uint16_t*>(chunk + kChunkStateBytes);
  s.avail = (e[c] - begin - kChunkStateBytes) / 2;
  s.pos = 0;
  if (s.x < kRansL) bad = true;
  return s;
}

// One step: symbol of slot t = x mod M in `table` (split layout: 2^p words freq | bias << 16,
// then 2^p symbol bytes), x' = freq * (x >> p) + bias, and lanes whose x' fell below L take the
// next words in lane order (a prefix count over the ballot). Running out of words is
// corruption. Inactive lanes (past the end of a partial last step) keep their state.
__device__ uint32_t step(Lane& s, const uint32_t* __restrict__ table, uint32_t p, bool active, uint32_t lane_mask_lt,
                         bool& bad) {
  const uint32_t slot = s.x & ((1u << p) - 1);
  const uint32_t e = __ldg(table + slot);
  const uint32_t symbol = __ldg(reinterpret_cast<const uint8_t*>(table + (1u << p)) + slot);
  uint32_t x = (e & 0xffffu) * (s.x >> p) + (e >> 16);
  const bool refill = active && x < kRansL;
  const uint32_t ballot = __ballot_sync(kFullMask, refill);
  if (refill) {
    const uint32_t at = s.pos + __popc(ballot & lane_mask_lt);
    if (at < s.avail) {
      x = (x << 16) | s.words[at];
    } else {
      bad = true;
      x <<= 16;
    }
  }
  s.pos += __popc(ballot);
  if (active) s.x = x;
  return symbol;
}

// Integrity at the end of a chunk, as on the CPU: every state back at L, every word consumed
// (only zero padding to 16 bytes left). The warp checks the padding words together. pos is
// compared first so that the byte counts below cannot overflow.
__device__ bool chunk_ok(const Lane& s, uint32_t lane) {
  bool ok = s.x == kRansL && s.pos <= s.avail &&
            (kChunkStateBytes + 2 * s.pos + 15) / 16 == (kChunkStateBytes + 2 * s.avail) / 16;
  for (uint32_t j = s.pos + lane; ok && j < s.avail; j += 32) ok = s.words[j] == 0;
  return ok;
}

__global__ void __launch_bounds__(kClassWarps * 32)
    decode_classes_kernel(const ClassTensorDesc t, const uint32_t* __restrict__ tables,
                          const uint8_t* __restrict__ comp, uint16_t* __restrict__ out, uint32_t* __restrict__ status) {
  const uint32_t chunk = blockIdx.x * kClassWarps + threadIdx.x / 32;
  if (chunk >= t.num_chunks) return;  // whole warps: the ballots below see all 32 lanes
  const uint32_t lane = threadIdx.x % 32;
  const uint32_t lane_mask_lt = (1u << lane) - 1;
  const uint64_t first = uint64_t{chunk} * t.chunk_symbols;
  const uint64_t remaining = t.elements - first;
  const uint32_t n = remaining < t.chunk_symbols ? static_cast<uint32_t>(remaining) : t.chunk_symbols;

  const ClassPlaneDesc& ep = t.exponent;
  const ClassPlaneDesc& sp = t.sign_mantissa;
  bool bad = false;
  Lane ex = open_chunk(ep, comp, chunk, lane, bad);
  Lane sm{};
  if (sp.coded) sm = open_chunk(sp, comp, chunk, lane, bad);
  const uint8_t* classes = comp + t.classes;
  const uint32_t table_words = gpu_table_words(ep.prob_bits, false);
  const uint8_t* sm_raw = comp + sp.bytes;

  for (uint32_t i0 = 0; i0 < n; i0 += 32) {
    const uint32_t i = i0 + lane;
    const bool active = i < n;
    const uint64_t g = first + i;
    uint32_t k = 0;  // the class's table (inactive lanes: any valid one)
    if (active) k = classes[t.axis == 0 ? g / t.cols : g % t.cols];
    const uint32_t e = step(ex, tables + ep.table + uint64_t{k} * table_words, ep.prob_bits, active, lane_mask_lt, bad);
    uint32_t s = 0;
    if (sp.coded) {
      s = step(sm, tables + sp.table, sp.prob_bits, active, lane_mask_lt, bad);
    } else if (active) {
      s = sm_raw[g];
    }
    // codec::merge_planes: sign at bit 15, exponent at bits 14..7, mantissa at bits 6..0.
    if (active) out[g] = static_cast<uint16_t>(((s & 0x80u) << 8) | (e << 7) | (s & 0x7fu));
  }
  if (!chunk_ok(ex, lane) || (sp.coded && !chunk_ok(sm, lane))) bad = true;
  if (__any_sync(kFullMask, bad) && lane == 0) atomicCAS(status + t.tensor, 0u, chunk + 1);
}

}  // namespace

void launch_decode_classes(const ClassTensorDesc& t, const uint32_t* tables, const uint8_t* comp, uint16_t* out,
                           uint32_t* status, cudaStream_t stream) {
  if (t.num_chunks == 0) return;
  const uint32_t blocks = (t.num_chunks + kClassWarps - 1) / kClassWarps;
  decode_classes_kernel<<<blocks, kClassWarps * 32, 0, stream>>>(t, tables, comp, out, status);
}

}  // namespace codecllm::cuda
