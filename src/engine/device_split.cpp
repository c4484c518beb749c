#include "engine/device_split.hpp"

#include <algorithm>
#include <numeric>

#include "codecllm/byte_size.hpp"
#include "codecllm/error.hpp"

namespace codecllm::engine {

namespace {

// What device d holds besides its layers' weights, for `layers` layers.
uint64_t device_fixed(const DeviceSplitRequest& r, size_t d, size_t layers) {
  const size_t last = r.budgets.size() - 1;
  return r.every_device_bytes + (d == 0 ? r.first_device_bytes : 0) + (d == last ? r.last_device_bytes : 0) +
         r.kv_bytes_per_layer * layers;
}

// Layer counts in proportion to each budget's room after the bytes every layer-independent
// share takes (largest remainders get the leftover layers), at least one a device.
std::vector<size_t> layer_counts(const DeviceSplitRequest& r) {
  const size_t n = r.model.layers.size(), devices = r.budgets.size();
  std::vector<double> room(devices);
  for (size_t d = 0; d < devices; ++d) {
    const uint64_t fixed = device_fixed(r, d, 0);
    room[d] = r.budgets[d] > fixed ? double(r.budgets[d] - fixed) : 0.0;
  }
  const double total = std::accumulate(room.begin(), room.end(), 0.0);
  std::vector<size_t> counts(devices, 1);  // one each first: no device idle
  std::vector<double> rest(devices, 0.0);
  size_t given = devices;
  for (size_t d = 0; d < devices; ++d) {
    const double share = total > 0 ? double(n - devices) * room[d] / total : double(n - devices) / double(devices);
    counts[d] += size_t(share);
    rest[d] = share - double(size_t(share));
    given += size_t(share);
  }
  while (given < n) {  // the largest remainders, earlier devices first on ties
    const size_t d = size_t(std::max_element(rest.begin(), rest.end()) - rest.begin());
    ++counts[d];
    rest[d] = -1.0;
    ++given;
  }
  return counts;
}

}  // namespace

std::vector<DeviceShare> plan_devices(const DeviceSplitRequest& r) {
  const size_t n = r.model.layers.size(), devices = r.budgets.size();
  if (devices == 0) throw Error("devices: no device to plan for");
  if (devices > n) {
    throw Error("devices: " + std::to_string(devices) + " devices for " + std::to_string(n) +
                " layers; each device needs at least one layer");
  }
  const std::vector<size_t> counts = layer_counts(r);
  std::vector<DeviceShare> shares;
  size_t first = 0;
  for (size_t d = 0; d < devices; ++d) {
    DeviceShare s;
    s.first_layer = first;
    s.end_layer = first + counts[d];
    first = s.end_layer;
    s.request = r.model;
    s.request.layers.assign(r.model.layers.begin() + std::ptrdiff_t(s.first_layer),
                            r.model.layers.begin() + std::ptrdiff_t(s.end_layer));
    s.request.fixed_bytes = device_fixed(r, d, counts[d]);
    s.request.budget_bytes = r.budgets[d];
    const std::string where = "device " + std::to_string(d) + " (layers " + std::to_string(s.first_layer) + "-" +
                              std::to_string(s.end_layer - 1) + "): ";
    try {
      if (r.placement == Placement::Auto) {
        s.plan = plan_placement(s.request);
      } else {
        s.plan = plan_of(s.request, std::vector<Placement>(counts[d], r.placement));
        if (s.request.budget_bytes > 0 && s.plan.total_bytes > s.request.budget_bytes) {
          throw Error(std::string(placement_name(r.placement)) + " needs " + human_bytes(double(s.plan.total_bytes)) +
                      " (" + plan_bytes(s.plan) + ", fixed " + human_bytes(double(s.plan.fixed_bytes)) +
                      ") over a budget of " + human_bytes(double(s.request.budget_bytes)));
        }
      }
    } catch (const Error& e) {
      throw Error(where + e.what());
    }
    shares.push_back(std::move(s));
  }
  return shares;
}

std::string describe_devices(const std::vector<DeviceShare>& shares) {
  std::string out;
  for (size_t d = 0; d < shares.size(); ++d) {
    const DeviceShare& s = shares[d];
    out += "device " + std::to_string(d) + ": layers " + std::to_string(s.first_layer) + "-" +
           std::to_string(s.end_layer - 1) + ", " + summarize_plan(s.plan) + "\n";
    out += describe_plan(s.plan, s.request, s.first_layer);
  }
  return out;
}

}  // namespace codecllm::engine
