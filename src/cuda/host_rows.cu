#include <algorithm>

#include "cuda/cuda_check.hpp"
#include "cuda/host_rows.hpp"

namespace codecllm::cuda {
namespace {

constexpr int kThreads = 256;

// One block row per id; W is the widest word both the table's rows and the output rows align to.
template <typename W>
__global__ void gather_rows_kernel(const W* table, uint64_t rows, uint64_t row_words, const int64_t* ids, W* out,
                                   int* bad) {
  const int64_t id = ids[blockIdx.y];
  W* dst = out + blockIdx.y * row_words;
  const bool valid = id >= 0 && uint64_t(id) < rows;
  if (!valid && threadIdx.x == 0 && blockIdx.x == 0) atomicExch(bad, 1);
  const W* src = table + (valid ? uint64_t(id) : 0) * row_words;
  for (uint64_t i = blockIdx.x * uint64_t(blockDim.x) + threadIdx.x; i < row_words;
       i += uint64_t(gridDim.x) * blockDim.x) {
    dst[i] = valid ? src[i] : W{};
  }
}

template <typename W>
void launch(const void* table, uint64_t rows, uint64_t row_bytes, const int64_t* ids, uint64_t n, void* out, int* bad,
            cudaStream_t stream) {
  const uint64_t words = row_bytes / sizeof(W);
  const unsigned blocks_x = unsigned((words + kThreads - 1) / kThreads);
  constexpr uint64_t kMaxGridY = 65535;  // the grid's y extent: longer prompts take several launches
  for (uint64_t first = 0; first < n; first += kMaxGridY) {
    const auto count = unsigned(std::min(kMaxGridY, n - first));
    gather_rows_kernel<W><<<dim3(blocks_x, count), kThreads, 0, stream>>>(
        static_cast<const W*>(table), rows, words, ids + first, static_cast<W*>(out) + first * words, bad);
    CLLM_CUDA_CHECK(cudaGetLastError());
  }
}

}  // namespace

void gather_host_rows(const void* table, uint64_t rows, uint64_t row_bytes, const int64_t* ids, uint64_t n, void* out,
                      int* bad, cudaStream_t stream) {
  if (n == 0 || row_bytes == 0) return;
  const auto aligned = [&](uint64_t a) {
    return row_bytes % a == 0 && reinterpret_cast<uintptr_t>(table) % a == 0 &&
           reinterpret_cast<uintptr_t>(out) % a == 0;
  };
  // 16-byte words: PCIe reads of mapped memory are cheapest in the widest requests.
  if (aligned(16)) {
    launch<uint4>(table, rows, row_bytes, ids, n, out, bad, stream);
  } else if (aligned(4)) {
    launch<uint32_t>(table, rows, row_bytes, ids, n, out, bad, stream);
  } else {
    launch<uint8_t>(table, rows, row_bytes, ids, n, out, bad, stream);
  }
}

}  // namespace codecllm::cuda
