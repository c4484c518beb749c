// A model split across the GPUs of one host: the layers in contiguous ranges, one CUDA engine
// (a share, cuda_stage.hpp) on each device, run in device order each step. The share with the
// first layers embeds the tokens; each share's step ends with a peer copy of its activations
// into the next share's input (never through host memory); the last share computes the logits
// or picks the tokens. Each share keeps its own weights in its own placement, its own scratch,
// streams, KV cache for its layers and captured step graph.
//
// The ranges come from the planner (device_split.hpp) over byte counts read from the file: the
// layers' matrices as decoded and as stored, the embedding on the first device, the final norm
// and lm_head on the last, activations on each, the KV cache with its layers. Each share then
// plans its own layers within its device's budget as a single-device engine does (auto).
#include <cuda_runtime.h>

#include <algorithm>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "codecllm/error.hpp"
#include "cuda/cuda_check.hpp"
#include "engine/cuda_stage.hpp"
#include "engine/device_split.hpp"
#include "model/llama_tensors.hpp"

namespace codecllm::engine {

namespace {

uint64_t stored_bytes(const format::TensorRecord& r) {
  uint64_t n = 0;
  for (const auto& p : r.planes) n += p.size;
  return n;
}

// What the planner weighs, from the file alone (nothing is allocated yet): decoder tables are
// left out (kilobytes a layer); each share's own plan counts them exactly.
DeviceSplitRequest split_request(const format::ContainerReader& file, const LlamaConfig& cfg,
                                 const CudaEngineOptions& o) {
  DeviceSplitRequest r;
  for (int l = 0; l < cfg.layers; ++l) {
    LayerBytes b{0, 0, 0};
    for (const model::TensorSpec& t : model::layer_tensors(cfg, l)) {
      const format::TensorRecord& rec = model::find_tensor(file, t);
      b.decoded += rec.decoded_size;
      b.compressed += stored_bytes(rec);
    }
    r.model.layers.push_back(b);
  }
  r.model.prefetch_depth = o.prefetch_depth;
  if (o.decode_slots > 0) r.model.compressed_slots = o.decode_slots;
  const bool host = o.placement == Placement::Host || o.placement == Placement::HostRaw;
  const auto bytes_of = [&](model::TensorRole role) {
    return model::find_tensor(file, model::tensor_spec(cfg, role)).decoded_size;
  };
  // As CudaWeights places them: the embedding in VRAM unless a host placement or an untied
  // gpu-compressed model keeps it in pinned memory; the lm_head unless a host placement.
  const bool embedding_on_device = !host && !(o.placement == Placement::GpuCompressed && !cfg.tie_embeddings);
  r.first_device_bytes = embedding_on_device ? bytes_of(model::TensorRole::Embedding) : 0;
  r.last_device_bytes =
      bytes_of(model::TensorRole::FinalNorm) + (host || cfg.tie_embeddings ? 0 : bytes_of(model::TensorRole::LmHead));
  const uint64_t B = uint64_t(o.batch), q_dim = uint64_t(cfg.heads) * cfg.head_dim,
                 kv_dim = uint64_t(cfg.kv_heads) * cfg.head_dim;
  // The run state every share allocates (cuda_engine.cpp allocate_state), logits included.
  r.every_device_bytes =
      4 * B * (uint64_t(cfg.hidden) + q_dim + 2 * kv_dim + 2 * uint64_t(cfg.intermediate) + uint64_t(cfg.vocab)) +
      2 * B * (std::max<uint64_t>(cfg.hidden, q_dim) + uint64_t(cfg.intermediate));
  const uint64_t kv_size = o.kv_dtype == KvDtype::F32 ? 4 : 2;
  const int max_seq = o.max_seq_len > 0 ? o.max_seq_len : std::min(cfg.max_positions, 2048);
  r.kv_bytes_per_layer = 2 * B * uint64_t(max_seq) * kv_dim * kv_size;
  for (int d : o.devices) {
    if (o.vram_budget > 0) {
      r.budgets.push_back(o.vram_budget);
    } else {
      size_t free = 0, total = 0;
      CLLM_CUDA_CHECK(cudaSetDevice(d));
      CLLM_CUDA_CHECK(cudaMemGetInfo(&free, &total));
      r.budgets.push_back(free);
    }
  }
  r.placement = o.placement;
  return r;
}

class SplitEngine : public Engine {
 public:
  SplitEngine(const format::ContainerReader& file, const CudaEngineOptions& o) : devices_(o.devices) {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) throw Error("no CUDA device: use --device cpu");
    // A device named more than once holds several shares, run one after the other on it: the
    // split's code path on one GPU (its tests).
    for (int d : devices_) {
      if (d < 0 || d >= count) {
        throw Error("--devices: device " + std::to_string(d) + " is not one of this machine's " +
                    std::to_string(count));
      }
    }
    cfg_ = read_llama_config(file);
    const DeviceSplitRequest request = split_request(file, cfg_, o);
    const std::vector<DeviceShare> shares = plan_devices(request);
    if (o.print_plan) std::cerr << describe_devices(shares);  // device numbers are places in --devices
    for (size_t i = 0; i < shares.size(); ++i) {
      CudaEngineOptions one = o;
      one.devices.clear();
      one.device = devices_[i];
      one.first_layer = int(shares[i].first_layer);
      one.end_layer = int(shares[i].end_layer);
      if (o.placement == Placement::Auto) one.vram_budget = request.budgets[i];
      shares_.push_back(make_cuda_stage(file, one));
    }
    for (size_t i = 0; i + 1 < shares_.size(); ++i) {
      const int from = devices_[i], to = devices_[i + 1];
      int can = 1;
      if (from != to) CLLM_CUDA_CHECK(cudaDeviceCanAccessPeer(&can, from, to));
      if (can == 0) {
        throw Error("devices " + std::to_string(from) + " and " + std::to_string(to) +
                    " cannot reach each other's memory: the activations would cross through host memory");
      }
      CLLM_CUDA_CHECK(cudaSetDevice(from));
      const cudaError_t e = from == to ? cudaSuccess : cudaDeviceEnablePeerAccess(to, 0);
      if (e == cudaErrorPeerAccessAlreadyEnabled) {
        cudaGetLastError();  // clears it
      } else {
        CLLM_CUDA_CHECK(e);
      }
      shares_[i]->send_to(shares_[i + 1]->activations(), to);
    }
  }

