#include "engine/cuda_engine.hpp"

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <iostream>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "codecllm/error.hpp"
#include "cuda/cuda_check.hpp"
#include "cuda/device_memory.hpp"
#include "cuda/gpu_decoder.hpp"
#include "cuda/weight_streamer.hpp"
#include "engine/cuda_kernels.cuh"
#include "engine/cuda_sampling.cuh"
#include "engine/placement_plan.hpp"

namespace codecllm::engine {

namespace k = cuda_kernels;
using cuda::GpuDecoder;
using cuda::LayerHome;

namespace {

// Option names of an enum, both ways; an unknown name is an error listing the known ones.
template <typename E, size_t N>
using NameTable = std::pair<const char*, E>[N];

template <typename E, size_t N>
E value_named(const NameTable<E, N>& table, const std::string& name, const char* what) {
  std::string known;
  for (const auto& [n, v] : table) {
    if (name == n) return v;
    known += (known.empty() ? "" : ", ") + std::string(n);
  }
  throw Error("unknown " + std::string(what) + " '" + name + "' (known: " + known + ")");
}

template <typename E, size_t N>
const char* name_of(const NameTable<E, N>& table, E value) {
  for (const auto& [n, v] : table)
    if (v == value) return n;
  return "?";
}

const std::pair<const char*, Placement> kPlacements[] = {{"gpu", Placement::Gpu},
                                                         {"gpu-compressed", Placement::GpuCompressed},
                                                         {"host", Placement::Host},
                                                         {"host-raw", Placement::HostRaw},
                                                         {"auto", Placement::Auto}};
const std::pair<const char*, KvDtype> kKvDtypes[] = {
    {"f32", KvDtype::F32}, {"bf16", KvDtype::BF16}, {"f16", KvDtype::F16}};

}  // namespace

Placement parse_placement(const std::string& name) { return value_named(kPlacements, name, "placement"); }
const char* placement_name(Placement p) { return name_of(kPlacements, p); }
KvDtype parse_kv_dtype(const std::string& name) { return value_named(kKvDtypes, name, "KV cache dtype"); }
const char* kv_dtype_name(KvDtype t) { return name_of(kKvDtypes, t); }

namespace {

void check_cublas(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) throw Error(std::string("cuBLAS error ") + std::to_string(int(s)) + " in " + what);
}

// The seven matmul weights of a layer in buffer order, and how they are grouped: q|k|v and
// gate|up lie back to back so that each group is one matmul.
const char* const kMatrices[] = {"self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
                                 "self_attn.o_proj.weight", "mlp.gate_proj.weight",    "mlp.up_proj.weight",
                                 "mlp.down_proj.weight"};
const std::vector<int> kGroups = {3, 1, 2, 1};
constexpr int kQkv = 0, kO = 3, kGateUp = 4, kDown = 6;
constexpr int kNumMatrices = 7;
constexpr uint64_t kBlasWorkspace = 32ull << 20;

std::string layer_name(int l, const char* suffix) { return "model.layers." + std::to_string(l) + "." + suffix; }

k::KvType kernel_kv_type(KvDtype t) {
  switch (t) {
    case KvDtype::BF16:
      return k::KvType::BF16;
    case KvDtype::F16:
      return k::KvType::F16;
    case KvDtype::F32:
      break;
  }
  return k::KvType::F32;
}

// A matmul weight as the kernels read it: row-major bf16, or int8 values with one float
// scale per row (scales != nullptr).
struct Matrix {
  const void* w = nullptr;
  const float* scales = nullptr;
};

class CudaEngine : public Engine {
 public:
  CudaEngine(const format::ContainerReader& file, const CudaEngineOptions& o)
      : opt_(o), path_(file.path()), mem_(file.path()) {
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) throw Error("no CUDA device: use --device cpu");
    if (o.batch < 1 || o.batch > 1024) throw Error("batch must be in 1..1024");
    if (o.decode_slots != 0 && o.placement != Placement::GpuCompressed)
      throw Error("decode slots are set for placement gpu-compressed only");
    if (o.decode_slots < 0 || o.decode_slots > 8) throw Error("decode slots must be in 1..8");
    same_token_.resize(size_t(o.batch));
    ByteSpan cfg = file.blob("config.json");
    cfg_ = parse_llama_config(std::string(reinterpret_cast<const char*>(cfg.data()), cfg.size()), path_);
    max_seq_ = o.max_seq_len > 0 ? o.max_seq_len : std::min(cfg_.max_positions, 2048);
    if (size_t(max_seq_) * sizeof(float) > size_t{48} * 1024)
      throw Error("--max-seq " + std::to_string(max_seq_) + " exceeds the attention kernel's shared memory");
    CLLM_CUDA_CHECK(cudaStreamCreateWithFlags(&compute_, cudaStreamNonBlocking));
    exec_ = k::Stream{compute_, o.overlap_launches};
    size_t free0 = 0, total = 0;
    CLLM_CUDA_CHECK(cudaMemGetInfo(&free0, &total));
    baseline_used_ = total - free0;
    check_cublas(cublasCreate(&blas_), "cublasCreate");
    check_cublas(cublasSetStream(blas_, compute_), "cublasSetStream");
    // A workspace of our own: cuBLAS must not allocate while a step is being captured.
    check_cublas(cublasSetWorkspace(blas_, mem_.device(kBlasWorkspace, "the cuBLAS workspace"), kBlasWorkspace),
                 "cublasSetWorkspace");
    load_small_tensors(file);
    allocate_state();
    load_layers(file);
    streamer_->prefetch();
    CLLM_CUDA_CHECK(cudaDeviceSynchronize());
    note_peak();
  }

