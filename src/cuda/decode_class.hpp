// Decode of lossless BF16 tensors whose exponent plane uses class tables ("RNS2",
// codec/rans.hpp): a kernel of its own (decode_class_kernel.cu), one warp per chunk, tables in
// global memory. Such planes hold embeddings and output heads, decoded once at load time, so
// the kernel is kept simple and strict rather than fast.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace codecllm::cuda {

// One plane of a class-table tensor. The chunk bounds are the host-validated copy in the ends
// pool, never the chunk_end array of the device range, so no chunk is read past its end
// whatever the range copy holds.
struct ClassPlaneDesc {
  uint32_t coded;       // 0: raw bytes at `bytes`
  uint32_t prob_bits;   // coded: M = 2^prob_bits
  uint32_t per_class;   // coded: 1 = one table per class (RNS2), 0 = one table (RNS1)
  uint64_t bytes;       // raw: the plane's offset in the range; coded: its chunk data's offset
  uint64_t chunk_ends;  // coded: index of its chunk_end[num_chunks] in the ends pool
  uint64_t table;       // coded: index of its first table's first entry in the entry pool
};

struct ClassTensorDesc {
  uint64_t elements;
  uint64_t cols;     // the class map's row length
  uint64_t classes;  // index of the class ids in the id pool
  uint32_t axis;     // 0: symbol g takes the class of row g / cols; 1: of column g % cols
  uint32_t chunk_symbols;
  uint32_t num_chunks;
  uint32_t tensor;  // the decoder's tensor index: its status word and output
  ClassPlaneDesc exponent, sign_mantissa;
};

// One decode entry per table slot t: freq | (t - cum) << 16 | symbol << 32.
constexpr uint64_t class_entry(uint32_t freq, uint32_t bias, uint32_t symbol) {
  return freq | uint64_t{bias} << 16 | uint64_t{symbol} << 32;
}

// Decodes every chunk of t into out (BF16 elements). entries, ids and ends are the decoder's
// device pools, comp the device copy of its compressed range. A failed chunk writes
// (chunk + 1) to status[t.tensor] if that word is still 0, as launch_decode_chunks does.
void launch_decode_classes(const ClassTensorDesc& t, const uint64_t* entries, const uint8_t* ids, const uint32_t* ends,
                           const uint8_t* comp, uint16_t* out, uint32_t* status, cudaStream_t stream);

}  // namespace codecllm::cuda
