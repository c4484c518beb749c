// GPU decode of .cllm tensors: one warp per rANS chunk, the 32 interleaved states of the chunk
// in the 32 lanes, the coded planes' tables in shared memory, and every plane of an element
// range decoded together so the final values are assembled and stored in the same pass.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/cuda_check.hpp"
#include "cuda/decode_desc.hpp"
#include "cuda/decode_launch.hpp"

namespace codecllm::cuda {
namespace {

constexpr uint32_t kL = 1u << 16;
constexpr uint32_t kFull = 0xffffffffu;

// Packed tables of the block's tensor. Indexed directly (not through a generic pointer) so
// that lookups compile to shared-memory loads: generic loads go through L1TEX and showed up
// as a third of all stall cycles on an H100.
extern __shared__ uint32_t smem_tables[];

// One coded plane's decoder state in one lane. The chunk's word stream is read through a
// sliding window held in registers across the warp: lane l keeps words base + l (win0),
// base + 32 + l (win1) and base + 64 + l (win2, loaded early so its latency is hidden). A
// step consumes at most 32 words, so every word it needs lies in win0/win1 and reaches the
// lane that needs it through a shuffle: no dependent global load on the decode chain.
struct LaneCoder {
  uint32_t x;
  uint32_t pos;     // next unread word of the chunk (same in every lane)
  uint32_t base;    // first word of win0 (same in every lane)
  uint32_t nwords;  // words in the chunk, zero padding included
  uint32_t win0, win1, win2;
  const uint16_t* words;
  uint32_t table;  // first entry of its 2^prob_bits packed entries (smem_tables, or the pool)
};

__device__ __forceinline__ uint32_t load_word(const LaneCoder& c, uint32_t idx) {
  return idx < c.nwords ? static_cast<uint32_t>(__ldg(c.words + idx)) : 0u;
}

__device__ __forceinline__ void coder_init(LaneCoder& c, const uint8_t* chunk, uint32_t bytes, uint32_t table,
                                           uint32_t lane) {
  c.x = reinterpret_cast<const uint32_t*>(chunk)[lane];
  c.pos = 0;
  c.base = 0;
  c.nwords = (bytes - 128) / 2;
  c.words = reinterpret_cast<const uint16_t*>(chunk + 128);
  c.table = table;
  c.win0 = load_word(c, lane);
  c.win1 = load_word(c, 32 + lane);
  c.win2 = load_word(c, 64 + lane);
}

// Packed table entry: (symbol - min) << 2p | (freq - 1) << p | (slot - cum). x' = freq *
// (x >> p) + slot - cum inverts the encoder; a lane whose x' fell below L takes the next word
// of the stream, lanes in order (a prefix count over the ballot of refilling lanes).
template <bool kSharedTables>
__device__ __forceinline__ uint32_t rans_step(LaneCoder& c, const uint32_t* __restrict__ pool, uint32_t p,
                                              uint32_t min_symbol, bool active, uint32_t lane_mask_lt, bool& bad) {
  const uint32_t mask = (1u << p) - 1;
  const uint32_t e = kSharedTables ? smem_tables[c.table + (c.x & mask)] : __ldg(pool + c.table + (c.x & mask));
  const uint32_t freq = ((e >> p) & mask) + 1;
  uint32_t x = freq * (c.x >> p) + (e & mask);
  if (!active) x = c.x;
  const bool refill = active && x < kL;
  const uint32_t ballot = __ballot_sync(kFull, refill);
  if (ballot != 0) {  // warp-uniform
    const uint32_t idx = c.pos + __popc(ballot & lane_mask_lt);
    const uint32_t rel = idx - c.base;  // < 64 for refilling lanes
    const uint32_t a = __shfl_sync(kFull, c.win0, rel & 31);
    const uint32_t b = __shfl_sync(kFull, c.win1, rel & 31);
    // A read past the chunk's words yields 0 here and is caught by the final position check.
    if (refill) x = (x << 16) | (rel < 32 ? a : b);
    c.pos += __popc(ballot);
    if (c.pos - c.base >= 32) {  // warp-uniform: slide the window by 32 words
      c.base += 32;
      c.win0 = c.win1;
      c.win1 = c.win2;
      c.win2 = load_word(c, c.base + 64 + (threadIdx.x & 31));
    }
  }
  c.x = x;
  return min_symbol + (e >> (2 * p));
}

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

// Decodes chunk `chunk` of tensor t: NP planes, each coded (a warp-wide rANS stream) or raw.
// Steps run in groups of G; raw bytes of the next group are loaded while this one decodes.
template <Assemble A, int NP, bool kSharedTables>
__device__ void decode_chunk(const TensorDesc& t, uint32_t chunk, const uint32_t* __restrict__ table_pool,
                             const uint8_t* comp, uint8_t* out, bool& bad) {
  constexpr int G = NP <= 2 ? 8 : 4;
  const uint32_t lane = threadIdx.x % 32;
  const uint32_t lane_mask_lt = (1u << lane) - 1;
  const uint64_t first = uint64_t{chunk} * t.chunk_symbols;
  const uint64_t remaining = t.elements - first;
  const uint32_t n = remaining < t.chunk_symbols ? static_cast<uint32_t>(remaining) : t.chunk_symbols;

  LaneCoder coder[NP];
  const uint8_t* raw[NP];
  bool coded[NP];
  uint32_t prob_bits[NP], min_symbol[NP];
#pragma unroll
  for (int p = 0; p < NP; ++p) {
    const PlaneDesc& pd = t.planes[p];
    raw[p] = comp + pd.payload + first;
    coded[p] = pd.coded != 0;
    prob_bits[p] = pd.prob_bits;
    min_symbol[p] = pd.min_symbol;
    if (!coded[p]) continue;
    const uint32_t* ends = reinterpret_cast<const uint32_t*>(comp + pd.chunk_ends);
    const uint32_t begin = chunk == 0 ? 0 : ends[chunk - 1];
    const uint32_t bytes = ends[chunk] - begin;  // validated on the host: >= 128, multiple of 16
    const uint32_t table = kSharedTables ? pd.table_offset : static_cast<uint32_t>(pd.table);
    coder_init(coder[p], comp + pd.data + begin, bytes, table, lane);
    if (coder[p].x < kL) bad = true;
  }

  // int8: row and column of this lane's element, advanced by 32 columns a step.
  // Descriptor fields used per element are copied to registers: stores through `out` could
  // alias the descriptor as far as the compiler knows, which would reload them every step.
  const float* scales = nullptr;
  uint64_t row = 0, col = 0;
  const uint64_t cols = t.cols;
  const bool keep_bytes = t.predictor != 0 || t.int8_out == Int8Out::Int8;
  const Int8Out int8_type = t.int8_out;
  if constexpr (A == Assemble::Int8) {
    scales = reinterpret_cast<const float*>(comp + t.scales);
    row = (first + lane) / cols;
    col = (first + lane) % cols;
  }

  // Output of this chunk: indices in the loop stay 32-bit.
  const bool narrow = t.narrow_to_bf16 != 0;
  uint8_t* const chunk_out = out + first * (A == Assemble::SplitBf16  ? 2
                                            : A == Assemble::SplitF32 ? (narrow ? 2 : 4)
                                            : A == Assemble::Int8     ? 1
                                                                      : NP);
  uint32_t cur[NP][G], next[NP][G];
  auto load_group = [&](uint32_t(&dst)[NP][G], uint32_t step0) {
#pragma unroll
    for (int p = 0; p < NP; ++p) {
      if (coded[p]) continue;
#pragma unroll
      for (int k = 0; k < G; ++k) {
        const uint32_t i = (step0 + k) * 32 + lane;
        dst[p][k] = i < n ? __ldg(raw[p] + i) : 0u;
      }
    }
  };
  const uint32_t steps = (n + 31) / 32;
  load_group(cur, 0);
  for (uint32_t g = 0; g < steps; g += G) {
    load_group(next, g + G);
#pragma unroll
    for (int k = 0; k < G; ++k) {
      const uint32_t s = g + k;
      const uint32_t i = s * 32 + lane;
      const bool active = i < n;
      uint32_t b[NP];
#pragma unroll
      for (int p = 0; p < NP; ++p)
        b[p] = coded[p] ? rans_step<kSharedTables>(coder[p], table_pool, prob_bits[p], min_symbol[p], active,
                                                   lane_mask_lt, bad)
                        : cur[p][k];
      if (active) {
        if constexpr (A == Assemble::Int8) {
          store_int8(keep_bytes ? chunk_out : out + 2 * first, i, keep_bytes, int8_type, b[0], scales[row]);
        } else {
          store_element<A, NP>(chunk_out, i, b, narrow);
        }
      }
      if constexpr (A == Assemble::Int8) {
        col += 32;
        while (col >= cols) {
          col -= cols;
          ++row;
        }
      }
    }
#pragma unroll
    for (int p = 0; p < NP; ++p)
#pragma unroll
      for (int k = 0; k < G; ++k) cur[p][k] = next[p][k];
  }

  // Integrity, as on the CPU: every state back at L and the word stream used up exactly (the
  // chunk is 128 + 2 * nwords bytes: its words, then zero padding to 16 bytes).
#pragma unroll
  for (int p = 0; p < NP; ++p) {
    if (!coded[p]) continue;
    const uint32_t used = 128 + 2 * coder[p].pos;
    if (coder[p].x != kL || ((used + 15) & ~15u) != 128 + 2 * coder[p].nwords) bad = true;
  }
}

// One block: up to kWarpsPerBlock chunks of one tensor. One kernel instance per element
// layout keeps each instance's register use to what its layout needs.
// Three resident blocks per SM (24 warps) for the layouts with at most two planes: the decode
// chain is latency-bound, and measured on an H100 two blocks left schedulers idle 58% of cycles.
template <Assemble A, int NP, bool kSharedTables>
__global__ void __launch_bounds__(kWarpsPerBlock * 32, NP <= 2 ? 3 : 1)
    decode_chunks_kernel(const TensorDesc* __restrict__ tensors, const BlockJob* __restrict__ jobs,
                         const uint32_t* __restrict__ table_pool, const uint8_t* __restrict__ comp,
                         const LaunchPointers ptrs, uint32_t* __restrict__ status) {
  const BlockJob job = jobs[blockIdx.x];
  const TensorDesc& t = tensors[job.tensor];

  // Stage every coded plane's table (built once on the host) in shared memory, unless the
  // tensor's tables are too large for it (up to 8 coded planes): those are read from global
  // memory through L1.
  for (uint32_t p = 0; kSharedTables && p < t.num_planes; ++p) {
    const PlaneDesc& pd = t.planes[p];
    if (!pd.coded) continue;
    const uint32_t n = 1u << pd.prob_bits;
    const uint32_t* src = table_pool + pd.table;
    for (uint32_t i = threadIdx.x; i < n; i += blockDim.x) smem_tables[pd.table_offset + i] = src[i];
  }
  __syncthreads();

  const uint32_t warp = threadIdx.x / 32;
  if (warp >= job.num_chunks) return;
  const uint32_t chunk = job.first_chunk + warp;
  bool bad = false;
  decode_chunk<A, NP, kSharedTables>(t, chunk, table_pool, comp, static_cast<uint8_t*>(ptrs.outputs[t.output]), bad);
  if (__any_sync(kFull, bad) && threadIdx.x % 32 == 0) atomicCAS(status + job.tensor, 0u, chunk + 1);
}

template <Assemble A, int NP, bool kSharedTables>
void launch_variant(const TensorDesc* tensors, const BlockJob* jobs, uint32_t num_jobs, const uint32_t* table_pool,
                    const uint8_t* comp, const LaunchPointers& ptrs, uint32_t* status, size_t shared_bytes,
                    cudaStream_t stream) {
  if (shared_bytes > 48 * 1024) {
    // Cheap, host-side only; done at each launch so every instance gets it on first use.
    CLLM_CUDA_CHECK(cudaFuncSetAttribute(decode_chunks_kernel<A, NP, kSharedTables>,
                                         cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(shared_bytes)));
  }
  decode_chunks_kernel<A, NP, kSharedTables>
      <<<num_jobs, kWarpsPerBlock * 32, kSharedTables ? shared_bytes : 0, stream>>>(tensors, jobs, table_pool, comp,
                                                                                    ptrs, status);
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
      const uint32_t up = __shfl_up_sync(kFull, v, d);
      if (lane >= static_cast<uint32_t>(d)) v += up;
    }
    v += carry;
    carry = __shfl_sync(kFull, v, 31);
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

int layout_of(Assemble a, uint32_t num_planes, bool shared_tables) {
  int base;
  switch (a) {
    case Assemble::SplitBf16:
      base = 0;
      break;
    case Assemble::SplitF32:
      base = 1;
      break;
    case Assemble::Int8:
      base = 2;
      break;
    default:
      base = num_planes == 1 ? 3 : num_planes == 2 ? 4 : num_planes == 4 ? 5 : num_planes == 8 ? 6 : -1;
  }
  return base < 0 ? -1 : base + (shared_tables ? 0 : kNumLayouts / 2);
}

namespace {

template <bool kShared>
void launch_layout(int layout, const TensorDesc* tensors, const BlockJob* jobs, uint32_t num_jobs,
                   const uint32_t* table_pool, const uint8_t* comp, const LaunchPointers& ptrs, uint32_t* status,
                   size_t shared_bytes, cudaStream_t stream) {
#define CLLM_LAUNCH(A, NP) \
  launch_variant<A, NP, kShared>(tensors, jobs, num_jobs, table_pool, comp, ptrs, status, shared_bytes, stream)
  switch (layout) {
    case 0:
      CLLM_LAUNCH(Assemble::SplitBf16, 2);
      break;
    case 1:
      CLLM_LAUNCH(Assemble::SplitF32, 4);
      break;
    case 2:
      CLLM_LAUNCH(Assemble::Int8, 1);
      break;
    case 3:
      CLLM_LAUNCH(Assemble::Bytes, 1);
      break;
    case 4:
      CLLM_LAUNCH(Assemble::Bytes, 2);
      break;
    case 5:
      CLLM_LAUNCH(Assemble::Bytes, 4);
      break;
    case 6:
      CLLM_LAUNCH(Assemble::Bytes, 8);
      break;
    default:
      throw Error("GPU decoder: unsupported element layout");
  }
#undef CLLM_LAUNCH
}

}  // namespace

void launch_decode_chunks(int layout, const TensorDesc* tensors, const BlockJob* jobs, uint32_t num_jobs,
                          const uint32_t* table_pool, const uint8_t* comp, const LaunchPointers& ptrs, uint32_t* status,
                          size_t shared_bytes, cudaStream_t stream) {
  if (num_jobs == 0) return;
  if (layout < kNumLayouts / 2) {
    launch_layout<true>(layout, tensors, jobs, num_jobs, table_pool, comp, ptrs, status, shared_bytes, stream);
  } else {
    launch_layout<false>(layout - kNumLayouts / 2, tensors, jobs, num_jobs, table_pool, comp, ptrs, status, 0, stream);
  }
}

}  // namespace codecllm::cuda
