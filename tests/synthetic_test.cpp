// Random-weight models: the statistics and determinism of the BF16 generator, shapes from a
// config.json, and the streamed compression of a model whose tensors are made on demand.
#include "model/synthetic.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <map>
#include <numeric>
#include <stdexcept>

#include "codecllm/error.hpp"
#include "format/mapped_file.hpp"
#include "model/compress.hpp"
#include "model/in_order.hpp"
#include "test_util.hpp"

namespace codecllm::model {
namespace {

std::vector<float> to_floats(const std::vector<uint8_t>& bf16) {
  std::vector<float> v(bf16.size() / 2);
  for (size_t i = 0; i < v.size(); ++i) {
    uint16_t h;
    std::memcpy(&h, &bf16[2 * i], 2);
    const uint32_t bits = uint32_t(h) << 16;
    std::memcpy(&v[i], &bits, 4);
  }
  return v;
}

double fraction_above(const std::vector<float>& v, double limit) {
  size_t k = 0;
  for (float x : v) k += std::fabs(x) > limit;
  return double(k) / double(v.size());
}

TEST(RandomBf16, GaussianStatistics) {
  const double sigma = 0.02;
  const std::vector<float> v = to_floats(random_bf16(1 << 21, sigma, 11, 0.0));
  double sum = 0, sum2 = 0;
  for (float x : v) {
    sum += x;
    sum2 += double(x) * x;
  }
  const double n = double(v.size()), mean = sum / n, sd = std::sqrt(sum2 / n - mean * mean);
  EXPECT_NEAR(mean, 0.0, 1e-4);  // 7 standard errors
  EXPECT_NEAR(sd / sigma, 1.0, 5e-3);
  // The shape, not just the moments: two-sided tail masses of N(0, 1) at 1, 2 and 3 sigma.
  EXPECT_NEAR(fraction_above(v, sigma), 0.317311, 3e-3);
  EXPECT_NEAR(fraction_above(v, 2 * sigma), 0.045500, 1e-3);
  EXPECT_NEAR(fraction_above(v, 3 * sigma), 0.002700, 3e-4);
  EXPECT_EQ(fraction_above(v, 7 * sigma), 0.0);
  size_t negative = 0;
  for (float x : v) negative += x < 0;
  EXPECT_NEAR(double(negative) / n, 0.5, 3e-3);
}

TEST(RandomBf16, Outliers) {
  const double sigma = 0.02, f = 0.01;
  const std::vector<float> v = to_floats(random_bf16(1 << 21, sigma, 12, f));
  // Beyond 6 sigma only outliers lie: a fraction f of values, of which P(|N| > 0.3) get there.
  EXPECT_NEAR(fraction_above(v, 6 * sigma), f * std::erfc(0.3 / std::sqrt(2.0)), 4e-4);
  double sum2 = 0;
  for (float x : v) sum2 += double(x) * x;
  EXPECT_NEAR(std::sqrt(sum2 / double(v.size())) / sigma, std::sqrt(1 - f + 400 * f), 0.03);
}

TEST(RandomBf16, SameDistributionAsSamplingAGaussian) {
  // The high byte (sign and 7 exponent bits) is what the codec sees; compare its histogram
  // with that of rounding std::normal_distribution samples (0.1% outliers in both).
  const size_t n = 1 << 20;
  const std::vector<uint8_t> fast = random_bf16(n, 0.02, 13), slow = test::gaussian_bf16(n, 0.02, 13);
  std::map<int, double> a, b;
  for (size_t i = 0; i < n; ++i) {
    a[fast[2 * i + 1]] += 1.0 / n;
    b[slow[2 * i + 1]] += 1.0 / n;
  }
  double total_variation = 0;
  for (int k = 0; k < 256; ++k) total_variation += std::fabs(a[k] - b[k]) / 2;
  EXPECT_LT(total_variation, 0.005);
}

TEST(RandomBf16, PiecesMatchTheWhole) {
  const RandomBf16 gen(0.02, 0.001);
  const size_t n = 100003;
  std::vector<uint8_t> whole(2 * n), pieces(2 * n);
  gen.fill(42, 0, whole.data(), n);
  for (size_t first = 0, len = 1; first < n; first += len, len = len * 3 + 7)
    gen.fill(42, first, pieces.data() + 2 * first, std::min(len, n - first));
  EXPECT_EQ(whole, pieces);
  EXPECT_EQ(random_bf16(n, 0.02, 42), whole);
  EXPECT_NE(random_bf16(n, 0.02, 43), whole);
}

TEST(SyntheticModel, SameBytesForAnyThreadCount) {
  auto streamed = random_llama(llama_shape("tiny"), 3);
  auto one = make_random_llama(llama_shape("tiny"), 3, 1);
  auto many = make_random_llama(llama_shape("tiny"), 3, 5);
  ASSERT_EQ(streamed->tensors().size(), one->tensors().size());
  for (size_t i = 0; i < one->tensors().size(); ++i) {
    const ByteSpan a = one->tensors()[i].data, b = many->tensors()[i].data;
    const TensorBytes c = streamed->tensor_data(i);
    EXPECT_TRUE(streamed->tensors()[i].data.empty());
    ASSERT_EQ(a.size(), b.size());
    ASSERT_EQ(a.size(), c.data.size());
    EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size())) << one->tensors()[i].name;
    EXPECT_EQ(0, std::memcmp(a.data(), c.data.data(), a.size())) << one->tensors()[i].name;
  }
}

