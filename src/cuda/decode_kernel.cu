// GPU decode of .cllm tensors: one warp per rANS chunk, the 32 interleaved states of the chunk
// in the 32 lanes, the coded planes' tables in shared memory, and every plane of an element
// range decoded together so the final values are assembled and stored in the same pass.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/decode_desc.hpp"
#include "cuda/decode_launch.hpp"

namespace codecllm::cuda {
namespace {

constexpr uint32_t kL = 1u << 16;
constexpr uint32_t kFull = 0xffffffffu;

// One coded plane's decoder state in one lane. `pos` (the next word of the chunk's word stream)
// is the same in every lane: each step advances it by the number of lanes that refilled.
struct LaneCoder {
  uint32_t x;
  uint32_t pos;
  uint32_t nwords;
  const uint16_t* words;
  const uint32_t* table;  // shared memory, 2^prob_bits packed entries
};

// Packed table entry: (symbol - min) << 2p | (freq - 1) << p | (slot - cum). x' = freq *
// (x >> p) + slot - cum inverts the encoder; a lane whose x' fell below L takes the next word
// of the stream, lanes in order (a prefix count over the ballot of refilling lanes).
__device__ __forceinline__ uint32_t rans_step(LaneCoder& c, uint32_t p, uint32_t min_symbol, bool active,
                                              uint32_t lane_mask_lt, bool& bad) {
  const uint32_t mask = (1u << p) - 1;
  const uint32_t e = c.table[c.x & mask];
  const uint32_t freq = ((e >> p) & mask) + 1;
  uint32_t x = freq * (c.x >> p) + (e & mask);
  if (!active) x = c.x;
  const bool refill = active && x < kL;
  const uint32_t ballot = __ballot_sync(kFull, refill);
  if (refill) {
    const uint32_t idx = c.pos + __popc(ballot & lane_mask_lt);
    uint32_t w = 0;
    if (idx < c.nwords) {
      w = __ldg(c.words + idx);
    } else {
      bad = true;
    }
    x = (x << 16) | w;
  }
  c.pos += __popc(ballot);
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

template <Assemble A, int NP>
__device__ __forceinline__ void store_element(uint8_t* out, uint64_t i, const TensorDesc& t, const uint32_t (&b)[NP],
                                              const float* scales) {
  if constexpr (A == Assemble::SplitBf16) {
    reinterpret_cast<uint16_t*>(out)[i] = static_cast<uint16_t>(((b[1] & 0x80u) << 8) | (b[0] << 7) | (b[1] & 0x7Fu));
  } else if constexpr (A == Assemble::SplitF32) {
    reinterpret_cast<uint32_t*>(out)[i] =
        ((b[1] & 0x80u) << 24) | (b[0] << 23) | ((b[1] & 0x7Fu) << 16) | (b[2] << 8) | b[3];
  } else if constexpr (A == Assemble::Int8) {
    if (t.predictor != 0 || t.int8_out == Int8Out::Int8) {
      out[i] = static_cast<uint8_t>(b[0]);  // LEFT residuals go through int8_rows_kernel next
    } else {
      store_dequantized(out, i, static_cast<float>(static_cast<int8_t>(b[0])) * scales[i / t.cols], t.int8_out);
    }
  } else {
#pragma unroll
    for (int k = 0; k < NP; ++k) out[i * NP + k] = static_cast<uint8_t>(b[k]);
  }
}

// Decodes chunk `chunk` of tensor t: NP planes, each coded (a warp-wide rANS stream) or raw.
template <Assemble A, int NP>
__device__ void decode_chunk(const TensorDesc& t, uint32_t chunk, const uint32_t* tables, const uint8_t* comp,
                             uint8_t* out, bool& bad) {
  const uint32_t lane = threadIdx.x % 32;
  const uint32_t lane_mask_lt = (1u << lane) - 1;
  const uint64_t first = uint64_t{chunk} * t.chunk_symbols;
  const uint64_t remaining = t.elements - first;
  const uint32_t n = remaining < t.chunk_symbols ? static_cast<uint32_t>(remaining) : t.chunk_symbols;
  const float* scales = A == Assemble::Int8 ? reinterpret_cast<const float*>(comp + t.scales) : nullptr;

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
    coder[p] = LaneCoder{kL, 0, 0, nullptr, nullptr};
    if (!coded[p]) continue;
    const uint32_t* ends = reinterpret_cast<const uint32_t*>(comp + pd.chunk_ends);
    const uint32_t begin = chunk == 0 ? 0 : ends[chunk - 1];
    const uint32_t bytes = ends[chunk] - begin;  // validated on the host: >= 128, multiple of 16
    const uint8_t* base = comp + pd.data + begin;
    coder[p].x = reinterpret_cast<const uint32_t*>(base)[lane];
    coder[p].nwords = (bytes - 128) / 2;
    coder[p].words = reinterpret_cast<const uint16_t*>(base + 128);
    coder[p].table = tables + pd.table_offset;
    if (coder[p].x < kL) bad = true;
  }

  const uint32_t steps = (n + 31) / 32;
  for (uint32_t s = 0; s < steps; ++s) {
    const uint32_t i = s * 32 + lane;
    const bool active = i < n;
    uint32_t b[NP];
#pragma unroll
    for (int p = 0; p < NP; ++p) {
      if (coded[p]) {
        b[p] = rans_step(coder[p], prob_bits[p], min_symbol[p], active, lane_mask_lt, bad);
      } else {
        b[p] = active ? __ldg(raw[p] + i) : 0;
      }
    }
    if (active) store_element<A, NP>(out, first + i, t, b, scales);
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

__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    decode_chunks_kernel(const TensorDesc* __restrict__ tensors, const BlockJob* __restrict__ jobs,
                         const uint32_t* __restrict__ table_pool, const uint8_t* __restrict__ comp,
                         const LaunchPointers ptrs, uint32_t* __restrict__ status) {
  extern __shared__ uint32_t tables[];
  const BlockJob job = jobs[blockIdx.x];
  const TensorDesc& t = tensors[job.tensor];

  // Stage every coded plane's table (built once on the host) in shared memory.
  for (uint32_t p = 0; p < t.num_planes; ++p) {
    const PlaneDesc& pd = t.planes[p];
    if (!pd.coded) continue;
    const uint32_t n = 1u << pd.prob_bits;
    const uint32_t* src = table_pool + pd.table;
    for (uint32_t i = threadIdx.x; i < n; i += blockDim.x) tables[pd.table_offset + i] = src[i];
  }
  __syncthreads();

  const uint32_t warp = threadIdx.x / 32;
  if (warp >= job.num_chunks) return;
  const uint32_t chunk = job.first_chunk + warp;
  uint8_t* out = static_cast<uint8_t*>(ptrs.outputs[t.output]);
  bool bad = false;
  switch (t.assemble) {  // uniform across the block: one tensor per block
    case Assemble::SplitBf16: decode_chunk<Assemble::SplitBf16, 2>(t, chunk, tables, comp, out, bad); break;
    case Assemble::SplitF32: decode_chunk<Assemble::SplitF32, 4>(t, chunk, tables, comp, out, bad); break;
    case Assemble::Int8: decode_chunk<Assemble::Int8, 1>(t, chunk, tables, comp, out, bad); break;
    default:
      switch (t.num_planes) {
        case 1: decode_chunk<Assemble::Bytes, 1>(t, chunk, tables, comp, out, bad); break;
        case 2: decode_chunk<Assemble::Bytes, 2>(t, chunk, tables, comp, out, bad); break;
        case 4: decode_chunk<Assemble::Bytes, 4>(t, chunk, tables, comp, out, bad); break;
        case 8: decode_chunk<Assemble::Bytes, 8>(t, chunk, tables, comp, out, bad); break;
        default: bad = true;
      }
  }
  if (__any_sync(kFull, bad) && threadIdx.x % 32 == 0) atomicCAS(status + job.tensor, 0u, chunk + 1);
}

// LEFT predictor: residuals -> values by a prefix sum mod 256 along each row (one warp per
// row, 32 columns per step with a shuffle scan), then dequantized or kept as int8.
__global__ void int8_rows_kernel(const uint8_t* __restrict__ residuals, const float* __restrict__ scales,
                                 uint64_t rows, uint64_t cols, Int8Out out_type, uint8_t* __restrict__ out) {
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

void prepare_decode_kernel(size_t shared_bytes) {
  if (shared_bytes > 48 * 1024) {
    cudaFuncSetAttribute(decode_chunks_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                         static_cast<int>(shared_bytes));
  }
}

void launch_decode_chunks(const TensorDesc* tensors, const BlockJob* jobs, uint32_t num_jobs,
                          const uint32_t* table_pool, const uint8_t* comp, const LaunchPointers& ptrs,
                          uint32_t* status, size_t shared_bytes, cudaStream_t stream) {
  if (num_jobs == 0) return;
  decode_chunks_kernel<<<num_jobs, kWarpsPerBlock * 32, shared_bytes, stream>>>(tensors, jobs, table_pool, comp, ptrs,
                                                                               status);
}

}  // namespace codecllm::cuda
