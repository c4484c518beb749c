// The CUDA engine: options, the run state (activations, KV cache, token and sampling buffers),
// and the step. Weights and how their products run are cuda_weights.hpp's; moving layer bytes
// is cuda/weight_streamer.hpp's.
#include "engine/cuda_engine.hpp"

#include <cuda_runtime.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "codecllm/error.hpp"
#include "cuda/cuda_check.hpp"
#include "cuda/device_memory.hpp"
#include "engine/cuda_kernels.cuh"
#include "engine/cuda_products.hpp"
#include "engine/cuda_sampling.cuh"
#include "engine/cuda_stage.hpp"
#include "engine/cuda_weights.hpp"

namespace codecllm::engine {

namespace k = cuda_kernels;

namespace {

const std::pair<const char*, KvDtype> kKvDtypes[] = {
    {"f32", KvDtype::F32}, {"bf16", KvDtype::BF16}, {"f16", KvDtype::F16}};

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

}  // namespace

KvDtype parse_kv_dtype(const std::string& name) {
  std::string known;
  for (const auto& [n, v] : kKvDtypes) {
    if (name == n) return v;
    known += (known.empty() ? "" : ", ") + std::string(n);
  }
  throw Error("unknown KV cache dtype '" + name + "' (known: " + known + ")");
}

int first_layer(const CudaEngineOptions& o) { return o.first_layer; }

int end_layer(const CudaEngineOptions& o, const LlamaConfig& config) {
  return o.end_layer < 0 ? config.layers : o.end_layer;
}

const char* kv_dtype_name(KvDtype t) {
  for (const auto& [n, v] : kKvDtypes)
    if (v == t) return n;
  return "?";
}

namespace {

class CudaEngine : public CudaStage {
 public:
  CudaEngine(const format::ContainerReader& file, const CudaEngineOptions& o)
      : opt_(o), path_(file.path()), mem_(file.path()) {
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) throw Error("no CUDA device: use --device cpu");
    // One device named in devices (--devices 1) is that device alone, no split.
    const int want = o.devices.size() == 1 ? o.devices[0] : o.device;
    if (want >= devices) {
      throw Error("CUDA device " + std::to_string(want) + " asked for; this machine has " + std::to_string(devices));
    }
    if (want >= 0) CLLM_CUDA_CHECK(cudaSetDevice(want));
    CLLM_CUDA_CHECK(cudaGetDevice(&device_));
    if (o.batch < 1 || o.batch > 1024) throw Error("batch must be in 1..1024");
    if (o.decode_slots != 0 && o.placement != Placement::GpuCompressed && o.placement != Placement::Auto)
      throw Error("decode slots are set for placements gpu-compressed and auto only");
    if (o.decode_slots < 0 || o.decode_slots > 8) throw Error("decode slots must be in 1..8");
    same_token_.resize(size_t(o.batch));
    cfg_ = read_llama_config(file);
    first_ = first_layer(o);
    count_ = end_layer(o, cfg_) - first_;
    max_seq_ = o.max_seq_len > 0 ? o.max_seq_len : std::min(cfg_.max_positions, 2048);
    int shared_limit = 0;
    CLLM_CUDA_CHECK(cudaDeviceGetAttribute(&shared_limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device_));
    if (const size_t need = k::attention_shared_bytes(attention_shape()); need > size_t(shared_limit)) {
      throw Error("--max-seq " + std::to_string(max_seq_) + " exceeds the attention kernel's shared memory (" +
                  std::to_string(need) + " bytes; this GPU allows " + std::to_string(shared_limit) + ")");
    }
    CLLM_CUDA_CHECK(cudaStreamCreateWithFlags(&compute_, cudaStreamNonBlocking));
    size_t free0 = 0, total = 0;
    CLLM_CUDA_CHECK(cudaMemGetInfo(&free0, &total));
    baseline_used_ = total - free0;
    allocate_state();
    products_ = std::make_unique<Products>(CudaWeights::model_act(file, cfg_), o.batch, mem_, compute_);
    // Everything allocated so far is the fixed part of a placement plan.
    weights_ = std::make_unique<CudaWeights>(file, cfg_, o, mem_, compute_);
    exec_ = k::Stream{compute_, o.overlap_launches, weights_->all_gpu()};
    weights_->streamer().prefetch();
    CLLM_CUDA_CHECK(cudaDeviceSynchronize());
    note_peak();
  }

