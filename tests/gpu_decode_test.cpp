// GPU decoding == CPU reference, byte for byte, for the real models and the synthetic edge
// cases; corrupt chunks are reported, never decoded silently wrong. Skips without a GPU.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <random>

#include "codec/byte_planes.hpp"
#include "codec/exp4_plane.hpp"
#include "codec/int8_quant.hpp"
#include "codec/rans.hpp"
#include "codec/tensor_codec.hpp"
#include "codecllm/codecllm.h"
#include "codecllm/error.hpp"
#include "cuda/cuda_check.hpp"
#include "cuda/gpu_decoder.hpp"
#include "cuda/zstd_batch.hpp"
#include "format/checksum.hpp"
#include "format/container.hpp"
#include "gpu_test_util.hpp"
#include "model/compress.hpp"
#include "synthetic_file.hpp"
#include "test_util.hpp"

namespace codecllm {
namespace {

using test::have_gpu;

#define REQUIRE_GPU() \
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device: GPU decode tests skipped"

using test::DeviceBuffer;

// What the GPU must produce for a record: the CPU reference, converted like the GPU output.
std::vector<uint8_t> expected_output(const format::ContainerReader& r, const format::TensorRecord& t,
                                     cuda::Int8Out int8_out) {
  codec::DecodedTensor d = codec::decode_tensor(
      t, [&](const format::PlaneRecord& p) { return r.payload(p); }, r.path());
  if (t.mode != format::TensorMode::Int8 || int8_out == cuda::Int8Out::Int8) return d.bytes;
  return codec::dequantize_rows(reinterpret_cast<const int8_t*>(d.bytes.data()), d.scales,
                                t.num_elements() / t.shape[0],
                                int8_out == cuda::Int8Out::Bf16 ? DType::BF16 : DType::F16);
}

// Decodes every tensor of a file on the GPU (in groups, as a layer would be) and compares.
// output_offset: outputs start that many bytes past an allocation (16-byte aligned when 0,
// which takes the kernels' vector stores; 4 takes their element-by-element stores).
// blocks_per_sm: GpuDecoder::set_blocks_per_sm (0: one block a job).
void expect_gpu_matches_cpu(const std::string& path, cuda::Int8Out int8_out, bool from_host, size_t output_offset = 0,
                            int blocks_per_sm = 0) {
  format::ContainerReader r(path);
  std::vector<std::string> names;
  for (const auto& t : r.index().tensors) names.push_back(t.name);
  for (size_t start = 0; start < names.size(); start += 9) {
    std::vector<std::string> group(names.begin() + long(start),
                                   names.begin() + long(std::min(names.size(), start + 9)));
    cuda::DecoderOptions o;
    o.int8_output = int8_out;
    cuda::GpuDecoder dec(r, group, o);
    dec.set_blocks_per_sm(blocks_per_sm);
    std::vector<std::unique_ptr<DeviceBuffer>> bufs;
    std::vector<void*> outs;
    for (size_t i = 0; i < group.size(); ++i) {
      bufs.push_back(std::make_unique<DeviceBuffer>(dec.output_bytes(i) + output_offset));
      void* p = static_cast<uint8_t*>(bufs.back()->p) + output_offset;
      CLLM_CUDA_CHECK(cudaMemset(p, 0xA5, dec.output_bytes(i)));  // poison: every byte must be written
      outs.push_back(p);
    }
    if (from_host) {
      dec.decode_from_host(dec.host_range().data(), outs.data(), nullptr);
    } else {
      dec.upload_resident(nullptr);
      dec.decode(dec.resident(), outs.data(), nullptr);
    }
    ASSERT_NO_THROW(dec.check(nullptr));
    for (size_t i = 0; i < group.size(); ++i) {
      std::vector<uint8_t> got(dec.output_bytes(i));
      CLLM_CUDA_CHECK(cudaMemcpy(got.data(), outs[i], got.size(), cudaMemcpyDeviceToHost));
      std::vector<uint8_t> want = expected_output(r, dec.record(i), int8_out);
      ASSERT_EQ(got.size(), want.size()) << group[i];
      ASSERT_TRUE(got == want) << path << ": GPU output of " << group[i] << " differs from the CPU reference";
    }
  }
}

std::string shared_models() { return CODECLLM_SHARED_MODELS; }

class RealModels : public ::testing::TestWithParam<std::tuple<const char*, const char*>> {};

TEST_P(RealModels, GpuEqualsCpu) {
  REQUIRE_GPU();
  auto [model, mode] = GetParam();
  const std::string src = shared_models() + "/" + model;
  if (!test::file_exists(src)) GTEST_SKIP() << src << " not found";
  test::TempDir dir;
  const std::string out = dir.path() + "/m.cllm";
  model::CompressOptions o;
  o.encode.mode = test::mode_named(mode);
  o.encode.class_tables = std::string(mode) == "lossless-classes";  // embeddings and lm_head
  model::compress_checkpoint(src, out, o);
  expect_gpu_matches_cpu(out, cuda::Int8Out::Bf16, false);
  expect_gpu_matches_cpu(out, cuda::Int8Out::F16, true);
  expect_gpu_matches_cpu(out, cuda::Int8Out::Int8, false);
}

INSTANTIATE_TEST_SUITE_P(Models, RealModels,
                         ::testing::Combine(::testing::Values("stories260K/stories260K.bin", "pycode24M"),
                                            ::testing::Values("lossless", "int8", "lossless-classes")));

TEST(GpuDecode, EdgeCases) {
  REQUIRE_GPU();
  std::vector<std::tuple<std::string, DType, std::vector<uint64_t>, std::vector<uint8_t>>> ts;
  const uint32_t chunk = 4096;
  for (size_t n : {size_t(0), size_t(1), size_t(31), size_t(32), size_t(33), size_t(chunk - 1), size_t(chunk),
                   size_t(chunk + 1), size_t(3 * chunk + 17)}) {
    ts.push_back({"bf16_" + std::to_string(n), DType::BF16, {n}, test::gaussian_bf16(n, 0.02, n)});
    ts.push_back({"f32_" + std::to_string(n), DType::F32, {n}, test::gaussian_f32(n, 0.02, n + 1)});
    ts.push_back({"f16_" + std::to_string(n), DType::F16, {n}, test::gaussian_f16(n, 0.02, n + 2)});
  }
  ts.push_back({"equal", DType::BF16, {10000}, std::vector<uint8_t>(20000, 0x3C)});
  std::mt19937 rng(5);
  std::vector<uint8_t> noise(30000);
  for (auto& b : noise) b = static_cast<uint8_t>(rng());
  ts.push_back({"noise", DType::BF16, {15000}, noise});
  ts.push_back({"unknown", DType::Unknown, {777}, std::vector<uint8_t>(noise.begin(), noise.begin() + 777)});
  std::vector<uint8_t> f64(8 * 5000);
  for (auto& b : f64) b = static_cast<uint8_t>(rng() % 7);
  ts.push_back({"f64", DType::F64, {5000}, f64});
  // int8 matrices: with an all-zero row, predictor on and off.
  std::vector<float> w = test::gaussian(300 * 257, 0.02, 9);
  for (size_t i = 0; i < 257; ++i) w[7 * 257 + i] = 0.0f;
  std::vector<uint8_t> wb(w.size() * 2);
  for (size_t i = 0; i < w.size(); ++i) {
    uint16_t h = codec::float_to_bf16(w[i]);
    std::memcpy(&wb[2 * i], &h, 2);
  }
  test::TempDir dir;
  for (auto predictor : {codec::PredictorChoice::Off, codec::PredictorChoice::On}) {
    for (auto mode : {format::TensorMode::Lossless, format::TensorMode::Int8}) {
      codec::EncodeOptions o;
      o.mode = mode;
      o.predictor = predictor;
      o.rans.chunk_symbols = chunk;
      auto all = ts;
      all.push_back({"layers.0.w", DType::BF16, {300, 257}, wb});
      all.push_back({"layers.0.w16", DType::F16, {257, 300}, test::gaussian_f16(257 * 300, 0.02, 4)});
      // Rows of a multiple of 16 columns take the int8 vector path: longer and shorter than a
      // group of 512 elements.
      all.push_back({"layers.0.w512", DType::BF16, {37, 512}, test::gaussian_bf16(37 * 512, 0.02, 6)});
      all.push_back({"layers.0.w32", DType::BF16, {1001, 32}, test::gaussian_bf16(1001 * 32, 0.02, 7)});
      const std::string path = test::write_synthetic(dir.path(), o, all);
      for (auto out : {cuda::Int8Out::Bf16, cuda::Int8Out::F16, cuda::Int8Out::Int8}) {
        expect_gpu_matches_cpu(path, out, false);
        expect_gpu_matches_cpu(path, out, true);
        expect_gpu_matches_cpu(path, out, false, /*output_offset=*/4);
        // A capped grid: each block takes jobs of different tensors (and tables) in turn.
        expect_gpu_matches_cpu(path, out, false, 0, /*blocks_per_sm=*/1);
      }
    }
  }
}

// Zstd planes (nvCOMP's batched decoder, then the element assembly) give the CPU reference's
// bytes for every dtype, plane layout (byte planes and whole values), size around the frame
// size, int8 output, resident and staged input, and unaligned outputs.
TEST(GpuDecode, ZstdPlanesEqualCpu) {
  REQUIRE_GPU();
  if (!cuda::have_nvcomp()) GTEST_SKIP() << "built without nvCOMP: zstd planes do not decode on the GPU";
  const uint32_t chunk = 4096;
  std::vector<std::tuple<std::string, DType, std::vector<uint64_t>, std::vector<uint8_t>>> ts;
  for (size_t n : {size_t(0), size_t(1), size_t(chunk - 1), size_t(chunk), size_t(chunk + 1), size_t(5 * chunk + 3)}) {
    ts.push_back({"bf16_" + std::to_string(n), DType::BF16, {n}, test::gaussian_bf16(n, 0.02, n)});
    ts.push_back({"f32_" + std::to_string(n), DType::F32, {n}, test::gaussian_f32(n, 0.02, n + 1)});
    ts.push_back({"f16_" + std::to_string(n), DType::F16, {n}, test::gaussian_f16(n, 0.02, n + 2)});
  }
  std::vector<uint8_t> periodic(2 * 64 * 1024);  // whole values beat byte planes here (one frame table, not two)
  for (size_t i = 0; i < periodic.size() / 2; ++i) {
    const uint16_t v = uint16_t(0x3c00 + (i % 5) * 0x1234);
    std::memcpy(&periodic[2 * i], &v, 2);
  }
  ts.push_back({"periodic", DType::BF16, {64, 1024}, periodic});
  ts.push_back({"layers.0.w", DType::BF16, {300, 257}, test::gaussian_bf16(300 * 257, 0.02, 9)});
  ts.push_back({"layers.0.w512", DType::BF16, {37, 512}, test::gaussian_bf16(37 * 512, 0.02, 6)});
  test::TempDir dir;
  for (auto mode : {format::TensorMode::Lossless, format::TensorMode::Int8}) {
    codec::EncodeOptions o;
    o.mode = mode;
    o.coder = codec::PlaneCoder::Zstd;
    o.zstd.chunk_bytes = chunk;
    const std::string path = test::write_synthetic(dir.path(), o, ts);
    format::ContainerReader r(path);
    bool whole = false;
    for (const auto& t : r.index().tensors) whole = whole || t.transform == format::Transform::None;
    if (mode == format::TensorMode::Lossless) {
      EXPECT_TRUE(whole) << "no tensor took whole-value zstd: untested path";
    }
    for (auto out : {cuda::Int8Out::Bf16, cuda::Int8Out::F16, cuda::Int8Out::Int8}) {
      expect_gpu_matches_cpu(path, out, false);
      expect_gpu_matches_cpu(path, out, true);
      expect_gpu_matches_cpu(path, out, false, /*output_offset=*/4);
    }
  }
}

// Exp4 exponents (exp4_kernel.cu) give the CPU reference's bytes: matrices and vectors, a tail
// that is not a whole vector, escapes (zeros, huge values, a run of them, at block edges),
// resident and staged input, unaligned outputs.
TEST(GpuDecode, Exp4PlanesEqualCpu) {
  REQUIRE_GPU();
  std::vector<std::tuple<std::string, DType, std::vector<uint64_t>, std::vector<uint8_t>>> ts;
  std::vector<uint8_t> escaped = test::gaussian_bf16(40 * 768, 0.02, 1);
  for (size_t i : {size_t{0}, size_t{7}, size_t{4095}, size_t{4096}, size_t{5000}, size_t{5001}, size_t{5002}}) {
    escaped[2 * i] = 0;
    escaped[2 * i + 1] = i % 2 == 0 ? 0 : 0x7f;  // +0, or a huge value
  }
  ts.push_back({"layers.0.escaped", DType::BF16, {40, 768}, escaped});
  ts.push_back({"layers.0.w512", DType::BF16, {37, 512}, test::gaussian_bf16(37 * 512, 0.02, 2)});
  for (size_t n : {size_t{0}, size_t{1}, size_t{1001}, size_t{4096}})
    ts.push_back({"bf16_" + std::to_string(n), DType::BF16, {n}, test::gaussian_bf16(n, 0.5, n)});
  ts.push_back({"f32_rans", DType::F32, {300}, test::gaussian_f32(300, 0.02, 3)});  // rANS beside exp4
  test::TempDir dir;
  codec::EncodeOptions o;
  o.coder = codec::PlaneCoder::Exp4;
  const std::string path = test::write_synthetic(dir.path(), o, ts);
  {
    format::ContainerReader r(path);
    const format::TensorRecord& t = *r.index().find_tensor("layers.0.escaped");
    ASSERT_EQ(t.planes[0].codec, format::PlaneCodec::Exp4);
    const codec::Exp4Layout l = codec::exp4_parse(r.payload(t.planes[0]), "test");
    EXPECT_GE(l.header.escapes, 7u) << "the escape path is untested";
  }
  expect_gpu_matches_cpu(path, cuda::Int8Out::Bf16, false);
  expect_gpu_matches_cpu(path, cuda::Int8Out::Bf16, true);
  expect_gpu_matches_cpu(path, cuda::Int8Out::Bf16, false, /*output_offset=*/4);
}

// A zstd payload whose bytes changed never reaches nvCOMP (which would treat a bad frame as
// undefined behaviour): the decoder refuses it at construction, naming the tensor.
TEST(GpuDecode, ZstdCorruptPayloadIsRefusedBeforeNvcomp) {
  REQUIRE_GPU();
  if (!cuda::have_nvcomp()) GTEST_SKIP() << "built without nvCOMP";
  test::TempDir dir;
  codec::EncodeOptions o;
  o.coder = codec::PlaneCoder::Zstd;
  const std::string path =
      test::write_synthetic(dir.path(), o, {{"w", DType::BF16, {64, 512}, test::gaussian_bf16(64 * 512, 0.02, 3)}});
  uint64_t at = 0;
  {
    format::ContainerReader r(path);
    const format::PlaneRecord& p = r.index().tensors[0].planes[0];
    ASSERT_EQ(p.codec, format::PlaneCodec::Zstd);
    at = p.offset + p.size / 2;
  }
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(std::streamoff(at));
    const char c = char(f.get() ^ 0x40);
    f.seekp(std::streamoff(at));
    f.put(c);
  }
  format::ContainerReader r(path);
  try {
    cuda::GpuDecoder dec(r, {"w"});
    FAIL() << "a corrupt zstd payload was accepted";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("'w'"), std::string::npos) << e.what();
  }
}

