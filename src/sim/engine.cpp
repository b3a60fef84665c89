// sim::run(): one scenario, one policy, one executor, measured. The machine is built in
// engine_machine.cpp, the workloads in workload_*.cpp, devices and the sampler in
// engine_actors.cpp; this file runs it and turns what it saw into a run_result.
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "ptreclaim/reclaim/policy.hpp"
#include "sim/engine_internal.hpp"
#include "sim/invariants.hpp"

namespace ptreclaim::sim {
namespace detail {

void machine::watch_progress(const std::atomic<bool>& stop, std::mutex& mu,
                             std::condition_variable& cv) {
  const auto start = std::chrono::steady_clock::now();
  std::unique_lock<std::mutex> lock(mu);
  while (!cv.wait_for(lock, std::chrono::milliseconds(100),
                      [&] { return stop.load(std::memory_order_relaxed); })) {
    double f = 0.0;
    if (ops_target_ != 0) {
      std::uint64_t done = 0;
      for (unsigned c = 0; c < cpus; ++c)
        done += (*drivers_)[c].ops_seen.load(std::memory_order_relaxed);
      f = static_cast<double>(done) / (static_cast<double>(ops_target_) * cpus);
    } else if (time_limit_ns_ != 0) {
      const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                          std::chrono::steady_clock::now() - start)
                          .count();
      f = static_cast<double>(ns) / static_cast<double>(time_limit_ns_);
    }
    // Below 1: the drain and teardown come after the last operation.
    opt.progress(std::min(0.99, f));
  }
}

void machine::run(run_result& out) {
  // Threaded: the CPUs run on their own threads while this one is blocked in the executor, so
  // a helper thread reports progress from the operations completed.
  std::atomic<bool> stop_watch{false};
  std::mutex watch_mu;
  std::condition_variable watch_cv;
  std::thread watcher;
  if (opt.progress && !deterministic_) {
    opt.progress(0.0);
    watcher = std::thread([&] { watch_progress(stop_watch, watch_mu, watch_cv); });
  }
  run_start_ns_ = ex_->now_ns();
  const runtime::run_stats st = ex_->run();
  if (watcher.joinable()) {
    {
      std::lock_guard<std::mutex> g(watch_mu);
      stop_watch.store(true, std::memory_order_relaxed);
    }
    watch_cv.notify_all();
    watcher.join();
  }
  if (opt.progress) opt.progress(1.0);

  out.time_base = deterministic_ ? "virtual" : "real";
  std::uint64_t ops = 0, caller_flushes = 0, op_trace = 0;
  for (unsigned c = 0; c < cpus; ++c) {
    const cpu_driver& d = (*drivers_)[c];
    ops += d.ops;
    caller_flushes += d.caller_flushes;
    op_trace = op_trace * 0x100000001b3ULL ^ d.trace;
  }
  out.operations = ops;
  out.elapsed_ns = stop_ns_ > run_start_ns_ ? stop_ns_ - run_start_ns_ : 0;
  if (stopped_early_.load(std::memory_order_relaxed)) {
    out.complete = false;
    out.interrupted_by = signal_label(opt.stop->signal_number());
    notes_.push_back("stopped early by " + out.interrupted_by + " after " + std::to_string(ops) +
                     " operations: the workload did not finish; the invariants were checked on "
                     "what ran");
  }
  const bool finished = fin_ == finish_phase::done;
  std::string stuck;
  if (st.reason == runtime::stop_reason::no_progress) {
    stuck = "the watchdog stopped the run: no operation completed and no frame was unlinked, " +
            std::string("retired or freed for ") +
            (deterministic_ ? std::to_string(sc.duration.watchdog_steps) +
                                  " executor steps (duration.watchdog_steps)"
                            : std::to_string(sc.duration.watchdog_real_ns) +
                                  " ns of real time (duration.watchdog_real_ns)") +
            "; " + stuck_report();
    notes_.push_back(stuck);
  } else if (!finished) {
    notes_.push_back(
        std::string("the executor stopped early: ") + runtime::stop_reason_name(st.reason) +
        " (the finisher did not complete; invariants checked on what ran); " + stuck_report());
  }
  if (!snap_.taken) {
    // The finisher never reached teardown (a limit or a stall): measure what is there now.
    snapshot_metrics();
    if (ex_) ex_->discard_pending();
  }
  snap_.stats = rec_->stats();  // every CPU has stopped: the per-CPU counters are quiet
  fault_results(out);

  // Devices.
  for (const iommu::unit_stats& u : snap_.units) {
    out.devices.translations += u.translations;
    out.devices.faults += u.faults;
    out.devices.iotlb_hits += u.iotlb_hits;
    out.devices.iotlb_misses += u.iotlb_misses;
    std::uint64_t psc = 0;
    for (std::uint64_t h : u.psc_hits)
      psc += h;
    out.devices.psc_hits += psc;
    out.devices.psc_misses += u.walks > psc ? u.walks - psc : 0;
    out.devices.pte_reads += u.pte_reads;
    for (std::size_t k = 0; k < u.descriptors.size(); ++k) {
      out.invalidations.descriptors += u.descriptors[k];
      if (k == static_cast<std::size_t>(iommu::inv_type::wait))
        out.invalidations.waits += u.descriptors[k];
    }
  }

  // Invalidations and reclamation.
  const reclaim::reclaim_stats& rs = snap_.stats;
  const reclaim::safety_monitor::report& mon = snap_.mon;
  out.invalidations.flushes = mon.invalidations;
  out.invalidations.caller_flushes = caller_flushes;
  out.invalidations.backpressure_flushes = rs.backpressure;
  out.reclaim.tables_released = rs.retired;
  out.reclaim.tables_freed = rs.freed;
  out.reclaim.peak_pending =
      mon.peak_pending;  // exact (the policy's own is a sum of per-holder peaks)
  out.reclaim.pending_bound = sc.reclaim.max_pending_frames;
  out.reclaim.pending_at_end = pending_at_end_.load(std::memory_order_relaxed);
  out.reclaim.drain_ns = drain_ns_;
  out.reclaim.pending_series = series_;
  out.reclaim.retire_to_free_ns = observer_->merged();

  // Superpages.
  out.superpages.coalesced_2m = wl_->coalesced_2m();
  out.superpages.coalesced_1g = wl_->coalesced_1g();
  out.superpages.tables_coalesced = snap_.tables_coalesced;
  out.superpages.splits = snap_.splits;

  // Hotplug.
  out.hotplug.offlines = st.cpu_downs;
  out.hotplug.onlines = st.cpu_ups;
  out.hotplug.failed_offlines = st.cpu_down_failures;
  out.hotplug.deferred_offlines = st.hotplug_defers;
  out.hotplug.frames_migrated = rs.adopted;
  if (sc.hotplug.enabled) {
    notes_.push_back("hotplug: " + std::to_string(st.cpu_downs) + " offline, " +
                     std::to_string(st.cpu_ups) + " online, " +
                     std::to_string(st.cpu_down_failures) + " failed offline, " +
                     std::to_string(st.hotplug_defers) +
                     " offline tries deferred (the CPU was inside an operation, which "
                     "stop_machine does not interrupt), " +
                     std::to_string(st.hotplug_rejected) + " events rejected");
  }

  // Safety.
  invariant_evidence ev;
  ev.s1_count = snap_.s1_count;
  ev.s1_first = snap_.s1_first;
  ev.ledger = leaks_.checked ? leaks_.ledger_violations : pool_->ledger_violation_count();
  if (!pool_->ledger_reports().empty()) ev.ledger_first = pool_->ledger_reports().front().what;
  ev.mon = mon;
  ev.policy = rs;
  ev.leaks = leaks_;
  ev.translations = out.devices.translations;
  ev.pte_reads = out.devices.pte_reads;
  ev.pending_bound = out.reclaim.pending_bound;
  ev.peak_pending = out.reclaim.peak_pending;
  ev.hotplug = sc.hotplug.enabled;
  ev.run = st;
  ev.reached_drain = fin_ != finish_phase::wait_workload && fin_ != finish_phase::wait_l1;
  ev.l1_held = l1_held_;
  ev.l1_reason = l1_reason_;
  ev.stuck = stuck;
  judge_invariants(ev, out);
  out.leaks = leaks_;

  if (!drain_status_.ok()) notes_.push_back("drain() failed: " + drain_status_.to_string());
  if (wl_->errors() != 0) {
    notes_.push_back(std::to_string(wl_->errors()) +
                     " page-table mutations failed (no_memory or similar); the workload went on");
  }

  out.trace_hash = 0;
  if (deterministic_) {
    std::uint64_t h = st.trace_hash ^ 0x6a09e667f3bcc909ULL;
    h = prng::splitmix64(h) ^ op_trace;
    h = prng::splitmix64(h) ^ ops;
    out.trace_hash = prng::splitmix64(h);
  }
  for (auto& n : notes_)
    out.notes.push_back(std::move(n));
  notes_.clear();
}

}  // namespace detail