  ~CudaEngine() override {
    cudaSetDevice(device_);
    cudaDeviceSynchronize();
    weights_.reset();
    for (cudaGraphExec_t g : graphs_)
      if (g != nullptr) cudaGraphExecDestroy(g);
    products_.reset();
    if (compute_ != nullptr) cudaStreamDestroy(compute_);
  }

  int device() const override { return device_; }
  float* activations() override { return x_; }
  // The copy addresses next by unified addressing (a captured graph takes no cudaMemcpyPeer);
  // the split enabled peer access from this device to next_device beforehand.
  void send_to(float* next, int /*next_device*/) override {
    if (weights_->has_head()) throw Error("the last share of a split model passes no activations on");
    next_x_ = next;
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
        activation_bytes_ += mem_.device_bytes() - before;
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
    MemoryStats m = weights_->memory();
    m.kv_cache_bytes = kv_cache_bytes_;
    m.activation_bytes = activation_bytes_;
    m.peak_device_bytes = peak_used_ - baseline_used_;
    // The engine's own allocations (run state, cuBLAS workspace, the weights loaded into it) and the streamer's.
    m.device_bytes = mem_.device_bytes() + m.device_bytes;
    return m;
  }

  std::string describe() const override {
    std::string s = "cuda, " + weights_->describe_placement();
    if (opt_.batch > 1) s += ", batch " + std::to_string(opt_.batch);
    s += weights_->describe();
    const std::string t = weights_->act() == k::Act::F16 ? "f16" : "bf16";
    return s + ", f32 activations (" + t + " matmul inputs), " + kv_dtype_name(opt_.kv_dtype) + " KV cache";
  }

 private:
  // What a step hands back: the logits, or the next tokens chosen on the GPU.
  enum class StepEnd { Logits, Greedy, Sample, Nucleus };
  static constexpr int kStepEnds = 4;

  void run_step(const int* tokens, int pos, StepEnd end) {
    CLLM_CUDA_CHECK(cudaSetDevice(device_));  // a split model's shares share one host thread
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
      weights_->streamer().check();
      note_peak();
    }
  }

