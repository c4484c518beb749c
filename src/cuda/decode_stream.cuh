// One warp's view of a coded plane's words in a chunk: the stream is copied from global memory
// into a per-warp ring in shared memory by cp.async, several groups of steps ahead of the
// decoder, so the rANS chain never waits on a global load. Words are then read with
// shared-memory loads, which are short and fixed in latency.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "codec/rans.hpp"
#include "cuda/cuda_check.hpp"
#include "cuda/decode_desc.hpp"

namespace codecllm::cuda {

using codec::kChunkStateBytes;
using codec::kRansL;
static_assert(codec::kRansLanes == 32, "one warp lane per interleaved rANS state");
constexpr uint32_t kFullMask = 0xffffffffu;

// A group is kGroupSteps decode steps of 32 symbols, between two visits to the ring logic.
// A coded plane reads at most one 16-bit word per symbol.
constexpr uint32_t kGroupSteps = 16;
constexpr uint32_t kSegmentBytes = 512;  // one cp.async of 16 bytes per lane
constexpr uint32_t kRingSegments = 4;
constexpr uint32_t kRingBytes = kSegmentBytes * kRingSegments;  // per plane and warp
constexpr uint32_t kGroupMaxCodedBytes = kGroupSteps * 32 * 2;
static_assert(kGroupMaxCodedBytes <= (kRingSegments - 1) * kSegmentBytes, "a group must fit the ring's live slots");

// Ring protocol (per warp, every plane): at the start of a group the warp has consumed `pos`
// bytes. It issues every segment up to pos / 512 + 3 as one commit group: the ring holds
// segments pos / 512 .. pos / 512 + 3, so a slot it overwrites belongs to a consumed segment,
// and the group's reads (below pos + kGroupMaxCodedBytes) stay inside the live ones. Then it
// waits only as far as needed: if every segment the group may read was issued two commit
// groups ago, it lets two groups stay in flight; else one, else none. Exponent planes consume
// far less than the worst case and run with loads one or two groups ahead.

// Dynamic shared memory of a decode block: the coded planes' tables, then per warp one ring
// and one group buffer of decoded symbols per coded plane. Declared once here so that every access indexes the same
// array.
extern __shared__ __align__(16) uint32_t smem[];

// Hot-loop reads take 32-bit shared-window addresses, so that an address is one add or OR
// away from its offset (a generic pointer costs a conversion and an add per access).
__device__ __forceinline__ uint32_t shared_address(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
// An unsigned load of kBytes (1, 2 or 4) from a shared-window address.
template <int kBytes>
__device__ __forceinline__ uint32_t lds(uint32_t addr) {
  static_assert(kBytes == 1 || kBytes == 2 || kBytes == 4, "lds loads 1, 2 or 4 bytes");
  uint32_t v;
  if constexpr (kBytes == 1) asm volatile("ld.shared.u8 %0, [%1];\n" : "=r"(v) : "r"(addr));
  if constexpr (kBytes == 2) asm volatile("ld.shared.u16 %0, [%1];\n" : "=r"(v) : "r"(addr));
  if constexpr (kBytes == 4) asm volatile("ld.shared.u32 %0, [%1];\n" : "=r"(v) : "r"(addr));
  return v;
}
// 16 bytes from a 16-byte aligned shared-window address.
__device__ __forceinline__ uint4 lds16(uint32_t addr) {
  uint4 v;
  asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];\n" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "r"(addr));
  return v;
}
__device__ __forceinline__ void sts8(uint32_t addr, uint32_t v) {
  asm volatile("st.shared.u8 [%0], %1;\n" ::"r"(addr), "r"(v) : "memory");
}

// __ballot_sync makes the compiler add a divergence check and a slow path to every vote; the
// decode loops keep their warps converged, so the plain instruction is enough.
__device__ __forceinline__ uint32_t warp_ballot(bool pred) {
  uint32_t r;
  asm("{\n .reg .pred p;\n setp.ne.u32 p, %1, 0;\n vote.sync.ballot.b32 %0, p, 0xffffffff;\n}"
      : "=r"(r)
      : "r"(static_cast<uint32_t>(pred)));
  return r;
}

// v, in a register written by a shuffle rather than by a load. The steps read such values
// every group; had they come straight from a load, the compiler may track that load with the
// same scoreboard as the raw-plane loads issued at each group start, and then the first step
// of every group waits for those (measured: a fifth of the decode time).
// (Two exchanges with the neighbouring lane; mixing in the lane index keeps a value that is
// the same in every lane from being recognised as such and the exchanges folded away.)
__device__ __forceinline__ uint32_t settled(uint32_t v) {
  const uint32_t lane = threadIdx.x % 32;
  return __shfl_xor_sync(kFullMask, __shfl_xor_sync(kFullMask, v ^ lane, 1), 1) ^ lane;
}

struct RingStream {
  const uint8_t* src;         // this chunk's bytes in global memory, 16-byte aligned
  uint32_t bytes;             // stream length; segments past it are filled with zeros
  uint32_t issued;            // segments issued so far
  uint32_t issued_before[2];  // `issued` after the previous group's and the one before's commits
  uint32_t ring;              // shared-window address of this warp's ring for the plane, kRingBytes-aligned
  uint32_t pos;               // bytes consumed (a coded plane: 2 x words consumed)
};

// Lanes copy 16 bytes each. A lane whose 16 bytes lie wholly inside the stream uses cp.async;
// the lanes at or past its end (once per stream) store the tail and the zero fill themselves,
// so no access ever reaches past the stream, even within the same 16-byte block.
__device__ __forceinline__ void issue_segments(RingStream& s, uint32_t upto, uint32_t lane) {
  while (s.issued < upto) {
    const uint32_t off = s.issued * kSegmentBytes + lane * 16;
    const uint32_t dst = s.ring | (off & (kRingBytes - 1));
    if (off + 16 <= s.bytes) {
      asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(s.src + off) : "memory");
    } else {
      for (uint32_t k = 0; k < 16; ++k) sts8(dst + k, off + k < s.bytes ? s.src[off + k] : 0u);
    }
    ++s.issued;
  }
}

