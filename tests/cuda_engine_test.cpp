// CUDA backend: every placement must give logits bit-identical to gpu (same bf16 weights, the
// decode is exact, the same kernels run), and all must agree with the CPU reference within
// bf16 rounding; batches must track the CPU per sequence.
#include "engine/cuda_engine.hpp"

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>

#include "codec/int8_quant.hpp"
#include "codecllm/error.hpp"
#include "cuda/zstd_batch.hpp"
#include "engine/cpu_engine.hpp"
#include "engine/sampler.hpp"
#include "gpu_test_util.hpp"
#include "model/checkpoint.hpp"
#include "model/compress.hpp"
#include "model/synthetic.hpp"
#include "test_util.hpp"
#include "tiny_model.hpp"

namespace codecllm {
namespace {

using test::have_gpu;

// How far logits are from a reference: the largest difference, and the reference's largest
// magnitude (the logit scale a difference is judged against).
struct LogitGap {
  double max_diff = 0, scale = 0;
};
LogitGap logit_gap(const float* logits, const float* ref, int vocab) {
  LogitGap g;
  for (int i = 0; i < vocab; ++i) {
    g.max_diff = std::max(g.max_diff, double(std::fabs(logits[i] - ref[i])));
    g.scale = std::max(g.scale, double(std::fabs(ref[i])));
  }
  return g;
}

class CudaEngineModes : public ::testing::TestWithParam<const char*> {};

const std::string kPycode = std::string(CODECLLM_SHARED_MODELS) + "/pycode24M";

std::string compress_pycode(const test::TempDir& dir, const std::string& mode) {
  std::string path = dir.path() + "/m.cllm";
  model::CompressOptions co;
  co.encode.mode = test::mode_named(mode);
  model::compress_checkpoint(kPycode, path, co);
  return path;
}

TEST_P(CudaEngineModes, EveryPlacementEqualsBaselineAndTracksCpu) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  if (!test::file_exists(kPycode)) GTEST_SKIP() << kPycode << " not found";
  test::TempDir dir;
  format::ContainerReader file(compress_pycode(dir, GetParam()));
  engine::CudaEngineOptions o;
  o.max_seq_len = 64;
  auto gpu = engine::make_cuda_engine(file, o);
  std::vector<std::unique_ptr<engine::Engine>> others;
  for (auto p : {Placement::GpuCompressed, Placement::Host, Placement::HostRaw}) {
    o.placement = p;
    others.push_back(engine::make_cuda_engine(file, o));
  }
  // gpu-compressed with one slot (decode and compute in turn), two, and five (four layers
  // decoding at once, on four streams); the first layers of each step decode at the end of the
  // step before, so the steps below also check that hand-over.
  o.placement = Placement::GpuCompressed;
  for (int slots : {1, 2, 5}) {
    o.decode_slots = slots;
    others.push_back(engine::make_cuda_engine(file, o));
  }
  o.decode_slots = 0;
  o.bf16_exponents_only = false;  // whole BF16 values decoded into the slots
  others.push_back(engine::make_cuda_engine(file, o));
  o.bf16_exponents_only = true;
  const size_t fixed = others.size();
  // Budgets a little under what gpu placement takes, lowered until the planner has to compress
  // some layers: the mixed plan must stay within its budget and give the same logits.
  o.placement = Placement::Auto;
  const uint64_t full = gpu->memory().device_bytes, step = full / 1024;
  std::string stopped;  // why the search ended, for the message below
  for (uint64_t budget = full + (16u << 20); budget > step && others.size() == fixed; budget -= step) {
    o.vram_budget = budget;
    std::unique_ptr<engine::Engine> e;
    try {
      e = engine::make_cuda_engine(file, o);
    } catch (const Error& err) {
      stopped = err.what();
      break;  // below the smallest plan
    }
    const std::string d = e->describe();
    if (d.find("gpu-compressed") == std::string::npos && d.find("host") == std::string::npos) continue;
    EXPECT_LE(e->memory().device_bytes, budget) << e->describe();
    others.push_back(std::move(e));
  }
  ASSERT_EQ(others.size(), fixed + 1) << "no budget gave a plan with compressed or host layers (full " << full
                                      << " bytes; stopped at: " << stopped << ")";
  auto cpu = engine::make_cpu_engine(file, {});
  const int vocab = gpu->config().vocab;
  std::vector<int> ids = {1, 770, 29871};
  int matched = 0;
  for (int pos = 0; pos < 24; ++pos) {
    const int token = ids[pos];
    const float* lg = gpu->forward(token, pos);
    std::vector<float> g(lg, lg + vocab);
    for (auto& e : others) {
      const float* lp = e->forward(token, pos);
      ASSERT_EQ(0, std::memcmp(g.data(), lp, sizeof(float) * vocab)) << e->describe() << " differs from gpu at " << pos;
    }
    const float* lc = cpu->forward(token, pos);
    const LogitGap gap = logit_gap(g.data(), lc, vocab);
    EXPECT_LT(gap.max_diff, 0.05 * gap.scale) << "CUDA vs CPU logits at position " << pos;
    const int next_gpu = engine::argmax(g.data(), vocab), next_cpu = engine::argmax(lc, vocab);
    matched += next_gpu == next_cpu;
    if (pos + 1 >= static_cast<int>(ids.size())) ids.push_back(next_cpu);
  }
  EXPECT_GE(matched, 20) << "greedy choices of the CUDA and CPU engines should mostly agree";
}

INSTANTIATE_TEST_SUITE_P(Modes, CudaEngineModes, ::testing::Values("lossless", "int8"));

// Three sequences with different prompts in one batch: each row of logits tracks the CPU
// engine run on that sequence alone, and the host placement gives the same bits as gpu.
TEST(CudaEngineBatch, SequencesAreIndependent) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  if (!test::file_exists(kPycode)) GTEST_SKIP() << kPycode << " not found";
  test::TempDir dir;
  format::ContainerReader file(compress_pycode(dir, "lossless"));
  engine::CudaEngineOptions o;
  o.max_seq_len = 32;
  o.batch = 3;
  auto gpu = engine::make_cuda_engine(file, o);
  o.placement = Placement::Host;
  auto host = engine::make_cuda_engine(file, o);
  const std::vector<std::vector<int>> seqs = {
      {1, 770, 29871, 13, 1678, 736}, {1, 29871, 29871, 29871, 29871, 29871}, {1, 13, 13, 500, 600, 700}};
  std::vector<std::unique_ptr<engine::Engine>> cpu(3);
  for (auto& c : cpu) c = engine::make_cpu_engine(file, {});
  const int vocab = gpu->config().vocab;
  for (int pos = 0; pos < 6; ++pos) {
    const int tokens[3] = {seqs[0][pos], seqs[1][pos], seqs[2][pos]};
    const float* lg = gpu->forward_batch(tokens, pos);
    std::vector<float> g(lg, lg + size_t{3} * vocab);
    ASSERT_EQ(0, std::memcmp(g.data(), host->forward_batch(tokens, pos), g.size() * sizeof(float)))
        << "host batch differs from gpu batch at " << pos;
    for (int b = 0; b < 3; ++b) {
      const float* lc = cpu[b]->forward(tokens[b], pos);
      const LogitGap gap = logit_gap(g.data() + size_t(b) * vocab, lc, vocab);
      EXPECT_LT(gap.max_diff, 0.05 * gap.scale) << "sequence " << b << " at position " << pos;
    }
  }
}

