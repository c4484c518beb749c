// CUDA backend: gpu-compressed must give logits bit-identical to gpu (same bf16 weights, the
// decode is exact), and both must agree with the CPU reference within bf16 rounding.
#include "engine/cuda_engine.hpp"

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "engine/cpu_engine.hpp"
#include "engine/sampler.hpp"
#include "model/compress.hpp"
#include "test_util.hpp"

namespace codecllm {
namespace {

bool have_gpu() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

class CudaEngineModes : public ::testing::TestWithParam<const char*> {};

TEST_P(CudaEngineModes, CompressedEqualsBaselineAndTracksCpu) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  const std::string src = std::string(CODECLLM_SHARED_MODELS) + "/pycode24M";
  if (!test::file_exists(src)) GTEST_SKIP() << src << " not found";
  test::TempDir dir;
  const std::string path = dir.path() + "/m.cllm";
  model::CompressOptions co;
  co.encode.mode = std::string(GetParam()) == "int8" ? format::TensorMode::Int8 : format::TensorMode::Lossless;
  model::compress_checkpoint(src, path, co);
  format::ContainerReader file(path);
  engine::CudaEngineOptions o;
  o.max_seq_len = 64;
  auto gpu = engine::make_cuda_engine(file, o);
  o.placement = engine::Placement::GpuCompressed;
  auto packed = engine::make_cuda_engine(file, o);
  auto cpu = engine::make_cpu_engine(file, {});
  const int vocab = gpu->config().vocab;
  std::vector<int> ids = {1, 770, 29871};
  int matched = 0;
  for (int pos = 0; pos < 24; ++pos) {
    const int token = ids[pos];
    const float* lg = gpu->forward(token, pos);
    std::vector<float> g(lg, lg + vocab);
    const float* lp = packed->forward(token, pos);
    ASSERT_EQ(0, std::memcmp(g.data(), lp, sizeof(float) * vocab)) << "gpu-compressed differs from gpu at " << pos;
    const float* lc = cpu->forward(token, pos);
    double max_diff = 0, scale = 0;
    for (int i = 0; i < vocab; ++i) {
      max_diff = std::max(max_diff, double(std::fabs(g[i] - lc[i])));
      scale = std::max(scale, double(std::fabs(lc[i])));
    }
    EXPECT_LT(max_diff, 0.05 * scale) << "CUDA vs CPU logits at position " << pos;
    const int next_gpu = engine::argmax(g.data(), vocab), next_cpu = engine::argmax(lc, vocab);
    matched += next_gpu == next_cpu;
    if (pos + 1 >= static_cast<int>(ids.size())) ids.push_back(next_cpu);
  }
  EXPECT_GE(matched, 20) << "greedy choices of the CUDA and CPU engines should mostly agree";
}

INSTANTIATE_TEST_SUITE_P(Modes, CudaEngineModes, ::testing::Values("lossless", "int8"));

}  // namespace
}  // namespace codecllm
