// Engine features beyond the invariants: superpage coalescing counts, the IOMMU page-size
// intersection, whole-ns cost rounding, the default cost model, progress on threaded runs, and
// a small threaded campaign (the 200-seed campaign in engine_test.cpp is deterministic only).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <vector>

#include "engine_test_support.hpp"
#include "ptreclaim/scenario/scenario.hpp"
#include "ptreclaim/sim/engine.hpp"

namespace ptreclaim::sim {
namespace {

using testing::builtin;
using testing::contract_holds;
using testing::describe;
using testing::options;
using testing::sanitized;

constexpr std::uint32_t level_4k = 1u << 1, level_2m = 1u << 2, level_1g = 1u << 3;

TEST(engine_superpages, a_default_superpage_churn_run_coalesces_into_2m_and_1g) {
  // The built-in scenario as shipped (not shrunk), with fewer operations under sanitizers.
  auto s = load_scenario("superpage-churn");
  ASSERT_TRUE(s.ok()) << s.status().to_string();
  const run_options o = options("flush-epoch", 1, sanitized ? 800 : 0);
  auto r = run(*s, o);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_TRUE(r->all_held()) << describe(*s, o, *r);
  EXPECT_GT(r->superpages.coalesced_2m, 0u) << describe(*s, o, *r);
  EXPECT_GT(r->superpages.coalesced_1g, 0u) << describe(*s, o, *r);
  // Each counted fill replaced at least one table; partial unmaps split superpages.
  EXPECT_GE(r->superpages.tables_coalesced,
            r->superpages.coalesced_2m + r->superpages.coalesced_1g);
  EXPECT_GT(r->superpages.splits, 0u);
}

TEST(engine_superpages, other_workloads_report_no_coalescing) {
  const scenario s = builtin("dma-storm");
  auto r = run(s, options("sync", 3, 40));
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->superpages.coalesced_2m, 0u);
  EXPECT_EQ(r->superpages.coalesced_1g, 0u);
}

// The VT-d superpage rule end to end: callers that invalidate only the pages they asked to unmap
// (caller.flush_range = "request", Xen's page_count) leave the 2M IOTLB entry of a superpage a
// shatter split, devices keep using it for the unmapped page, and the run reports it (S1,
// stale superpage) under a safe policy; the same run with gather-wide flushes is clean.
TEST(engine_superpages, a_caller_psi_too_small_for_a_superpage_is_caught) {
  scenario s = builtin("superpage-churn");
  s.superpage_churn.region_bytes = 16ull << 20;  // 8 superpages: devices find the shattered ones
  s.superpage_churn.superpage_probability = 0.4;
  s.superpage_churn.gigabyte_probability = 0;
  s.superpage_churn.shatter_probability = 0.4;
  s.superpage_churn.unmap_probability = 0.1;
  s.superpage_churn.partial_unmap_pages = 64;
  s.devices[0].target = access_target::window;
  s.caller.flush_range = caller_range::request;
  ASSERT_TRUE(validate(s).ok()) << validate(s).to_string();
  const run_options o = options("sync", 11, sanitized ? 100 : 200, executor_kind::deterministic, 2);
  auto bad = run(s, o);
  ASSERT_TRUE(bad.ok()) << bad.status().to_string();
  EXPECT_GT(bad->violations.count, 0u) << describe(s, o, *bad);
  EXPECT_NE(bad->violations.first.find("stale superpage"), std::string::npos)
      << bad->violations.first;
  EXPECT_FALSE(bad->all_held());
  EXPECT_FALSE(bad->violations.replay_command.empty());

  s.caller.flush_range = caller_range::gather;
  auto good = run(s, o);
  ASSERT_TRUE(good.ok());
  EXPECT_TRUE(good->all_held()) << describe(s, o, *good);
  EXPECT_EQ(good->violations.count, 0u) << describe(s, o, *good);
}

// Xen's flush logic (caller.flush_range = "xen"): with each-op callers a freed table makes the
// flush domain-wide (IOMMU_FLUSHF_all), so xen-tasklet, which relies on it, frees safely on both
// formats; batched callers (iommu_dont_flush_iotlb) drop FLUSHF_all and flush only the pages
// they asked for, which does not cover a table a coalescing map freed: xen-tasklet then frees
// before a covering invalidation (S3), on VT-d and AMD alike. Shatters are off: their too-small
// PSIs are the other finding (a_caller_psi_too_small_for_a_superpage_is_caught).
TEST(engine_superpages, xen_flush_logic_covers_freed_tables_unless_batched) {
  for (const pt::format_kind fmt : {pt::format_kind::vtd_ss_4, pt::format_kind::amd_v1_4}) {
    scenario s = builtin("superpage-churn");
    s.domains[0].format = fmt;
    s.superpage_churn.gigabyte_probability = 0;
    s.superpage_churn.shatter_probability = 0;
    s.caller.flush_range = caller_range::xen;
    ASSERT_TRUE(validate(s).ok()) << validate(s).to_string();
    const run_options o =
        options("xen-tasklet", 42, sanitized ? 100 : 250, executor_kind::deterministic, 2);
    auto each = run(s, o);
    ASSERT_TRUE(each.ok()) << each.status().to_string();
    EXPECT_TRUE(each->all_held()) << describe(s, o, *each);
    EXPECT_GT(each->reclaim.tables_freed, 0u);
    s.caller.flush = caller_flush::batched;
    s.caller.flush_batch = 1;
    auto batched = run(s, o);
    ASSERT_TRUE(batched.ok()) << batched.status().to_string();
    EXPECT_FALSE(batched->at(invariant::s3).held) << describe(s, o, *batched);
  }
}

TEST(engine_page_sizes, tables_use_only_sizes_every_attached_iommu_supports) {
  // The same seeded run, once with 1G-capable IOMMUs and once without: without, no 1G
  // superpage may form (the tables are built from the intersection), and the run stays safe.
  scenario s = builtin("superpage-churn");
  s.memory.frames = 65536;
  const run_options o = options("sync", 5, sanitized ? 400 : 1500);
  auto with_1g = run(s, o);
  ASSERT_TRUE(with_1g.ok()) << with_1g.status().to_string();
  ASSERT_GT(with_1g->superpages.coalesced_1g, 0u) << describe(s, o, *with_1g);

  s.iommu.unit.leaf_levels = level_4k | level_2m;
  auto no_1g = run(s, o);
  ASSERT_TRUE(no_1g.ok()) << no_1g.status().to_string();
  EXPECT_EQ(no_1g->superpages.coalesced_1g, 0u) << describe(s, o, *no_1g);
  EXPECT_GT(no_1g->superpages.coalesced_2m, 0u) << describe(s, o, *no_1g);
  EXPECT_TRUE(no_1g->all_held()) << describe(s, o, *no_1g);

  // 4K only: no superpage at all.
  s.iommu.unit.leaf_levels = level_4k;
  auto only_4k = run(s, o);
  ASSERT_TRUE(only_4k.ok()) << only_4k.status().to_string();
  EXPECT_EQ(only_4k->superpages.coalesced_2m + only_4k->superpages.coalesced_1g, 0u);
  EXPECT_TRUE(only_4k->all_held()) << describe(s, o, *only_4k);
}

TEST(engine_page_sizes, no_common_4k_page_size_is_a_scenario_error) {
  // Built in code (the parser insists on 4K): IOMMUs that walk only 2M and 1G leaves leave no
  // page size in common with what the workloads map. A scenario error, not an assertion.
  scenario s = builtin("dma-storm");
  s.iommu.unit.leaf_levels = level_2m | level_1g;
  auto r = run(s, options("sync", 1, 10));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), errc::invalid_argument);
  EXPECT_NE(r.status().message().find("iommu.page_sizes: must include \"4K\""), std::string::npos)
      << r.status().message();
}