// Each KV cache dtype, and serial launches instead of overlapped ones: greedy decoding follows
// the f32 cache, logits within a small fraction of their scale; serial launches change no bit.
TEST(CudaEngineOptions, KvDtypesAndSerialLaunches) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  if (!test::file_exists(kPycode)) GTEST_SKIP() << kPycode << " not found";
  test::TempDir dir;
  format::ContainerReader file(compress_pycode(dir, "lossless"));
  engine::CudaEngineOptions o;
  o.max_seq_len = 48;
  auto f32 = engine::make_cuda_engine(file, o);
  o.overlap_launches = false;
  auto serial = engine::make_cuda_engine(file, o);
  o.overlap_launches = true;
  std::vector<std::unique_ptr<engine::Engine>> low;
  for (auto t : {engine::KvDtype::BF16, engine::KvDtype::F16}) {
    o.kv_dtype = t;
    low.push_back(engine::make_cuda_engine(file, o));
    EXPECT_NE(low.back()->describe().find(std::string(engine::kv_dtype_name(t)) + " KV cache"), std::string::npos);
  }
  EXPECT_LT(low[0]->memory().kv_cache_bytes, f32->memory().kv_cache_bytes);
  const int vocab = f32->config().vocab;
  int token = 1, agree = 0;
  const int steps = 40;
  for (int pos = 0; pos < steps; ++pos) {
    const float* lf = f32->forward(token, pos);
    std::vector<float> ref(lf, lf + vocab);
    ASSERT_EQ(0, std::memcmp(ref.data(), serial->forward(token, pos), sizeof(float) * vocab)) << "at " << pos;
    for (auto& e : low) {
      const float* l = e->forward(token, pos);
      const LogitGap gap = logit_gap(l, ref.data(), vocab);
      EXPECT_LT(gap.max_diff, 0.02 * gap.scale) << e->describe() << " at " << pos;
      agree += engine::argmax(l, vocab) == engine::argmax(ref.data(), vocab);
    }
    token = engine::argmax(ref.data(), vocab);
  }
  EXPECT_GE(agree, 2 * steps - 4) << "greedy choices with a 16-bit KV cache should follow the f32 cache";
}