  ~CudaEngine() override {
    cudaDeviceSynchronize();
    streamer_.reset();
    for (cudaGraphExec_t g : graphs_)
      if (g != nullptr) cudaGraphExecDestroy(g);
    if (blas_ != nullptr) cublasDestroy(blas_);
    if (compute_ != nullptr) cudaStreamDestroy(compute_);
  }

  const LlamaConfig& config() const override { return cfg_; }
  int max_seq_len() const override { return max_seq_; }
  int batch_size() const override { return opt_.batch; }

  const float* forward(int token, int pos) override {
    std::fill(same_token_.begin(), same_token_.end(), token);
    return forward_batch(same_token_.data(), pos);
  }

  const float* forward_batch(const int* tokens, int pos) override {
    run_step(tokens, pos, StepEnd::Logits);
    return host_logits_;
  }

  void forward_sample(const int* tokens, int pos, Sampler* samplers, const uint8_t* wanted, int* next) override {
    const SamplerOptions& so = samplers[0].options();
    for (int b = 1; b < opt_.batch; ++b) {
      if (samplers[b].options().temperature != so.temperature || samplers[b].options().top_p != so.top_p)
        throw Error("the CUDA sampler takes one temperature and top_p for every sequence of a batch");
    }
    StepEnd end = StepEnd::Greedy;
    if (so.temperature > 0) {
      end = so.top_p < 1.0f ? StepEnd::Nucleus : StepEnd::Sample;
      if (sample_scratch_.probs == nullptr) {  // once, at the first sampled step
        const uint64_t before = mem_.device_bytes();
        sample_scratch_ = k::allocate_sample_scratch(mem_, cfg_.vocab, opt_.batch);
        mem_stats_.activation_bytes += mem_.device_bytes() - before;
      }
      host_params_[0] = so.temperature;
      host_params_[1] = so.top_p;
      // Draws only for the sequences that sample, as the host loop would.
      for (int b = 0; b < opt_.batch; ++b) host_params_[2 + b] = wanted[b] ? samplers[b].draw() : 0.0f;
    }
    run_step(tokens, pos, end);
    for (int b = 0; b < opt_.batch; ++b)
      if (wanted[b]) next[b] = host_next_[b];
  }

  MemoryStats memory() const override {
    MemoryStats m = mem_stats_;
    m.peak_device_bytes = peak_used_ - baseline_used_;
    m.device_bytes = mem_.device_bytes() + streamer_device_bytes_;
    return m;
  }

  std::string describe() const override {
    std::string s = std::string("cuda, ") + placement_name(opt_.placement);
    if (opt_.placement == Placement::Auto) s += " (" + plan_summary_ + ")";
    if (opt_.batch > 1) s += ", batch " + std::to_string(opt_.batch);
    if (streamer_->products_from_compressed()) s += ", products straight from compressed weights";
    if (streamer_->exponents_only(kQkv)) s += ", exponents decoded per layer (sign and mantissa read in place)";
    const std::string t = act_ == k::Act::F16 ? "f16" : "bf16";
    s += int8_layers_   ? ", int8 layer weights (W8A" + std::string(act_ == k::Act::F16 ? "F16)" : "BF16)")
         : rounded_f32_ ? ", f32 weights rounded to bf16"
                        : ", " + t + " weights";
    return s + ", f32 activations (" + t + " matmul inputs), " + kv_dtype_name(opt_.kv_dtype) + " KV cache";
  }

 private:
  struct Layer {
    const void* attn_norm = nullptr;
    const void* ffn_norm = nullptr;
    const void *q_bias = nullptr, *k_bias = nullptr, *v_bias = nullptr;
  };

  // What a step hands back: the logits, or the next tokens chosen on the GPU.
  enum class StepEnd { Logits, Greedy, Sample, Nucleus };
  static constexpr int kStepEnds = 4;