  const LlamaConfig& config() const override { return cfg_; }
  int max_seq_len() const override { return shares_.front()->max_seq_len(); }
  int batch_size() const override { return shares_.front()->batch_size(); }

  const float* forward(int token, int pos) override {
    std::vector<int> same(size_t(batch_size()), token);
    return forward_batch(same.data(), pos);
  }
  const float* forward_batch(const int* tokens, int pos) override {
    for (size_t i = 0; i + 1 < shares_.size(); ++i) shares_[i]->forward_batch(tokens, pos);
    return shares_.back()->forward_batch(tokens, pos);
  }
  void forward_sample(const int* tokens, int pos, Sampler* samplers, const uint8_t* wanted, int* next) override {
    for (size_t i = 0; i + 1 < shares_.size(); ++i) shares_[i]->forward_batch(tokens, pos);
    shares_.back()->forward_sample(tokens, pos, samplers, wanted, next);
  }

  // The shares' figures added up; peak_device_bytes is the largest device's.
  MemoryStats memory() const override {
    MemoryStats m;
    for (const auto& s : shares_) {
      const MemoryStats d = s->memory();
      m.weight_bytes += d.weight_bytes;
      m.kv_cache_bytes += d.kv_cache_bytes;
      m.activation_bytes += d.activation_bytes;
      m.scratch_bytes += d.scratch_bytes;
      m.device_bytes += d.device_bytes;
      m.peak_device_bytes = std::max(m.peak_device_bytes, d.peak_device_bytes);
      m.host_pinned_bytes += d.host_pinned_bytes;
      m.streamed_bytes_per_step += d.streamed_bytes_per_step;
      m.matmul_weight_bytes_per_step += d.matmul_weight_bytes_per_step;
      m.planned_device_bytes += d.planned_device_bytes;
    }
    return m;
  }

  std::string describe() const override {
    std::string s = std::to_string(shares_.size()) + " GPUs (";
    for (size_t i = 0; i < shares_.size(); ++i) s += (i ? ", " : "") + std::to_string(devices_[i]);
    return s + "), each " + shares_.front()->describe();
  }

 private:
  std::vector<int> devices_;
  LlamaConfig cfg_;
  std::vector<std::unique_ptr<CudaStage>> shares_;
};

}  // namespace

std::unique_ptr<Engine> make_cuda_split(const format::ContainerReader& file, const CudaEngineOptions& options) {
  return std::make_unique<SplitEngine>(file, options);
}

}  // namespace codecllm::engine