// An F16 model (pycode24M's BF16 weights widened to F16 exactly): the CUDA backend runs it in
// f16, every placement gives the same bits as gpu, in both modes, and it tracks the CPU engine.
TEST(CudaEngineF16, RunsAnF16ModelInF16) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  if (!test::file_exists(kPycode)) GTEST_SKIP() << kPycode << " not found";
  test::TempDir dir;
  const auto src = model::open_checkpoint(kPycode);
  model::MemoryCheckpoint f16(src->source() + " as f16", src->config_json());
  for (const auto& [name, bytes] : src->extra_files()) f16.add_file(name, bytes);
  for (size_t i = 0; i < src->tensors().size(); ++i) {
    const model::TensorInfo& t = src->tensors()[i];
    ASSERT_EQ(t.dtype, DType::BF16) << t.name;
    const ByteSpan in = src->tensor_data(i).data;
    std::vector<uint8_t> out(in.size());
    for (size_t e = 0; e + 1 < in.size(); e += 2) {
      const uint16_t h = codec::float_to_f16(codec::bf16_to_float(uint16_t(in[e] | in[e + 1] << 8)));
      out[e] = uint8_t(h);
      out[e + 1] = uint8_t(h >> 8);
    }
    f16.add(t.name, DType::F16, t.shape, std::move(out));
  }
  for (const char* mode : {"lossless", "int8"}) {
    const std::string path = dir.path() + "/f16-" + mode + ".cllm";
    model::CompressOptions co;
    co.encode.mode = test::mode_named(mode);
    model::compress_checkpoint(f16, path, co);
    format::ContainerReader file(path);
    engine::CudaEngineOptions o;
    o.max_seq_len = 32;
    auto gpu = engine::make_cuda_engine(file, o);
    EXPECT_NE(gpu->describe().find("f16"), std::string::npos) << gpu->describe();
    o.placement = Placement::GpuCompressed;
    auto compressed = engine::make_cuda_engine(file, o);
    auto cpu = engine::make_cpu_engine(file, {});
    const int vocab = gpu->config().vocab;
    int token = 1, matched = 0;
    for (int pos = 0; pos < 16; ++pos) {
      const float* lg = gpu->forward(token, pos);
      std::vector<float> g(lg, lg + vocab);
      ASSERT_EQ(0, std::memcmp(g.data(), compressed->forward(token, pos), sizeof(float) * vocab))
          << mode << ": gpu-compressed differs from gpu at " << pos;
      const float* lc = cpu->forward(token, pos);
      const LogitGap gap = logit_gap(g.data(), lc, vocab);
      EXPECT_LT(gap.max_diff, 0.05 * gap.scale) << mode << ": CUDA vs CPU logits at " << pos;
      matched += engine::argmax(g.data(), vocab) == engine::argmax(lc, vocab);
      token = engine::argmax(lc, vocab);
    }
    EXPECT_GE(matched, 13) << mode;
  }
}

// A random model of `shape` compressed with `co` into dir, and the gpu engine over it.
struct RandomModel {
  format::ContainerReader file;
  engine::CudaEngineOptions options;
  std::unique_ptr<engine::Engine> gpu;
  RandomModel(const std::string& path, const model::LlamaShape& shape, uint64_t seed, const model::CompressOptions& co)
      : file(compressed(path, shape, seed, co)) {
    options.max_seq_len = 32;
    gpu = engine::make_cuda_engine(file, options);
  }
  static const std::string& compressed(const std::string& path, const model::LlamaShape& shape, uint64_t seed,
                                       const model::CompressOptions& co) {
    model::compress_checkpoint(*model::random_llama(shape, seed), path, co);
    return path;
  }
  // 12 greedy steps from token 1: each engine's logits must be gpu's, bit for bit.
  void expect_bits_of_gpu(const std::vector<std::pair<engine::Engine*, std::string>>& engines) {
    const int vocab = gpu->config().vocab;
    int token = 1;
    for (int pos = 0; pos < 12; ++pos) {
      const float* lg = gpu->forward(token, pos);
      std::vector<float> g(lg, lg + vocab);
      for (const auto& [e, what] : engines)
        ASSERT_EQ(0, std::memcmp(g.data(), e->forward(token, pos), sizeof(float) * vocab)) << what << " at " << pos;
      token = engine::argmax(g.data(), vocab);
    }
  }
};

