// One token through a Llama-family transformer, in float32, in the order of transformers'
// LlamaDecoderLayer. Buffers are allocated once; forward() allocates nothing.
#include "engine/cpu_engine.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "codec/int8_quant.hpp"
#include "codec/parallel_for.hpp"
#include "codec/tensor_codec.hpp"
#include "codecllm/error.hpp"
#include "model/llama_tensors.hpp"

namespace codecllm::engine {
namespace {

// Below this many multiply-adds, starting a thread costs more than it saves.
constexpr size_t kMinWorkPerThread = size_t(1) << 16;

struct Layer {
  const float *attn_norm = nullptr, *ffn_norm = nullptr;
  const float *wq = nullptr, *wk = nullptr, *wv = nullptr, *wo = nullptr;
  const float *bq = nullptr, *bk = nullptr, *bv = nullptr, *bo = nullptr;  // null: no bias
  const float *gate = nullptr, *up = nullptr, *down = nullptr;
};

float dot(const float* a, const float* b, int n) {
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

// out = x * rsqrt(mean(x^2) + eps) * w; out may be x.
void rmsnorm(float* out, const float* x, const float* w, int n, float eps) {
  const float scale = 1.0f / std::sqrt(dot(x, x, n) / float(n) + eps);
  for (int i = 0; i < n; ++i) out[i] = x[i] * scale * w[i];
}

// A tensor decoded to float32. int8 tensors become q * scale (float32), the dequantization
// every backend reproduces.
std::vector<float> decode_f32(const format::ContainerReader& file, const format::TensorRecord& rec) {
  codec::DecodedTensor d = codec::decode_tensor(
      rec, [&](const format::PlaneRecord& p) { return file.payload(p); }, file.path());
  if (rec.mode == format::TensorMode::Lossless) return codec::to_float(rec.dtype, d.bytes);
  std::vector<float> w(rec.num_elements());
  const size_t cols = w.size() / rec.shape[0];
  for (size_t i = 0; i < w.size(); ++i) w[i] = float(int8_t(d.bytes[i])) * d.scales[i / cols];
  return w;
}

class CpuEngine final : public Engine {
 public:
  CpuEngine(const format::ContainerReader& file, const CpuEngineOptions& o) : threads_(resolve_threads(o.threads)) {
    c_ = read_llama_config(file);
    max_seq_ = o.max_seq_len > 0 ? o.max_seq_len : std::min(c_.max_positions, 4096);
    if (max_seq_ > c_.max_positions)
      throw Error("max_seq_len " + std::to_string(max_seq_) + " exceeds max_position_embeddings " +
                  std::to_string(c_.max_positions) + " of " + file.path());
    load_weights(file);
    inv_freq_ = rope_inv_freq(c_);

    const int q_dim = c_.heads * c_.head_dim;
    x_.resize(c_.hidden);
    xb_.resize(c_.hidden);
    q_.resize(q_dim);
    att_out_.resize(q_dim);
    gate_.resize(c_.intermediate);
    up_.resize(c_.intermediate);
    scores_.resize(size_t(c_.heads) * max_seq_);
    logits_.resize(c_.vocab);
    rope_cos_.resize(c_.head_dim / 2);
    rope_sin_.resize(c_.head_dim / 2);
    key_cache_.resize(size_t(c_.layers) * max_seq_ * kv_dim());
    value_cache_.resize(key_cache_.size());
    describe_ = "cpu, " + std::to_string(threads_) + " threads, f32" +
                (file.index().mode == "int8" ? " (dequantized from int8)" : "");
  }

  const LlamaConfig& config() const override { return c_; }
  int max_seq_len() const override { return max_seq_; }
  std::string describe() const override { return describe_; }

  MemoryStats memory() const override {
    MemoryStats m;
    for (const auto& t : storage_) m.weight_bytes += t.size() * sizeof(float);
    m.kv_cache_bytes = (key_cache_.size() + value_cache_.size()) * sizeof(float);
    for (const auto* v : {&x_, &xb_, &q_, &att_out_, &gate_, &up_, &scores_, &logits_, &rope_cos_, &rope_sin_})
      m.activation_bytes += v->size() * sizeof(float);
    return m;
  }

  const float* forward(int token, int pos) override {
    if (token < 0 || token >= c_.vocab)
      throw Error("token " + std::to_string(token) + " is outside the vocabulary of " + std::to_string(c_.vocab));
    if (pos < 0 || pos >= max_seq_)
      throw Error("position " + std::to_string(pos) + " is outside the KV cache of " + std::to_string(max_seq_));
    const int H = c_.hidden, q_dim = c_.heads * c_.head_dim, kv = kv_dim();
    const auto eps = float(c_.rms_eps);
    std::memcpy(x_.data(), embed_ + size_t(token) * H, H * sizeof(float));
    for (int i = 0; i < c_.head_dim / 2; ++i) {
      rope_cos_[i] = float(std::cos(pos * inv_freq_[i]));
      rope_sin_[i] = float(std::sin(pos * inv_freq_[i]));
    }

    for (int l = 0; l < c_.layers; ++l) {
      const Layer& L = layers_[l];
      float* k = &key_cache_[(size_t(l) * max_seq_ + pos) * kv];
      float* v = &value_cache_[(size_t(l) * max_seq_ + pos) * kv];

      // Attention block: x += o_proj(attention(rope(q), rope(k), v)).
      rmsnorm(xb_.data(), x_.data(), L.attn_norm, H, eps);
      matmul(q_.data(), L.wq, L.bq, xb_.data(), q_dim, H);
      matmul(k, L.wk, L.bk, xb_.data(), kv, H);
      matmul(v, L.wv, L.bv, xb_.data(), kv, H);
      rope(q_.data(), c_.heads);
      rope(k, c_.kv_heads);
      attention(l, pos);
      matmul(xb_.data(), L.wo, L.bo, att_out_.data(), H, q_dim);
      for (int i = 0; i < H; ++i) x_[i] += xb_[i];

      // MLP block: x += down(silu(gate(x)) * up(x)).
      rmsnorm(xb_.data(), x_.data(), L.ffn_norm, H, eps);
      matmul(gate_.data(), L.gate, nullptr, xb_.data(), c_.intermediate, H);
      matmul(up_.data(), L.up, nullptr, xb_.data(), c_.intermediate, H);
      for (int i = 0; i < c_.intermediate; ++i) gate_[i] = gate_[i] / (1.0f + std::exp(-gate_[i])) * up_[i];
      matmul(xb_.data(), L.down, nullptr, gate_.data(), H, c_.intermediate);
      for (int i = 0; i < H; ++i) x_[i] += xb_[i];
    }

    rmsnorm(x_.data(), x_.data(), final_norm_, H, eps);
    matmul(logits_.data(), lm_head_, nullptr, x_.data(), c_.vocab, H);
    return logits_.data();
  }

 private:
  int kv_dim() const { return c_.kv_heads * c_.head_dim; }

  unsigned threads_for(size_t work) const {
    return unsigned(std::clamp<size_t>(work / kMinWorkPerThread, 1, threads_));
  }

  // out[r] = W[r, :] . x (+ bias[r]) with W row-major [rows][cols]. Each task takes a block of
  // consecutive rows, so a thread streams through one contiguous stretch of W.
  void matmul(float* out, const float* w, const float* bias, const float* x, int rows, int cols) const {
    const unsigned t = threads_for(size_t(rows) * cols);
    const int block = std::max(1, rows / int(4 * t));  // a few blocks per thread evens out the load
    parallel_for(size_t((rows + block - 1) / block), t, [&](size_t b) {
      const int end = std::min(rows, int(b + 1) * block);
      for (int r = int(b) * block; r < end; ++r) out[r] = dot(w + size_t(r) * cols, x, cols) + (bias ? bias[r] : 0.0f);
    });
  }

  // Hugging Face rotate-half layout: element i of a head pairs with element i + head_dim/2.
  void rope(float* vec, int n_heads) const {
    const int half = c_.head_dim / 2;
    for (int h = 0; h < n_heads; ++h) {
      float* v = vec + size_t(h) * c_.head_dim;
      for (int i = 0; i < half; ++i) {
        const float a = v[i], b = v[i + half];
        v[i] = a * rope_cos_[i] - b * rope_sin_[i];
        v[i + half] = b * rope_cos_[i] + a * rope_sin_[i];
      }
    }
  }

  // att_out = softmax(q . k_t / sqrt(head_dim)) over t <= pos, times v_t; query head h reads
  // KV head h / (heads / kv_heads) (grouped-query attention).
  void attention(int layer, int pos) {
    const int hd = c_.head_dim, kv = kv_dim(), group = c_.heads / c_.kv_heads;
    const float* keys = &key_cache_[size_t(layer) * max_seq_ * kv];
    const float* values = &value_cache_[size_t(layer) * max_seq_ * kv];
    const float inv_sqrt = 1.0f / std::sqrt(float(hd));
    const unsigned t = threads_for(size_t(c_.heads) * (pos + 1) * hd * 2);
    parallel_for(size_t(c_.heads), t, [&](size_t h) {
      const float* q = &q_[h * hd];
      const size_t kv_offset = (h / group) * hd;
      float* s = &scores_[h * max_seq_];
      float max_score = -INFINITY;
      for (int p = 0; p <= pos; ++p) {
        s[p] = dot(q, keys + size_t(p) * kv + kv_offset, hd) * inv_sqrt;
        max_score = std::max(max_score, s[p]);
      }
      float sum = 0.0f;
      for (int p = 0; p <= pos; ++p) sum += s[p] = std::exp(s[p] - max_score);
      float* out = &att_out_[h * hd];
      std::fill(out, out + hd, 0.0f);
      for (int p = 0; p <= pos; ++p) {
        const float a = s[p] / sum;
        const float* v = values + size_t(p) * kv + kv_offset;
        for (int i = 0; i < hd; ++i) out[i] += a * v[i];
      }
    });
  }

  // Where a tensor of the model goes: its role picks the pointer.
  const float** slot_of(const model::TensorSpec& t) {
    using model::TensorRole;
    if (t.layer < 0)
      return t.role == TensorRole::Embedding ? &embed_ : t.role == TensorRole::FinalNorm ? &final_norm_ : &lm_head_;
    Layer& L = layers_[t.layer];
    switch (t.role) {
      case TensorRole::Q:
        return &L.wq;
      case TensorRole::QBias:
        return &L.bq;
      case TensorRole::K:
        return &L.wk;
      case TensorRole::KBias:
        return &L.bk;
      case TensorRole::V:
        return &L.wv;
      case TensorRole::VBias:
        return &L.bv;
      case TensorRole::O:
        return &L.wo;
      case TensorRole::OBias:
        return &L.bo;
      case TensorRole::Gate:
        return &L.gate;
      case TensorRole::Up:
        return &L.up;
      case TensorRole::Down:
        return &L.down;
      case TensorRole::AttnNorm:
        return &L.attn_norm;
      default:
        return &L.ffn_norm;
    }
  }

  void load_weights(const format::ContainerReader& file) {
    layers_.resize(c_.layers);
    const std::vector<model::TensorSpec> want = model::llama_tensors(c_);
    // Check everything before decoding anything, so that a bad file fails fast.
    std::vector<const format::TensorRecord*> records;
    for (const model::TensorSpec& t : want) records.push_back(&model::find_tensor(file, t));
    storage_.resize(want.size());
    parallel_for(want.size(), threads_, [&](size_t i) { storage_[i] = decode_f32(file, *records[i]); });
    for (size_t i = 0; i < want.size(); ++i) *slot_of(want[i]) = storage_[i].data();
    if (c_.tie_embeddings) lm_head_ = embed_;
  }

  LlamaConfig c_;
  unsigned threads_;
  int max_seq_ = 0;
  std::string describe_;
  std::vector<std::vector<float>> storage_;  // owns every weight; the pointers below point into it
  const float* embed_ = nullptr;
  const float* final_norm_ = nullptr;
  const float* lm_head_ = nullptr;
  std::vector<Layer> layers_;
  std::vector<double> inv_freq_;
  std::vector<float> key_cache_, value_cache_;  // [layer][position][kv_heads * head_dim]
  std::vector<float> x_, xb_, q_, att_out_, gate_, up_, scores_, logits_, rope_cos_, rope_sin_;
};

}  // namespace

std::unique_ptr<Engine> make_cpu_engine(const format::ContainerReader& file, const CpuEngineOptions& options) {
  return std::make_unique<CpuEngine>(file, options);
}

}  // namespace codecllm::engine
