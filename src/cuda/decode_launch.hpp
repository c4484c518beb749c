// Kernel launchers (decode_kernel.cu), called by the planner with prepared descriptors.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "cuda/decode_desc.hpp"

namespace codecllm::cuda {

// Kernel instances: seventeen element layouts (assembly, planes, which planes are coded, packed
// or split tables), each with its tables in shared memory or (when too large) in global memory.
constexpr int kNumLayouts = 34;
constexpr int kCodedFromDescriptor = -1;

// Which kernel instance decodes a tensor (0 .. kNumLayouts-1), -1 if none can. coded_mask:
// bit p set when plane p is rANS coded; packed: the tables are in the packed layout (only the
// layouts compress writes have packed instances).
int layout_of(Assemble a, uint32_t num_planes, uint32_t coded_mask, bool packed, bool shared_tables);

// Chunks of a block job of that instance (one per warp of its blocks).
int layout_warps(int layout);

// Decodes every chunk named by jobs (all of one layout); tensors, jobs and table_pool are
// device arrays, comp the device copy of the compressed range. A failed chunk writes (chunk
// index + 1) to status[tensor] if that entry is still 0. max_blocks > 0: at most that many
// blocks, each taking several jobs in turn (0: one block a job).
void launch_decode_chunks(int layout, const TensorDesc* tensors, const BlockJob* jobs, uint32_t num_jobs,
                          const uint32_t* table_pool, const uint8_t* comp, const LaunchPointers& ptrs, uint32_t* status,
                          size_t shared_bytes, uint32_t max_blocks, cudaStream_t stream);

// Instances of the fused decode-GEMV kernel (decode_gemv_kernel.cu): lossless BF16 weights
// (exponents coded, sign and mantissa raw) against BF16 x, and int8 weights (no predictor)
// against BF16 or F16 x; each with packed or split tables, always in shared memory.
enum class GemvKind { Bf16Packed, Bf16Split, Int8PackedXBf16, Int8SplitXBf16, Int8PackedXF16, Int8SplitXF16 };

// y = W x for the tensors named by jobs (all of one kind, tensors in order), see GemvArgs. A
// failed chunk is reported in status as by launch_decode_chunks. overlap: launched as a
// programmatic dependent of the previous kernel on the stream (cuda/pdl.cuh).
void launch_decode_gemv(GemvKind kind, const TensorDesc* tensors, const BlockJob* jobs, uint32_t num_jobs,
                        const uint32_t* table_pool, const uint8_t* comp, uint32_t* status, size_t table_bytes,
                        const GemvArgs& args, bool overlap, cudaStream_t stream);

// Exp4 tensors (exp4_kernel.cu). Decodes t to BF16 at out (2-byte aligned; 16 is faster). A code 15 without
// its escape writes (block index + 1) to status[t.tensor] if that entry is still 0.
void launch_exp4_decode(const Exp4Desc& t, const uint8_t* comp, void* out, uint32_t* status, cudaStream_t stream);
// y = W x for the args.count tensors at `tensors` (device), summed in the order of
// cuda/gemv_dot.cuh: the same bits as the engine's GEMV over the decoded weights.
void launch_exp4_gemv(const Exp4Desc* tensors, const Exp4GemvArgs& args, const uint8_t* comp, uint32_t* status,
                      bool overlap, cudaStream_t stream);
// The same for args.batch sequences (2 .. kSkinnyMaxBatch) on the tensor cores
// (cuda/skinny_gemm.cuh): the bits of the engine's gemm over the decoded weights. Every tensor's
// rows a multiple of 16, their length of 64, its sign_mantissa 16-byte and codes 8-byte aligned
// within a range that starts 16-byte aligned (exp4_gemm_takes).
bool exp4_gemm_takes(const Exp4Desc& t);
void launch_exp4_gemm(const Exp4Desc* tensors, const Exp4GemvArgs& args, const uint8_t* comp, uint32_t* status,
                      bool overlap, cudaStream_t stream);

// Undoes the LEFT predictor row by row and writes int8 values or dequantized BF16/F16.
void launch_int8_rows(const uint8_t* residuals, const float* scales, uint64_t rows, uint64_t cols, Int8Out out_type,
                      uint8_t* out, cudaStream_t stream);

}  // namespace codecllm::cuda
