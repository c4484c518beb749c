// Descriptors shared by the host planner and the decode kernels. Plain data only: they are
// built once per decoder on the host and copied to device memory.
#pragma once

#include <cstdint>

namespace codecllm::cuda {

constexpr int kMaxPlanes = 8;             // widest element: 8 byte planes
constexpr int kMaxTensorsPerLaunch = 64;  // output pointers travel as a kernel parameter
constexpr int kWarpsPerBlock = 8;
constexpr uint32_t kMaxSharedTableBytes = 64 * 1024;  // larger tables stay in global memory

// How the planes of a tensor are put back together.
enum class Assemble : uint32_t {
  Bytes = 0,      // element byte k = plane k (byte_planes, none)
  SplitBf16 = 1,  // float_split, 2-byte elements
  SplitF32 = 2,   // float_split, 4-byte elements
  Int8 = 3,       // plane 0 = int8 values (or LEFT residuals), then dequantized or kept
};

// Output element type of int8 tensors.
enum class Int8Out : uint32_t { Int8 = 0, Bf16 = 1, F16 = 2 };

// 32-bit words of a coded plane's decode tables (built in gpu_decoder.cpp, read by rans_step):
// packed, one word per slot, when every frequency is at most kPackedMaxFreq; else split, 2^p
// entries then 2^p symbol bytes.
constexpr uint32_t kPackedMaxFreq = 1u << 12;
constexpr uint32_t gpu_table_words(uint32_t prob_bits, bool packed) {
  return (1u << prob_bits) + (packed ? 0 : (1u << prob_bits) / 4);
}

struct PlaneDesc {
  uint32_t coded;  // 1: rANS, 0: raw
  uint32_t prob_bits;
  uint32_t table_offset;  // coded: entry offset of this plane's table in shared memory
  uint64_t payload;       // offset of the payload in the compressed range
  uint64_t data;          // coded: offset of the chunk data in the compressed range
  uint64_t chunk_ends;    // coded: offset of the uint32 chunk_end array in the compressed range
  uint64_t table;         // coded: index of the first entry of its table in the table pool
};

struct TensorDesc {
  Assemble assemble;
  uint32_t num_planes;
  uint32_t element_size;   // bytes per decoded element (before int8 dequantization)
  uint32_t chunk_symbols;  // shared by every coded plane of the tensor
  uint64_t elements;
  uint64_t cols;       // int8: row length
  uint64_t scales;     // int8: offset of the f32 scales payload in the compressed range
  uint32_t predictor;  // int8: 1 when LEFT residuals must be prefix-summed per row
  Int8Out int8_out;
  uint32_t table_entries;   // table words of all coded planes together
  uint32_t tables_in_smem;  // 1: staged in shared memory; 0: too large, read from global memory
  uint32_t output;          // index into the launch's output pointers
  uint32_t narrow_to_bf16;  // SplitF32: store bfloat16 (nearest even) instead of float32
  PlaneDesc planes[kMaxPlanes];
};

// One block's work: chunks [first, first + count) of one tensor, one chunk per warp.
struct BlockJob {
  uint32_t tensor;
  uint32_t first_chunk;
  uint32_t num_chunks;
};

// A tensor whose exponents are an Exp4 plane (codec/exp4_plane.hpp) and whose sign_mantissa
// plane is raw: decoded (exp4_kernel.cu) or multiplied in place without any rANS state.
// Offsets are in the compressed range, each part 16-byte aligned within it.
struct Exp4Desc {
  uint64_t codes, escape_end, escape_at, escape_exp;  // the Exp4 plane's parts
  uint64_t sign_mantissa;                             // the raw plane
  uint64_t elements;
  uint64_t cols;           // row length of a matrix (products), else 0
  uint32_t base_pair;      // base << 7 | base << 23: the exponent of code 0 in both halves of a word
  uint32_t block_symbols;  // elements per escape block
  uint32_t tensor;         // the tensor's index in its decoder: its output and status word
  // The escapes by row (cuda/exp4_row_slots.hpp), in device memory: row r's at
  // row_slots + r * slots_per_row; null when the tensor has no such table.
  const uint32_t* row_slots;
  uint32_t slots_per_row;
  // The exponent of code 0 (kernels call it too: constexpr, built with --expt-relaxed-constexpr).
  constexpr uint32_t base() const { return (base_pair >> 7) & 0xFF; }
};

// What a product kernel writes to y: F32 rows, F32 rows added to those y holds, or rows rounded
// to BF16 (for callers whose next operation takes the model's 16-bit type: the Python package's
// linear layers).
enum class GemvOut : uint32_t { F32, F32Add, Bf16 };

// A fused Exp4 product launch (exp4_kernel.cu): rows of up to kMaxExp4PerGemv tensors of one
// row length, one after another in y, all against the same BF16 x.
constexpr int kMaxExp4PerGemv = 8;
struct Exp4GemvArgs {
  const void* x;
  void* y;  // row 0 of the launch's first tensor, of the type `out` names
  GemvOut out;
  uint32_t count;                     // tensors in the launch
  uint32_t cols;                      // their common row length
  uint32_t row_end[kMaxExp4PerGemv];  // one past each tensor's last row, counted from the first tensor's
  // Products of several sequences (launch_exp4_gemm): x is [batch][cols], sequence b's y at y + b
  // ldy elements (F32 or F32Add only).
  uint32_t batch = 1, ldy = 0;
};

struct LaunchPointers {
  void* outputs[kMaxTensorsPerLaunch];
};

// A fused decode-GEMV launch (decode_gemv_kernel.cu): y[y_row[t] + r] = (W_t x)[r] for each
// tensor t of the launch, all with the same x (16-bit, the weights' type or int8's partner).
struct GemvArgs {
  const void* x;
  void* y;  // of the type `out` names
  GemvOut out;
  uint64_t y_row[kMaxTensorsPerLaunch];  // by tensor index
};

}  // namespace codecllm::cuda
