#include "engine/cuda_engine.hpp"

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <string>
#include <vector>

#include "codecllm/error.hpp"
#include "cuda/cuda_check.hpp"
#include "cuda/gpu_decoder.hpp"
#include "engine/cuda_kernels.cuh"

namespace codecllm::engine {

namespace k = cuda_kernels;
using cuda::GpuDecoder;

Placement parse_placement(const std::string& name) {
  if (name == "gpu") return Placement::Gpu;
  if (name == "gpu-compressed") return Placement::GpuCompressed;
  throw Error("unknown placement '" + name + "' (known: gpu, gpu-compressed)");
}

namespace {

void check_cublas(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) throw Error(std::string("cuBLAS error ") + std::to_string(int(s)) + " in " + what);
}

// The seven matmul weights of a layer, in the order they are packed into one buffer.
const char* const kMatrices[] = {"self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
                                 "self_attn.o_proj.weight", "mlp.gate_proj.weight",    "mlp.up_proj.weight",
                                 "mlp.down_proj.weight"};
constexpr int kQ = 0, kK = 1, kV = 2, kO = 3, kGate = 4, kUp = 5, kDown = 6;

std::string layer_name(int l, const char* suffix) { return "model.layers." + std::to_string(l) + "." + suffix; }

class CudaEngine : public Engine {
 public:
  CudaEngine(const format::ContainerReader& file, const CudaEngineOptions& o) : opt_(o), path_(file.path()) {
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) throw Error("no CUDA device: use --device cpu");
    ByteSpan cfg = file.blob("config.json");
    cfg_ = parse_llama_config(std::string(reinterpret_cast<const char*>(cfg.data()), cfg.size()), path_);
    max_seq_ = o.max_seq_len > 0 ? o.max_seq_len : std::min(cfg_.max_positions, 2048);
    CLLM_CUDA_CHECK(cudaStreamCreateWithFlags(&compute_, cudaStreamNonBlocking));
    CLLM_CUDA_CHECK(cudaStreamCreateWithFlags(&copy_, cudaStreamNonBlocking));
    check_cublas(cublasCreate(&blas_), "cublasCreate");
    check_cublas(cublasSetStream(blas_, compute_), "cublasSetStream");
    size_t free0 = 0, total = 0;
    CLLM_CUDA_CHECK(cudaMemGetInfo(&free0, &total));
    baseline_used_ = total - free0;
    load_weights(file);
    allocate_state();
    CLLM_CUDA_CHECK(cudaDeviceSynchronize());
    note_peak();
  }

  ~CudaEngine() override {
    cudaDeviceSynchronize();
    for (auto& d : layer_decoders_) d.reset();
    for (void* p : allocations_) cudaFree(p);
    for (cudaEvent_t e : events_) cudaEventDestroy(e);
    if (graph_ != nullptr) cudaGraphExecDestroy(graph_);
    if (blas_ != nullptr) cublasDestroy(blas_);
    if (compute_ != nullptr) cudaStreamDestroy(compute_);
    if (copy_ != nullptr) cudaStreamDestroy(copy_);
    if (host_logits_ != nullptr) cudaFreeHost(host_logits_);
  }

  const LlamaConfig& config() const override { return cfg_; }
  int max_seq_len() const override { return max_seq_; }

  const float* forward(int token, int pos) override {
    if (pos < 0 || pos >= max_seq_) throw Error("position " + std::to_string(pos) + " outside the KV cache");
    if (token < 0 || token >= cfg_.vocab) throw Error("token id " + std::to_string(token) + " out of range");
    host_io_[0] = token;
    host_io_[1] = pos;
    // One token is ~25 kernels a layer; launched one by one their launch gaps cost as much as
    // the matmuls on an 8B model. Every kernel reads the token and position from device
    // memory, so the whole step is captured once as a graph and replayed for every token.
    if (graph_ == nullptr) capture();
    CLLM_CUDA_CHECK(cudaGraphLaunch(graph_, compute_));
    CLLM_CUDA_CHECK(cudaStreamSynchronize(compute_));
    if (++tokens_ % 64 == 1) {  // integrity checks synchronize; the streams are idle here anyway
      for (auto& d : layer_decoders_) d->check(copy_);
      note_peak();
    }
    return host_logits_;
  }