Result<run_result> run(const scenario& s_in, const run_options& options) {
  const auto wall_start = std::chrono::steady_clock::now();
  auto kind = reclaim::parse_policy(options.policy);
  if (!kind.ok()) return kind.status();
  if (options.cpus > limits::max_cpus)
    return Status(errc::invalid_argument, "cpus must be 1.." + std::to_string(limits::max_cpus));
  Result<scenario> sr = with_overrides(s_in, options.cpus, options.ops_per_cpu);
  if (!sr.ok()) return sr.status();
  const scenario& s = *sr;
  if (s.duration.ops_per_cpu == 0 && s.duration.time_limit_ns == 0)
    return Status(errc::invalid_argument,
                  "a run needs duration.ops_per_cpu or duration.time_limit_ns");

  const std::uint64_t seed = options.seed ? *options.seed : s.seed ? *s.seed : fresh_seed();

  run_result out;
  out.scenario = s.name;
  out.scenario_source = s.source;
  out.cost_source = s.costs.source;
  out.policy = options.policy;
  out.policy_safe = reclaim::policy_is_safe(*kind);
  if (reclaim::policy_needs_caller_flush(*kind) && s.caller.flush == caller_flush::none)
    out.contract_broken = "needs caller flushes; caller.flush = \"none\"";
  out.executor = std::string(executor_name(options.executor));
  out.cpus = s.cpus;
  out.seed = seed;
  {
    detail::machine m(s, options, seed);
    PTR_TRY(m.build());
    m.run(out);
  }
  if (out.violations.count > 0 || !out.all_held()) {
    out.violations.replay_command = replay_command(s_in, options, seed);
    out.violations.replay_exact = options.executor == executor_kind::deterministic;
    if (!out.violations.replay_exact) {
      run_options det = options;
      det.executor = executor_kind::deterministic;
      out.violations.deterministic_command = replay_command(s_in, det, seed);
    }
  }
  out.wall_time_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
  return out;
}

}  // namespace ptreclaim::sim
