// Several GPUs of one host: which contiguous range of transformer layers each device holds, and
// each device's own placement plan (placement_plan.hpp) for its range. Pure arithmetic on byte
// counts, like the single-device planner, so that it is tested everywhere.
//
// What a device holds besides its layers' weights: the first device the embeddings, the last
// the final norm and lm_head, every device one set of activations and buffers, and each layer's
// KV cache lives with its layer. Layers are shared out in proportion to what each budget has
// left after those fixed bytes (rounded so that the counts add up, never zero for a device), so
// that a device with a larger budget keeps more layers; each device's range is then planned as
// one engine's layers are.
//
// Followed by the CUDA engine's split (cuda_split.cpp, --gpus / --devices) and the Python
// frontend's device_map="auto" (python/codecllm/_device_map.py, through the plan_devices binding).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/placement_plan.hpp"

namespace codecllm::engine {

struct DeviceSplitRequest {
  // The model's layers and the streaming options (slots, prefetch, ...); its fixed_bytes and
  // budget_bytes are ignored: each device gets its own below.
  PlanRequest model;
  std::vector<uint64_t> budgets;    // VRAM each device may use, fixed bytes included; one per device
  uint64_t first_device_bytes = 0;  // embeddings
  uint64_t last_device_bytes = 0;   // final norm and lm_head
  uint64_t every_device_bytes = 0;  // activations and buffers, one set per device
  uint64_t kv_bytes_per_layer = 0;  // KV cache of one layer, on the layer's device
  // Auto: each device's fastest plan within its budget; any other: every layer so, checked
  // against each budget.
  Placement placement = Placement::Auto;
};

struct DeviceShare {
  size_t first_layer = 0, end_layer = 0;  // the device's layers: [first_layer, end_layer)
  PlanRequest request;                    // its layers, fixed bytes and budget
  PlacementPlan plan;
};

// One share per device, in device order, covering every layer once. Throws codecllm::Error with
// the device's number and the numbers that do not fit when a budget is too small, and when
// there are no devices or more devices than layers.
std::vector<DeviceShare> plan_devices(const DeviceSplitRequest& request);

// For each device, "device N: layers a-b" and its plan (describe_plan); printed before loading.
std::string describe_devices(const std::vector<DeviceShare>& shares);

}  // namespace codecllm::engine
