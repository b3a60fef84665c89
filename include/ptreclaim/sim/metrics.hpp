// What every run reports: plain value types the engine fills and the reports
// (ptreclaim/report/report.hpp) print. Nothing here runs a simulation. All counters are totals over
// the whole run (every CPU, every IOMMU, every device) unless a field says otherwise.
//
// log_histogram is base/histogram.hpp's, shared with the reclamation layer's statistics.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ptreclaim/base/histogram.hpp"

namespace ptreclaim::sim {

using log_histogram = ptreclaim::log_histogram;

// The safety and liveness invariants (docs/tool.md), in this order.
enum class invariant : std::uint8_t { s1, s2, s3, s4, s5, s6, l1, count_ };
inline constexpr std::size_t invariant_count = static_cast<std::size_t>(invariant::count_);
[[nodiscard]] std::string_view invariant_name(invariant i) noexcept;     // "S1"
[[nodiscard]] std::string_view invariant_summary(invariant i) noexcept;  // one line: what it says

struct invariant_result {
  bool checked = false;  // false: this run could not check it (reason says why); not a failure
  bool held = true;      // meaningful only when checked
  std::string reason;    // failure: what broke, first instance ("frame 812 read by dev 3 ..."),
                         // success: may say how it was checked ("1402 walks, 0 stale reads")
};

// One sample of the pending-frames time series.
struct pending_sample {
  std::uint64_t time_ns = 0;  // run time (virtual or real, see run_result::time_base)
  std::uint64_t frames = 0;   // frames retired and not yet freed, over all CPUs
};

struct device_metrics {
  std::uint64_t translations = 0;  // device translation requests (DMA accesses)
  std::uint64_t faults = 0;        // translation faults (not present, permission): not errors
  std::uint64_t iotlb_hits = 0;
  std::uint64_t iotlb_misses = 0;
  std::uint64_t psc_hits = 0;    // walks that started below the root thanks to a PSC entry
  std::uint64_t psc_misses = 0;  // walks that found no PSC entry at any level
  std::uint64_t pte_reads = 0;   // PTE reads by hardware walks

