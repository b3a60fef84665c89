// The engine: runs one scenario under one reclamation policy on one executor and measures it.
// This header is the contract between the front half of sim (scenarios, metrics, reports, the
// tool) and the engine (workload drivers over page tables, the IOMMU model, the policies and the
// executors). Everything a run reports is described in metrics.hpp.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ptreclaim/base/status.hpp"
#include "ptreclaim/reclaim/policy.hpp"
#include "ptreclaim/scenario/scenario.hpp"
#include "ptreclaim/sim/interrupt.hpp"
#include "ptreclaim/sim/metrics.hpp"

namespace ptreclaim::sim {

enum class executor_kind : std::uint8_t {
  deterministic,  // one OS thread, seeded interleaving, virtual time and the cost model
  threaded,       // one OS thread per simulated CPU, device and IOMMU engine; real time
};
[[nodiscard]] std::string_view executor_name(executor_kind k) noexcept;  // "deterministic"
[[nodiscard]] Result<executor_kind> parse_executor(std::string_view name);

// What a run records besides its metrics (run_options::record). Deterministic executor only
// (run() refuses it otherwise). Off, it costs nothing; on, it never changes the run: the same
// seed gives the same trace hash with and without it.
struct recording {
  // The run as a Chrome trace-event JSON document (Perfetto UI, chrome://tracing): a track per
  // CPU (operations, tasklet / softirq / work / timer runs, retires and frees), per IOMMU
  // invalidation queue (each descriptor as the hardware processed it, and each flush from
  // submission to the completion of its wait) and per device (DMA bursts, violations), plus the
  // frames pending. At most trace_limit_bytes long: events past the bound are dropped and the
  // document says so (otherData.dropped_events).
  bool chrome_trace = false;
  std::uint64_t trace_limit_bytes = std::uint64_t{64} << 20;
  // The timeline of this frame (run_result::story).
  std::optional<std::uint32_t> frame;
  std::string command;  // the command line, put into the trace's metadata

  // Filled by run():
  std::string trace_json;
  std::uint64_t trace_events = 0;   // events written
  std::uint64_t trace_dropped = 0;  // events past the bound
};
inline constexpr std::uint64_t min_trace_limit_bytes = std::uint64_t{64} << 10;

struct run_options {
  // Parsed once at the edge (the tool's --policy, a campaign file) by reclaim::parse_policy,
  // whose error lists the valid names.
  reclaim::policy_kind policy = reclaim::default_policy();
  executor_kind executor = executor_kind::deterministic;
  unsigned cpus = 0;                  // 0 = the scenario's; else 1 .. limits::max_cpus
  std::optional<std::uint64_t> seed;  // else the scenario's seed, else a fresh one
  std::uint64_t ops_per_cpu = 0;      // 0 = the scenario's duration.ops_per_cpu
  bool quiet = false;                 // no diagnostics on stderr from the engine
  // Called with the fraction done (0..1), at most ~20 times a second; may be empty. The
  // deterministic executor calls it from the thread that called run(); the threaded one from a
  // helper thread while that thread is blocked in the executor (never both at once: the helper
  // is joined before run() reports 1.0).
  std::function<void(double fraction)> progress;
  // When set and requested (interrupt.hpp), each CPU stops its workload before its next
  // operation; the run drains, tears down and returns a result with complete = false.
  const stop_flag* stop = nullptr;
  // Record a trace and/or a frame's story (recording); nullptr: nothing is recorded.
  recording* record = nullptr;
};

// Runs `s` with `options`. Returns a run_result whenever the run completed, whatever the
// invariants said (violations are results, not errors); an error Status only when the run could
// not be carried out (invalid options, unknown policy: invalid_argument; resources: no_memory;
// engine missing: not_supported). Blocks until done; call from a normal thread, not re-entrant.
// The result's seed is the one actually used, so it can be replayed.
[[nodiscard]] Result<run_result> run(const scenario& s, const run_options& options);

// The names of every policy in the registry (reclaim/policies.def), in its order (report order).
[[nodiscard]] const std::vector<std::string>& policy_names();
// The registry's safe flag by name (false for the canaries); precondition: a known name.
[[nodiscard]] bool policy_is_safe(std::string_view name);
[[nodiscard]] bool is_policy(std::string_view name) noexcept;

// The command line of a run: scenario, policy, executor, CPUs, seed, any ops override and the
// cost file ("ptreclaim run --scenario dma-storm --policy immediate --executor deterministic
// --cpus 4 --seed 42"). With the deterministic executor it reproduces the run exactly; with
// the threaded one it only reruns it. The engine puts it in run_result::violations.
[[nodiscard]] std::string replay_command(const scenario& s, const run_options& options,
                                         std::uint64_t seed);

// A fresh random seed (std::random_device), for runs that were not given one. Print it.
[[nodiscard]] std::uint64_t fresh_seed();

// ---- sweeps built on run() (implemented with the reports, not by the engine) ---------------
// Progress for a sweep: the run being started ("xen-tasklet", "flush-epoch @ 16 cpus") and the
// overall fraction done.
using sweep_progress = std::function<void(std::string_view label, double fraction)>;

// Called after each run of a sweep with the results so far (complete = false until the last),
// so they can be saved as they come (ptreclaim/report/output.hpp's result_writer::checkpoint).
template <class Result>
using sweep_checkpoint = std::function<void(const Result& so_far)>;

// Runs `s` under every policy in `policies` (empty = every policy of the registry, in its
// order) with the same seed (base's,
// else the scenario's, else a fresh one), executor and CPU count. base.policy and
// base.progress are ignored. Stops at the first run error and returns it. When base.stop is
// requested, returns the runs done so far with complete = false (the run in flight stops early
// and is kept, itself marked incomplete).
[[nodiscard]] Result<compare_result> run_compare(
    const scenario& s, const run_options& base, const std::vector<reclaim::policy_kind>& policies,
    const sweep_progress& progress = {}, const sweep_checkpoint<compare_result>& checkpoint = {});
// Runs every policy x every CPU count (each 1 .. limits::max_cpus), the same seed throughout.
// Stop requests as run_compare.
[[nodiscard]] Result<scale_result> run_scale(const scenario& s, const run_options& base,
                                             const std::vector<reclaim::policy_kind>& policies,
                                             const std::vector<unsigned>& cpu_counts,
                                             const sweep_progress& progress = {},
                                             const sweep_checkpoint<scale_result>& checkpoint = {});

}  // namespace ptreclaim::sim
