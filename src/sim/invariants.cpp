#include "sim/invariants.hpp"

namespace ptreclaim::sim::detail {

namespace {
void set(run_result& r, invariant i, bool held, std::string reason) {
  invariant_result& x = r.at(i);
  x.checked = true;
  x.held = held;
  x.reason = std::move(reason);
}
}  // namespace

void judge_invariants(const invariant_evidence& e, run_result& out) {
  const reclaim::safety_monitor::report& mon = e.mon;
  out.violations.count = e.s1_count + e.ledger + mon.s2_violations + mon.s3_violations +
                         mon.s4_violations + mon.s5_violations + mon.s6_violations;
  if (!e.s1_first.empty())
    out.violations.first = e.s1_first;
  else if (!mon.first.empty())
    out.violations.first = mon.first.front();
  else if (e.ledger != 0 && !e.ledger_first.empty())
    out.violations.first = e.ledger_first;

  set(out, invariant::s1, e.s1_count == 0,
      e.s1_count == 0 ? std::to_string(e.translations) + " translations, " +
                            std::to_string(e.pte_reads) + " PTE reads, no stale read"
                      : std::to_string(e.s1_count) + " stale walks; first: " + e.s1_first);
  {
    const bool held = mon.s2_violations == 0 && e.ledger == 0 && e.policy.free_errors == 0 &&
                      (!e.leaks.checked || e.leaks.leaked_frames == 0);
    std::string why;
    if (held) {
      why = std::to_string(mon.freed) +
            " frees checked by the monitor; ledger clean; pool whole at teardown";
    } else {
      why = std::to_string(mon.s2_violations) + " monitor S2 violations, " +
            std::to_string(e.ledger) + " ledger violations, " +
            std::to_string(e.leaks.leaked_frames) + " frames leaked";
      for (const auto& f : mon.first)
        if (f.rfind("S2", 0) == 0) {
          why += "; first: " + f;
          break;
        }
      if (!e.leaks.report.empty()) why += "; " + e.leaks.report.substr(0, 400);
    }
    set(out, invariant::s2, held, why);
    if (!e.leaks.checked) out.at(invariant::s2).reason += " (teardown leak check did not run)";
  }
  auto first_of = [&](const char* prefix) {
    for (const auto& f : mon.first)
      if (f.rfind(prefix, 0) == 0) return f;
    return std::string();
  };
  set(out, invariant::s3, mon.s3_violations == 0,
      mon.s3_violations == 0
          ? std::to_string(mon.freed) + " frees, each after a covering invalidation completed"
          : std::to_string(mon.s3_violations) + " early frees; first: " + first_of("S3"));
  {
    const bool held = mon.s4_violations == 0 && e.policy.wrong_cpu_runs == 0;
    std::string why =
        held ? std::string("no worker on a wrong CPU, no frame lost")
             : std::to_string(mon.s4_violations) + " violations; first: " + first_of("S4");
    if (e.hotplug) {
      why += " (" + std::to_string(e.run.cpu_downs + e.run.cpu_down_failures) +
             " offline attempts, " + std::to_string(e.run.cpu_ups) + " online)";
    } else {
      why += " (no hotplug in this scenario)";
    }
    set(out, invariant::s4, held, why);
  }
  {
    const bool held = mon.s5_violations == 0 && e.peak_pending <= e.pending_bound;
    set(out, invariant::s5, held,
        "peak " + std::to_string(e.peak_pending) + " pending frames, bound " +
            std::to_string(e.pending_bound) + (held ? "" : "; first: " + first_of("S5")));
  }
  if (!e.lazy) {
    // Strict callers free their IOVAs after their own invalidation: none reaches the policy.
    set(out, invariant::s6, mon.s6_violations == 0,
        "no IOVA passed through the policy (caller.flush = \"" + e.caller + "\")");
  } else {
    set(out, invariant::s6, mon.s6_violations == 0,
        mon.s6_violations == 0
            ? std::to_string(mon.iovas_unmapped) + " deferred IOVAs, " +
                  std::to_string(mon.iovas_returned) +
                  " given back; none allocated again before a covering invalidation completed (" +
                  std::to_string(mon.iovas_returned_early) + " given back early, not reused)"
            : std::to_string(mon.s6_violations) +
                  " IOVAs reused too early; first: " + first_of("S6"));
  }
  if (!e.reached_drain) {
    set(out, invariant::l1, false,
        !e.stuck.empty() ? e.stuck : "the run stopped before the drain could be observed");
  } else {
    set(out, invariant::l1, e.l1_held, e.l1_reason);
  }
}

}  // namespace ptreclaim::sim::detail