  [[nodiscard]] double iotlb_hit_rate() const noexcept {
    const auto n = iotlb_hits + iotlb_misses;
    return n ? static_cast<double>(iotlb_hits) / static_cast<double>(n) : 0.0;
  }
  [[nodiscard]] double psc_hit_rate() const noexcept {
    const auto n = psc_hits + psc_misses;
    return n ? static_cast<double>(psc_hits) / static_cast<double>(n) : 0.0;
  }
};

struct invalidation_metrics {
  std::uint64_t flushes = 0;         // invalidate-and-wait rounds completed (over a domain's
                                     // units), by callers and by the policy together
  std::uint64_t caller_flushes = 0;  // of which issued by the mapping caller
  std::uint64_t map_flushes = 0;     // of which after a map, to units in caching mode
  std::uint64_t descriptors = 0;     // invalidation descriptors submitted (all units, all kinds)
  std::uint64_t waits = 0;           // wait descriptors submitted
  std::uint64_t backpressure_flushes = 0;  // producer-side flushes forced by max_pending_frames
  // The busiest IOMMU invalidation queue's processing time (each descriptor's modelled latency,
  // stalls and slow waits) over the run's time, 0..1: near 1 the queue is what limits.
  double busiest_queue = 0.0;
  // The drivers' queue locks (iommu/queue_lock.hpp): the busiest one's hold time over the run's
  // time (0..1), and every unit's acquisitions and time spent waiting for them.
  double busiest_queue_lock = 0.0;
  std::uint64_t queue_lock_acquisitions = 0;
  std::uint64_t queue_lock_wait_ns = 0;
  std::uint64_t queue_lock_max_wait_ns = 0;
  [[nodiscard]] double queue_lock_mean_wait_ns() const noexcept {
    return queue_lock_acquisitions ? static_cast<double>(queue_lock_wait_ns) /
                                         static_cast<double>(queue_lock_acquisitions)
                                   : 0.0;
  }
};

struct reclaim_metrics {
  std::uint64_t tables_released = 0;  // frames handed to the policy by gathers (retire calls)
  std::uint64_t tables_freed = 0;     // of which freed back to the pool during the run
  std::uint64_t peak_pending = 0;     // max frames retired and not freed at any instant
  std::uint64_t pending_bound = 0;    // the configured max_pending_frames (for S5)
  std::uint64_t pending_at_end = 0;   // frames still pending when the workload stopped
  std::uint64_t drain_ns = 0;         // time from workload stop until the last retired frame
                                      // was freed (L1)
  std::vector<pending_sample> pending_series;  // every duration.sample_interval_ns
  log_histogram retire_to_free_ns;             // one value per freed table: free time - retire time
};

struct violation_summary {
  std::uint64_t count = 0;  // violations recorded by the IOMMU model (S1) and ledger
  std::string first;        // the first one in full, multi-line text ("" if none)
  // The command line of the same run ("" if none). Only the deterministic executor replays a
  // run exactly (replay_exact); a threaded run's interleaving is the OS's, so the command only
  // reruns the configuration, and deterministic_command is the same run on the deterministic
  // executor, which replays exactly and likely (not surely) shows the same logical failure.
  std::string replay_command;
  bool replay_exact = false;
  std::string deterministic_command;  // threaded runs only
  // The frame the first violation names, when it names one (`replay` tells its story).
  std::optional<std::uint32_t> first_frame;
};

struct leak_summary {
  bool checked = false;                 // the teardown ledger check ran
  std::uint64_t leaked_frames = 0;      // frames not free at teardown
  std::uint64_t ledger_violations = 0;  // double frees, frees of linked frames, unknown ids
  std::string report;  // mem::frame_pool::leak_report() + ledger reports ("" = whole)
};

struct hotplug_metrics {
  std::uint64_t offlines = 0;
  std::uint64_t onlines = 0;
  std::uint64_t failed_offlines = 0;  // down-prepare then down-failed
  // Times an offline waited (deferred) because its CPU was inside an operation, between a
  // retire and its caller's flush, where Xen's stop_machine cannot stop it either.
  std::uint64_t deferred_offlines = 0;
  std::uint64_t frames_migrated = 0;  // retired frames moved from a dead CPU's queue
};

// Superpages the page tables formed and split (superpage-churn; 0 for the other workloads).
struct superpage_metrics {
  // Fill operations whose last map left the block a 2M superpage coalesced from 4K maps, or a
  // 1G superpage coalesced from 2M maps (the workload checks with a read-only lookup).
  std::uint64_t coalesced_2m = 0;
  std::uint64_t coalesced_1g = 0;
  std::uint64_t tables_coalesced = 0;  // pt::table_stats::coalesced, summed over domains
  std::uint64_t splits = 0;            // pt::table_stats::split, summed over domains
};

// Injected faults (the scenario's [faults] section): what was injected and how the IOMMU driver
// recovered. All zero when the scenario injects nothing (enabled = false).
struct fault_metrics {
  bool enabled = false;                     // the scenario enables at least one fault
  std::uint64_t ite = 0;                    // invalidation time-out errors: waits aborted
  std::uint64_t iqe = 0;                    // invalid-descriptor errors: invalidations refused
  std::uint64_t descriptors_aborted = 0;    // descriptors the units aborted unprocessed
  std::uint64_t resubmissions = 0;          // aborted groups the driver resubmitted
  std::uint64_t stalls = 0;                 // queue stalls
  std::uint64_t stall_ns = 0;               // time they added
  std::uint64_t slow_waits = 0;             // waits that drew an extra delay
  std::uint64_t slow_wait_ns = 0;           // time they added
  std::uint64_t alloc_failures = 0;         // page-table allocations failed by injection
  std::uint64_t mutation_errors = 0;        // workload mutations that failed (no_memory, ...)
  bool devices_through_teardown = false;    // devices kept translating through teardown
  std::uint64_t teardown_translations = 0;  // translations after they would have been stopped
  std::uint64_t detached_contexts = 0;      // context entries teardown cleared first
  [[nodiscard]] std::uint64_t injected() const noexcept {
    return ite + iqe + stalls + slow_waits + alloc_failures + teardown_translations;
  }
};

// DMA (dma-storm only; measured = false elsewhere): IOVAs through the policy in lazy mode, and
// the exposure both modes are measured for.
struct dma_metrics {
  bool measured = false;
  bool lazy = false;                 // caller.flush = "lazy"
  std::uint64_t packets = 0;         // operations x packets_per_op
  std::uint64_t iovas_deferred = 0;  // lazy: IOVAs handed to the policy (retire_deferred)
  std::uint64_t iovas_returned = 0;  // of which given back to the allocator
  std::uint64_t returned_early = 0;  // given back before a covering invalidation completed
  std::uint64_t peak_deferred = 0;   // most IOVAs held by the policy at once (the monitor's)
  std::uint64_t iova_exhausted = 0;  // packets dropped: no free IOVA in the CPU's slice
  // Device translations that succeeded at an IOVA whose buffer was unmapped (after the caller's
  // unmap returned): only a stale IOTLB entry reaches one. Strict callers must see 0.
  std::uint64_t exposures = 0;
  std::uint64_t longest_exposure_ns = 0;  // longest unmap -> last such access
  // Invalidate-and-wait rounds (callers' and the policy's) per 1,000 packets.
  [[nodiscard]] double invalidations_per_kpacket(std::uint64_t flushes) const noexcept {
    return packets ? static_cast<double>(flushes) * 1000.0 / static_cast<double>(packets) : 0.0;
  }
};

// Virtual time lost on the shared locks and cache lines of one name (the deterministic executor's
// contention model; empty for threaded runs, which pay real contention the model cannot see).
struct contention_figure {
  std::string name;  // "linux-dma-fq: a CPU's ring lock", "IOMMU unit lock (...)", ...
  bool lock = false;
  std::uint64_t accesses = 0;  // lock: acquisitions; line: touches that moved the line
  std::uint64_t waits = 0;     // lock: acquisitions that waited; line: transfers that queued
  std::uint64_t delay_ns = 0;  // CPU time lost to it (waiting, transfers), summed over CPUs
  std::uint64_t hold_ns = 0;   // lock: time held in all
};

// One event of a frame's timeline (frame_story), in the run's time base.
struct frame_event {
  std::uint64_t time_ns = 0;
  // allocated, linked, unlinked, retired, invalidation, freed, reused, walk, note
  std::string kind;
  int cpu = -1;     // the CPU it happened on; -1: none (an IOMMU, a device)
  int iommu = -1;   // invalidation, walk: the IOMMU unit
  int device = -1;  // walk: the device
  // invalidation: whether it covered the frame (a covering invalidation completed by its wait
  // makes the frame unreachable through that unit's caches); unset for other kinds.
  std::optional<bool> covers;
  std::string text;  // one line for a person, the time excluded
};

// The story of one frame (`ptreclaim replay ... --frame F`, and a failing replay's first
// violation): what happened to it, in order, and one line that says why it was (or was not)
// reachable by a device when it no longer was a live table.
struct frame_story {
  std::uint32_t frame = 0;
  std::string focus;            // why this frame: "the first violation", "--frame"
  std::uint64_t lifetimes = 0;  // times it was allocated during the run
  std::uint64_t lifetimes_shown = 0;
  std::vector<frame_event> events;  // in time order
  std::string conclusion;
};

struct run_result {
  // What ran.
  std::string scenario;         // scenario name
  std::string scenario_source;  // "builtin:NAME" or the file path
  std::string cost_source;      // the cost model: a cost file path or default_cost_source
  std::string policy;
  bool policy_safe = true;  // engine.hpp policy_is_safe(policy)
  // Non-empty when the scenario breaks the policy's contract, saying how ("needs caller
  // flushes: caller.flush = \"none\""): the policy is unsafe *here*, by contract, and its
  // violations are expected rather than a bug.
  std::string contract_broken;
  [[nodiscard]] bool judged_safe() const noexcept { return policy_safe && contract_broken.empty(); }
  std::string executor;  // "deterministic" | "threaded"
  unsigned cpus = 0;
  std::uint64_t seed = 0;
  std::string time_base;  // "virtual" (deterministic) or "real" (threaded)

