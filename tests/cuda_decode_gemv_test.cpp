// The fused decode-GEMV kernel against the engine's GEMV kernel over the same weights decoded
// by the GPU decoder: the same bits, for lossless BF16 and int8 matrices (BF16 and F16 x),
// with rows that end inside a chunk and run on into the next one, rows as long as a chunk,
// an all-zero int8 row, two tensors in one call, accumulate on and off, plain and programmatic
// dependent launches, y written as F32, added to, or rounded to BF16. A corrupt chunk is
// reported. Skips without a GPU.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "codec/exp4_plane.hpp"
#include "codec/freq_table.hpp"
#include "codecllm/error.hpp"
#include "cuda/cuda_check.hpp"
#include "cuda/decode_launch.hpp"
#include "cuda/exp4_row_slots.hpp"
#include "cuda/gpu_decoder.hpp"
#include "engine/cuda_kernels.cuh"
#include "format/container.hpp"
#include "gpu_test_util.hpp"
#include "synthetic_file.hpp"
#include "test_util.hpp"

namespace codecllm {
namespace {

namespace k = engine::cuda_kernels;
using test::DeviceBuffer;

struct FusedCase {
  const char* name;
  format::TensorMode mode;
  uint32_t chunk;
  uint64_t cols;
  bool x_f16;
};

class DecodeGemv : public ::testing::TestWithParam<FusedCase> {};

const char* const kNames[] = {"model.layers.0.mlp.up_proj.weight", "model.layers.0.mlp.down_proj.weight"};
constexpr uint64_t kRows[] = {40, 24};

std::vector<uint8_t> matrix(uint64_t rows, uint64_t cols, uint64_t seed, bool zero_row) {
  std::vector<uint8_t> w = test::gaussian_bf16(rows * cols, 0.02, seed);
  if (zero_row) std::fill(w.begin() + long(cols * 6), w.begin() + long(cols * 8), 0);  // row 3 (2 bytes a weight)
  return w;
}

std::vector<uint8_t> random_x(uint64_t n, bool f16, uint64_t seed) {
  std::mt19937 rng(static_cast<uint32_t>(seed));
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<uint8_t> x(2 * n);
  for (uint64_t i = 0; i < n; ++i) {
    const float v = g(rng);
    if (f16) {
      const __half h = __float2half(v);
      std::memcpy(&x[2 * i], &h, 2);
    } else {
      const __nv_bfloat16 b = __float2bfloat16(v);
      std::memcpy(&x[2 * i], &b, 2);
    }
  }
  return x;
}

uint32_t bits(float f) {
  uint32_t u = 0;
  std::memcpy(&u, &f, 4);
  return u;
}

template <typename T>
std::vector<T> read_back(const void* d, size_t n) {
  std::vector<T> v(n);
  CLLM_CUDA_CHECK(cudaMemcpy(v.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost));
  return v;
}

constexpr cuda::GemvOut kOutputs[] = {cuda::GemvOut::F32, cuda::GemvOut::F32Add, cuda::GemvOut::Bf16};

// y as a fused product wrote it in form `out`, against the engine GEMV's F32 rows `want`: the
// same bits, or for Bf16 the bits of `want` rounded to nearest even.
void expect_rows(const void* y, const std::vector<float>& want, cuda::GemvOut out, const std::string& what) {
  if (out != cuda::GemvOut::Bf16) {
    const std::vector<float> got = read_back<float>(y, want.size());
    for (size_t i = 0; i < want.size(); ++i)
      ASSERT_EQ(bits(got[i]), bits(want[i])) << what << " row " << i << ": fused " << got[i] << ", GEMV " << want[i];
    return;
  }
  const std::vector<uint16_t> got = read_back<uint16_t>(y, want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    const __nv_bfloat16 rounded = __float2bfloat16_rn(want[i]);
    uint16_t expected = 0;
    std::memcpy(&expected, &rounded, 2);
    ASSERT_EQ(got[i], expected) << what << " row " << i << " as BF16: GEMV " << want[i];
  }
}

std::string describe(cuda::GemvOut out, bool overlap) {
  const char* form = out == cuda::GemvOut::F32 ? "F32" : out == cuda::GemvOut::F32Add ? "F32 added" : "BF16";
  return std::string(" (y ") + form + ", overlap " + (overlap ? "on)" : "off)");
}

TEST_P(DecodeGemv, SameBitsAsGemvOnDecodedWeights) {
  if (!test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  const FusedCase c = GetParam();
  const bool int8 = c.mode == format::TensorMode::Int8;
  test::TempDir dir;
  codec::EncodeOptions o;
  o.mode = c.mode;
  o.predictor = codec::PredictorChoice::Off;
  o.rans.chunk_symbols = c.chunk;
  o.row_aligned_chunks = false;  // the chunk sizes as given: rows may run on into the next chunk
  const std::string path =
      test::write_synthetic(dir.path(), o,
                            {{kNames[0], DType::BF16, {kRows[0], c.cols}, matrix(kRows[0], c.cols, 1, int8)},
                             {kNames[1], DType::BF16, {kRows[1], c.cols}, matrix(kRows[1], c.cols, 2, false)}});
  format::ContainerReader r(path);
  cuda::DecoderOptions dopt;
  dopt.int8_output = cuda::Int8Out::Int8;
  cuda::GpuDecoder dec(r, {kNames[0], kNames[1]}, dopt);
  ASSERT_TRUE(dec.gemv_ready(0) && dec.gemv_ready(1)) << c.name;
  dec.upload_resident(nullptr);

  // The reference: the decoded weights through the engine's GEMV kernel, each tensor's rows
  // after the previous tensor's in y.
  const uint64_t rows = kRows[0] + kRows[1];
  DeviceBuffer w0(dec.output_bytes(0)), w1(dec.output_bytes(1));
  void* outs[] = {w0.p, w1.p};
  dec.decode(dec.resident(), outs, nullptr);
  ASSERT_NO_THROW(dec.check(nullptr));
  std::vector<float> scales;
  for (const char* n : kNames) {
    const format::TensorRecord& rec = *r.index().find_tensor(n);
    if (!int8) continue;
    const ByteSpan s = r.payload(*rec.plane("scales"));
    const size_t at = scales.size();
    scales.resize(at + s.size() / 4);
    std::memcpy(scales.data() + at, s.data(), s.size());
  }
  DeviceBuffer d_scales(scales.size() * 4);
  if (int8) CLLM_CUDA_CHECK(cudaMemcpy(d_scales.p, scales.data(), scales.size() * 4, cudaMemcpyHostToDevice));
  const std::vector<uint8_t> x = random_x(c.cols, c.x_f16, c.cols);
  DeviceBuffer d_x(x.size());
  CLLM_CUDA_CHECK(cudaMemcpy(d_x.p, x.data(), x.size(), cudaMemcpyHostToDevice));
  std::vector<float> y0(rows);
  for (uint64_t i = 0; i < rows; ++i) y0[i] = 0.25f * float(i % 9) - 1.0f;

  cudaStream_t stream = nullptr;
  CLLM_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  const k::Stream ks{stream, false, false};
  const k::Act act = c.x_f16 ? k::Act::F16 : k::Act::BF16;
  for (cuda::GemvOut out : kOutputs) {
    const bool accumulate = out == cuda::GemvOut::F32Add;
    DeviceBuffer y_ref(rows * 4), y_fused(rows * 4);
    CLLM_CUDA_CHECK(cudaMemcpy(y_ref.p, y0.data(), rows * 4, cudaMemcpyHostToDevice));
    const auto in = static_cast<int>(c.cols);
    auto* yr = static_cast<float*>(y_ref.p);
    const auto* sc = static_cast<const float*>(d_scales.p);
    if (int8) {
      k::gemv_int8(act, static_cast<const int8_t*>(w0.p), sc, d_x.p, in, int(kRows[0]), yr, accumulate, ks);
      k::gemv_int8(act, static_cast<const int8_t*>(w1.p), sc + kRows[0], d_x.p, in, int(kRows[1]), yr + kRows[0],
                   accumulate, ks);
    } else {
      k::gemv(act, w0.p, d_x.p, in, int(kRows[0]), yr, accumulate, ks);
      k::gemv(act, w1.p, d_x.p, in, int(kRows[1]), yr + kRows[0], accumulate, ks);
    }
    CLLM_CUDA_CHECK(cudaStreamSynchronize(stream));
    const std::vector<float> want = read_back<float>(y_ref.p, rows);
    for (bool overlap : {false, true}) {
      CLLM_CUDA_CHECK(cudaMemcpy(y_fused.p, y0.data(), rows * 4, cudaMemcpyHostToDevice));
      dec.decode_gemv(dec.resident(), 0, 2, d_x.p, c.x_f16, y_fused.p, out, stream, overlap);
      ASSERT_NO_THROW(dec.check(stream));
      expect_rows(y_fused.p, want, out, c.name + describe(out, overlap));
    }
  }
  CLLM_CUDA_CHECK(cudaStreamDestroy(stream));
}

INSTANTIATE_TEST_SUITE_P(
    Layouts, DecodeGemv,
    ::testing::Values(FusedCase{"bf16_rows_cross_chunks", format::TensorMode::Lossless, 2048, 768, false},
                      FusedCase{"bf16_row_is_a_chunk", format::TensorMode::Lossless, 2048, 2048, false},
                      FusedCase{"bf16_chunks_of_whole_rows", format::TensorMode::Lossless, 4096, 256, false},
                      FusedCase{"int8_rows_cross_chunks", format::TensorMode::Int8, 2048, 1536, false},
                      FusedCase{"int8_f16_x", format::TensorMode::Int8, 2048, 1536, true},
                      FusedCase{"int8_chunks_of_whole_rows", format::TensorMode::Int8, 4096, 512, false}),
    [](const ::testing::TestParamInfo<FusedCase>& i) { return std::string(i.param.name); });

// A BF16 matrix whose exponents escape the exp4 window (zeros, huge values): every 997th
// weight, columns 40-55 of every row (several lanes and several weights of a vector in one
// round), and every other weight of row 5 (more escapes than a warp or a block stages).
std::vector<uint8_t> escaping_matrix(uint64_t rows, uint64_t cols) {
  std::vector<uint8_t> w = matrix(rows, cols, 1, false);
  auto escape = [&](uint64_t i) { w[2 * i + 1] = i % 2 ? 0x00 : 0x7e; };
  for (uint64_t i = 3; i < w.size() / 2; i += 997) escape(i);
  for (uint64_t r = 0; r < rows; ++r)
    for (uint64_t c = 40; c < 56; ++c) escape(r * cols + c);
  for (uint64_t c = 0; c < cols; c += 2) escape(5 * cols + c);
  return w;
}

// A code 15 without its escape in tensor 0's device copy only (the host validated the file):
// `multiply` runs a product over that copy, and the decoder's check must name the block.
void expect_missing_escape_reported(const format::ContainerReader& r, cuda::GpuDecoder& dec, cudaStream_t stream,
                                    const std::function<void(const uint8_t*)>& multiply) {
  const format::PlaneRecord& e = dec.record(0).planes[0];
  const codec::Exp4Layout l = codec::exp4_parse(r.payload(e), "test");
  std::vector<uint8_t> bad(dec.host_range().begin(), dec.host_range().end());
  uint8_t& code = bad[e.offset - dec.range_offset() + l.codes + 1];
  ASSERT_NE(code & 0xF, 0xF);
  code |= 0xF;
  DeviceBuffer comp(bad.size());
  CLLM_CUDA_CHECK(cudaMemcpy(comp.p, bad.data(), bad.size(), cudaMemcpyHostToDevice));
  multiply(static_cast<const uint8_t*>(comp.p));
  try {
    dec.check(stream);
    ADD_FAILURE() << "a code 15 without an escape went unreported";
  } catch (const FormatError& err) {
    EXPECT_NE(std::string(err.what()).find("escape block 0"), std::string::npos) << err.what();
  }
}

// Exp4 products (exp4_kernel.cu) against the engine's GEMV over the decoded weights: the same
// bits, with escapes in the rows (zeros, huge values): scattered, a burst of two whole vectors in
// every row (several lanes and several weights of a vector escaping in one round), and one row
// with more escapes than a warp stages (looked up in global memory). Row lengths: rows that
// start inside an escape block (768, 200, 2312), only a tail of vectors (200, 768), whole rounds
// and a tail (2312), whole rounds only (4096), x staged as BF16 rather than floats (8256: rows
// longer than the kernel widens x for); a length not a multiple of 32 (no L2 prefetch),
// two tensors in one launch, accumulate and overlap on and off. A code 15 that has no escape (a
// corrupt device copy) is reported naming the tensor.
TEST(Exp4Gemv, SameBitsAsGemvOnDecodedWeights) {
  if (!test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  for (uint64_t cols : {uint64_t{768}, uint64_t{200}, uint64_t{2312}, uint64_t{4096}, uint64_t{8256}}) {
    test::TempDir dir;
    codec::EncodeOptions o;
    o.coder = codec::PlaneCoder::Exp4;
    const std::vector<uint8_t> w0 = escaping_matrix(kRows[0], cols);
    const std::string path =
        test::write_synthetic(dir.path(), o,
                              {{kNames[0], DType::BF16, {kRows[0], cols}, w0},
                               {kNames[1], DType::BF16, {kRows[1], cols}, matrix(kRows[1], cols, 2, false)}});
    format::ContainerReader r(path);
    cuda::GpuDecoder dec(r, {kNames[0], kNames[1]});
    ASSERT_TRUE(dec.gemv_ready(0) && dec.gemv_ready(1)) << cols;
    dec.upload_resident(nullptr);
    const uint64_t rows = kRows[0] + kRows[1];
    DeviceBuffer d0(dec.output_bytes(0)), d1(dec.output_bytes(1));
    void* outs[] = {d0.p, d1.p};
    dec.decode(dec.resident(), outs, nullptr);
    ASSERT_NO_THROW(dec.check(nullptr));
    const std::vector<uint8_t> x = random_x(cols, false, cols);
    DeviceBuffer d_x(x.size());
    CLLM_CUDA_CHECK(cudaMemcpy(d_x.p, x.data(), x.size(), cudaMemcpyHostToDevice));
    std::vector<float> y0(rows);
    for (uint64_t i = 0; i < rows; ++i) y0[i] = 0.5f * float(i % 5) - 1.0f;
    cudaStream_t stream = nullptr;
    CLLM_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    const k::Stream ks{stream, false, false};
    for (cuda::GemvOut out : kOutputs) {
      const bool accumulate = out == cuda::GemvOut::F32Add;
      DeviceBuffer y_ref(rows * 4), y_fused(rows * 4);
      CLLM_CUDA_CHECK(cudaMemcpy(y_ref.p, y0.data(), rows * 4, cudaMemcpyHostToDevice));
      auto* yr = static_cast<float*>(y_ref.p);
      k::gemv(k::Act::BF16, d0.p, d_x.p, int(cols), int(kRows[0]), yr, accumulate, ks);
      k::gemv(k::Act::BF16, d1.p, d_x.p, int(cols), int(kRows[1]), yr + kRows[0], accumulate, ks);
      CLLM_CUDA_CHECK(cudaStreamSynchronize(stream));
      const std::vector<float> want = read_back<float>(y_ref.p, rows);
      for (bool overlap : {false, true}) {
        CLLM_CUDA_CHECK(cudaMemcpy(y_fused.p, y0.data(), rows * 4, cudaMemcpyHostToDevice));
        dec.decode_gemv(dec.resident(), 0, 2, d_x.p, false, y_fused.p, out, stream, overlap);
        ASSERT_NO_THROW(dec.check(stream));
        expect_rows(y_fused.p, want, out, std::to_string(cols) + " columns" + describe(out, overlap));
      }
    }
    DeviceBuffer y(rows * 4);
    expect_missing_escape_reported(r, dec, stream, [&](const uint8_t* comp) {
      dec.decode_gemv(comp, 0, 2, d_x.p, false, y.p, cuda::GemvOut::F32, stream, false);
    });
    CLLM_CUDA_CHECK(cudaStreamDestroy(stream));
  }
}

// Exp4 products of 2 .. 8 sequences (the tensor-core kernel's exp4 twin) against the engine's
// tensor-core product over the decoded weights: the same bits, with the escapes of the GEMV test
// above (scattered, bursts across lanes and within a vector, and a 16-row tile with more escapes
// than a block stages, looked up in global memory), two tensors in one launch, y rows farther
// apart than the launch's rows, accumulate and overlap on and off. A tensor of rows not a
// multiple of 16 is not taken; a code 15 without its escape is reported.
TEST(Exp4Gemm, SameBitsAsGemmOnDecodedWeights) {
  if (!test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  constexpr uint64_t kTileRows[] = {48, 32};
  for (uint64_t cols : {uint64_t{768}, uint64_t{4096}}) {
    test::TempDir dir;
    codec::EncodeOptions o;
    o.coder = codec::PlaneCoder::Exp4;
    const std::vector<uint8_t> w0 = escaping_matrix(kTileRows[0], cols);  // row 5: 2048 escapes at 4096 columns
    const std::string path =
        test::write_synthetic(dir.path(), o,
                              {{kNames[0], DType::BF16, {kTileRows[0], cols}, w0},
                               {kNames[1], DType::BF16, {kTileRows[1], cols}, matrix(kTileRows[1], cols, 2, false)},
                               {"odd", DType::BF16, {kRows[0], cols}, matrix(kRows[0], cols, 3, false)}});
    format::ContainerReader r(path);
    cuda::GpuDecoder dec(r, {kNames[0], kNames[1], "odd"});
    ASSERT_TRUE(dec.gemm_ready(0) && dec.gemm_ready(1)) << cols;
    EXPECT_FALSE(dec.gemm_ready(2)) << "40 rows are not whole 16-row tiles";
    dec.upload_resident(nullptr);
    const uint64_t rows = kTileRows[0] + kTileRows[1];
    const int ldy = int(rows) + 3;
    DeviceBuffer d0(dec.output_bytes(0)), d1(dec.output_bytes(1)), d2(dec.output_bytes(2));
    void* outs[] = {d0.p, d1.p, d2.p};
    dec.decode(dec.resident(), outs, nullptr);
    ASSERT_NO_THROW(dec.check(nullptr));
    const int kMax = 8;
    const std::vector<uint8_t> x = random_x(kMax * cols, false, cols);
    DeviceBuffer d_x(x.size());
    CLLM_CUDA_CHECK(cudaMemcpy(d_x.p, x.data(), x.size(), cudaMemcpyHostToDevice));
    std::vector<float> y0(size_t(kMax) * ldy);
    for (size_t i = 0; i < y0.size(); ++i) y0[i] = 0.5f * float(i % 5) - 1.0f;
    cudaStream_t stream = nullptr;
    CLLM_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    const k::Stream ks{stream, false, false};
    DeviceBuffer y_ref(y0.size() * 4), y_fused(y0.size() * 4);
    for (int batch : {2, 5, 8}) {
      for (bool accumulate : {false, true}) {
        CLLM_CUDA_CHECK(cudaMemcpy(y_ref.p, y0.data(), y0.size() * 4, cudaMemcpyHostToDevice));
        auto* yr = static_cast<float*>(y_ref.p);
        k::gemm(k::Act::BF16, d0.p, d_x.p, batch, int(cols), int(kTileRows[0]), yr, ldy, accumulate, ks);
        k::gemm(k::Act::BF16, d1.p, d_x.p, batch, int(cols), int(kTileRows[1]), yr + kTileRows[0], ldy, accumulate, ks);
        CLLM_CUDA_CHECK(cudaStreamSynchronize(stream));
        const std::vector<float> want = read_back<float>(y_ref.p, y0.size());
        for (bool overlap : {false, true}) {
          CLLM_CUDA_CHECK(cudaMemcpy(y_fused.p, y0.data(), y0.size() * 4, cudaMemcpyHostToDevice));
          dec.decode_gemm(dec.resident(), 0, 2, d_x.p, batch, static_cast<float*>(y_fused.p), ldy, accumulate, stream,
                          overlap);
          ASSERT_NO_THROW(dec.check(stream));
          const std::vector<float> got = read_back<float>(y_fused.p, y0.size());
          ASSERT_EQ(0, std::memcmp(want.data(), got.data(), got.size() * 4))
              << cols << " columns, batch " << batch << " accumulate " << accumulate << " overlap " << overlap;
        }
      }
    }
    EXPECT_THROW(
        dec.decode_gemm(dec.resident(), 2, 1, d_x.p, 2, static_cast<float*>(y_fused.p), ldy, false, stream, false),
        Error);
    expect_missing_escape_reported(r, dec, stream, [&](const uint8_t* comp) {
      dec.decode_gemm(comp, 0, 2, d_x.p, 3, static_cast<float*>(y_fused.p), ldy, false, stream, false);
    });
    CLLM_CUDA_CHECK(cudaStreamDestroy(stream));
  }
}

// What the fused product cannot take is refused up front, never multiplied wrongly: rows longer
// than a chunk, and rows that are not a whole number of rounds.
TEST(DecodeGemvLimits, UnsupportedShapesAreNotReady) {
  if (!test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  test::TempDir dir;
  codec::EncodeOptions o;
  o.rans.chunk_symbols = 1024;
  o.row_aligned_chunks = false;  // else the long rows get chunks of their own length
  const std::string path =
      test::write_synthetic(dir.path(), o,
                            {{"long_rows", DType::BF16, {4, 2048}, test::gaussian_bf16(size_t{4} * 2048, 0.02, 1)},
                             {"odd_rows", DType::BF16, {8, 264}, test::gaussian_bf16(size_t{8} * 264, 0.02, 2)},
                             {"vector", DType::BF16, {4096}, test::gaussian_bf16(4096, 0.02, 3)}});
  format::ContainerReader r(path);
  cuda::GpuDecoder dec(r, {"long_rows", "odd_rows", "vector"});
  for (size_t i = 0; i < 3; ++i) EXPECT_FALSE(dec.gemv_ready(i)) << dec.record(i).name;
  DeviceBuffer y(64);
  EXPECT_THROW(dec.decode_gemv(nullptr, 0, 1, nullptr, false, y.p, cuda::GemvOut::F32, nullptr, false), Error);
}

// The escapes by row that the exp4 products read (cuda/exp4_row_slots.hpp): each row's escapes in
// element order, positions from its tile's origin (the start of the escape block holding the
// tile's first element: rows of 200 put tile 1's origin at element 0, not 3200), then unused
// slots; a row with more escapes than slots marked as overflowing, its neighbours unharmed.
// Short rows full of escapes keep 4 slots; rows too long for 24-bit positions get no table.
// Host code: runs without a GPU.
TEST(Exp4RowSlots, ListEachRowsEscapesInOrder) {
  constexpr uint64_t kRowsOf = 48, kCols = 200;
  std::vector<uint8_t> plane(kRowsOf * kCols);
  for (size_t i = 0; i < plane.size(); ++i) plane[i] = uint8_t(118 + i % 9);
  std::vector<std::vector<std::pair<uint64_t, uint8_t>>> want(kRowsOf);  // (column, exponent) by row
  for (uint64_t r = 0; r < kRowsOf; ++r) {
    const uint64_t n = r == 9 ? 150 : r % 5;  // row 9: more than any row's slots
    for (uint64_t j = 0; j < n; ++j) {
      const uint64_t c = (j * 37 + r) % kCols, e = r * kCols + c;
      if (plane[e] < 118) continue;  // already an escape (a repeated column)
      plane[e] = uint8_t(j % 2 ? 3 : 250);
      want[r].push_back({c, plane[e]});
    }
    std::sort(want[r].begin(), want[r].end());
  }
  const std::vector<uint8_t> payload = codec::exp4_encode(plane, codec::histogram(plane));
  const codec::Exp4Layout l = codec::exp4_parse(payload, "test");
  const cuda::Exp4RowSlots t = cuda::exp4_row_slots(payload, l, kRowsOf, kCols);
  ASSERT_GE(t.per_row, 4u);
  ASSERT_EQ(t.per_row % 4, 0u);
  ASSERT_LT(t.per_row, want[9].size());
  ASSERT_EQ(t.slots.size(), kRowsOf * t.per_row);
  for (uint64_t r = 0; r < kRowsOf; ++r) {
    const uint32_t* slots = t.slots.data() + r * t.per_row;
    if (r == 9) {
      EXPECT_EQ(slots[0], cuda::kRowOverflow);
      continue;
    }
    const uint64_t origin = cuda::exp4_tile_origin<uint64_t>(r, kCols, l.header.block_symbols);
    EXPECT_EQ(origin, r < 32 ? 0u : 4096u) << r;
    for (uint32_t k = 0; k < t.per_row; ++k) {
      if (k >= want[r].size()) {
        EXPECT_EQ(slots[k], cuda::kNoEscape) << "row " << r << " slot " << k;
        continue;
      }
      const uint64_t position = r * kCols + want[r][k].first - origin;
      EXPECT_EQ(slots[k], uint32_t(position << 8 | want[r][k].second)) << "row " << r << " slot " << k;
    }
  }
  // Escapes everywhere in rows of 8: the slots stay at 4 a row (the table is bounded by the
  // tensor, whatever its escapes), every row overflowing.
  std::vector<uint8_t> dense(64 * 8, 120);
  for (size_t i = 0; i < dense.size(); ++i)  // 6 of a row's 8 outside 120: at least 5 escapes a row
    if (i % 8 < 6) dense[i] = uint8_t(i % 2 ? 3 : 250);
  const std::vector<uint8_t> dense_payload = codec::exp4_encode(dense, codec::histogram(dense));
  const cuda::Exp4RowSlots d = cuda::exp4_row_slots(dense_payload, codec::exp4_parse(dense_payload, "test"), 64, 8);
  EXPECT_EQ(d.per_row, 4u);
  for (uint64_t r = 0; r < 64; ++r) EXPECT_EQ(d.slots[r * 4], cuda::kRowOverflow) << r;
  const std::vector<uint8_t> wide(uint64_t{2} * (1u << 20));  // rows of 2^20: 16 of them pass 24 bits
  const std::vector<uint8_t> wide_payload = codec::exp4_encode(wide, codec::histogram(wide));
  EXPECT_EQ(cuda::exp4_row_slots(wide_payload, codec::exp4_parse(wide_payload, "test"), 2, 1u << 20).per_row, 0u);
}

// The batched exp4 product reads 16 sign_mantissa bytes and 8 bytes of codes at a time: a tensor
// whose planes are not aligned for that (only a hand-made container could place them so) is
// left to decode-then-multiply, as is one that is not whole 16-row tiles of 64-long chunks.
// Host code: runs without a GPU.
TEST(DecodeGemvLimits, BatchedExp4TakesAlignedWholeTilesOnly) {
  cuda::Exp4Desc d{};
  d.cols = 128;
  d.elements = uint64_t{32} * 128;
  d.codes = 4096 + 32;
  d.sign_mantissa = 8192;
  EXPECT_TRUE(cuda::exp4_gemm_takes(d));
  cuda::Exp4Desc unaligned = d;
  unaligned.sign_mantissa += 8;
  EXPECT_FALSE(cuda::exp4_gemm_takes(unaligned));
  unaligned = d;
  unaligned.codes += 4;
  EXPECT_FALSE(cuda::exp4_gemm_takes(unaligned));
  cuda::Exp4Desc short_tile = d;
  short_tile.elements = uint64_t{24} * 128;  // 24 rows: one and a half tiles
  EXPECT_FALSE(cuda::exp4_gemm_takes(short_tile));
  cuda::Exp4Desc short_rows = d;
  short_rows.cols = 96;  // not whole 64-element chunks
  short_rows.elements = uint64_t{32} * 96;
  EXPECT_FALSE(cuda::exp4_gemm_takes(short_rows));
}

TEST(DecodeGemvLimits, CorruptChunkIsReported) {
  if (!test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  test::TempDir dir;
  codec::EncodeOptions o;
  o.rans.chunk_symbols = 4096;
  const uint64_t rows = 64, cols = 1024;
  const std::string path = test::write_synthetic(
      dir.path(), o, {{kNames[0], DType::BF16, {rows, cols}, test::gaussian_bf16(rows * cols, 0.02, 3)}});
  format::ContainerReader r(path);
  cuda::GpuDecoder dec(r, {kNames[0]});
  ASSERT_TRUE(dec.gemv_ready(0));
  const format::PlaneRecord& exp = dec.record(0).planes[0];
  DeviceBuffer comp(dec.range_bytes()), x(cols * 2), y(rows * 4);
  CLLM_CUDA_CHECK(cudaMemset(x.p, 0, cols * 2));
  const int trials = 20;
  const int detected = test::corruptions_reported(dec, exp, trials, 7, "up_proj", [&](const std::vector<uint8_t>& bad) {
    CLLM_CUDA_CHECK(cudaMemcpy(comp.p, bad.data(), bad.size(), cudaMemcpyHostToDevice));
    dec.decode_gemv(static_cast<const uint8_t*>(comp.p), 0, 1, x.p, false, y.p, cuda::GemvOut::F32, nullptr, false);
  });
  EXPECT_GE(detected, trials * 9 / 10) << "corrupt chunks must be reported";
}

}  // namespace
}  // namespace codecllm
