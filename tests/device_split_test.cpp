// The split of a model's layers across devices: contiguous ranges in proportion to each budget's
// room, the fixed bytes on the devices that hold them, each range planned as one engine's, and
// errors that name the device and the numbers.
#include "engine/device_split.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "codecllm/error.hpp"

namespace codecllm::engine {
namespace {

constexpr uint64_t kMiB = uint64_t(1) << 20;
constexpr uint64_t kGiB = uint64_t(1) << 30;

// 8 layers of 300 MiB decoded, 200 MiB compressed; embeddings and lm_head 500 MiB each,
// activations 100 MiB a device, KV cache 10 MiB a layer.
DeviceSplitRequest eight_layers(std::vector<uint64_t> budgets, Placement placement = Placement::Auto) {
  DeviceSplitRequest r;
  r.model.layers.assign(8, LayerBytes{300 * kMiB, 200 * kMiB, 0});
  r.model.compressed_slots = 2;
  r.budgets = std::move(budgets);
  r.first_device_bytes = 500 * kMiB;
  r.last_device_bytes = 500 * kMiB;
  r.every_device_bytes = 100 * kMiB;
  r.kv_bytes_per_layer = 10 * kMiB;
  r.placement = placement;
  return r;
}

void expect_covers_in_order(const std::vector<DeviceShare>& shares, size_t layers) {
  size_t next = 0;
  for (const DeviceShare& s : shares) {
    EXPECT_EQ(s.first_layer, next);
    EXPECT_GT(s.end_layer, s.first_layer);
    EXPECT_EQ(s.plan.layers.size(), s.end_layer - s.first_layer);
    EXPECT_LE(s.plan.total_bytes, s.request.budget_bytes);
    next = s.end_layer;
  }
  EXPECT_EQ(next, layers);
}

TEST(DeviceSplit, EqualBudgetsSplitEvenlyWithEachDevicesFixedBytes) {
  const auto shares = plan_devices(eight_layers({10 * kGiB, 10 * kGiB}));
  ASSERT_EQ(shares.size(), 2u);
  expect_covers_in_order(shares, 8);
  EXPECT_EQ(shares[0].end_layer, 4u);
  // Embeddings on the first device, lm_head on the last, activations on both, KV with its layers
  // (4 layers x 10 MiB).
  EXPECT_EQ(shares[0].plan.fixed_bytes, 500 * kMiB + 100 * kMiB + 40 * kMiB);
  EXPECT_EQ(shares[1].plan.fixed_bytes, 500 * kMiB + 100 * kMiB + 40 * kMiB);
  for (const DeviceShare& s : shares)  // room for every layer decoded
    for (Placement p : s.plan.layers) EXPECT_EQ(p, Placement::Gpu);
}

TEST(DeviceSplit, LargerBudgetTakesMoreLayers) {
  // Room after fixed bytes: 3000 - 600 = 2400 MiB against 1300 - 600 = 700 MiB: 6 and 2 layers
  // of the 8 (one each, then 6 by share: 4.65 and 1.35, the larger remainder to the first).
  const auto shares = plan_devices(eight_layers({3000 * kMiB, 1300 * kMiB}));
  expect_covers_in_order(shares, 8);
  EXPECT_EQ(shares[0].end_layer - shares[0].first_layer, 6u);
  EXPECT_EQ(shares[1].end_layer - shares[1].first_layer, 2u);
}

TEST(DeviceSplit, OneDeviceIsTheSingleDevicePlan) {
  const DeviceSplitRequest r = eight_layers({3 * kGiB});
  const auto shares = plan_devices(r);
  ASSERT_EQ(shares.size(), 1u);
  PlanRequest whole = r.model;
  whole.fixed_bytes = 500 * kMiB + 500 * kMiB + 100 * kMiB + 80 * kMiB;
  whole.budget_bytes = 3 * kGiB;
  const PlacementPlan single = plan_placement(whole);
  EXPECT_EQ(shares[0].plan.layers, single.layers);
  EXPECT_EQ(shares[0].plan.total_bytes, single.total_bytes);
}

TEST(DeviceSplit, FixedPlacementOnEveryDevice) {
  const auto shares = plan_devices(eight_layers({4 * kGiB, 4 * kGiB, 4 * kGiB}, Placement::GpuCompressed));
  ASSERT_EQ(shares.size(), 3u);
  expect_covers_in_order(shares, 8);
  for (const DeviceShare& s : shares)
    for (Placement p : s.plan.layers) EXPECT_EQ(p, Placement::GpuCompressed);
  // The middle device holds neither embeddings nor lm_head.
  EXPECT_EQ(shares[1].plan.fixed_bytes, 100 * kMiB + (shares[1].end_layer - shares[1].first_layer) * 10 * kMiB);
}

TEST(DeviceSplit, TooSmallBudgetNamesTheDeviceAndTheNumbers) {
  try {
    plan_devices(eight_layers({10 * kGiB, 700 * kMiB}, Placement::Gpu));
    FAIL() << "a budget too small for its layers was accepted";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("device 1 (layers "), std::string::npos) << m;
    EXPECT_NE(m.find("over a budget of 700"), std::string::npos) << m;
  }
  try {
    plan_devices(eight_layers({10 * kGiB, 650 * kMiB}));
    FAIL() << "auto accepted a budget below the device's fixed bytes";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("device 1 (layers 7-7): VRAM budget"), std::string::npos) << m;
  }
}

TEST(DeviceSplit, RefusesNoDevicesAndMoreDevicesThanLayers) {
  EXPECT_THROW(plan_devices(eight_layers({})), Error);
  EXPECT_THROW(plan_devices(eight_layers(std::vector<uint64_t>(9, kGiB))), Error);
}

TEST(DeviceSplit, DescribesEachDeviceWithModelLayerNumbers) {
  const std::string text = describe_devices(plan_devices(eight_layers({10 * kGiB, 10 * kGiB})));
  EXPECT_NE(text.find("device 0: layers 0-3, 4 gpu layers"), std::string::npos) << text;
  EXPECT_NE(text.find("device 1: layers 4-7, 4 gpu layers"), std::string::npos) << text;
  EXPECT_NE(text.find("layers 4-7"), std::string::npos) << text;
}

}  // namespace
}  // namespace codecllm::engine