const model::LlamaShape kFusedShape{512, 1536, 2, 8, 4, 1000, 256, 10000.0, false};

// gpu-compressed multiplying straight from the compressed weights (no decode scratch) gives the
// bits of gpu, in both modes, on a random model whose rows the fused kernel takes (multiples of
// 256 and 512), with rows that run on from one chunk into the next; and holds less VRAM than
// gpu-compressed decoding into scratch.
TEST(CudaEngineNoScratch, ProductsFromCompressedWeightsEqualGpu) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  test::TempDir dir;
  for (const char* mode : {"lossless", "int8"}) {
    model::CompressOptions co;
    co.encode.mode = test::mode_named(mode);
    co.encode.rans.chunk_symbols = 4096;  // 2.67 rows of the down projection: rows cross chunks
    co.encode.row_aligned_chunks = false;
    RandomModel m(dir.path() + "/r-" + mode + ".cllm", kFusedShape, 5, co);
    engine::CudaEngineOptions o = m.options;
    o.placement = Placement::GpuCompressed;
    auto scratch = engine::make_cuda_engine(m.file, o);
    o.products_from_compressed = true;
    auto fused = engine::make_cuda_engine(m.file, o);
    ASSERT_NE(fused->describe().find("straight from compressed"), std::string::npos) << fused->describe();
    EXPECT_LT(fused->memory().device_bytes, scratch->memory().device_bytes) << mode;
    m.expect_bits_of_gpu({{fused.get(), std::string(mode) + ": products from compressed weights"}});
  }
}

// gpu-compressed decoding only the exponents of BF16 layers (the GEMV reads sign and mantissa
// from the compressed copy) gives the bits of gpu and of decoding whole values, with slots of
// half the size; q|k|v and gate|up span several sign_mantissa planes in one product.
TEST(CudaEngineSplit, ExponentSlotsEqualGpu) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  test::TempDir dir;
  model::CompressOptions co;
  co.encode.rans.chunk_symbols = 4096;
  model::LlamaShape shape = kFusedShape;
  shape.layers = 3;
  RandomModel m(dir.path() + "/r.cllm", shape, 9, co);
  engine::CudaEngineOptions o = m.options;
  o.placement = Placement::GpuCompressed;
  auto split = engine::make_cuda_engine(m.file, o);
  o.bf16_exponents_only = false;
  auto whole = engine::make_cuda_engine(m.file, o);
  ASSERT_NE(split->describe().find("exponents decoded"), std::string::npos) << split->describe();
  ASSERT_EQ(whole->describe().find("exponents decoded"), std::string::npos) << whole->describe();
  EXPECT_LT(split->memory().scratch_bytes, whole->memory().scratch_bytes * 6 / 10);
  EXPECT_EQ(split->memory().matmul_weight_bytes_per_step, whole->memory().matmul_weight_bytes_per_step);
  m.expect_bits_of_gpu({{split.get(), "exponents alone"}, {whole.get(), "whole values"}});
}

