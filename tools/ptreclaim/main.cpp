// ptreclaim: the command line. It parses arguments and dispatches to the commands
// (commands.cpp, campaign_commands.cpp), which turn the parsed strings into requests for the
// libraries where all logic lives: the report library runs each command (prepare, run, write,
// judge: ptreclaim/report/command.hpp) on the sim library's scenarios, runs, sweeps and
// campaigns. Exit codes: 0 ok, 1 an
// invariant failed (or an expected violation was not caught), 2 usage or input error, 3 the run
// could not be carried out, 130/143 stopped by SIGINT/SIGTERM. See docs/tool.md.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>
#include <iostream>
#include <string>

#include "commands.hpp"
#include "ptreclaim/config.hpp"
#include "ptreclaim/report/report.hpp"

namespace {

namespace sim = ptreclaim::sim;
namespace tool = ptreclaim::tool;
using tool::cli_args;
using tool::usage_error;

int fail_usage(const std::string& message) {
  std::fprintf(stderr, "ptreclaim: %s\n%s\n", message.c_str(), tool::usage_line);
  return sim::exit_usage;
}

void add_common(CLI::App& app, cli_args& a) {
  app.add_option("--scenario", a.scenario, "built-in scenario name or a .toml file")
      ->capture_default_str();
  app.add_option("--policy", a.policy,
                 "policy (run, replay) or comma-separated policies (compare, scale; default: all)");
  app.add_option("--executor", a.executor, "deterministic | threaded")->capture_default_str();
  app.add_option("--cpus", a.cpus, "simulated CPUs (scale: a list such as 1,2,4,...,256)");
  app.add_option("--seed", a.seed, "seed (default: the scenario's, else a fresh one)");
  app.add_option("--ops", a.ops, "operations per CPU (overrides the scenario)");
  app.add_option("--json", a.json, "write JSON results to FILE ('-' = stdout)");
  app.add_option("--csv", a.csv, "write CSV results to FILE ('-' = stdout)");
  app.add_option("--report", a.report, "write an HTML report (tables, plots, JSON) into DIR");
  app.add_option("--costs", a.costs,
                 "cost file for the deterministic executor (default: the scenario's [cost] "
                 "file, else the built-in calibrated costs/default.toml)");
  app.add_option("--trace", a.trace,
                 "run, replay: write the run as Chrome trace-event JSON to FILE (Perfetto UI, "
                 "chrome://tracing)");
  app.add_option("--trace-limit", a.trace_limit,
                 "run, replay: the trace's size bound, e.g. 16M (default 64M; 64K .. 4G)");
  app.add_option("--frame", a.frame,
                 "run, replay: print the story of frame F (allocated, linked, unlinked, retired, "
                 "invalidated, freed, reused, read)");
  app.add_flag("--expect-violation", a.expect_violation,
               "succeed only if the run catches a violation (canaries)");
  app.add_flag("--quiet,-q", a.quiet, "print nothing but errors and requested outputs");
}

int real_main(int argc, char** argv) {
  cli_args a;
  for (int i = 0; i < argc; ++i)
    a.command_line += (i ? " " : "") + std::string(argv[i]);

  CLI::App app{
      "ptreclaim: safe and fast reclamation of IOMMU page-table pages, compared side by side.\n"
      "With no command: the tour (the Xen and the Linux case, every policy, a small and a large\n"
      "simulated CPU count, and what the figures show)."};
  app.set_version_flag("--version", std::string(ptreclaim::config::version));
  app.fallthrough();  // subcommands accept the common options too
  add_common(app, a);
  CLI::App* tour = app.add_subcommand(
      "tour", "the default: the Xen and the Linux case, every policy, 2 CPU counts, findings");
  CLI::App* run = app.add_subcommand("run", "run one scenario under one policy");
  CLI::App* compare =
      app.add_subcommand("compare", "run every policy on one scenario, print one table");
  CLI::App* replay = app.add_subcommand(
      "replay", "re-run a seed (deterministic executor) twice; check the trace hash");
  replay->add_option("SEED", a.replay_seed, "the seed to replay")->required();
  CLI::App* scale = app.add_subcommand("scale", "sweep simulated CPU counts for every policy");
  CLI::App* calibrate =
      app.add_subcommand("calibrate", "measure per-step costs here, write a cost file");
  calibrate->add_option("--output,-o", a.output, "cost file to write ('-' = stdout)")
      ->capture_default_str();
  calibrate->add_option("--budget-ms", a.budget_ms, "time to spend measuring (100 .. 60000)")
      ->check(CLI::Range(100u, 60000u))
      ->capture_default_str();
  CLI::App* campaign = app.add_subcommand(
      "campaign", "run one shard of a seed campaign (every scenario x policy x seed)");
  campaign->fallthrough();
  campaign->add_option("--scenarios", a.scenarios,
                       "comma-separated built-in names or .toml files (default: " +
                           std::string(sim::default_scenario_name) + ")");
  campaign->add_option("--policies", a.policies, "comma-separated policies (default: all)");
  campaign->add_option("--seeds", a.seeds, "seed range A..B (inclusive), or one seed");
  campaign->add_option("--shard", a.shard, "run shard K of N (K/N, 1-based; default 1/1)");
  CLI::App* merge =
      campaign->add_subcommand("merge", "join shard results (--json files) into one verdict");
  merge->add_option("FILE", a.merge_files, "shard results written by campaign --json")
      ->required()
      ->expected(1, -1);
  CLI::App* scenarios = app.add_subcommand("scenarios", "list the built-in scenarios");
  CLI::App* show = scenarios->add_subcommand("show", "print a scenario's TOML");
  show->add_option("NAME", a.show_name, "built-in name or file")->required();
  // The common options live on `app` (fallthrough), so a command's own --help would not list them.
  for (CLI::App* sub : {tour, run, compare, replay, scale, campaign})
    sub->footer(
        "Common options (--scenario, --policy, --executor, --cpus, --seed, --ops, --json, --csv,\n"
        "--report, --costs, --trace, --frame, --quiet, ...): ptreclaim --help lists them all.");
  app.require_subcommand(0, 1);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::cout << app.help();
    return sim::exit_ok;
  } catch (const CLI::CallForAllHelp&) {
    std::cout << app.help("", CLI::AppFormatMode::All);
    return sim::exit_ok;
  } catch (const CLI::CallForVersion&) {
    std::cout << "ptreclaim " << ptreclaim::config::version << "\n";
    return sim::exit_ok;
  } catch (const CLI::ParseError& e) {
    return fail_usage(e.what());
  }
  a.scenario_given = app.count("--scenario") > 0;
  a.policy_given = app.count("--policy") > 0;

  try {
    if (*run) return tool::cmd_run(a);
    if (*replay) return tool::cmd_replay(a);
    if (*scale) return tool::cmd_scale(a);
    if (*merge) return tool::cmd_campaign_merge(a);
    if (*campaign) return tool::cmd_campaign(a);
    if (*calibrate) return tool::cmd_calibrate(a);
    if (*show) return tool::cmd_scenarios_show(a);
    if (*scenarios) return tool::cmd_scenarios_list(a);
    if (*compare) return tool::cmd_compare(a);
    (void)tour;
    return tool::cmd_tour(a);  // `tour`, and no command at all
  } catch (const usage_error& e) {
    return fail_usage(e.message);
  }
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return real_main(argc, argv);
  } catch (const std::exception& e) {
    return tool::fail(sim::exit_error, std::string("internal error: ") + e.what());
  }
}
