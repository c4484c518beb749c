#include "cuda/zstd_batch.hpp"

#include <algorithm>

#include "codecllm/error.hpp"
#include "cuda/cuda_check.hpp"

#ifdef CODECLLM_HAVE_NVCOMP
#include <nvcomp/zstd.h>
#endif

namespace codecllm::cuda {

// zstd_assemble.cu
void launch_zstd_pointers(const ZstdFrameJob* frames, size_t n, const uint8_t* comp, uint8_t* scratch,
                          const void** comp_ptrs, void** out_ptrs, cudaStream_t stream);

#ifdef CODECLLM_HAVE_NVCOMP

bool have_nvcomp() { return true; }

namespace {
void nvcomp_check(nvcompStatus_t s, const std::string& what, const char* call) {
  if (s != nvcompSuccess) throw Error(what + ": " + call + " failed (nvCOMP status " + std::to_string(int(s)) + ")");
}
}  // namespace

ZstdBatch::ZstdBatch(std::vector<ZstdFrameJob> frames, const std::function<void*(uint64_t)>& alloc,
                     const std::string& what)
    : frames_(std::move(frames)), what_(what) {
  if (frames_.empty()) return;
  const size_t n = frames_.size();
  nvcompAlignmentRequirements_t align{};
  nvcomp_check(nvcompBatchedZstdDecompressGetRequiredAlignments(nvcompBatchedZstdDecompressDefaultOpts, &align), what,
               "nvcompBatchedZstdDecompressGetRequiredAlignments");
  size_t max_out = 0, total_out = 0;
  std::vector<size_t> comp_bytes(n), out_bytes(n);
  for (size_t i = 0; i < n; ++i) {
    const ZstdFrameJob& f = frames_[i];
    // The range starts 16-byte aligned in device memory (GpuDecoder::decode checks it), so an
    // offset's alignment is the pointer's.
    if (f.comp % align.input != 0 || f.out % align.output != 0) {
      throw Error(what + ": a zstd frame is not aligned as nvCOMP requires (" + std::to_string(align.input) + "/" +
                  std::to_string(align.output) + " bytes)");
    }
    comp_bytes[i] = f.size;
    out_bytes[i] = f.out_size;
    max_out = std::max<size_t>(max_out, f.out_size);
    total_out += f.out_size;
  }
  nvcomp_check(nvcompBatchedZstdDecompressGetTempSize(n, max_out, nvcompBatchedZstdDecompressDefaultOpts, &temp_bytes_,
                                                      total_out, nullptr),
               what, "nvcompBatchedZstdDecompressGetTempSize");
  d_frames_ = static_cast<ZstdFrameJob*>(alloc(n * sizeof(ZstdFrameJob)));
  d_comp_ptrs_ = static_cast<const void**>(alloc(n * sizeof(void*)));
  d_out_ptrs_ = static_cast<void**>(alloc(n * sizeof(void*)));
  d_comp_bytes_ = static_cast<size_t*>(alloc(n * sizeof(size_t)));
  d_out_bytes_ = static_cast<size_t*>(alloc(n * sizeof(size_t)));
  d_actual_bytes_ = static_cast<size_t*>(alloc(n * sizeof(size_t)));
  d_status_ = static_cast<int*>(alloc(n * sizeof(nvcompStatus_t)));
  d_temp_ = alloc(std::max<size_t>(temp_bytes_, 1) + align.temp);
  // Rounded up to nvCOMP's temp alignment inside the over-allocation.
  d_temp_ = reinterpret_cast<void*>(  // NOLINT(performance-no-int-to-ptr): an address rounded up, not made up
      (reinterpret_cast<uintptr_t>(d_temp_) + align.temp - 1) / align.temp * align.temp);
  CLLM_CUDA_CHECK(cudaMemcpy(d_frames_, frames_.data(), n * sizeof(ZstdFrameJob), cudaMemcpyHostToDevice));
  CLLM_CUDA_CHECK(cudaMemcpy(d_comp_bytes_, comp_bytes.data(), n * sizeof(size_t), cudaMemcpyHostToDevice));
  CLLM_CUDA_CHECK(cudaMemcpy(d_out_bytes_, out_bytes.data(), n * sizeof(size_t), cudaMemcpyHostToDevice));
}

void ZstdBatch::decode(const uint8_t* comp, uint8_t* scratch, cudaStream_t stream) const {
  if (frames_.empty()) return;
  const size_t n = frames_.size();
  launch_zstd_pointers(d_frames_, n, comp, scratch, d_comp_ptrs_, d_out_ptrs_, stream);
  nvcomp_check(nvcompBatchedZstdDecompressAsync(d_comp_ptrs_, d_comp_bytes_, d_out_bytes_, d_actual_bytes_, n, d_temp_,
                                                temp_bytes_, d_out_ptrs_, nvcompBatchedZstdDecompressDefaultOpts,
                                                reinterpret_cast<nvcompStatus_t*>(d_status_), stream),
               what_, "nvcompBatchedZstdDecompressAsync");
}

int64_t ZstdBatch::first_failure() const {
  const size_t n = frames_.size();
  if (n == 0) return -1;
  std::vector<nvcompStatus_t> status(n);
  std::vector<size_t> actual(n);
  CLLM_CUDA_CHECK(cudaMemcpy(status.data(), d_status_, n * sizeof(nvcompStatus_t), cudaMemcpyDeviceToHost));
  CLLM_CUDA_CHECK(cudaMemcpy(actual.data(), d_actual_bytes_, n * sizeof(size_t), cudaMemcpyDeviceToHost));
  for (size_t i = 0; i < n; ++i)
    if (status[i] != nvcompSuccess || actual[i] != frames_[i].out_size) return int64_t(i);
  return -1;
}

#else  // no nvCOMP in this build

bool have_nvcomp() { return false; }

ZstdBatch::ZstdBatch(std::vector<ZstdFrameJob> frames, const std::function<void*(uint64_t)>&, const std::string& what)
    : frames_(std::move(frames)), what_(what) {
  if (!frames_.empty()) {
    throw Error(what +
                ": zstd planes need nvCOMP to decode on the GPU, and this build has none. Install it "
                "(pip install nvidia-libnvcomp-cu13) and rebuild, or run this file on the CPU (--device cpu), or "
                "compress it with --codec rans");
  }
}
void ZstdBatch::decode(const uint8_t*, uint8_t*, cudaStream_t) const {}
int64_t ZstdBatch::first_failure() const { return -1; }

#endif

}  // namespace codecllm::cuda