 private:
  void capture() {
    cudaGraph_t g = nullptr;
    CLLM_CUDA_CHECK(cudaStreamBeginCapture(compute_, cudaStreamCaptureModeThreadLocal));
    enqueue_step();
    CLLM_CUDA_CHECK(cudaStreamEndCapture(compute_, &g));
    CLLM_CUDA_CHECK(cudaGraphInstantiate(&graph_, g, 0));
    CLLM_CUDA_CHECK(cudaGraphDestroy(g));
  }

  // Everything one token takes, on compute_ (and copy_ for just-in-time decoding).
  void enqueue_step() {
    CLLM_CUDA_CHECK(cudaMemcpyAsync(d_io_, host_io_, 2 * sizeof(int), cudaMemcpyHostToDevice, compute_));
    if (compressed()) {  // the copy stream joins the step here
      CLLM_CUDA_CHECK(cudaEventRecord(fork_, compute_));
      CLLM_CUDA_CHECK(cudaStreamWaitEvent(copy_, fork_));
    }
    const int* d_token = d_io_;
    const int* d_pos = d_io_ + 1;
    const int dim = cfg_.hidden, hd = cfg_.head_dim, q_dim = cfg_.heads * hd, kv_dim = cfg_.kv_heads * hd;
    k::embed(embed_, d_token, dim, x_, compute_);
    if (compressed()) start_decode(0);
    for (int l = 0; l < cfg_.layers; ++l) {
      if (compressed()) {
        if (l + 1 < cfg_.layers) start_decode(l + 1);
        CLLM_CUDA_CHECK(cudaStreamWaitEvent(compute_, decoded_[l % 2]));
      }
      __nv_bfloat16* const* w = compressed() ? scratch_ptrs_[l % 2].data() : layer_weights_[l].data();
      const Layer& L = layers_[l];
      k::rmsnorm(x_, L.attn_norm, float(cfg_.rms_eps), dim, xn_, compute_);
      k::to_bf16(xn_, dim, xb_, compute_);
      matvec(w[kQ], xb_, dim, q_dim, q_);
      matvec(w[kK], xb_, dim, kv_dim, k_);
      matvec(w[kV], xb_, dim, kv_dim, v_);
      if (cfg_.qkv_bias) {
        k::add_bias(q_, L.q_bias, q_dim, compute_);
        k::add_bias(k_, L.k_bias, kv_dim, compute_);
        k::add_bias(v_, L.v_bias, kv_dim, compute_);
      }
      k::rope(q_, cfg_.heads, hd, inv_freq_, d_pos, compute_);
      k::rope(k_, cfg_.kv_heads, hd, inv_freq_, d_pos, compute_);
      k::kv_store(k_, v_, k_cache_[l], v_cache_[l], kv_dim, d_pos, opt_.kv_bf16, compute_);
      k::attention(q_, k_cache_[l], v_cache_[l], cfg_.heads, cfg_.kv_heads, hd, d_pos, max_seq_, opt_.kv_bf16, att_,
                   compute_);
      k::to_bf16(att_, q_dim, xb_, compute_);
      matvec(w[kO], xb_, q_dim, dim, xn_);
      k::add(x_, xn_, dim, compute_);
      k::rmsnorm(x_, L.ffn_norm, float(cfg_.rms_eps), dim, xn_, compute_);
      k::to_bf16(xn_, dim, xb_, compute_);
      matvec(w[kGate], xb_, dim, cfg_.intermediate, gate_);
      matvec(w[kUp], xb_, dim, cfg_.intermediate, up_);
      k::silu_mul(gate_, up_, cfg_.intermediate, gate_, compute_);
      k::to_bf16(gate_, cfg_.intermediate, hb_, compute_);
      matvec(w[kDown], hb_, cfg_.intermediate, dim, xn_);
      k::add(x_, xn_, dim, compute_);
      if (compressed()) CLLM_CUDA_CHECK(cudaEventRecord(free_[l % 2], compute_));
    }
    k::rmsnorm(x_, final_norm_, float(cfg_.rms_eps), dim, xn_, compute_);
    k::to_bf16(xn_, dim, xb_, compute_);
    matvec(lm_head_, xb_, dim, cfg_.vocab, logits_);
    CLLM_CUDA_CHECK(
        cudaMemcpyAsync(host_logits_, logits_, sizeof(float) * cfg_.vocab, cudaMemcpyDeviceToHost, compute_));
  }

