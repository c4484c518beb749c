#include "cuda/zstd_batch.hpp"

#include <algorithm>

#include "codecllm/bytes.hpp"
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

namespace {
nvcompAlignmentRequirements_t alignments(const std::string& what) {
  nvcompAlignmentRequirements_t align{};
  nvcomp_check(nvcompBatchedZstdDecompressGetRequiredAlignments(nvcompBatchedZstdDecompressDefaultOpts, &align), what,
               "nvcompBatchedZstdDecompressGetRequiredAlignments");
  return align;
}
}  // namespace

uint64_t ZstdBatch::temp_bytes(const std::vector<ZstdFrameJob>& frames, const std::string& what) {
  if (frames.empty()) return 0;
  size_t max_out = 0, total_out = 0, temp = 0;
  for (const ZstdFrameJob& f : frames) {
    max_out = std::max<size_t>(max_out, f.out_size);
    total_out += f.out_size;
  }
  nvcomp_check(nvcompBatchedZstdDecompressGetTempSize(frames.size(), max_out, nvcompBatchedZstdDecompressDefaultOpts,
                                                      &temp, total_out, nullptr),
               what, "nvcompBatchedZstdDecompressGetTempSize");
  return temp + alignments(what).temp;
}

ZstdBatch::ZstdBatch(std::vector<ZstdFrameJob> frames, uint64_t temp_offset,
                     const std::function<void*(uint64_t)>& alloc, const std::string& what)
    : frames_(std::move(frames)), what_(what), temp_offset_(temp_offset) {
  if (frames_.empty()) return;
  const size_t n = frames_.size();
  const nvcompAlignmentRequirements_t align = alignments(what);
  temp_bytes_ = temp_bytes(frames_, what) - align.temp;
  temp_align_ = align.temp;
  std::vector<size_t> comp_bytes(n), out_bytes(n);
  for (size_t i = 0; i < n; ++i) {
    const ZstdFrameJob& f = frames_[i];
    // The range and the scratch start 256-byte aligned in device memory (cudaMalloc; the range
    // 16: GpuDecoder::decode checks it), so an offset's alignment is the pointer's.
    if (f.comp % align.input != 0 || f.out % align.output != 0 || align.input > 16 || align.output > 256) {
      throw Error(what + ": a zstd frame is not aligned as nvCOMP requires (" + std::to_string(align.input) + "/" +
                  std::to_string(align.output) + " bytes)");
    }
    comp_bytes[i] = f.size;
    out_bytes[i] = f.out_size;
  }
  d_frames_ = static_cast<ZstdFrameJob*>(alloc(n * sizeof(ZstdFrameJob)));
  d_comp_ptrs_ = static_cast<const void**>(alloc(n * sizeof(void*)));
  d_out_ptrs_ = static_cast<void**>(alloc(n * sizeof(void*)));
  d_comp_bytes_ = static_cast<size_t*>(alloc(n * sizeof(size_t)));
  d_out_bytes_ = static_cast<size_t*>(alloc(n * sizeof(size_t)));
  d_actual_bytes_ = static_cast<size_t*>(alloc(n * sizeof(size_t)));
  d_status_ = static_cast<int*>(alloc(n * sizeof(nvcompStatus_t)));
  CLLM_CUDA_CHECK(cudaMemcpy(d_frames_, frames_.data(), n * sizeof(ZstdFrameJob), cudaMemcpyHostToDevice));
  CLLM_CUDA_CHECK(cudaMemcpy(d_comp_bytes_, comp_bytes.data(), n * sizeof(size_t), cudaMemcpyHostToDevice));
  CLLM_CUDA_CHECK(cudaMemcpy(d_out_bytes_, out_bytes.data(), n * sizeof(size_t), cudaMemcpyHostToDevice));
}

void ZstdBatch::decode(const uint8_t* comp, uint8_t* scratch, cudaStream_t stream) const {
  if (frames_.empty()) return;
  const size_t n = frames_.size();
  launch_zstd_pointers(d_frames_, n, comp, scratch, d_comp_ptrs_, d_out_ptrs_, stream);
  // The temporary buffer: at temp_offset in the scratch, rounded up to nvCOMP's alignment.
  const uint64_t at = align_up(reinterpret_cast<uintptr_t>(scratch + temp_offset_), temp_align_);
  void* temp = scratch + (at - reinterpret_cast<uintptr_t>(scratch));
  nvcomp_check(nvcompBatchedZstdDecompressAsync(d_comp_ptrs_, d_comp_bytes_, d_out_bytes_, d_actual_bytes_, n, temp,
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

uint64_t ZstdBatch::temp_bytes(const std::vector<ZstdFrameJob>&, const std::string&) { return 0; }

ZstdBatch::ZstdBatch(std::vector<ZstdFrameJob> frames, uint64_t, const std::function<void*(uint64_t)>&,
                     const std::string& what)
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