__device__ __forceinline__ void issue_ahead(RingStream& s, uint32_t lane) {
  s.issued_before[1] = s.issued_before[0];
  s.issued_before[0] = s.issued;
  issue_segments(s, s.pos / kSegmentBytes + kRingSegments, lane);
}

// How many of the latest commit groups may stay in flight for this group's reads of the
// plane (2, 1 or 0): the segments it may read end at `reads_end` (exclusive).
__device__ __forceinline__ uint32_t groups_in_flight(const RingStream& s, uint32_t max_read) {
  const uint32_t reads_end = (s.pos + max_read + kSegmentBytes - 1) / kSegmentBytes;
  return reads_end <= s.issued_before[1] ? 2u : reads_end <= s.issued_before[0] ? 1u : 0u;
}

__device__ __forceinline__ void commit_segments() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }

template <int N>
__device__ __forceinline__ void wait_segments() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// Waits until at most n (2, 1 or 0) of the latest commit groups are still in flight.
__device__ __forceinline__ void wait_segments_but(uint32_t n) {
  if (n == 2) {
    wait_segments<2>();
  } else if (n == 1) {
    wait_segments<1>();
  } else {
    wait_segments<0>();
  }
}

// A warp's start on chunk `chunk` of coded plane pd: its word stream, read through the ring at
// shared-window address `ring`, and this lane's initial state (returned). Chunk bounds were
// validated on the host: at least the states, a multiple of 16 bytes.
__device__ __forceinline__ uint32_t open_chunk(const PlaneDesc& pd, const uint8_t* comp, uint32_t chunk, uint32_t ring,
                                               uint32_t lane, RingStream& s) {
  const uint32_t* ends = reinterpret_cast<const uint32_t*>(comp + pd.chunk_ends);
  const uint32_t begin = chunk == 0 ? 0 : ends[chunk - 1];
  const uint8_t* data = comp + pd.data + begin;
  s.src = data + kChunkStateBytes;
  s.bytes = ends[chunk] - begin - kChunkStateBytes;  // the words, zero padding included
  s.issued = 0;
  s.issued_before[0] = s.issued_before[1] = 0;
  s.pos = 0;
  s.ring = ring;
  return settled(reinterpret_cast<const uint32_t*>(data)[lane]);
}

// Integrity at the end of a chunk, as on the CPU: the state back at L and the word stream used
// up exactly (the chunk is its states, the words, then zero padding to 16 bytes).
__device__ __forceinline__ bool chunk_ok(uint32_t x, const RingStream& s) {
  return x == kRansL && ((kChunkStateBytes + s.pos + 15) & ~15u) == kChunkStateBytes + s.bytes;
}

