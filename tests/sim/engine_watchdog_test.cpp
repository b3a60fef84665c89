// No run can hang: a run ends when its finisher is done (whatever timers are still armed), the
// watchdog ends a run that stops progressing with an L1 failure that names what is stuck,
// `flush_age_ns = 0` means "never" in every layer and L1 says so when it then cannot hold, and a
// policy whose contract the scenario breaks is named as such.
#include <gtest/gtest.h>

#include <chrono>

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

// Once flush-epoch's age timer was armed 2^50 ns away for flush_age_ns = 0, and the IOMMU
// engine actors stepped towards it for ever after the run was over.
TEST(engine_watchdog, flush_age_zero_with_caller_flushes_ends_promptly_and_holds_everything) {
  scenario s = builtin("superpage-churn");
  s.reclaim.flush_age_ns = 0;
  for (const auto ex : {executor_kind::deterministic, executor_kind::threaded}) {
    const run_options o = options("flush-epoch", 1, 50, ex);
    const auto start = std::chrono::steady_clock::now();
    auto r = run(s, o);
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    EXPECT_TRUE(r->all_held()) << describe(s, o, *r);
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(60));
  }
}

TEST(engine_watchdog, flush_age_zero_without_caller_flushes_fails_l1_and_says_why) {
  scenario s = builtin("superpage-churn");
  s.reclaim.flush_age_ns = 0;
  s.caller.flush = caller_flush::none;
  s.duration.drain_timeout_ns = 2'000'000;
  const run_options o = options("flush-epoch", 1, 50);
  auto r = run(s, o);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  const invariant_result& l1 = r->at(invariant::l1);
  ASSERT_TRUE(l1.checked);
  EXPECT_FALSE(l1.held) << describe(s, o, *r);
  EXPECT_NE(l1.reason.find("flush_age_ns = 0"), std::string::npos) << l1.reason;
  EXPECT_NE(l1.reason.find("CPU "), std::string::npos) << l1.reason;
  // The frames were held, never freed early.
  EXPECT_TRUE(r->at(invariant::s3).held) << describe(s, o, *r);
  EXPECT_FALSE(r->violations.replay_command.empty());
  EXPECT_EQ(judge(*r, false).code, exit_unsafe);
}

// A watchdog bound smaller than the drain timeout: the run stops while frames wait and L1 names
// the watchdog, every CPU's state and the policy's queues.
TEST(engine_watchdog, a_run_without_progress_ends_with_an_l1_failure_naming_what_is_stuck) {
  scenario s = builtin("superpage-churn");
  s.reclaim.flush_age_ns = 0;
  s.caller.flush = caller_flush::none;
  s.duration.drain_timeout_ns = 1'000'000'000'000;
  s.duration.watchdog_steps = 20'000;
  const run_options o = options("flush-epoch", 3, 40);
  auto r = run(s, o);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  const invariant_result& l1 = r->at(invariant::l1);
  EXPECT_FALSE(l1.held) << describe(s, o, *r);
  for (const char* needle :
       {"the watchdog stopped the run", "duration.watchdog_steps", "CPU 0",
        "the finisher was waiting for every retired frame", "frames in", "flush_age_ns = 0"})
    EXPECT_NE(l1.reason.find(needle), std::string::npos) << needle << "\n" << l1.reason;
  EXPECT_FALSE(r->violations.replay_command.empty());
}

// Every policy ends a run with flush_age_ns = 0 and callers that do not flush, in bounded time
// (the L1 verdict may be a failure; the run may not hang).
TEST(engine_watchdog, every_policy_ends_with_flush_age_zero_and_no_caller_flushes) {
  scenario s = builtin("superpage-churn");
  s.reclaim.flush_age_ns = 0;
  s.caller.flush = caller_flush::none;
  s.duration.drain_timeout_ns = 5'000'000;
  for (const std::string& p : policy_names()) {
    const run_options o = options(p, 2, 30);
    auto r = run(s, o);
    ASSERT_TRUE(r.ok()) << p << ": " << r.status().to_string();
    EXPECT_TRUE(r->at(invariant::l1).checked) << describe(s, o, *r);
  }
}

TEST(engine_contract, xen_tasklet_without_caller_flushes_is_unsafe_by_contract_not_a_bug) {
  scenario s = builtin("superpage-churn");
  s.caller.flush = caller_flush::none;
  const run_options o = options("xen-tasklet", 4, sanitized ? 40 : 150);
  auto r = run(s, o);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_TRUE(r->policy_safe);
  EXPECT_FALSE(r->contract_broken.empty());
  EXPECT_FALSE(r->judged_safe());
  EXPECT_GT(r->violations.count, 0u) << describe(s, o, *r);
  const verdict v = judge(*r, false);
  EXPECT_EQ(v.code, exit_unsafe);
  EXPECT_NE(v.reason.find("unsafe here by contract"), std::string::npos) << v.reason;
  EXPECT_NE(format_run(*r).find("contract"), std::string::npos);

  // In a comparison it is named, not judged as a safety failure of the comparison.
  compare_result c;
  c.scenario = s.name;
  c.runs.push_back(*r);
  const verdict cv = judge(c, false);
  EXPECT_EQ(cv.code, exit_ok) << cv.reason;
  EXPECT_NE(cv.reason.find("xen-tasklet is unsafe here by contract"), std::string::npos)
      << cv.reason;
  // With caller flushes the contract holds.
  s.caller.flush = caller_flush::each_op;
  auto kept = run(s, o);
  ASSERT_TRUE(kept.ok());
  EXPECT_TRUE(kept->contract_broken.empty());
}

}  // namespace
}  // namespace ptreclaim::sim
