#include "model/synthetic.hpp"

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>
#include <random>

#include "codec/int8_quant.hpp"
#include "codec/parallel_for.hpp"
#include "codecllm/error.hpp"

namespace codecllm::model {

void MemoryCheckpoint::add(const std::string& name, DType dtype, std::vector<uint64_t> shape,
                           std::vector<uint8_t> bytes) {
  storage_.push_back(std::make_unique<std::vector<uint8_t>>(std::move(bytes)));
  TensorInfo t;
  t.name = name;
  t.dtype = dtype;
  t.dtype_name = dtype_name(dtype);
  t.shape = std::move(shape);
  t.data = ByteSpan(storage_.back()->data(), storage_.back()->size());
  tensors_.push_back(std::move(t));
}

std::vector<uint8_t> random_bf16(uint64_t n, double sigma, uint64_t seed, double outlier_fraction) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, static_cast<float>(sigma));
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<uint8_t> out(2 * n);
  for (uint64_t i = 0; i < n; ++i) {
    float v = normal(rng);
    if (u(rng) < outlier_fraction) v *= 20.0f;
    const uint16_t h = codec::float_to_bf16(v);
    std::memcpy(&out[2 * i], &h, 2);
  }
  return out;
}

std::string byte_tokenizer_json() {
  // GPT-2's printable stand-ins for the 256 byte values (ByteLevel pre-tokenizer).
  std::vector<int> bytes, chars;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    if (printable) {
      bytes.push_back(b);
      chars.push_back(b);
    }
  }
  int extra = 0;
  for (int b = 0; b < 256; ++b) {
    if (std::find(bytes.begin(), bytes.end(), b) == bytes.end()) {
      bytes.push_back(b);
      chars.push_back(256 + extra++);
    }
  }
  auto utf8 = [](int cp) {
    std::string s;
    if (cp < 0x80) {
      s += static_cast<char>(cp);
    } else {
      s += static_cast<char>(0xC0 | (cp >> 6));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    }
    return s;
  };
  nlohmann::json vocab = {{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}};
  for (size_t i = 0; i < bytes.size(); ++i) vocab[utf8(chars[i])] = 3 + bytes[i];
  nlohmann::json added = nlohmann::json::array();
  for (auto [tok, id] : {std::pair<const char*, int>{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}})
    added.push_back({{"id", id}, {"content", tok}, {"single_word", false}, {"lstrip", false}, {"rstrip", false},
                     {"normalized", false}, {"special", true}});
  nlohmann::json byte_level = {
      {"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}};
  nlohmann::json t = {{"version", "1.0"},
                      {"truncation", nullptr},
                      {"padding", nullptr},
                      {"added_tokens", added},
                      {"normalizer", nullptr},
                      {"pre_tokenizer", byte_level},
                      {"post_processor", nullptr},
                      {"decoder", byte_level},
                      {"model",
                       {{"type", "BPE"},
                        {"dropout", nullptr},
                        {"unk_token", nullptr},
                        {"continuing_subword_prefix", nullptr},
                        {"end_of_word_suffix", nullptr},
                        {"fuse_unk", false},
                        {"byte_fallback", false},
                        {"ignore_merges", false},
                        {"vocab", vocab},
                        {"merges", nlohmann::json::array()}}}};
  return t.dump();
}

LlamaShape llama_shape(const std::string& name) {
  LlamaShape s;
  if (name == "llama3-8b") return s;
  if (name == "llama2-7b") return {4096, 11008, 32, 32, 32, 32000, 4096, 10000.0, false};
  if (name == "llama3-70b") return {8192, 28672, 80, 64, 8, 128256, 8192, 500000.0, false};
  if (name == "tiny") return {256, 688, 4, 8, 4, 512, 512, 10000.0, true};
  throw Error("unknown model shape '" + name + "' (known: llama3-8b, llama2-7b, llama3-70b, tiny)");
}

std::unique_ptr<MemoryCheckpoint> make_random_llama(const LlamaShape& s, uint64_t seed, unsigned threads) {
  const uint64_t head_dim = s.hidden / s.heads;
  nlohmann::json config = {{"architectures", {"LlamaForCausalLM"}},
                           {"model_type", "llama"},
                           {"hidden_size", s.hidden},
                           {"intermediate_size", s.intermediate},
                           {"num_hidden_layers", s.layers},
                           {"num_attention_heads", s.heads},
                           {"num_key_value_heads", s.kv_heads},
                           {"head_dim", head_dim},
                           {"vocab_size", s.vocab},
                           {"max_position_embeddings", s.max_positions},
                           {"rms_norm_eps", 1e-5},
                           {"rope_theta", s.rope_theta},
                           {"tie_word_embeddings", s.tie_embeddings},
                           {"hidden_act", "silu"},
                           {"bos_token_id", 1},
                           {"eos_token_id", 2},
                           {"torch_dtype", "bfloat16"}};
  auto ckpt = std::make_unique<MemoryCheckpoint>("synthetic:random-llama", config.dump(2));
  ckpt->add_file("tokenizer.json", byte_tokenizer_json());
  struct Spec {
    std::string name;
    std::vector<uint64_t> shape;
    bool norm;
  };
  std::vector<Spec> specs;
  specs.push_back({"model.embed_tokens.weight", {s.vocab, s.hidden}, false});
  for (uint64_t l = 0; l < s.layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    specs.push_back({p + "input_layernorm.weight", {s.hidden}, true});
    specs.push_back({p + "self_attn.q_proj.weight", {s.heads * head_dim, s.hidden}, false});
    specs.push_back({p + "self_attn.k_proj.weight", {s.kv_heads * head_dim, s.hidden}, false});
    specs.push_back({p + "self_attn.v_proj.weight", {s.kv_heads * head_dim, s.hidden}, false});
    specs.push_back({p + "self_attn.o_proj.weight", {s.hidden, s.heads * head_dim}, false});
    specs.push_back({p + "post_attention_layernorm.weight", {s.hidden}, true});
    specs.push_back({p + "mlp.gate_proj.weight", {s.intermediate, s.hidden}, false});
    specs.push_back({p + "mlp.up_proj.weight", {s.intermediate, s.hidden}, false});
    specs.push_back({p + "mlp.down_proj.weight", {s.hidden, s.intermediate}, false});
  }
  specs.push_back({"model.norm.weight", {s.hidden}, true});
  if (!s.tie_embeddings) specs.push_back({"lm_head.weight", {s.vocab, s.hidden}, false});
  std::vector<std::vector<uint8_t>> data(specs.size());
  parallel_for(specs.size(), threads, [&](size_t i) {
    uint64_t n = 1;
    for (uint64_t d : specs[i].shape) n *= d;
    if (specs[i].norm) {
      data[i].resize(2 * n);
      const uint16_t one = codec::float_to_bf16(1.0f);
      for (uint64_t k = 0; k < n; ++k) std::memcpy(&data[i][2 * k], &one, 2);
    } else {
      data[i] = random_bf16(n, 0.02, seed * 1000003 + i);
    }
  });
  for (size_t i = 0; i < specs.size(); ++i) ckpt->add(specs[i].name, DType::BF16, specs[i].shape, std::move(data[i]));
  return ckpt;
}

}  // namespace codecllm::model
