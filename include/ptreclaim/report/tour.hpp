// The tour: what `ptreclaim` with no command runs. The Xen case (superpage-churn) and the Linux
// case (sva-kernel), every policy, at a small and a large simulated CPU count, one seed for all;
// one compact table per case, then three to five findings computed from the figures (never
// written in advance: each sentence is filled from the runs, and says so only when they show
// it), each with the command that shows it in full, and the verdict.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ptreclaim/base/status.hpp"
#include "ptreclaim/reclaim/policy.hpp"
#include "ptreclaim/report/report.hpp"
#include "ptreclaim/sim/engine.hpp"

namespace ptreclaim::sim {

struct tour_case_definition {
  std::string scenario;  // a built-in name
  std::string role;      // "Xen's case"
};

struct tour_definition {
  std::vector<tour_case_definition> cases{{"superpage-churn", "the Xen case"},
                                          {"sva-kernel", "the Linux case"}};
  unsigned small_cpus = 2;
  unsigned large_cpus = 32;
  // Operations per CPU, the same at both counts (so `ptreclaim scale --cpus 2,32 --ops N`
  // repeats a case exactly); short enough that the whole tour takes a few seconds.
  std::uint64_t ops_per_cpu = 150;
  std::uint64_t seed = 42;
  std::vector<reclaim::policy_kind> policies;  // empty: every policy of the registry
};

struct tour_case {
  std::string role;
  scale_result scale;  // policies x {small, large}
};

struct tour_finding {
  std::string text;     // one or two plain sentences
  std::string command;  // the command that shows it in full
};

struct tour_result {
  tour_definition definition;
  std::vector<tour_case> cases;
  std::vector<tour_finding> findings;
  bool complete = true;  // false: a stop request ended it early
  std::string interrupted_by;
};

// Runs every case (run_scale with the definition's seed, CPU counts and operations; base's
// executor, quiet and stop flag), then computes the findings. Stops at the first run error.
[[nodiscard]] Result<tour_result> run_tour(const tour_definition& d, const run_options& base,
                                           const sweep_progress& progress = {});

// The findings of the runs (tour_result::findings), recomputed: deterministic given the runs.
[[nodiscard]] std::vector<tour_finding> tour_findings(const tour_result& r);

// The tables, the findings and nothing else (the verdict is the command's last line).
[[nodiscard]] std::string format_tour(const tour_result& r);
[[nodiscard]] std::string to_json(const tour_result& r, int indent = 2);
// Every run of every case, judged as compare judges its runs.
[[nodiscard]] verdict judge(const tour_result& r, bool expect_violation);

}  // namespace ptreclaim::sim
