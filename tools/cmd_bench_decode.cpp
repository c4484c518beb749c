// bench-decode: GPU decode throughput per tensor class, per layer and for the whole model,
// each next to a device-to-device copy of the same bytes measured in the same run.
#include <cuda_runtime.h>

#include <algorithm>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>

#include "codecllm/bytes.hpp"
#include "codecllm/error.hpp"
#include "commands.hpp"
#include "cuda/cuda_check.hpp"
#include "cuda/gpu_decoder.hpp"
#include "model/compress.hpp"
#include "model/synthetic.hpp"
#include "table.hpp"

namespace codecllm::tools {

namespace {

// Median time of `iters` runs of fn on the default stream, timed with events.
template <typename Fn>
double median_ms(int iters, Fn&& fn) {
  cudaEvent_t a, b;
  CLLM_CUDA_CHECK(cudaEventCreate(&a));
  CLLM_CUDA_CHECK(cudaEventCreate(&b));
  fn();  // warm-up
  fn();
  std::vector<double> t;
  for (int i = 0; i < iters; ++i) {
    CLLM_CUDA_CHECK(cudaEventRecord(a));
    fn();
    CLLM_CUDA_CHECK(cudaEventRecord(b));
    CLLM_CUDA_CHECK(cudaEventSynchronize(b));
    float ms = 0;
    CLLM_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

struct Result {
  std::string name;
  size_t tensors = 0;
  uint64_t compressed = 0, output = 0;
  double decode_ms = 0, copy_ms = 0;
  double c() const { return static_cast<double>(compressed); }
  double o() const { return static_cast<double>(output); }
  nlohmann::json json() const {
    return {{"name", name},
            {"tensors", tensors},
            {"compressed_bytes", compressed},
            {"output_bytes", output},
            {"decode_ms", decode_ms},
            {"copy_ms", copy_ms},
            {"output_gbps", o() / decode_ms / 1e6},
            {"traffic_gbps", (c() + o()) / decode_ms / 1e6},
            {"copy_gbps", 2.0 * o() / copy_ms / 1e6},
            {"roofline_fraction", ((c() + o()) / decode_ms) / (2.0 * o() / copy_ms)}};
  }
  std::vector<std::string> row() const {
    const double traffic = (c() + o()) / decode_ms / 1e6, copy = 2.0 * o() / copy_ms / 1e6;
    return {name,
            std::to_string(tensors),
            human_bytes(o()),
            fixed(decode_ms * 1000, 1),
            fixed(o() / decode_ms / 1e6, 0),
            fixed(traffic, 0),
            fixed(copy, 0),
            fixed(100 * traffic / copy, 1) + "%"};
  }
};

// Decodes `names` in one launch from a resident copy, and copies the same output bytes D2D.
Result bench_group(const format::ContainerReader& file, const std::string& label, const std::vector<std::string>& names,
                   cuda::Int8Out int8_out, int iters) {
  cuda::DecoderOptions o;
  o.int8_output = int8_out;
  cuda::GpuDecoder dec(file, names, o);
  dec.upload_resident(nullptr);
  std::vector<void*> outs;
  uint64_t total = 0;
  for (size_t i = 0; i < names.size(); ++i) total += dec.output_bytes(i);
  void* out = nullptr;
  void* copy = nullptr;
  CLLM_CUDA_CHECK(cudaMalloc(&out, total + 256 * names.size()));
  CLLM_CUDA_CHECK(cudaMalloc(&copy, total + 1));
  uint64_t at = 0;
  for (size_t i = 0; i < names.size(); ++i) {
    outs.push_back(static_cast<uint8_t*>(out) + at);
    at += align_up(dec.output_bytes(i), 256);
  }
  Result r;
  r.name = label;
  r.tensors = names.size();
  r.compressed = dec.range_bytes();
  r.output = total;
  r.decode_ms = median_ms(iters, [&] { dec.decode(dec.resident(), outs.data(), nullptr); });
  dec.check(nullptr);
  r.copy_ms = median_ms(iters, [&] { CLLM_CUDA_CHECK(cudaMemcpyAsync(copy, out, total, cudaMemcpyDeviceToDevice)); });
  cudaFree(out);
  cudaFree(copy);
  return r;
}

std::string make_synthetic(const std::string& dir, bool int8, uint32_t chunk_symbols) {
  model::MemoryCheckpoint ckpt("synthetic:bench-decode", "{}");
  ckpt.add("mlp.up_proj.weight", DType::BF16, {14336, 4096}, model::random_bf16(14336ull * 4096, 0.02, 1));
  ckpt.add("mlp.down_proj.weight", DType::BF16, {4096, 14336}, model::random_bf16(14336ull * 4096, 0.02, 2));
  model::CompressOptions o;
  o.encode.mode = int8 ? format::TensorMode::Int8 : format::TensorMode::Lossless;
  o.encode.rans.chunk_symbols = chunk_symbols;
  const std::string path = dir + (int8 ? "/synthetic-int8.cllm" : "/synthetic-lossless.cllm");
  model::compress_checkpoint(ckpt, path, o);
  return path;
}

}  // namespace

Command add_bench_decode(CLI::App& app) {
  struct Args {
    std::string file, workdir = "/tmp", int8_out = "bf16";
    bool synthetic = false, json = false;
    int iters = 20;
    uint32_t chunk_symbols = codec::kDefaultChunkSymbols;
  };
  auto a = std::make_shared<Args>();
  app.add_option("FILE", a->file, ".cllm file (omit with --synthetic)");
  app.add_flag("--synthetic", a->synthetic,
               "Benchmark 14336x4096 and 4096x14336 BF16 tensors (N(0, 0.02^2), 0.1% outliers x20), lossless and int8");
  app.add_option("--workdir", a->workdir, "Where --synthetic writes its .cllm files");
  app.add_option("--chunk-symbols", a->chunk_symbols, "rANS chunk size for --synthetic");
  app.add_option("--int8-output", a->int8_out, "Element type for int8 tensors")
      ->check(CLI::IsMember({"bf16", "f16", "int8"}));
  app.add_option("--iters", a->iters, "Timed runs per measurement (median reported)");
  app.add_flag("--json", a->json, "Print results as JSON");
  return [a] {
    if (a->file.empty() && !a->synthetic) throw Error("bench-decode: give a .cllm FILE or --synthetic");
    const cuda::Int8Out int8_out = a->int8_out == "int8"  ? cuda::Int8Out::Int8
                                   : a->int8_out == "f16" ? cuda::Int8Out::F16
                                                          : cuda::Int8Out::Bf16;
    cudaDeviceProp prop{};
    CLLM_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    std::vector<Result> results;
    std::vector<std::string> files;
    if (a->synthetic) {
      files.push_back(make_synthetic(a->workdir, false, a->chunk_symbols));
      files.push_back(make_synthetic(a->workdir, true, a->chunk_symbols));
    } else {
      files.push_back(a->file);
    }
    for (const auto& path : files) {
      format::ContainerReader file(path);
      const std::string tag = a->synthetic ? (path.find("int8") != std::string::npos ? "int8 " : "lossless ") : "";
      std::map<std::string, std::vector<std::string>> classes, layers;
      std::vector<std::string> all;
      for (const auto& t : file.index().tensors) {
        classes[model::tensor_group(t.name)].push_back(t.name);
        if (const std::string layer = model::layer_of(t.name); !layer.empty()) layers[layer].push_back(t.name);
        all.push_back(t.name);
      }
      for (const auto& [name, names] : classes)
        for (size_t i = 0; i < names.size(); i += cuda::kMaxTensorsPerLaunch) {
          std::vector<std::string> part(names.begin() + long(i),
                                        names.begin() + long(std::min(names.size(), i + cuda::kMaxTensorsPerLaunch)));
          results.push_back(bench_group(file, tag + name, part, int8_out, a->iters));
        }
      if (!layers.empty()) {
        Result sum;
        sum.name = tag + "per layer (mean, one launch each)";
        for (const auto& [name, names] : layers) {
          Result r = bench_group(file, name, names, int8_out, a->iters);
          sum.tensors = r.tensors;
          sum.compressed += r.compressed;
          sum.output += r.output;
          sum.decode_ms += r.decode_ms;
          sum.copy_ms += r.copy_ms;
        }
        const double n = double(layers.size());
        sum.compressed = uint64_t(double(sum.compressed) / n);
        sum.output = uint64_t(double(sum.output) / n);
        sum.decode_ms /= n;
        sum.copy_ms /= n;
        results.push_back(sum);
      }
      if (all.size() <= static_cast<size_t>(cuda::kMaxTensorsPerLaunch))
        results.push_back(bench_group(file, tag + "whole file, one launch", all, int8_out, a->iters));
    }
    if (a->json) {
      nlohmann::json j{{"device", prop.name}, {"sms", prop.multiProcessorCount}, {"results", nlohmann::json::array()}};
      for (const auto& r : results) j["results"].push_back(r.json());
      std::cout << j.dump(2) << '\n';
      return 0;
    }
    std::cout << "device: " << prop.name << " (" << prop.multiProcessorCount << " SMs); decode from device memory;"
              << " copy = cudaMemcpy D2D of the output bytes\n";
    Table t({"tensors", "n", "output", "decode us", "out GB/s", "traffic GB/s", "copy GB/s", "of copy"});
    for (const auto& r : results) t.add(r.row());
    t.print(std::cout);
    std::cout << "traffic = (compressed bytes read + output bytes written) / time; copy GB/s counts read + write\n";
    return 0;
  };
}

}  // namespace codecllm::tools
