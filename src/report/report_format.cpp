// Helpers private to the report library (report_format.hpp) that are not table cells: the
// replay line of a failed run and reading a whole file.
#include "report/report_format.hpp"

#include <cerrno>
#include <fstream>
#include <sstream>
#include <string>
#include <system_error>

namespace ptreclaim::sim::detail {

std::string replay_text(const violation_summary& v) {
  if (v.replay_command.empty()) return {};
  if (v.replay_exact) return "replay: " + v.replay_command;
  std::string out = "rerun: " + v.replay_command +
                    " (threaded runs are not reproducible: only the deterministic executor "
                    "replays a run exactly";
  if (!v.deterministic_command.empty())
    out += "; the deterministic run that likely shows the same failure: " + v.deterministic_command;
  return out + ")";
}

std::string story_command(const run_result& r) {
  const violation_summary& v = r.violations;
  if (!v.replay_exact || v.replay_command.empty()) return {};
  std::string cmd = v.replay_command;
  const std::string seed = " --seed " + std::to_string(r.seed);
  const auto at = cmd.find(seed);
  const std::string run = "ptreclaim run ";
  if (at == std::string::npos || cmd.rfind(run, 0) != 0) return {};
  cmd.erase(at, seed.size());
  return "ptreclaim replay " + std::to_string(r.seed) + " " + cmd.substr(run.size());
}

}  // namespace ptreclaim::sim::detail