 public:
  MemoryStats memory() const override {
    MemoryStats m = mem_;
    m.peak_device_bytes = peak_used_ - baseline_used_;
    return m;
  }

  std::string describe() const override {
    return std::string("cuda, ") + (compressed() ? "gpu-compressed" : "gpu") + ", bf16 weights, f32 activations, " +
           (opt_.kv_bf16 ? "bf16" : "f32") + " KV cache";
  }

 private:
  struct Layer {
    const __nv_bfloat16* attn_norm = nullptr;
    const __nv_bfloat16* ffn_norm = nullptr;
    const __nv_bfloat16 *q_bias = nullptr, *k_bias = nullptr, *v_bias = nullptr;
  };

  bool compressed() const { return opt_.placement == Placement::GpuCompressed; }

  void* alloc(size_t bytes, uint64_t* account) {
    void* p = nullptr;
    cudaError_t e = cudaMalloc(&p, std::max<size_t>(bytes, 1));
    if (e != cudaSuccess) {
      size_t free = 0, total = 0;
      cudaMemGetInfo(&free, &total);
      throw cuda::CudaError(e, path_ + ": out of device memory allocating " + std::to_string(bytes >> 20) + " MiB (" +
                                   std::to_string(free >> 20) + " MiB free of " + std::to_string(total >> 20) +
                                   " MiB)");
    }
    allocations_.push_back(p);
    if (account != nullptr) *account += bytes;
    return p;
  }

  // Decodes tensors once into new device buffers (BF16 out; int8 tensors dequantized).
  std::vector<__nv_bfloat16*> decode_resident(const format::ContainerReader& file,
                                              const std::vector<std::string>& names) {
    GpuDecoder dec(file, names);
    std::vector<__nv_bfloat16*> out;
    std::vector<void*> ptrs;
    for (size_t i = 0; i < names.size(); ++i) {
      require_bf16(dec.record(i));
      out.push_back(static_cast<__nv_bfloat16*>(alloc(dec.output_bytes(i), &mem_.weight_bytes)));
      ptrs.push_back(out.back());
    }
    dec.decode_from_host(dec.host_range().data(), ptrs.data(), compute_);
    dec.check(compute_);
    return out;
  }

  void require_bf16(const format::TensorRecord& r) const {
    if (r.mode == format::TensorMode::Int8 || r.dtype == DType::BF16) return;
    throw Error(path_ + ": tensor '" + r.name + "' is " + dtype_name(r.dtype) +
                "; the CUDA backend runs BF16 (or int8-mode) weights: compress a BF16 checkpoint");
  }