// Every precision a file may carry decodes on the GPU: the tables of 2^14 and 2^15 slots no
// longer fit in shared memory and are read from global memory instead.
TEST(GpuDecode, EveryProbBits) {
  REQUIRE_GPU();
  std::mt19937 rng(11);
  std::vector<uint8_t> skewed(2 * 20000);  // half zeros, the rest spread over 0..250: coded
  for (auto& b : skewed) b = static_cast<uint8_t>(rng() % 2 == 0 ? 0 : rng() % 251);
  // BF16 values whose exponents spread evenly over 64 values: every exponent frequency is
  // about 2^p / 64, so the tensor gets packed tables at every p (at 15 they exceed shared
  // memory and are read from global memory). The skewed plane's zero takes more than 2^12
  // slots from p = 13 on and keeps the split layout.
  std::vector<uint8_t> spread(2 * 15000);
  for (size_t i = 0; i < spread.size(); i += 2) {
    const auto v = static_cast<uint32_t>((rng() % 2) << 15 | (64 + rng() % 64) << 7 | rng() % 128);
    spread[i] = static_cast<uint8_t>(v);
    spread[i + 1] = static_cast<uint8_t>(v >> 8);
  }
  test::TempDir dir;
  for (uint32_t bits = codec::kMinProbBits; bits <= codec::kMaxProbBits; ++bits) {
    codec::EncodeOptions o;
    o.rans.chunk_symbols = 2048;
    o.rans.prob_bits = bits;
    const std::string path =
        test::write_synthetic(dir.path(), o,
                              {{"gauss", DType::BF16, {9000}, test::gaussian_bf16(9000, 0.02, bits)},
                               {"skewed", DType::Unknown, {skewed.size()}, skewed},
                               {"spread", DType::BF16, {spread.size() / 2}, spread}});
    SCOPED_TRACE("prob_bits " + std::to_string(bits));
    expect_gpu_matches_cpu(path, cuda::Int8Out::Bf16, false);
  }
}

