// The attention kernel of the CUDA engine against a double-precision product over the same
// query and cache values: head sizes below a warp, of one (128) and above the block (384),
// grouped and plain heads, one to three sequences, contexts of one position to many rounds of
// the kernel's score loop, and each KV cache type. Skips without a GPU.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "engine/cuda_kernels.cuh"
#include "gpu_test_util.hpp"

namespace codecllm {
namespace {

namespace k = engine::cuda_kernels;

using test::DeviceBuffer;
using test::have_gpu;

struct AttentionCase {
  int heads, kv_heads, head_dim, batch, positions;
  k::KvType kv;
};

// A value as the cache of type t holds it, and its bytes there.
float through_cache(float v, k::KvType t) {
  if (t == k::KvType::BF16) return __bfloat162float(__float2bfloat16(v));
  if (t == k::KvType::F16) return __half2float(__float2half(v));
  return v;
}
void put(std::vector<uint8_t>& cache, size_t i, float v, k::KvType t) {
  if (t == k::KvType::BF16) {
    const __nv_bfloat16 h = __float2bfloat16(v);
    std::memcpy(&cache[2 * i], &h, 2);
  } else if (t == k::KvType::F16) {
    const __half h = __float2half(v);
    std::memcpy(&cache[2 * i], &h, 2);
  } else {
    std::memcpy(&cache[4 * i], &v, 4);
  }
}

class Attention : public ::testing::TestWithParam<AttentionCase> {};

TEST_P(Attention, MatchesDoublePrecision) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  const AttentionCase c = GetParam();
  const int max_seq = c.positions + 3, hd = c.head_dim, q_dim = c.heads * hd, kv_dim = c.kv_heads * hd;
  const k::AttentionShape shape{c.heads, c.kv_heads, hd, max_seq, c.batch, c.kv};
  std::mt19937 rng(uint32_t(c.heads * 1000 + hd + c.positions));
  std::normal_distribution<float> gauss(0.0f, 1.0f);
  std::vector<float> qkv(size_t(c.batch) * (q_dim + 2 * kv_dim));
  for (float& v : qkv) v = gauss(rng);
  const size_t cache_values = size_t(c.batch) * max_seq * kv_dim;
  const size_t value_bytes = size_t(k::kv_type_size(c.kv));
  std::vector<uint8_t> kc(cache_values * value_bytes), vc(cache_values * value_bytes);
  std::vector<float> kf(cache_values), vf(cache_values);  // what the caches hold, as floats
  for (size_t i = 0; i < cache_values; ++i) {
    kf[i] = through_cache(gauss(rng), c.kv);
    vf[i] = through_cache(gauss(rng), c.kv);
    put(kc, i, kf[i], c.kv);
    put(vc, i, vf[i], c.kv);
  }
  const int pos = c.positions - 1;
  DeviceBuffer d_qkv(qkv.size() * 4), d_k(kc.size()), d_v(vc.size()), d_pos(4), d_out(size_t(c.batch) * q_dim * 2);
  CLLM_CUDA_CHECK(cudaMemcpy(d_qkv.p, qkv.data(), qkv.size() * 4, cudaMemcpyHostToDevice));
  CLLM_CUDA_CHECK(cudaMemcpy(d_k.p, kc.data(), kc.size(), cudaMemcpyHostToDevice));
  CLLM_CUDA_CHECK(cudaMemcpy(d_v.p, vc.data(), vc.size(), cudaMemcpyHostToDevice));
  CLLM_CUDA_CHECK(cudaMemcpy(d_pos.p, &pos, 4, cudaMemcpyHostToDevice));
  k::attention(k::Act::BF16, static_cast<const float*>(d_qkv.p), d_k.p, d_v.p, static_cast<const int*>(d_pos.p), shape,
               d_out.p, k::Stream{});
  CLLM_CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<__nv_bfloat16> out(size_t(c.batch) * q_dim);
  CLLM_CUDA_CHECK(cudaMemcpy(out.data(), d_out.p, out.size() * 2, cudaMemcpyDeviceToHost));

  int checked = 0;
  for (int b = 0; b < c.batch; ++b) {
    for (int h = 0; h < c.heads; ++h) {
      const int kvh = h / (c.heads / c.kv_heads);
      const float* q = &qkv[size_t(b) * (q_dim + 2 * kv_dim) + size_t(h) * hd];
      const size_t base = size_t(b) * max_seq * kv_dim + size_t(kvh) * hd;
      std::vector<double> p(size_t(c.positions));
      double top = -1e300, total = 0;
      for (int t = 0; t < c.positions; ++t) {
        double d = 0;
        for (int i = 0; i < hd; ++i) d += double(q[i]) * kf[base + size_t(t) * kv_dim + i];
        p[size_t(t)] = d / std::sqrt(double(hd));
        top = std::max(top, p[size_t(t)]);
      }
      for (double& v : p) total += v = std::exp(v - top);
      for (int i = 0; i < hd; ++i) {
        double want = 0;
        for (int t = 0; t < c.positions; ++t) want += p[size_t(t)] * vf[base + size_t(t) * kv_dim + i];
        want /= total;
        const double got = __bfloat162float(out[size_t(b) * q_dim + size_t(h) * hd + i]);
        // One bf16 rounding of the result (2^-9 relative), plus float sums and exponentials.
        ASSERT_NEAR(got, want, std::abs(want) / 256 + 1e-4) << "sequence " << b << ", head " << h << ", element " << i
                                                            << " of " << hd << ", " << c.positions << " positions";
        ++checked;
      }
    }
  }
  EXPECT_EQ(checked, c.batch * q_dim);
}

INSTANTIATE_TEST_SUITE_P(Shapes, Attention,
                         ::testing::Values(AttentionCase{4, 2, 8, 1, 1, k::KvType::BF16},
                                           AttentionCase{4, 2, 8, 2, 45, k::KvType::F32},
                                           AttentionCase{32, 8, 128, 1, 300, k::KvType::BF16},
                                           AttentionCase{8, 8, 64, 3, 33, k::KvType::F16},
                                           AttentionCase{2, 1, 384, 1, 70, k::KvType::BF16}));

}  // namespace
}  // namespace codecllm
