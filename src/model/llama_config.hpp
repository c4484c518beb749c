// The subset of a Hugging Face config.json that the Llama-family engine understands. Every
// field that would change the computation and is not supported is rejected with a message
// naming it, rather than silently ignored.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "format/container.hpp"

namespace codecllm::model {

struct RopeScaling {
  std::string type = "default";  // "default" or "llama3"
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  uint64_t original_max_position_embeddings = 8192;
};

struct LlamaConfig {
  std::string model_type = "llama";  // llama, mistral, qwen2 (q/k/v biases)
  int hidden = 0;                    // hidden_size
  int intermediate = 0;              // intermediate_size
  int layers = 0;                    // num_hidden_layers
  int heads = 0;                     // num_attention_heads
  int kv_heads = 0;                  // num_key_value_heads (GQA)
  int head_dim = 0;                  // head_dim or hidden / heads
  int vocab = 0;
  int max_positions = 0;        // max_position_embeddings
  double rope_theta = 10000.0;  // rope_theta or rope_parameters.rope_theta
  double rms_eps = 1e-5;
  bool tie_embeddings = false;  // lm_head shares model.embed_tokens.weight
  bool qkv_bias = false;        // attention_bias, or qwen2
  bool o_bias = false;          // attention_bias (Llama puts a bias on o_proj too)
  RopeScaling rope_scaling;
  int bos = 1;
  std::vector<int> eos;  // eos_token_id (int or list)
};

// Parses config.json text; throws codecllm::Error naming `what` and the offending field.
LlamaConfig parse_llama_config(const std::string& json_text, const std::string& what);

// The config.json a .cllm carries, parsed; throws naming the file when it carries none.
LlamaConfig read_llama_config(const format::ContainerReader& file);

// Inverse frequencies of RoPE for each pair of a head, after rope scaling (head_dim / 2 values).
std::vector<double> rope_inv_freq(const LlamaConfig& c);

}  // namespace codecllm::model
