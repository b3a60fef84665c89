// Output files that are never lost silently: every path is checked before the work starts, and
// written atomically after it (a temporary file in the same folder, flushed, then renamed), so
// a reader sees the old file or the new one, never half of one; a failed write is an error
// naming the path and the reason.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "ptreclaim/base/status.hpp"
#include "ptreclaim/report/campaign.hpp"
#include "ptreclaim/report/tour.hpp"
#include "ptreclaim/sim/metrics.hpp"

namespace ptreclaim::sim {

// Whether a file can be written at `path` later: it is not a folder, its folder exists, and a
// file can be created in that folder (a probe file is created and removed: this sees read-only
// file systems and permissions, for root too). invalid_argument: "'PATH': reason".
[[nodiscard]] Status check_output_file(const std::string& path);
// Whether files can be written into `dir`: a writable folder, or a name that does not exist yet
// in a writable folder (it is created when written).
[[nodiscard]] Status check_output_folder(const std::string& dir);

// Writes `text` to `path` atomically (see above); an existing file keeps its permissions, and a
// symbolic link is followed (the link stays). Paths that are not regular files (/dev/null, a
// FIFO) are written directly. On error the temporary file is removed, `path` is left as it was,
// and the status (invalid_argument) reads "cannot write 'PATH': reason".
// Test hook: when the environment variable PTRECLAIM_FAULT_WRITE is set and `path` contains its
// value, the write fails with ENOSPC after half the text went to the temporary file.
[[nodiscard]] Status write_file_atomic(const std::string& path, std::string_view text);

// What a command writes: --json and --csv FILE ('-' = stdout), --report DIR.
struct output_paths {
  std::string json;
  std::string csv;
  std::string report;
  std::string command;  // the command line, shown in the report
  std::string trace;    // --trace FILE (written by the command, checked here)
};

// Checks the outputs before the work and writes them after it; during a sweep, saves the runs
// done so far to the JSON file (not stdout) so that even a killed process leaves them on disk.
class result_writer {
 public:
  explicit result_writer(output_paths paths,
                         std::chrono::milliseconds checkpoint_every = std::chrono::seconds(2));

  // Every path, each error naming its option ("--json 'x/y.json': folder 'x' does not exist").
  [[nodiscard]] Status check() const;
  [[nodiscard]] bool writes_stdout() const noexcept {
    return paths_.json == "-" || paths_.csv == "-";
  }

  // The JSON so far (complete = false): the first call writes, later ones at most every
  // `checkpoint_every`. A failure is noted (notes()) and retried at the next one; the final
  // write() reports its own.
  void checkpoint(const compare_result& so_far);
  void checkpoint(const scale_result& so_far);
  void checkpoint(const campaign_result& so_far);

  // Every requested output; the first failure is returned (the others are still attempted).
  // `title` heads the HTML report.
  [[nodiscard]] Status write(const run_result& r, const std::string& title);
  [[nodiscard]] Status write(const compare_result& r, const std::string& title);
  [[nodiscard]] Status write(const scale_result& r, const std::string& title);
  [[nodiscard]] Status write(const campaign_result& r);  // --json only
  [[nodiscard]] Status write(const tour_result& r);      // --json only

  // Lines for stderr: where the report went, why its plots are missing, failed checkpoints.
  [[nodiscard]] std::vector<std::string> take_notes();

 private:
  void save_checkpoint(const std::string& json);
  Status write_text(const std::string& option, const std::string& path, const std::string& text);
  template <class R>
  Status write_all(const R& r, const std::string& title);

  output_paths paths_;
  std::chrono::milliseconds every_;
  std::chrono::steady_clock::time_point last_{};
  bool checkpointed_ = false;
  std::vector<std::string> notes_;
};

}  // namespace ptreclaim::sim
