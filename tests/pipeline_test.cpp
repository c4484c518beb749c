// The compress -> verify -> decompress pipeline on the real models, in both modes: what the
// README's main job runs.
#include <gtest/gtest.h>

#include <cstring>

#include "codecllm/error.hpp"
#include "format/container.hpp"
#include "model/checkpoint.hpp"
#include "model/compress.hpp"
#include "model/synthetic.hpp"
#include "test_util.hpp"

namespace codecllm {
namespace {

class RealModel : public ::testing::TestWithParam<std::tuple<const char*, const char*>> {};

TEST_P(RealModel, CompressVerifyDecompress) {
  auto [name, mode] = GetParam();
  const std::string src = std::string(CODECLLM_SHARED_MODELS) + "/" + name;
  if (!test::file_exists(src)) GTEST_SKIP() << src << " not found";
  test::TempDir dir;
  const std::string out = dir.path() + "/m.cllm";
  model::CompressOptions o;
  const std::string m = mode;
  const bool zstd = m.size() > 5 && m.substr(m.size() - 5) == "-zstd";  // the same pipeline with zstd planes
  o.encode.mode = test::mode_named(zstd ? m.substr(0, m.size() - 5) : m);
  if (zstd) o.encode.coder = codec::PlaneCoder::Zstd;
  size_t progress_calls = 0;
  model::CompressResult r =
      model::compress_checkpoint(src, out, o, [&](size_t, size_t, const model::TensorStats&) { ++progress_calls; });
  auto ckpt = model::open_checkpoint(src);
  EXPECT_EQ(progress_calls, ckpt->tensors().size());
  EXPECT_EQ(r.tensors.size(), ckpt->tensors().size());
  model::VerifyResult v = model::verify_container(out, src);
  EXPECT_TRUE(v.problems.empty()) << v.problems.front();
  EXPECT_EQ(v.tensors_checked, ckpt->tensors().size());
  EXPECT_GE(v.blobs_checked, 2u);  // config.json and a tokenizer

  // Decompressed lossless tensors are byte-identical to the source.
  model::decompress_container(out, dir.path() + "/hf");
  auto back = model::open_checkpoint(dir.path() + "/hf");
  ASSERT_EQ(back->tensors().size(), ckpt->tensors().size());
  format::ContainerReader reader(out);
  for (const auto& t : ckpt->tensors()) {
    const model::TensorInfo* b = nullptr;
    for (const auto& x : back->tensors())
      if (x.name == t.name) b = &x;
    ASSERT_NE(b, nullptr) << t.name;
    EXPECT_EQ(b->shape, t.shape) << t.name;
    if (reader.index().find_tensor(t.name)->mode == format::TensorMode::Lossless) {
      ASSERT_EQ(b->data.size(), t.data.size());
      EXPECT_EQ(0, std::memcmp(b->data.data(), t.data.data(), t.data.size())) << t.name;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Models, RealModel,
                         ::testing::Combine(::testing::Values("stories260K/stories260K.bin", "pycode24M"),
                                            ::testing::Values("lossless", "int8", "lossless-zstd", "int8-zstd")));

TEST(Pipeline, VerifyReportsADifferentSource) {
  test::TempDir dir;
  auto a = model::make_random_llama(model::llama_shape("tiny"), 1);
  const std::string out = dir.path() + "/a.cllm";
  model::compress_checkpoint(*a, out, {});
  // A source that differs in one weight: written as an HF directory and verified against.
  std::vector<uint8_t> changed(a->tensors()[1].data.begin(), a->tensors()[1].data.end());
  changed[0] ^= 1;
  model::MemoryCheckpoint b("x", a->config_json());
  for (size_t i = 0; i < a->tensors().size(); ++i) {
    const auto& t = a->tensors()[i];
    b.add(t.name, t.dtype, t.shape, i == 1 ? changed : std::vector<uint8_t>(t.data.begin(), t.data.end()));
  }
  b.add_file("tokenizer.json", model::byte_tokenizer_json());
  model::compress_checkpoint(b, dir.path() + "/b.cllm", {});
  model::decompress_container(dir.path() + "/b.cllm", dir.path() + "/b");
  model::VerifyResult v = model::verify_container(out, dir.path() + "/b");
  ASSERT_EQ(v.problems.size(), 1u);
  EXPECT_NE(v.problems[0].find(a->tensors()[1].name), std::string::npos) << v.problems[0];
}

}  // namespace
}  // namespace codecllm
