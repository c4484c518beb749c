// config.json -> LlamaConfig. Defaults are transformers' own (LlamaConfig, MistralConfig,
// Qwen2Config), so a config that transformers accepts means the same thing here; anything
// that would change the computation and is not implemented is refused by name.
#include "model/llama_config.hpp"

#include <cmath>
#include <nlohmann/json.hpp>

#include "codecllm/error.hpp"

namespace codecllm::model {
namespace {

using json = nlohmann::json;

class Reader {
 public:
  Reader(const json& j, const std::string& what) : j_(j), what_(what) {}

  [[noreturn]] void fail(const std::string& problem) const { throw Error(what_ + ": config.json: " + problem); }

  bool has(const json& obj, const char* key) const { return obj.contains(key) && !obj.at(key).is_null(); }
  bool has(const char* key) const { return has(j_, key); }

  // A positive integer field; `fallback` < 0 means the field is required.
  int positive_int(const json& obj, const char* key, int fallback = -1) const {
    if (!has(obj, key)) {
      if (fallback < 0) fail(std::string("required field '") + key + "' is missing");
      return fallback;
    }
    const json& v = obj.at(key);
    if (!v.is_number_integer() || v.get<int64_t>() <= 0 || v.get<int64_t>() > INT32_MAX)
      fail(std::string("'") + key + "' must be a positive integer, got " + v.dump());
    return v.get<int>();
  }
  int positive_int(const char* key, int fallback = -1) const { return positive_int(j_, key, fallback); }

  double number(const json& obj, const char* key, double fallback, bool required = false) const {
    if (!has(obj, key)) {
      if (required) fail(std::string("required field '") + key + "' is missing");
      return fallback;
    }
    if (!obj.at(key).is_number()) fail(std::string("'") + key + "' must be a number, got " + obj.at(key).dump());
    return obj.at(key).get<double>();
  }

  bool boolean(const char* key, bool fallback) const {
    if (!has(key)) return fallback;
    if (!j_.at(key).is_boolean()) fail(std::string("'") + key + "' must be true or false, got " + j_.at(key).dump());
    return j_.at(key).get<bool>();
  }

  std::string string(const json& obj, const char* key, const std::string& fallback) const {
    if (!has(obj, key)) return fallback;
    if (!obj.at(key).is_string()) fail(std::string("'") + key + "' must be a string, got " + obj.at(key).dump());
    return obj.at(key).get<std::string>();
  }

  int token_id(const json& v, const char* key) const {
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > INT32_MAX)
      fail(std::string("'") + key + "' must hold non-negative integers, got " + v.dump());
    return v.get<int>();
  }

 private:
  const json& j_;
  const std::string& what_;
};

// transformers 4 writes rope_theta and rope_scaling at the top level; transformers 5 writes
// one rope_parameters object holding rope_type, rope_theta and the scaling fields.
void parse_rope(const json& j, const Reader& r, LlamaConfig& c) {
  const json* params = nullptr;
  if (r.has("rope_parameters")) {
    if (!j.at("rope_parameters").is_object()) r.fail("'rope_parameters' must be an object");
    params = &j.at("rope_parameters");
  }
  c.rope_theta = r.number(j, "rope_theta", params ? r.number(*params, "rope_theta", 10000.0) : 10000.0);
  if (!(c.rope_theta > 1.0)) r.fail("'rope_theta' must be greater than 1");

  const json* scaling = params;
  if (r.has("rope_scaling")) {
    if (!j.at("rope_scaling").is_object()) r.fail("'rope_scaling' must be null or an object");
    scaling = &j.at("rope_scaling");
  }
  if (scaling == nullptr) return;
  // "type" is the spelling of older configs.
  const std::string type = r.string(*scaling, "rope_type", r.string(*scaling, "type", "default"));
  if (type == "default") return;
  if (type != "llama3") r.fail("rope scaling type '" + type + "' is not supported (only default and llama3 are)");

  RopeScaling& s = c.rope_scaling;
  s.type = type;
  s.factor = r.number(*scaling, "factor", 0, true);
  s.low_freq_factor = r.number(*scaling, "low_freq_factor", 0, true);
  s.high_freq_factor = r.number(*scaling, "high_freq_factor", 0, true);
  s.original_max_position_embeddings = uint64_t(r.positive_int(*scaling, "original_max_position_embeddings"));
  if (!(s.factor > 0) || !(s.low_freq_factor > 0) || !(s.high_freq_factor > s.low_freq_factor))
    r.fail("llama3 rope scaling needs factor > 0 and high_freq_factor > low_freq_factor > 0");
}

}  // namespace

