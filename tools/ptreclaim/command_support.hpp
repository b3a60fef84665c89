// What the command files share: option parsing helpers, the progress line, and how a command
// ends (outputs written, then the verdict or the interruption). Private to the tool.
#pragma once

#include <cstdio>
#include <functional>
#include <string>
#include <string_view>

#include "commands.hpp"
#include "ptreclaim/sim/engine.hpp"
#include "ptreclaim/sim/interrupt.hpp"
#include "ptreclaim/sim/output.hpp"
#include "ptreclaim/sim/report.hpp"

namespace ptreclaim::tool {

// Options every run command shares (executor, CPUs, seed, ops, quiet, the stop flag).
sim::run_options base_options(const cli_args& a, bool allow_cpus);
// The outputs asked for, not yet checked.
sim::result_writer make_writer(const cli_args& a);
// Whether the human-readable table may go to stdout (not when JSON or CSV is written there).
bool print_tables(const cli_args& a);
// Prints the notes the writer collected (report path, plot message, failed checkpoints).
void print_notes(const cli_args& a, sim::result_writer& w);
// The exit status of a finished command: the verdict, or 130/143 after a stop request (the
// verdict's failures are still said). `complete` is whether the result holds every run.
int finish(const cli_args& a, const sim::verdict& v, bool complete);

// Writes the result, then finishes (a write failure is exit 3 with path and reason).
template <class R>
int write_and_finish(const cli_args& a, sim::result_writer& w, const R& r, const std::string& title,
                     const sim::verdict& v) {
  const Status st = w.write(r, title);
  print_notes(a, w);
  if (!st.ok()) return fail(sim::exit_error, st.message());
  return finish(a, v, r.complete);
}

// A progress line on a terminal for sweeps and single runs.
struct progress_sink {
  sim::progress_line line;
  std::string prefix;
  progress_sink(const cli_args& a, std::string what)
      : line(stderr, sim::progress_line::stderr_wants_progress(a.quiet)), prefix(std::move(what)) {}
  sim::sweep_progress sweep() {
    return [this](std::string_view label, double f) {
      line.set_label(prefix + "  [" + std::string(label) + "]");
      line.update(f);
    };
  }
  std::function<void(double)> single() {
    line.set_label(prefix);
    return [this](double f) { line.update(f); };
  }
};

}  // namespace ptreclaim::tool