// f32_as_bf16: float32 tensors come out as bf16 rounded to nearest even, exactly as the CPU's
// float_to_bf16 rounds the reference decode (ties, infinities, zeros and denormals included).
TEST(GpuDecode, Float32AsBf16) {
  REQUIRE_GPU();
  std::vector<float> v = test::gaussian(3 * 4096 + 17, 0.02, 3);
  const float special[] = {0.0f,     -0.0f,     1e-40f,      -1e-40f,     3.4e38f,      -3.4e38f,
                           INFINITY, -INFINITY, 1.00390625f, 1.01171875f, -1.00390625f, 65504.0f};
  std::copy(std::begin(special), std::end(special), v.begin());
  std::vector<uint8_t> bytes(v.size() * 4);
  std::memcpy(bytes.data(), v.data(), bytes.size());
  test::TempDir dir;
  codec::EncodeOptions o;
  o.rans.chunk_symbols = 4096;
  const std::string path = test::write_synthetic(dir.path(), o, {{"f32", DType::F32, {v.size()}, bytes}});
  format::ContainerReader r(path);
  cuda::DecoderOptions opt;
  opt.f32_as_bf16 = true;
  cuda::GpuDecoder dec(r, {"f32"}, opt);
  ASSERT_EQ(dec.output_bytes(0), v.size() * 2);
  DeviceBuffer out(dec.output_bytes(0));
  dec.decode_from_host(dec.host_range().data(), &out.p, nullptr);
  dec.check(nullptr);
  std::vector<uint16_t> got(v.size());
  CLLM_CUDA_CHECK(cudaMemcpy(got.data(), out.p, got.size() * 2, cudaMemcpyDeviceToHost));
  for (size_t i = 0; i < v.size(); ++i) ASSERT_EQ(got[i], codec::float_to_bf16(v[i])) << "element " << i;
}