LlamaConfig parse_llama_config(const std::string& json_text, const std::string& what) {
  json j;
  try {
    j = json::parse(json_text);
  } catch (const json::exception& e) {
    throw FormatError(what + ": config.json is not valid JSON: " + e.what());
  }
  const Reader r(j, what);
  if (!j.is_object()) r.fail("top level is not an object");

  LlamaConfig c;
  if (!r.has("model_type")) r.fail("required field 'model_type' is missing");
  c.model_type = r.string(j, "model_type", "");
  if (c.model_type != "llama" && c.model_type != "mistral" && c.model_type != "qwen2")
    r.fail("model_type '" + c.model_type + "' is not supported (llama, mistral and qwen2 are)");

  c.hidden = r.positive_int("hidden_size");
  c.intermediate = r.positive_int("intermediate_size");
  c.layers = r.positive_int("num_hidden_layers");
  c.heads = r.positive_int("num_attention_heads");
  c.kv_heads = r.positive_int("num_key_value_heads", c.heads);  // absent: plain multi-head attention
  c.vocab = r.positive_int("vocab_size");
  c.max_positions = r.positive_int("max_position_embeddings");
  if (c.heads % c.kv_heads != 0) {
    r.fail("num_attention_heads (" + std::to_string(c.heads) + ") is not divisible by num_key_value_heads (" +
           std::to_string(c.kv_heads) + ")");
  }
  if (!r.has("head_dim") && c.hidden % c.heads != 0)
    r.fail("hidden_size is not divisible by num_attention_heads and no head_dim is given");
  c.head_dim = r.positive_int("head_dim", c.hidden / c.heads);
  if (c.head_dim % 2 != 0) r.fail("head_dim " + std::to_string(c.head_dim) + " is odd, which RoPE does not allow");

  c.rms_eps = r.number(j, "rms_norm_eps", 1e-6);  // transformers' default for all three types
  if (!(c.rms_eps >= 0)) r.fail("'rms_norm_eps' must not be negative");
  c.tie_embeddings = r.boolean("tie_word_embeddings", false);

  const std::string act = r.string(j, "hidden_act", "silu");
  if (act != "silu") r.fail("hidden_act '" + act + "' is not supported (only silu is)");
  if (r.boolean("mlp_bias", false)) r.fail("mlp_bias true is not supported");

  // Llama's attention_bias puts biases on q, k, v and o; Qwen2 always has q/k/v biases and
  // none on o; Mistral has none (transformers ignores attention_bias for it).
  if (c.model_type == "qwen2") {
    c.qkv_bias = true;
  } else if (c.model_type == "llama") {
    c.qkv_bias = c.o_bias = r.boolean("attention_bias", false);
  }

  // Sliding-window attention differs from full attention only for sequences longer than the
  // window, so a window that covers every position is harmless.
  const bool window_used =
      c.model_type == "mistral" || (c.model_type == "qwen2" && r.boolean("use_sliding_window", false));
  if (window_used && r.has("sliding_window")) {
    const int window = r.positive_int("sliding_window");
    if (window < c.max_positions) {
      r.fail("sliding_window " + std::to_string(window) + " < max_position_embeddings " +
             std::to_string(c.max_positions) + ": sliding-window attention is unsupported");
    }
  }

  parse_rope(j, r, c);

  if (r.has("bos_token_id")) c.bos = r.token_id(j.at("bos_token_id"), "bos_token_id");
  if (r.has("eos_token_id")) {
    const json& e = j.at("eos_token_id");
    if (e.is_array()) {
      for (const json& v : e) c.eos.push_back(r.token_id(v, "eos_token_id"));
    } else {
      c.eos.push_back(r.token_id(e, "eos_token_id"));
    }
  }
  return c;
}

LlamaConfig read_llama_config(const format::ContainerReader& file) {
  if (!file.has_blob("config.json")) throw Error(file.path() + ": carries no config.json");
  const ByteSpan config = file.blob("config.json");
  return parse_llama_config(std::string(reinterpret_cast<const char*>(config.data()), config.size()), file.path());
}

// As transformers' _compute_default_rope_parameters and _compute_llama3_parameters: llama3
// leaves high frequencies alone, divides low ones by `factor`, and blends in between.
std::vector<double> rope_inv_freq(const LlamaConfig& c) {
  const int half = c.head_dim / 2;
  std::vector<double> inv(half);
  for (int i = 0; i < half; ++i) inv[i] = 1.0 / std::pow(c.rope_theta, 2.0 * i / c.head_dim);
  if (c.rope_scaling.type != "llama3") return inv;

  const RopeScaling& s = c.rope_scaling;
  const double old_len = double(s.original_max_position_embeddings);
  const double low_freq_wavelen = old_len / s.low_freq_factor;
  const double high_freq_wavelen = old_len / s.high_freq_factor;
  for (double& f : inv) {
    const double wavelen = 2 * M_PI / f;
    if (wavelen > low_freq_wavelen) {
      f /= s.factor;
    } else if (wavelen >= high_freq_wavelen) {
      const double smooth = (old_len / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
      f = (1 - smooth) * f / s.factor + smooth * f;
    }
  }
  return inv;
}

}  // namespace codecllm::model
