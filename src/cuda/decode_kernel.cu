// GPU decode of .cllm tensors: one warp per rANS chunk, the 32 interleaved states of the chunk
// in the 32 lanes, the coded planes' tables in shared memory, and every plane of an element
// range decoded together so the final values are assembled and stored in the same pass.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <array>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "cuda/cuda_check.hpp"
#include "cuda/decode_desc.hpp"
#include "cuda/decode_launch.hpp"
#include "cuda/decode_stream.cuh"

namespace codecllm::cuda {
namespace {

__device__ __forceinline__ void store_dequantized(uint8_t* out, uint64_t i, float w, Int8Out o) {
  // Round to nearest even, exactly as the CPU reference (codec/int8_quant.cpp) converts.
  if (o == Int8Out::Bf16) {
    reinterpret_cast<__nv_bfloat16*>(out)[i] = __float2bfloat16_rn(w);
  } else {
    reinterpret_cast<__half*>(out)[i] = __float2half_rn(w);
  }
}

// narrow: a float32 element is stored rounded to bfloat16 (nearest even), for consumers that
// compute in bf16.
template <Assemble A, int NP>
__device__ __forceinline__ void store_element(uint8_t* out, uint32_t i, const uint32_t (&b)[NP], bool narrow) {
  if constexpr (A == Assemble::SplitBf16) {
    reinterpret_cast<uint16_t*>(out)[i] = static_cast<uint16_t>(((b[1] & 0x80u) << 8) | (b[0] << 7) | (b[1] & 0x7Fu));
  } else if constexpr (A == Assemble::SplitF32) {
    const uint32_t bits = ((b[1] & 0x80u) << 24) | (b[0] << 23) | ((b[1] & 0x7Fu) << 16) | (b[2] << 8) | b[3];
    if (narrow) {
      reinterpret_cast<__nv_bfloat16*>(out)[i] = __float2bfloat16_rn(__uint_as_float(bits));
    } else {
      reinterpret_cast<uint32_t*>(out)[i] = bits;
    }
  } else {
#pragma unroll
    for (int k = 0; k < NP; ++k) out[i * NP + k] = static_cast<uint8_t>(b[k]);
  }
}

__device__ __forceinline__ void store_int8(uint8_t* out, uint32_t i, bool keep_bytes, Int8Out type, uint32_t q,
                                           float scale) {
  if (keep_bytes) {
    out[i] = static_cast<uint8_t>(q);  // int8 output, or LEFT residuals for int8_rows_kernel
  } else {
    store_dequantized(out, i, static_cast<float>(static_cast<int8_t>(q)) * scale, type);
  }
}

// Decodes chunk `chunk` of tensor t: NP planes, each coded (a warp-wide rANS stream) or raw,
// every plane's bytes staged through the warp's rings (decode_stream.cuh). kCoded: bit p set
// when plane p is coded, fixed at compile time so that the step has no per-plane branch; or
// kCodedFromDescriptor for the rare layouts, which test each plane's flag at run time.
template <Assemble A, int NP, int kCoded, bool kSharedTables>
__device__ void decode_chunk(const TensorDesc& t, uint32_t chunk, const uint32_t* __restrict__ table_pool,
                             const uint8_t* comp, uint8_t* out, uint32_t rings, bool& bad) {
  const uint32_t lane = threadIdx.x % 32;
  const uint32_t lane_mask_lt = (1u << lane) - 1;
  const uint64_t first = uint64_t{chunk} * t.chunk_symbols;
  const uint64_t remaining = t.elements - first;
  const uint32_t n = remaining < t.chunk_symbols ? static_cast<uint32_t>(remaining) : t.chunk_symbols;

  RingStream stream[NP];
  LaneState coder[NP];
  bool coded[NP];
  uint32_t prob_bits[NP], mask[NP];
#pragma unroll
  for (int p = 0; p < NP; ++p) {
    const PlaneDesc& pd = t.planes[p];
    coded[p] = kCoded == kCodedFromDescriptor ? pd.coded != 0 : ((kCoded >> p) & 1) != 0;
    prob_bits[p] = pd.prob_bits;
    mask[p] = (1u << pd.prob_bits) - 1;
    stream[p].issued = 0;
    stream[p].issued_before[0] = stream[p].issued_before[1] = 0;
    stream[p].pos = 0;
    stream[p].ring = rings + p * kRingBytes;
    if (!coded[p]) {
      stream[p].src = comp + pd.payload + first;
      stream[p].bytes = n;
      continue;
    }
    const uint32_t* ends = reinterpret_cast<const uint32_t*>(comp + pd.chunk_ends);
    const uint32_t begin = chunk == 0 ? 0 : ends[chunk - 1];
    const uint32_t bytes = ends[chunk] - begin;  // validated on the host: >= 128, multiple of 16
    const uint8_t* data = comp + pd.data + begin;
    stream[p].src = data + 128;
    stream[p].bytes = bytes - 128;  // the words, zero padding included
    coder[p].x = reinterpret_cast<const uint32_t*>(data)[lane];
    coder[p].table = kSharedTables ? shared_address(smem + pd.table_offset) : static_cast<uint32_t>(pd.table);
    if (coder[p].x < kRansL) bad = true;
  }

  // int8: row, column and scale of this lane's element, advanced by 32 columns a step (rows
  // and columns fit 32 bits: the host checks). Descriptor fields used per element are copied
  // to registers: stores through `out` could alias the descriptor as far as the compiler
  // knows, which would reload them every step.
  const float* scales = nullptr;
  uint32_t row = 0, col = 0;
  float scale = 0.0f;
  const auto cols = static_cast<uint32_t>(t.cols);
  const auto rows = static_cast<uint32_t>(t.cols == 0 ? 0 : t.elements / t.cols);
  const bool keep_bytes = t.predictor != 0 || t.int8_out == Int8Out::Int8;
  const Int8Out int8_type = t.int8_out;
  if constexpr (A == Assemble::Int8) {
    scales = reinterpret_cast<const float*>(comp + t.scales);
    row = static_cast<uint32_t>((first + lane) / cols);
    col = static_cast<uint32_t>((first + lane) % cols);
    scale = row < rows ? __ldg(scales + row) : 0.0f;
  }

  // Output of this chunk: indices in the loop stay 32-bit.
  const bool narrow = t.narrow_to_bf16 != 0;
  uint8_t* const chunk_out = out + first * (A == Assemble::SplitBf16  ? 2
                                            : A == Assemble::SplitF32 ? (narrow ? 2 : 4)
                                            : A == Assemble::Int8     ? 1
                                                                      : NP);
  // One group of kGroupSteps steps; kFull: every symbol of the group exists (all but the
  // last group of a tensor's last chunk).
  auto group = [&](uint32_t g, auto full) {
    constexpr bool kFull = decltype(full)::value;
#pragma unroll
    for (uint32_t k = 0; k < kGroupSteps; ++k) {
      const uint32_t i = (g + k) * 32 + lane;
      const bool active = kFull || i < n;
      uint32_t b[NP];
#pragma unroll
      for (int p = 0; p < NP; ++p) {
        b[p] = coded[p] ? rans_step<kSharedTables, kFull>(coder[p], stream[p], table_pool, prob_bits[p], mask[p],
                                                          active, lane_mask_lt)
                        : raw_byte(stream[p], k, lane);
      }
      if (active) {
        if constexpr (A == Assemble::Int8) {
          store_int8(keep_bytes ? chunk_out : out + 2 * first, i, keep_bytes, int8_type, b[0], scale);
        } else {
          store_element<A, NP>(chunk_out, i, b, narrow);
        }
      }
      if constexpr (A == Assemble::Int8) {
        col += 32;
        if (col >= cols) {
          do {
            col -= cols;
            ++row;
          } while (col >= cols);
          scale = row < rows ? __ldg(scales + row) : 0.0f;
        }
      }
    }
#pragma unroll
    for (int p = 0; p < NP; ++p)
      if (!coded[p]) stream[p].pos += kGroupSteps * 32;
  };

  const uint32_t steps = (n + 31) / 32;
  const uint32_t full_steps = n / (kGroupSteps * 32) * kGroupSteps;
  for (uint32_t g = 0; g < steps; g += kGroupSteps) {
    __syncwarp();  // every lane is done with the ring slots about to be refilled
#pragma unroll
    for (int p = 0; p < NP; ++p) issue_ahead(stream[p], lane);
    commit_segments();
    uint32_t in_flight = 2;
#pragma unroll
    for (int p = 0; p < NP; ++p)
      in_flight = min(in_flight, groups_in_flight(stream[p], coded[p] ? kGroupMaxCodedBytes : kGroupSteps * 32));
    if (in_flight == 2) {
      wait_segments<2>();
    } else if (in_flight == 1) {
      wait_segments<1>();
    } else {
      wait_segments<0>();
    }
    __syncwarp();  // the segments copied by every lane are visible to the whole warp
    if (g < full_steps) {
      group(g, std::true_type{});
    } else {
      group(g, std::false_type{});
    }
  }
  wait_segments<0>();  // nothing may land in shared memory after the warp exits

  // Integrity, as on the CPU: every state back at L and the word stream used up exactly (the
  // chunk is 128 + 2 * nwords bytes: its words, then zero padding to 16 bytes).
#pragma unroll
  for (int p = 0; p < NP; ++p) {
    if (!coded[p]) continue;
    const uint32_t used = 128 + stream[p].pos;
    if (coder[p].x != kRansL || ((used + 15) & ~15u) != 128 + stream[p].bytes) bad = true;
  }
}

// Shared memory of one block: the tables of the launch's largest tensor (when staged), then a
// ring per warp and plane.
template <int NP>
constexpr size_t ring_bytes_per_block() {
  return size_t{kWarpsPerBlock} * NP * kRingBytes;
}

// One block: up to kWarpsPerBlock chunks of one tensor. One kernel instance per element
// layout keeps each instance's register use to what its layout needs.
// Three resident blocks per SM (24 warps) for the layouts with at most two planes: the decode
// chain is latency-bound, and measured on an H100 two blocks left schedulers idle 58% of cycles.
template <Assemble A, int NP, int kCoded, bool kSharedTables>
__global__ void __launch_bounds__(kWarpsPerBlock * 32, NP <= 2 ? 3 : 1)
    decode_chunks_kernel(const TensorDesc* __restrict__ tensors, const BlockJob* __restrict__ jobs,
                         const uint32_t* __restrict__ table_pool, const uint8_t* __restrict__ comp,
                         const LaunchPointers ptrs, uint32_t* __restrict__ status, uint32_t table_bytes) {
  const BlockJob job = jobs[blockIdx.x];
  const TensorDesc& t = tensors[job.tensor];

  // Stage every coded plane's table (built once on the host) in shared memory, unless the
  // tensor's tables are too large for it (up to 8 coded planes): those are read from global
  // memory through L1.
  for (uint32_t p = 0; kSharedTables && p < t.num_planes; ++p) {
    const PlaneDesc& pd = t.planes[p];
    if (!pd.coded) continue;
    const uint32_t n = gpu_table_words(pd.prob_bits);
    const uint32_t* src = table_pool + pd.table;
    for (uint32_t i = threadIdx.x; i < n; i += blockDim.x) smem[pd.table_offset + i] = src[i];
  }
  __syncthreads();

  const uint32_t warp = threadIdx.x / 32;
  if (warp >= job.num_chunks) return;
  const uint32_t chunk = job.first_chunk + warp;
  // Rings start on a kRingBytes boundary of the shared window (the launch leaves room to round
  // up), so that a ring address is one OR of base and offset.
  const uint32_t ring_base = (shared_address(smem) + table_bytes + kRingBytes - 1) / kRingBytes * kRingBytes;
  const uint32_t rings = ring_base + warp * NP * kRingBytes;
  bool bad = false;
  decode_chunk<A, NP, kCoded, kSharedTables>(t, chunk, table_pool, comp, static_cast<uint8_t*>(ptrs.outputs[t.output]),
                                             rings, bad);
  if (__any_sync(kFullMask, bad) && threadIdx.x % 32 == 0) atomicCAS(status + job.tensor, 0u, chunk + 1);
}

template <Assemble A, int NP, int kCoded, bool kSharedTables>
void launch_variant(const TensorDesc* tensors, const BlockJob* jobs, uint32_t num_jobs, const uint32_t* table_pool,
                    const uint8_t* comp, const LaunchPointers& ptrs, uint32_t* status, size_t table_bytes,
                    cudaStream_t stream) {
  table_bytes = kSharedTables ? (table_bytes + 15) / 16 * 16 : 0;
  const size_t shared_bytes = table_bytes + kRingBytes + ring_bytes_per_block<NP>();  // + alignment slack
  auto* kernel = decode_chunks_kernel<A, NP, kCoded, kSharedTables>;
  if (shared_bytes > 48 * 1024) {
    // Cheap, host-side only; done at each launch so every instance gets it on first use.
    CLLM_CUDA_CHECK(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(shared_bytes)));
  }
  kernel<<<num_jobs, kWarpsPerBlock * 32, shared_bytes, stream>>>(tensors, jobs, table_pool, comp, ptrs, status,
                                                                  static_cast<uint32_t>(table_bytes));
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
        store_dequantized(out, i, static_cast<float>(static_cast<int8_t>(static_cast<uint8_t>(v))) * scale, out_type);
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
};
constexpr Variant kVariants[] = {
    {Assemble::SplitBf16, 2, 0b01},
    {Assemble::SplitBf16, 2, kCodedFromDescriptor},
    {Assemble::SplitF32, 4, 0b0001},
    {Assemble::SplitF32, 4, kCodedFromDescriptor},
    {Assemble::Int8, 1, 0b1},
    {Assemble::Int8, 1, kCodedFromDescriptor},
    {Assemble::Bytes, 2, 0b10},
    {Assemble::Bytes, 1, kCodedFromDescriptor},
    {Assemble::Bytes, 2, kCodedFromDescriptor},
    {Assemble::Bytes, 4, kCodedFromDescriptor},
    {Assemble::Bytes, 8, kCodedFromDescriptor},
};
constexpr int kNumVariants = sizeof(kVariants) / sizeof(kVariants[0]);
static_assert(2 * kNumVariants == kNumLayouts, "kNumLayouts counts every variant twice (tables shared or global)");

using Launcher = void (*)(const TensorDesc*, const BlockJob*, uint32_t, const uint32_t*, const uint8_t*,
                          const LaunchPointers&, uint32_t*, size_t, cudaStream_t);

// One launcher per variant, in kVariants order: the instances exist at compile time, and a
// tensor's layout index picks one at run time.
template <bool kShared, size_t... V>
constexpr std::array<Launcher, sizeof...(V)> launchers(std::index_sequence<V...>) {
  return {
      &launch_variant<kVariants[V].assemble, static_cast<int>(kVariants[V].planes), kVariants[V].coded, kShared>...};
}
constexpr auto kSharedLaunchers = launchers<true>(std::make_index_sequence<kNumVariants>{});
constexpr auto kGlobalLaunchers = launchers<false>(std::make_index_sequence<kNumVariants>{});

}  // namespace

