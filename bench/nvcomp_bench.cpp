// nvCOMP's codecs next to codecllm's on the same tensors: ratio and GPU decode GB/s.
//
//     nvcomp_bench FILE.cllm [repeats]
//
// The tensors of FILE (decoded on the CPU by the reference decoder, so every codec sees the
// same bytes) are laid end to end in device memory and cut into 64 KiB chunks, nvCOMP's
// recommended size. Each nvCOMP codec compresses them on the GPU, then decodes them `repeats`
// times (best kept); codecllm's rANS (or zstd) decodes the file's own coding of the same
// tensors in one GpuDecoder launch per group of 64 tensors; a device-to-device copy of the
// decoded bytes is the reference. Decoded output is checked against the source for every row.
#include <cuda_runtime.h>
#include <nvcomp/ans.h>
#include <nvcomp/bitcomp.h>
#include <nvcomp/gdeflate.h>
#include <nvcomp/lz4.h>
#include <nvcomp/zstd.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "codec/tensor_codec.hpp"
#include "codecllm/error.hpp"
#include "cuda/cuda_check.hpp"
#include "cuda/gpu_decoder.hpp"
#include "format/container.hpp"

namespace cllm = codecllm;

namespace {

constexpr size_t kChunk = 64 * 1024;

void nv_check(nvcompStatus_t s, const char* call) {
  if (s != nvcompSuccess) throw cllm::Error(std::string(call) + " failed: nvCOMP status " + std::to_string(int(s)));
}

struct Device {  // one cudaMalloc, freed with it
  void* p = nullptr;
  explicit Device(size_t n) { CLLM_CUDA_CHECK(cudaMalloc(&p, std::max<size_t>(n, 1))); }
  ~Device() { cudaFree(p); }
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;
  template <typename T>
  T* as() const {
    return static_cast<T*>(p);
  }
};

template <typename T>
std::unique_ptr<Device> upload(const std::vector<T>& v) {
  auto d = std::make_unique<Device>(v.size() * sizeof(T));
  CLLM_CUDA_CHECK(cudaMemcpy(d->p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
  return d;
}

// The best time of `repeats` runs of enqueue() on the default stream, in seconds.
double best_seconds(int repeats, const std::function<void()>& enqueue) {
  cudaEvent_t a, b;
  CLLM_CUDA_CHECK(cudaEventCreate(&a));
  CLLM_CUDA_CHECK(cudaEventCreate(&b));
  float best = 1e30f;
  for (int r = 0; r < repeats; ++r) {
    CLLM_CUDA_CHECK(cudaEventRecord(a));
    enqueue();
    CLLM_CUDA_CHECK(cudaEventRecord(b));
    CLLM_CUDA_CHECK(cudaEventSynchronize(b));
    float ms = 0;
    CLLM_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
    best = std::min(best, ms);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return best * 1e-3;
}

// One nvCOMP codec's batched calls, all with the same signatures.
struct Codec {
  std::string name;
  std::function<void(size_t, size_t, size_t*, size_t)> compress_temp;  // chunks, max chunk, out, total
  std::function<void(size_t, size_t*)> max_output;
  std::function<void(const void* const*, const size_t*, size_t, size_t, void*, size_t, void* const*, size_t*,
                     nvcompStatus_t*)>
      compress;
  std::function<void(size_t, size_t, size_t*, size_t)> decompress_temp;
  std::function<void(const void* const*, const size_t*, const size_t*, size_t*, size_t, void*, size_t, void* const*,
                     nvcompStatus_t*)>
      decompress;
};

#define NVCOMP_CODEC(label, Name, copts, dopts)                                                                       \
  Codec {                                                                                                             \
    label,                                                                                                            \
        [=](size_t n, size_t mx, size_t* t, size_t total) {                                                           \
          nv_check(nvcompBatched##Name##CompressGetTempSize(n, mx, copts, t, total, nullptr), #Name " temp");         \
        },                                                                                                            \
        [=](size_t mx, size_t* out) {                                                                                 \
          nv_check(nvcompBatched##Name##CompressGetMaxOutputChunkSize(mx, copts, out), #Name " max output");          \
        },                                                                                                            \
        [=](const void* const* in, const size_t* in_bytes, size_t mx, size_t n, void* temp, size_t temp_bytes,        \
            void* const* out, size_t* out_bytes, nvcompStatus_t* st) {                                                \
          nv_check(nvcompBatched##Name##CompressAsync(in, in_bytes, mx, n, temp, temp_bytes, out, out_bytes, copts,   \
                                                      st, nullptr),                                                   \
                   #Name " compress");                                                                                \
        },                                                                                                            \
        [=](size_t n, size_t mx, size_t* t, size_t total) {                                                           \
          nv_check(nvcompBatched##Name##DecompressGetTempSize(n, mx, dopts, t, total, nullptr), #Name " dtemp");      \
        },                                                                                                            \
        [=](const void* const* in, const size_t* in_bytes, const size_t* buf_bytes, size_t* out_bytes, size_t n,      \
            void* temp, size_t temp_bytes, void* const* out, nvcompStatus_t* st) {                                    \
          nv_check(nvcompBatched##Name##DecompressAsync(in, in_bytes, buf_bytes, out_bytes, n, temp, temp_bytes, out, \
                                                        dopts, st, nullptr),                                          \
                   #Name " decompress");                                                                              \
        }                                                                                                             \
  }

std::vector<Codec> codecs() {
  nvcompBatchedANSCompressOpts_t ans_f2 = nvcompBatchedANSCompressDefaultOpts, ans_u8 = ans_f2;
  ans_f2.data_type = NVCOMP_TYPE_FLOAT16;
  ans_u8.data_type = NVCOMP_TYPE_UCHAR;
  nvcompBatchedBitcompCompressOpts_t bitcomp = nvcompBatchedBitcompCompressDefaultOpts;
  bitcomp.data_type = NVCOMP_TYPE_FLOAT16;
  nvcompBatchedGdeflateCompressOpts_t gdeflate = nvcompBatchedGdeflateCompressDefaultOpts;
  gdeflate.algorithm = 0;  // entropy only
  const auto ans_d = nvcompBatchedANSDecompressDefaultOpts;
  return {
      NVCOMP_CODEC("nvCOMP ANS <f2", ANS, ans_f2, ans_d),
      NVCOMP_CODEC("nvCOMP ANS bytes", ANS, ans_u8, ans_d),
      NVCOMP_CODEC("nvCOMP Zstd", Zstd, nvcompBatchedZstdCompressDefaultOpts, nvcompBatchedZstdDecompressDefaultOpts),
      NVCOMP_CODEC("nvCOMP Bitcomp <f2", Bitcomp, bitcomp, nvcompBatchedBitcompDecompressDefaultOpts),
      NVCOMP_CODEC("nvCOMP GDeflate (entropy only)", Gdeflate, gdeflate, nvcompBatchedGdeflateDecompressDefaultOpts),
      NVCOMP_CODEC("nvCOMP LZ4", LZ4, nvcompBatchedLZ4CompressDefaultOpts, nvcompBatchedLZ4DecompressDefaultOpts)};
}

void row(const char* name, double bits, double seconds, uint64_t out_bytes, double copy_gbps, bool exact) {
  const double gbps = double(out_bytes) / seconds / 1e9;
  std::printf("%-32s %8.3f %10.1f %10.0f %8.1f%% %s\n", name, bits, seconds * 1e6, gbps,
              100.0 * 2 * double(out_bytes) / seconds / 1e9 / copy_gbps, exact ? "exact" : "MISMATCH");
}

int run(const std::string& path, int repeats) {
  cllm::format::ContainerReader file(path);
  std::vector<uint8_t> source;  // every tensor's decoded bytes, end to end
  uint64_t elements = 0, stored = 0;
  std::vector<std::string> names;
  for (const auto& t : file.index().tensors) {
    if (t.mode != cllm::format::TensorMode::Lossless) throw cllm::Error(path + ": compare lossless files");
    const auto d = cllm::codec::decode_tensor(
        t, [&](const auto& p) { return file.payload(p); }, path);
    source.insert(source.end(), d.bytes.begin(), d.bytes.end());
    elements += t.num_elements();
    for (const auto& p : t.planes) stored += p.size;
    names.push_back(t.name);
  }
  const uint64_t total = source.size();
  auto src = upload(source);
  Device dst(total);
  // The reference: a device-to-device copy of the decoded bytes, read + write.
  const double copy_s =
      best_seconds(repeats, [&] { CLLM_CUDA_CHECK(cudaMemcpyAsync(dst.p, src->p, total, cudaMemcpyDeviceToDevice)); });
  const double copy_gbps = 2.0 * double(total) / copy_s / 1e9;
  std::printf("%s: %zu tensors, %.2f GiB decoded; device-to-device copy %.0f GB/s (read + write)\n", path.c_str(),
              names.size(), double(total) / (1u << 30), copy_gbps);
  std::printf("%-32s %8s %10s %10s %9s\n", "coding", "bits/w", "decode us", "GB/s out", "of copy");
  auto exact = [&] {
    std::vector<uint8_t> back(total);
    CLLM_CUDA_CHECK(cudaMemcpy(back.data(), dst.p, total, cudaMemcpyDeviceToHost));
    CLLM_CUDA_CHECK(cudaMemset(dst.p, 0, total));
    return back == source;
  };

  // codecllm: the file's own coding, one GpuDecoder per group of tensors, all resident.
  std::vector<std::unique_ptr<cllm::cuda::GpuDecoder>> decoders;
  std::vector<std::vector<void*>> outs;
  uint64_t at = 0;
  for (size_t first = 0; first < names.size(); first += cllm::cuda::kMaxTensorsPerLaunch) {
    std::vector<std::string> group(
        names.begin() + long(first),
        names.begin() + long(std::min(names.size(), first + cllm::cuda::kMaxTensorsPerLaunch)));
    decoders.push_back(std::make_unique<cllm::cuda::GpuDecoder>(file, group));
    decoders.back()->upload_resident(nullptr);
    outs.emplace_back();
    for (size_t i = 0; i < group.size(); ++i) {
      outs.back().push_back(dst.as<uint8_t>() + at);
      at += decoders.back()->output_bytes(i);
    }
  }
  std::vector<std::unique_ptr<Device>> scratch;
  for (const auto& d : decoders) scratch.push_back(std::make_unique<Device>(d->scratch_bytes()));
  const double ours = best_seconds(repeats, [&] {
    for (size_t k = 0; k < decoders.size(); ++k)
      decoders[k]->decode(decoders[k]->resident(), outs[k].data(), nullptr, scratch[k]->as<uint8_t>());
  });
  for (const auto& d : decoders) d->check(nullptr);
  row("codecllm (the file's coding)", 8.0 * double(stored) / double(elements), ours, total, copy_gbps, exact());

  // nvCOMP: the same bytes in 64 KiB chunks.
  const size_t n = (total + kChunk - 1) / kChunk;
  std::vector<const void*> in_ptrs(n);
  std::vector<void*> out_ptrs(n);
  std::vector<size_t> in_bytes(n);
  for (size_t i = 0; i < n; ++i) {
    in_ptrs[i] = src->as<uint8_t>() + i * kChunk;
    out_ptrs[i] = dst.as<uint8_t>() + i * kChunk;
    in_bytes[i] = std::min(kChunk, total - i * kChunk);
  }
  auto d_in_ptrs = upload(in_ptrs), d_out_ptrs = upload(out_ptrs), d_in_bytes = upload(in_bytes);
  Device d_status(n * sizeof(nvcompStatus_t)), d_comp_bytes(n * sizeof(size_t)), d_actual(n * sizeof(size_t));
  for (const Codec& c : codecs()) {
    size_t max_out = 0, temp = 0, dtemp = 0;
    c.max_output(kChunk, &max_out);
    c.compress_temp(n, kChunk, &temp, total);
    Device comp(n * max_out), ctemp(temp);
    std::vector<void*> comp_ptrs(n);
    for (size_t i = 0; i < n; ++i) comp_ptrs[i] = comp.as<uint8_t>() + i * max_out;
    auto d_comp_ptrs = upload(comp_ptrs);
    c.compress(d_in_ptrs->as<const void* const>(), d_in_bytes->as<size_t>(), kChunk, n, ctemp.p, temp,
               d_comp_ptrs->as<void* const>(), d_comp_bytes.as<size_t>(), d_status.as<nvcompStatus_t>());
    std::vector<size_t> sizes(n);
    CLLM_CUDA_CHECK(cudaMemcpy(sizes.data(), d_comp_bytes.p, n * sizeof(size_t), cudaMemcpyDeviceToHost));
    uint64_t compressed = 0;
    for (size_t s : sizes) compressed += s;
    c.decompress_temp(n, kChunk, &dtemp, total);
    Device dt(dtemp);
    const double s = best_seconds(repeats, [&] {
      c.decompress(d_comp_ptrs->as<const void* const>(), d_comp_bytes.as<size_t>(), d_in_bytes->as<size_t>(),
                   d_actual.as<size_t>(), n, dt.p, dtemp, d_out_ptrs->as<void* const>(), d_status.as<nvcompStatus_t>());
    });
    row(c.name.c_str(), 8.0 * double(compressed) / double(elements), s, total, copy_gbps, exact());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s FILE.cllm [repeats]\n", argv[0]);
    return 2;
  }
  try {
    return run(argv[1], argc > 2 ? std::stoi(argv[2]) : 5);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "nvcomp_bench: %s\n", e.what());
    return 1;
  }
}