// Tokens picked on the GPU (forward_sample of the CUDA engine) against the host loop on the
// same engine's logits (Engine::forward_sample): greedy identical, sampling identical except
// at a rounding boundary; a batch draws for the sequences that sample only.
TEST(CudaEngineSampling, DevicePicksMatchHostPicks) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  if (!test::file_exists(kPycode)) GTEST_SKIP() << kPycode << " not found";
  test::TempDir dir;
  format::ContainerReader file(compress_pycode(dir, "lossless"));
  engine::CudaEngineOptions o;
  o.max_seq_len = 40;
  o.batch = 2;
  auto dev = engine::make_cuda_engine(file, o);
  auto host = engine::make_cuda_engine(file, o);
  const int vocab = dev->config().vocab;
  for (engine::SamplerOptions so : {engine::SamplerOptions{0.0f, 1.0f, 1}, engine::SamplerOptions{0.9f, 1.0f, 5},
                                    engine::SamplerOptions{0.8f, 0.9f, 9}}) {
    std::vector<engine::Sampler> sd, sh;
    for (int b = 0; b < 2; ++b) {
      sd.emplace_back(vocab, engine::SamplerOptions{so.temperature, so.top_p, so.seed + b});
      sh.push_back(sd.back());
    }
    int tokens[2] = {1, 1}, differ = 0;
    for (int pos = 0; pos < 36; ++pos) {
      const uint8_t wanted[2] = {1, uint8_t(pos % 3 != 0)};  // sequence 1 skips some steps
      int a[2] = {-1, -1}, b[2] = {-1, -1};
      dev->forward_sample(tokens, pos, sd.data(), wanted, a);
      host->engine::Engine::forward_sample(tokens, pos, sh.data(), wanted, b);
      if (!wanted[1]) {
        EXPECT_EQ(a[1], -1) << "a sequence that does not sample got a token";
        EXPECT_EQ(b[1], -1);
      }
      for (int q = 0; q < 2; ++q) {
        if (!wanted[q]) continue;
        ASSERT_GE(a[q], 0);
        ASSERT_LT(a[q], vocab);
        if (so.temperature == 0) {
          ASSERT_EQ(a[q], b[q]) << "greedy at " << pos;
        }
        differ += a[q] != b[q];
        tokens[q] = a[q];  // both engines continue from the device's pick
      }
    }
    EXPECT_EQ(differ, 0) << "T " << so.temperature << " top_p " << so.top_p;
  }
}

// A payload that changes after compression (here: one flipped byte of a stored, uncoded plane,
// which no rANS check would notice) stops the host placement at load, naming the tensor.
TEST(CudaEngineHost, CorruptPayloadIsReportedAtLoad) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  if (!test::file_exists(kPycode)) GTEST_SKIP() << kPycode << " not found";
  test::TempDir dir;
  const std::string path = compress_pycode(dir, "lossless");
  uint64_t at = 0;
  std::string name;
  {
    format::ContainerReader file(path);
    for (const auto& t : file.index().tensors) {
      if (t.name.find("layers.1.mlp.up_proj") == std::string::npos) continue;
      for (const auto& p : t.planes)
        if (p.codec == format::PlaneCodec::Raw && p.size > 100) at = p.offset + p.size / 2, name = t.name;
    }
  }
  ASSERT_NE(at, 0u) << "no raw plane to corrupt";
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(std::streamoff(at));
    char c = 0;
    f.read(&c, 1);
    c = char(c ^ 0x10);
    f.seekp(std::streamoff(at));
    f.write(&c, 1);
  }
  format::ContainerReader file(path);
  engine::CudaEngineOptions o;
  o.max_seq_len = 16;
  o.placement = Placement::Host;
  try {
    engine::make_cuda_engine(file, o);
    FAIL() << "a corrupt payload was not reported";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
  }
}

// An attention_bias Llama (biases on q, k, v and o) in BF16: every placement gives gpu's bits, and
// gpu tracks the CPU engine far closer than the o_proj biases move the CPU's own logits, so an
// engine that dropped them fails.
TEST(CudaEngineBias, AttentionBiasTracksCpu) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  test::TempDir dir;
  test::TinyModel m;
  m.dtype = DType::BF16;
  format::ContainerReader file(test::write_tiny_model(dir, m));
  m.zero = "o_proj.bias";
  m.file = "no-o-bias.cllm";
  format::ContainerReader without(test::write_tiny_model(dir, m));
  engine::CudaEngineOptions o;
  o.max_seq_len = 32;
  auto gpu = engine::make_cuda_engine(file, o);
  std::vector<std::unique_ptr<engine::Engine>> others;
  for (auto p : {Placement::GpuCompressed, Placement::Host, Placement::HostRaw}) {
    o.placement = p;
    others.push_back(engine::make_cuda_engine(file, o));
  }
  auto cpu = engine::make_cpu_engine(file, {});
  auto cpu_without = engine::make_cpu_engine(without, {});
  const int vocab = gpu->config().vocab;
  for (int pos = 0; pos < 16; ++pos) {
    const int token = (pos * 7 + 1) % vocab;
    const float* lg = gpu->forward(token, pos);
    std::vector<float> g(lg, lg + vocab);
    for (auto& e : others) {
      ASSERT_EQ(0, std::memcmp(g.data(), e->forward(token, pos), sizeof(float) * vocab))
          << e->describe() << " at " << pos;
    }
    const float* lc = cpu->forward(token, pos);
    std::vector<float> c(lc, lc + vocab);
    const LogitGap gap = logit_gap(g.data(), c.data(), vocab);
    const LogitGap bias_effect = logit_gap(cpu_without->forward(token, pos), c.data(), vocab);
    EXPECT_LT(gap.max_diff, 0.25 * bias_effect.max_diff)
        << "position " << pos << ": CUDA vs CPU " << gap.max_diff << ", the o_proj biases move logits by "
        << bias_effect.max_diff;
  }
}