TEST(GpuDecode, LargeTensorsAndSmallChunks) {
  REQUIRE_GPU();
  test::TempDir dir;
  codec::EncodeOptions o;
  o.rans.chunk_symbols = 1024;
  const size_t n = 10'000'019;
  const std::string path =
      test::write_synthetic(dir.path(), o, {{"big", DType::BF16, {n}, test::gaussian_bf16(n, 0.02, 1)}});
  expect_gpu_matches_cpu(path, cuda::Int8Out::Bf16, false);
  for (int blocks : {1, 3}) expect_gpu_matches_cpu(path, cuda::Int8Out::Bf16, false, 0, blocks);
}

TEST(GpuDecode, CorruptChunkIsReported) {
  REQUIRE_GPU();
  test::TempDir dir;
  const size_t n = 200000;
  const std::string path =
      test::write_synthetic(dir.path(), {}, {{"w", DType::BF16, {n}, test::gaussian_bf16(n, 0.02, 3)}});
  format::ContainerReader r(path);
  const format::PlaneRecord& exp = r.index().tensors[0].planes[0];
  ASSERT_EQ(exp.codec, format::PlaneCodec::Rans);
  cuda::GpuDecoder dec(r, {"w"});
  DeviceBuffer out(dec.output_bytes(0));
  void* outs[] = {out.p};
  const int trials = 40;
  const int detected = test::corruptions_reported(dec, exp, trials, 11, "'w'", [&](const std::vector<uint8_t>& bad) {
    dec.decode_from_host(bad.data(), outs, nullptr);
  });
  EXPECT_GE(detected, trials * 9 / 10) << "corrupt chunks must be reported";
  dec.decode_from_host(dec.host_range().data(), outs, nullptr);
  EXPECT_NO_THROW(dec.check(nullptr)) << "status must reset after a reported failure";
  EXPECT_THROW(dec.set_blocks_per_sm(-1), Error);
}

