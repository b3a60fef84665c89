// The verdicts of a run: S1-S6 and L1 from what the run's checkers saw (the IOMMU model's stale
// walks, the safety monitor, the pool's ledger and teardown, the policy's own counters, the
// executor's hotplug counts, the finisher). A pure function of those figures, so each verdict
// and its reason can be tested without building a machine.
#pragma once

#include <cstdint>
#include <string>

#include "ptreclaim/reclaim/reclaimer.hpp"
#include "ptreclaim/reclaim/safety_monitor.hpp"
#include "ptreclaim/runtime/executor.hpp"
#include "ptreclaim/sim/metrics.hpp"

namespace ptreclaim::sim::detail {

struct invariant_evidence {
  std::uint64_t s1_count = 0;  // stale walks the IOMMU model saw
  std::string s1_first;        // the first, in full
  std::uint64_t ledger = 0;    // the pool's ledger violations (double frees and the like)
  std::string ledger_first;
  reclaim::safety_monitor::report mon;
  reclaim::reclaim_stats policy;
  leak_summary leaks;
  std::uint64_t translations = 0, pte_reads = 0;  // device work, for S1's reason
  std::uint64_t pending_bound = 0;                // S5: the scenario's bound
  std::uint64_t peak_pending = 0;                 // the monitor's exact peak
  bool hotplug = false;                           // the scenario had hotplug events
  runtime::run_stats run;                         // hotplug counts
  // L1: whether the finisher got as far as the drain; its verdict; why the run stopped if the
  // watchdog stopped it ("" otherwise).
  bool reached_drain = false;
  bool l1_held = false;
  std::string l1_reason;
  std::string stuck;
  // S6: whether IOVAs passed through the policy (caller.flush = "lazy"), and the caller mode.
  bool lazy = false;
  std::string caller;
};

// Fills out.at(i) for every invariant and out.violations.count / first.
void judge_invariants(const invariant_evidence& e, run_result& out);

}  // namespace ptreclaim::sim::detail
