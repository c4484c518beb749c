#pragma once
// Rows of a table kept in pinned host memory, read in place by a kernel: an embedding lookup
// whose table is not in VRAM. Unified addressing maps pinned host memory into the device's
// address space, so a step reads only the rows it needs over PCIe (a few KiB), and no table
// bytes ever pass through the CPU.
#include <cuda_runtime.h>

#include <cstdint>

namespace codecllm::cuda {

// out[i] = table[ids[i]] for i < n, each row row_bytes long. An id outside [0, rows) yields a
// zero row and sets *bad to 1 (the caller checks it when it synchronizes anyway), so that a
// wrong token id can never read outside the table.
void gather_host_rows(const void* table, uint64_t rows, uint64_t row_bytes, const int64_t* ids, uint64_t n, void* out,
                      int* bad, cudaStream_t stream);

}  // namespace codecllm::cuda
