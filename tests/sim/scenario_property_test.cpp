// Random valid scenarios, every policy, the deterministic executor: every run ends within a
// bound, and every safe policy whose contract the scenario keeps holds every invariant.
//
// The generator draws each key over its documented range (docs/scenarios.md), except where a
// wide draw only makes a run long without making it different: operation counts are small,
// invalidation latencies stay under 50 us and device step intervals at or above 200 ns (a
// 1e12 ns invalidation with devices stepping every nanosecond is valid, and the watchdog ends
// it, but it takes minutes of real time), memory stays at or under 16384 frames (a larger
// pool is only more memory to zero), and injected fault delays stay under 100 us (and
// page-table allocations fail at most 20 % of the time: more only makes runs do nothing).
// Scenarios that validate() refuses are discarded.
//
// L1 is required when the policy can drain without help it was not promised: the drain timeout
// leaves room for the age flush and the workload's own flushes, and flush-epoch is not left
// with flush_age_ns = 0 and callers that never flush (documented: it then waits for the
// watermark). The other invariants are required for every safe policy whose contract holds
// (xen-tasklet needs caller flushes), except xen-tasklet's S4 finding under hotplug (the Xen
// seed's CPU_DOWN_FAILED bug, which the model reproduces on purpose).
//
// Cases: PTRECLAIM_PROPERTY_CASES (default 300 in optimised builds, 80 in debug ones, 20 under
// sanitizers: CI's builds). A failure prints rapidcheck's seed and the shrunk scenario; replay
// with RC_PARAMS="seed=<seed>".
#include <gtest/gtest.h>
#include <rapidcheck.h>

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <string>

#include "engine_test_support.hpp"
#include "ptreclaim/reclaim/policy.hpp"
#include "ptreclaim/scenario/scenario.hpp"
#include "ptreclaim/sim/engine.hpp"

