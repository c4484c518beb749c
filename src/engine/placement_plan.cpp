#include "engine/placement_plan.hpp"

#include <algorithm>
#include <iomanip>
#include <optional>
#include <sstream>

#include "codecllm/error.hpp"

namespace codecllm::engine {

int default_compressed_slots(bool int8_layers) { return int8_layers ? 4 : 3; }

namespace {

// Bytes the layer occupies where it lives (VRAM, or pinned host RAM for host layers).
uint64_t resident_bytes(const LayerBytes& b, Placement p) {
  return p == Placement::Gpu || p == Placement::HostRaw ? b.decoded : b.compressed;
}

std::string mib_gib(uint64_t bytes) { return human_bytes(double(bytes)); }

// The first `gpu` layers decoded, the next `compressed` kept compressed in VRAM, the rest on
// the host. Ordering placements this way keeps the pipeline to two boundaries; host layers go
// last because their PCIe copies, the slowest step, can then start at the beginning of a token
// and overlap the compute of every VRAM-resident layer before them.
PlacementPlan make_plan(const PlanRequest& r, size_t gpu, size_t compressed) {
  std::vector<Placement> layers(gpu, Placement::Gpu);
  layers.resize(gpu + compressed, Placement::GpuCompressed);
  layers.resize(r.layers.size(), Placement::Host);
  return plan_of(r, layers);
}

[[noreturn]] void too_small(const PlanRequest& r, const PlacementPlan& smallest) {
  const uint64_t layer_bytes = smallest.total_bytes - smallest.fixed_bytes;
  throw Error("VRAM budget " + mib_gib(r.budget_bytes) + " is too small: fixed " + mib_gib(r.fixed_bytes) +
              " (embeddings, lm_head, norms, KV cache, activations) + at least " + mib_gib(layer_bytes) +
              " for layer weights, decoder tables, decode scratch and staging (" + plan_bytes(smallest) +
              ") = " + mib_gib(smallest.total_bytes));
}

}  // namespace

std::string plan_bytes(const PlacementPlan& p) {
  return "weights " + mib_gib(p.weight_bytes) + ", tables " + mib_gib(p.table_bytes) + ", scratch " +
         mib_gib(p.scratch_bytes) + ", staging " + mib_gib(p.staging_bytes);
}

// As cuda::WeightStreamer allocates: gpu layers hold their decoded bytes (their decoders go after
// load), gpu-compressed layers their compressed range and decoder tables, host layers their
// tables; every layer that streams takes turns in min(slots, streamed layers) slots of the
// largest decoded layer; host layers' copies land in min(prefetch depth, host layers) staging
// buffers of the largest compressed host layer; each decode stream (one per slot beyond the
// first, at least one) has its decoder scratch.
PlacementPlan plan_of(const PlanRequest& r, const std::vector<Placement>& layers) {
  if (layers.size() != r.layers.size()) throw Error("placement: one placement per layer expected");
  PlacementPlan p;
  p.layers = layers;
  int streamed = 0, hosts = 0;
  bool any_compressed = false, any_raw = false, all_compressed = !layers.empty();
  for (size_t i = 0; i < layers.size(); ++i) {
    const LayerBytes& b = r.layers[i];
    const Placement where = layers[i];
    if (where == Placement::Auto) throw Error("placement: auto is not a layer's placement");
    const bool on_host = where == Placement::Host || where == Placement::HostRaw;
    (on_host ? p.host_bytes : p.weight_bytes) += resident_bytes(b, where);
    if (where == Placement::GpuCompressed || where == Placement::Host) p.table_bytes += b.tables;
    const bool streams =
        where != Placement::Gpu && !(where == Placement::GpuCompressed && r.compressed_products_in_place);
    streamed += streams;
    if (streams) p.decode_slot_bytes = std::max(p.decode_slot_bytes, b.decoded);
    if (where == Placement::Host) {
      ++hosts;
      p.staging_slot_bytes = std::max(p.staging_slot_bytes, b.compressed);
    }
    any_compressed = any_compressed || where == Placement::GpuCompressed;
    any_raw = any_raw || where == Placement::HostRaw;
    all_compressed = all_compressed && where == Placement::GpuCompressed;
  }
  if (all_compressed && r.exponent_slot_bytes > 0) p.decode_slot_bytes = r.exponent_slot_bytes;
  // Host layers are paced by PCIe, so one slot is enough when they are the only ones streaming;
  // host-raw layers take two, so that the next copy lands while one computes.
  const int wanted = any_compressed ? r.compressed_slots : any_raw ? 2 : hosts > 0 ? 1 : 0;
  p.decode_slots = std::min(wanted, streamed);
  p.staging_slots = std::min(hosts > 0 ? r.prefetch_depth : 0, hosts);
  const int decode_streams = std::max(p.decode_slots - 1, 1);
  p.scratch_bytes = uint64_t(p.decode_slots) * p.decode_slot_bytes + uint64_t(decode_streams) * r.decoder_scratch_bytes;
  p.staging_bytes = uint64_t(p.staging_slots) * p.staging_slot_bytes;
  p.fixed_bytes = r.fixed_bytes;
  p.total_bytes = p.weight_bytes + p.table_bytes + p.scratch_bytes + p.staging_bytes + p.fixed_bytes;
  return p;
}

// Policy: per byte of VRAM spent, moving a layer from host to gpu-compressed saves more time
// than moving one from gpu-compressed to gpu. The first takes the layer's compressed bytes off
// PCIe (~50 GB/s): ~20 ps per byte. The second saves its decode (~300 GB/s of output today,
// docs/BENCHMARKS.md) but spends decoded - compressed bytes, about a third of decoded for
// lossless BF16: ~10 ps per byte, less for int8, and less still as the decoder gets faster. So
// the preference is lexicographic: fewest host layers first, then most gpu layers. Greedy
// promotion (host -> gpu-compressed while it fits, then gpu-compressed -> gpu) computes that,
// except that its steps can stop early where the buffers change: the last host layer leaving
// frees all staging, the first gpu-compressed layer adds decode slots, the last gpu-compressed
// layer leaving drops decode slots to 1 (with host layers) or 0 (all gpu). Trying every split
// in preference order handles those jumps; it is O(n^3) in the layer count: a few
// milliseconds, once at load, for the ~130 layers of the largest models.
PlacementPlan plan_placement(const PlanRequest& request) {
  if (request.prefetch_depth < 1)
    throw Error("placement: prefetch depth must be at least 1, got " + std::to_string(request.prefetch_depth));
  const size_t n = request.layers.size();
  std::optional<PlacementPlan> smallest;
  for (size_t host = 0; host <= n; ++host) {
    for (size_t gpu = n - host + 1; gpu-- > 0;) {
      PlacementPlan p = make_plan(request, gpu, n - host - gpu);
      if (p.total_bytes <= request.budget_bytes) return p;
      if (!smallest || p.total_bytes < smallest->total_bytes) smallest = std::move(p);
    }
  }
  too_small(request, *smallest);
}

std::string summarize_plan(const PlacementPlan& plan) {
  std::string out;
  for (Placement p : {Placement::Gpu, Placement::GpuCompressed, Placement::Host, Placement::HostRaw}) {
    const auto count = std::count(plan.layers.begin(), plan.layers.end(), p);
    if (count > 0) out += (out.empty() ? "" : ", ") + std::to_string(count) + " " + placement_name(p);
  }
  return out + " layers";
}

std::string describe_plan(const PlacementPlan& plan, const PlanRequest& request, size_t first_layer) {
  std::ostringstream os;
  auto row = [&os](const std::string& what, const std::string& detail, uint64_t bytes, const std::string& note = "") {
    os << std::left << std::setw(16) << what << std::setw(16) << detail << std::right << std::setw(11) << mib_gib(bytes)
       << note << "\n";
  };
  const size_t n = plan.layers.size();
  for (size_t begin = 0, end = 0; begin < n; begin = end) {
    uint64_t bytes = 0;
    for (end = begin; end < n && plan.layers[end] == plan.layers[begin]; ++end)
      bytes += resident_bytes(request.layers[end], plan.layers[end]);
    const bool host = plan.layers[begin] == Placement::Host || plan.layers[begin] == Placement::HostRaw;
    row(end - begin == 1
            ? "layer " + std::to_string(first_layer + begin)
            : "layers " + std::to_string(first_layer + begin) + "-" + std::to_string(first_layer + end - 1),
        placement_name(plan.layers[begin]), bytes, host ? " in pinned host RAM" : "");
  }
  auto slots = [](int count, uint64_t slot_bytes) {
    return count == 0 ? std::string("none") : std::to_string(count) + " x " + mib_gib(slot_bytes);
  };
  if (plan.table_bytes > 0) row("decoder tables", "", plan.table_bytes);
  row("decode scratch", slots(plan.decode_slots, plan.decode_slot_bytes), plan.scratch_bytes);
  row("staging", slots(plan.staging_slots, plan.staging_slot_bytes), plan.staging_bytes);
  row("fixed", "", plan.fixed_bytes);
  row("total VRAM", "", plan.total_bytes);
  const uint64_t budget = request.budget_bytes;
  if (budget > 0) {
    row("budget", "", budget,
        plan.total_bytes <= budget ? ", " + mib_gib(budget - plan.total_bytes) + " spare" : ", exceeded");
  }
  return os.str();
}

}  // namespace codecllm::engine