int layout_of(Assemble a, uint32_t num_planes, uint32_t coded_mask, bool shared_tables) {
  int found = -1;
  for (int v = 0; v < kNumVariants && found < 0; ++v) {
    if (kVariants[v].assemble == a && kVariants[v].planes == num_planes &&
        kVariants[v].coded == static_cast<int>(coded_mask))
      found = v;
  }
  for (int v = 0; v < kNumVariants && found < 0; ++v) {
    if (kVariants[v].assemble == a && kVariants[v].planes == num_planes && kVariants[v].coded == kCodedFromDescriptor)
      found = v;
  }
  return found < 0 ? -1 : found + (shared_tables ? 0 : kNumVariants);
}

void launch_decode_chunks(int layout, const TensorDesc* tensors, const BlockJob* jobs, uint32_t num_jobs,
                          const uint32_t* table_pool, const uint8_t* comp, const LaunchPointers& ptrs, uint32_t* status,
                          size_t shared_bytes, cudaStream_t stream) {
  if (num_jobs == 0) return;
  if (layout < 0 || layout >= kNumLayouts) throw Error("GPU decoder: unsupported element layout");
  if (layout < kNumVariants) {
    kSharedLaunchers[layout](tensors, jobs, num_jobs, table_pool, comp, ptrs, status, shared_bytes, stream);
  } else {
    kGlobalLaunchers[layout - kNumVariants](tensors, jobs, num_jobs, table_pool, comp, ptrs, status, 0, stream);
  }
}

}  // namespace codecllm::cuda
