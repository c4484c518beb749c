// Decode of lossless BF16 tensors whose exponent plane uses class tables ("RNS2",
// codec/rans.hpp): a kernel of its own (decode_class_kernel.cu), one warp per chunk, tables in
// global memory. Such planes hold embeddings and output heads, decoded once at load time, so
// the kernel is kept simple and strict rather than fast.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace codecllm::cuda {

// One plane of a class-table tensor. Offsets are into the compressed range, whose chunk_end
// arrays the host validated at plan time (as for the batched kernels, decode_stream.cuh).
struct ClassPlaneDesc {
  uint32_t coded;       // 0: raw bytes at `bytes`
  uint32_t prob_bits;   // coded: M = 2^prob_bits
  uint64_t bytes;       // raw: the plane's offset; coded: its chunk data's offset
  uint64_t chunk_ends;  // coded: offset of its uint32 chunk_end[num_chunks]
  uint64_t table;       // coded: its first table in the decoder's table pool (split layout,
                        // gpu_table_words(prob_bits, false) words each, one per class in turn)
};

struct ClassTensorDesc {
  uint64_t elements;
  uint64_t cols;     // the class map's row length
  uint64_t classes;  // offset of the class ids (one byte per row or column) in the range
  uint32_t axis;     // 0: symbol g takes the class of row g / cols; 1: of column g % cols
  uint32_t chunk_symbols;
  uint32_t num_chunks;
  uint32_t tensor;  // the decoder's tensor index: its status word and output
  ClassPlaneDesc exponent, sign_mantissa;
};

// Decodes every chunk of t into out (BF16 elements). tables is the decoder's table pool, comp
// the device copy of its compressed range. A failed chunk writes (chunk + 1) to
// status[t.tensor] if that word is still 0, as launch_decode_chunks does.
void launch_decode_classes(const ClassTensorDesc& t, const uint32_t* tables, const uint8_t* comp, uint16_t* out,
                           uint32_t* status, cudaStream_t stream);

}  // namespace codecllm::cuda