  void load_weights(const format::ContainerReader& file) {
    const auto& idx = file.index();
    auto need = [&](const std::string& n) {
      if (idx.find_tensor(n) == nullptr) throw Error(path_ + ": missing tensor '" + n + "'");
      return n;
    };
    embed_ = decode_resident(file, {need("model.embed_tokens.weight")})[0];
    lm_head_ = cfg_.tie_embeddings ? embed_ : decode_resident(file, {need("lm_head.weight")})[0];
    final_norm_ = decode_resident(file, {need("model.norm.weight")})[0];
    size_t layer_bytes = 0;
    for (int l = 0; l < cfg_.layers; ++l) {
      std::vector<std::string> small = {need(layer_name(l, "input_layernorm.weight")),
                                        need(layer_name(l, "post_attention_layernorm.weight"))};
      if (cfg_.qkv_bias)
        for (const char* b : {"self_attn.q_proj.bias", "self_attn.k_proj.bias", "self_attn.v_proj.bias"})
          small.push_back(need(layer_name(l, b)));
      std::vector<__nv_bfloat16*> s = decode_resident(file, small);
      Layer L;
      L.attn_norm = s[0];
      L.ffn_norm = s[1];
      if (cfg_.qkv_bias) {
        L.q_bias = s[2];
        L.k_bias = s[3];
        L.v_bias = s[4];
      }
      layers_.push_back(L);
      std::vector<std::string> mats;
      for (const char* m : kMatrices) mats.push_back(need(layer_name(l, m)));
      if (!compressed()) {
        layer_weights_.push_back(decode_resident(file, mats));
        continue;
      }
      auto dec = std::make_unique<GpuDecoder>(file, mats);
      size_t bytes = 0;
      for (size_t i = 0; i < mats.size(); ++i) {
        require_bf16(dec->record(i));
        bytes += (dec->output_bytes(i) + 255) / 256 * 256;
      }
      layer_bytes = std::max(layer_bytes, bytes);
      dec->upload_resident(compute_);
      mem_.weight_bytes += dec->range_bytes();
      mem_.scratch_bytes += dec->device_bytes() - dec->range_bytes();  // tables, descriptors
      layer_decoders_.push_back(std::move(dec));
    }
    if (compressed()) {
      // Two layer-sized scratch buffers: one being computed on, one being decoded into.
      for (int b = 0; b < 2; ++b) {
        auto* base = static_cast<uint8_t*>(alloc(layer_bytes, &mem_.scratch_bytes));
        size_t at = 0;
        for (size_t i = 0; i < 7; ++i) {
          scratch_ptrs_[b].push_back(reinterpret_cast<__nv_bfloat16*>(base + at));
          at += (layer_decoders_[0]->output_bytes(i) + 255) / 256 * 256;
        }
        cudaEvent_t e1, e2;
        CLLM_CUDA_CHECK(cudaEventCreateWithFlags(&e1, cudaEventDisableTiming));
        CLLM_CUDA_CHECK(cudaEventCreateWithFlags(&e2, cudaEventDisableTiming));
        decoded_[b] = e1;
        free_[b] = e2;
        events_.push_back(e1);
        events_.push_back(e2);
      }
      CLLM_CUDA_CHECK(cudaEventCreateWithFlags(&fork_, cudaEventDisableTiming));
      events_.push_back(fork_);
    }
  }

  // Decodes layer l into scratch buffer l % 2 on the copy stream once that buffer is free:
  // the first two layers of a step find both free (the previous step has completed).
  void start_decode(int l) {
    const int b = l % 2;
    if (l >= 2) CLLM_CUDA_CHECK(cudaStreamWaitEvent(copy_, free_[b]));
    GpuDecoder& d = *layer_decoders_[l];
    void* outs[7];
    for (int i = 0; i < 7; ++i) outs[i] = scratch_ptrs_[b][i];
    d.decode(d.resident(), outs, copy_);
    CLLM_CUDA_CHECK(cudaEventRecord(decoded_[b], copy_));
  }