  // False when a stop request (SIGINT, SIGTERM: interrupt.hpp) ended the workload early; the
  // run still drained and tore down, so the invariants were checked on what ran.
  bool complete = true;
  std::string interrupted_by;  // "SIGINT", "SIGTERM", "a stop request"; "" when complete

  // How much and how fast.
  std::uint64_t operations = 0;  // workload operations completed (all CPUs)
  std::uint64_t elapsed_ns = 0;  // run time in time_base, workload start to stop
  double wall_time_s = 0.0;      // host seconds the whole run took (always real)
  [[nodiscard]] double ops_per_s() const noexcept {
    return elapsed_ns ? static_cast<double>(operations) * 1e9 / static_cast<double>(elapsed_ns)
                      : 0.0;
  }

  device_metrics devices;
  invalidation_metrics invalidations;
  reclaim_metrics reclaim;
  hotplug_metrics hotplug;
  superpage_metrics superpages;
  fault_metrics faults;
  dma_metrics dma;
  // Where virtual time went (deterministic only): shared objects by delay, largest first, and the
  // CPU time spent spinning in waits (an invalidation, a flush) summed over CPUs.
  std::vector<contention_figure> contention;
  std::uint64_t cpu_wait_ns = 0;
  // Share of the run's CPU time (elapsed x cpus) that ns is.
  [[nodiscard]] double cpu_share(std::uint64_t ns) const noexcept {
    return elapsed_ns != 0 && cpus != 0
               ? static_cast<double>(ns) / (static_cast<double>(elapsed_ns) * cpus)
               : 0.0;
  }
  [[nodiscard]] double invalidations_per_freed_table() const noexcept {
    return reclaim.tables_freed ? static_cast<double>(invalidations.flushes) /
                                      static_cast<double>(reclaim.tables_freed)
                                : 0.0;
  }