TEST(engine_costs, runs_use_the_calibrated_defaults_and_charge_whole_nanoseconds) {
  scenario s = builtin("dma-storm");
  const run_options o = options("sync", 11, 60);
  auto base = run(s, o);
  ASSERT_TRUE(base.ok()) << base.status().to_string();
  EXPECT_EQ(base->cost_source, default_cost_source);

  // Fractions below 0.5 ns are charged 0 (rounded when the cost file is read): the same virtual
  // time as 0 exactly.
  auto frac_costs = parse_cost_model("[cost_ns]\nop_overhead = 0.4\n", "frac.toml");
  ASSERT_TRUE(frac_costs.ok()) << frac_costs.status().to_string();
  s.costs = *frac_costs;
  auto frac = run(s, o);
  s.costs.set_cost(cost_kind::op_overhead, 0);
  auto zero = run(s, o);
  ASSERT_TRUE(frac.ok() && zero.ok());
  EXPECT_EQ(frac->elapsed_ns, zero->elapsed_ns);
  EXPECT_EQ(frac->trace_hash, zero->trace_hash);
  // And a real difference in a cost shows in virtual time.
  s.costs.set_cost(cost_kind::op_overhead, 500);
  auto dear = run(s, o);
  ASSERT_TRUE(dear.ok());
  EXPECT_GT(dear->elapsed_ns, zero->elapsed_ns);
}