// A capped grid (one block an SM, each block taking several jobs in turn: 1563 chunks of 1024
// symbols are 196 jobs) reports corrupt chunks of every job it takes.
TEST(GpuDecode, CappedGridReportsCorruptChunks) {
  REQUIRE_GPU();
  test::TempDir dir;
  const size_t n = 1600000;
  codec::EncodeOptions o;
  o.rans.chunk_symbols = 1024;
  const std::string path =
      test::write_synthetic(dir.path(), o, {{"w", DType::BF16, {n}, test::gaussian_bf16(n, 0.02, 4)}});
  format::ContainerReader r(path);
  const format::PlaneRecord& exp = r.index().tensors[0].planes[0];
  cuda::GpuDecoder dec(r, {"w"});
  dec.set_blocks_per_sm(1);
  DeviceBuffer out(dec.output_bytes(0));
  void* outs[] = {out.p};
  const int trials = 40;
  const int detected = test::corruptions_reported(dec, exp, trials, 12, "'w'", [&](const std::vector<uint8_t>& bad) {
    dec.decode_from_host(bad.data(), outs, nullptr);
  });
  EXPECT_GE(detected, trials * 9 / 10) << "corrupt chunks must be reported with a capped grid";
  expect_gpu_matches_cpu(path, cuda::Int8Out::Bf16, false, 0, 1);
}

// bf16_exponents_only: an eligible matrix decodes to its exponent plane, byte for byte, and its
// raw sign_mantissa plane is found in the resident copy; everything else decodes as usual.
TEST(GpuDecode, Bf16ExponentsOnly) {
  REQUIRE_GPU();
  test::TempDir dir;
  codec::EncodeOptions o;
  o.rans.chunk_symbols = 4096;  // many chunks, and a partial last group
  const uint64_t rows = 301, cols = 512, n = rows * cols;
  const std::vector<uint8_t> w = test::gaussian_bf16(n, 0.02, 5);
  const std::string path =
      test::write_synthetic(dir.path(), o,
                            {{"w", DType::BF16, {rows, cols}, w},
                             {"norm", DType::BF16, {cols}, test::gaussian_bf16(cols, 1.0, 6)},
                             {"f32", DType::F32, {7, 64}, test::gaussian_f32(size_t{7} * 64, 0.1, 7)}});
  format::ContainerReader r(path);
  ASSERT_TRUE(cuda::GpuDecoder::exponents_only_eligible(r, r.index().tensors[0]));
  ASSERT_FALSE(cuda::GpuDecoder::exponents_only_eligible(r, r.index().tensors[1]));  // not a matrix
  ASSERT_FALSE(cuda::GpuDecoder::exponents_only_eligible(r, r.index().tensors[2]));
  cuda::DecoderOptions opt;
  opt.bf16_exponents_only = true;
  cuda::GpuDecoder dec(r, {"w", "norm", "f32"}, opt);
  ASSERT_TRUE(dec.exponents_only(0));
  ASSERT_FALSE(dec.exponents_only(1));
  ASSERT_FALSE(dec.exponents_only(2));
  ASSERT_EQ(dec.output_bytes(0), n);
  EXPECT_EQ(dec.resident_sign_mantissa(0), nullptr) << "no resident copy yet";
  dec.upload_resident(nullptr);
  std::vector<std::unique_ptr<DeviceBuffer>> bufs;
  std::vector<void*> outs;
  for (size_t i = 0; i < 3; ++i) {
    bufs.push_back(std::make_unique<DeviceBuffer>(dec.output_bytes(i)));
    outs.push_back(bufs.back()->p);
  }
  dec.decode(dec.resident(), outs.data(), nullptr);
  dec.check(nullptr);
  const std::vector<std::vector<uint8_t>> planes = codec::split_planes(format::Transform::FloatSplit, 2, w);
  std::vector<uint8_t> got(n);
  CLLM_CUDA_CHECK(cudaMemcpy(got.data(), outs[0], n, cudaMemcpyDeviceToHost));
  EXPECT_EQ(got, planes[0]) << "exponent bytes";
  CLLM_CUDA_CHECK(cudaMemcpy(got.data(), dec.resident_sign_mantissa(0), n, cudaMemcpyDeviceToHost));
  EXPECT_EQ(got, planes[1]) << "sign_mantissa bytes in the resident copy";
  for (size_t i = 1; i < 3; ++i) {
    const std::vector<uint8_t> want = expected_output(r, r.index().tensors[i], cuda::Int8Out::Bf16);
    std::vector<uint8_t> full(want.size());
    CLLM_CUDA_CHECK(cudaMemcpy(full.data(), outs[i], full.size(), cudaMemcpyDeviceToHost));
    EXPECT_EQ(full, want) << r.index().tensors[i].name;
  }
}