// A context longer than many rounds of the attention kernel (32 positions a round across its
// warps): the logits of the tiny model track the CPU engine at every position up to 299 (the
// kernel itself is checked against a double-precision product in cuda_attention_test.cpp). A
// KV cache longer than the GPU's shared memory allows is refused at load, with the numbers.
TEST(CudaEngineAttention, LongContextTracksCpu) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  test::TempDir dir;
  test::TinyModel m;
  m.dtype = DType::BF16;
  m.replace_config(R"("max_position_embeddings": 64)", R"("max_position_embeddings": 512)");
  format::ContainerReader file(test::write_tiny_model(dir, m));
  engine::CudaEngineOptions o;
  o.max_seq_len = 320;
  auto gpu = engine::make_cuda_engine(file, o);
  auto cpu = engine::make_cpu_engine(file, {});
  const int vocab = gpu->config().vocab, positions = 300;
  int agree = 0;
  for (int pos = 0; pos < positions; ++pos) {
    const int token = (pos * 37 + 5) % vocab;
    const float* lg = gpu->forward(token, pos);
    const std::vector<float> g(lg, lg + vocab);
    const float* lc = cpu->forward(token, pos);
    const LogitGap gap = logit_gap(g.data(), lc, vocab);
    ASSERT_LT(gap.max_diff, 0.05 * gap.scale) << "position " << pos;
    agree += engine::argmax(g.data(), vocab) == engine::argmax(lc, vocab);
  }
  EXPECT_GE(agree, positions * 9 / 10);
  o.max_seq_len = 1 << 20;
  try {
    engine::make_cuda_engine(file, o);
    ADD_FAILURE() << "a KV cache of 2^20 positions was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("shared memory"), std::string::npos) << e.what();
  }
}

// Planes of `file` stored with `codec`.
size_t planes_coded(const format::ContainerReader& file, format::PlaneCodec codec) {
  size_t n = 0;
  for (const auto& t : file.index().tensors)
    for (const auto& p : t.planes) n += p.codec == codec;
  return n;
}

// The logits of `file` in every placement (gpu, gpu-compressed, host, host-raw, auto) at the
// given batch equal those of `reference` on gpu, bit for bit, over 12 positions.
void expect_every_placement_equals(const format::ContainerReader& reference_file, const format::ContainerReader& file,
                                   int batch, const char* coding, bool own_batch_products = true) {
  engine::CudaEngineOptions o;
  o.max_seq_len = 32;
  o.batch = batch;
  o.own_batch_products = own_batch_products;
  auto reference = engine::make_cuda_engine(reference_file, o);
  std::vector<std::unique_ptr<engine::Engine>> others;
  for (auto p : {Placement::Gpu, Placement::GpuCompressed, Placement::Host, Placement::HostRaw}) {
    o.placement = p;
    others.push_back(engine::make_cuda_engine(file, o));
  }
  o.placement = Placement::Auto;
  o.vram_budget = uint64_t{1} << 30;
  others.push_back(engine::make_cuda_engine(file, o));
  const int vocab = reference->config().vocab;
  for (int pos = 0; pos < 12; ++pos) {
    std::vector<int> tokens(static_cast<size_t>(batch));
    for (int b = 0; b < batch; ++b) tokens[size_t(b)] = (pos * 5 + 3 + 7 * b) % vocab;
    const float* r = reference->forward_batch(tokens.data(), pos);
    std::vector<float> want(r, r + size_t(vocab) * size_t(batch));
    for (auto& e : others) {
      ASSERT_EQ(0, std::memcmp(want.data(), e->forward_batch(tokens.data(), pos), want.size() * sizeof(float)))
          << e->describe() << " (" << coding << ") differs from gpu (rans) at " << pos << ", batch " << batch;
    }
  }
}

