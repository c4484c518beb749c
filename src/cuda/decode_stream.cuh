// One warp's view of a plane's bytes in a chunk: the stream is copied from global memory into
// a per-warp ring in shared memory by cp.async, several groups of steps ahead of the decoder,
// so the rANS chain never waits on a global load. Words and raw bytes are then read with
// shared-memory loads, which are short and fixed in latency.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace codecllm::cuda {

constexpr uint32_t kRansL = 1u << 16;
constexpr uint32_t kFullMask = 0xffffffffu;

// A group is kGroupSteps decode steps of 32 symbols. A coded plane reads at most one 16-bit
// word per symbol, so at most kSegmentBytes per group; a raw plane reads exactly half of that.
constexpr uint32_t kGroupSteps = 8;
constexpr uint32_t kSegmentBytes = 512;  // one cp.async of 16 bytes per lane
constexpr uint32_t kRingSegments = 4;
constexpr uint32_t kRingBytes = kSegmentBytes * kRingSegments;  // per plane and warp

// Ring protocol (per warp, every plane): at the start of group g the warp has consumed `pos`
// bytes. It issues every segment up to pos / 512 + 3 (the ring holds segments pos / 512 ..
// pos / 512 + 3, so the slot it overwrites belongs to a consumed segment) as one commit group,
// then waits until at most two commit groups are pending. The group reads bytes below
// pos + 512, i.e. segments up to pos / 512 + 1; those were issued by group g - 2 at the
// latest, because two groups consume at most two segments. Group 0 issues segments 0..3 and
// waits for them; groups 1 and 2 need nothing beyond those.

// Dynamic shared memory of a decode block: the coded planes' tables, then one ring per warp
// and plane. Declared once here so that every access indexes the same array (and compiles to
// shared-memory loads).
extern __shared__ __align__(16) uint32_t smem[];

__device__ __forceinline__ uint32_t smem_u8(uint32_t byte) { return reinterpret_cast<const uint8_t*>(smem)[byte]; }
__device__ __forceinline__ uint32_t smem_u16(uint32_t byte) {  // byte: even
  return *reinterpret_cast<const uint16_t*>(reinterpret_cast<const uint8_t*>(smem) + byte);
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

struct RingStream {
  const uint8_t* src;  // this chunk's bytes in global memory, 16-byte aligned
  uint32_t bytes;      // stream length; segments past it are filled with zeros
  uint32_t issued;     // segments issued so far
  uint32_t ring;       // byte offset of this warp's ring for the plane in smem, kRingBytes-aligned
  uint32_t pos;        // bytes consumed (a coded plane: 2 x words consumed)
};

// Lanes copy 16 bytes each. A lane whose 16 bytes lie wholly inside the stream uses cp.async;
// the lanes at or past its end (once per stream) store the tail and the zero fill themselves,
// so no access ever reaches past the stream, even within the same 16-byte block.
__device__ __forceinline__ void issue_segments(RingStream& s, uint32_t upto, uint32_t lane) {
  while (s.issued < upto) {
    const uint32_t off = s.issued * kSegmentBytes + lane * 16;
    const uint32_t ring = s.ring + (off & (kRingBytes - 1));
    if (off + 16 <= s.bytes) {
      const uint32_t dst = static_cast<uint32_t>(__cvta_generic_to_shared(smem)) + ring;
      asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(s.src + off) : "memory");
    } else {
      for (uint32_t k = 0; k < 16; ++k)
        reinterpret_cast<uint8_t*>(smem)[ring + k] = off + k < s.bytes ? s.src[off + k] : uint8_t{0};
    }
    ++s.issued;
  }
}

__device__ __forceinline__ void issue_ahead(RingStream& s, uint32_t lane) {
  issue_segments(s, s.pos / kSegmentBytes + kRingSegments, lane);
}

__device__ __forceinline__ void commit_segments() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }

template <int N>
__device__ __forceinline__ void wait_segments() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// Raw plane, step k of the current group: byte pos + 32k + lane. pos is a multiple of 256
// at a group start, so a group never wraps inside the ring.
__device__ __forceinline__ uint32_t raw_byte(const RingStream& s, uint32_t k, uint32_t lane) {
  return smem_u8((s.ring | (s.pos & (kRingBytes - 1))) + k * 32 + lane);
}

// A coded plane's lane: the rANS state and where its tables start.
struct LaneState {
  uint32_t x;
  uint32_t table;  // first word of its tables (shared memory, or the pool): see gpu_table_words
};

// One rANS decode step of one lane. Entry of slot t: freq | (t - cum) << 16, so that
// x' = freq * (x >> p) + t - cum inverts the encoder; the symbol is a byte table after the
// entries. Lanes whose x' fell below L take the next words of the stream, in lane order (a
// prefix count over the ballot). `active` is false only for the missing symbols of a partial
// last step.
template <bool kSharedTables, bool kFull>
__device__ __forceinline__ uint32_t rans_step(LaneState& c, RingStream& s, const uint32_t* __restrict__ pool,
                                              uint32_t p, uint32_t mask, bool active, uint32_t lane_mask_lt) {
  const uint32_t slot = c.x & mask;
  const uint32_t* tables = kSharedTables ? smem + c.table : pool + c.table;
  const uint32_t e = kSharedTables ? tables[slot] : __ldg(tables + slot);
  const uint8_t* symbols = reinterpret_cast<const uint8_t*>(tables + mask + 1);
  const uint32_t symbol = kSharedTables ? symbols[slot] : __ldg(symbols + slot);
  uint32_t x = (e & 0xffffu) * (c.x >> p) + (e >> 16);
  if (!kFull && !active) x = c.x;
  const bool refill = (kFull || active) && x < kRansL;
  const uint32_t ballot = warp_ballot(refill);
  // Every lane loads (a word of the ring, needed or not) so that the step has no branch. A
  // read past the chunk's words yields the zero fill and is caught by the final check.
  const uint32_t word = smem_u16(s.ring | ((s.pos + 2 * __popc(ballot & lane_mask_lt)) & (kRingBytes - 1)));
  c.x = refill ? (x << 16) | word : x;
  s.pos += 2 * __popc(ballot);
  return symbol;
}

}  // namespace codecllm::cuda
