// The verdict and the table of a seed campaign (ptreclaim/report/campaign.hpp). JSON and merging
// are in campaign_json.cpp; running the shards is the sim library's (campaign.cpp there).
#include <algorithm>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "ptreclaim/report/campaign.hpp"
#include "ptreclaim/report/report.hpp"
#include "report/report_format.hpp"

namespace ptreclaim::sim {
namespace {

// The run_result judge() needs, rebuilt from a campaign run.
run_result as_run(const campaign_run& c) {
  run_result r;
  r.scenario = c.scenario;
  r.policy = c.policy;
  r.policy_safe = c.policy_safe;
  r.contract_broken = c.contract_broken;
  r.seed = c.seed;
  r.invariants = c.invariants;
  r.violations.count = c.violations;
  return r;
}

// The run's verdict, or nothing for a canary that is not judged and for a safe policy whose
// contract the scenario breaks (its violations are expected there, as compare says).
std::optional<verdict> judge_run(const campaign_run& c, bool expect_violation) {
  if (c.policy_safe && !c.contract_broken.empty()) return std::nullopt;
  if (c.policy_safe) return judge(as_run(c), false);
  if (expect_violation) return judge(as_run(c), true);
  return std::nullopt;
}

std::string describe(const campaign_definition& d) {
  std::string out = std::to_string(d.scenarios.size()) + " scenario" +
                    (d.scenarios.size() == 1 ? "" : "s") + " x " +
                    std::to_string(d.policies.size()) + " polic" +
                    (d.policies.size() == 1 ? "y" : "ies") + " x seeds " +
                    std::to_string(d.first_seed) + ".." + std::to_string(d.last_seed);
  return out;
}

}  // namespace

verdict judge(const campaign_result& r) {
  std::size_t judged = 0, failed = 0, canaries = 0;
  std::string first, contract;
  for (const auto& c : r.runs) {
    if (!c.policy_safe) ++canaries;
    if (c.policy_safe && !c.contract_broken.empty()) {
      const std::string note =
          c.policy + " is unsafe on " + c.scenario + " by contract (it " + c.contract_broken + ")";
      if (contract.find(note) == std::string::npos) contract += "; " + note;
    }
    const auto v = judge_run(c, r.definition.expect_violation);
    if (!v) continue;
    ++judged;
    if (v->code != exit_ok) {
      if (failed++ == 0) first = v->reason;
    }
  }
  const std::string what = " (" + describe(r.definition) + ")";
  if (failed > 0) {
    return {exit_unsafe, "unsafe: " + std::to_string(failed) + " of " + std::to_string(judged) +
                             " judged runs failed" + what + "; first: " + first + contract};
  }
  std::string reason = "ok: every safe policy held every checked invariant in " +
                       std::to_string(judged - (r.definition.expect_violation ? canaries : 0)) +
                       " runs" + what;
  if (canaries > 0) {
    reason += r.definition.expect_violation
                  ? "; every canary caught its violation"
                  : "; " + std::to_string(canaries) + " canary runs not judged";
  }
  return {exit_ok, reason + contract};
}

std::vector<std::string> campaign_failures(const campaign_result& r) {
  std::vector<std::string> out;
  for (const auto& c : r.runs) {
    const auto v = judge_run(c, r.definition.expect_violation);
    if (v && v->code != exit_ok) out.push_back(v->reason + "\n  replay: " + c.replay_command);
  }
  return out;
}

std::string format_campaign(const campaign_result& r) {
  const campaign_definition& d = r.definition;
  std::string out = "campaign " + describe(d);
  if (r.merged_from.empty()) {
    out += "  shard " + std::to_string(r.shard.index) + "/" + std::to_string(r.shard.count);
  } else {
    out += "  merged from " + std::to_string(r.merged_from.size()) + " shard file" +
           (r.merged_from.size() == 1 ? "" : "s");
  }
  out += "  (" + std::to_string(r.runs.size()) + " of " + std::to_string(r.expected_runs) +
         " runs, deterministic executor)\n\n";
  // One row per scenario and policy, in the definition's order.
  struct row {
    std::size_t runs = 0, failed = 0;
    std::uint64_t violations = 0;
    bool judged = true;
    bool contract = false;
    std::vector<double> ops;
  };
  std::map<std::pair<std::size_t, std::size_t>, row> rows;
  std::map<std::string, std::size_t> scenario_index, policy_index;
  for (std::size_t i = 0; i < d.scenarios.size(); ++i)
    scenario_index[d.scenarios[i]] = i;
  for (std::size_t i = 0; i < d.policies.size(); ++i)
    policy_index[d.policies[i]] = i;
  for (const auto& c : r.runs) {
    row& w = rows[{scenario_index[c.scenario], policy_index[c.policy]}];
    const auto v = judge_run(c, d.expect_violation);
    ++w.runs;
    w.judged = v.has_value();
    w.contract = w.contract || !c.contract_broken.empty();
    if (v && v->code != exit_ok) ++w.failed;
    w.violations += c.violations;
    w.ops.push_back(c.ops_per_s);
  }
  std::vector<std::vector<std::string>> cells;
  for (auto& [key, w] : rows) {
    std::sort(w.ops.begin(), w.ops.end());
    const bool safe = policy_is_safe(d.policies[key.second]);
    cells.push_back({d.scenarios[key.first], d.policies[key.second],
                     !safe ? "NO" : (w.contract ? "contract" : "yes"), std::to_string(w.runs),
                     w.judged ? std::to_string(w.failed) : "not judged",
                     std::to_string(w.violations), detail::human_count(w.ops[w.ops.size() / 2])});
  }
  out += detail::text_table(
      {"scenario", "policy", "safe", "runs", "failed", "violations", "median ops/s"}, cells);
  const auto failures = campaign_failures(r);
  if (!failures.empty()) {
    out += "\nfailing runs (" + std::to_string(failures.size()) + "):\n";
    for (const auto& f : failures)
      out += f + "\n";
  }
  if (!r.complete && r.merged_from.empty())
    out += "stopped early by " + r.interrupted_by + ": " + std::to_string(r.runs.size()) + " of " +
           std::to_string(r.expected_runs) + " runs done\n";
  return out;
}

}  // namespace ptreclaim::sim
