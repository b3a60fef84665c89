// Reports: turning run results (metrics.hpp) into what people and scripts read.
//   - tables for a terminal (format_table), one line per policy, readable at a glance;
//   - JSON (nlohmann-json underneath) and CSV of every result type, for scripts;
//   - an HTML report folder: a self-contained page with the tables and gnuplot plots embedded
//     as inline SVG, the JSON beside it;
//   - the verdict (exit status and one-line reason) the tool returns;
//   - a progress line for terminals.
// Nothing here runs a simulation; every function is deterministic given its inputs (except the
// HTML writer, which runs gnuplot as a subprocess, and the progress printer, which reads a clock).
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>

#include "ptreclaim/base/status.hpp"
#include "ptreclaim/sim/metrics.hpp"

namespace ptreclaim::sim {

// ---- tables --------------------------------------------------------------------------------
// Comparison table: policy | safe? | ops/s | vs immediate | inv/freed table | peak pending |
// p99 retire->free | violations | invariants. The ratio column is "-" when no immediate run.
[[nodiscard]] std::string format_table(const compare_result& r);
// One run: the same row, then every metric and each invariant with its reason.
[[nodiscard]] std::string format_run(const run_result& r);
// A frame's story (run_result::story): its events in time order, one line each (wrapped), and
// the conclusion. format_run appends it when the run has one.
[[nodiscard]] std::string format_story(const frame_story& s);
// Throughput per policy (rows) x CPU count (columns), plus a speed-up line per policy.
[[nodiscard]] std::string format_scale_table(const scale_result& r);

// ---- JSON / CSV ----------------------------------------------------------------------------
// JSON documents with every field (histograms as non-empty buckets [lower, upper, count] plus
// p50/p90/p99/p999/max). `indent` < 0: one line.
[[nodiscard]] std::string to_json(const run_result& r, int indent = 2);
[[nodiscard]] std::string to_json(const compare_result& r, int indent = 2);
[[nodiscard]] std::string to_json(const scale_result& r, int indent = 2);
// CSV with a header line and one row per run (the same columns for every result type; series and
// histograms are summarised by their percentiles and peak; full data is in the JSON).
[[nodiscard]] std::string to_csv(const run_result& r);
[[nodiscard]] std::string to_csv(const compare_result& r);
[[nodiscard]] std::string to_csv(const scale_result& r);

// Writes `text` to `path`, creating parent folders, atomically (output.hpp's write_file_atomic);
// invalid_argument with the path and the OS reason when it cannot.
[[nodiscard]] Status write_text_file(const std::string& path, std::string_view text);

// ---- HTML report ---------------------------------------------------------------------------
struct report_input {
  std::string title = "ptreclaim report";
  std::string command;            // the command line that produced it (shown verbatim)
  std::optional<run_result> run;  // any subset of the three may be present
  std::optional<compare_result> compare;
  std::optional<scale_result> scale;
};

struct report_options {
  std::string gnuplot = "gnuplot";  // program name or path (PATH lookup)
  bool keep_plot_sources = true;    // leave plots/*.gp and *.dat for re-plotting
};

struct report_outcome {
  std::string html_path;     // DIR/index.html
  std::string json_path;     // DIR/results.json
  bool plotted = false;      // gnuplot ran and every plot was embedded
  std::string plot_message;  // why not ("gnuplot not found in PATH: ...")
};

// Writes DIR/index.html (tables + plots: throughput per policy, pending frames over time,
// retire-to-free latency distribution, throughput vs CPUs — each when the data exists) and
// DIR/results.json. Without gnuplot the page says so in a visible box and still has every table.
// Errors: invalid_argument when DIR cannot be created or written.
[[nodiscard]] Result<report_outcome> write_html_report(const std::string& dir,
                                                       const report_input& in,
                                                       const report_options& options = {});
// True when `program` can be run (found on PATH or an executable path).
[[nodiscard]] bool program_available(const std::string& program);

// ---- verdict -------------------------------------------------------------------------------
// Exit codes of the tool.
enum exit_code : int {
  exit_ok = 0,      // every safety invariant held (or: the expected violation was caught)
  exit_unsafe = 1,  // an invariant failed, or an expected violation was NOT caught
  exit_usage = 2,   // bad arguments or a bad scenario / cost file
  exit_error = 3,   // the run could not be carried out (engine error, I/O)
};

struct verdict {
  int code = exit_ok;
  std::string reason;  // one line, always set ("ok: all 6 invariants held", "S1 failed: ...")
};

// A single run. Without expect_violation: ok iff every checked invariant held. With it: ok iff
// S1 or S3 failed (the canary caught its violation) while S2, S4, S5 and L1 held; otherwise
// exit_unsafe ("expected a violation but none was caught: the checker may be broken").
[[nodiscard]] verdict judge(const run_result& r, bool expect_violation);
// Several runs: safe policies are judged as single runs without expectation; unsafe canary
// policies are reported but only judged when expect_violation (then each must catch one).
[[nodiscard]] verdict judge(const compare_result& r, bool expect_violation);
[[nodiscard]] verdict judge(const scale_result& r, bool expect_violation);

// ---- progress ------------------------------------------------------------------------------
// A one-line progress display on a terminal ("scale sva-kernel  [flush-epoch @ 32 cpus]  42%
// 3.1 s, about 4 s left"): the estimate is the time so far scaled by what is left, shown once
// 2 % is done.
// Silent unless enabled, and silent during the first `delay` (runs shorter than that print
// nothing); redraws at most 10 times a second; finish() erases the line. Not thread-safe.
class progress_line {
 public:
  progress_line(std::FILE* out, bool enabled,
                std::chrono::milliseconds delay = std::chrono::milliseconds(1000));
  ~progress_line();
  progress_line(const progress_line&) = delete;
  progress_line& operator=(const progress_line&) = delete;

  void set_label(std::string label);
  void update(double fraction);  // 0..1
  void finish();
  // Whether stderr is a terminal and the user did not ask for quiet.
  [[nodiscard]] static bool stderr_wants_progress(bool quiet) noexcept;
  // ", about 4 s left" for `fraction` done in `elapsed_s`; "" while too early to tell.
  [[nodiscard]] static std::string eta_text(double fraction, double elapsed_s);

 private:
  std::FILE* out_;
  bool enabled_;
  bool drawn_ = false;
  std::chrono::milliseconds delay_;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_{};
  std::string label_;
};

}  // namespace ptreclaim::sim