  void run_step(const int* tokens, int pos, StepEnd end) {
    if (pos < 0 || pos >= max_seq_) throw Error("position " + std::to_string(pos) + " outside the KV cache");
    for (int b = 0; b < opt_.batch; ++b) {
      if (tokens[b] < 0 || tokens[b] >= cfg_.vocab)
        throw Error("token id " + std::to_string(tokens[b]) + " out of range");
      host_io_[b] = tokens[b];
    }
    host_io_[opt_.batch] = pos;
    // A step is a few hundred kernels and copies; launched one by one their launch gaps would
    // cost as much as the matmuls. Every kernel reads tokens, position and sampling parameters
    // from device memory, so each kind of step is captured once as a graph and replayed.
    cudaGraphExec_t& graph = graphs_[int(end)];
    if (graph == nullptr) graph = capture(end);
    CLLM_CUDA_CHECK(cudaGraphLaunch(graph, compute_));
    CLLM_CUDA_CHECK(cudaStreamSynchronize(compute_));
    if (++steps_ % 64 == 1) {  // integrity checks synchronize; the streams are idle here anyway
      streamer_->check();
      note_peak();
    }
  }

  cudaGraphExec_t capture(StepEnd end) {
    cudaGraph_t g = nullptr;
    cudaGraphExec_t exec = nullptr;
    CLLM_CUDA_CHECK(cudaStreamBeginCapture(compute_, cudaStreamCaptureModeThreadLocal));
    enqueue_step(end);
    CLLM_CUDA_CHECK(cudaStreamEndCapture(compute_, &g));
    const cudaError_t e = cudaGraphInstantiate(&exec, g, 0);
    cudaGraphDestroy(g);
    CLLM_CUDA_CHECK(e);
    return exec;
  }

  // Everything one step takes: on compute_, and on the streamer's streams for its layers.
  void enqueue_step(StepEnd end) {
    const int B = opt_.batch;
    CLLM_CUDA_CHECK(cudaMemcpyAsync(d_io_, host_io_, (B + 1) * sizeof(int), cudaMemcpyHostToDevice, compute_));
    if (end == StepEnd::Sample || end == StepEnd::Nucleus) {
      CLLM_CUDA_CHECK(cudaMemcpyAsync(d_params_, host_params_, k::sample_params_count(B) * sizeof(float),
                                      cudaMemcpyHostToDevice, compute_));
    }
    const int* d_tokens = d_io_;
    const int* d_pos = d_io_ + B;
    const int dim = cfg_.hidden, hd = cfg_.head_dim, q_dim = cfg_.heads * hd, kv_dim = cfg_.kv_heads * hd;
    const int hid = cfg_.intermediate, qkv_dim = q_dim + 2 * kv_dim;
    const k::AttentionShape shape{cfg_.heads, cfg_.kv_heads, hd, max_seq_, B, kernel_kv_type(opt_.kv_dtype)};
    streamer_->begin_step(compute_);
    k::embed(act_, embed_, d_tokens, dim, B, x_, exec_);
    for (int l = 0; l < cfg_.layers; ++l) {
      const Layer& L = layers_[l];
      auto w = [&](int i) {
        return Matrix{streamer_->tensor(l, i),
                      int8_layers_ ? layer_scales_ + scale_row_[l * kNumMatrices + i] : nullptr};
      };
      // The product of matrix group `first` (count tensors) of this layer with x.
      const bool fused = streamer_->products_from_compressed(l);
      auto product = [&](int first, int count, const void* x, int in, int out, float* y, bool accumulate) {
        if (streamer_->exponents_only(first)) return matmul_split(l, first, count, x, in, out, y, accumulate);
        if (!fused) return matmul(w(first), x, in, out, y, accumulate);
        GpuDecoder& d = streamer_->decoder(l);
        d.decode_gemv(d.resident(), first, count, x, act_ == k::Act::F16, y, accumulate, compute_, exec_.overlap);
      };
      const auto eps = float(cfg_.rms_eps);
      streamer_->acquire(l, compute_);
      k::rmsnorm(act_, x_, L.attn_norm, eps, dim, B, xb_, exec_);
      product(kQkv, 3, xb_, dim, qkv_dim, qkv_, false);
      k::qkv_rope_store(act_, qkv_, L.q_bias, L.k_bias, L.v_bias, inv_freq_, d_pos, shape, k_cache_[l], v_cache_[l],
                        exec_);
      k::attention(act_, qkv_, k_cache_[l], v_cache_[l], d_pos, shape, xb_, exec_);
      product(kO, 1, xb_, q_dim, dim, x_, true);
      k::rmsnorm(act_, x_, L.ffn_norm, eps, dim, B, xb_, exec_);
      product(kGateUp, 2, xb_, dim, 2 * hid, gate_up_, false);
      k::silu_mul(act_, gate_up_, hid, B, hb_, exec_);
      product(kDown, 1, hb_, hid, dim, x_, true);
      streamer_->release(l, compute_);
    }
    if (lm_head_on_host_) {
      // Through the scratch slots by DMA: reading it in place over PCIe measured ~8 ms a step
      // slower than its bytes need on an 8B shape.
      k::rmsnorm(act_, x_, final_norm_, float(cfg_.rms_eps), dim, B, xb_, exec_);
      streamer_->stream_rows(static_cast<const uint8_t*>(lm_head_.w), cfg_.vocab, lm_head_row_bytes(), compute_,
                             [&](const uint8_t* w, uint64_t row0, uint64_t rows) {
                               const float* scales = lm_head_.scales != nullptr ? lm_head_.scales + row0 : nullptr;
                               matmul(Matrix{w, scales}, xb_, dim, int(rows), logits_ + row0, false, cfg_.vocab);
                             });
    } else {
      matmul_normed(lm_head_, final_norm_, dim, cfg_.vocab, logits_);
    }
    if (end == StepEnd::Logits) {
      CLLM_CUDA_CHECK(
          cudaMemcpyAsync(host_logits_, logits_, sizeof(float) * cfg_.vocab * B, cudaMemcpyDeviceToHost, compute_));
    } else {
      if (end == StepEnd::Greedy) {
        k::argmax_tokens(logits_, cfg_.vocab, B, d_next_, exec_);
      } else {
        k::sample_tokens(logits_, cfg_.vocab, B, d_params_, end == StepEnd::Nucleus, sample_scratch_, d_next_, exec_);
      }
      CLLM_CUDA_CHECK(cudaMemcpyAsync(host_next_, d_next_, sizeof(int) * B, cudaMemcpyDeviceToHost, compute_));
    }
    streamer_->end_step(compute_);  // last: its copies for the next step overlap the lm_head
  }

