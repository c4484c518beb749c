// llama2.c version-0 reader. The file has no magic, so the header is validated field by
// field and the file size must match it exactly before any array is looked at.
#include "model/llama2c.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <vector>

#include "codecllm/bytes.hpp"
#include "codecllm/error.hpp"
#include "format/mapped_file.hpp"
#include "model/files.hpp"
#include "model/llama_tensors.hpp"

namespace codecllm::model {
namespace {

namespace fs = std::filesystem;

// Versions 1 and 2 of llama2.c's export start with this magic ("ak42" little-endian).
constexpr uint32_t kLlama2cMagic = 0x616b3432;

// Positions of the float32 arrays, in floats from the end of the header.
struct Layout {
  uint64_t embed, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final, wcls, total;
};

// Header fields are up to 2^31, so products of three overflow 64 bits: check every step.
class Checked {
 public:
  explicit Checked(const std::string& what) : what_(what) {}
  uint64_t mul(uint64_t a, uint64_t b) const {
    uint64_t r = 0;
    if (__builtin_mul_overflow(a, b, &r)) overflow();
    return r;
  }
  uint64_t mul(uint64_t a, uint64_t b, uint64_t c) const { return mul(mul(a, b), c); }
  uint64_t add(uint64_t a, uint64_t b) const {
    uint64_t r = 0;
    if (__builtin_add_overflow(a, b, &r)) overflow();
    return r;
  }
  // Returns the offset of an array of `count` floats and advances `pos` past it.
  uint64_t take(uint64_t* pos, uint64_t count) const {
    const uint64_t at = *pos;
    if (__builtin_add_overflow(*pos, count, pos)) overflow();
    return at;
  }

 private:
  [[noreturn]] void overflow() const { throw FormatError(what_ + ": llama2.c header sizes overflow 64 bits"); }
  const std::string& what_;
};

Layout layout_of(const Llama2cConfig& c, const std::string& what) {
  const Checked k(what);
  const uint64_t L = c.n_layers, D = c.dim, KV = c.kv_dim();
  Layout l{};
  uint64_t pos = 0;
  l.embed = k.take(&pos, k.mul(c.vocab_size, D));
  l.rms_att = k.take(&pos, k.mul(L, D));
  l.wq = k.take(&pos, k.mul(L, D, D));
  l.wk = k.take(&pos, k.mul(L, KV, D));
  l.wv = k.take(&pos, k.mul(L, KV, D));
  l.wo = k.take(&pos, k.mul(L, D, D));
  l.rms_ffn = k.take(&pos, k.mul(L, D));
  l.w1 = k.take(&pos, k.mul(L, c.hidden_dim, D));
  l.w2 = k.take(&pos, k.mul(L, D, c.hidden_dim));
  l.w3 = k.take(&pos, k.mul(L, c.hidden_dim, D));
  l.rms_final = k.take(&pos, D);
  // freq_cis_real and freq_cis_imag, [seq_len, head_size / 2] each: unused RoPE tables.
  k.take(&pos, k.mul(2, c.seq_len, c.head_size() / 2));
  l.wcls = k.take(&pos, c.shared_classifier ? 0 : k.mul(c.vocab_size, D));
  l.total = pos;
  return l;
}

// llama2.c keeps each head's rotary pairs interleaved (rows 2i, 2i+1); Hugging Face uses
// rotate-half (row i pairs with i + head_size/2). This is the inverse of the permute in
// transformers' convert_llama_weights_to_hf.py.
void permute_to_rotate_half(const uint8_t* src, uint8_t* dst, uint64_t n_heads, uint64_t head_size,
                            uint64_t row_bytes) {
  const uint64_t half = head_size / 2;
  for (uint64_t h = 0; h < n_heads; ++h) {
    for (uint64_t j = 0; j < head_size; ++j) {
      const uint64_t from = h * head_size + (j < half ? 2 * j : 2 * (j - half) + 1);
      std::memcpy(dst + (h * head_size + j) * row_bytes, src + from * row_bytes, row_bytes);
    }
  }
}

// tokenizer.bin next to the model, else the only tok*.bin there (e.g. tok512.bin). The
// tokenizer is optional, so an unreadable directory just means none is carried.
std::string find_tokenizer(const fs::path& model) try {
  std::error_code ec;
  const fs::path dir = model.has_parent_path() ? model.parent_path() : fs::path(".");
  const auto is_other_file = [&](const fs::path& p) {
    return is_regular_file(p.string()) && !fs::equivalent(p, model, ec);
  };
  if (is_other_file(dir / "tokenizer.bin")) return (dir / "tokenizer.bin").string();
  std::vector<fs::path> found;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.size() >= 7 && name.compare(0, 3, "tok") == 0 && name.compare(name.size() - 4, 4, ".bin") == 0 &&
        is_other_file(e.path())) {
      found.push_back(e.path());
    }
  }
  return found.size() == 1 ? found[0].string() : std::string();
} catch (const fs::filesystem_error&) {
  return std::string();
}

