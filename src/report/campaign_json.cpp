// Campaign results as JSON, read back, and merged from shards (campaign.hpp).
#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "ptreclaim/base/file.hpp"
#include "ptreclaim/report/campaign.hpp"
#include "report/report_format.hpp"
#include "report/report_json.hpp"

namespace ptreclaim::sim {
namespace {

using nlohmann::json;

json definition_json(const campaign_definition& d) {
  return {{"scenarios", d.scenarios},
          {"scenario_hashes", d.scenario_hashes},
          {"policies", d.policies},
          {"seeds", {{"first", d.first_seed}, {"last", d.last_seed}}},
          {"cpus", d.cpus},
          {"ops_per_cpu", d.ops_per_cpu},
          {"costs", d.costs},
          {"costs_hash", d.costs_hash},
          {"expect_violation", d.expect_violation},
          {"version", d.version}};
}

campaign_definition definition_from(const json& j) {
  campaign_definition d;
  d.scenarios = j.at("scenarios").get<std::vector<std::string>>();
  d.scenario_hashes = j.at("scenario_hashes").get<std::vector<std::string>>();
  d.policies = j.at("policies").get<std::vector<std::string>>();
  d.first_seed = j.at("seeds").at("first").get<std::uint64_t>();
  d.last_seed = j.at("seeds").at("last").get<std::uint64_t>();
  d.cpus = j.at("cpus").get<unsigned>();
  d.ops_per_cpu = j.at("ops_per_cpu").get<std::uint64_t>();
  d.costs = j.at("costs").get<std::string>();
  d.costs_hash = j.at("costs_hash").get<std::string>();
  d.expect_violation = j.at("expect_violation").get<bool>();
  d.version = j.at("version").get<std::string>();
  return d;
}

// What makes two definitions different campaigns, for the message ("" when equal).
std::string first_difference(const campaign_definition& a, const campaign_definition& b) {
  if (a.scenarios != b.scenarios) return "the scenarios differ";
  if (a.scenario_hashes != b.scenario_hashes) return "a scenario file's text differs";
  if (a.policies != b.policies) return "the policies differ";
  if (a.first_seed != b.first_seed || a.last_seed != b.last_seed) return "the seeds differ";
  if (a.cpus != b.cpus) return "--cpus differs";
  if (a.ops_per_cpu != b.ops_per_cpu) return "--ops differs";
  if (a.costs != b.costs || a.costs_hash != b.costs_hash) return "the cost file differs";
  if (a.expect_violation != b.expect_violation) return "--expect-violation differs";
  if (a.version != b.version) return "the ptreclaim versions differ";
  return {};
}

std::string shard_name(shard_spec s) {
  return std::to_string(s.index) + "/" + std::to_string(s.count);
}

// The canonical index of a run, or nullopt when the definition has no such item.
std::optional<std::uint64_t> index_of(const campaign_definition& d, const campaign_run& c) {
  const auto si = std::find(d.scenarios.begin(), d.scenarios.end(), c.scenario);
  const auto pi = std::find(d.policies.begin(), d.policies.end(), c.policy);
  if (si == d.scenarios.end() || pi == d.policies.end() || c.seed < d.first_seed ||
      c.seed > d.last_seed)
    return std::nullopt;
  const auto s = static_cast<std::uint64_t>(si - d.scenarios.begin());
  const auto p = static_cast<std::uint64_t>(pi - d.policies.begin());
  return (s * d.policies.size() + p) * d.seed_count() + (c.seed - d.first_seed);
}

}  // namespace

std::string to_json(const campaign_result& r, int indent) {
  json runs = json::array();
  for (const auto& c : r.runs) {
    runs.push_back({{"scenario", c.scenario},
                    {"policy", c.policy},
                    {"policy_safe", c.policy_safe},
                    {"contract_broken", c.contract_broken},
                    {"seed", c.seed},
                    {"complete", c.complete},
                    {"operations", c.operations},
                    {"ops_per_s", c.ops_per_s},
                    {"violations", c.violations},
                    {"trace_hash", c.trace_hash},
                    {"invariants", detail::invariants_json(c.invariants)},
                    {"replay_command", c.replay_command}});
  }
  const verdict v = judge(r);
  return detail::dump_json({{"kind", "campaign"},
                            {"complete", r.complete},
                            {"interrupted_by", r.interrupted_by},
                            {"definition", definition_json(r.definition)},
                            {"shard", {{"index", r.shard.index}, {"count", r.shard.count}}},
                            {"expected_runs", r.expected_runs},
                            {"merged_from", r.merged_from},
                            {"verdict", {{"code", v.code}, {"reason", v.reason}}},
                            {"failures", campaign_failures(r)},
                            {"runs", runs}},
                           indent);
}

Result<campaign_result> parse_campaign_json(std::string_view text, const std::string& source) {
  try {
    const json j = json::parse(text);
    if (!j.is_object() || j.value("kind", "") != "campaign") {
      return Status(errc::parse_error,
                    source + ": not a campaign result (no \"kind\": \"campaign\")");
    }
    campaign_result r;
    r.complete = j.at("complete").get<bool>();
    r.interrupted_by = j.at("interrupted_by").get<std::string>();
    r.definition = definition_from(j.at("definition"));
    r.shard.index = j.at("shard").at("index").get<unsigned>();
    r.shard.count = j.at("shard").at("count").get<unsigned>();
    r.expected_runs = j.at("expected_runs").get<std::uint64_t>();
    r.merged_from = j.at("merged_from").get<std::vector<std::string>>();
    for (const json& c : j.at("runs")) {
      campaign_run run;
      run.scenario = c.at("scenario").get<std::string>();
      run.policy = c.at("policy").get<std::string>();
      run.policy_safe = c.at("policy_safe").get<bool>();
      run.contract_broken = c.at("contract_broken").get<std::string>();
      run.seed = c.at("seed").get<std::uint64_t>();
      run.complete = c.at("complete").get<bool>();
      run.operations = c.at("operations").get<std::uint64_t>();
      run.ops_per_s = c.at("ops_per_s").get<double>();
      run.violations = c.at("violations").get<std::uint64_t>();
      run.trace_hash = c.at("trace_hash").get<std::uint64_t>();
      run.invariants = detail::invariants_from_json(c.at("invariants"));
      run.replay_command = c.at("replay_command").get<std::string>();
      r.runs.push_back(std::move(run));
    }
    const campaign_definition& d = r.definition;
    if (d.scenarios.empty() || d.policies.empty() || d.first_seed > d.last_seed ||
        d.last_seed - d.first_seed >= max_campaign_seeds ||
        d.scenario_hashes.size() != d.scenarios.size() || r.shard.count < 1 || r.shard.index < 1 ||
        r.shard.index > r.shard.count || r.expected_runs != shard_size(d, r.shard)) {
      return Status(errc::parse_error, source +
                                           ": inconsistent campaign result (definition, "
                                           "shard and expected_runs do not agree)");
    }
    for (const auto& p : d.policies) {
      if (!is_policy(p)) return Status(errc::parse_error, source + ": unknown policy '" + p + "'");
    }
    return r;
  } catch (const json::exception& e) {
    return Status(errc::parse_error, source + ": malformed campaign result: " + e.what());
  }
}

Result<campaign_result> load_campaign_json(const std::string& path) {
  auto text = read_text_file(path);
  if (!text.ok()) return text.status();
  return parse_campaign_json(*text, path);
}

Result<campaign_merge> merge_campaigns(
    const std::vector<std::pair<std::string, campaign_result>>& shards) {
  if (shards.empty()) return Status(errc::invalid_argument, "no shard results to merge");
  const auto& [name0, first] = shards.front();
  const campaign_definition& d = first.definition;
  const unsigned count = first.shard.count;
  std::vector<std::string> problems;
  std::vector<std::string> gaps;
  std::map<unsigned, std::string> seen;               // shard index -> file
  std::map<std::uint64_t, const campaign_run*> by_k;  // canonical order
  for (const auto& [name, r] : shards) {
    if (const std::string diff = first_difference(d, r.definition); !diff.empty()) {
      problems.push_back(name + " is from a different campaign than " + name0 + ": " + diff);
      continue;
    }
    if (r.shard.count != count) {
      problems.push_back(name + " is shard " + shard_name(r.shard) + " but " + name0 + " is " +
                         shard_name(first.shard) + ": the shard counts differ");
      continue;
    }
    if (const auto [at, fresh] = seen.emplace(r.shard.index, name); !fresh) {
      problems.push_back("shard " + shard_name(r.shard) + " is given twice: " + at->second +
                         " and " + name + " overlap");
      continue;
    }
    // A shard runs its items in canonical order: its runs are a prefix of them.
    std::uint64_t k = r.shard.index - 1;
    for (std::size_t i = 0; i < r.runs.size(); ++i, k += count) {
      const campaign_run& c = r.runs[i];
      const auto at = index_of(d, c);
      if (!at || *at != k) {
        problems.push_back(name + ": run " + std::to_string(i + 1) + " (" + c.scenario + " " +
                           c.policy + " seed " + std::to_string(c.seed) +
                           ") does not belong there in shard " + shard_name(r.shard));
        break;
      }
      by_k[k] = &c;
    }
    if (r.runs.size() < r.expected_runs || !r.complete) {
      gaps.push_back("shard " + shard_name(r.shard) + " (" + name + ") " +
                     (r.interrupted_by.empty() ? std::string("is incomplete")
                                               : "was stopped early by " + r.interrupted_by) +
                     ": " + std::to_string(r.runs.size()) + " of " +
                     std::to_string(r.expected_runs) + " runs");
    }
  }
  if (!problems.empty()) {
    std::string message = "these shard results do not form one campaign:";
    for (const auto& p : problems)
      message += "\n  " + p;
    return Status(errc::invalid_argument, message);
  }
  std::string missing;
  unsigned n_missing = 0;
  for (unsigned i = 1; i <= count; ++i) {
    if (seen.count(i) != 0) continue;
    if (n_missing++ < 20) missing += (missing.empty() ? "" : ", ") + shard_name({i, count});
  }
  if (n_missing > 0) {
    if (n_missing > 20) missing += ", ...";
    gaps.insert(gaps.begin(), std::to_string(n_missing) + " of " + std::to_string(count) +
                                  " shards missing: " + missing);
  }
  campaign_merge out;
  out.merged.definition = d;
  out.merged.shard = {1, 1};
  out.merged.expected_runs = d.size();
  out.merged.complete = gaps.empty();
  for (const auto& [k, c] : by_k)
    out.merged.runs.push_back(*c);
  for (const auto& [name, r] : shards)
    out.merged.merged_from.push_back(name);
  out.gaps = std::move(gaps);
  return out;
}

}  // namespace ptreclaim::sim
