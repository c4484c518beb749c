// Where each transformer layer's matmul weights live for a given VRAM budget, and what each
// placement costs. Pure arithmetic on byte counts (no CUDA), so that it is tested everywhere and
// the CUDA engine only carries the plan out. The byte counts come from the code that allocates
// them (cuda::WeightStreamer's slot layout, each layer's cuda::GpuDecoder), and the totals
// below add them up the way the streamer allocates, so a plan's total is what the engine holds
// after load.
//   gpu             decoded in VRAM: fastest, largest
//   gpu-compressed  compressed in VRAM, decoded every step into a scratch slot
//   host            compressed in pinned host RAM, copied over PCIe every step into a staging
//                   buffer, then decoded: slowest, costs VRAM only for the buffers
//   host-raw        decoded in pinned host RAM, copied every step into a slot (never chosen by
//                   the planner: host moves fewer bytes for the same VRAM)
// Embeddings, lm_head, norms, KV cache and activations are "fixed" bytes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "codecllm/byte_size.hpp"  // parse_byte_size, for the budget on command lines
#include "codecllm/placement.hpp"

namespace codecllm::engine {

// Decode slots of gpu-compressed layers: the next two layers decode while one computes (one
// decode of a layer fills only part of the GPU); int8 layers are half the size and their decode
// bounds a step, so a third decodes at once (96.0 -> 110.7 tok/s on the 8B shape, measured).
int default_compressed_slots(bool int8_layers);

struct LayerBytes {
  uint64_t decoded = 0;     // the layer decoded: what a gpu layer holds and a decode slot takes
  uint64_t compressed = 0;  // its compressed range: VRAM (gpu-compressed), pinned RAM and staging (host)
  uint64_t tables = 0;      // its decoder's device tables and descriptors (gpu-compressed and host)
};

struct PlanRequest {
  std::vector<LayerBytes> layers;
  uint64_t fixed_bytes = 0;                                // everything resident in VRAM besides the layers
  uint64_t budget_bytes = 0;                               // VRAM the plan may use, fixed bytes included
  int prefetch_depth = 2;                                  // staging buffers for host layers, >= 1
  int compressed_slots = default_compressed_slots(false);  // decode slots with any gpu-compressed layer
  // A decode slot when every layer is gpu-compressed and decodes its BF16 exponents alone
  // (products read sign and mantissa in place); 0 where that does not apply.
  uint64_t exponent_slot_bytes = 0;
  // gpu-compressed layers multiply straight from their compressed copy: they take no slot.
  bool compressed_products_in_place = false;
  uint64_t decoder_scratch_bytes = 0;  // per decode stream (int8 predictor residuals)
};

struct PlacementPlan {
  // In layer order; plan_placement puts gpu layers first, then gpu-compressed, then host.
  std::vector<Placement> layers;
  int decode_slots = 0;             // scratch slots layers stream through (0: none streams)
  int staging_slots = 0;            // prefetch_depth with any host layer, else 0
  uint64_t decode_slot_bytes = 0;   // what one decode slot holds
  uint64_t staging_slot_bytes = 0;  // largest compressed host layer: what one staging slot holds
  uint64_t weight_bytes = 0;        // layer weights in VRAM (gpu: decoded, gpu-compressed: compressed)
  uint64_t table_bytes = 0;         // decoder tables of gpu-compressed and host layers
  uint64_t host_bytes = 0;          // host and host-raw layers in pinned host RAM (not in total_bytes)
  uint64_t scratch_bytes = 0;       // decode slots, and decoder scratch per decode stream
  uint64_t staging_bytes = 0;       // staging_slots * staging_slot_bytes
  uint64_t fixed_bytes = 0;
  uint64_t total_bytes = 0;  // VRAM: weight + table + scratch + staging + fixed
};

// What placing each layer as `layers` says costs (any placement but Auto, per layer).
PlacementPlan plan_of(const PlanRequest& request, const std::vector<Placement>& layers);

// The fastest plan within the budget. Throws codecllm::Error, giving the budget, the fixed
// bytes and the smallest possible layer weights + scratch + staging, when no plan fits, and
// when prefetch_depth < 1.
PlacementPlan plan_placement(const PlanRequest& request);

// Runs of layers with one placement and their bytes ("layers 0-39  gpu-compressed  9.10 GiB"),
// then the totals against the budget; one line each, newline-terminated. Layers are numbered
// from first_layer (a device's share of a model split across devices).
std::string describe_plan(const PlacementPlan& plan, const PlanRequest& request, size_t first_layer = 0);
// "weights 9.10 GiB, tables 7.00 MiB, scratch 832.00 MiB, staging 0 B": where a plan's VRAM
// besides the fixed bytes goes, for messages.
std::string plan_bytes(const PlacementPlan& plan);
// "2 gpu, 30 gpu-compressed layers".
std::string summarize_plan(const PlacementPlan& plan);

}  // namespace codecllm::engine
