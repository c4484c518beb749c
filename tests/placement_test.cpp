// The VRAM placement planner: which layers stay decoded, compressed in VRAM or on the host,
// at the exact budgets where each decision flips, and byte sizes as typed on command lines.
#include <gtest/gtest.h>

#include <array>
#include <limits>
#include <string>
#include <vector>

#include "codecllm/error.hpp"
#include "engine/placement_plan.hpp"

namespace codecllm::engine {
namespace {

constexpr uint64_t kMiB = uint64_t(1) << 20;
constexpr uint64_t kGiB = uint64_t(1) << 30;

// 8 layers of 300 MiB decoded, 200 MiB compressed, 1000 MiB fixed: small enough to work the
// expected totals out by hand, and every transition shows up at some budget.
constexpr uint64_t kRaw = 300 * kMiB, kComp = 200 * kMiB, kFixed = 1000 * kMiB;

PlanRequest uniform(uint64_t budget, int prefetch_depth = 2) {
  PlanRequest r;
  r.layers.assign(8, LayerBytes{kRaw, kComp, 0});
  r.fixed_bytes = kFixed;
  r.budget_bytes = budget;
  r.prefetch_depth = prefetch_depth;
  r.compressed_slots = 2;  // the totals below were worked out by hand with two
  return r;
}

// {gpu, gpu-compressed, host} layer counts, checking they come in that order.
std::array<int, 3> counts(const PlacementPlan& p) {
  std::array<int, 3> c{};
  for (size_t i = 0; i < p.layers.size(); ++i) {
    EXPECT_TRUE(i == 0 || p.layers[i - 1] <= p.layers[i]) << "layer " << i << " out of order";
    ++c[size_t(p.layers[i])];
  }
  return c;
}

using Counts = std::array<int, 3>;

void expect_plan(uint64_t budget, Counts expected, uint64_t expected_total) {
  const PlacementPlan p = plan_placement(uniform(budget));
  EXPECT_EQ(counts(p), expected) << "budget " << budget;
  EXPECT_EQ(p.total_bytes, expected_total) << "budget " << budget;
  EXPECT_EQ(p.total_bytes, p.weight_bytes + p.scratch_bytes + p.staging_bytes + p.fixed_bytes);
  EXPECT_LE(p.total_bytes, budget);
}

TEST(Placement, EverythingFitsAllGpuWithoutSlots) {
  for (uint64_t budget : {3400 * kMiB, 80 * kGiB}) {
    const PlacementPlan p = plan_placement(uniform(budget));
    EXPECT_EQ(counts(p), (Counts{8, 0, 0}));
    EXPECT_EQ(p.decode_slots, 0);
    EXPECT_EQ(p.staging_slots, 0);
    EXPECT_EQ(p.scratch_bytes + p.staging_bytes + p.host_bytes, 0u);
    EXPECT_EQ(p.weight_bytes, 8 * kRaw);
    EXPECT_EQ(p.total_bytes, 3400 * kMiB);
  }
}

// Totals (MiB): g gpu layers, c compressed, h host cost 1000 + 300g + 200c + decode slots x 300
// + (h > 0 ? 2 x 200 : 0). Each pair of budgets is one byte apart and flips a decision.
TEST(Placement, GpuCompressedOnceNotEverythingFits) {
  expect_plan(3400 * kMiB - 1, {1, 7, 0}, 3300 * kMiB);  // two decode slots appear
  expect_plan(3300 * kMiB - 1, {0, 8, 0}, 3200 * kMiB);
  const PlacementPlan p = plan_placement(uniform(3200 * kMiB));
  EXPECT_EQ(p.decode_slots, 2);
  EXPECT_EQ(p.scratch_bytes, 2 * kRaw);
  EXPECT_EQ(p.staging_slots, 0);
  EXPECT_EQ(p.weight_bytes, 8 * kComp);
}

TEST(Placement, FirstHostLayerPaysForStaging) {
  // One host layer would need 400 MiB of staging for 200 MiB it moves out, so a byte less than
  // all gpu-compressed drops to three host layers (h = 1 and h = 2 need >= 3400 and 3200).
  expect_plan(3200 * kMiB - 1, {1, 4, 3}, 3100 * kMiB);
  const PlacementPlan p = plan_placement(uniform(3100 * kMiB));
  EXPECT_EQ(p.staging_slots, 2);
  EXPECT_EQ(p.staging_bytes, 2 * kComp);
  EXPECT_EQ(p.host_bytes, 3 * kComp);
  EXPECT_EQ(p.weight_bytes, kRaw + 4 * kComp);
}

TEST(Placement, LastCompressedLayerGivesBackADecodeSlot) {
  // Four host layers: four gpu and no compressed (one decode slot) costs 2900, three gpu and
  // one compressed (two slots) 3100, so the planner skips from 4 gpu straight to 0.
  expect_plan(3000 * kMiB - 1, {4, 0, 4}, 2900 * kMiB);
  EXPECT_EQ(plan_placement(uniform(2900 * kMiB)).decode_slots, 1);
  expect_plan(2900 * kMiB - 1, {0, 4, 4}, 2800 * kMiB);
}

TEST(Placement, AllHostIsTheMinimum) {
  expect_plan(2000 * kMiB, {1, 0, 7}, 2000 * kMiB);
  expect_plan(2000 * kMiB - 1, {0, 0, 8}, 1700 * kMiB);
  const PlacementPlan p = plan_placement(uniform(1700 * kMiB));
  EXPECT_EQ(p.decode_slots, 1);
  EXPECT_EQ(p.weight_bytes, 0u);
  EXPECT_EQ(p.host_bytes, 8 * kComp);
}

TEST(Placement, TooSmallBudgetNamesTheNumbers) {
  try {
    plan_placement(uniform(1700 * kMiB - 1));
    FAIL() << "accepted";
  } catch (const Error& e) {
    const std::string m = e.what();
    for (const std::string& part : {human_bytes(double(1700 * kMiB - 1)), human_bytes(double(kFixed)),
                                    human_bytes(double(700 * kMiB)), human_bytes(double(1700 * kMiB))})
      EXPECT_NE(m.find(part), std::string::npos) << part << " not in: " << m;
  }
}

TEST(Placement, PrefetchDepthSetsStaging) {
  const PlacementPlan deep = plan_placement(uniform(2100 * kMiB, 4));
  EXPECT_EQ(counts(deep), (Counts{0, 0, 8}));
  EXPECT_EQ(deep.staging_slots, 4);
  EXPECT_EQ(deep.staging_bytes, 4 * kComp);
  EXPECT_THROW(plan_placement(uniform(2100 * kMiB - 1, 4)), Error);
  EXPECT_EQ(counts(plan_placement(uniform(2100 * kMiB, 2))), (Counts{1, 0, 7}));
  EXPECT_EQ(plan_placement(uniform(80 * kGiB, 4)).staging_slots, 0);  // no host layer
  EXPECT_THROW(plan_placement(uniform(80 * kGiB, 0)), Error);
}

TEST(Placement, SlotsHoldTheLargestLayer) {
  PlanRequest r;
  r.layers = {{1000, 60, 0}, {5000, 90, 0}, {2000, 300, 0}};
  r.fixed_bytes = 10;
  r.budget_bytes = 10 + 5000 + 2 * 300;  // all host, the minimum
  const PlacementPlan p = plan_placement(r);
  EXPECT_EQ(counts(p), (Counts{0, 0, 3}));
  EXPECT_EQ(p.decode_slot_bytes, 5000u);
  EXPECT_EQ(p.staging_slot_bytes, 300u);
  EXPECT_EQ(p.total_bytes, r.budget_bytes);
  --r.budget_bytes;
  EXPECT_THROW(plan_placement(r), Error);
}

// With few layers, two decode slots can cost more than decoding everything.
TEST(Placement, AllGpuCanBeTheSmallest) {
  PlanRequest r;
  r.layers = {{300, 200, 0}};
  r.compressed_slots = 2;
  r.budget_bytes = 300;
  EXPECT_EQ(counts(plan_placement(r)), (Counts{1, 0, 0}));
}

TEST(Placement, NoLayers) {
  PlanRequest r;
  r.fixed_bytes = 10;
  r.budget_bytes = 10;
  EXPECT_EQ(plan_placement(r).total_bytes, 10u);
  r.budget_bytes = 9;
  EXPECT_THROW(plan_placement(r), Error);
}

TEST(Placement, DescribeCollapsesRuns) {
  const PlanRequest r = uniform(3100 * kMiB);
  const std::string text = describe_plan(plan_placement(r), r);
  for (const char* part :
       {"layer 0 ", "layers 1-4", "gpu-compressed", "layers 5-7", "host", "600.00 MiB in pinned host RAM",
        "2 x 300.00 MiB", "2 x 200.00 MiB", "3.03 GiB", "0 B spare"})
    EXPECT_NE(text.find(part), std::string::npos) << part << " not in:\n" << text;
  EXPECT_EQ(summarize_plan(plan_placement(r)), "1 gpu, 4 gpu-compressed, 3 host layers");
}

// plan_of adds bytes up as the weight streamer allocates them: decoder tables of gpu-compressed
// and host layers, slots only for layers that stream, exponent-sized slots when every layer
// is gpu-compressed, decoder scratch per decode stream, staging per host layer up to the depth.
TEST(Placement, PlanOfCountsWhatTheStreamerAllocates) {
  PlanRequest r;
  r.layers.assign(3, LayerBytes{1000, 400, 10});
  r.compressed_slots = 3;
  r.decoder_scratch_bytes = 7;
  const PlacementPlan gpu = plan_of(r, std::vector<Placement>(3, Placement::Gpu));
  EXPECT_EQ(gpu.total_bytes, 3000u + 7);  // no slot, one decode stream's scratch (load-time decodes)
  const std::vector<Placement> compressed(3, Placement::GpuCompressed);
  EXPECT_EQ(plan_of(r, compressed).total_bytes, 3 * 410u + 3 * 1000 + 2 * 7);  // 3 slots, 2 decode streams
  r.exponent_slot_bytes = 500;
  EXPECT_EQ(plan_of(r, compressed).total_bytes, 3 * 410u + 3 * 500 + 2 * 7);
  const PlacementPlan mixed = plan_of(r, {Placement::Gpu, Placement::GpuCompressed, Placement::Host});
  EXPECT_EQ(mixed.decode_slots, 2);           // only two layers stream
  EXPECT_EQ(mixed.decode_slot_bytes, 1000u);  // not every layer is gpu-compressed: whole values
  EXPECT_EQ(mixed.staging_slots, 1);
  EXPECT_EQ(mixed.host_bytes, 400u);
  EXPECT_EQ(mixed.total_bytes, 1000u + 410 + 10 + 2 * 1000 + 7 + 400);
  r.compressed_products_in_place = true;
  EXPECT_EQ(plan_of(r, compressed).total_bytes, 3 * 410u + 7);  // nothing streams
  const PlacementPlan raw = plan_of(r, std::vector<Placement>(3, Placement::HostRaw));
  EXPECT_EQ(raw.decode_slots, 2);
  EXPECT_EQ(raw.host_bytes, 3000u);
  EXPECT_EQ(raw.total_bytes, 2 * 1000u + 7);
  EXPECT_THROW(plan_of(r, {Placement::Auto, Placement::Gpu, Placement::Gpu}), Error);
  EXPECT_THROW(plan_of(r, {Placement::Gpu}), Error);
}

// ---------------------------------------------------------------------------------------
// byte sizes

TEST(ByteSize, Parses) {
  EXPECT_EQ(parse_byte_size("123456"), 123456u);
  EXPECT_EQ(parse_byte_size("0"), 0u);
  for (const char* text : {"24GiB", "24G", "24 GB", "24gb", " 24 gib "}) EXPECT_EQ(parse_byte_size(text), 24 * kGiB);
  EXPECT_EQ(parse_byte_size("1500MiB"), 1500 * kMiB);
  EXPECT_EQ(parse_byte_size("1.5TiB"), 1536 * kGiB);
  EXPECT_EQ(parse_byte_size("0.5k"), 512u);
  EXPECT_EQ(parse_byte_size(".5KB"), 512u);
  EXPECT_EQ(parse_byte_size("7 B"), 7u);
  EXPECT_EQ(parse_byte_size("1.0009K"), 1024u);  // rounded down to whole bytes
  EXPECT_EQ(parse_byte_size("18446744073709551615"), std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(parse_byte_size("16777215.5T"), std::numeric_limits<uint64_t>::max() - (uint64_t(1) << 39) + 1);
}

TEST(ByteSize, RejectsWithTheText) {
  for (const char* text : {"", " ", "G", "abc", "1.2.3", "1 2", "1GiBs", "1 KiB x", ".", "1e9", "16EiB", "1,5G"}) {
    try {
      parse_byte_size(text);
      ADD_FAILURE() << "accepted \"" << text << "\"";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("\"" + std::string(text) + "\""), std::string::npos) << e.what();
    }
  }
  for (const char* text : {"-1G", " -5"}) EXPECT_THROW(parse_byte_size(text), Error) << text;
  for (const char* text : {"18446744073709551616", "16777216T", "17179869184G", "99999999999999999999999"}) {
    try {
      parse_byte_size(text);
      ADD_FAILURE() << "accepted " << text;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("2^64"), std::string::npos) << e.what();
    }
  }
}

TEST(ByteSize, Human) {
  EXPECT_EQ(human_bytes(512), "512 B");
  EXPECT_EQ(human_bytes(1.5 * double(kGiB)), "1.50 GiB");
}

}  // namespace
}  // namespace codecllm::engine