  // Safety.
  violation_summary violations;
  leak_summary leaks;
  std::array<invariant_result, invariant_count> invariants{};
  [[nodiscard]] invariant_result& at(invariant i) noexcept {
    return invariants[static_cast<std::size_t>(i)];
  }
  [[nodiscard]] const invariant_result& at(invariant i) const noexcept {
    return invariants[static_cast<std::size_t>(i)];
  }
  // Every checked invariant held.
  [[nodiscard]] bool all_held() const noexcept {
    for (const auto& r : invariants)
      if (r.checked && !r.held) return false;
    return true;
  }

  // Determinism: a hash of the ordered event trace (deterministic executor: same seed, same
  // hash). 0 when not computed (threaded executor).
  std::uint64_t trace_hash = 0;
  std::vector<std::string> notes;  // anything a reader should know ("hotplug disabled", ...)
  // The timeline of one frame, when asked for (sim::recording::frame); see frame_story.
  std::optional<frame_story> story;
};

// One scenario, every policy (`ptreclaim compare`).
struct compare_result {
  std::string scenario;
  std::string executor;
  unsigned cpus = 0;
  std::uint64_t seed = 0;        // the one seed all runs used
  std::vector<run_result> runs;  // one per policy, in policy_names() order
  // False when a stop request ended the sweep early: `runs` holds the runs done (the last may
  // itself be incomplete).
  bool complete = true;
  std::string interrupted_by;
  // The run of `policy`, or nullptr.
  [[nodiscard]] const run_result* find(std::string_view policy) const noexcept {
    for (const auto& r : runs)
      if (r.policy == policy) return &r;
    return nullptr;
  }
};

// Policy x CPU counts (`ptreclaim scale`).
struct scale_result {
  std::string scenario;
  std::string executor;
  std::uint64_t seed = 0;
  std::vector<std::string> policies;
  std::vector<unsigned> cpu_counts;
  std::vector<run_result> runs;  // policies.size() * cpu_counts.size(), row-major by policy
  bool complete = true;          // as compare_result: false when stopped early (fewer runs)
  std::string interrupted_by;
  [[nodiscard]] const run_result* at(std::size_t policy_index,
                                     std::size_t cpu_index) const noexcept {
    const std::size_t i = policy_index * cpu_counts.size() + cpu_index;
    return i < runs.size() ? &runs[i] : nullptr;
  }
};

}  // namespace ptreclaim::sim
