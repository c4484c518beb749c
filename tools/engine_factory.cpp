#include "engine_factory.hpp"

#include <algorithm>
#include <vector>

#include "codecllm/byte_size.hpp"
#include "codecllm/error.hpp"
#include "codecllm/placement.hpp"
#include "engine/cpu_engine.hpp"
#include "model/container_tokenizer.hpp"
#ifdef CODECLLM_HAVE_CUDA
#include <cuda_runtime.h>

#include "engine/cuda_engine.hpp"
#endif

namespace codecllm::tools {

namespace {

std::vector<std::string> placement_choices() {
  std::vector<std::string> names;
  for (const auto& entry : kPlacementNames) names.emplace_back(entry.first);
  return names;
}

// --devices 0,2 or --gpus N as device numbers; empty: one device.
std::vector<int> device_list(const EngineArgs& a) {
  if (!a.devices.empty() && a.gpus > 0) throw Error("--gpus and --devices: give one of them");
  std::vector<int> out;
  for (int d = 0; d < a.gpus; ++d) out.push_back(d);
  size_t at = 0;
  while (at < a.devices.size()) {
    const size_t comma = std::min(a.devices.find(',', at), a.devices.size());
    const std::string item = a.devices.substr(at, comma - at);
    if (item.empty() || item.find_first_not_of("0123456789") != std::string::npos)
      throw Error("--devices: '" + a.devices + "' is not a list of device numbers such as 0,1");
    out.push_back(std::stoi(item));
    at = comma + 1;
  }
  return out;
}

}  // namespace

void add_engine_options(CLI::App& app, EngineArgs& a) {
  app.add_option("--device", a.device, "cpu, cuda, or auto (cuda when a GPU is present)")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  app.add_option("--placement", a.placement,
                 "cuda: where layer weights live: gpu (decoded once at load), gpu-compressed (compressed in VRAM, "
                 "decoded just in time), host (compressed in pinned RAM, streamed), host-raw (decoded in pinned "
                 "RAM, streamed), auto (fastest mix within --vram-budget)")
      ->check(CLI::IsMember(placement_choices()));
  app.add_option("--vram-budget", a.vram_budget, "cuda, --placement auto: device memory to use, e.g. 20GiB");
  app.add_option("--prefetch", a.prefetch, "cuda, host placements: layers copied ahead of use")
      ->check(CLI::Range(1, 8));
  app.add_flag("--no-scratch", a.no_scratch,
               "cuda, gpu-compressed at batch 1: multiply straight from the compressed weights instead of decoding "
               "each layer into scratch (less VRAM; suits files compressed with --chunk-symbols 8192)");
  app.add_option("--decode-slots", a.decode_slots,
                 "cuda, gpu-compressed and auto: decoded-layer scratch slots for gpu-compressed layers (default 3, "
                 "int8 layers 4; each one more lets one more layer decode ahead, for one decoded layer of VRAM)")
      ->check(CLI::Range(1, 8));
  app.add_option("--gpus", a.gpus,
                 "cuda: split the layers across GPUs 0..N-1 (contiguous ranges, planned per device; "
                 "--vram-budget is then each device's)")
      ->check(CLI::Range(1, 64));
  app.add_option("--devices", a.devices, "cuda: split the layers across these GPUs, e.g. 0,1 (instead of --gpus)");
  app.add_option("--kv-dtype", a.kv_dtype, "cuda: KV cache element type (f32, bf16, f16)")
      ->check(CLI::IsMember({"f32", "bf16", "f16"}));
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
    o.placement = parse_placement(a.placement);
    o.max_seq_len = a.max_seq;
    o.kv_dtype = engine::parse_kv_dtype(a.kv_dtype);
    o.batch = a.batch;
    o.prefetch_depth = a.prefetch;
    o.products_from_compressed = a.no_scratch;
    o.decode_slots = a.decode_slots;
    o.print_plan = true;
    if (!a.vram_budget.empty()) o.vram_budget = parse_byte_size(a.vram_budget);
    o.devices = device_list(a);
    return engine::make_cuda_engine(file, o);
  }
#else
  if (cuda) throw Error("this build of codecllm has no CUDA support: use --device cpu");
#endif
  if (a.batch > 1) throw Error("--batch > 1 needs the CUDA backend (--device cuda)");
  if (a.placement != "gpu") throw Error("--placement " + a.placement + " needs the CUDA backend (--device cuda)");
  if (a.decode_slots != 0) throw Error("--decode-slots needs the CUDA backend (--device cuda)");
  if (a.gpus > 0 || !a.devices.empty()) throw Error("--gpus and --devices need the CUDA backend (--device cuda)");
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