namespace ptreclaim::sim {
namespace {

using testing::describe;
using testing::options;

template <class T>
T pick(std::initializer_list<T> values) {
  return *rc::gen::elementOf(std::vector<T>(values));
}

std::uint64_t in(std::uint64_t lo, std::uint64_t hi) {  // [lo, hi], inclusive
  return *rc::gen::inRange<std::uint64_t>(lo, hi + 1);
}

double prob() {
  return static_cast<double>(in(0, 1000)) / 1000.0;
}

// One random valid scenario (or a discarded case).
scenario draw() {
  const workload_kind kind =
      pick({workload_kind::superpage_churn, workload_kind::sva_kernel, workload_kind::dma_storm});
  auto base = load_scenario(std::string(workload_kind_name(kind)));
  RC_ASSERT(base.ok());
  scenario s = *base;
  s.name = "property";
  // Mostly small machines, now and then a large one (the range is 1 .. 256).
  s.cpus = static_cast<unsigned>(in(0, 9) == 0 ? in(9, 64) : in(1, 8));
  s.duration.ops_per_cpu = in(1, s.cpus > 8 ? 4 : 25);
  s.duration.time_limit_ns = in(0, 3) == 0 ? in(1'000, 5'000'000) : 0;
  s.duration.drain_timeout_ns = in(0, 3) == 0 ? in(1, 1'000'000) : in(50'000'000, 1'000'000'000);
  s.duration.sample_interval_ns = in(1'000, 10'000'000);
  s.duration.watchdog_steps = 1u << 22;

  s.memory.frames = static_cast<std::uint32_t>(in(0, 4) == 0 ? in(64, 2048) : in(2048, 16384));
  s.memory.cache_frames = static_cast<unsigned>(in(2, 64));
  s.memory.poison = *rc::gen::arbitrary<bool>();

  iommu::unit_config& u = s.iommu.unit;
  s.iommu.count = static_cast<unsigned>(in(1, 4));
  u.iotlb.ways = static_cast<unsigned>(pick<std::uint64_t>({1, 2, 4, 8, 16}));
  u.iotlb.entries = u.iotlb.ways * static_cast<unsigned>(in(1, 64));
  u.iotlb.policy = pick({iommu::replacement::lru, iommu::replacement::random});
  u.psc.ways = static_cast<unsigned>(pick<std::uint64_t>({1, 2, 4, 8}));
  u.psc.entries = u.psc.ways * static_cast<unsigned>(in(1, 16));
  u.psc.policy = pick({iommu::replacement::lru, iommu::replacement::random});
  u.leaf_levels = pick<std::uint32_t>({0b0010, 0b0110, 0b1010, 0b1110});
  u.max_am = static_cast<unsigned>(in(0, 52));
  u.queue_entries = static_cast<unsigned>(pick<std::uint64_t>({256, 512, 4096}));
  u.caching_mode = *rc::gen::arbitrary<bool>();
  u.max_walks_in_flight = static_cast<unsigned>(in(1, 256));
  u.latency.iotlb_miss_ns = in(0, 1000);
  u.latency.pte_read_ns = in(0, 500);
  u.latency.inv_page_ns = in(0, 20'000);
  u.latency.inv_domain_ns = in(0, 20'000);
  u.latency.inv_global_ns = in(0, 20'000);
  u.latency.inv_wait_ns = in(0, 20'000);

  for (domain_group& g : s.domains) {
    g.count = static_cast<unsigned>(in(1, 6));
    g.iommus.clear();  // all
    if (kind == workload_kind::superpage_churn) {
      g.mode = pick({pt::concurrency_mode::locked, pt::concurrency_mode::lock_free});
      g.coalesce = g.mode == pt::concurrency_mode::locked && *rc::gen::arbitrary<bool>();
      g.format = pick({pt::format_kind::vtd_ss_4, pt::format_kind::vtd_ss_5,
                       pt::format_kind::x86_64_4, pt::format_kind::amd_v1_4});
    }
  }
  for (device_group& d : s.devices) {
    d.count = static_cast<unsigned>(in(1, 6));
    d.iommus.clear();
    d.pattern = pick({access_pattern::random, access_pattern::sequential, access_pattern::hot_set});
    d.target = pick({access_target::window, access_target::live, access_target::replaced});
    d.hot_set_pages = in(1, 1024);
    d.translations_per_step = static_cast<unsigned>(in(1, 16));
    d.step_interval_ns = in(200, 100'000);
  }
  s.caller.flush = pick({caller_flush::each_op, caller_flush::batched, caller_flush::none});
  s.caller.flush_batch = static_cast<unsigned>(in(1, 64));
  s.caller.softirq = pick({softirq_point::none, softirq_point::after_caller_flush});

  switch (kind) {
    case workload_kind::superpage_churn: {
      superpage_churn_params& w = s.superpage_churn;
      w.region_bytes = (std::uint64_t{2} << 20) * in(1, 2048);
      double left = 1.0;
      auto share = [&] {
        const double p = left * prob();
        left -= p;
        return p;
      };
      w.superpage_probability = share();
      w.gigabyte_probability = share() / 4;
      w.shatter_probability = share();
      w.unmap_probability = share();
      w.partial_unmap_pages = in(1, 511);
      break;
    }
    case workload_kind::sva_kernel:
      s.sva_kernel.region_bytes = (std::uint64_t{2} << 20) * in(1, 4096);
      s.sva_kernel.vmalloc_min_bytes = 4096 * in(1, 16);
      s.sva_kernel.vmalloc_max_bytes = std::max(s.sva_kernel.vmalloc_min_bytes, 4096 * in(1, 2048));
      s.sva_kernel.live_per_cpu = static_cast<unsigned>(in(1, 128));
      s.sva_kernel.free_probability = prob();
      break;
    case workload_kind::dma_storm:
      s.dma_storm.buffers_per_cpu = static_cast<unsigned>(in(1, 128));
      s.dma_storm.buffer_bytes = 4096 * in(1, 512);
      s.dma_storm.packets_per_op = static_cast<unsigned>(in(1, 8));
      break;
  }
  s.reclaim.max_pending_frames = in(1, std::min<std::uint64_t>(s.memory.frames, 8192));
  s.reclaim.flush_age_ns = in(0, 5) == 0 ? 0 : in(1, 20'000'000);
  s.reclaim.watermark_frames = in(0, s.reclaim.max_pending_frames);
  s.hotplug.enabled = s.cpus > 1 && in(0, 3) == 0;
  s.hotplug.mean_interval_ns = in(1'000, 1'000'000);
  s.hotplug.offline_ns = in(0, 500'000);
  s.hotplug.fail_probability = prob();
  s.hotplug.min_online = static_cast<unsigned>(in(1, s.cpus));
  if (in(0, 2) == 0) {  // injected faults in a third of the cases
    iommu::fault_config& q = s.faults.queue;
    q.ite_probability = prob() * iommu::max_abort_probability;
    q.ite_timeout_ns = in(0, 50'000);
    q.iqe_probability = prob() * iommu::max_abort_probability;
    q.max_aborts_in_a_row = static_cast<unsigned>(in(1, 8));
    q.stall_probability = prob();
    q.stall_ns = in(0, 50'000);
    q.slow_wait_probability = prob();
    q.slow_wait_mean_ns = in(0, 20'000);
    q.slow_wait_max_ns = q.slow_wait_mean_ns + in(0, 80'000);
    s.faults.alloc_fail_probability = prob() / 5;
    s.faults.devices_through_teardown = *rc::gen::arbitrary<bool>();
  }
  RC_PRE(validate(s).ok());
  return s;
}

// The drawn scenario in the words of a scenario file, for the failure report.
std::string summary(const scenario& s) {
  const iommu::unit_config& u = s.iommu.unit;
  std::string out =
      "kind " + std::string(workload_kind_name(s.kind)) + ", cpus " + std::to_string(s.cpus) +
      ", ops " + std::to_string(s.duration.ops_per_cpu) + ", time_limit_ns " +
      std::to_string(s.duration.time_limit_ns) + ", drain_timeout_ns " +
      std::to_string(s.duration.drain_timeout_ns) + ", frames " + std::to_string(s.memory.frames) +
      ", iommus " + std::to_string(s.iommu.count) + " (max_am " + std::to_string(u.max_am) +
      ", leaf levels " + std::to_string(u.leaf_levels) + ", caching_mode " +
      std::to_string(u.caching_mode) + ", walks " + std::to_string(u.max_walks_in_flight) +
      "), caller " + std::string(caller_flush_name(s.caller.flush)) + "/" +
      std::to_string(s.caller.flush_batch) + ", max_pending " +
      std::to_string(s.reclaim.max_pending_frames) + ", flush_age_ns " +
      std::to_string(s.reclaim.flush_age_ns) + ", watermark " +
      std::to_string(s.reclaim.watermark_frames) + ", hotplug " + std::to_string(s.hotplug.enabled);
  for (const domain_group& g : s.domains)
    out += "; domains " + std::to_string(g.count) + " " +
           std::string(pt::format_kind_name(g.format)) + " " +
           (g.mode == pt::concurrency_mode::locked ? "locked" : "lock-free") +
           (g.coalesce ? " coalescing" : "");
  for (const device_group& d : s.devices)
    out += "; devices " + std::to_string(d.count) + " every " + std::to_string(d.step_interval_ns) +
           " ns";
  return out;
}

bool l1_expected(const scenario& s, const std::string& policy) {
  if (policy == "flush-epoch" && s.reclaim.flush_age_ns == 0 &&
      s.caller.flush == caller_flush::none)
    return false;
  return s.duration.drain_timeout_ns >= 2 * s.reclaim.flush_age_ns + 20'000'000;
}

TEST(ScenarioProperty, EveryRunEndsAndSafePoliciesHoldTheirInvariants) {
#ifdef NDEBUG
  unsigned cases = 300;
#else
  unsigned cases = 80;
#endif
  if (testing::sanitized) cases = 20;
  if (const char* v = std::getenv("PTRECLAIM_PROPERTY_CASES"))
    cases = static_cast<unsigned>(std::atoi(v));
  rc::detail::TestParams params = rc::detail::configuration().testParams;
  params.maxSuccess = cases;
  rc::detail::TestMetadata meta;
  meta.id = meta.description = "random valid scenarios";
  const auto result = rc::detail::checkTestable(
      [] {
        const scenario s = draw();
        RC_LOG() << summary(s) << "\n";
        const std::uint64_t seed = *rc::gen::inRange<std::uint64_t>(1, 1u << 30);
        for (const std::string& policy : policy_names()) {
          const run_options o = options(policy, seed, s.duration.ops_per_cpu);
          const auto start = std::chrono::steady_clock::now();
          auto r = run(s, o);
          const double secs =
              std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
          RC_ASSERT(r.ok());
          RC_LOG() << policy << ": " << describe(s, o, *r);
          RC_ASSERT(secs < 60.0);  // ends within a bound (the watchdog's at the latest)
          const auto kind = reclaim::parse_policy(policy);
          if (!reclaim::policy_is_safe(*kind) || !r->contract_broken.empty()) continue;
          for (std::size_t i = 0; i < invariant_count; ++i) {
            const auto inv = static_cast<invariant>(i);
            if (inv == invariant::l1 && !l1_expected(s, policy)) continue;
            // The Xen seed's own finding, reproduced faithfully: a failed offline runs the
            // dying CPU's tasklet on the notifier's CPU (docs/engine.md). Only that S4 reason.
            if (inv == invariant::s4 && policy == "xen-tasklet" && s.hotplug.enabled &&
                r->invariants[i].reason.find("free_queued_pgtables for CPU") != std::string::npos)
              continue;
            RC_ASSERT(r->invariants[i].held);
          }
          RC_ASSERT(r->leaks.leaked_frames == 0u);
        }
      },
      meta, params);
  rc::detail::printResultMessage(result, std::cerr);
  std::cerr << "\n";
  rc::detail::FailureResult failure;
  if (result.match(failure)) {
    ADD_FAILURE() << "property failed after " << failure.numSuccess
                  << " cases: " << failure.description
                  << "\nreplay: RC_PARAMS=\"seed=" << params.seed << "\" "
                  << ::testing::UnitTest::GetInstance()->current_test_info()->name();
  } else {
    EXPECT_TRUE(result.is<rc::detail::SuccessResult>()) << "rapidcheck gave up or failed";
    RecordProperty("cases", static_cast<int>(cases));
  }
}

}  // namespace
}  // namespace ptreclaim::sim