// A model split across devices gives the logits of one engine, bit for bit, and picks the same
// tokens on the GPU, in the gpu, gpu-compressed and host placements at batch 1 and 3: shares
// without the embedding or the head, ranges of layers, the activations copied from share to
// share. With one GPU the shares all run on it, one after the other (the split's code path);
// with two or more, the first two devices take them in turns.
TEST(CudaEngineSplit, SameLogitsAsOneEngine) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  int count = 0;
  ASSERT_EQ(cudaGetDeviceCount(&count), cudaSuccess);
  test::TempDir dir;
  test::TinyModel m;
  m.dtype = DType::BF16;
  m.replace_config(R"("num_hidden_layers": 2)", R"("num_hidden_layers": 5)");
  format::ContainerReader file(test::write_tiny_model(dir, m));
  const std::vector<int> devices = count > 1 ? std::vector<int>{0, 1, 0} : std::vector<int>{0, 0, 0};
  for (auto p : {Placement::Gpu, Placement::GpuCompressed, Placement::Host}) {
    for (int batch : {1, 3}) {
      engine::CudaEngineOptions o;
      o.max_seq_len = 32;
      o.batch = batch;
      o.placement = p;
      auto one = engine::make_cuda_engine(file, o);
      o.devices = devices;
      auto split = engine::make_cuda_engine(file, o);
      const int vocab = one->config().vocab;
      std::vector<engine::Sampler> greedy(size_t(batch), engine::Sampler(vocab, engine::SamplerOptions{}));
      const std::vector<uint8_t> all(size_t(batch), 1);
      for (int pos = 0; pos < 8; ++pos) {
        std::vector<int> tokens(static_cast<size_t>(batch));
        for (int b = 0; b < batch; ++b) tokens[size_t(b)] = (pos * 5 + 3 + 7 * b) % vocab;
        const float* r = one->forward_batch(tokens.data(), pos);
        std::vector<float> want(r, r + size_t(vocab) * size_t(batch));
        ASSERT_EQ(0, std::memcmp(want.data(), split->forward_batch(tokens.data(), pos), want.size() * sizeof(float)))
            << split->describe() << " differs from one engine at " << pos << ", batch " << batch;
      }
      // The step that picks tokens on the GPU (another captured graph), from the next position on.
      const auto n = static_cast<size_t>(batch);
      std::vector<int> a(n), b(n), tokens(n, 5);
      for (int pos = 8; pos < 12; ++pos) {
        one->forward_sample(tokens.data(), pos, greedy.data(), all.data(), a.data());
        split->forward_sample(tokens.data(), pos, greedy.data(), all.data(), b.data());
        ASSERT_EQ(a, b) << split->describe() << " picked other tokens at " << pos;
        tokens = a;
      }
    }
  }
}

// An exp4 file gives the logits of the same model in a rANS file on the gpu placement, bit for
// bit, in every placement: gpu-compressed multiplies its layers in place at batch 1
// (exp4_kernel.cu), the others decode them; and at batch 3, where every placement decodes.
TEST(CudaEngineExp4, EveryPlacementEqualsGpu) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  test::TempDir dir;
  test::TinyModel m;
  m.dtype = DType::BF16;
  m.file = "rans.cllm";
  format::ContainerReader rans(test::write_tiny_model(dir, m));
  m.options.encode.coder = codec::PlaneCoder::Exp4;
  m.file = "exp4.cllm";
  format::ContainerReader exp4(test::write_tiny_model(dir, m));
  ASSERT_GT(planes_coded(exp4, format::PlaneCodec::Exp4), 0u);
  for (int batch : {1, 3}) expect_every_placement_equals(rans, exp4, batch, "exp4");
}

// Rows of whole 16-row tiles, 64 and 128 long: at batches of 2 .. 8 gpu runs the tensor-core
// product and gpu-compressed multiplies the exp4 layers straight from their compressed form by
// its exp4 twin, with the same logits, bit for bit; with own_batch_products off, cuBLAS and
// layers decoded into scratch agree with each other too.
TEST(CudaEngineExp4, BatchedProductsInPlaceEqualGpu) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  test::TempDir dir;
  test::TinyModel m;
  m.dtype = DType::BF16;
  m.replace_config(R"("hidden_size": 32, "intermediate_size": 48)", R"("hidden_size": 64, "intermediate_size": 128)");
  m.file = "rans.cllm";
  format::ContainerReader rans(test::write_tiny_model(dir, m));
  m.options.encode.coder = codec::PlaneCoder::Exp4;
  m.file = "exp4.cllm";
  format::ContainerReader exp4(test::write_tiny_model(dir, m));
  for (int batch : {2, 3, 8}) {
    engine::CudaEngineOptions o;
    o.batch = batch;
    o.placement = Placement::GpuCompressed;
    const std::string in_place = engine::make_cuda_engine(exp4, o)->describe();
    EXPECT_NE(in_place.find("straight from compressed"), std::string::npos) << in_place;
    expect_every_placement_equals(rans, exp4, batch, "exp4, batched in place");
  }
  expect_every_placement_equals(rans, exp4, 3, "exp4, cuBLAS", false);
}

