#include "model/llama_tensors.hpp"

#include "codecllm/error.hpp"

namespace codecllm::model {

bool is_layer_role(TensorRole role) {
  return role != TensorRole::Embedding && role != TensorRole::FinalNorm && role != TensorRole::LmHead;
}

bool is_norm(TensorRole role) {
  return role == TensorRole::AttnNorm || role == TensorRole::FfnNorm || role == TensorRole::FinalNorm;
}

namespace {

// The name of a per-layer tensor after "model.layers.N.".
const char* layer_suffix(TensorRole role) {
  switch (role) {
    case TensorRole::Q:
      return "self_attn.q_proj.weight";
    case TensorRole::QBias:
      return "self_attn.q_proj.bias";
    case TensorRole::K:
      return "self_attn.k_proj.weight";
    case TensorRole::KBias:
      return "self_attn.k_proj.bias";
    case TensorRole::V:
      return "self_attn.v_proj.weight";
    case TensorRole::VBias:
      return "self_attn.v_proj.bias";
    case TensorRole::O:
      return "self_attn.o_proj.weight";
    case TensorRole::OBias:
      return "self_attn.o_proj.bias";
    case TensorRole::Gate:
      return "mlp.gate_proj.weight";
    case TensorRole::Up:
      return "mlp.up_proj.weight";
    case TensorRole::Down:
      return "mlp.down_proj.weight";
    case TensorRole::AttnNorm:
      return "input_layernorm.weight";
    case TensorRole::FfnNorm:
      return "post_attention_layernorm.weight";
    default:
      return "";
  }
}

}  // namespace

std::string tensor_name(TensorRole role, int layer) {
  switch (role) {
    case TensorRole::Embedding:
      return "model.embed_tokens.weight";
    case TensorRole::FinalNorm:
      return "model.norm.weight";
    case TensorRole::LmHead:
      return "lm_head.weight";
    default:
      return "model.layers." + std::to_string(layer) + "." + layer_suffix(role);
  }
}

TensorSpec tensor_spec(const LlamaConfig& c, TensorRole role, int layer) {
  const auto H = uint64_t(c.hidden), I = uint64_t(c.intermediate), V = uint64_t(c.vocab);
  const uint64_t Q = uint64_t(c.heads) * uint64_t(c.head_dim), KV = uint64_t(c.kv_heads) * uint64_t(c.head_dim);
  std::vector<uint64_t> shape;
  switch (role) {
    case TensorRole::Embedding:
    case TensorRole::LmHead:
      shape = {V, H};
      break;
    case TensorRole::Q:
      shape = {Q, H};
      break;
    case TensorRole::K:
    case TensorRole::V:
      shape = {KV, H};
      break;
    case TensorRole::O:
      shape = {H, Q};
      break;
    case TensorRole::Gate:
    case TensorRole::Up:
      shape = {I, H};
      break;
    case TensorRole::Down:
      shape = {H, I};
      break;
    case TensorRole::QBias:
      shape = {Q};
      break;
    case TensorRole::KBias:
    case TensorRole::VBias:
      shape = {KV};
      break;
    case TensorRole::OBias:
    case TensorRole::AttnNorm:
    case TensorRole::FfnNorm:
    case TensorRole::FinalNorm:
      shape = {H};
      break;
  }
  return TensorSpec{tensor_name(role, layer), std::move(shape), role, is_layer_role(role) ? layer : -1};
}

std::vector<TensorSpec> layer_tensors(const LlamaConfig& c, int layer) {
  std::vector<TensorSpec> out;
  for (int r = int(TensorRole::Q); r <= int(TensorRole::FfnNorm); ++r) {
    const auto role = TensorRole(r);
    const bool bias = role == TensorRole::QBias || role == TensorRole::KBias || role == TensorRole::VBias;
    if (bias && !c.qkv_bias) continue;
    if (role == TensorRole::OBias && !c.o_bias) continue;
    out.push_back(tensor_spec(c, role, layer));
  }
  return out;
}

std::vector<TensorSpec> llama_tensors(const LlamaConfig& c) {
  std::vector<TensorSpec> out = {tensor_spec(c, TensorRole::Embedding)};
  for (int l = 0; l < c.layers; ++l) {
    std::vector<TensorSpec> layer = layer_tensors(c, l);
    out.insert(out.end(), std::make_move_iterator(layer.begin()), std::make_move_iterator(layer.end()));
  }
  out.push_back(tensor_spec(c, TensorRole::FinalNorm));
  if (!c.tie_embeddings) out.push_back(tensor_spec(c, TensorRole::LmHead));
  return out;
}

std::string shape_string(const std::vector<uint64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

const format::TensorRecord& find_tensor(const format::ContainerReader& file, const TensorSpec& spec) {
  const format::TensorRecord* r = file.index().find_tensor(spec.name);
  if (r == nullptr) throw Error(file.path() + ": tensor '" + spec.name + "' is missing");
  if (r->shape != spec.shape) {
    throw Error(file.path() + ": tensor '" + spec.name + "' has shape " + shape_string(r->shape) + ", expected " +
                shape_string(spec.shape));
  }
  return *r;
}

}  // namespace codecllm::model
