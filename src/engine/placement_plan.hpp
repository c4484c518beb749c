// Where each transformer layer's matmul weights live for a given VRAM budget. Pure arithmetic
// on byte counts (no CUDA), so that it is tested everywhere and the CUDA engine only carries
// the plan out.
//   gpu             decoded BF16 in VRAM: fastest, largest
//   gpu-compressed  compressed in VRAM, decoded every token into a scratch buffer
//   host            compressed in pinned host RAM, copied over PCIe every token into a
//                   staging buffer, then decoded: slowest, costs VRAM only for the buffers
// Embeddings, lm_head, norms, KV cache and activations always stay in VRAM: "fixed" bytes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "codecllm/byte_size.hpp"  // parse_byte_size, for the budget on command lines

namespace codecllm::engine {

enum class LayerPlacement { Gpu, GpuCompressed, Host };

const char* placement_name(LayerPlacement p);  // "gpu", "gpu-compressed", "host"

struct LayerBytes {
  uint64_t raw = 0;         // decoded (BF16) matmul weights of the layer
  uint64_t compressed = 0;  // as stored in the .cllm
};

struct PlanRequest {
  std::vector<LayerBytes> layers;
  uint64_t fixed_bytes = 0;   // everything always resident in VRAM
  uint64_t budget_bytes = 0;  // VRAM the plan may use, fixed bytes included
  int prefetch_depth = 2;     // staging buffers for host layers, >= 1
};

struct PlacementPlan {
  // In layer order: gpu layers first, then gpu-compressed, then host (see plan_placement).
  std::vector<LayerPlacement> layers;
  int decode_slots = 0;             // 0 when every layer is gpu; 2 with any gpu-compressed layer; else 1
  int staging_slots = 0;            // prefetch_depth with any host layer, else 0
  uint64_t decode_slot_bytes = 0;   // largest raw layer: what one decode slot holds
  uint64_t staging_slot_bytes = 0;  // largest compressed layer: what one staging slot holds
  uint64_t weight_bytes = 0;        // layer weights in VRAM (gpu: raw, gpu-compressed: compressed)
  uint64_t host_bytes = 0;          // compressed host layers in pinned host RAM (not in total_bytes)
  uint64_t scratch_bytes = 0;       // decode_slots * decode_slot_bytes
  uint64_t staging_bytes = 0;       // staging_slots * staging_slot_bytes
  uint64_t fixed_bytes = 0;
  uint64_t total_bytes = 0;  // VRAM: weight + scratch + staging + fixed
};

// The fastest plan within the budget. Throws codecllm::Error, giving the budget, the fixed
// bytes and the smallest possible layer weights + scratch + staging, when no plan fits, and
// when prefetch_depth < 1.
PlacementPlan plan_placement(const PlanRequest& request);

// Runs of layers with one placement and their bytes ("layers 0-39  gpu-compressed  9.10 GiB"),
// then the totals against the budget; one line each, newline-terminated.
std::string describe_plan(const PlacementPlan& plan, const PlanRequest& request);

}  // namespace codecllm::engine
