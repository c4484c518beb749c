// Element assembly of the decode kernels: the bytes of each plane -> the tensor's output
// values. After every group of steps each lane owns a run of 16 consecutive elements; the
// vector form builds 4 elements per 32-bit word with byte permutes and stores 16 bytes at a
// time, the scalar form (tails, unaligned outputs, odd row lengths) one element at a time.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/decode_desc.hpp"

namespace codecllm::cuda {

constexpr uint32_t kRunElements = 16;

// Bytes of one output element as the kernel stores it.
template <Assemble A, int NP>
__device__ __forceinline__ uint32_t output_element_bytes(bool narrow, bool int8_bytes) {
  if constexpr (A == Assemble::SplitBf16) return 2;
  if constexpr (A == Assemble::SplitF32) return narrow ? 2 : 4;
  if constexpr (A == Assemble::Int8) return int8_bytes ? 1 : 2;
  return NP;
}

// Int8 output: the int8 values (or LEFT residuals) as they are, or dequantized.
struct Int8Store {
  bool keep_bytes;
  Int8Out type;
  float scale;  // of the row of the element being stored
};

__device__ __forceinline__ float dequantize(uint32_t q, float scale) {
  return static_cast<float>(static_cast<int8_t>(q)) * scale;
}

// Round to nearest even, exactly as the CPU reference (codec/int8_quant.cpp) converts.
__device__ __forceinline__ void store_dequantized(uint8_t* out, uint64_t i, float w, Int8Out o) {
  if (o == Int8Out::Bf16) {
    reinterpret_cast<__nv_bfloat16*>(out)[i] = __float2bfloat16_rn(w);
  } else {
    reinterpret_cast<__half*>(out)[i] = __float2half_rn(w);
  }
}

// Two values, rounded to nearest even, packed in one word (the lower address first).
__device__ __forceinline__ uint32_t pack2(float lo, float hi, Int8Out o) {
  uint32_t w;
  if (o == Int8Out::Bf16) {
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    memcpy(&w, &v, 4);
  } else {
    const __half2 v = __floats2half2_rn(lo, hi);
    memcpy(&w, &v, 4);
  }
  return w;
}

// float_split: plane 0 holds the 8 exponent bits, plane 1 the sign and the top 7 mantissa
// bits. From those bytes of 4 elements, the high and low bytes of their top 16 bits.
__device__ __forceinline__ void split_halves(uint32_t exponent, uint32_t sign_mantissa, uint32_t& hi, uint32_t& lo) {
  hi = (sign_mantissa & 0x80808080u) | ((exponent >> 1) & 0x7f7f7f7fu);
  lo = ((exponent << 7) & 0x80808080u) | (sign_mantissa & 0x7f7f7f7fu);
}

// Byte k of each of 4 elements taken from plane word k: two planes -> two words, four
// planes -> four words (a 4x4 byte transpose).
__device__ __forceinline__ uint2 interleave2(uint32_t b0, uint32_t b1) {
  return make_uint2(__byte_perm(b0, b1, 0x5140), __byte_perm(b0, b1, 0x7362));
}

// 4 BF16 values (two words, the first value in the low half of the first) from a word of their
// exponent bytes and a word of their sign_mantissa bytes: the one BF16 assembly, shared by the
// decoder's stores and the products that read the two planes themselves.
__device__ __forceinline__ uint2 bf16_from_words(uint32_t exponent, uint32_t sign_mantissa) {
  uint32_t hi, lo;
  split_halves(exponent, sign_mantissa, hi, lo);
  return interleave2(lo, hi);
}
// 8 BF16 values (one 16-byte vector) from 8 exponent bytes and 8 sign_mantissa bytes.
__device__ __forceinline__ uint4 bf16_from_planes(uint2 exponent, uint2 sign_mantissa) {
  const uint2 a = bf16_from_words(exponent.x, sign_mantissa.x), b = bf16_from_words(exponent.y, sign_mantissa.y);
  return make_uint4(a.x, a.y, b.x, b.y);
}
__device__ __forceinline__ uint4 interleave4(uint32_t b0, uint32_t b1, uint32_t b2, uint32_t b3) {
  const uint2 lo = interleave2(b0, b1), hi = interleave2(b2, b3);
  return make_uint4(__byte_perm(lo.x, hi.x, 0x5410), __byte_perm(lo.x, hi.x, 0x7632), __byte_perm(lo.y, hi.y, 0x5410),
                    __byte_perm(lo.y, hi.y, 0x7632));
}

__device__ __forceinline__ uint32_t word_of(const uint4& v, int k) {
  return k == 0 ? v.x : k == 1 ? v.y : k == 2 ? v.z : v.w;
}

// Layouts with a vector form (eight byte planes are rare and take the scalar one).
template <Assemble A, int NP>
constexpr bool kVectorRuns = !(A == Assemble::Bytes && NP > 4);

// Stores a run of 16 elements at out (16-byte aligned), the bytes of plane p in run[p].
template <Assemble A, int NP>
__device__ __forceinline__ void store_run(uint8_t* out, const uint4 (&run)[NP], bool narrow, const Int8Store& q) {
  uint4* o = reinterpret_cast<uint4*>(out);
  uint32_t w[16];
  int words = 0;
  if constexpr (A == Assemble::Int8) {
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const uint32_t v = word_of(run[0], k);
      if (q.keep_bytes) {
        w[k] = v;
      } else {
        w[2 * k] = pack2(dequantize(v, q.scale), dequantize(v >> 8, q.scale), q.type);
        w[2 * k + 1] = pack2(dequantize(v >> 16, q.scale), dequantize(v >> 24, q.scale), q.type);
      }
    }
    words = q.keep_bytes ? 4 : 8;
  } else if constexpr (A == Assemble::SplitBf16) {
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const uint2 e = bf16_from_words(word_of(run[0], k), word_of(run[1], k));
      w[2 * k] = e.x;
      w[2 * k + 1] = e.y;
    }
    words = 8;
  } else if constexpr (A == Assemble::SplitF32) {
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      uint32_t hi, lo;
      split_halves(word_of(run[0], k), word_of(run[1], k), hi, lo);
      const uint4 e = interleave4(word_of(run[3], k), word_of(run[2], k), lo, hi);
      if (narrow) {
        w[2 * k] = pack2(__uint_as_float(e.x), __uint_as_float(e.y), Int8Out::Bf16);
        w[2 * k + 1] = pack2(__uint_as_float(e.z), __uint_as_float(e.w), Int8Out::Bf16);
      } else {
        w[4 * k] = e.x;
        w[4 * k + 1] = e.y;
        w[4 * k + 2] = e.z;
        w[4 * k + 3] = e.w;
      }
    }
    words = narrow ? 8 : 16;
  } else if constexpr (NP == 1) {
#pragma unroll
    for (int k = 0; k < 4; ++k) w[k] = word_of(run[0], k);
    words = 4;
  } else if constexpr (NP == 2) {
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const uint2 e = interleave2(word_of(run[0], k), word_of(run[1], k));
      w[2 * k] = e.x;
      w[2 * k + 1] = e.y;
    }
    words = 8;
  } else if constexpr (NP == 4) {
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const uint4 e = interleave4(word_of(run[0], k), word_of(run[1], k), word_of(run[2], k), word_of(run[3], k));
      w[4 * k] = e.x;
      w[4 * k + 1] = e.y;
      w[4 * k + 2] = e.z;
      w[4 * k + 3] = e.w;
    }
    words = 16;
  }
#pragma unroll
  for (int v = 0; v < 4; ++v) {
    if (4 * v < words) o[v] = make_uint4(w[4 * v], w[4 * v + 1], w[4 * v + 2], w[4 * v + 3]);
  }
}

// One element i (index from out) from its plane bytes b.
template <Assemble A, int NP>
__device__ __forceinline__ void store_element(uint8_t* out, uint32_t i, const uint32_t (&b)[NP], bool narrow,
                                              const Int8Store& q) {
  if constexpr (A == Assemble::Int8) {
    if (q.keep_bytes) {
      out[i] = static_cast<uint8_t>(b[0]);
    } else {
      store_dequantized(out, i, dequantize(b[0], q.scale), q.type);
    }
  } else if constexpr (A == Assemble::SplitBf16) {
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

}  // namespace codecllm::cuda
