// The commands of the `ptreclaim` tool as library routines, so the tool only parses its command
// line and dispatches (docs/tool.md lists the commands, options and exit codes).
//
// run, replay, compare, scale and campaign share one routine, run_command(): prepare (load the
// scenario with its cost file, or the campaign's scenarios: exit 2 on bad input; check every
// output before any work: exit 3) -> run (a progress line; sweeps save their JSON as runs
// finish) -> print the table -> write the outputs (exit 3 on failure) -> finish (the verdict, or
// 130/143 after a stop request). What differs per command is chosen by command_kind.
// campaign merge, calibrate and scenarios have their own routines below.
#pragma once

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ptreclaim/reclaim/policy.hpp"
#include "ptreclaim/report/output.hpp"
#include "ptreclaim/report/report.hpp"
#include "ptreclaim/scenario/scenario.hpp"
#include "ptreclaim/sim/campaign.hpp"
#include "ptreclaim/sim/engine.hpp"

namespace ptreclaim::sim {

enum class command_kind { run, replay, compare, scale, campaign, tour };

// Everything a command needs, already parsed (strings checked, numbers converted).
struct command_request {
  command_kind kind = command_kind::compare;
  // run, replay, compare, scale: a built-in scenario name or a .toml file.
  std::string scenario = std::string(default_scenario_name);
  // The cost file that wins over the scenario's [cost] file and the built-in default ("": none).
  // A campaign takes its own (campaign.costs).
  std::string costs;
  // Executor, CPUs, seed, ops, quiet and the stop flag (options.policy is set per run).
  run_options options;
  // run, replay: at most one (none: the build's default policy); compare, scale: none = all.
  std::vector<reclaim::policy_kind> policies;
  std::vector<unsigned> cpu_counts;  // scale: the CPU counts to sweep
  std::string seed_text;             // replay: the seed as given (options.seed holds its value)
  campaign_definition campaign;      // campaign: the definition (its scenarios are loaded here)
  shard_spec shard;                  // campaign: the shard to run
  bool expect_violation = false;
  // run, replay: --trace FILE (the run as Chrome trace-event JSON, at most trace_limit bytes)
  // and --frame F (the frame's story, printed with the run and put into its JSON). A replay of
  // a failing run without --frame tells the story of the first violation's frame (its second
  // run records it).
  std::uint64_t trace_limit = recording{}.trace_limit_bytes;
  std::optional<std::uint32_t> frame;
  output_paths outputs;   // --json, --csv, --report, --trace and the command line
  bool quiet = false;     // print nothing but errors and requested outputs
  bool progress = false;  // draw a progress line on `err`
  std::FILE* out = stdout;
  std::FILE* err = stderr;
};

// Runs the command and returns its exit status (exit_code, or 130/143 after a stop request);
// every message goes to request.out (tables, the verdict) or request.err ("ptreclaim: ...").
[[nodiscard]] int run_command(const command_request& request);

// How a command ends once its outputs are written: after a stop request (request.options.stop)
// a line saying where the finished runs are, the verdict's failure if any, and 130/143; else the
// verdict (its reason on `out` when tables are printed, on `err` as an error otherwise).
// `complete`: whether the result holds every run.
[[nodiscard]] int finish_command(const command_request& request, const verdict& v, bool complete);

// The replay check: the same seed run twice must give the same trace hash. nullopt when they
// agree, else "replay diverged: seed SEED gave trace hashes A and B (nondeterminism)".
[[nodiscard]] std::optional<std::string> replay_divergence(const run_result& first,
                                                           const run_result& second,
                                                           std::string_view seed);

// `campaign merge`: joins shard result files into one campaign (request.outputs: --json only),
// prints the table, writes the JSON and judges it; gaps (missing or stopped shards) make an
// otherwise passing merge exit 3, since there is no verdict for the whole.
[[nodiscard]] int merge_command(const command_request& request,
                                const std::vector<std::string>& shard_files);

// `calibrate`: measures the cost model for budget_ms and writes it as a cost file to `output`
// ('-' = stdout), headed by when and where it was measured (machine_description()). The output
// is checked before measuring.
struct calibrate_request {
  std::string output = "ptreclaim-costs.toml";
  unsigned budget_ms = 2000;
  bool quiet = false;
  bool progress = false;
  std::FILE* out = stdout;
  std::FILE* err = stderr;
};
[[nodiscard]] int calibrate_command(const calibrate_request& request);

// `scenarios`: every built-in scenario with its summary, kind, CPUs, domains, devices, IOMMUs
// and hotplug, then the default's name (nothing when quiet). exit_error if a built-in is invalid.
[[nodiscard]] int list_scenarios_command(bool quiet, std::FILE* out = stdout,
                                         std::FILE* err = stderr);
// `scenarios show NAME`: a built-in's TOML, or a file's text once it is validated (exit_usage
// with the reason when it is not a valid scenario).
[[nodiscard]] int show_scenario_command(const std::string& name, std::FILE* out = stdout,
                                        std::FILE* err = stderr);

}  // namespace ptreclaim::sim
