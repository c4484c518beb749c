// Engine benchmark (CUDA): decode throughput of one .cllm file for each placement and batch,
// against references measured in the same run:
//   - a device-to-device copy (read + write GB/s): the roofline of the matmuls, reported as
//     calm does: weight bytes the matmuls read per step x steps/s, as a fraction of it;
//   - a pinned host-to-device copy: the PCIe bound of the host placements, reported as the
//     bytes they stream per step / H2D GB/s against the measured time per step;
//   - the first run of the same batch: time and peak VRAM ratios.
//
//   engine_bench FILE.cllm [RUNS] [TOKENS] [JSONL] [MODEL-NAME]
// RUNS: comma-separated PLACEMENT@BATCH, e.g. gpu@1,host@8,auto/20GiB@1 (default below); a
// suffix *N splits the model across GPUs 0..N-1 (gpu-compressed@8*2).
// JSONL: appends one JSON object per run (bench/plot_placements.py draws them).
// CODECLLM_BENCH_SERIAL_LAUNCH=1 turns off overlapped (programmatic dependent) kernel launches,
// to measure what they gain; CODECLLM_BENCH_NO_SCRATCH=1 makes gpu-compressed at batch 1
// multiply straight from the compressed weights instead of decoding each layer into scratch;
// CODECLLM_BENCH_DECODE_SLOTS=N gives gpu-compressed N decoded-layer scratch slots;
// CODECLLM_BENCH_DECODE_BLOCKS_PER_SM=N lets at most N decode blocks reside on an SM;
// CODECLLM_BENCH_WHOLE_BF16=1 makes it decode whole BF16 values into them instead of exponents
// alone (CudaEngineOptions::bf16_exponents_only); CODECLLM_BENCH_BLAS=1 runs batches of 2-8 on
// cuBLAS (exp4 layers decoded into scratch) instead of the tensor-core kernels
// (CudaEngineOptions::own_batch_products).
#include <cuda_runtime.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "codecllm/byte_size.hpp"
#include "cuda/cuda_check.hpp"
#include "engine/cuda_engine.hpp"
#include "engine/sampler.hpp"

using namespace codecllm;

