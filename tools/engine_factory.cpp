#include "engine_factory.hpp"

#include "codecllm/error.hpp"
#include "engine/cpu_engine.hpp"
#include "model/container_tokenizer.hpp"
#ifdef CODECLLM_HAVE_CUDA
#include <cuda_runtime.h>

#include "engine/cuda_engine.hpp"
#endif

namespace codecllm::tools {

void add_engine_options(CLI::App& app, EngineArgs& a) {
  app.add_option("--device", a.device, "cpu, cuda, or auto (cuda when a GPU is present)")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  app.add_option("--placement", a.placement,
                 "cuda: gpu (weights decoded once at load) or gpu-compressed (layers decoded just in time)")
      ->check(CLI::IsMember({"gpu", "gpu-compressed"}));
  app.add_option("--kv-dtype", a.kv_dtype, "cuda: KV cache element type")->check(CLI::IsMember({"f32", "bf16"}));
  app.add_option("--threads", a.threads, "cpu: threads (default: all cores)");
  app.add_option("--max-seq", a.max_seq, "KV cache positions (default: model limit, capped)");
}

std::unique_ptr<engine::Engine> make_engine(const format::ContainerReader& file, const EngineArgs& a) {
  bool cuda = a.device == "cuda";
#ifdef CODECLLM_HAVE_CUDA
  int n = 0;
  if (a.device == "auto") cuda = cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
  if (cuda) {
    engine::CudaEngineOptions o;
    o.placement = engine::parse_placement(a.placement);
    o.max_seq_len = a.max_seq;
    o.kv_bf16 = a.kv_dtype == "bf16";
    return engine::make_cuda_engine(file, o);
  }
#else
  if (cuda) throw Error("this build of codecllm has no CUDA support: use --device cpu");
#endif
  engine::CpuEngineOptions o;
  o.threads = a.threads;
  o.max_seq_len = a.max_seq;
  return engine::make_cpu_engine(file, o);
}

LoadedModel load_model(const std::string& path, const EngineArgs& a) {
  LoadedModel m;
  m.file = std::make_unique<format::ContainerReader>(path);
  m.engine = make_engine(*m.file, a);
  m.tokenizer = model::load_container_tokenizer(*m.file, m.engine->config().vocab);
  return m;
}

}  // namespace codecllm::tools