class Llama2cCheckpoint : public Checkpoint {
 public:
  explicit Llama2cCheckpoint(const std::string& path) : map_(path), source_("llama2c:" + path) {
    config_ = parse_llama2c_header(map_.bytes(), path);
    config_json_ = llama2c_hf_config_json(config_);
    build_tensors(layout_of(config_, path));
    const std::string tokenizer = find_tokenizer(path);
    if (!tokenizer.empty()) extra_files_.emplace_back("tokenizer.bin", read_whole_file(tokenizer));
  }

  const std::vector<TensorInfo>& tensors() const override { return tensors_; }
  const std::string& config_json() const override { return config_json_; }
  const std::vector<std::pair<std::string, std::string>>& extra_files() const override { return extra_files_; }
  const std::string& source() const override { return source_; }

 private:
  // Floats [offset, offset + count) of the array region; the exact file-size check in
  // parse_llama2c_header keeps every such range inside the map.
  ByteSpan floats(uint64_t offset, uint64_t count) const {
    return map_.bytes().subspan(kLlama2cHeaderBytes + offset * 4, count * 4);
  }

  void add(std::string name, std::vector<uint64_t> shape, ByteSpan data) {
    TensorInfo t;
    t.name = std::move(name);
    t.dtype = DType::F32;
    t.dtype_name = "F32";
    t.shape = std::move(shape);
    t.data = data;
    tensors_.push_back(std::move(t));
  }

  ByteSpan permuted(ByteSpan src, uint64_t n_heads, uint64_t* used) {
    uint8_t* dst = permuted_.data() + *used;
    permute_to_rotate_half(src.data(), dst, n_heads, config_.head_size(), config_.dim * 4);
    *used += src.size();
    return ByteSpan(dst, src.size());
  }

  // Every tensor of the model (llama_tensors), each from its llama2.c array; wq and wk rows
  // permuted to the Hugging Face order.
  void build_tensors(const Layout& l) {
    const Llama2cConfig& c = config_;
    const uint64_t D = c.dim, H = c.hidden_dim, KV = c.kv_dim(), V = c.vocab_size;
    // Sized once up front: tensors_ keeps pointers into it.
    permuted_.resize(c.n_layers * (D * D + KV * D) * 4);
    uint64_t used = 0;
    for (const TensorSpec& t : llama_tensors(parse_llama_config(config_json_, source_))) {
      const auto i = uint64_t(std::max(t.layer, 0));
      ByteSpan data;
      switch (t.role) {
        case TensorRole::Embedding:
          data = floats(l.embed, V * D);
          break;
        case TensorRole::Q:
          data = permuted(floats(l.wq + i * D * D, D * D), c.n_heads, &used);
          break;
        case TensorRole::K:
          data = permuted(floats(l.wk + i * KV * D, KV * D), c.n_kv_heads, &used);
          break;
        case TensorRole::V:
          data = floats(l.wv + i * KV * D, KV * D);
          break;
        case TensorRole::O:
          data = floats(l.wo + i * D * D, D * D);
          break;
        case TensorRole::Gate:
          data = floats(l.w1 + i * H * D, H * D);
          break;
        case TensorRole::Up:
          data = floats(l.w3 + i * H * D, H * D);
          break;
        case TensorRole::Down:
          data = floats(l.w2 + i * D * H, D * H);
          break;
        case TensorRole::AttnNorm:
          data = floats(l.rms_att + i * D, D);
          break;
        case TensorRole::FfnNorm:
          data = floats(l.rms_ffn + i * D, D);
          break;
        case TensorRole::FinalNorm:
          data = floats(l.rms_final, D);
          break;
        case TensorRole::LmHead:
          data = floats(l.wcls, V * D);
          break;
        default:
          throw Error(source_ + ": llama2.c checkpoints have no tensor '" + t.name + "'");
      }
      add(t.name, t.shape, data);
    }
  }

