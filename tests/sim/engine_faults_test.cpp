// Injected faults ([faults]): with each fault on, every safe policy on superpage-churn and
// sva-kernel holds S1-S5 and L1, the fault really was injected, and the pool is whole; the
// section is strict, off by default and bounded so no invalidation can outlive its timeout.
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "engine_test_support.hpp"
#include "ptreclaim/report/report.hpp"
#include "ptreclaim/scenario/scenario.hpp"
#include "ptreclaim/sim/engine.hpp"

namespace ptreclaim::sim {
namespace {

using testing::builtin;
using testing::describe;
using testing::options;
using testing::sanitized;

const std::vector<std::string> safe_policies{"sync", "xen-tasklet", "linux-global-work",
                                             "flush-epoch"};

struct fault_case {
  const char* name;
  std::function<void(faults_params&)> set;
  std::function<std::uint64_t(const fault_metrics&)> injected;  // must be > 0
};

std::vector<fault_case> fault_cases() {
  return {
      {"ite", [](faults_params& f) { f.queue.ite_probability = 0.3; },
       [](const fault_metrics& m) { return m.ite * (m.resubmissions > 0 ? 1 : 0); }},
      {"iqe", [](faults_params& f) { f.queue.iqe_probability = 0.3; },
       [](const fault_metrics& m) { return m.iqe * (m.resubmissions > 0 ? 1 : 0); }},
      {"stall",
       [](faults_params& f) {
         f.queue.stall_probability = 0.2;
         f.queue.stall_ns = 50'000;
       },
       [](const fault_metrics& m) { return m.stalls; }},
      {"slow-wait",
       [](faults_params& f) {
         f.queue.slow_wait_probability = 0.5;
         f.queue.slow_wait_mean_ns = 20'000;
         f.queue.slow_wait_max_ns = 400'000;
       },
       [](const fault_metrics& m) { return m.slow_waits; }},
      {"alloc", [](faults_params& f) { f.alloc_fail_probability = 0.05; },
       [](const fault_metrics& m) { return m.alloc_failures * (m.mutation_errors > 0 ? 1 : 0); }},
      {"teardown", [](faults_params& f) { f.devices_through_teardown = true; },
       [](const fault_metrics& m) {
         return m.teardown_translations * (m.detached_contexts > 0 ? 1 : 0);
       }},
  };
}

// Every safe policy, both workloads, two seeds: safe, live, leak-free, and the fault happened.
void check_fault(const fault_case& fc) {
  const std::uint64_t ops = sanitized ? 30 : 60;
  for (const char* name : {"superpage-churn", "sva-kernel"}) {
    scenario s = builtin(name);
    // Strict callers: every vfree invalidates, so a short run meets the fault under every policy
    // (the built-in sva-kernel's callers flush nothing, and flush-epoch would then invalidate
    // only once its age or watermark is reached) and xen-tasklet's contract holds.
    s.caller.flush = caller_flush::each_op;
    fc.set(s.faults);
    ASSERT_TRUE(validate(s).ok()) << validate(s).to_string();
    for (const std::uint64_t seed : {1u, 2u}) {
      for (const std::string& p : safe_policies) {
        const run_options o = options(p, seed, ops);
        auto r = run(s, o);
        ASSERT_TRUE(r.ok()) << r.status().to_string();
        SCOPED_TRACE(std::string("fault ") + fc.name + "\n" + describe(s, o, *r));
        EXPECT_TRUE(r->all_held());
        for (std::size_t i = 0; i < invariant_count; ++i)
          EXPECT_TRUE(r->invariants[i].checked) << invariant_name(static_cast<invariant>(i));
        EXPECT_EQ(judge(*r, false).code, exit_ok) << judge(*r, false).reason;
        EXPECT_TRUE(r->faults.enabled);
        EXPECT_GT(fc.injected(r->faults), 0u) << "the fault was not injected";
        EXPECT_TRUE(r->leaks.checked);
        EXPECT_EQ(r->leaks.leaked_frames, 0u) << r->leaks.report;
        EXPECT_EQ(r->leaks.ledger_violations, 0u) << r->leaks.report;
        EXPECT_EQ(r->violations.count, 0u);
        EXPECT_LE(r->reclaim.peak_pending, r->reclaim.pending_bound);
        EXPECT_EQ(r->reclaim.tables_freed, r->reclaim.tables_released);
      }
    }
  }
}

TEST(engine_faults, invalidation_timeouts_ite) {
  check_fault(fault_cases()[0]);
}
TEST(engine_faults, invalid_descriptors_iqe) {
  check_fault(fault_cases()[1]);
}
TEST(engine_faults, queue_stalls) {
  check_fault(fault_cases()[2]);
}
TEST(engine_faults, slow_waits) {
  check_fault(fault_cases()[3]);
}
TEST(engine_faults, page_table_allocation_failures) {
  check_fault(fault_cases()[4]);
}
TEST(engine_faults, devices_translating_through_teardown) {
  check_fault(fault_cases()[5]);
}

// Every fault at once, on the threaded executor too (real time, real races with the recovery).
TEST(engine_faults, all_faults_at_once_on_both_executors) {
  scenario s = builtin("superpage-churn");
  for (const fault_case& fc : fault_cases())
    fc.set(s.faults);
  ASSERT_TRUE(validate(s).ok()) << validate(s).to_string();
  for (const auto ex : {executor_kind::deterministic, executor_kind::threaded}) {
    for (const std::string& p : safe_policies) {
      const run_options o = options(p, 3, sanitized ? 20 : 40, ex);
      auto r = run(s, o);
      ASSERT_TRUE(r.ok()) << r.status().to_string();
      EXPECT_TRUE(r->all_held()) << describe(s, o, *r);
      EXPECT_EQ(r->leaks.leaked_frames, 0u) << r->leaks.report;
      EXPECT_GT(r->faults.ite + r->faults.iqe, 0u) << describe(s, o, *r);
    }
  }
}

// The canaries still get caught under faults: the checker is not blinded by the recovery.
TEST(engine_faults, the_canaries_are_still_caught) {
  scenario s = builtin("canary-immediate");
  s.faults.queue.ite_probability = 0.3;
  s.faults.queue.iqe_probability = 0.3;
  const run_options o = options("immediate", 1, 60);
  auto r = run(s, o);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(judge(*r, true).code, exit_ok) << describe(s, o, *r);
}

// Same seed, same faults, same run; another seed draws another schedule.
TEST(engine_faults, the_schedule_is_seeded_and_replays) {
  scenario s = builtin("superpage-churn");
  for (const fault_case& fc : fault_cases())
    fc.set(s.faults);
  const run_options o = options("flush-epoch", 4, 40);
  auto a = run(s, o);
  auto b = run(s, o);
  auto c = run(s, options("flush-epoch", 5, 40));
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(a->trace_hash, b->trace_hash);
  EXPECT_EQ(a->faults.ite, b->faults.ite);
  EXPECT_EQ(a->faults.iqe, b->faults.iqe);
  EXPECT_EQ(a->faults.slow_wait_ns, b->faults.slow_wait_ns);
  EXPECT_EQ(a->faults.alloc_failures, b->faults.alloc_failures);
  EXPECT_NE(a->trace_hash, c->trace_hash);
}

// Without a [faults] section nothing is injected, and a run reports no fault.
TEST(engine_faults, off_by_default_in_every_builtin) {
  for (const auto& b : builtin_scenarios()) {
    auto s = load_scenario(std::string(b.name));
    ASSERT_TRUE(s.ok()) << s.status().to_string();
    EXPECT_FALSE(s->faults.any()) << b.name;
  }
  const scenario s = builtin("superpage-churn");
  auto r = run(s, options("sync", 1, 30));
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->faults.enabled);
  EXPECT_EQ(r->faults.injected() + r->faults.resubmissions + r->faults.descriptors_aborted, 0u);
  EXPECT_EQ(format_run(*r).find("queue errors"), std::string::npos);
  EXPECT_NE(to_json(*r, -1).find("\"faults\":{"), std::string::npos);
}

// The shipped superpage-churn.toml shows every key of [faults] at its default.
TEST(engine_faults, the_shipped_file_shows_the_defaults) {
  const builtin_scenario* b = find_builtin("superpage-churn");
  ASSERT_NE(b, nullptr);
  for (const char* key :
       {"ite_probability", "ite_timeout_ns", "iqe_probability", "max_aborts_in_a_row",
        "stall_probability", "stall_ns", "slow_wait_probability", "slow_wait_mean_ns",
        "slow_wait_max_ns", "alloc_fail_probability", "devices_through_teardown"})
    EXPECT_NE(b->toml.find(std::string("\n") + key + " = "), std::string::npos) << key;
  auto s = load_scenario("superpage-churn");
  ASSERT_TRUE(s.ok());
  const faults_params d;
  const iommu::fault_config& q = s->faults.queue;
  EXPECT_EQ(q.ite_timeout_ns, d.queue.ite_timeout_ns);
  EXPECT_EQ(q.max_aborts_in_a_row, d.queue.max_aborts_in_a_row);
  EXPECT_EQ(q.stall_ns, d.queue.stall_ns);
  EXPECT_EQ(q.slow_wait_mean_ns, d.queue.slow_wait_mean_ns);
  EXPECT_EQ(q.slow_wait_max_ns, d.queue.slow_wait_max_ns);
}

Result<scenario> overlay(const std::string& faults_section) {
  return parse_scenario("base = \"superpage-churn\"\n[faults]\n" + faults_section, "f.toml");
}

TEST(engine_faults, the_section_is_strict) {
  ASSERT_TRUE(overlay("ite_probability = 0.5\nstall_probability = 1.0\n").ok());
  struct bad {
    const char* text;
    const char* says;
  };
  for (const bad& b : std::vector<bad>{
           {"ite_probability = 0.6\n", "'faults.ite_probability' = 0.6 is out of range"},
           {"iqe_probability = -0.1\n", "out of range"},
           {"max_aborts_in_a_row = 0\n", "out of range"},
           {"stall_ns = 20000000\n", "out of range"},
           {"alloc_fail_probability = 1.5\n", "out of range"},
           {"devices_through_teardown = 1\n", "must be"},
           {"ite_probabilty = 0.1\n", "unknown key 'ite_probabilty' in [faults]"},
           {"slow_wait_probability = 0.5\nslow_wait_mean_ns = 5000\nslow_wait_max_ns = 100\n",
            "slow_wait_max_ns"},
       }) {
    auto s = overlay(b.text);
    ASSERT_FALSE(s.ok()) << b.text;
    EXPECT_NE(s.status().message().find(b.says), std::string::npos)
        << b.text << " -> " << s.status().message();
    EXPECT_NE(s.status().message().find("f.toml:"), std::string::npos) << s.status().message();
  }
}

// Faults that could hold one invalidation past the simulator's timeout are refused up front, so
// no wait can time out (a policy would have to free early, crash or hang).
TEST(engine_faults, faults_that_could_outlast_the_invalidation_timeout_are_refused) {
  auto s = overlay(
      "stall_probability = 1.0\nstall_ns = 10000000\nite_probability = 0.5\n"
      "ite_timeout_ns = 10000000\n");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("invalidation timeout"), std::string::npos)
      << s.status().message();
  auto ok = overlay("stall_probability = 1.0\nstall_ns = 100000\nite_probability = 0.5\n");
  EXPECT_TRUE(ok.ok()) << ok.status().to_string();
}

}  // namespace
}  // namespace ptreclaim::sim
