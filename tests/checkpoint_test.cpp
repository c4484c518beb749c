// Checkpoint readers: llama2.c (stories260K and synthetic files), Hugging Face directories
// (pycode24M, sharded and odd layouts made here), and the llama2.c -> HF conversion.
#include "model/checkpoint.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "codecllm/error.hpp"
#include "model/convert.hpp"
#include "model/files.hpp"
#include "model/llama2c.hpp"
#include "model/safetensors.hpp"

namespace codecllm::model {
namespace {

namespace fs = std::filesystem;
using Shape = std::vector<uint64_t>;

const std::string kModels = CODECLLM_SHARED_MODELS;
const std::string kStories = kModels + "/stories260K/stories260K.bin";
const std::string kPycode = kModels + "/pycode24M";

#define REQUIRE_MODEL(path) \
  if (!fs::exists(path)) GTEST_SKIP() << "real model not found at " << (path)

class TempDir {
 public:
  TempDir() {
    static int counter = 0;
    path_ = fs::temp_directory_path() /
            ("codecllm-ckpt-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string path() const { return path_.string(); }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::map<std::string, const TensorInfo*> by_name(const Checkpoint& c) {
  std::map<std::string, const TensorInfo*> m;
  for (const TensorInfo& t : c.tensors()) m[t.name] = &t;
  return m;
}

bool same_bytes(ByteSpan a, const void* b, size_t size) {
  return a.size() == size && (size == 0 || std::memcmp(a.data(), b, size) == 0);
}

// Expects `fn` to throw an Error whose message contains every one of `parts`.
template <typename Fn>
void expect_error(Fn fn, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "no error thrown";
  } catch (const Error& e) {
    for (const std::string& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
  }
}

// ---- llama2.c ----

// Row `hf_row` of a Hugging Face q/k weight comes from this llama2.c row.
uint64_t llama2c_row(uint64_t hf_row, uint64_t head_size) {
  const uint64_t head = hf_row / head_size, j = hf_row % head_size, half = head_size / 2;
  return head * head_size + (j < half ? 2 * j : 2 * (j - half) + 1);
}

TEST(Llama2c, Stories260K) {
  REQUIRE_MODEL(kStories);
  const auto ckpt = open_checkpoint(kStories);
  EXPECT_EQ(ckpt->source(), "llama2c:" + kStories);
  ASSERT_EQ(ckpt->tensors().size(), 1u + 5 * 9 + 1);  // tied: no lm_head
  auto t = by_name(*ckpt);
  EXPECT_EQ(t.count("lm_head.weight"), 0u);
  EXPECT_EQ(t.at("model.embed_tokens.weight")->shape, (Shape{512, 64}));
  EXPECT_EQ(t.at("model.layers.0.self_attn.q_proj.weight")->shape, (Shape{64, 64}));
  EXPECT_EQ(t.at("model.layers.4.self_attn.k_proj.weight")->shape, (Shape{32, 64}));
  EXPECT_EQ(t.at("model.layers.4.self_attn.v_proj.weight")->shape, (Shape{32, 64}));
  EXPECT_EQ(t.at("model.layers.2.self_attn.o_proj.weight")->shape, (Shape{64, 64}));
  EXPECT_EQ(t.at("model.layers.1.mlp.gate_proj.weight")->shape, (Shape{172, 64}));
  EXPECT_EQ(t.at("model.layers.1.mlp.up_proj.weight")->shape, (Shape{172, 64}));
  EXPECT_EQ(t.at("model.layers.1.mlp.down_proj.weight")->shape, (Shape{64, 172}));
  EXPECT_EQ(t.at("model.layers.3.input_layernorm.weight")->shape, (Shape{64}));
  EXPECT_EQ(t.at("model.layers.3.post_attention_layernorm.weight")->shape, (Shape{64}));
  EXPECT_EQ(t.at("model.norm.weight")->shape, (Shape{64}));
  uint64_t params = 0;
  for (const TensorInfo& x : ckpt->tensors()) {
    EXPECT_EQ(x.dtype, DType::F32);
    params += x.data.size() / 4;
  }
  EXPECT_EQ(params, 260032u);  // README count, which excludes the unused RoPE tables

  const auto config = nlohmann::json::parse(ckpt->config_json());
  EXPECT_EQ(config["architectures"][0], "LlamaForCausalLM");
  EXPECT_EQ(config["hidden_size"], 64);
  EXPECT_EQ(config["intermediate_size"], 172);
  EXPECT_EQ(config["num_hidden_layers"], 5);
  EXPECT_EQ(config["num_attention_heads"], 8);
  EXPECT_EQ(config["num_key_value_heads"], 4);
  EXPECT_EQ(config["vocab_size"], 512);
  EXPECT_EQ(config["max_position_embeddings"], 512);
  EXPECT_EQ(config["tie_word_embeddings"], true);
  EXPECT_EQ(config["rope_theta"], 10000.0);
  EXPECT_EQ(config["torch_dtype"], "float32");

  ASSERT_EQ(ckpt->extra_files().size(), 1u);
  EXPECT_EQ(ckpt->extra_files()[0].first, "tokenizer.bin");
  EXPECT_EQ(ckpt->extra_files()[0].second, read_whole_file(kModels + "/stories260K/tok512.bin"));
}

TEST(Llama2c, Stories260KRowsMatchSourceFile) {
  REQUIRE_MODEL(kStories);
  const auto ckpt = open_checkpoint(kStories);
  const std::string raw = read_whole_file(kStories);
  auto t = by_name(*ckpt);
  const uint64_t D = 64, KV = 32, H = 172, L = 5, V = 512, hs = 8;
  // Float offsets of the llama2.c arrays (README layout).
  const uint64_t embed = 0, rms_att = embed + V * D, wq = rms_att + L * D, wk = wq + L * D * D;
  const uint64_t wv = wk + L * KV * D, wo = wv + L * KV * D, rms_ffn = wo + L * D * D;
  const uint64_t w1 = rms_ffn + L * D, w2 = w1 + L * H * D, w3 = w2 + L * D * H;
  const uint64_t rms_final = w3 + L * H * D;
  const auto src = [&](uint64_t float_offset) { return raw.data() + 28 + 4 * float_offset; };

  for (uint64_t layer : {0u, 3u}) {
    const std::string p = "model.layers." + std::to_string(layer) + ".";
    const TensorInfo& q = *t.at(p + "self_attn.q_proj.weight");
    const TensorInfo& k = *t.at(p + "self_attn.k_proj.weight");
    for (uint64_t row = 0; row < D; ++row) {
      const uint64_t from = llama2c_row(row, hs);
      EXPECT_TRUE(same_bytes(q.data.subspan(row * D * 4, D * 4), src(wq + layer * D * D + from * D), D * 4))
          << "q row " << row;
    }
    for (uint64_t row = 0; row < KV; ++row) {
      const uint64_t from = llama2c_row(row, hs);
      EXPECT_TRUE(same_bytes(k.data.subspan(row * D * 4, D * 4), src(wk + layer * KV * D + from * D), D * 4))
          << "k row " << row;
    }
    EXPECT_TRUE(same_bytes(t.at(p + "self_attn.v_proj.weight")->data, src(wv + layer * KV * D), KV * D * 4));
    EXPECT_TRUE(same_bytes(t.at(p + "self_attn.o_proj.weight")->data, src(wo + layer * D * D), D * D * 4));
    EXPECT_TRUE(same_bytes(t.at(p + "mlp.gate_proj.weight")->data, src(w1 + layer * H * D), H * D * 4));
    EXPECT_TRUE(same_bytes(t.at(p + "mlp.down_proj.weight")->data, src(w2 + layer * D * H), D * H * 4));
    EXPECT_TRUE(same_bytes(t.at(p + "mlp.up_proj.weight")->data, src(w3 + layer * H * D), H * D * 4));
    EXPECT_TRUE(same_bytes(t.at(p + "input_layernorm.weight")->data, src(rms_att + layer * D), D * 4));
    EXPECT_TRUE(same_bytes(t.at(p + "post_attention_layernorm.weight")->data, src(rms_ffn + layer * D), D * 4));
  }
  EXPECT_TRUE(same_bytes(t.at("model.embed_tokens.weight")->data, src(embed), V * D * 4));
  EXPECT_TRUE(same_bytes(t.at("model.norm.weight")->data, src(rms_final), D * 4));
  // The specific example from the brief: HF row 4 of head 0 (head_size 8) is llama2.c row 1.
  EXPECT_EQ(llama2c_row(4, 8), 1u);
  EXPECT_EQ(llama2c_row(3, 8), 6u);
}

// A synthetic llama2.c file whose float i has value i, with a separate classifier when
// vocab < 0.
std::string synthetic_llama2c(int32_t dim, int32_t hidden, int32_t layers, int32_t heads, int32_t kv_heads,
                              int32_t vocab, int32_t seq_len) {
  const int32_t header[7] = {dim, hidden, layers, heads, kv_heads, vocab, seq_len};
  const uint64_t V = static_cast<uint64_t>(vocab < 0 ? -vocab : vocab), D = dim, L = layers;
  const uint64_t KV = D / heads * kv_heads, H = hidden, hs = D / heads;
  uint64_t n =
      V * D + L * D * 2 + L * D * D * 2 + L * KV * D * 2 + L * H * D * 3 + D + seq_len * hs + (vocab < 0 ? V * D : 0);
  std::string out(reinterpret_cast<const char*>(header), sizeof(header));
  for (uint64_t i = 0; i < n; ++i) {
    const float f = static_cast<float>(i);
    out.append(reinterpret_cast<const char*>(&f), 4);
  }
  return out;
}

TEST(Llama2c, SeparateClassifierAndPermutation) {
  TempDir dir;
  const std::string path = dir.file("tiny.bin");
  const std::string raw = synthetic_llama2c(8, 12, 2, 2, 1, -10, 4);
  write_file(path, raw);
  const auto ckpt = open_checkpoint(path);
  ASSERT_EQ(ckpt->tensors().size(), 1u + 2 * 9 + 2);
  EXPECT_TRUE(ckpt->extra_files().empty());
  const TensorInfo& lm = ckpt->tensors().back();
  EXPECT_EQ(lm.name, "lm_head.weight");
  EXPECT_EQ(lm.shape, (Shape{10, 8}));
  EXPECT_TRUE(same_bytes(lm.data, raw.data() + raw.size() - 10 * 8 * 4, 10 * 8 * 4));
  EXPECT_EQ(nlohmann::json::parse(ckpt->config_json())["tie_word_embeddings"], false);

  // Layer 1 q_proj: head_size 4, so HF rows of each head are llama2.c rows 0, 2, 1, 3.
  auto t = by_name(*ckpt);
  const float* q = reinterpret_cast<const float*>(t.at("model.layers.1.self_attn.q_proj.weight")->data.data());
  const uint64_t wq1 = 10 * 8 + 2 * 8 + 64;  // embed, rms_att, layer 0 wq
  const uint64_t order[8] = {0, 2, 1, 3, 4, 6, 5, 7};
  for (uint64_t row = 0; row < 8; ++row) {
    EXPECT_EQ(q[row * 8], static_cast<float>(wq1 + order[row] * 8)) << row;
  }
  // k_proj, one KV head of 4 rows.
  const float* k = reinterpret_cast<const float*>(t.at("model.layers.0.self_attn.k_proj.weight")->data.data());
  const uint64_t wk0 = 10 * 8 + 2 * 8 + 2 * 64;
  for (uint64_t row = 0; row < 4; ++row) EXPECT_EQ(k[row * 8], static_cast<float>(wk0 + order[row] * 8));
}

TEST(Llama2c, FindsTokenizerNextToModel) {
  TempDir dir;
  write_file(dir.file("m.bin"), synthetic_llama2c(8, 12, 1, 2, 2, 10, 4));
  write_file(dir.file("tok1.bin"), "first");
  write_file(dir.file("tok2.bin"), "second");
  EXPECT_TRUE(open_checkpoint(dir.file("m.bin"))->extra_files().empty());  // ambiguous
  fs::remove(dir.file("tok2.bin"));
  auto ckpt = open_checkpoint(dir.file("m.bin"));
  ASSERT_EQ(ckpt->extra_files().size(), 1u);
  EXPECT_EQ(ckpt->extra_files()[0].second, "first");
  write_file(dir.file("tokenizer.bin"), "preferred");
  ckpt = open_checkpoint(dir.file("m.bin"));
  ASSERT_EQ(ckpt->extra_files().size(), 1u);
  EXPECT_EQ(ckpt->extra_files()[0].first, "tokenizer.bin");
  EXPECT_EQ(ckpt->extra_files()[0].second, "preferred");
}

TEST(Llama2c, RejectsBadFiles) {
  TempDir dir;
  const std::string path = dir.file("bad.bin");
  std::string good = synthetic_llama2c(8, 12, 1, 2, 2, 10, 4);
  write_file(path, good.substr(0, good.size() - 4));
  expect_error([&] { open_checkpoint(path); }, {path, "bytes but its llama2.c header implies"});
  write_file(path, good + "xxxx");
  expect_error([&] { open_checkpoint(path); }, {path, "implies"});
  write_file(path, good.substr(0, 20));
  expect_error([&] { open_checkpoint(path); }, {path, "too short"});
  write_file(path, synthetic_llama2c(8, 12, 1, 3, 3, 10, 4));  // 8 % 3 != 0
  expect_error([&] { open_checkpoint(path); }, {path, "multiple of n_heads"});
  write_file(path, synthetic_llama2c(8, 12, 1, 2, 0, 10, 4));
  expect_error([&] { open_checkpoint(path); }, {path, "n_kv_heads"});
  write_file(path, synthetic_llama2c(6, 12, 1, 2, 2, 10, 4));  // head size 3
  expect_error([&] { open_checkpoint(path); }, {path, "odd"});
  // Huge fields must not overflow the size computation.
  int32_t huge[7] = {0x40000000, 0x7fffffff, 0x7fffffff, 2, 2, -0x7fffffff, 0x7fffffff};
  write_file(path, std::string(reinterpret_cast<const char*>(huge), sizeof(huge)));
  expect_error([&] { open_checkpoint(path); }, {path});
  write_file(path, "24ka" + good.substr(4));  // 0x616b3432 little-endian
  expect_error([&] { open_checkpoint(path); }, {path, "version-0"});
}

// ---- Hugging Face ----

TEST(HfCheckpoint, Pycode24M) {
  REQUIRE_MODEL(kPycode + "/model.safetensors");
  const auto ckpt = open_checkpoint(kPycode);
  EXPECT_EQ(ckpt->source(), "hf:" + kPycode);
  ASSERT_EQ(ckpt->tensors().size(), 57u);
  EXPECT_EQ(ckpt->config_json(), read_whole_file(kPycode + "/config.json"));
  auto t = by_name(*ckpt);
  EXPECT_EQ(t.at("lm_head.weight")->shape, (Shape{32000, 288}));
  EXPECT_EQ(t.at("model.layers.0.self_attn.q_proj.weight")->shape, (Shape{288, 288}));
  EXPECT_EQ(t.at("model.layers.0.mlp.gate_proj.weight")->dtype, DType::BF16);
  std::vector<std::string> extras;
  for (const auto& [name, bytes] : ckpt->extra_files()) extras.push_back(name);
  EXPECT_EQ(extras, (std::vector<std::string>{"tokenizer.model", "generation_config.json"}));
}

TensorInfo f32_tensor(const std::string& name, const std::vector<float>& values) {
  TensorInfo t;
  t.name = name;
  t.dtype = DType::F32;
  t.dtype_name = "F32";
  t.shape = {values.size()};
  t.data = ByteSpan(reinterpret_cast<const uint8_t*>(values.data()), values.size() * 4);
  return t;
}

// Two shards and an index, as save_pretrained writes them.
class ShardedDir : public ::testing::Test {
 protected:
  void SetUp() override {
    write_file(dir_.file("config.json"), R"({"model_type":"llama"})");
    write_safetensors(dir_.file(kShard1), {f32_tensor("b", b_), f32_tensor("a", a_)}, {{"format", "pt"}});
    write_safetensors(dir_.file(kShard2), {f32_tensor("c", c_)}, {{"format", "pt"}});
    write_index({{"a", kShard1}, {"b", kShard1}, {"c", kShard2}});
  }
  void write_index(const nlohmann::json& weight_map) {
    write_file(dir_.file("model.safetensors.index.json"),
               nlohmann::json{{"metadata", {{"total_size", 24}}}, {"weight_map", weight_map}}.dump());
  }
  static constexpr const char* kShard1 = "model-00001-of-00002.safetensors";
  static constexpr const char* kShard2 = "model-00002-of-00002.safetensors";
  TempDir dir_;
  std::vector<float> a_ = {1, 2}, b_ = {3}, c_ = {4, 5, 6};
};

TEST_F(ShardedDir, ReadsShardsInOrder) {
  const auto ckpt = open_checkpoint(dir_.path());
  ASSERT_EQ(ckpt->tensors().size(), 3u);
  EXPECT_EQ(ckpt->tensors()[0].name, "b");  // shard 1 in its own order, then shard 2
  EXPECT_EQ(ckpt->tensors()[1].name, "a");
  EXPECT_EQ(ckpt->tensors()[2].name, "c");
  EXPECT_TRUE(same_bytes(ckpt->tensors()[1].data, a_.data(), 8));
  EXPECT_TRUE(same_bytes(ckpt->tensors()[2].data, c_.data(), 12));
  EXPECT_TRUE(ckpt->extra_files().empty());
}

TEST_F(ShardedDir, MissingShardIsNamed) {
  fs::remove(dir_.file(kShard2));
  expect_error([&] { open_checkpoint(dir_.path()); }, {kShard2, "missing"});
}

TEST_F(ShardedDir, StaleIndexIsCaught) {
  write_index({{"a", kShard2}, {"b", kShard1}, {"c", kShard2}});
  expect_error([&] { open_checkpoint(dir_.path()); }, {"'a'", kShard2});
  write_index({{"a", "../escape.safetensors"}});
  expect_error([&] { open_checkpoint(dir_.path()); }, {"does not name a file"});
  write_index(nlohmann::json::array());
  expect_error([&] { open_checkpoint(dir_.path()); }, {"weight_map"});
  write_file(dir_.file("model.safetensors.index.json"), "{not json");
  expect_error([&] { open_checkpoint(dir_.path()); }, {"index.json", "not valid JSON"});
}

TEST_F(ShardedDir, DuplicateTensorAcrossShards) {
  write_safetensors(dir_.file(kShard2), {f32_tensor("c", c_), f32_tensor("a", a_)});
  expect_error([&] { open_checkpoint(dir_.path()); }, {"'a'", "earlier shard"});
}

TEST(HfCheckpoint, LoneSafetensorsFile) {
  TempDir dir;
  write_file(dir.file("config.json"), "{}");
  expect_error([&] { open_checkpoint(dir.path()); }, {"no model.safetensors"});
  const std::vector<float> v = {1};
  write_safetensors(dir.file("weights.safetensors"), {f32_tensor("w", v)});
  EXPECT_EQ(open_checkpoint(dir.path())->tensors().size(), 1u);
  write_safetensors(dir.file("other.safetensors"), {f32_tensor("w", v)});
  expect_error([&] { open_checkpoint(dir.path()); }, {"other.safetensors, weights.safetensors"});
  write_safetensors(dir.file("model.safetensors"), {f32_tensor("m", v)});
  EXPECT_EQ(open_checkpoint(dir.path())->tensors()[0].name, "m");
}

TEST(HfCheckpoint, NeedsConfig) {
  TempDir dir;
  const std::vector<float> v = {1};
  write_safetensors(dir.file("model.safetensors"), {f32_tensor("w", v)});
  expect_error([&] { open_checkpoint(dir.path()); }, {dir.path(), "config.json"});
  write_file(dir.file("config.json"), "[1]");
  expect_error([&] { open_checkpoint(dir.path()); }, {"config.json", "not a JSON object"});
  write_file(dir.file("config.json"), "{");
  expect_error([&] { open_checkpoint(dir.path()); }, {"config.json", "not valid JSON"});
}

TEST(HfCheckpoint, CorruptShardNamesFile) {
  TempDir dir;
  write_file(dir.file("config.json"), "{}");
  write_file(dir.file("model.safetensors"), "short");
  expect_error([&] { open_checkpoint(dir.path()); }, {dir.file("model.safetensors"), "too short"});
}

TEST(OpenCheckpoint, Dispatch) {
  TempDir dir;
  expect_error([&] { open_checkpoint(dir.file("absent")); }, {"absent", "no such file"});
  write_file(dir.file("notes.txt"), "x");
  expect_error([&] { open_checkpoint(dir.file("notes.txt")); }, {"notes.txt", "not a checkpoint"});
  write_file(dir.file("m.safetensors"), "x");
  expect_error([&] { open_checkpoint(dir.file("m.safetensors")); }, {"directory"});
}

// ---- conversion ----

TEST(Convert, Stories260KRoundTrip) {
  REQUIRE_MODEL(kStories);
  TempDir dir;
  const std::string out = dir.file("nested/hf");
  convert_llama2c_to_hf(kStories, out);
  const auto src = open_checkpoint(kStories);
  const auto hf = open_checkpoint(out);
  EXPECT_EQ(hf->config_json(), src->config_json());
  EXPECT_EQ(hf->extra_files(), src->extra_files());
  ASSERT_EQ(hf->tensors().size(), src->tensors().size());
  for (size_t i = 0; i < src->tensors().size(); ++i) {
    const TensorInfo& a = src->tensors()[i];
    const TensorInfo& b = hf->tensors()[i];
    SCOPED_TRACE(a.name);
    EXPECT_EQ(b.name, a.name);
    EXPECT_EQ(b.dtype, DType::F32);
    EXPECT_EQ(b.shape, a.shape);
    EXPECT_TRUE(same_bytes(b.data, a.data.data(), a.data.size()));
  }
  // Only the three outputs: no temporaries left behind.
  size_t files = 0;
  for (const auto& e : fs::directory_iterator(out)) files += e.is_regular_file() ? 1 : 0;
  EXPECT_EQ(files, 3u);
}

}  // namespace
}  // namespace codecllm::model
