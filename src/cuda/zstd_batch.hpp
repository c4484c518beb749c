// Zstd planes decoded on the GPU by nvCOMP's batched Zstd decoder: every frame of a decoder's
// zstd planes in one call, into the decoder's scratch, then assembled into the output by
// assemble_planes (zstd_assemble.cu). Built with nvCOMP when CMake finds it (PyPI's
// nvidia-libnvcomp-cu13); without it, constructing a ZstdBatch throws an error that says how
// to get it, and zstd files still decode everywhere on the CPU.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "cuda/decode_desc.hpp"

namespace codecllm::cuda {

// Whether this build decodes zstd planes on the GPU.
bool have_nvcomp();

struct ZstdFrameJob {
  uint64_t comp;      // offset of the frame in the compressed range
  uint64_t size;      // its bytes
  uint64_t out;       // offset of its decoded bytes in the decoder's scratch
  uint64_t out_size;  // its decoded bytes (exactly: a frame that decodes to fewer is corrupt)
};

class ZstdBatch {
 public:
  // Plans one batched decode of `frames`; `alloc` gives device memory owned by the caller.
  // nvCOMP's temporary buffer is not allocated here: it lies in the caller's scratch at
  // temp_offset (temp_bytes() of it), so that decoders whose decodes never overlap share it.
  ZstdBatch(std::vector<ZstdFrameJob> frames, uint64_t temp_offset, const std::function<void*(uint64_t)>& alloc,
            const std::string& what);
  // The scratch bytes nvCOMP needs as temporary storage to decode `frames`, alignment slack
  // included.
  static uint64_t temp_bytes(const std::vector<ZstdFrameJob>& frames, const std::string& what);
  size_t size() const { return frames_.size(); }
  // Enqueues: each frame's pointers from the range's and the scratch's base, then nvCOMP.
  void decode(const uint8_t* comp, uint8_t* scratch, cudaStream_t stream) const;
  // After the stream is synchronized: the first frame whose status is not success or whose
  // decoded size is not its chunk's, or -1.
  int64_t first_failure() const;

 private:
  std::vector<ZstdFrameJob> frames_;
  std::string what_;
  ZstdFrameJob* d_frames_ = nullptr;
  const void** d_comp_ptrs_ = nullptr;
  void** d_out_ptrs_ = nullptr;
  size_t* d_comp_bytes_ = nullptr;
  size_t* d_out_bytes_ = nullptr;
  size_t* d_actual_bytes_ = nullptr;
  int* d_status_ = nullptr;  // nvcompStatus_t
  uint64_t temp_offset_ = 0;
  uint64_t temp_align_ = 1;
  size_t temp_bytes_ = 0;
};

// One tensor of zstd (and raw) planes put back together: plane k's bytes at planes[k].
struct PlaneAssembly {
  Assemble assemble;
  uint32_t num_planes;
  uint64_t elements;  // Bytes with one plane: bytes
  uint64_t cols;      // int8: row length
  bool narrow_to_bf16;
  Int8Out int8_out;
};

void assemble_planes(const PlaneAssembly& a, const uint8_t* const* planes, const float* scales, void* out,
                     cudaStream_t stream);

}  // namespace codecllm::cuda