// ---- Class-table exponents (RNS2): their own kernel, in the same decode call as the rest ----

// A BF16 matrix whose rows and columns have different scales, so that the classes matter;
// every 11th row is constant (its class's table gives one symbol all M slots).
std::vector<uint8_t> scaled_bf16(uint64_t rows, uint64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> row_scale(rows), col_scale(cols);
  for (auto& s : row_scale) s = std::ldexp(1.0f, -2 - static_cast<int>(rng() % 12));
  for (auto& s : col_scale) s = std::ldexp(1.0f, -static_cast<int>(rng() % 4));
  std::vector<uint8_t> bytes(rows * cols * 2);
  for (uint64_t r = 0; r < rows; ++r) {
    for (uint64_t c = 0; c < cols; ++c) {
      const float v = r % 11 == 5 ? 0.5f : normal(rng) * row_scale[r] * col_scale[c];
      const uint16_t h = codec::float_to_bf16(v);
      std::memcpy(&bytes[2 * (r * cols + c)], &h, 2);
    }
  }
  return bytes;
}

struct ClassCase {
  std::string name;
  uint64_t rows, cols;
  codec::ClassAxis axis;
  uint32_t prob_bits;
  bool sm_coded;  // sign_mantissa forced to a (one-table) rANS plane instead of raw
};

void set_plane(codec::EncodedTensor& e, const std::string& role, std::vector<uint8_t> payload, bool coded) {
  for (size_t k = 0; k < e.record.planes.size(); ++k) {
    format::PlaneRecord& p = e.record.planes[k];
    if (p.role != role) continue;
    p.codec = coded ? format::PlaneCodec::Rans : format::PlaneCodec::Raw;
    p.size = payload.size();
    p.payload_xxh3 = format::xxh3_64(payload.data(), payload.size());
    e.payloads[k] = std::move(payload);
    return;
  }
  FAIL() << "no plane " << role;
}

// Writes the cases (exponents coded with 4 class tables, chunks of `chunk` symbols) and one
// ordinary BF16 matrix "plain"; sources[i] receives the bytes of case i.
std::string write_class_file(const std::string& dir, const std::vector<ClassCase>& cases, uint32_t chunk,
                             std::vector<std::vector<uint8_t>>& sources) {
  codec::EncodeOptions o;
  o.rans.chunk_symbols = chunk;
  o.row_aligned_chunks = false;  // the chunks of the planes replaced below
  std::vector<codec::EncodedTensor> encoded;
  for (const ClassCase& c : cases) {
    sources.push_back(scaled_bf16(c.rows, c.cols, static_cast<uint32_t>(c.rows * 7 + c.cols)));
    codec::EncodedTensor e = codec::encode_tensor(c.name, DType::BF16, {c.rows, c.cols}, sources.back(), o);
    const auto planes = codec::split_planes(format::Transform::FloatSplit, 2, sources.back());
    codec::ClassMap map;
    map.axis = c.axis;
    map.cols = static_cast<uint32_t>(c.cols);
    map.num_tables = 4;
    const uint64_t ids = c.axis == codec::ClassAxis::Rows ? c.rows : c.cols;
    for (uint64_t i = 0; i < ids; ++i) map.classes.push_back(static_cast<uint8_t>(i % 11 == 5 ? 3 : i % 3));
    codec::RansOptions ro;
    ro.chunk_symbols = chunk;
    ro.prob_bits = c.prob_bits;
    set_plane(e, "exponent", codec::rans_encode_classes(planes[0], ro, map), true);
    if (c.sm_coded) {
      set_plane(e, "sign_mantissa", codec::rans_encode(planes[1], ro), true);
    } else {
      set_plane(e, "sign_mantissa", planes[1], false);
    }
    encoded.push_back(std::move(e));
  }
  encoded.push_back(codec::encode_tensor("plain", DType::BF16, {64, 256}, test::gaussian_bf16(64 * 256, 0.02, 8), o));
  return test::write_encoded(dir + "/classes.cllm", std::move(encoded));
}

