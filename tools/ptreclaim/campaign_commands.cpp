// `ptreclaim campaign` (one shard of a seed campaign) and `ptreclaim campaign merge` (shards
// joined into one verdict): the options checked and turned into a request. The partition, the
// verdict and the merge rules are the libraries' (ptreclaim/sim/campaign.hpp,
// ptreclaim/report/campaign.hpp); the commands themselves are ptreclaim/report/command.hpp's.
#include <string>

#include "command_support.hpp"
#include "ptreclaim/sim/campaign.hpp"

namespace ptreclaim::tool {

int cmd_campaign(const cli_args& a) {
  refuse_recording(a, "campaign");
  if (a.scenario_given || a.policy_given)
    throw usage_error{"campaign takes lists: --scenarios a,b,... and --policies x,y,..."};
  if (!a.csv.empty() || !a.report.empty())
    throw usage_error{"campaign writes --json only (no --csv or --report)"};
  if (a.executor != "deterministic") {
    throw usage_error{
        "campaign runs the deterministic executor only (its failures must replay exactly)"};
  }
  if (!a.seed.empty()) throw usage_error{"campaign takes --seeds A..B, not --seed"};
  if (a.seeds.empty()) throw usage_error{"campaign needs --seeds A..B (e.g. --seeds 1..100)"};

  sim::campaign_definition d;
  d.scenarios =
      split_commas(a.scenarios.empty() ? std::string(sim::default_scenario_name) : a.scenarios);
  for (const ptreclaim::reclaim::policy_kind k : parse_policies(a.policies, true))
    d.policies.emplace_back(ptreclaim::reclaim::policy_name(k));
  if (d.policies.empty()) d.policies = sim::policy_names();
  auto seeds = sim::parse_seed_range(a.seeds);
  if (!seeds.ok()) throw usage_error{seeds.status().message()};
  d.first_seed = seeds->first;
  d.last_seed = seeds->second;
  auto shard = sim::parse_shard(a.shard.empty() ? "1/1" : a.shard);
  if (!shard.ok()) throw usage_error{shard.status().message()};
  sim::command_request r = make_request(a, sim::command_kind::campaign, true);
  d.cpus = r.options.cpus;
  d.ops_per_cpu = r.options.ops_per_cpu;
  d.costs = a.costs;
  d.expect_violation = a.expect_violation;
  r.campaign = std::move(d);
  r.shard = *shard;
  return sim::run_command(r);
}

int cmd_campaign_merge(const cli_args& a) {
  refuse_recording(a, "campaign merge");
  if (!a.csv.empty() || !a.report.empty())
    throw usage_error{"campaign merge writes --json only (no --csv or --report)"};
  if (!a.scenarios.empty() || !a.policies.empty() || !a.seeds.empty() || !a.shard.empty())
    throw usage_error{"campaign merge takes shard files only: the campaign is defined in them"};
  sim::command_request r;
  r.outputs.json = a.json;
  r.outputs.command = a.command_line;
  r.quiet = a.quiet;
  return sim::merge_command(r, a.merge_files);
}

}  // namespace ptreclaim::tool