// The cost file's [kernel_ns] reaches the executor: linux-global-work runs a work item after
// nearly every retire, so the kworker switch it is charged shows in virtual time, and a policy
// without work items (sync) does not move.
TEST(engine_costs, kernel_dispatch_costs_are_charged) {
  scenario s = builtin("sva-kernel");
  EXPECT_EQ(s.costs.work_ns, 1500u) << "scenarios/costs/default.toml [kernel_ns]";
  const run_options lg = options("linux-global-work", 5, 200, executor_kind::deterministic, 1);
  const run_options sy = options("sync", 5, 200, executor_kind::deterministic, 1);
  auto lg_default = run(s, lg);
  auto sy_default = run(s, sy);
  s.costs.work_ns = 0;
  auto lg_free = run(s, lg);
  auto sy_free = run(s, sy);
  ASSERT_TRUE(lg_default.ok() && sy_default.ok() && lg_free.ok() && sy_free.ok());
  EXPECT_LT(lg_free->elapsed_ns, lg_default->elapsed_ns);
  EXPECT_EQ(sy_free->elapsed_ns, sy_default->elapsed_ns);
  EXPECT_EQ(sy_free->trace_hash, sy_default->trace_hash);
}

TEST(engine_progress, threaded_runs_report_progress_while_they_run) {
  // A time-limited threaded run of 400 ms real time: the watcher reports every 100 ms, so at
  // least one figure strictly between 0 and 1 must arrive before the final 1.0.
  scenario s = builtin("dma-storm");
  s.duration.ops_per_cpu = 0;
  s.duration.time_limit_ns = 400'000'000;
  run_options o = options("flush-epoch", 2, 0, executor_kind::threaded, 2);
  std::mutex mu;
  std::vector<double> seen;
  o.progress = [&](double f) {
    std::lock_guard<std::mutex> g(mu);
    seen.push_back(f);
  };
  auto r = run(s, o);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  ASSERT_GE(seen.size(), 3u);
  EXPECT_EQ(seen.front(), 0.0);
  EXPECT_EQ(seen.back(), 1.0);
  const bool middle =
      std::any_of(seen.begin() + 1, seen.end() - 1, [](double f) { return f > 0.0 && f < 1.0; });
  EXPECT_TRUE(middle);
  EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end()));
}

TEST(engine_campaign, threaded_seeds_over_safe_policies_on_dma_storm_and_sva_kernel) {
  const unsigned seeds = sanitized ? 3 : 10;
  for (const std::string name : {"dma-storm", "sva-kernel"}) {
    const scenario s = builtin(name);
    for (const auto& policy : policy_names()) {
      if (!policy_is_safe(policy) || !contract_holds(s, policy)) continue;
      for (unsigned i = 0; i < seeds; ++i) {
        const std::uint64_t seed = 5000 + i;
        const unsigned cpus = 1 + i % 4;
        const run_options o =
            options(policy, seed, sanitized ? 10 : 25, executor_kind::threaded, cpus);
        auto r = run(s, o);
        ASSERT_TRUE(r.ok()) << "seed " << seed << " " << name << " " << policy << ": "
                            << r.status().to_string();
        if (!r->all_held() || r->violations.count != 0 || r->leaks.leaked_frames != 0)
          ADD_FAILURE() << "threaded campaign run failed\n" << describe(s, o, *r);
        EXPECT_EQ(r->operations, o.ops_per_cpu * cpus) << describe(s, o, *r);
      }
    }
  }
}

}  // namespace
}  // namespace ptreclaim::sim
