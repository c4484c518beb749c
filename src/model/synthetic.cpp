#include "model/synthetic.hpp"

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>

#include "codec/int8_quant.hpp"
#include "codec/parallel_for.hpp"
#include "codecllm/error.hpp"
#include "model/llama_tensors.hpp"

namespace codecllm::model {

namespace {

MemoryCheckpoint::Generator bf16_ones(uint64_t n) {
  return [n] {
    std::vector<uint8_t> bytes(2 * n);
    const uint16_t one = codec::float_to_bf16(1.0f);
    for (uint64_t k = 0; k < n; ++k) std::memcpy(&bytes[2 * k], &one, 2);
    return bytes;
  };
}

MemoryCheckpoint::Generator bf16_random(std::shared_ptr<const RandomBf16> dist, uint64_t n, uint64_t seed) {
  return [dist = std::move(dist), n, seed] {
    std::vector<uint8_t> bytes(2 * n);
    dist->fill(seed, 0, bytes.data(), n);
    return bytes;
  };
}

}  // namespace

void MemoryCheckpoint::add_info(const std::string& name, DType dtype, std::vector<uint64_t> shape, ByteSpan data) {
  TensorInfo t;
  t.name = name;
  t.dtype = dtype;
  t.dtype_name = dtype_name(dtype);
  t.shape = std::move(shape);
  t.data = data;
  tensors_.push_back(std::move(t));
}

void MemoryCheckpoint::add(const std::string& name, DType dtype, std::vector<uint64_t> shape,
                           std::vector<uint8_t> bytes) {
  storage_.push_back(std::make_unique<std::vector<uint8_t>>(std::move(bytes)));
  add_info(name, dtype, std::move(shape), ByteSpan(*storage_.back()));
  generators_.emplace_back();
}

void MemoryCheckpoint::add_generated(const std::string& name, DType dtype, std::vector<uint64_t> shape,
                                     Generator generate) {
  add_info(name, dtype, std::move(shape), ByteSpan());
  generators_.push_back(std::move(generate));
}

void MemoryCheckpoint::materialize(unsigned threads) {
  std::vector<std::vector<uint8_t>> made(tensors_.size());
  parallel_for(tensors_.size(), threads, [&](size_t i) {
    if (generators_[i]) made[i] = generators_[i]();
  });
  for (size_t i = 0; i < tensors_.size(); ++i) {
    if (!generators_[i]) continue;
    storage_.push_back(std::make_unique<std::vector<uint8_t>>(std::move(made[i])));
    tensors_[i].data = ByteSpan(*storage_.back());
    generators_[i] = nullptr;
  }
}

TensorBytes MemoryCheckpoint::tensor_data(size_t i) const {
  if (!generators_.at(i)) return Checkpoint::tensor_data(i);
  auto bytes = std::make_shared<const std::vector<uint8_t>>(generators_[i]());
  return {ByteSpan(*bytes), bytes};
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
  for (auto [tok, id] : {std::pair<const char*, int>{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}}) {
    added.push_back({{"id", id},
                     {"content", tok},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", true}});
  }
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

LlamaShape llama_shape_from_config(const std::string& config_json, const std::string& what) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(config_json);
  } catch (const nlohmann::json::exception& e) {
    throw FormatError(what + ": not valid JSON: " + e.what());
  }
  if (!j.is_object()) throw FormatError(what + ": top level is not an object");
  // Absent fields take transformers' LlamaConfig defaults; null counts as absent.
  auto field = [&](const char* key) -> const nlohmann::json* {
    const auto it = j.find(key);
    return it == j.end() || it->is_null() ? nullptr : &*it;
  };
  auto count = [&](const char* key, int64_t fallback) -> uint64_t {
    const nlohmann::json* v = field(key);
    if (v == nullptr && fallback < 0) throw FormatError(what + ": required field '" + key + "' is missing");
    if (v == nullptr) return uint64_t(fallback);
    if (!v->is_number_integer() || v->get<int64_t>() <= 0)
      throw FormatError(what + ": '" + key + "' must be a positive integer");
    return v->get<uint64_t>();
  };
  LlamaShape s;
  s.hidden = count("hidden_size", -1);
  s.intermediate = count("intermediate_size", -1);
  s.layers = count("num_hidden_layers", -1);
  s.heads = count("num_attention_heads", -1);
  s.kv_heads = count("num_key_value_heads", int64_t(s.heads));
  s.vocab = count("vocab_size", -1);
  s.max_positions = count("max_position_embeddings", 2048);
  s.head_dim = count("head_dim", 0);
  const nlohmann::json* theta = field("rope_theta");
  const nlohmann::json* tie = field("tie_word_embeddings");
  if ((theta != nullptr && !theta->is_number()) || (tie != nullptr && !tie->is_boolean()))
    throw FormatError(what + ": 'rope_theta' must be a number and 'tie_word_embeddings' a boolean");
  s.rope_theta = theta != nullptr ? theta->get<double>() : 10000.0;
  s.tie_embeddings = tie != nullptr && tie->get<bool>();
  return s;
}

std::unique_ptr<MemoryCheckpoint> random_llama(const LlamaShape& s, uint64_t seed) {
  if (s.hidden == 0 || s.intermediate == 0 || s.layers == 0 || s.heads == 0 || s.kv_heads == 0 || s.vocab == 0)
    throw Error("model shape: every size and count must be positive");
  if (s.heads % s.kv_heads != 0) throw Error("model shape: attention heads are not a multiple of key/value heads");
  if (s.head_dim == 0 && s.hidden % s.heads != 0)
    throw Error("model shape: hidden size is not a multiple of attention heads and no head_dim is given");
  const uint64_t head_dim = s.head_dim != 0 ? s.head_dim : s.hidden / s.heads;
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
  const std::vector<TensorSpec> specs = llama_tensors(parse_llama_config(ckpt->config_json(), "synthetic model"));
  // One alias table serves every tensor: they share sigma and the outlier fraction.
  auto weights = std::make_shared<const RandomBf16>(0.02, 0.001);
  for (size_t i = 0; i < specs.size(); ++i) {
    uint64_t n = 1;
    for (uint64_t d : specs[i].shape) n *= d;
    ckpt->add_generated(specs[i].name, DType::BF16, specs[i].shape,
                        is_norm(specs[i].role) ? bf16_ones(n) : bf16_random(weights, n, seed * 1000003 + i));
  }
  return ckpt;
}

std::unique_ptr<MemoryCheckpoint> make_random_llama(const LlamaShape& s, uint64_t seed, unsigned threads) {
  auto ckpt = random_llama(s, seed);
  ckpt->materialize(threads);
  return ckpt;
}

}  // namespace codecllm::model
