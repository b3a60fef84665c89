// What the command files share: turning the parsed strings into a command request for the
// report library (ptreclaim/report/command.hpp), which runs the command. Private to the tool.
#pragma once

#include "commands.hpp"
#include "ptreclaim/report/command.hpp"

namespace ptreclaim::tool {

// Options every run command shares (executor, CPUs, seed, ops, quiet, the stop flag).
sim::run_options base_options(const cli_args& a, bool allow_cpus);
// The request of a run command: its kind, the scenario and --costs, base_options(), the outputs
// asked for, --expect-violation, quiet, and whether stderr shows a progress line.
sim::command_request make_request(const cli_args& a, sim::command_kind kind, bool allow_cpus);
// run, replay: --trace, --trace-limit and --frame checked into the request.
void recording_options(const cli_args& a, sim::command_request& r);

}  // namespace ptreclaim::tool
