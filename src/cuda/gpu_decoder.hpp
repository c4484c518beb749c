// Batched GPU decoding of .cllm tensors: the host plans once (descriptors, packed rANS
// tables, block jobs, status words, scratch: all device memory allocated here and nowhere
// else), then each decode() is one or two kernel launches (and one per tensor whose exponents
// have class tables) on the caller's stream with no synchronization and no host-side
// decoding. check() is the one call that synchronizes.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "codecllm/span.hpp"
#include "cuda/decode_class.hpp"
#include "cuda/decode_desc.hpp"
#include "cuda/zstd_batch.hpp"
#include "format/container.hpp"

namespace codecllm::cuda {

struct DecoderOptions {
  Int8Out int8_output = Int8Out::Bf16;  // element type produced for int8-mode tensors
  // The caller passes the scratch (scratch_bytes()) to every decode, so that decoders whose
  // decodes never overlap share one buffer instead of each holding its own.
  bool external_scratch = false;
  // Lossless float32 tensors come out as bfloat16 (rounded to nearest even), for engines that
  // compute on bf16 weights; their output_bytes() is then 2 per element.
  bool f32_as_bf16 = false;
  // Lossless BF16 matrices with one-table exponents and a raw sign_mantissa plane
  // (exponents_only_eligible) decode to their exponent bytes alone, one byte per element:
  // a product then reads the sign and mantissa bytes from the resident compressed copy
  // (resident_sign_mantissa), so a decode writes half the bytes and its slot is half the size.
  bool bf16_exponents_only = false;
};

class GpuDecoder {
 public:
  // Plans the decode of the named tensors of `file` (at most kMaxTensorsPerLaunch). The
  // compressed input of every call is the file byte range [range_offset, +range_bytes) that
  // holds all of their planes, copied to the device by the caller or by decode_from_host.
  GpuDecoder(const format::ContainerReader& file, const std::vector<std::string>& names,
             const DecoderOptions& options = {});
  ~GpuDecoder();
  GpuDecoder(const GpuDecoder&) = delete;
  GpuDecoder& operator=(const GpuDecoder&) = delete;

  // Whether r can decode to its exponents alone (DecoderOptions::bf16_exponents_only).
  static bool exponents_only_eligible(const format::ContainerReader& file, const format::TensorRecord& r);

  size_t num_tensors() const { return records_.size(); }
  const format::TensorRecord& record(size_t i) const { return *records_[i]; }
  // Bytes decode() writes to outputs[i].
  uint64_t output_bytes(size_t i) const { return output_bytes_[i]; }
  uint64_t range_offset() const { return range_offset_; }
  uint64_t range_bytes() const { return range_bytes_; }
  ByteSpan host_range() const { return host_range_; }
  // Device memory owned by this decoder (descriptors, tables, scratch, staging, resident copy).
  uint64_t device_bytes() const { return device_bytes_; }
  // Device scratch a decode needs (int8 tensors with the LEFT predictor: their residuals).
  uint64_t scratch_bytes() const { return scratch_bytes_; }

  // Keeps a device copy of the compressed range (the "compressed in VRAM" placement).
  void upload_resident(cudaStream_t stream);
  const uint8_t* resident() const { return resident_; }
  // Whether tensor i decodes to its exponent bytes only, and then where its raw sign_mantissa
  // plane lies in the resident copy (after upload_resident; byte e of element e).
  bool exponents_only(size_t i) const { return sign_mantissa_[i] != kNoPlane; }
  const uint8_t* resident_sign_mantissa(size_t i) const;

  // Enqueues the decode of every tensor from a device copy of the range into outputs[i].
  // `scratch` is used with DecoderOptions::external_scratch (scratch_bytes() of device memory).
  void decode(const uint8_t* comp_device, void* const* outputs, cudaStream_t stream, uint8_t* scratch = nullptr);
  // At most `blocks` resident decode blocks on each SM from now on (0: as many as fit), so that
  // kernels on other streams (a model's products beside a decode ahead of them) find room on
  // every SM instead of waiting for decode blocks to retire. The rANS chunk kernels only.
  void set_blocks_per_sm(int blocks);