  k::AttentionShape attention_shape() const {
    return {cfg_.heads, cfg_.kv_heads, cfg_.head_dim, max_seq_, opt_.batch, kernel_kv_type(opt_.kv_dtype)};
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

  void matmul(const Product& p, const void* x, float* y, bool accumulate, int ldy = 0) {
    products_->run(p, x, y, accumulate, exec_, ldy);
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
    const int dim = cfg_.hidden, hid = cfg_.intermediate, vocab = cfg_.vocab;
    const k::AttentionShape shape = attention_shape();
    const k::Act act = weights_->act();
    const auto eps = float(cfg_.rms_eps);
    cuda::WeightStreamer& streamer = weights_->streamer();
    streamer.begin_step(compute_);
    if (weights_->embeds()) k::embed(act, weights_->embedding(), d_tokens, dim, B, x_, exec_);
    // (a later share of a split model: x_ holds what the share before copied in, before this step)
    for (int l = 0; l < count_; ++l) {  // local layer l is the model's first_ + l
      const LayerWeights& W = weights_->layer(l);
      streamer.acquire(l, compute_);
      // Attention block: x += o_proj(attention(rope(q), rope(k), v)) (+ o_proj bias).
      k::rmsnorm(act, x_, W.attn_norm, eps, dim, B, xb_, exec_);
      matmul(W.qkv, xb_, qkv_, false);
      k::qkv_rope_store(act, qkv_, W.q_bias, W.k_bias, W.v_bias, inv_freq_, d_pos, shape, k_cache_[l], v_cache_[l],
                        exec_);
      k::attention(act, qkv_, k_cache_[l], v_cache_[l], d_pos, shape, xb_, exec_);
      matmul(W.o, xb_, x_, true);
      if (W.o_bias != nullptr) k::add_bias(act, W.o_bias, dim, B, x_, exec_);
      // MLP block: x += down(silu(gate(x)) * up(x)).
      k::rmsnorm(act, x_, W.ffn_norm, eps, dim, B, xb_, exec_);
      matmul(W.gate_up, xb_, gate_up_, false);
      k::silu_mul(act, gate_up_, hid, B, hb_, exec_);
      matmul(W.down, hb_, x_, true);
      streamer.release(l, compute_);
    }
    if (!weights_->has_head()) {  // the activations go on to the next share, GPU to GPU
      if (next_x_ != nullptr) {
        CLLM_CUDA_CHECK(cudaMemcpyAsync(next_x_, x_, sizeof(float) * size_t(dim) * B, cudaMemcpyDefault, compute_));
      }
      streamer.end_step(compute_);
      return;
    }
    k::rmsnorm(act, x_, weights_->final_norm(), eps, dim, B, xb_, exec_);
    if (weights_->lm_head_on_host()) {
      // Through the scratch slots by DMA: reading it in place over PCIe measured ~8 ms a step
      // slower than its bytes need on an 8B shape.
      streamer.stream_rows(static_cast<const uint8_t*>(weights_->lm_head().w), uint64_t(vocab),
                           weights_->lm_head_row_bytes(), compute_,
                           [&](const uint8_t* w, uint64_t row0, uint64_t rows) {
                             matmul(weights_->lm_head_piece(w, row0, rows), xb_, logits_ + row0, false, vocab);
                           });
    } else {
      matmul(weights_->lm_head(), xb_, logits_, false);
    }
    if (end == StepEnd::Logits) {
      CLLM_CUDA_CHECK(
          cudaMemcpyAsync(host_logits_, logits_, sizeof(float) * vocab * B, cudaMemcpyDeviceToHost, compute_));
    } else {
      if (end == StepEnd::Greedy) {
        k::argmax_tokens(logits_, vocab, B, d_next_, exec_);
      } else {
        k::sample_tokens(logits_, vocab, B, d_params_, end == StepEnd::Nucleus, sample_scratch_, d_next_, exec_);
      }
      CLLM_CUDA_CHECK(cudaMemcpyAsync(host_next_, d_next_, sizeof(int) * B, cudaMemcpyDeviceToHost, compute_));
    }
    streamer.end_step(compute_);  // last: its copies for the next step overlap the lm_head
  }

  // Activations, KV cache, RoPE frequencies, token and sampling buffers: allocated once.
  void allocate_state() {
    const size_t B = opt_.batch, dim = cfg_.hidden, q_dim = size_t(cfg_.heads) * cfg_.head_dim,
                 kv_dim = size_t(cfg_.kv_heads) * cfg_.head_dim, hid = cfg_.intermediate;
    auto f = [&](size_t n, const char* what) {
      activation_bytes_ += n * sizeof(float);
      return static_cast<float*>(mem_.device(n * sizeof(float), what));
    };
    auto h = [&](size_t n, const char* what) {  // of the model's 16-bit type
      activation_bytes_ += n * 2;
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
    for (int l = 0; l < count_; ++l) {  // this engine's layers only
      k_cache_.push_back(mem_.device(kv_bytes, "the KV cache"));
      v_cache_.push_back(mem_.device(kv_bytes, "the KV cache"));
      kv_cache_bytes_ += 2 * kv_bytes;
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
  int device_ = 0;
  int first_ = 0, count_ = 0;    // the layers run: [first_, first_ + count_)
  float* next_x_ = nullptr;      // a split model's next share's activations (on its device)
  std::vector<int> same_token_;  // forward()'s batch, sized once: no allocation per token
  uint64_t steps_ = 0, baseline_used_ = 0, peak_used_ = 0, kv_cache_bytes_ = 0, activation_bytes_ = 0;
  cudaStream_t compute_ = nullptr;
  k::Stream exec_;                          // compute_, as the kernels launch on it
  cudaGraphExec_t graphs_[kStepEnds] = {};  // per StepEnd, captured at its first step
  std::unique_ptr<CudaWeights> weights_;
  std::unique_ptr<Products> products_;
  std::vector<void*> k_cache_, v_cache_;
  float *x_ = nullptr, *qkv_ = nullptr, *gate_up_ = nullptr, *logits_ = nullptr, *inv_freq_ = nullptr,
        *host_logits_ = nullptr;
  void *xb_ = nullptr, *hb_ = nullptr;  // matmul inputs, of the model's 16-bit type
  int* d_io_ = nullptr;
  int* host_io_ = nullptr;
  int *d_next_ = nullptr, *host_next_ = nullptr;  // tokens picked on the GPU
  float *d_params_ = nullptr, *host_params_ = nullptr;
  k::SampleScratch sample_scratch_{};
};

}  // namespace

std::unique_ptr<CudaStage> make_cuda_stage(const format::ContainerReader& file, const CudaEngineOptions& options) {
  return std::make_unique<CudaEngine>(file, options);
}

std::unique_ptr<Engine> make_cuda_engine(const format::ContainerReader& file, const CudaEngineOptions& options) {
  if (options.devices.size() > 1) return make_cuda_split(file, options);
  return std::make_unique<CudaEngine>(file, options);
}

}  // namespace codecllm::engine