TEST(SyntheticModel, StreamedCompressionMatchesInMemory) {
  test::TempDir dir;
  for (auto mode : {format::TensorMode::Lossless, format::TensorMode::Int8}) {
    CompressOptions streamed_options, memory_options;
    streamed_options.encode.mode = memory_options.encode.mode = mode;
    streamed_options.threads = 3;
    memory_options.threads = 1;
    size_t calls = 0;
    CompressResult r = compress_checkpoint(*random_llama(llama_shape("tiny"), 9), dir.path() + "/s.cllm",
                                           streamed_options, [&](size_t done, size_t, const TensorStats&) {
                                             EXPECT_EQ(done, ++calls);  // in checkpoint order
                                           });
    compress_checkpoint(*make_random_llama(llama_shape("tiny"), 9, 2), dir.path() + "/m.cllm", memory_options);
    format::MappedFile s(dir.path() + "/s.cllm"), m(dir.path() + "/m.cllm");
    ASSERT_EQ(s.size(), m.size());
    EXPECT_EQ(0, std::memcmp(s.data(), m.data(), s.size()));
    EXPECT_EQ(calls, r.tensors.size());
    for (const TensorStats& t : r.tensors) EXPECT_EQ(t.source_bytes, 2 * t.elements) << t.name;
  }
}

TEST(SyntheticModel, ShapeFromConfig) {
  const LlamaShape s = llama_shape_from_config(
      R"({"hidden_size": 8192, "intermediate_size": 28672, "num_hidden_layers": 80, "num_attention_heads": 64,
          "num_key_value_heads": 8, "vocab_size": 128256, "max_position_embeddings": 131072,
          "rope_theta": 500000.0, "tie_word_embeddings": false, "head_dim": null})",
      "config.json");
  const LlamaShape ref = llama_shape("llama3-70b");
  EXPECT_EQ(s.hidden, ref.hidden);
  EXPECT_EQ(s.intermediate, ref.intermediate);
  EXPECT_EQ(s.layers, ref.layers);
  EXPECT_EQ(s.heads, ref.heads);
  EXPECT_EQ(s.kv_heads, ref.kv_heads);
  EXPECT_EQ(s.vocab, ref.vocab);
  EXPECT_EQ(s.max_positions, 131072u);
  EXPECT_EQ(s.rope_theta, 500000.0);
  EXPECT_FALSE(s.tie_embeddings);
  EXPECT_EQ(s.head_dim, 0u);
  // Defaults for what is absent; errors name the file and the field.
  const LlamaShape d = llama_shape_from_config(
      R"({"hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4,
          "vocab_size": 100, "head_dim": 32, "tie_word_embeddings": true})",
      "c");
  EXPECT_EQ(d.kv_heads, 4u);
  EXPECT_EQ(d.rope_theta, 10000.0);
  EXPECT_TRUE(d.tie_embeddings);
  auto ckpt = random_llama(d, 1);
  EXPECT_EQ(ckpt->tensors()[2].shape, (std::vector<uint64_t>{128, 64}));  // q_proj: 4 heads x 32
  try {
    llama_shape_from_config(R"({"hidden_size": 64})", "cfg.json");
    FAIL() << "missing fields accepted";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("cfg.json: required field 'intermediate_size'"), std::string::npos);
  }
  EXPECT_THROW(llama_shape_from_config("{", "c"), FormatError);
  EXPECT_THROW(llama_shape_from_config(R"({"hidden_size": -4})", "c"), FormatError);
  LlamaShape bad = llama_shape("tiny");
  bad.kv_heads = 3;
  EXPECT_THROW(random_llama(bad, 1), Error);
}

// ---------------------------------------------------------------------------------------
// The scheduler behind compress_checkpoint.

TEST(RunInOrder, UsesInIndexOrderWithinTheBudget) {
  const size_t n = 200;
  std::vector<size_t> order(n);
  std::vector<uint64_t> weight(n);
  for (size_t i = 0; i < n; ++i) {
    order[i] = n - 1 - i;  // reversed: the item next to be used must start out of order
    weight[i] = 1 + i % 7;
  }
  std::atomic<uint64_t> in_flight{0}, worst{0};
  std::vector<size_t> used;
  run_in_order<size_t>(
      order, weight, 10, 4,
      [&](size_t i) {
        const uint64_t now = in_flight += weight[i];
        for (uint64_t w = worst; now > w && !worst.compare_exchange_weak(w, now);) {
        }
        in_flight -= weight[i];
        return i * i;
      },
      [&](size_t i, size_t& r) {
        EXPECT_EQ(r, i * i);
        used.push_back(i);
      });
  ASSERT_EQ(used.size(), n);
  for (size_t i = 0; i < n; ++i) EXPECT_EQ(used[i], i);
  EXPECT_LE(worst.load(), 10u + 7u);  // the budget, plus the item that may always start
}

TEST(RunInOrder, RethrowsTheFirstError) {
  std::vector<size_t> order(50);
  std::iota(order.begin(), order.end(), size_t(0));
  const std::vector<uint64_t> weight(50, 1);
  auto make = [](size_t i) -> int {
    if (i == 17) throw std::runtime_error("item 17");
    return int(i);
  };
  EXPECT_THROW(run_in_order<int>(order, weight, 4, 3, make, [](size_t, int&) {}), std::runtime_error);
  auto use = [](size_t i, int&) {
    if (i == 5) throw Error("use 5");
  };
  EXPECT_THROW(run_in_order<int>(
                   order, weight, 4, 3, [](size_t i) { return int(i); }, use),
               Error);
}

}  // namespace
}  // namespace codecllm::model
