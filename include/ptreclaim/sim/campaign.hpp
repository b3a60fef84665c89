// Seed campaigns: one deterministic run for every (scenario, policy, seed) of a definition, split
// into shards that run anywhere (one machine, GNU parallel, a Slurm array, a Kubernetes indexed
// Job) and merge into one verdict that lists every failing seed with its replay command.
//
// Shards partition the campaign deterministically: the items are numbered in one canonical
// order (scenario, then policy, then seed, as the definition lists them) and item k belongs to
// shard (k mod N) + 1, so shards get a similar mix of scenarios and policies, and the union of
// shards 1..N is every item exactly once. A shard's result records the whole definition (with
// a hash of each scenario's text), so merging refuses shards of different campaigns. The verdict,
// the table, JSON and merging are the report library's (ptreclaim/report/campaign.hpp).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ptreclaim/base/status.hpp"
#include "ptreclaim/scenario/scenario.hpp"
#include "ptreclaim/sim/engine.hpp"
#include "ptreclaim/sim/metrics.hpp"

namespace ptreclaim::sim {

struct campaign_definition {
  std::vector<std::string> scenarios;        // as given: built-in names or files
  std::vector<std::string> scenario_hashes;  // of each scenario's text (load_campaign_scenarios)
  std::vector<std::string> policies;
  std::uint64_t first_seed = 1;  // inclusive range
  std::uint64_t last_seed = 1;
  unsigned cpus = 0;              // 0 = each scenario's
  std::uint64_t ops_per_cpu = 0;  // 0 = each scenario's
  std::string costs;              // --costs FILE, "" = none
  std::string costs_hash;
  bool expect_violation = false;  // canaries are judged too: each run must catch a violation
  std::string version;            // the ptreclaim version that ran it

  [[nodiscard]] std::uint64_t seed_count() const noexcept { return last_seed - first_seed + 1; }
  [[nodiscard]] std::uint64_t size() const noexcept {
    return scenarios.size() * policies.size() * seed_count();
  }
  friend bool operator==(const campaign_definition&, const campaign_definition&) = default;
};

// One shard: 1-based index out of count.
struct shard_spec {
  unsigned index = 1;
  unsigned count = 1;
  friend bool operator==(const shard_spec&, const shard_spec&) = default;
};
inline constexpr unsigned max_shards = 100000;
inline constexpr std::uint64_t max_campaign_seeds = std::uint64_t{1} << 40;

// "K/N" with 1 <= K <= N <= max_shards; invalid_argument with the reason.
[[nodiscard]] Result<shard_spec> parse_shard(std::string_view text);
// "A..B" (A <= B) or a single seed "A"; invalid_argument with the reason.
[[nodiscard]] Result<std::pair<std::uint64_t, std::uint64_t>> parse_seed_range(
    std::string_view text);

// Item k (0 .. size-1) in the canonical order.
struct campaign_item {
  std::size_t scenario = 0;  // index into campaign_definition::scenarios
  std::size_t policy = 0;    // index into campaign_definition::policies
  std::uint64_t seed = 0;
};
[[nodiscard]] campaign_item campaign_item_at(const campaign_definition& d, std::uint64_t k);
[[nodiscard]] inline bool in_shard(std::uint64_t k, shard_spec s) noexcept {
  return k % s.count + 1 == s.index;
}
[[nodiscard]] std::uint64_t shard_size(const campaign_definition& d, shard_spec s) noexcept;

// What the verdict and a merge need of one run (a campaign may hold millions: no series, no
// histograms).
struct campaign_run {
  std::string scenario;  // as the definition names it
  std::string policy;
  bool policy_safe = true;
  std::string contract_broken;  // as run_result's: a safe policy the scenario breaks (not judged)
  std::uint64_t seed = 0;
  bool complete = true;
  std::uint64_t operations = 0;
  double ops_per_s = 0.0;
  std::uint64_t violations = 0;
  std::uint64_t trace_hash = 0;
  std::array<invariant_result, invariant_count> invariants{};
  std::string replay_command;  // always set: the run's deterministic command line
};

struct campaign_result {
  campaign_definition definition;
  shard_spec shard;
  std::uint64_t expected_runs = 0;  // the shard's size
  bool complete = true;             // false: a stop request ended it early
  std::string interrupted_by;
  std::vector<campaign_run> runs;        // in canonical order
  std::vector<std::string> merged_from;  // merge_campaigns(): the shard files joined
};

// Loads the definition's scenarios (built-ins or files, with its cost file) and fills in
// scenario_hashes and costs_hash. Errors name the scenario or file.
[[nodiscard]] Result<std::vector<scenario>> load_campaign_scenarios(campaign_definition& d);

// Runs the shard's items in canonical order with the deterministic executor (base supplies
// quiet and stop; its policy, seed, CPUs, ops and executor are the definition's). A stop
// request ends it early (complete = false; the run in flight is kept, itself incomplete).
// `checkpoint` is called after each run with the results so far.
[[nodiscard]] Result<campaign_result> run_campaign(
    const campaign_definition& d, const std::vector<scenario>& scenarios, shard_spec shard,
    const run_options& base, const sweep_progress& progress = {},
    const sweep_checkpoint<campaign_result>& checkpoint = {});

}  // namespace ptreclaim::sim