  // Enqueues an async copy of the range from host memory (pinned for overlap) into a
  // staging buffer allocated once, then the decode.
  void decode_from_host(const uint8_t* comp_host, void* const* outputs, cudaStream_t stream,
                        uint8_t* scratch = nullptr);
  // Frees the staging buffer of decode_from_host once the caller has waited for its decodes (a
  // decode at load, whose decoder stays around afterwards).
  void release_staging();
  // Batch-1 products straight from the compressed weights (decode_gemv_kernel.cu): whether
  // tensor i can take them. It must be a matrix of lossless BF16 weights (exponents coded with
  // one table, the usual layout) or of int8 values kept int8 (DecoderOptions::int8_output, no
  // predictor), its rows a multiple of 256 (int8: 512) long and no longer than a chunk, its
  // tables in shared memory; or a BF16 matrix with Exp4 exponents (exp4_kernel.cu), its rows
  // a multiple of 8 and at most kMaxExp4Cols long, fewer than 2^32 weights.
  bool gemv_ready(size_t i) const { return gemv_[i].ready; }
  // Enqueues y = W x for tensors first .. first + count - 1 (all gemv_ready), their rows one
  // after another in y: the same bits as the engine's GEMV kernel over the decoded weights.
  // x: 16-bit, F16 when x_f16 (int8 weights only), else BF16. out: y's form (F32, added to
  // y, or rounded to BF16). overlap: launched as a programmatic dependent of the stream's
  // previous kernel.
  void decode_gemv(const uint8_t* comp_device, size_t first, size_t count, const void* x, bool x_f16, void* y,
                   GemvOut out, cudaStream_t stream, bool overlap);
  // Products of 2 .. kSkinnyMaxBatch sequences straight from the compressed weights: whether
  // tensor i takes them (an Exp4 matrix of rows a multiple of 16, each a multiple of 64 long).
  bool gemm_ready(size_t i) const { return gemv_[i].gemm; }
  // Enqueues y[b] = W x[b] (+ y[b] when accumulate) for tensors first .. first + count - 1 (all
  // gemm_ready) and `batch` BF16 sequences x ([batch][cols]), their rows one after another in
  // each sequence's y (float, sequence b at y + b * ldy): the same bits as the engine's gemm
  // over the decoded weights.
  void decode_gemm(const uint8_t* comp_device, size_t first, size_t count, const void* x, int batch, float* y, int ldy,
                   bool accumulate, cudaStream_t stream, bool overlap);

  // Waits for the stream and reports the first corrupt chunk as a FormatError naming the file,
  // the tensor and the chunk. Clears the status for the next decode.
  void check(cudaStream_t stream);

 private:
  static constexpr uint64_t kNoPlane = ~uint64_t{0};
  static constexpr uint64_t kMaxExp4Cols = 16384;  // x staged in 32 KiB of shared memory
  void* device_alloc(uint64_t bytes);
  // The Exp4 tensors from i on (before end) that one product launch takes: rows of one length, up
  // to kMaxExp4PerGemv tensors, into e's shape fields; returns the first tensor after them.
  size_t exp4_launch(size_t i, size_t end, Exp4GemvArgs& e) const;

  std::string path_;
  std::vector<const format::TensorRecord*> records_;
  std::vector<uint64_t> output_bytes_;
  std::vector<TensorDesc> host_tensors_;
  std::vector<uint64_t> scratch_offset_;  // per tensor: where predictor residuals go, or ~0
  std::vector<uint64_t> sign_mantissa_;   // per tensor: exponents only: its raw plane's offset in the range, or ~0
  uint64_t range_offset_ = 0, range_bytes_ = 0, device_bytes_ = 0, scratch_bytes_ = 0;
  ByteSpan host_range_;
  struct Launch {
    int layout;
    uint32_t first_job, num_jobs;
  };
  std::vector<Launch> launches_;
  struct Gemv {  // per tensor, for decode_gemv (its shape and tables: host_tensors_)
    bool ready = false;
    int exp4 = -1;                         // Exp4 tensors: index in exp4_tensors_
    bool gemm = false;                     // Exp4 tensors: decode_gemm takes it
    bool packed = false;                   // which kernel instance reads its tables
    uint32_t first_job = 0, num_jobs = 0;  // in d_gemv_jobs_
  };
  std::vector<Gemv> gemv_;
  BlockJob* d_gemv_jobs_ = nullptr;
  size_t shared_bytes_ = 0;
  uint32_t max_blocks_ = 0;  // rANS chunk launches: at most this many blocks (0: one a job)
  std::vector<void*> allocations_;
  TensorDesc* d_tensors_ = nullptr;
  BlockJob* d_jobs_ = nullptr;
  uint32_t* d_tables_ = nullptr;
  uint32_t* d_status_ = nullptr;
  uint8_t* d_scratch_ = nullptr;
  uint8_t* staging_ = nullptr;
  uint8_t* resident_ = nullptr;
  // Tensors whose exponent plane has class tables (decode_class.hpp): one launch each, their
  // tables in d_tables_.
  std::vector<ClassTensorDesc> class_tensors_;
  // Tensors with zstd planes: nvCOMP decodes those planes into the scratch (one batch for the
  // decoder), then assemble_planes reads each plane from the scratch or, raw, from the range.
  struct ZstdTensor {
    size_t tensor = 0;
    PlaneAssembly assembly{};
    bool in_scratch[kMaxPlanes] = {};
    uint64_t offset[kMaxPlanes] = {};  // in the scratch or in the range
    uint64_t scales = kNoPlane;        // int8: offset of the f32 scales in the range
    size_t first_frame = 0, num_frames = 0;
  };
  std::vector<ZstdTensor> zstd_tensors_;
  // Tensors with an Exp4 exponent plane: decoded or multiplied by their own kernels
  // (exp4_kernel.cu), their descriptors also in device memory for the products.
  std::vector<Exp4Desc> exp4_tensors_;
  Exp4Desc* d_exp4_ = nullptr;
  std::unique_ptr<ZstdBatch> zstd_;
};

}  // namespace codecllm::cuda