  // y[b][out] = W[out, in] x[b][in] (+ y[b] when accumulate), W row-major. Batch 1 runs the
  // own bandwidth-bound kernels (faster than cuBLAS there, measured); batches go to cuBLAS,
  // where row-major W is W^T in column-major, hence CUBLAS_OP_T.
  bool use_gemv(int in) const { return opt_.batch == 1 && in % 8 == 0 && in <= k::kGemvMaxIn; }
  // Whether an int8-mode matrix can stay int8 (W8A16): only the batch-1 kernel reads int8.
  bool int8_gemv_fits(const format::TensorRecord& r) const {
    if (r.mode != format::TensorMode::Int8 || r.shape.size() != 2) return false;
    const uint64_t in = r.shape[1];
    return opt_.batch == 1 && in % 16 == 0 && in <= uint64_t(k::kGemvMaxIn);
  }

  // y = W rmsnorm(x_) (x_ float32, [batch][in]); the normalized 16-bit input lands in xb_.
  void matmul_normed(const Matrix& w, const void* norm, int in, int out, float* y) {
    k::rmsnorm(act_, x_, norm, float(cfg_.rms_eps), in, opt_.batch, xb_, exec_);
    matmul(w, xb_, in, out, y, false);
  }

  uint64_t lm_head_row_bytes() const { return uint64_t(cfg_.hidden) * (lm_head_.scales != nullptr ? 1 : 2); }

