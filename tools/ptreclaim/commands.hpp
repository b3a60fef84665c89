// The ptreclaim commands: what main.cpp dispatches to after parsing. Each turns the parsed
// strings into a request for the report library (ptreclaim/report/command.hpp), which runs the
// command, and returns its exit status (docs/tool.md).
#pragma once

#include <string>
#include <vector>

#include "ptreclaim/reclaim/policy.hpp"
#include "ptreclaim/scenario/scenario.hpp"

namespace ptreclaim::tool {

inline constexpr const char* usage_line =
    "usage: ptreclaim [tour|run|compare|replay SEED|scale|campaign [merge FILE...]|calibrate|"
    "scenarios [show NAME]] [options]\n"
    "       ptreclaim --help   (ptreclaim COMMAND --help for a command's options)";

// Everything the command line can say; strings are interpreted per command.
struct cli_args {
  std::string scenario = std::string(sim::default_scenario_name);
  bool scenario_given = false;
  std::string policy;  // run/replay: one; compare/scale: a comma-separated list
  bool policy_given = false;
  std::string executor = "deterministic";
  std::string cpus;  // run/compare/replay/campaign: one number; scale: a list
  std::string seed;
  std::string ops;
  std::string json;
  std::string csv;
  std::string report;
  std::string costs;  // --costs FILE: replaces the scenario's cost model
  // run / replay: --trace FILE, --trace-limit SIZE, --frame F
  std::string trace;
  std::string trace_limit;
  std::string frame;
  bool expect_violation = false;
  bool quiet = false;
  // calibrate
  std::string output = "ptreclaim-costs.toml";
  unsigned budget_ms = 2000;
  // replay / scenarios show
  std::string replay_seed;
  std::string show_name;
  // campaign
  std::string scenarios;  // comma-separated
  std::string policies;   // comma-separated
  std::string seeds;      // A..B
  std::string shard;      // K/N
  std::vector<std::string> merge_files;
  std::string command_line;
};

// A usage error: message + usage line, exit 2.
struct usage_error {
  std::string message;
};

int fail(int code, const std::string& message);

int cmd_tour(const cli_args& a);
int cmd_run(const cli_args& a);
int cmd_replay(const cli_args& a);
int cmd_compare(const cli_args& a);
int cmd_scale(const cli_args& a);
int cmd_campaign(const cli_args& a);
int cmd_campaign_merge(const cli_args& a);
int cmd_calibrate(const cli_args& a);
int cmd_scenarios_list(const cli_args& a);
int cmd_scenarios_show(const cli_args& a);

// Shared by the command files.
std::uint64_t parse_u64(const std::string& text, const std::string& what);
std::vector<std::string> split_commas(const std::string& text);
unsigned parse_cpus(const std::string& text);
// --trace-limit: bytes, with an optional K, M or G suffix (powers of 1024).
std::uint64_t parse_size(const std::string& text, const std::string& what);
// Refuses --trace, --trace-limit and --frame for a command that does not record one run.
void refuse_recording(const cli_args& a, const std::string& command);
// --policy/--policies: registry names, parsed once here; a usage_error lists the valid ones.
std::vector<ptreclaim::reclaim::policy_kind> parse_policies(const std::string& text,
                                                            bool allow_many);

}  // namespace ptreclaim::tool
