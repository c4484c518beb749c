// The batch-1 GEMV kernels against a double-precision CPU product: 16-bit W (bf16 and f16), bf16
// W split into exponent and sign_mantissa planes (the bits of plain bf16), and int8 W with row
// scales (W8A16), with rows and lengths that leave partial warps, blocks and unrolled
// iterations, and int8 values at both ends of [-127, 127]; launched plainly and as
// programmatic dependents of a previous kernel, in both block sizes, all with the same bits.
// Skips without a GPU.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "codec/byte_planes.hpp"
#include "cuda/cuda_check.hpp"
#include "engine/cuda_kernels.cuh"
#include "gpu_test_util.hpp"

namespace codecllm {
namespace {

namespace k = engine::cuda_kernels;

using test::have_gpu;

template <typename T>
T* to_device(const std::vector<T>& v) {
  void* p = nullptr;
  CLLM_CUDA_CHECK(cudaMalloc(&p, v.size() * sizeof(T)));
  CLLM_CUDA_CHECK(cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
  return static_cast<T*>(p);
}

struct Case {
  int in, out;
};

class GemvKernels : public ::testing::TestWithParam<Case> {};

// Host-side conversions of the two 16-bit activation types.
float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
float to_float(__half v) { return __half2float(v); }
template <typename T>
T from_float(float v);
template <>
__nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16(v);
}
template <>
__half from_float<__half>(float v) {
  return __float2half(v);
}

// gemv_split over W cut into its exponent bytes and sign_mantissa bytes, the latter in three
// separate allocations of consecutive rows (as q, k and v are), the last part one row.
void split_product(const std::vector<__nv_bfloat16>& w, int in, int out, const __nv_bfloat16* dx, float* dy,
                   bool accumulate, const k::Stream& s) {
  const std::vector<uint8_t> bytes(reinterpret_cast<const uint8_t*>(w.data()),
                                   reinterpret_cast<const uint8_t*>(w.data()) + w.size() * 2);
  const std::vector<std::vector<uint8_t>> planes = codec::split_planes(format::Transform::FloatSplit, 2, bytes);
  k::SplitRows parts{};
  parts.count = out >= 3 ? 3 : 1;
  parts.end[0] = parts.count == 3 ? out / 2 : out;
  parts.end[1] = out - 1;
  parts.end[2] = out;
  uint8_t* exps = to_device(planes[0]);
  std::vector<uint8_t*> sm;
  for (int j = 0, row = 0; j < parts.count; row = parts.end[j++]) {
    const auto at = planes[1].begin() + long(row) * in;
    sm.push_back(to_device(std::vector<uint8_t>(at, at + long(parts.end[j] - row) * in)));
    parts.sign_mantissa[j] = sm.back();
  }
  k::gemv_split(exps, parts, dx, in, out, dy, accumulate, s);
  CLLM_CUDA_CHECK(cudaDeviceSynchronize());
  cudaFree(exps);
  for (uint8_t* p : sm) cudaFree(p);
}

// Both kernels with x (and 16-bit W) of type T; for BF16 also the split-plane kernel, which
// must give the bits of the plain one.
template <typename T>
void check_products(int in, int out, k::Act act) {
  std::mt19937 rng(in * 131 + out);
  std::normal_distribution<float> gauss(0.0f, 1.0f);
  std::uniform_int_distribution<int> q8(-127, 127);
  std::vector<T> x(in), wb(size_t(in) * out);
  std::vector<int8_t> wq(size_t(in) * out);
  std::vector<float> scales(out), y0(out);
  for (auto& v : x) v = from_float<T>(gauss(rng));
  for (auto& v : wb) v = from_float<T>(0.02f * gauss(rng));
  for (size_t i = 0; i < wq.size(); ++i) wq[i] = int8_t(i % 97 == 0 ? (i % 2 ? 127 : -127) : q8(rng));
  for (int r = 0; r < out; ++r) {
    scales[r] = r == 1 ? 0.0f : 0.001f * float(1 + r % 7);  // an all-zero row has scale 0
    y0[r] = gauss(rng);
  }
  // References in double, and the size of each row's terms for the tolerance.
  std::vector<double> ref_b(out), ref_q(out), mag_b(out), mag_q(out);
  for (int r = 0; r < out; ++r) {
    for (int i = 0; i < in; ++i) {
      const double xi = to_float(x[i]), b = to_float(wb[size_t(r) * in + i]);
      const double q = double(wq[size_t(r) * in + i]) * scales[r];
      ref_b[r] += b * xi;
      mag_b[r] += std::fabs(b * xi);
      ref_q[r] += q * xi;
      mag_q[r] += std::fabs(q * xi);
    }
  }
  T *dx = to_device(x), *dwb = to_device(wb);
  int8_t* dwq = to_device(wq);
  float *dscales = to_device(scales), *dy = to_device(y0);
  std::vector<float> y(out);
  const char* type = act == k::Act::F16 ? "f16" : "bf16";
  std::vector<float> first_b, first_q;  // every launch configuration must give the same bits
  for (int config = 0; config < 4; ++config) {
    const bool overlap = config & 1;
    const k::Stream s{nullptr, overlap, (config & 2) != 0};
    for (bool accumulate : {false, true}) {
      CLLM_CUDA_CHECK(cudaMemcpy(dy, y0.data(), out * sizeof(float), cudaMemcpyHostToDevice));
      k::gemv(act, dwb, dx, in, out, dy, accumulate, s);
      CLLM_CUDA_CHECK(cudaMemcpy(y.data(), dy, out * sizeof(float), cudaMemcpyDeviceToHost));
      for (int r = 0; r < out; ++r) {
        ASSERT_NEAR(y[r], ref_b[r] + (accumulate ? y0[r] : 0.0), 1e-5 * mag_b[r] + 1e-6)
            << type << " row " << r << " overlap " << overlap;
      }
      if (!accumulate) {
        if (first_b.empty()) first_b = y;
        ASSERT_EQ(0, std::memcmp(first_b.data(), y.data(), out * sizeof(float))) << "config " << config;
      }
      if constexpr (std::is_same_v<T, __nv_bfloat16>) {
        const std::vector<float> y_plain = y;
        CLLM_CUDA_CHECK(cudaMemcpy(dy, y0.data(), out * sizeof(float), cudaMemcpyHostToDevice));
        split_product(wb, in, out, dx, dy, accumulate, s);
        CLLM_CUDA_CHECK(cudaMemcpy(y.data(), dy, out * sizeof(float), cudaMemcpyDeviceToHost));
        ASSERT_EQ(0, std::memcmp(y_plain.data(), y.data(), out * sizeof(float)))
            << "split planes, config " << config << " accumulate " << accumulate;
      }
      CLLM_CUDA_CHECK(cudaMemcpy(dy, y0.data(), out * sizeof(float), cudaMemcpyHostToDevice));
      k::gemv_int8(act, dwq, dscales, dx, in, out, dy, accumulate, s);
      CLLM_CUDA_CHECK(cudaMemcpy(y.data(), dy, out * sizeof(float), cudaMemcpyDeviceToHost));
      for (int r = 0; r < out; ++r) {
        ASSERT_NEAR(y[r], ref_q[r] + (accumulate ? y0[r] : 0.0), 1e-5 * mag_q[r] + 1e-6)
            << "int8 x " << type << " row " << r << " overlap " << overlap;
      }
      if (!accumulate) {
        if (first_q.empty()) first_q = y;
        ASSERT_EQ(0, std::memcmp(first_q.data(), y.data(), out * sizeof(float))) << "config " << config;
      }
    }
  }
  for (void* p : {static_cast<void*>(dx), static_cast<void*>(dwb), static_cast<void*>(dwq), static_cast<void*>(dscales),
                  static_cast<void*>(dy)})
    cudaFree(p);
}

TEST_P(GemvKernels, MatchTheCpuProduct) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  const auto [in, out] = GetParam();
  check_products<__nv_bfloat16>(in, out, k::Act::BF16);
  check_products<__half>(in, out, k::Act::F16);
}

// in: one 16-element load per row; 2 and 4 warps' worth; 2048 + 16 (unrolled loop plus a
// tail); 14336 (an 8B model's down projection). out: odd counts leave a half-filled warp.
INSTANTIATE_TEST_SUITE_P(Shapes, GemvKernels,
                         ::testing::Values(Case{16, 3}, Case{288, 37}, Case{1024, 64}, Case{2064, 33}, Case{14336, 19}),
                         [](const ::testing::TestParamInfo<Case>& c) {
                           return "in" + std::to_string(c.param.in) + "_out" + std::to_string(c.param.out);
                         });

// The tensor-core product of 2 .. 8 sequences (gemm): each sequence against the double-precision
// product; each sequence's bits the same whatever the batch around it; rows past out, sequences
// past the batch and y's padding (ldy > out) untouched; accumulate adds the old y in float.
class GemmKernels : public ::testing::TestWithParam<Case> {};

template <typename T>
void check_gemm(int in, int out, k::Act act) {
  std::mt19937 rng(in * 7 + out);
  std::normal_distribution<float> gauss(0.0f, 1.0f);
  constexpr int B = 8;
  const int ldy = out + 3;
  std::vector<T> x(size_t(B) * in), w(size_t(in) * out);
  std::vector<float> y0(size_t(B) * ldy);
  for (auto& v : x) v = from_float<T>(gauss(rng));
  for (auto& v : w) v = from_float<T>(0.02f * gauss(rng));
  for (auto& v : y0) v = gauss(rng);
  std::vector<double> ref(size_t(B) * out), mag(size_t(B) * out);
  for (int b = 0; b < B; ++b) {
    for (int r = 0; r < out; ++r) {
      for (int i = 0; i < in; ++i) {
        const double p = double(to_float(w[size_t(r) * in + i])) * to_float(x[size_t(b) * in + i]);
        ref[size_t(b) * out + r] += p;
        mag[size_t(b) * out + r] += std::fabs(p);
      }
    }
  }
  T *dx = to_device(x), *dw = to_device(w);
  float* dy = to_device(y0);
  std::vector<float> y(y0.size()), full;
  auto run = [&](int batch, bool accumulate, const k::Stream& s) {
    CLLM_CUDA_CHECK(cudaMemcpy(dy, y0.data(), y0.size() * sizeof(float), cudaMemcpyHostToDevice));
    k::gemm(act, dw, dx, batch, in, out, dy, ldy, accumulate, s);
    CLLM_CUDA_CHECK(cudaMemcpy(y.data(), dy, y.size() * sizeof(float), cudaMemcpyDeviceToHost));
  };
  const char* type = act == k::Act::F16 ? "f16" : "bf16";
  for (int config = 0; config < 4; ++config) {
    const k::Stream s{nullptr, (config & 1) != 0, (config & 2) != 0};
    for (const int batch : {8, 2, 5, 7}) {  // 8 first: the bits the others must give
      ASSERT_TRUE(k::gemm_takes(in, batch));
      run(batch, false, s);
      for (int b = 0; b < B; ++b) {
        for (int r = 0; r < ldy; ++r) {
          const size_t at = size_t(b) * ldy + r;
          if (b >= batch || r >= out) {
            ASSERT_EQ(y[at], y0[at]) << type << " batch " << batch << ": wrote sequence " << b << " row " << r;
          } else {
            ASSERT_NEAR(y[at], ref[size_t(b) * out + r], 1e-5 * mag[size_t(b) * out + r] + 1e-6)
                << type << " batch " << batch << " sequence " << b << " row " << r << " config " << config;
            if (!full.empty()) {
              ASSERT_EQ(y[at], full[at]) << type << " batch " << batch << " sequence " << b;
            }
          }
        }
      }
      if (full.empty()) full = y;
    }
    run(7, true, s);
    for (int b = 0; b < 7; ++b) {
      for (int r = 0; r < out; ++r) {
        const size_t at = size_t(b) * ldy + r;
        ASSERT_EQ(y[at], y0[at] + full[at]) << type << " accumulate, sequence " << b << " row " << r;
      }
    }
  }
  EXPECT_FALSE(k::gemm_takes(in, 1));
  EXPECT_FALSE(k::gemm_takes(in, B + 1));
  EXPECT_FALSE(k::gemm_takes(in + 8, 2));
  for (void* p : {static_cast<void*>(dx), static_cast<void*>(dw), static_cast<void*>(dy)}) cudaFree(p);
}

TEST_P(GemmKernels, MatchTheCpuProductWithBitsIndependentOfTheBatch) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  const auto [in, out] = GetParam();
  check_gemm<__nv_bfloat16>(in, out, k::Act::BF16);
  check_gemm<__half>(in, out, k::Act::F16);
}

// in: one chunk; chunks fewer than, a multiple of, and not a multiple of the block's warps times
// their unroll; 14336 (an 8B model's down projection). out: partial 16-row tiles.
INSTANTIATE_TEST_SUITE_P(Shapes, GemmKernels,
                         ::testing::Values(Case{64, 3}, Case{320, 37}, Case{1024, 64}, Case{2112, 33}, Case{14336, 19}),
                         [](const ::testing::TestParamInfo<Case>& c) {
                           return "in" + std::to_string(c.param.in) + "_out" + std::to_string(c.param.out);
                         });

}  // namespace
}  // namespace codecllm