  // ldy: distance between sequences in y (default out).
  void matmul(const Matrix& w, const void* x, int in, int out, float* y, bool accumulate, int ldy = 0) {
    if (w.scales != nullptr)
      return k::gemv_int8(act_, static_cast<const int8_t*>(w.w), w.scales, x, in, out, y, accumulate, exec_);
    if (use_gemv(in)) return k::gemv(act_, w.w, x, in, out, y, accumulate, exec_);
    const float one = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    const cudaDataType t = act_ == k::Act::F16 ? CUDA_R_16F : CUDA_R_16BF;
    check_cublas(cublasGemmEx(blas_, CUBLAS_OP_T, CUBLAS_OP_N, out, opt_.batch, in, &one, w.w, t, in, x, t, in, &beta,
                              y, CUDA_R_32F, ldy > 0 ? ldy : out, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                 "cublasGemmEx");
  }

  // matmul for matrices [first, first + count) of layer l decoded to their exponents alone: the
  // exponents in the layer's slot, each matrix's sign_mantissa plane in its compressed copy.
  void matmul_split(int l, int first, int count, const void* x, int in, int out, float* y, bool accumulate) {
    k::SplitRows parts{};
    int rows = 0;
    for (int j = 0; j < count; ++j) {
      parts.sign_mantissa[j] = streamer_->sign_mantissa(l, first + j);
      rows += matrix_rows_[first + j];
      parts.end[j] = rows;
    }
    parts.count = count;
    if (rows != out) throw Error(path_ + ": layer " + std::to_string(l) + ": matrix rows do not match the product");
    k::gemv_split(streamer_->tensor(l, first), parts, x, in, out, y, accumulate, exec_);
  }

  // Weights reach the kernels in the model's 16-bit type (BF16 or F16 tensors as they are;
  // float32 ones of a BF16 model rounded to nearest even by the decoder, noted in describe()),
  // int8-mode ones dequantized to it by the decoder or kept int8 for the W8A16 kernel.
  cuda::Int8Out dequantized() const { return act_ == k::Act::F16 ? cuda::Int8Out::F16 : cuda::Int8Out::Bf16; }
  cuda::DecoderOptions decoder_options(cuda::Int8Out int8) const {
    cuda::DecoderOptions o;
    o.f32_as_bf16 = act_ == k::Act::BF16;
    o.int8_output = int8;
    return o;
  }

  // Copies the row scales of int8 matrices into one device array, in the given order.
  float* upload_scales(const format::ContainerReader& file, const std::vector<const format::TensorRecord*>& records) {
    std::vector<float> all;
    for (const format::TensorRecord* r : records) {
      const format::PlaneRecord* p = r->plane("scales");
      if (p == nullptr || r->shape.empty() || p->size != r->shape[0] * sizeof(float)) {
        throw FormatError(path_ + ": tensor '" + r->name + "': int8 scales do not match its " +
                          std::to_string(r->shape.empty() ? 0 : r->shape[0]) + " rows");
      }
      const ByteSpan bytes = file.payload(*p);
      const size_t at = all.size();
      all.resize(at + r->shape[0]);
      std::memcpy(all.data() + at, bytes.data(), bytes.size());
    }
    auto* d = static_cast<float*>(mem_.device(all.size() * sizeof(float), "int8 row scales"));
    CLLM_CUDA_CHECK(cudaMemcpy(d, all.data(), all.size() * sizeof(float), cudaMemcpyHostToDevice));
    mem_stats_.weight_bytes += all.size() * sizeof(float);
    return d;
  }

  // The model's 16-bit type is that of its final norm (never int8): BF16 (also for F32
  // models, rounded) or F16. Every tensor that is not int8 must have it.
  void choose_act(const format::ContainerReader& file) {
    const format::TensorRecord* r = file.index().find_tensor("model.norm.weight");
    if (r == nullptr) throw Error(path_ + ": missing tensor 'model.norm.weight'");
    act_ = r->dtype == DType::F16 ? k::Act::F16 : k::Act::BF16;
  }
  void require_act(const format::TensorRecord& r) {
    if (r.mode == format::TensorMode::Int8) return;
    if (act_ == k::Act::F16 ? r.dtype == DType::F16 : r.dtype == DType::BF16) return;
    if (act_ == k::Act::BF16 && r.dtype == DType::F32 && r.transform == format::Transform::FloatSplit) {
      rounded_f32_ = true;
      return;
    }
    throw Error(path_ + ": tensor '" + r.name + "' is " + dtype_name(r.dtype) + " in a model whose final norm is " +
                (act_ == k::Act::F16 ? "F16" : "BF16") +
                "; the CUDA backend runs BF16 models (F32 tensors rounded to BF16), F16 models, and int8-mode "
                "matrices in either");
  }

  const format::TensorRecord& need(const format::ContainerReader& file, const std::string& name) {
    const format::TensorRecord* r = file.index().find_tensor(name);
    if (r == nullptr) throw Error(path_ + ": missing tensor '" + name + "'");
    require_act(*r);
    return *r;
  }

  // Decodes tensors once into new device buffers: 16-bit tensors in the model's type, int8 ones
  // dequantized to it or, with `int8`, in that form.
  std::vector<void*> decode_resident(const format::ContainerReader& file, const std::vector<std::string>& names,
                                     std::optional<cuda::Int8Out> int8 = std::nullopt) {
    for (const auto& n : names) need(file, n);
    GpuDecoder dec(file, names, decoder_options(int8.value_or(dequantized())));
    std::vector<void*> out;
    std::vector<void*> ptrs;
    for (size_t i = 0; i < names.size(); ++i) {
      out.push_back(mem_.device(dec.output_bytes(i), "tensor '" + names[i] + "'"));
      mem_stats_.weight_bytes += dec.output_bytes(i);
      ptrs.push_back(out.back());
    }
    dec.decode_from_host(dec.host_range().data(), ptrs.data(), compute_);
    dec.check(compute_);
    return out;
  }

  // Host placements keep the embedding table and the lm_head in pinned host memory, so that VRAM
  // holds no weights beyond the norms and the layer scratch: kernels read the embedding rows of
  // a step in place (unified addressing maps them), and the lm_head streams through the slots.
  const void* decode_to_host(const format::ContainerReader& file, const std::string& name,
                             std::optional<cuda::Int8Out> int8 = std::nullopt) {
    need(file, name);
    GpuDecoder dec(file, {name}, decoder_options(int8.value_or(dequantized())));
    const uint64_t bytes = dec.output_bytes(0);
    void* tmp = nullptr;
    CLLM_CUDA_CHECK(cudaMalloc(&tmp, bytes));  // load time only, freed below
    try {
      dec.decode_from_host(dec.host_range().data(), &tmp, compute_);
      dec.check(compute_);
    } catch (...) {
      cudaFree(tmp);
      throw;
    }
    void* host = mem_.pinned(bytes, "tensor '" + name + "'");
    const cudaError_t e = cudaMemcpy(host, tmp, bytes, cudaMemcpyDeviceToHost);
    cudaFree(tmp);
    CLLM_CUDA_CHECK(e);
    mem_stats_.host_pinned_bytes += bytes;
    return host;
  }

  void load_small_tensors(const format::ContainerReader& file) {
    const bool on_host = opt_.placement == Placement::Host || opt_.placement == Placement::HostRaw;
    choose_act(file);
    auto load = [&](const std::string& name, std::optional<cuda::Int8Out> int8 = std::nullopt) {
      return on_host ? decode_to_host(file, name, int8) : decode_resident(file, {name}, int8)[0];
    };
    // gpu-compressed keeps an untied embedding table in pinned host memory as well: a step reads
    // one row of it in place over PCIe (microseconds), and VRAM holds the whole table less.
    const std::string embed = "model.embed_tokens.weight";
    embed_ =
        opt_.placement == Placement::GpuCompressed && !cfg_.tie_embeddings ? decode_to_host(file, embed) : load(embed);
    if (cfg_.tie_embeddings) {
      lm_head_ = Matrix{embed_};
    } else if (const format::TensorRecord& r = need(file, "lm_head.weight"); int8_gemv_fits(r)) {
      // Every placement keeps an int8 lm_head int8, so that all of them compute the same logits.
      lm_head_ = Matrix{load(r.name, cuda::Int8Out::Int8), upload_scales(file, {&r})};
    } else {
      lm_head_ = Matrix{load(r.name)};
    }
    lm_head_on_host_ = on_host;
    if (on_host) mem_stats_.streamed_bytes_per_step += uint64_t(cfg_.vocab) * lm_head_row_bytes();
    final_norm_ = decode_resident(file, {"model.norm.weight"})[0];
    for (int l = 0; l < cfg_.layers; ++l) {
      std::vector<std::string> small = {layer_name(l, "input_layernorm.weight"),
                                        layer_name(l, "post_attention_layernorm.weight")};
      if (cfg_.qkv_bias) {
        for (const char* b : {"self_attn.q_proj.bias", "self_attn.k_proj.bias", "self_attn.v_proj.bias"})
          small.push_back(layer_name(l, b));
      }
      std::vector<void*> s = decode_resident(file, small);
      Layer L;
      L.attn_norm = s[0];
      L.ffn_norm = s[1];
      if (cfg_.qkv_bias) {
        L.q_bias = s[2];
        L.k_bias = s[3];
        L.v_bias = s[4];
      }
      layers_.push_back(L);
    }
  }

  // Where each layer lives: one home for all, or the planner's choice under the budget.
  std::vector<LayerHome> choose_homes(const format::ContainerReader& file,
                                      const std::vector<std::vector<std::string>>& names, cuda::StreamerOptions& so) {
    const auto L = size_t(cfg_.layers);
    switch (opt_.placement) {
      case Placement::Gpu:
        return std::vector<LayerHome>(L, LayerHome::Device);
      case Placement::GpuCompressed:
        // int8 layers are half the size and their decode is what bounds a step: a fourth slot
        // (a third layer decoding at once) measured 96.0 -> 110.7 tok/s on the 8B shape.
        so.decode_slots = opt_.decode_slots > 0 ? opt_.decode_slots : int8_layers_ ? 4 : 3;
        return std::vector<LayerHome>(L, LayerHome::DeviceCompressed);
      case Placement::Host:
        so.decode_slots = 1;  // decode and compute of a layer are short next to its copy
        return std::vector<LayerHome>(L, LayerHome::Host);
      case Placement::HostRaw:
        return std::vector<LayerHome>(L, LayerHome::HostRaw);
      case Placement::Auto:
        break;
    }
    if (opt_.vram_budget == 0) throw Error("--placement auto needs --vram-budget");
    PlanRequest req;
    for (size_t l = 0; l < L; ++l) {
      LayerBytes b{0, 0};
      uint64_t lo = std::numeric_limits<uint64_t>::max(), hi = 0;
      for (const auto& n : names[l]) {
        const format::TensorRecord& r = need(file, n);
        b.raw += (r.num_elements() * (int8_layers_ ? 1 : 2) + 255) / 256 * 256;
        for (const auto& p : r.planes) {
          lo = std::min(lo, p.offset);
          hi = std::max(hi, p.offset + p.size);
        }
      }
      b.compressed = hi > lo ? hi - lo : 0;
      req.layers.push_back(b);
    }
    // Everything allocated so far, plus a per-layer allowance for decoder tables and descriptors.
    req.fixed_bytes = mem_.device_bytes() + L * (1ull << 20);
    req.budget_bytes = opt_.vram_budget;
    req.prefetch_depth = opt_.prefetch_depth;
    const PlacementPlan plan = plan_placement(req);
    if (opt_.print_plan) std::cerr << describe_plan(plan, req);
    so.decode_slots = std::max(plan.decode_slots, 1);
    std::vector<LayerHome> homes;
    int counts[3] = {};
    for (LayerPlacement p : plan.layers) {
      homes.push_back(p == LayerPlacement::Gpu             ? LayerHome::Device
                      : p == LayerPlacement::GpuCompressed ? LayerHome::DeviceCompressed
                                                           : LayerHome::Host);
      ++counts[int(p)];
    }
    for (auto p : {LayerPlacement::Gpu, LayerPlacement::GpuCompressed, LayerPlacement::Host}) {
      if (counts[int(p)] == 0) continue;
      plan_summary_ += (plan_summary_.empty() ? "" : ", ") + std::to_string(counts[int(p)]) + " " + placement_name(p);
    }
    plan_summary_ += " layers";
    return homes;
  }

  void load_layers(const format::ContainerReader& file) {
    std::vector<std::vector<std::string>> names(cfg_.layers);
    std::vector<const format::TensorRecord*> records;
    int8_layers_ = true;
    for (int l = 0; l < cfg_.layers; ++l) {
      for (const char* m : kMatrices) {
        names[l].push_back(layer_name(l, m));
        records.push_back(&need(file, names[l].back()));
        int8_layers_ = int8_layers_ && int8_gemv_fits(*records.back());
      }
    }
    if (int8_layers_) {
      layer_scales_ = upload_scales(file, records);
      uint64_t rows = 0;
      for (const format::TensorRecord* r : records) {
        scale_row_.push_back(rows);
        rows += r->shape[0];
      }
    }
    cuda::StreamerOptions so;
    so.prefetch_depth = opt_.prefetch_depth;
    so.decoder = decoder_options(int8_layers_ ? cuda::Int8Out::Int8 : dequantized());
    so.products_from_compressed = opt_.products_from_compressed && opt_.batch == 1;
    so.bf16_exponents_only = opt_.bf16_exponents_only && split_gemv_fits();
    std::vector<LayerHome> homes = choose_homes(file, names, so);
    streamer_ = std::make_unique<cuda::WeightStreamer>(file, names, kGroups, homes, so, compute_);
    check_split_layers(records);
    exec_.alone = std::all_of(homes.begin(), homes.end(), [](LayerHome h) { return h == LayerHome::Device; });
    const cuda::WeightStreamer::Memory m = streamer_->memory();
    mem_stats_.weight_bytes += m.decoded_weights + m.compressed_weights;
    mem_stats_.scratch_bytes += m.scratch;
    mem_stats_.host_pinned_bytes += m.host_pinned;
    streamer_device_bytes_ = m.decoded_weights + m.compressed_weights + m.scratch;
    for (int l = 0; l < cfg_.layers; ++l) mem_stats_.streamed_bytes_per_step += streamer_->streamed_bytes(l);
    // Bytes of weights the matmuls read: a split matrix's sign_mantissa plane besides its slot.
    uint64_t layer_read = streamer_->layer_bytes();
    for (int i = 0; i < kNumMatrices; ++i)
      if (streamer_->exponents_only(i)) layer_read += records[i]->num_elements();
    mem_stats_.matmul_weight_bytes_per_step =
        layer_read * uint64_t(cfg_.layers) + uint64_t(cfg_.vocab) * lm_head_row_bytes();
  }

  // Whether every product of a layer could run gemv_split (batch 1, BF16, its row lengths).
  bool split_gemv_fits() const {
    const int q_dim = cfg_.heads * cfg_.head_dim;
    auto fits = [&](int in) { return use_gemv(in) && in % 16 == 0; };
    return act_ == k::Act::BF16 && !int8_layers_ && fits(cfg_.hidden) && fits(q_dim) && fits(cfg_.intermediate);
  }

  // After the streamer: the rows of each matrix, and the alignment gemv_split needs, which the
  // container's 4 KiB-aligned payloads give (checked, not assumed).
  void check_split_layers(const std::vector<const format::TensorRecord*>& records) {
    for (int i = 0; i < kNumMatrices; ++i) matrix_rows_[i] = int(records[i]->shape[0]);
    for (int l = 0; l < cfg_.layers; ++l) {
      for (int i = 0; i < kNumMatrices; ++i) {
        if (!streamer_->exponents_only(i)) continue;
        const format::TensorRecord& r = *records[l * kNumMatrices + i];
        if (int(r.shape[0]) != matrix_rows_[i]) throw Error(path_ + ": tensor '" + r.name + "' differs from layer 0");
        if (reinterpret_cast<uintptr_t>(streamer_->sign_mantissa(l, i)) % 16 != 0 ||
            reinterpret_cast<uintptr_t>(streamer_->tensor(l, i)) % 16 != 0) {
          throw Error(path_ + ": tensor '" + r.name + "': its planes are not 16-byte aligned for the split GEMV");
        }
      }
    }
  }

  void allocate_state() {
    const size_t B = opt_.batch, dim = cfg_.hidden, q_dim = size_t(cfg_.heads) * cfg_.head_dim,
                 kv_dim = size_t(cfg_.kv_heads) * cfg_.head_dim, hid = cfg_.intermediate;
    auto f = [&](size_t n, const char* what) {
      mem_stats_.activation_bytes += n * sizeof(float);
      return static_cast<float*>(mem_.device(n * sizeof(float), what));
    };
    auto h = [&](size_t n, const char* what) {
      mem_stats_.activation_bytes += n * 2;
      return mem_.device(n * 2, what);
    };
    x_ = f(B * dim, "activations");
    qkv_ = f(B * (q_dim + 2 * kv_dim), "activations");
    gate_up_ = f(B * 2 * hid, "activations");
    logits_ = f(B * cfg_.vocab, "logits");
    xb_ = h(B * std::max(dim, q_dim), "activations");
    hb_ = h(B * hid, "activations");
    d_io_ = static_cast<int*>(mem_.device((B + 1) * sizeof(int), "token ids"));
    const size_t kv_bytes = B * size_t(max_seq_) * kv_dim * k::kv_type_size(kernel_kv_type(opt_.kv_dtype));
    for (int l = 0; l < cfg_.layers; ++l) {
      k_cache_.push_back(mem_.device(kv_bytes, "the KV cache"));
      v_cache_.push_back(mem_.device(kv_bytes, "the KV cache"));
      mem_stats_.kv_cache_bytes += 2 * kv_bytes;
    }
    std::vector<double> inv = rope_inv_freq(cfg_);
    std::vector<float> invf(inv.begin(), inv.end());
    inv_freq_ = f(invf.size(), "RoPE frequencies");
    CLLM_CUDA_CHECK(cudaMemcpy(inv_freq_, invf.data(), invf.size() * sizeof(float), cudaMemcpyHostToDevice));
    host_logits_ = static_cast<float*>(mem_.pinned(sizeof(float) * cfg_.vocab * B, "logits"));
    host_io_ = static_cast<int*>(mem_.pinned((B + 1) * sizeof(int), "token ids"));
    d_next_ = static_cast<int*>(mem_.device(B * sizeof(int), "token ids"));
    host_next_ = static_cast<int*>(mem_.pinned(B * sizeof(int), "token ids"));
    d_params_ = static_cast<float*>(mem_.device(k::sample_params_count(int(B)) * sizeof(float), "sampling parameters"));
    host_params_ =
        static_cast<float*>(mem_.pinned(k::sample_params_count(int(B)) * sizeof(float), "sampling parameters"));
  }

  void note_peak() {
    size_t free = 0, total = 0;
    if (cudaMemGetInfo(&free, &total) == cudaSuccess) peak_used_ = std::max<uint64_t>(peak_used_, total - free);
  }

  CudaEngineOptions opt_;
  std::string path_;
  cuda::DeviceMemory mem_;
  LlamaConfig cfg_;
  int max_seq_ = 0;
  bool lm_head_on_host_ = false, rounded_f32_ = false;
  bool int8_layers_ = false;             // every layer matrix int8 in device memory (W8A16 at batch 1)
  const float* layer_scales_ = nullptr;  // int8 layers: row scales of every matrix of every layer
  std::vector<uint64_t> scale_row_;      // [layer * kNumMatrices + matrix]: its first row in layer_scales_
  int matrix_rows_[kNumMatrices] = {};   // rows of each matrix of a layer (the same in every layer)
  std::vector<int> same_token_;          // forward()'s batch, sized once: no allocation per token
  uint64_t steps_ = 0, baseline_used_ = 0, peak_used_ = 0, streamer_device_bytes_ = 0;
  MemoryStats mem_stats_;
  std::string plan_summary_;
  cudaStream_t compute_ = nullptr;
  k::Stream exec_;  // compute_, as the kernels launch on it
  cublasHandle_t blas_ = nullptr;
  cudaGraphExec_t graphs_[kStepEnds] = {};  // per StepEnd, captured at its first step
  std::unique_ptr<cuda::WeightStreamer> streamer_;
  k::Act act_ = k::Act::BF16;
  const void *embed_ = nullptr, *final_norm_ = nullptr;
  Matrix lm_head_;
  std::vector<Layer> layers_;
  std::vector<void*> k_cache_, v_cache_;
  float *x_ = nullptr, *qkv_ = nullptr, *gate_up_ = nullptr, *logits_ = nullptr, *inv_freq_ = nullptr,
        *host_logits_ = nullptr;
  void *xb_ = nullptr, *hb_ = nullptr;  // matmul inputs, of type act_
  int* d_io_ = nullptr;
  int* host_io_ = nullptr;
  int *d_next_ = nullptr, *host_next_ = nullptr;  // tokens picked on the GPU
  float *d_params_ = nullptr, *host_params_ = nullptr;
  k::SampleScratch sample_scratch_{};
};

}  // namespace

std::unique_ptr<Engine> make_cuda_engine(const format::ContainerReader& file, const CudaEngineOptions& options) {
  return std::make_unique<CudaEngine>(file, options);
}

}  // namespace codecllm::engine
