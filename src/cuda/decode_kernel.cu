// GPU decode of .cllm tensors: one warp per rANS chunk, the 32 interleaved states of the chunk
// in the 32 lanes, the coded planes' tables in shared memory, and every plane of an element
// range decoded together so the final values are assembled and stored in the same kernel.
#include <cuda_runtime.h>

#include <array>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "cuda/cuda_check.hpp"
#include "cuda/decode_assemble.cuh"
#include "cuda/decode_desc.hpp"
#include "cuda/decode_launch.hpp"
#include "cuda/decode_stream.cuh"
#include "cuda/pdl.cuh"

namespace codecllm::cuda {
namespace {

// Coded planes of an instance: with a fixed mask only those, packed; a descriptor-driven
// instance gives every plane a slot. A slot is one ring and one symbol buffer per warp.
template <int NP, int kCoded>
constexpr int coded_slots() {
  if (kCoded == kCodedFromDescriptor) return NP;
  int n = 0;
  for (int p = 0; p < NP; ++p) n += (kCoded >> p) & 1;
  return n;
}
template <int kCoded>
__device__ constexpr int slot_of(int plane) {
  if (kCoded == kCodedFromDescriptor) return plane;
  int n = 0;
  for (int p = 0; p < plane; ++p) n += (kCoded >> p) & 1;
  return n;
}

static_assert(kGroupSymbols == 32 * kRunElements, "a group is one run of 16 elements per lane");

// Decodes chunk `chunk` of tensor t: NP planes, each coded (a warp-wide rANS stream) or raw.
// Per group of kGroupSteps steps, the coded planes' symbols go to the warp's symbol buffers
// (step-major, as the interleaved states produce them); then every lane assembles 16
// consecutive elements of the group from those buffers and the raw planes (read from global
// memory, 16 bytes per lane, issued before the steps) and stores them with vector stores.
// kCoded: bit p set when plane p is coded, fixed at compile time so that the step has no
// per-plane branch; or kCodedFromDescriptor for the rare layouts, which test each plane's flag.
template <Assemble A, int NP, int kCoded, bool kPacked, bool kSharedTables>
__device__ void decode_chunk(const TensorDesc& t, uint32_t chunk, const uint32_t* __restrict__ table_pool,
                             const uint8_t* comp, uint8_t* out, uint32_t rings, uint32_t symbols, bool vector_out,
                             bool& bad) {
  constexpr int kSlots = coded_slots<NP, kCoded>();
  const uint32_t lane = threadIdx.x % 32;
  const uint32_t lane_mask_lt = (1u << lane) - 1;
  const uint64_t first = uint64_t{chunk} * t.chunk_symbols;
  const uint64_t remaining = t.elements - first;
  const uint32_t n = remaining < t.chunk_symbols ? static_cast<uint32_t>(remaining) : t.chunk_symbols;

  RingStream stream[kSlots > 0 ? kSlots : 1];
  LaneState coder[kSlots > 0 ? kSlots : 1];
  uint32_t prob_bits[kSlots > 0 ? kSlots : 1], mask[kSlots > 0 ? kSlots : 1];
  bool coded[NP];
  const uint8_t* raw[NP];  // raw planes: this chunk's bytes
#pragma unroll
  for (int p = 0; p < NP; ++p) {
    const PlaneDesc& pd = t.planes[p];
    coded[p] = kCoded == kCodedFromDescriptor ? pd.coded != 0 : ((kCoded >> p) & 1) != 0;
    raw[p] = comp + pd.payload + first;
    if (!coded[p]) continue;
    const int s = slot_of<kCoded>(p);
    prob_bits[s] = settled(pd.prob_bits);
    mask[s] = (1u << prob_bits[s]) - 1;
    coder[s].x = open_chunk(pd, comp, chunk, rings + s * kRingBytes, lane, stream[s]);
    coder[s].table = settled(kSharedTables ? shared_address(smem + pd.table_offset) : static_cast<uint32_t>(pd.table));
    if (coder[s].x < kRansL) bad = true;
  }

  // int8: row and column of the first element of this lane's run, advanced by a group at a
  // time (rows and columns fit 32 bits: the host checks). Descriptor fields used per group are
  // copied to registers: stores through `out` could alias the descriptor as far as the
  // compiler knows, which would reload them.
  const float* scales = nullptr;
  uint32_t row = 0, col = 0;
  const auto cols = static_cast<uint32_t>(t.cols);
  const auto rows = static_cast<uint32_t>(t.cols == 0 ? 0 : t.elements / t.cols);
  const bool narrow = t.narrow_to_bf16 != 0;
  Int8Store q{t.predictor != 0 || t.int8_out == Int8Out::Int8, t.int8_out, 0.0f};
  bool runs_in_rows = true;  // int8: a run never crosses a row end
  if constexpr (A == Assemble::Int8) {
    scales = reinterpret_cast<const float*>(comp + t.scales);
    row = static_cast<uint32_t>((first + kRunElements * lane) / cols);
    col = static_cast<uint32_t>((first + kRunElements * lane) % cols);
    runs_in_rows = cols % kRunElements == 0;
  }
  // Shared-window address of the group's symbols of plane p; this lane's run starts at
  // kRunElements * lane in it.
  auto symbols_of = [&](int p) { return symbols + slot_of<kCoded>(p) * kGroupSymbols; };
  const uint32_t element_bytes = output_element_bytes<A, NP>(narrow, q.keep_bytes);
  uint8_t* const chunk_out = out + first * element_bytes;

  // The decode steps of one group; kFull: every symbol of the group exists (all but the last
  // group of a tensor's last chunk).
  auto decode_group = [&](uint32_t g, auto full) {
    constexpr bool kFull = decltype(full)::value;
#pragma unroll
    for (uint32_t k = 0; k < kGroupSteps; ++k) {
      const bool active = kFull || (g + k) * 32 + lane < n;
#pragma unroll
      for (int p = 0; p < NP; ++p) {
        if (!coded[p]) continue;
        const int s = slot_of<kCoded>(p);
        const uint32_t symbol = rans_step<kPacked, kSharedTables, kFull>(coder[s], stream[s], table_pool, prob_bits[s],
                                                                         mask[s], active, lane_mask_lt);
        sts8(symbols_of(p) + k * 32 + lane, symbol);
      }
    }
  };

  const uint32_t steps = (n + 31) / 32;
  const uint32_t full_steps = n / kGroupSymbols * kGroupSteps;
  for (uint32_t g = 0; g < steps; g += kGroupSteps) {
    __syncwarp();  // every lane is done with the ring slots about to be refilled and the symbol buffers
#pragma unroll
    for (int p = 0; p < NP; ++p)
      if (coded[p]) issue_ahead(stream[slot_of<kCoded>(p)], lane);
    commit_segments();
    uint32_t in_flight = 2;
#pragma unroll
    for (int p = 0; p < NP; ++p)
      if (coded[p]) in_flight = min(in_flight, groups_in_flight(stream[slot_of<kCoded>(p)], kGroupMaxCodedBytes));
    wait_segments_but(in_flight);

    __syncwarp();  // the segments copied by every lane are visible to the whole warp

    // This lane's run, and what it needs from global memory, requested before the steps and
    // after the barrier above: a barrier waits for the warp's outstanding loads.
    const uint32_t run = g * 32 + kRunElements * lane;
    const bool full = g < full_steps;
    const bool vector_run = kVectorRuns<A, NP> && full && vector_out && runs_in_rows;
    uint4 bytes[NP];
#pragma unroll
    for (int p = 0; p < NP; ++p) {
      bytes[p] = make_uint4(0, 0, 0, 0);
      if (!coded[p] && vector_run) bytes[p] = __ldg(reinterpret_cast<const uint4*>(raw[p] + run));
    }
    if constexpr (A == Assemble::Int8) q.scale = row < rows ? __ldg(scales + row) : 0.0f;
    if (full) {
      decode_group(g, std::true_type{});
    } else {
      decode_group(g, std::false_type{});
    }
    __syncwarp();  // the group's symbols are visible to the whole warp
#pragma unroll
    for (int p = 0; p < NP; ++p)
      if (coded[p]) bytes[p] = lds16(symbols_of(p) + kRunElements * lane);

    if (vector_run) {
      store_run<A, NP>(chunk_out + run * element_bytes, bytes, narrow, q);
    } else {
      // One element at a time, in a loop kept rolled (it is rare, and code size matters to
      // the hot path); an int8 run may cross row ends here.
      Int8Store qe = q;
      uint32_t r = row, c = col;
#pragma unroll 1
      for (uint32_t j = 0; j < kRunElements; ++j) {
        if constexpr (A == Assemble::Int8) {
          if (j > 0 && ++c == cols) {
            c = 0;
            ++r;
            qe.scale = r < rows ? __ldg(scales + r) : 0.0f;
          }
        }
        const uint32_t i = run + j;
        if (i >= n) break;
        uint32_t b[NP];
#pragma unroll
        for (int p = 0; p < NP; ++p) b[p] = coded[p] ? lds<1>(symbols_of(p) + kRunElements * lane + j) : raw[p][i];
        store_element<A, NP>(chunk_out, i, b, narrow, qe);
      }
    }
    if constexpr (A == Assemble::Int8) {
      col += kGroupSymbols;
      while (col >= cols) {
        col -= cols;
        ++row;
      }
    }
  }
  wait_segments<0>();  // nothing may land in shared memory after the warp exits

#pragma unroll
  for (int p = 0; p < NP; ++p) {
    const int s = slot_of<kCoded>(p);
    if (coded[p] && !chunk_ok(coder[s].x, stream[s])) bad = true;
  }
}

// Resident blocks per SM that an instance's register use must allow, and its warps per block.
// The decode chain is latency-bound, so warps in flight set the speed: measured on an H100,
// two blocks left the schedulers idle 58% of cycles. The instances compress writes for 16-bit
// weights, and BF16 exponents decoded alone, fit four blocks of 8 warps (64 registers). int8
// runs blocks of 12 warps, three per SM: 36 warps where 8-warp blocks fit four, as a block's
// 32 KiB table plus its warps' rings fill shared memory (56 registers, no spills). On the 8B
// shape that took int8 gpu-compressed from 105.9 to 113.2 tok/s (65536-symbol chunks); the
// exponents alone went from 90.6 to 89.2, so they keep 8. Rarer layouts keep three blocks of
// 8, or one.
constexpr int kWideWarps = 12;
constexpr int decode_warps(Assemble a, int coded) {
  return coded != kCodedFromDescriptor && a == Assemble::Int8 ? kWideWarps : kWarpsPerBlock;
}
template <Assemble A, int NP, int kCoded>
constexpr int decode_blocks_per_sm() {
  if (NP > 2) return 1;
  const bool four = A == Assemble::SplitBf16 || (A == Assemble::Bytes && NP == 1);
  return kCoded != kCodedFromDescriptor && four ? 4 : 3;
}

// One block: up to decode_warps chunks of one tensor a job, one job per block; or, with
// kSeveral (a grid capped by launch_decode_chunks' max_blocks), the jobs blockIdx.x,
// blockIdx.x + gridDim.x, ... in turn. A capped grid leaves room on every SM for the kernels
// of other streams: a decode at full occupancy holds every register of an SM (four blocks of
// 256 threads at 64 registers), so a product launched beside it waits for decode blocks to
// retire. The one-job instances stay apart because the loop costs the int8 instances (56
// registers) a spill. One kernel instance per element layout keeps each instance's register
// use to what its layout needs.
template <Assemble A, int NP, int kCoded, bool kPacked, bool kSharedTables, bool kSeveral>
__global__ void __launch_bounds__(decode_warps(A, kCoded) * 32, decode_blocks_per_sm<A, NP, kCoded>())
    decode_chunks_kernel(const TensorDesc* __restrict__ tensors, const BlockJob* __restrict__ jobs, uint32_t num_jobs,
                         const uint32_t* __restrict__ table_pool, const uint8_t* __restrict__ comp,
                         const LaunchPointers ptrs, uint32_t* __restrict__ status, uint32_t table_bytes) {
  const auto run_job = [&](uint32_t j) {
    const BlockJob job = jobs[j];
    const TensorDesc& t = tensors[job.tensor];
    // Stage every coded plane's table (built once on the host) in shared memory, unless the
    // tensor's tables are too large for it (up to 8 coded planes): those are read from global
    // memory through L1. A later job first waits until every warp is done with the last one's.
    if (kSeveral && j != blockIdx.x) __syncthreads();
    if (kSharedTables) stage_tables(t, table_pool, kPacked);
    __syncthreads();
    const uint32_t warp = threadIdx.x / 32;
    if (warp >= job.num_chunks) return;
    const uint32_t chunk = job.first_chunk + warp;
    const WarpBuffers buffers = warp_buffers(table_bytes, warp, coded_slots<NP, kCoded>(), decode_warps(A, kCoded));
    uint8_t* const out = static_cast<uint8_t*>(ptrs.outputs[t.output]);
    const bool vector_out = reinterpret_cast<uintptr_t>(out) % 16 == 0;  // whole runs stored 16 bytes at a time
    bool bad = false;
    decode_chunk<A, NP, kCoded, kPacked, kSharedTables>(t, chunk, table_pool, comp, out, buffers.rings, buffers.symbols,
                                                        vector_out, bad);
    if (__any_sync(kFullMask, bad) && threadIdx.x % 32 == 0) atomicCAS(status + job.tensor, 0u, chunk + 1);
  };
  if constexpr (kSeveral) {
    for (uint32_t j = blockIdx.x; j < num_jobs; j += gridDim.x) run_job(j);
  } else {
    run_job(blockIdx.x);
  }
}

template <Assemble A, int NP, int kCoded, bool kPacked, bool kSharedTables>
void launch_variant(const TensorDesc* tensors, const BlockJob* jobs, uint32_t num_jobs, const uint32_t* table_pool,
                    const uint8_t* comp, const LaunchPointers& ptrs, uint32_t* status, size_t table_bytes,
                    uint32_t max_blocks, cudaStream_t stream) {
  table_bytes = kSharedTables ? table_bytes_in_block(table_bytes) : 0;
  constexpr int kWarps = decode_warps(A, kCoded);
  const size_t shared_bytes = block_shared_bytes(table_bytes, coded_slots<NP, kCoded>(), kWarps);
  const bool capped = max_blocks > 0 && max_blocks < num_jobs;
  auto* kernel = capped ? decode_chunks_kernel<A, NP, kCoded, kPacked, kSharedTables, true>
                        : decode_chunks_kernel<A, NP, kCoded, kPacked, kSharedTables, false>;
  allow_shared_bytes(kernel, shared_bytes);
  kernel<<<capped ? max_blocks : num_jobs, kWarps * 32, shared_bytes, stream>>>(
      tensors, jobs, num_jobs, table_pool, comp, ptrs, status, static_cast<uint32_t>(table_bytes));
}

// LEFT predictor: residuals -> values by a prefix sum mod 256 along each row (one warp per
// row, 32 columns per step with a shuffle scan), then dequantized or kept as int8.
__global__ void int8_rows_kernel(const uint8_t* __restrict__ residuals, const float* __restrict__ scales, uint64_t rows,
                                 uint64_t cols, Int8Out out_type, uint8_t* __restrict__ out) {
  const uint64_t row = uint64_t{blockIdx.x} * (blockDim.x / 32) + threadIdx.x / 32;
  const uint32_t lane = threadIdx.x % 32;
  if (row >= rows) return;
  const uint8_t* in = residuals + row * cols;
  const float scale = scales[row];
  uint32_t carry = 0;
  for (uint64_t c0 = 0; c0 < cols; c0 += 32) {
    const uint64_t c = c0 + lane;
    uint32_t v = c < cols ? in[c] : 0;
#pragma unroll
    for (int d = 1; d < 32; d <<= 1) {
      const uint32_t up = __shfl_up_sync(kFullMask, v, d);
      if (lane >= static_cast<uint32_t>(d)) v += up;
    }
    v += carry;
    carry = __shfl_sync(kFullMask, v, 31);
    if (c < cols) {
      const uint64_t i = row * cols + c;
      if (out_type == Int8Out::Int8) {
        out[i] = static_cast<uint8_t>(v);
      } else {
        store_dequantized(out, i, dequantize(v, scale), out_type);
      }
    }
  }
}

}  // namespace

void launch_int8_rows(const uint8_t* residuals, const float* scales, uint64_t rows, uint64_t cols, Int8Out out_type,
                      uint8_t* out, cudaStream_t stream) {
  if (rows == 0) return;
  constexpr uint32_t kRowsPerBlock = 8;
  const auto blocks = static_cast<uint32_t>((rows + kRowsPerBlock - 1) / kRowsPerBlock);
  int8_rows_kernel<<<blocks, kRowsPerBlock * 32, 0, stream>>>(residuals, scales, rows, cols, out_type, out);
}

namespace {

// The kernel instances, by index: element layout, planes, and which planes are coded. The
// fixed masks are what compress writes for BF16, F32 and F16 weights and int8 matrices; any
// other combination takes its layout's descriptor-driven instance.
struct Variant {
  Assemble assemble;
  uint32_t planes;
  int coded;
  bool packed;  // tables in the packed layout (gpu_table_words)
};
constexpr Variant kVariants[] = {
    {Assemble::SplitBf16, 2, 0b01, true},
    {Assemble::SplitBf16, 2, 0b01, false},
    {Assemble::SplitBf16, 2, kCodedFromDescriptor, false},
    {Assemble::SplitF32, 4, 0b0001, true},
    {Assemble::SplitF32, 4, 0b0001, false},
    {Assemble::SplitF32, 4, kCodedFromDescriptor, false},
    {Assemble::Int8, 1, 0b1, true},
    {Assemble::Int8, 1, 0b1, false},
    {Assemble::Int8, 1, kCodedFromDescriptor, false},
    {Assemble::Bytes, 2, 0b10, true},
    {Assemble::Bytes, 2, 0b10, false},
    {Assemble::Bytes, 1, 0b1, true},  // BF16 exponents alone (DecoderOptions::bf16_exponents_only)
    {Assemble::Bytes, 1, 0b1, false},
    {Assemble::Bytes, 1, kCodedFromDescriptor, false},
    {Assemble::Bytes, 2, kCodedFromDescriptor, false},
    {Assemble::Bytes, 4, kCodedFromDescriptor, false},
    {Assemble::Bytes, 8, kCodedFromDescriptor, false},
};
constexpr int kNumVariants = sizeof(kVariants) / sizeof(kVariants[0]);
static_assert(2 * kNumVariants == kNumLayouts, "kNumLayouts counts every variant twice (tables shared or global)");

using Launcher = void (*)(const TensorDesc*, const BlockJob*, uint32_t, const uint32_t*, const uint8_t*,
                          const LaunchPointers&, uint32_t*, size_t, uint32_t, cudaStream_t);

// One launcher per variant, in kVariants order: the instances exist at compile time, and a
// tensor's layout index picks one at run time.
template <bool kShared, size_t... V>
constexpr std::array<Launcher, sizeof...(V)> launchers(std::index_sequence<V...>) {
  return {&launch_variant<kVariants[V].assemble, static_cast<int>(kVariants[V].planes), kVariants[V].coded,
                          kVariants[V].packed, kShared>...};
}
constexpr auto kSharedLaunchers = launchers<true>(std::make_index_sequence<kNumVariants>{});
constexpr auto kGlobalLaunchers = launchers<false>(std::make_index_sequence<kNumVariants>{});

}  // namespace

int layout_of(Assemble a, uint32_t num_planes, uint32_t coded_mask, bool packed, bool shared_tables) {
  int found = -1;
  for (int v = 0; v < kNumVariants && found < 0; ++v) {
    if (kVariants[v].assemble == a && kVariants[v].planes == num_planes &&
        kVariants[v].coded == static_cast<int>(coded_mask) && kVariants[v].packed == packed)
      found = v;
  }
  for (int v = 0; v < kNumVariants && found < 0 && !packed; ++v) {
    if (kVariants[v].assemble == a && kVariants[v].planes == num_planes && kVariants[v].coded == kCodedFromDescriptor)
      found = v;
  }
  return found < 0 ? -1 : found + (shared_tables ? 0 : kNumVariants);
}

int layout_warps(int layout) {
  if (layout < 0 || layout >= kNumLayouts) throw Error("GPU decoder: unsupported element layout");
  const Variant& v = kVariants[layout % kNumVariants];
  return decode_warps(v.assemble, v.coded);
}

void launch_decode_chunks(int layout, const TensorDesc* tensors, const BlockJob* jobs, uint32_t num_jobs,
                          const uint32_t* table_pool, const uint8_t* comp, const LaunchPointers& ptrs, uint32_t* status,
                          size_t shared_bytes, uint32_t max_blocks, cudaStream_t stream) {
  if (num_jobs == 0) return;
  if (layout < 0 || layout >= kNumLayouts) throw Error("GPU decoder: unsupported element layout");
  if (layout < kNumVariants) {
    kSharedLaunchers[layout](tensors, jobs, num_jobs, table_pool, comp, ptrs, status, shared_bytes, max_blocks, stream);
  } else {
    kGlobalLaunchers[layout - kNumVariants](tensors, jobs, num_jobs, table_pool, comp, ptrs, status, 0, max_blocks,
                                            stream);
  }
}

}  // namespace codecllm::cuda
