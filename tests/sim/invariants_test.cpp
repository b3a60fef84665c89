// The verdicts of a run from its evidence (sim/invariants.hpp), without a machine: every
// invariant holds on clean evidence, and each kind of evidence breaks exactly its invariant.
#include "sim/invariants.hpp"

#include <gtest/gtest.h>

namespace ptreclaim::sim::detail {
namespace {

invariant_evidence clean() {
  invariant_evidence e;
  e.mon.retired = e.mon.freed = 40;
  e.policy.retired = e.policy.freed = 40;
  e.leaks.checked = true;
  e.translations = 100;
  e.pte_reads = 300;
  e.pending_bound = 64;
  e.peak_pending = 12;
  e.reached_drain = true;
  e.l1_held = true;
  e.l1_reason = "drained";
  return e;
}

// The invariants that failed, as "S3 L1".
std::string failed(const run_result& r) {
  std::string s;
  for (std::size_t i = 0; i < invariant_count; ++i) {
    const auto inv = static_cast<invariant>(i);
    EXPECT_TRUE(r.at(inv).checked) << invariant_name(inv);
    if (!r.at(inv).held) s += (s.empty() ? "" : " ") + std::string(invariant_name(inv));
  }
  return s;
}

run_result judge(const invariant_evidence& e) {
  run_result r;
  judge_invariants(e, r);
  return r;
}

TEST(invariants, clean_evidence_holds_everywhere) {
  const run_result r = judge(clean());
  EXPECT_EQ(failed(r), "");
  EXPECT_EQ(r.violations.count, 0u);
  EXPECT_EQ(r.at(invariant::s1).reason, "100 translations, 300 PTE reads, no stale read");
  EXPECT_EQ(r.at(invariant::l1).reason, "drained");
}

TEST(invariants, each_kind_of_evidence_breaks_its_invariant) {
  {
    auto e = clean();
    e.s1_count = 2;
    e.s1_first = "dev 3 read freed frame 9";
    const run_result r = judge(e);
    EXPECT_EQ(failed(r), "S1");
    EXPECT_EQ(r.violations.count, 2u);
    EXPECT_EQ(r.violations.first, "dev 3 read freed frame 9");
  }
  {
    auto e = clean();
    e.ledger = 1;
    e.ledger_first = "double free of frame 4";
    const run_result r = judge(e);
    EXPECT_EQ(failed(r), "S2");
    EXPECT_EQ(r.violations.first, "double free of frame 4");
  }
  {
    auto e = clean();
    e.leaks.leaked_frames = 3;
    EXPECT_EQ(failed(judge(e)), "S2");
  }
  {
    auto e = clean();
    e.policy.free_errors = 1;
    EXPECT_EQ(failed(judge(e)), "S2");
  }
  {
    auto e = clean();
    e.mon.s3_violations = 1;
    e.mon.first = {"S3 frame 7 freed before its invalidation completed"};
    const run_result r = judge(e);
    EXPECT_EQ(failed(r), "S3");
    EXPECT_NE(r.at(invariant::s3).reason.find("first: S3 frame 7"), std::string::npos);
  }
  {
    auto e = clean();
    e.policy.wrong_cpu_runs = 1;
    EXPECT_EQ(failed(judge(e)), "S4");
  }
  {
    auto e = clean();
    e.peak_pending = 65;  // over the bound, though the monitor counted no S5 violation
    EXPECT_EQ(failed(judge(e)), "S5");
  }
  {
    auto e = clean();
    e.l1_held = false;
    e.l1_reason = "7 frames pending";
    EXPECT_EQ(failed(judge(e)), "L1");
  }
}

TEST(invariants, a_run_stopped_before_the_drain_fails_l1_with_why) {
  auto e = clean();
  e.reached_drain = false;
  EXPECT_EQ(judge(e).at(invariant::l1).reason,
            "the run stopped before the drain could be observed");
  e.stuck = "the watchdog stopped the run";
  const run_result r = judge(e);
  EXPECT_EQ(failed(r), "L1");
  EXPECT_EQ(r.at(invariant::l1).reason, "the watchdog stopped the run");
}

TEST(invariants, s2_says_when_the_teardown_check_did_not_run) {
  auto e = clean();
  e.leaks.checked = false;
  e.leaks.leaked_frames = 5;  // not counted: the check did not run
  const run_result r = judge(e);
  EXPECT_EQ(failed(r), "");
  EXPECT_NE(r.at(invariant::s2).reason.find("(teardown leak check did not run)"),
            std::string::npos);
}

TEST(invariants, s4_counts_hotplug_attempts) {
  auto e = clean();
  e.hotplug = true;
  e.run.cpu_downs = 3;
  e.run.cpu_down_failures = 1;
  e.run.cpu_ups = 2;
  EXPECT_NE(judge(e).at(invariant::s4).reason.find("(4 offline attempts, 2 online)"),
            std::string::npos);
}

}  // namespace
}  // namespace ptreclaim::sim::detail
