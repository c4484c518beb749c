// Engine benchmark (CUDA): decode tokens/s at batch 1 for each placement of one .cllm file,
// the memory bandwidth that implies (bf16 weight bytes the matmuls read per token x tokens/s,
// as calm reports it) against a device-to-device copy measured in the same run, and the
// peak VRAM of each placement.
//
//   engine_bench FILE.cllm [tokens=64] [placements=gpu,gpu-compressed]
#include <cuda_runtime.h>

#include <chrono>
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "cuda/cuda_check.hpp"
#include "engine/cuda_engine.hpp"
#include "engine/sampler.hpp"

using namespace codecllm;

namespace {

double copy_gbps() {
  const size_t bytes = size_t(1) << 30;
  void *a = nullptr, *b = nullptr;
  CLLM_CUDA_CHECK(cudaMalloc(&a, bytes));
  CLLM_CUDA_CHECK(cudaMalloc(&b, bytes));
  CLLM_CUDA_CHECK(cudaMemset(a, 1, bytes));
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  float best = 1e9f;
  for (int i = 0; i < 10; ++i) {
    cudaEventRecord(e0);
    cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice);
    cudaEventRecord(e1);
    cudaEventSynchronize(e1);
    float ms = 0;
    cudaEventElapsedTime(&ms, e0, e1);
    best = std::min(best, ms);
  }
  cudaFree(a);
  cudaFree(b);
  return 2.0 * double(bytes) / (best * 1e-3) / 1e9;  // bytes read + written
}

// bf16 bytes of every matrix the forward pass multiplies by (the lm_head included).
double matmul_bytes(const engine::LlamaConfig& c) {
  const double hd = c.head_dim, layer = double(c.hidden) * (c.heads * hd) * 2 +
                                        double(c.hidden) * (c.kv_heads * hd) * 2 + 3.0 * c.hidden * c.intermediate;
  return 2.0 * (layer * c.layers + double(c.vocab) * c.hidden);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s FILE.cllm [tokens] [placements]\n", argv[0]);
    return 2;
  }
  const std::string path = argv[1];
  const int tokens = argc > 2 ? std::stoi(argv[2]) : 64;
  std::vector<std::string> placements;
  std::stringstream ss(argc > 3 ? argv[3] : "gpu,gpu-compressed");
  for (std::string p; std::getline(ss, p, ',');) placements.push_back(p);
  try {
    const double copy = copy_gbps();
    format::ContainerReader file(path);
    std::printf("%s; device-to-device copy %.0f GB/s (read + write)\n", path.c_str(), copy);
    std::printf("%-16s %9s %10s %12s %9s %12s %12s\n", "placement", "tok/s", "ms/token", "weights GB/s", "of copy",
                "peak VRAM", "weights held");
    double base_tps = 0, base_vram = 0;
    for (const auto& p : placements) {
      engine::CudaEngineOptions o;
      o.placement = engine::parse_placement(p);
      o.max_seq_len = tokens + 8;
      auto eng = engine::make_cuda_engine(file, o);
      int tok = 1;
      for (int i = 0; i < 4; ++i) tok = engine::argmax(eng->forward(tok, i), eng->config().vocab);  // warm-up
      const auto t0 = std::chrono::steady_clock::now();
      for (int i = 4; i < tokens + 4; ++i) tok = engine::argmax(eng->forward(tok, i), eng->config().vocab);
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const double tps = tokens / s, bw = matmul_bytes(eng->config()) * tps / 1e9;
      const auto m = eng->memory();
      if (base_tps == 0) {
        base_tps = tps;
        base_vram = double(m.peak_device_bytes);
      }
      std::printf("%-16s %9.1f %10.3f %12.0f %8.1f%% %9.2f GiB %9.2f GiB   (x%.2f time, x%.2f VRAM vs %s)\n", p.c_str(),
                  tps, 1e3 / tps, bw, 100 * bw / copy, double(m.peak_device_bytes) / (1 << 30),
                  double(m.weight_bytes) / (1 << 30), base_tps / tps, double(m.peak_device_bytes) / base_vram,
                  placements[0].c_str());
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "engine_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
