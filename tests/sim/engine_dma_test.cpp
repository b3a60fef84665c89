// Lazy DMA in the engine: the canary that gives IOVAs back early is caught by S6, the safe
// policies pass it, and exposure is 0 for strict callers and lazy mode's accepted cost otherwise.
#include <gtest/gtest.h>

#include "engine_test_support.hpp"

namespace ptreclaim::sim {
namespace {

using testing::builtin;
using testing::describe;
using testing::options;
using testing::sanitized;

// canary-iova wraps each CPU's 512-buffer slice after ~500 packets: runs must be longer.
constexpr std::uint64_t canary_ops = sanitized ? 700 : 1200;

TEST(engine_dma, policies_that_give_iovas_back_early_are_caught_by_s6) {
  const scenario s = builtin("canary-iova");
  for (const char* policy : {"immediate", "xen-softirq-tasklet"}) {
    for (std::uint64_t seed : {1u, 2u}) {
      const run_options o = options(policy, seed, canary_ops);
      auto r = run(s, o);
      ASSERT_TRUE(r.ok()) << r.status().to_string();
      EXPECT_FALSE(r->at(invariant::s6).held) << describe(s, o, *r);
      EXPECT_NE(r->violations.first.find("S6"), std::string::npos) << r->violations.first;
    }
  }
}

TEST(engine_dma, safe_policies_pass_the_iova_canary) {
  const scenario s = builtin("canary-iova");
  for (const auto& policy : policy_names()) {
    if (!policy_is_safe(policy)) continue;
    const run_options o = options(policy, 5, canary_ops);
    auto r = run(s, o);
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    EXPECT_TRUE(r->all_held()) << describe(s, o, *r);
    EXPECT_EQ(r->violations.count, 0u) << describe(s, o, *r);
    EXPECT_TRUE(r->dma.lazy);
    EXPECT_GT(r->dma.iovas_deferred, 0u);
    EXPECT_EQ(r->dma.iovas_returned, r->dma.iovas_deferred) << describe(s, o, *r);
    EXPECT_EQ(r->dma.iova_exhausted, 0u) << describe(s, o, *r);
  }
}

TEST(engine_dma, strict_callers_see_no_exposure_and_lazy_ones_do) {
  scenario lazy = builtin("canary-iova");
  scenario strict = lazy;
  strict.caller.flush = caller_flush::each_op;
  const std::uint64_t ops = canary_ops;
  for (const char* policy : {"sync", "linux-dma-fq", "flush-epoch"}) {
    const run_options o = options(policy, 9, ops);
    auto rs = run(strict, o);
    ASSERT_TRUE(rs.ok()) << rs.status().to_string();
    EXPECT_TRUE(rs->dma.measured);
    EXPECT_FALSE(rs->dma.lazy);
    EXPECT_EQ(rs->dma.exposures, 0u) << describe(strict, o, *rs);
    EXPECT_TRUE(rs->all_held()) << describe(strict, o, *rs);
  }
  const run_options o = options("linux-dma-fq", 9, ops);
  auto rl = run(lazy, o);
  ASSERT_TRUE(rl.ok()) << rl.status().to_string();
  EXPECT_TRUE(rl->all_held()) << describe(lazy, o, *rl);
  EXPECT_GT(rl->dma.exposures, 0u) << "the flush queue defers invalidations: a device that keeps "
                                      "using unmapped buffers reaches some\n"
                                   << describe(lazy, o, *rl);
  EXPECT_GT(rl->dma.longest_exposure_ns, 0u);
  EXPECT_GT(rl->dma.peak_deferred, 0u);
}

// Units in caching mode cache "not present": the mapping caller flushes what it mapped (one
// map flush per chunk that mapped, counted with the caller's flushes); without caching mode
// there is none. Every invariant still holds, strict and lazy.
TEST(engine_dma, callers_flush_what_they_map_only_on_units_in_caching_mode) {
  for (const char* name : {"dma-storm", "canary-iova"}) {
    scenario s = builtin(name);
    s.iommu.unit.caching_mode = false;
    const run_options o = options("linux-dma-fq", 4, 300);
    auto plain = run(s, o);
    ASSERT_TRUE(plain.ok()) << plain.status().to_string();
    EXPECT_EQ(plain->invalidations.map_flushes, 0u) << describe(s, o, *plain);
    s.iommu.unit.caching_mode = true;
    auto cm = run(s, o);
    ASSERT_TRUE(cm.ok()) << cm.status().to_string();
    EXPECT_TRUE(cm->all_held()) << describe(s, o, *cm);
    EXPECT_GT(cm->invalidations.map_flushes, 0u) << describe(s, o, *cm);
    EXPECT_GE(cm->invalidations.caller_flushes, cm->invalidations.map_flushes);
    EXPECT_EQ(cm->invalidations.caller_flushes,
              plain->invalidations.caller_flushes + cm->invalidations.map_flushes)
        << "the map flushes come on top of the caller's own";
  }
}

}  // namespace
}  // namespace ptreclaim::sim