TEST(GpuDecode, ClassTableExponents) {
  REQUIRE_GPU();
  using codec::ClassAxis;
  const std::vector<ClassCase> cases = {
      {"embed_rows", 640, 288, ClassAxis::Rows, 13, false},
      {"head_cols", 300, 4096, ClassAxis::Columns, 13, false},
      // A partial last chunk ending in a partial step; 2^15-slot tables (a constant class gets
      // one symbol of frequency 2^15); sign_mantissa coded with one table beside the classes.
      {"partial_rows", 333, 97, ClassAxis::Rows, 15, true},
      {"partial_cols", 333, 97, ClassAxis::Columns, 8, false},
  };
  test::TempDir dir;
  std::vector<std::vector<uint8_t>> sources;
  const std::string path = write_class_file(dir.path(), cases, 4096, sources);
  format::ContainerReader r(path);
  std::vector<std::string> names;
  for (const auto& t : r.index().tensors) names.push_back(t.name);
  for (const ClassCase& c : cases) {
    const format::TensorRecord* t = r.index().find_tensor(c.name);
    ASSERT_TRUE(codec::rans_is_class_plane(r.payload(*t->plane("exponent")))) << c.name;
  }
  // Both decode paths, outputs not 16-byte aligned, and options that must not matter.
  const struct {
    bool from_host;
    size_t offset;
    bool options;
  } runs[] = {{false, 0, false}, {true, 0, false}, {false, 4, false}, {true, 0, true}};
  for (const auto& run : runs) {
    cuda::DecoderOptions opt;
    opt.external_scratch = opt.f32_as_bf16 = run.options;
    cuda::GpuDecoder dec(r, names, opt);
    std::vector<std::unique_ptr<DeviceBuffer>> bufs;
    std::vector<void*> outs;
    for (size_t i = 0; i < names.size(); ++i) {
      if (i < cases.size()) {
        EXPECT_FALSE(dec.gemv_ready(i)) << names[i];
        ASSERT_EQ(dec.output_bytes(i), sources[i].size());
      }
      bufs.push_back(std::make_unique<DeviceBuffer>(dec.output_bytes(i) + run.offset));
      outs.push_back(static_cast<uint8_t*>(bufs.back()->p) + run.offset);
      CLLM_CUDA_CHECK(cudaMemset(outs.back(), 0xA5, dec.output_bytes(i)));  // every byte must be written
    }
    if (run.from_host) {
      dec.decode_from_host(dec.host_range().data(), outs.data(), nullptr);
    } else {
      dec.upload_resident(nullptr);
      dec.decode(dec.resident(), outs.data(), nullptr);
    }
    ASSERT_NO_THROW(dec.check(nullptr));
    for (size_t i = 0; i < cases.size(); ++i) {
      std::vector<uint8_t> got(sources[i].size());
      CLLM_CUDA_CHECK(cudaMemcpy(got.data(), outs[i], got.size(), cudaMemcpyDeviceToHost));
      ASSERT_TRUE(got == sources[i]) << names[i] << ": GPU output differs from the source";
    }
  }
  expect_gpu_matches_cpu(path, cuda::Int8Out::Bf16, false);  // "plain" too, and the CPU reference
}

