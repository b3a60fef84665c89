// `ptreclaim campaign` (one shard of a seed campaign) and `ptreclaim campaign merge` (shards
// joined into one verdict). The partition, the verdict and the merge rules are the library's
// (ptreclaim/sim/campaign.hpp).
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "command_support.hpp"
#include "ptreclaim/sim/campaign.hpp"

namespace ptreclaim::tool {

int cmd_campaign(const cli_args& a) {
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
  sim::run_options o = base_options(a, true);
  d.cpus = o.cpus;
  d.ops_per_cpu = o.ops_per_cpu;
  d.costs = a.costs;
  d.expect_violation = a.expect_violation;
  auto scenarios = sim::load_campaign_scenarios(d);
  if (!scenarios.ok()) return fail(sim::exit_usage, scenarios.status().message());

  sim::result_writer out = make_writer(a);
  if (const Status st = out.check(); !st.ok()) return fail(sim::exit_error, st.message());
  progress_sink progress(
      a, "campaign " + std::to_string(shard->index) + "/" + std::to_string(shard->count));
  auto r =
      sim::run_campaign(d, *scenarios, *shard, o, progress.sweep(),
                        [&out](const sim::campaign_result& so_far) { out.checkpoint(so_far); });
  progress.line.finish();
  if (!r.ok()) return fail(sim::exit_error, "campaign failed: " + r.status().to_string());
  if (print_tables(a)) std::fputs(sim::format_campaign(*r).c_str(), stdout);
  const Status st = out.write(*r);
  print_notes(a, out);
  if (!st.ok()) return fail(sim::exit_error, st.message());
  return finish(a, sim::judge(*r), r->complete);
}

int cmd_campaign_merge(const cli_args& a) {
  if (!a.csv.empty() || !a.report.empty())
    throw usage_error{"campaign merge writes --json only (no --csv or --report)"};
  if (!a.scenarios.empty() || !a.policies.empty() || !a.seeds.empty() || !a.shard.empty())
    throw usage_error{"campaign merge takes shard files only: the campaign is defined in them"};
  sim::result_writer out = make_writer(a);
  if (const Status st = out.check(); !st.ok()) return fail(sim::exit_error, st.message());
  std::vector<std::pair<std::string, sim::campaign_result>> shards;
  for (const auto& file : a.merge_files) {
    auto r = sim::load_campaign_json(file);
    if (!r.ok()) return fail(sim::exit_usage, r.status().message());
    shards.emplace_back(file, std::move(*r));
  }
  auto m = sim::merge_campaigns(shards);
  if (!m.ok()) return fail(sim::exit_error, "cannot merge: " + m.status().message());
  if (print_tables(a)) std::fputs(sim::format_campaign(m->merged).c_str(), stdout);
  const Status st = out.write(m->merged);
  print_notes(a, out);
  if (!st.ok()) return fail(sim::exit_error, st.message());
  for (const auto& gap : m->gaps)
    std::fprintf(stderr, "ptreclaim: incomplete campaign: %s\n", gap.c_str());
  const sim::verdict v = sim::judge(m->merged);
  if (v.code != sim::exit_ok) return fail(v.code, v.reason);
  if (!m->gaps.empty()) {
    return fail(sim::exit_error,
                "no failure in the runs present, but the campaign is incomplete "
                "(see above): no verdict for the whole");
  }
  if (print_tables(a)) std::printf("%s\n", v.reason.c_str());
  return sim::exit_ok;
}

}  // namespace ptreclaim::tool
