// nvCOMP's codecs next to codecllm's on the same tensors: ratio and GPU decode GB/s.
//
//     nvcomp_bench FILE.cllm [repeats]
//
// The tensors of FILE (decoded on the CPU by the reference decoder, so every codec sees the
// same bytes) are laid end to end in device memory and cut into 64 KiB chunks, nvCOMP's
// recommended size. Each nvCOMP codec compresses them on the GPU, then decodes them `repeats`
// times (best kept); codecllm's rANS (or zstd) decodes the file's own coding of the same
// tensors in one GpuDecoder launch per group of 64 tensors; a device-to-device copy of the
// decoded bytes is the reference. Then the same with one launch per decoder layer (one
// GpuDecoder, or one batched nvCOMP call, a layer), the layers one after another: the unit the
// engine decodes. Decoded output is checked against the source for every row.
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
#include "model/compress.hpp"

namespace cllm = codecllm;

namespace {

constexpr size_t kChunk = size_t{64} * 1024;

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

void header(const char* title) {
  std::printf("-- %s\n%-32s %8s %10s %10s %9s\n", title, "coding", "bits/w", "decode us", "GB/s out", "of copy");
}

// Tensors decoded in one launch: the whole file, or one decoder layer (the engine's unit).
struct Group {
  std::string layer;  // model::layer_of its tensors
  std::vector<std::string> names;
  uint64_t offset = 0, bytes = 0;      // where their decoded bytes lie, end to end
  size_t first_chunk = 0, chunks = 0;  // their 64 KiB pieces for nvCOMP
};

int run(const std::string& path, int repeats) {
  cllm::format::ContainerReader file(path);
  std::vector<uint8_t> source;  // every tensor's decoded bytes, end to end
  uint64_t elements = 0, stored = 0;
  std::vector<std::string> names;
  std::vector<Group> layers;  // consecutive tensors of one decoder layer
  for (const auto& t : file.index().tensors) {
    if (t.mode != cllm::format::TensorMode::Lossless) throw cllm::Error(path + ": compare lossless files");
    const auto d = cllm::codec::decode_tensor(
        t, [&](const auto& p) { return file.payload(p); }, path);
    const std::string layer = cllm::model::layer_of(t.name);
    if (!layer.empty()) {
      if (layers.empty() || layers.back().layer != layer) layers.push_back({layer, {}, source.size(), 0, 0, 0});
      layers.back().names.push_back(t.name);
      layers.back().bytes += d.bytes.size();
    }
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
  std::printf("%s: %zu tensors, %.2f GiB decoded, %zu decoder layers; device-to-device copy %.0f GB/s (read + write)\n",
              path.c_str(), names.size(), double(total) / (1u << 30), layers.size(), copy_gbps);
  // The decoded bytes, read back; dst is cleared for the next codec.
  auto read_back = [&] {
    std::vector<uint8_t> back(total);
    CLLM_CUDA_CHECK(cudaMemcpy(back.data(), dst.p, total, cudaMemcpyDeviceToHost));
    CLLM_CUDA_CHECK(cudaMemset(dst.p, 0, total));
    return back;
  };
  auto exact = [&] { return read_back() == source; };
  // Only the layers' bytes are written by the per-layer launches: compare those.
  auto layers_exact = [&] {
    const std::vector<uint8_t> back = read_back();
    for (const Group& g : layers) {
      if (!std::equal(back.begin() + long(g.offset), back.begin() + long(g.offset + g.bytes),
                      source.begin() + long(g.offset))) {
        return false;
      }
    }
    return true;
  };
  uint64_t layer_bytes = 0, layer_elements = 0, layer_stored = 0;
  for (const Group& g : layers) layer_bytes += g.bytes;

  // codecllm: the file's own coding, all resident; the whole file in launches of up to
  // kMaxTensorsPerLaunch tensors, then one launch per layer.
  struct Launch {
    std::unique_ptr<cllm::cuda::GpuDecoder> decoder;
    std::vector<void*> outs;
    std::unique_ptr<Device> scratch;
  };
  auto plan = [&](const std::vector<std::string>& group, uint64_t at) {
    Launch l{std::make_unique<cllm::cuda::GpuDecoder>(file, group), {}, nullptr};
    l.decoder->upload_resident(nullptr);
    for (size_t i = 0; i < group.size(); ++i) {
      l.outs.push_back(dst.as<uint8_t>() + at);
      at += l.decoder->output_bytes(i);
    }
    l.scratch = std::make_unique<Device>(l.decoder->scratch_bytes());
    return l;
  };
  auto time_launches = [&](std::vector<Launch>& launches) {
    const double s = best_seconds(repeats, [&] {
      for (Launch& l : launches)
        l.decoder->decode(l.decoder->resident(), l.outs.data(), nullptr, l.scratch->as<uint8_t>());
    });
    for (Launch& l : launches) l.decoder->check(nullptr);
    return s;
  };
  std::vector<Launch> whole, per_layer;
  uint64_t at = 0;
  for (size_t first = 0; first < names.size(); first += cllm::cuda::kMaxTensorsPerLaunch) {
    std::vector<std::string> group(
        names.begin() + long(first),
        names.begin() + long(std::min(names.size(), first + cllm::cuda::kMaxTensorsPerLaunch)));
    whole.push_back(plan(group, at));
    for (size_t i = 0; i < group.size(); ++i) at += whole.back().decoder->output_bytes(i);
  }
  for (const Group& g : layers) {
    per_layer.push_back(plan(g.names, g.offset));
    layer_stored += per_layer.back().decoder->range_bytes();
    for (const std::string& n : g.names) layer_elements += file.index().find_tensor(n)->num_elements();
  }
  header("the whole file, launches of up to 64 tensors");
  const double ours = time_launches(whole);
  row("codecllm (the file's coding)", 8.0 * double(stored) / double(elements), ours, total, copy_gbps, exact());
  double ours_layers = 0;
  if (!layers.empty()) ours_layers = time_launches(per_layer);
  const bool ours_layers_exact = layers.empty() || layers_exact();
  whole.clear();
  per_layer.clear();

  // nvCOMP: the same bytes in 64 KiB chunks, each layer's cut on its own (so that a layer is a
  // run of whole chunks), the rest of the file after them.
  std::vector<const void*> in_ptrs;
  std::vector<void*> out_ptrs;
  std::vector<size_t> in_bytes;
  auto cut = [&](uint64_t offset, uint64_t bytes) {
    for (uint64_t o = 0; o < bytes; o += kChunk) {
      in_ptrs.push_back(src->as<uint8_t>() + offset + o);
      out_ptrs.push_back(dst.as<uint8_t>() + offset + o);
      in_bytes.push_back(std::min<uint64_t>(kChunk, bytes - o));
    }
  };
  uint64_t covered = 0;
  for (Group& g : layers) {
    if (g.offset > covered) cut(covered, g.offset - covered);
    g.first_chunk = in_ptrs.size();
    cut(g.offset, g.bytes);
    g.chunks = in_ptrs.size() - g.first_chunk;
    covered = g.offset + g.bytes;
  }
  if (total > covered) cut(covered, total - covered);
  const size_t n = in_ptrs.size();
  auto d_in_ptrs = upload(in_ptrs), d_out_ptrs = upload(out_ptrs), d_in_bytes = upload(in_bytes);
  Device d_status(n * sizeof(nvcompStatus_t)), d_comp_bytes(n * sizeof(size_t)), d_actual(n * sizeof(size_t));
  struct Measured {
    std::string name;
    double bits_all, bits_layers, whole_s, layers_s;
    bool whole_exact, layers_exact;
  };
  std::vector<Measured> measured;
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
    uint64_t compressed = 0, compressed_layers = 0;
    for (size_t s : sizes) compressed += s;
    for (const Group& g : layers)
      for (size_t i = g.first_chunk; i < g.first_chunk + g.chunks; ++i) compressed_layers += sizes[i];
    c.decompress_temp(n, kChunk, &dtemp, total);
    Device dt(dtemp);
    // Chunks [first, first + count) in one batched call.
    auto decode = [&](size_t first, size_t count) {
      c.decompress(d_comp_ptrs->as<const void* const>() + first, d_comp_bytes.as<size_t>() + first,
                   d_in_bytes->as<size_t>() + first, d_actual.as<size_t>() + first, count, dt.p, dtemp,
                   d_out_ptrs->as<void* const>() + first, d_status.as<nvcompStatus_t>() + first);
    };
    Measured m{c.name, 8.0 * double(compressed) / double(elements), 0, 0, 0, false, true};
    m.whole_s = best_seconds(repeats, [&] { decode(0, n); });
    m.whole_exact = exact();
    row(c.name.c_str(), m.bits_all, m.whole_s, total, copy_gbps, m.whole_exact);
    if (!layers.empty()) {
      m.bits_layers = 8.0 * double(compressed_layers) / double(layer_elements);
      m.layers_s = best_seconds(repeats, [&] {
        for (const Group& g : layers) decode(g.first_chunk, g.chunks);
      });
      m.layers_exact = layers_exact();
    }
    measured.push_back(m);
  }
  if (!layers.empty()) {
    header("one launch per decoder layer, the layers one after another (what the engine decodes at a time)");
    row("codecllm (the file's coding)", 8.0 * double(layer_stored) / double(layer_elements), ours_layers, layer_bytes,
        copy_gbps, ours_layers_exact);
    for (const Measured& m : measured)
      row(m.name.c_str(), m.bits_layers, m.layers_s, layer_bytes, copy_gbps, m.layers_exact);
    for (const Measured& m : measured) {
      if (m.name == "nvCOMP ANS <f2") {
        std::printf("codecllm per layer: %.2fx nvCOMP ANS <f2's decode rate, at %.1f%% of its size\n",
                    m.layers_s / ours_layers,
                    100.0 * double(layer_stored) / (m.bits_layers * double(layer_elements) / 8));
      }
    }
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