TEST(GpuDecode, ClassTableCorruptChunkIsReported) {
  REQUIRE_GPU();
  test::TempDir dir;
  std::vector<std::vector<uint8_t>> sources;
  const std::string path =
      write_class_file(dir.path(), {{"embed_rows", 640, 288, codec::ClassAxis::Rows, 13, false}}, 4096, sources);
  format::ContainerReader r(path);
  const format::PlaneRecord& exp = *r.index().find_tensor("embed_rows")->plane("exponent");
  cuda::GpuDecoder dec(r, {"embed_rows"});
  DeviceBuffer out(dec.output_bytes(0));
  void* outs[] = {out.p};
  // One bit of lane 3's initial state in chunk 5: the report names that chunk.
  const ByteSpan payload = r.payload(exp);
  const codec::RansClassPlane h = codec::rans_parse_class_plane(payload, "test");
  uint32_t end4;
  std::memcpy(&end4, payload.data() + h.chunk_ends_offset + 4 * 4, 4);
  std::vector<uint8_t> bad(dec.host_range().begin(), dec.host_range().end());
  bad[exp.offset - dec.range_offset() + h.data_offset + end4 + 4 * 3 + 1] ^= 0x10;
  dec.decode_from_host(bad.data(), outs, nullptr);
  try {
    dec.check(nullptr);
    ADD_FAILURE() << "a corrupt state must be reported";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("'embed_rows'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("chunk 5 "), std::string::npos) << e.what();
  }
  // Random bit flips in the chunk data.
  const int trials = 40;
  const int detected =
      test::corruptions_reported(dec, exp, trials, 13, "'embed_rows'",
                                 [&](const std::vector<uint8_t>& b) { dec.decode_from_host(b.data(), outs, nullptr); });
  EXPECT_GE(detected, trials * 9 / 10) << "corrupt chunks must be reported";
  dec.decode_from_host(dec.host_range().data(), outs, nullptr);
  EXPECT_NO_THROW(dec.check(nullptr)) << "status must reset after a reported failure";
}

// Class tables anywhere but the exponent plane of a lossless BF16 tensor are refused at plan
// time, naming the tensor (before any device memory is taken: runs without a GPU too).
TEST(GpuDecode, ClassTablesElsewhereAreRefused) {
  test::TempDir dir;
  const std::string path = dir.path() + "/refused.cllm";
  {
    format::ContainerWriter w(path);
    format::Index idx;
    codec::EncodeOptions o;
    o.rans.chunk_symbols = 4096;
    o.row_aligned_chunks = false;
    codec::ClassMap map;
    map.cols = 96;
    map.num_tables = 2;
    for (int i = 0; i < 200; ++i) map.classes.push_back(static_cast<uint8_t>(i % 2));
    codec::RansOptions ro;
    ro.chunk_symbols = 4096;
    // F16 byte plane 1 (sign, exponent, top mantissa bits), and a BF16 sign_mantissa plane.
    const std::vector<uint8_t> f16 = test::gaussian_f16(200 * 96, 0.02, 1);
    codec::EncodedTensor a = codec::encode_tensor("f16_classes", DType::F16, {200, 96}, f16, o);
    set_plane(a, a.record.planes[1].role,
              codec::rans_encode_classes(codec::split_planes(a.record.transform, 2, f16)[1], ro, map), true);
    const std::vector<uint8_t> bf16 = test::gaussian_bf16(200 * 96, 0.02, 2);
    codec::EncodedTensor b = codec::encode_tensor("sm_classes", DType::BF16, {200, 96}, bf16, o);
    set_plane(b, "sign_mantissa",
              codec::rans_encode_classes(codec::split_planes(b.record.transform, 2, bf16)[1], ro, map), true);
    for (codec::EncodedTensor* e : {&a, &b}) {
      for (size_t k = 0; k < e->payloads.size(); ++k) e->record.planes[k].offset = w.add_payload(e->payloads[k]);
      idx.tensors.push_back(e->record);
    }
    w.finish(idx);
  }
  format::ContainerReader r(path);
  for (const char* name : {"f16_classes", "sm_classes"}) {
    try {
      cuda::GpuDecoder dec(r, {name});
      ADD_FAILURE() << name << ": a class-table plane out of place must be refused";
    } catch (const FormatError& e) {
      EXPECT_NE(std::string(e.what()).find(std::string("'") + name + "'"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("RNS2"), std::string::npos) << e.what();
    }
  }
}

TEST(CApi, DecodeThroughTheCInterface) {
  REQUIRE_GPU();
  test::TempDir dir;
  const size_t n = 5000;
  std::vector<uint8_t> src = test::gaussian_bf16(n, 0.02, 2);
  const std::string path = test::write_synthetic(dir.path(), {}, {{"w", DType::BF16, {n}, src}});
  cllm_file* f = nullptr;
  ASSERT_EQ(cllm_open(path.c_str(), &f), CLLM_OK) << cllm_last_error();
  EXPECT_EQ(cllm_num_tensors(f), 1);
  const char* names[] = {"w"};
  cllm_decoder* d = nullptr;
  ASSERT_EQ(cllm_decoder_create(f, names, 1, CLLM_INT8_AS_BF16, &d), CLLM_OK) << cllm_last_error();
  DeviceBuffer out(cllm_decoder_output_bytes(d, 0));
  void* outs[] = {out.p};
  EXPECT_EQ(cllm_decode(d, outs, nullptr), CLLM_ERR_ARGUMENT);  // not uploaded yet
  ASSERT_EQ(cllm_decoder_upload(d, nullptr), CLLM_OK);
  ASSERT_EQ(cllm_decode(d, outs, nullptr), CLLM_OK);
  ASSERT_EQ(cllm_decoder_check(d, nullptr), CLLM_OK) << cllm_last_error();
  std::vector<uint8_t> got(src.size());
  CLLM_CUDA_CHECK(cudaMemcpy(got.data(), out.p, got.size(), cudaMemcpyDeviceToHost));
  EXPECT_EQ(got, src);
  const char* missing[] = {"nope"};
  cllm_decoder* d2 = nullptr;
  EXPECT_EQ(cllm_decoder_create(f, missing, 1, CLLM_INT8_AS_BF16, &d2), CLLM_ERR_ARGUMENT);
  EXPECT_NE(std::string(cllm_last_error()).find("nope"), std::string::npos);
  cllm_decoder_destroy(d);
  cllm_close(f);
}

}  // namespace
}  // namespace codecllm