// A zstd file (nvCOMP decodes its planes on the GPU) gives the logits of the same model in a
// rANS file, bit for bit, in every placement and both modes; without nvCOMP it is refused at
// load with a message that names the missing library.
TEST(CudaEngineZstd, EveryPlacementEqualsRans) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  test::TempDir dir;
  for (auto mode : {format::TensorMode::Lossless, format::TensorMode::Int8}) {
    test::TinyModel m;
    m.dtype = DType::BF16;
    m.options.encode.mode = mode;
    m.options.encode.predictor = codec::PredictorChoice::Off;  // as zstd int8 values are stored
    m.file = "rans.cllm";
    format::ContainerReader rans(test::write_tiny_model(dir, m));
    m.options.encode.coder = codec::PlaneCoder::Zstd;
    m.options.encode.zstd.chunk_bytes = 4096;  // several frames per tensor
    m.file = "zstd.cllm";
    format::ContainerReader zstd(test::write_tiny_model(dir, m));
    ASSERT_GT(planes_coded(zstd, format::PlaneCodec::Zstd), 0u);
    engine::CudaEngineOptions o;
    o.max_seq_len = 32;
    if (!cuda::have_nvcomp()) {
      try {
        engine::make_cuda_engine(zstd, o);
        FAIL() << "a zstd file loaded without nvCOMP";
      } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("nvidia-libnvcomp"), std::string::npos) << e.what();
      }
      continue;
    }
    expect_every_placement_equals(rans, zstd, 1, "zstd");
  }
}

// The placement plan's estimate of device memory, made before load from the decoders' and the
// slot layout's byte counts, is what the engine holds after load (within 1%) for every
// placement, in both modes, with exponent slots, products in place, and mixed auto plans.
TEST(CudaEnginePlan, EstimateIsWhatLoadHolds) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  test::TempDir dir;
  const model::LlamaShape shape{1024, 3072, 4, 8, 4, 2000, 256, 10000.0, false};
  for (const char* mode : {"lossless", "int8"}) {
    model::CompressOptions co;
    co.encode.mode = test::mode_named(mode);
    RandomModel m(dir.path() + "/p-" + mode + ".cllm", shape, 3, co);
    std::vector<std::pair<engine::CudaEngineOptions, std::string>> runs;
    for (Placement p : {Placement::Gpu, Placement::GpuCompressed, Placement::Host, Placement::HostRaw}) {
      engine::CudaEngineOptions o = m.options;
      o.placement = p;
      runs.emplace_back(o, placement_name(p));
    }
    engine::CudaEngineOptions o = m.options;
    o.placement = Placement::GpuCompressed;
    o.bf16_exponents_only = false;
    runs.emplace_back(o, "gpu-compressed, whole values");
    o.bf16_exponents_only = true;
    o.products_from_compressed = true;
    runs.emplace_back(o, "gpu-compressed, products in place");
    o.products_from_compressed = false;
    o.batch = 4;
    runs.emplace_back(o, "gpu-compressed, batch 4");
    const uint64_t full = m.gpu->memory().device_bytes;
    for (double f : {1.0, 0.8, 0.6}) {
      o = m.options;
      o.placement = Placement::Auto;
      o.vram_budget = uint64_t(double(full) * f);
      runs.emplace_back(o, "auto at " + std::to_string(o.vram_budget));
    }
    for (const auto& [options, what] : runs) {
      std::unique_ptr<engine::Engine> e;
      try {
        e = engine::make_cuda_engine(m.file, options);
      } catch (const Error& err) {  // a budget below the smallest plan
        ASSERT_EQ(options.placement, Placement::Auto) << what << ": " << err.what();
        continue;
      }
      const engine::MemoryStats s = e->memory();
      EXPECT_GT(s.planned_device_bytes, 0u) << what;
      EXPECT_NEAR(double(s.planned_device_bytes), double(s.device_bytes), 0.01 * double(s.device_bytes))
          << mode << ", " << what << ": " << e->describe();
      if (options.placement == Placement::Auto) {
        EXPECT_LE(s.device_bytes, options.vram_budget) << e->describe();
      }
    }
  }
}

}  // namespace
}  // namespace codecllm
