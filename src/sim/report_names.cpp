// Names shared by the engine, the reports and the tool: policies, executors, invariants, and the
// replay command line. (The engine implementation of run() is elsewhere; the reports that print
// these names are the report library's.)
#include <array>
#include <string>

#include "ptreclaim/reclaim/policy.hpp"
#include "ptreclaim/sim/engine.hpp"
#include "ptreclaim/sim/metrics.hpp"

namespace ptreclaim::sim {

std::string_view executor_name(executor_kind k) noexcept {
  return k == executor_kind::threaded ? "threaded" : "deterministic";
}

Result<executor_kind> parse_executor(std::string_view name) {
  if (name == "deterministic") return executor_kind::deterministic;
  if (name == "threaded") return executor_kind::threaded;
  return Status(errc::invalid_argument,
                "unknown executor '" + std::string(name) + "' (known: deterministic, threaded)");
}

// The reclamation layer's registry (policies.def) is the one list.
const std::vector<std::string>& policy_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> out;
    for (const reclaim::policy_info& p : reclaim::policy_registry)
      out.emplace_back(p.name);
    return out;
  }();
  return names;
}

bool is_policy(std::string_view name) noexcept {
  return reclaim::find_policy(name).has_value();
}

bool policy_is_safe(std::string_view name) {
  const auto k = reclaim::find_policy(name);
  PTR_ASSERT_MSG(k.has_value(), "policy_is_safe: unknown policy name");
  return reclaim::policy_is_safe(*k);
}

std::string_view invariant_name(invariant i) noexcept {
  static constexpr std::array<std::string_view, invariant_count> names{"S1", "S2", "S3", "S4",
                                                                       "S5", "S6", "L1"};
  return names[static_cast<std::size_t>(i)];
}

std::string_view invariant_summary(invariant i) noexcept {
  static constexpr std::array<std::string_view, invariant_count> text{
      "no device walk reads a frame that is not a live page table of the walking domain",
      "every frame is freed exactly once; at teardown the pool is whole (no leak)",
      "a retired frame is freed only after a covering invalidation, started after its retire, "
      "completed",
      "no CPU hotplug sequence loses or double-frees a retired frame; no worker runs on the wrong "
      "CPU",
      "frames pending never exceed the configured bound",
      "lazy DMA: no IOVA is allocated again while a translation of its previous mapping may "
      "still be cached",
      "after the workload stops, every retired frame is freed within bounded time",
  };
  return text[static_cast<std::size_t>(i)];
}

namespace {
// Quotes a shell word only when needed.
std::string shell_word(const std::string& w) {
  bool plain = !w.empty();
  for (char c : w) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_' || c == '.' || c == '/' || c == ':' || c == ',' ||
                    c == '=';
    if (!ok) plain = false;
  }
  if (plain) return w;
  std::string q = "'";
  for (char c : w) {
    if (c == '\'')
      q += "'\\''";
    else
      q += c;
  }
  return q + "'";
}
}  // namespace

std::string replay_command(const scenario& s, const run_options& options, std::uint64_t seed) {
  std::string where = s.source;
  if (where.rfind("builtin:", 0) == 0) where = where.substr(8);
  if (where.empty()) where = s.name;
  std::string cmd = "ptreclaim run --scenario " + shell_word(where) + " --policy " +
                    std::string(reclaim::policy_name(options.policy)) + " --executor " +
                    std::string(executor_name(options.executor)) + " --cpus " +
                    std::to_string(options.cpus != 0 ? options.cpus : s.cpus) + " --seed " +
                    std::to_string(seed);
  if (options.ops_per_cpu != 0) cmd += " --ops " + std::to_string(options.ops_per_cpu);
  if (s.cost_file) cmd += " --costs " + shell_word(*s.cost_file);
  return cmd;
}

}  // namespace ptreclaim::sim
