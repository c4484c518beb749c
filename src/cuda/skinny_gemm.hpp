// The shape of the tensor-core products of a few sequences (cuda/skinny_gemm.cuh), for host
// code that decides which products take them.
#pragma once

#include <cstddef>
#include <cstdint>

namespace codecllm::cuda {

constexpr int kSkinnyMaxBatch = 8;  // one 8-sequence tile
constexpr int kSkinnyWarps = 16;    // a block's warps, splitting each row (part of the bits: the order of the sums)
constexpr int kSkinnyRows = 16;     // a block's rows
constexpr int kSkinnyChunk = 64;    // elements of a row a warp takes at a time; rows a multiple of it
// Whether the kernels take rows `in` elements long (whole chunks).
constexpr bool skinny_takes_rows_of(uint64_t in) { return in > 0 && in % kSkinnyChunk == 0; }
// Shared memory of a block's partial sums.
constexpr size_t kSkinnySharedBytes = size_t{kSkinnyWarps} * 32 * 4 * sizeof(float);

}  // namespace codecllm::cuda