  void allocate_state() {
    const size_t dim = cfg_.hidden, q_dim = size_t(cfg_.heads) * cfg_.head_dim,
                 kv_dim = size_t(cfg_.kv_heads) * cfg_.head_dim, hid = cfg_.intermediate;
    auto f = [&](size_t n) { return static_cast<float*>(alloc(n * sizeof(float), &mem_.activation_bytes)); };
    x_ = f(dim);
    xn_ = f(std::max(dim, q_dim));
    q_ = f(q_dim);
    k_ = f(kv_dim);
    v_ = f(kv_dim);
    att_ = f(q_dim);
    gate_ = f(hid);
    up_ = f(hid);
    logits_ = f(cfg_.vocab);
    xb_ = static_cast<__nv_bfloat16*>(alloc(std::max(dim, q_dim) * 2, &mem_.activation_bytes));
    hb_ = static_cast<__nv_bfloat16*>(alloc(hid * 2, &mem_.activation_bytes));
    d_io_ = static_cast<int*>(alloc(2 * sizeof(int), &mem_.activation_bytes));
    const size_t kv_elem = opt_.kv_bf16 ? 2 : 4;
    for (int l = 0; l < cfg_.layers; ++l) {
      k_cache_.push_back(alloc(size_t(max_seq_) * kv_dim * kv_elem, &mem_.kv_cache_bytes));
      v_cache_.push_back(alloc(size_t(max_seq_) * kv_dim * kv_elem, &mem_.kv_cache_bytes));
    }
    std::vector<double> inv = rope_inv_freq(cfg_);
    std::vector<float> invf(inv.begin(), inv.end());
    inv_freq_ = static_cast<float*>(alloc(invf.size() * sizeof(float), &mem_.activation_bytes));
    CLLM_CUDA_CHECK(cudaMemcpy(inv_freq_, invf.data(), invf.size() * sizeof(float), cudaMemcpyHostToDevice));
    CLLM_CUDA_CHECK(cudaMallocHost(&host_logits_, sizeof(float) * cfg_.vocab));
    CLLM_CUDA_CHECK(cudaMallocHost(&host_io_, 2 * sizeof(int)));
    if (size_t(max_seq_) * sizeof(float) > 48 * 1024)
      throw Error("--max-seq " + std::to_string(max_seq_) + " exceeds the attention kernel's shared memory");
  }

  // y[out] = W[out, in] x[in]. Own kernel where it applies (measured faster at batch 1);
  // otherwise cuBLAS, where W row-major bf16 is W^T in column-major, hence CUBLAS_OP_T.
  void matvec(const __nv_bfloat16* w, const __nv_bfloat16* x, int in, int out, float* y) {
    if (in % 8 == 0 && in <= k::kGemvMaxIn) return k::gemv_bf16(w, x, in, out, y, compute_);
    const float one = 1.0f, zero = 0.0f;
    check_cublas(cublasGemmEx(blas_, CUBLAS_OP_T, CUBLAS_OP_N, out, 1, in, &one, w, CUDA_R_16BF, in, x, CUDA_R_16BF, in,
                              &zero, y, CUDA_R_32F, out, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                 "cublasGemmEx");
  }

  void note_peak() {
    size_t free = 0, total = 0;
    if (cudaMemGetInfo(&free, &total) == cudaSuccess) peak_used_ = std::max<uint64_t>(peak_used_, total - free);
  }

  CudaEngineOptions opt_;
  std::string path_;
  LlamaConfig cfg_;
  int max_seq_ = 0;
  uint64_t tokens_ = 0, baseline_used_ = 0, peak_used_ = 0;
  MemoryStats mem_;
  cudaStream_t compute_ = nullptr, copy_ = nullptr;
  cublasHandle_t blas_ = nullptr;
  std::vector<void*> allocations_;
  std::vector<cudaEvent_t> events_;
  cudaEvent_t decoded_[2] = {}, free_[2] = {}, fork_ = nullptr;
  cudaGraphExec_t graph_ = nullptr;
  const __nv_bfloat16 *embed_ = nullptr, *lm_head_ = nullptr, *final_norm_ = nullptr;
  std::vector<Layer> layers_;
  std::vector<std::vector<__nv_bfloat16*>> layer_weights_;
  std::vector<std::unique_ptr<GpuDecoder>> layer_decoders_;
  std::vector<__nv_bfloat16*> scratch_ptrs_[2];
  std::vector<void*> k_cache_, v_cache_;
  float *x_ = nullptr, *xn_ = nullptr, *q_ = nullptr, *k_ = nullptr, *v_ = nullptr, *att_ = nullptr, *gate_ = nullptr,
        *up_ = nullptr, *logits_ = nullptr, *inv_freq_ = nullptr, *host_logits_ = nullptr;
  __nv_bfloat16 *xb_ = nullptr, *hb_ = nullptr;
  int* d_io_ = nullptr;
  int* host_io_ = nullptr;
};

}  // namespace

std::unique_ptr<Engine> make_cuda_engine(const format::ContainerReader& file, const CudaEngineOptions& options) {
  return std::make_unique<CudaEngine>(file, options);
}

}  // namespace codecllm::engine