  format::MappedFile map_;
  std::string source_;
  Llama2cConfig config_;
  std::string config_json_;
  std::vector<uint8_t> permuted_;  // wq and wk of every layer, in Hugging Face row order
  std::vector<TensorInfo> tensors_;
  std::vector<std::pair<std::string, std::string>> extra_files_;
};

}  // namespace

Llama2cConfig parse_llama2c_header(ByteSpan file, const std::string& what) {
  const auto fail = [&](const std::string& problem) { throw FormatError(what + ": " + problem); };
  if (file.size() < kLlama2cHeaderBytes) {
    fail("file is " + std::to_string(file.size()) + " bytes, too short for a llama2.c header");
  }
  if (load_le32(file.data()) == kLlama2cMagic) {
    fail("llama2.c version-1/2 export (magic 'ak42'); only the version-0 layout is supported");
  }
  int32_t h[7];
  for (int i = 0; i < 7; ++i) h[i] = static_cast<int32_t>(load_le32(file.data() + 4 * i));
  const char* const names[7] = {"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"};
  for (int i = 0; i < 7; ++i) {
    const bool ok = i == 5 ? h[i] != 0 && h[i] != INT32_MIN : h[i] > 0;
    if (!ok) fail("llama2.c header field " + std::string(names[i]) + " = " + std::to_string(h[i]) + " is invalid");
  }
  Llama2cConfig c;
  c.dim = static_cast<uint64_t>(h[0]);
  c.hidden_dim = static_cast<uint64_t>(h[1]);
  c.n_layers = static_cast<uint64_t>(h[2]);
  c.n_heads = static_cast<uint64_t>(h[3]);
  c.n_kv_heads = static_cast<uint64_t>(h[4]);
  c.shared_classifier = h[5] > 0;
  c.vocab_size = static_cast<uint64_t>(h[5] > 0 ? h[5] : -static_cast<int64_t>(h[5]));
  c.seq_len = static_cast<uint64_t>(h[6]);
  if (c.dim % c.n_heads != 0) fail("llama2.c dim is not a multiple of n_heads");
  if (c.head_size() % 2 != 0) fail("llama2.c head size is odd, which RoPE does not allow");
  if (c.n_kv_heads > c.n_heads || c.n_heads % c.n_kv_heads != 0) {
    fail("llama2.c n_heads is not a multiple of n_kv_heads");
  }
  const Checked k(what);
  const uint64_t expected = k.add(kLlama2cHeaderBytes, k.mul(layout_of(c, what).total, 4));
  if (file.size() != expected) {
    fail("file is " + std::to_string(file.size()) + " bytes but its llama2.c header implies " +
         std::to_string(expected) + " (" + (c.shared_classifier ? "shared" : "separate") + " classifier)");
  }
  return c;
}

std::string llama2c_hf_config_json(const Llama2cConfig& c) {
  const nlohmann::json config = {
      {"architectures", {"LlamaForCausalLM"}},
      {"model_type", "llama"},
      {"hidden_act", "silu"},
      {"hidden_size", c.dim},
      {"intermediate_size", c.hidden_dim},
      {"num_hidden_layers", c.n_layers},
      {"num_attention_heads", c.n_heads},
      {"num_key_value_heads", c.n_kv_heads},
      {"vocab_size", c.vocab_size},
      {"max_position_embeddings", c.seq_len},
      {"rms_norm_eps", 1e-5},
      {"rope_theta", 10000.0},
      {"tie_word_embeddings", c.shared_classifier},
      {"bos_token_id", 1},
      {"eos_token_id", 2},
      {"torch_dtype", "float32"},
  };
  return config.dump(2) + "\n";
}

std::unique_ptr<Checkpoint> open_llama2c_checkpoint(const std::string& path) {
  return std::make_unique<Llama2cCheckpoint>(path);
}

}  // namespace codecllm::model