// Copies the tables of every coded plane of t into shared memory (the whole block; the caller
// synchronizes before the steps read them).
__device__ __forceinline__ void stage_tables(const TensorDesc& t, const uint32_t* __restrict__ pool, bool packed) {
  for (uint32_t p = 0; p < t.num_planes; ++p) {
    const PlaneDesc& pd = t.planes[p];
    if (!pd.coded) continue;
    const uint32_t n = gpu_table_words(pd.prob_bits, packed);
    const uint32_t* src = pool + pd.table;
    for (uint32_t i = threadIdx.x; i < n; i += blockDim.x) smem[pd.table_offset + i] = src[i];
  }
}

// A decode block's shared memory (both decode kernels): the coded planes' tables, rounded up
// to 16 bytes; then, from the next kRingBytes boundary (the block asks for enough to round up),
// per warp `slots` rings, then per warp `slots` buffers of one group's decoded symbols, one byte
// each in step-major order. Rings come first, so that each stays kRingBytes-aligned and a ring
// address is one OR of base and offset.
constexpr uint32_t kGroupSymbols = kGroupSteps * 32;
constexpr size_t table_bytes_in_block(size_t table_bytes) { return (table_bytes + 15) / 16 * 16; }
constexpr size_t block_shared_bytes(size_t block_table_bytes, uint32_t slots, uint32_t warps = kWarpsPerBlock) {
  return block_table_bytes + kRingBytes + size_t{warps} * slots * (kRingBytes + kGroupSymbols);
}
struct WarpBuffers {
  uint32_t rings, symbols;  // shared-window addresses of this warp's first ring and symbol buffer
};
__device__ __forceinline__ WarpBuffers warp_buffers(uint32_t block_table_bytes, uint32_t warp, uint32_t slots,
                                                    uint32_t warps = kWarpsPerBlock) {
  const uint32_t base = (shared_address(smem) + block_table_bytes + kRingBytes - 1) / kRingBytes * kRingBytes;
  return {base + warp * slots * kRingBytes, base + warps * slots * kRingBytes + warp * slots * kGroupSymbols};
}

// A coded plane's lane: the rANS state and where its tables start.
struct LaneState {
  uint32_t x;
  uint32_t table;  // its tables (see gpu_table_words): shared-window byte address, or pool index
};

// One rANS decode step of one lane: x' = freq * (x >> p) + k for the symbol of slot
// t = x & mask, where k = t - cum (the tables: gpu_table_words). Packed entry of a slot:
// (freq - 1) | symbol << 12 | k << 20, one load; split entry: freq | k << 16, the symbol in a
// byte table after the entries. Lanes whose x' fell below L take the next words of the
// stream, in lane order (a prefix count over the ballot). `active` is false only for the
// missing symbols of a partial last step. Returns a word whose low byte is the symbol (callers
// store that byte). The launches with fewer chunks than warp slots are bound by this chain of
// dependent operations, so x' is two operations from the table load (a mask and a multiply-add,
// beside a fused shift-add), and the symbol's shift is off the chain.
template <bool kPacked, bool kSharedTables, bool kFull>
__device__ __forceinline__ uint32_t rans_step(LaneState& c, RingStream& s, const uint32_t* __restrict__ pool,
                                              uint32_t p, uint32_t mask, bool active, uint32_t lane_mask_lt) {
  const uint32_t slot = c.x & mask;
  uint32_t x, symbol;
  if constexpr (kPacked) {
    const uint32_t e = kSharedTables ? lds<4>(c.table + 4 * slot) : __ldg(pool + c.table + slot);
    const uint32_t xs = c.x >> p;
    x = (e & 0xfffu) * xs + xs + (e >> 20);
    symbol = e >> 12;
  } else {
    uint32_t e;
    if constexpr (kSharedTables) {
      e = lds<4>(c.table + 4 * slot);
      symbol = lds<1>(c.table + 4 * (mask + 1) + slot);
    } else {
      e = __ldg(pool + c.table + slot);
      symbol = __ldg(reinterpret_cast<const uint8_t*>(pool + c.table + mask + 1) + slot);
    }
    x = (e & 0xffffu) * (c.x >> p) + (e >> 16);
  }
  if (!kFull && !active) x = c.x;
  const bool refill = (kFull || active) && x < kRansL;
  const uint32_t ballot = warp_ballot(refill);
  // Every lane loads (a word of the ring, needed or not) so that the step has no branch. A
  // read past the chunk's words yields the zero fill and is caught by the final check.
  const uint32_t word = lds<2>(s.ring | ((s.pos + 2 * __popc(ballot & lane_mask_lt)) & (kRingBytes - 1)));
  c.x = refill ? (x << 16) | word : x;
  s.pos += 2 * __popc(ballot);
  return symbol;
}

}  // namespace codecllm::cuda