namespace {

// Whether the environment variable `name` is set to 1 (the switches listed above).
bool env_is_one(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && std::string(v) == "1";
}

// Best of 10 timed copies of 1 GiB, in GB/s; `count_both` counts bytes read and written.
double copy_gbps(cudaMemcpyKind kind) {
  const size_t bytes = size_t(1) << 30;
  void *src = nullptr, *dst = nullptr;
  CLLM_CUDA_CHECK(cudaMalloc(&dst, bytes));
  if (kind == cudaMemcpyDeviceToDevice) {
    CLLM_CUDA_CHECK(cudaMalloc(&src, bytes));
  } else {
    CLLM_CUDA_CHECK(cudaHostAlloc(&src, bytes, cudaHostAllocDefault));
  }
  CLLM_CUDA_CHECK(cudaMemcpy(dst, src, bytes, kind));
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  float best = 1e9f;
  for (int i = 0; i < 10; ++i) {
    cudaEventRecord(e0);
    cudaMemcpyAsync(dst, src, bytes, kind);
    cudaEventRecord(e1);
    cudaEventSynchronize(e1);
    float ms = 0;
    cudaEventElapsedTime(&ms, e0, e1);
    best = std::min(best, ms);
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  cudaFree(dst);
  if (kind == cudaMemcpyDeviceToDevice) {
    cudaFree(src);
  } else {
    cudaFreeHost(src);
  }
  const double factor = kind == cudaMemcpyDeviceToDevice ? 2.0 : 1.0;  // read + write on the device
  return factor * double(bytes) / (best * 1e-3) / 1e9;
}

struct Run {
  std::string placement, budget;
  int batch = 1;
  int gpus = 1;  // "gpu@8*2": split across GPUs 0 and 1
};

std::vector<Run> parse_runs(const std::string& spec) {
  std::vector<Run> runs;
  std::stringstream ss(spec);
  for (std::string item; std::getline(ss, item, ',');) {
    Run r;
    const size_t star = item.find('*');
    if (star != std::string::npos) {
      r.gpus = std::stoi(item.substr(star + 1));
      item = item.substr(0, star);
    }
    const size_t at = item.find('@');
    if (at != std::string::npos) r.batch = std::stoi(item.substr(at + 1));
    r.placement = item.substr(0, at);
    const size_t slash = r.placement.find('/');
    if (slash != std::string::npos) {
      r.budget = r.placement.substr(slash + 1);
      r.placement = r.placement.substr(0, slash);
    }
    runs.push_back(r);
  }
  return runs;
}

std::string weight_mode(const format::ContainerReader& file) {
  for (const auto& t : file.index().tensors)
    if (t.mode == format::TensorMode::Int8) return "int8";
  return "lossless";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s FILE.cllm [PLACEMENT@BATCH,...] [tokens] [out.jsonl] [model-name]\n", argv[0]);
    return 2;
  }
  const std::string path = argv[1];
  const std::vector<Run> runs = parse_runs(argc > 2 ? argv[2] : "gpu@1,gpu-compressed@1");
  const int tokens = argc > 3 ? std::stoi(argv[3]) : 32;
  const std::string jsonl = argc > 4 ? argv[4] : "";
  const std::string model = argc > 5 ? argv[5] : path;
  try {
    cudaDeviceProp prop{};
    CLLM_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    const double d2d = copy_gbps(cudaMemcpyDeviceToDevice), h2d = copy_gbps(cudaMemcpyHostToDevice);
    format::ContainerReader file(path);
    const std::string mode = weight_mode(file);
    std::printf("%s (%s) on %s; device-to-device copy %.0f GB/s (read + write), pinned host-to-device %.1f GB/s\n",
                path.c_str(), mode.c_str(), prop.name, d2d, h2d);
    std::printf("%-22s %5s %9s %9s %10s %8s %11s %8s %10s %10s\n", "placement", "batch", "tok/s", "ms/step", "wt GB/s",
                "of copy", "PCIe GB/st", "of PCIe", "peak VRAM", "pinned");
    std::vector<std::pair<int, std::pair<double, double>>> first;  // batch -> (ms/step, peak VRAM) of its first run
    for (const Run& run : runs) {
      engine::CudaEngineOptions o;
      o.placement = parse_placement(run.placement);
      o.batch = run.batch;
      o.max_seq_len = tokens + 8;
      if (!run.budget.empty()) o.vram_budget = parse_byte_size(run.budget);
      // CODECLLM_BENCH_ONE_GPU=1 puts every share of a split on GPU 0, run in turn: the split's
      // code path (graphs per share, the activations' copy between shares) timed on one GPU.
      const bool one_gpu = env_is_one("CODECLLM_BENCH_ONE_GPU");
      for (int d = 0; run.gpus > 1 && d < run.gpus; ++d) o.devices.push_back(one_gpu ? 0 : d);
      o.print_plan = true;
      o.overlap_launches = !env_is_one("CODECLLM_BENCH_SERIAL_LAUNCH");
      o.products_from_compressed = env_is_one("CODECLLM_BENCH_NO_SCRATCH");
      const char* slots = std::getenv("CODECLLM_BENCH_DECODE_SLOTS");
      if (slots != nullptr && o.placement == Placement::GpuCompressed) o.decode_slots = std::atoi(slots);
      o.bf16_exponents_only = !env_is_one("CODECLLM_BENCH_WHOLE_BF16");
      o.own_batch_products = !env_is_one("CODECLLM_BENCH_BLAS");
      if (const char* b = std::getenv("CODECLLM_BENCH_DECODE_BLOCKS_PER_SM")) o.decode_blocks_per_sm = std::atoi(b);
      auto eng = engine::make_cuda_engine(file, o);
      const int vocab = eng->config().vocab;
      // Greedy, picked where the engine picks (on the GPU): what `codecllm run` does.
      std::vector<int> tok(run.batch, 1), next(run.batch);
      std::vector<engine::Sampler> greedy(run.batch, engine::Sampler(vocab, engine::SamplerOptions{}));
      const std::vector<uint8_t> all(run.batch, 1);
      auto step = [&](int pos) {
        eng->forward_sample(tok.data(), pos, greedy.data(), all.data(), next.data());
        tok.swap(next);
      };
      for (int i = 0; i < 3; ++i) step(i);  // warm-up: graph capture, first integrity check
      const auto t0 = std::chrono::steady_clock::now();
      for (int i = 3; i < tokens + 3; ++i) step(i);
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const double steps_per_s = tokens / s, tps = steps_per_s * run.batch;
      const engine::MemoryStats m = eng->memory();
      // The engine's own count: 2 bytes per bf16 weight, 1 per int8 weight it keeps int8.
      const double bw = double(m.matmul_weight_bytes_per_step) * steps_per_s / 1e9;
      const double streamed = double(m.streamed_bytes_per_step);
      const double pcie_bound_ms = streamed / (h2d * 1e9) * 1e3, ms = 1e3 / steps_per_s;
      std::string label = run.placement + (run.budget.empty() ? "" : "/" + run.budget) +
                          (run.gpus > 1 ? " x" + std::to_string(run.gpus) + (one_gpu ? " on GPU0" : " GPUs") : "");
      std::printf("%-22s %5d %9.1f %9.2f %10.0f %7.1f%% %11.2f %7.1f%% %10s %10s", label.c_str(), run.batch, tps, ms,
                  bw, 100 * bw / d2d, streamed / 1e9, streamed > 0 ? 100 * pcie_bound_ms / ms : 0.0,
                  human_bytes(double(m.peak_device_bytes)).c_str(), human_bytes(double(m.host_pinned_bytes)).c_str());
      auto ref = std::find_if(first.begin(), first.end(), [&](const auto& f) { return f.first == run.batch; });
      if (ref == first.end()) {
        first.push_back({run.batch, {ms, double(m.peak_device_bytes)}});
        std::printf("   (reference for batch %d)\n", run.batch);
      } else {
        std::printf("   x%.2f time, x%.2f VRAM\n", ms / ref->second.first,
                    double(m.peak_device_bytes) / ref->second.second);
      }
      std::fflush(stdout);
      if (!jsonl.empty()) {
        std::ofstream out(jsonl, std::ios::app);
        out << nlohmann::json{{"model", model},
                              {"device", prop.name},
                              {"mode", mode},
                              {"placement", run.placement},
                              {"budget", run.budget},
                              {"batch", run.batch},
                              {"gpus", run.gpus},
                              {"shares_on_one_gpu", run.gpus > 1 && one_gpu},
                              {"tokens_per_s", tps},
                              {"ms_per_step", ms},
                              {"weight_gbps", bw},
                              {"copy_gbps", d2d},
                              {"h2d_gbps", h2d},
                              {"streamed_bytes_per_step", m.streamed_bytes_per_step},
                              {"pcie_bound_fraction", streamed > 0 ? pcie_bound_ms / ms : 0.0},
                              {"peak_vram_bytes", m.peak_device_bytes},
                              {"host_pinned_bytes", m.host_pinned_bytes},
                              {"engine", eng->describe()}}
                   .dump()
            << "\n";
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "engine_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
