// Where a model's layer weights live on a CUDA machine: one vocabulary from the command line
// through the planner to the weight streamer. A whole model takes any of the five; a single
// layer any but Auto, which is the planner's job of choosing per layer.
#pragma once

#include <string>
#include <utility>

#include "codecllm/error.hpp"

namespace codecllm {

enum class Placement {
  Gpu,            // decoded once at load, in VRAM: nothing moves per token (the baseline)
  GpuCompressed,  // compressed in VRAM, decoded just in time into reused scratch slots
  Host,           // compressed in pinned host RAM, copied over PCIe each step, then decoded
  HostRaw,        // decoded in pinned host RAM, copied each step (plain offload)
  Auto            // per layer, the fastest mix of the first three within a VRAM budget
};

inline constexpr std::pair<const char*, Placement> kPlacementNames[] = {{"gpu", Placement::Gpu},
                                                                        {"gpu-compressed", Placement::GpuCompressed},
                                                                        {"host", Placement::Host},
                                                                        {"host-raw", Placement::HostRaw},
                                                                        {"auto", Placement::Auto}};

inline const char* placement_name(Placement p) {
  for (const auto& [name, value] : kPlacementNames)
    if (value == p) return name;
  return "?";
}

// "gpu, gpu-compressed, host, host-raw, auto": for help texts and error messages.
inline std::string placement_names() {
  std::string all;
  for (const auto& entry : kPlacementNames) all += (all.empty() ? "" : ", ") + std::string(entry.first);
  return all;
}

// Throws codecllm::Error listing the known names.
inline Placement parse_placement(const std::string& name) {
  for (const auto& [n, value] : kPlacementNames)
    if (name == n) return value;
  throw Error("unknown placement '" + name + "' (known: " + placement_names() + ")");
}

}  // namespace codecllm
