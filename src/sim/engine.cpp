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

namespace ptreclaim::sim {
namespace detail {

namespace {
void set(run_result& r, invariant i, bool held, std::string reason) {
  invariant_result& x = r.at(i);
  x.checked = true;
  x.held = held;
  x.reason = std::move(reason);
}
}  // namespace

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
  const std::uint64_t ledger =
      leaks_.checked ? leaks_.ledger_violations : pool_->ledger_violation_count();
  out.violations.count = snap_.s1_count + ledger + mon.s2_violations + mon.s3_violations +
                         mon.s4_violations + mon.s5_violations;
  if (!snap_.s1_first.empty())
    out.violations.first = snap_.s1_first;
  else if (!mon.first.empty())
    out.violations.first = mon.first.front();
  else if (ledger != 0 && !pool_->ledger_reports().empty())
    out.violations.first = pool_->ledger_reports().front().what;
  out.leaks = leaks_;

  set(out, invariant::s1, snap_.s1_count == 0,
      snap_.s1_count == 0
          ? std::to_string(out.devices.translations) + " translations, " +
                std::to_string(out.devices.pte_reads) + " PTE reads, no stale read"
          : std::to_string(snap_.s1_count) + " stale walks; first: " + snap_.s1_first);
  {
    const bool held = mon.s2_violations == 0 && ledger == 0 && rs.free_errors == 0 &&
                      (!leaks_.checked || leaks_.leaked_frames == 0);
    std::string why;
    if (held) {
      why = std::to_string(mon.freed) +
            " frees checked by the monitor; ledger clean; pool whole at teardown";
    } else {
      why = std::to_string(mon.s2_violations) + " monitor S2 violations, " +
            std::to_string(ledger) + " ledger violations, " + std::to_string(leaks_.leaked_frames) +
            " frames leaked";
      for (const auto& f : mon.first)
        if (f.rfind("S2", 0) == 0) {
          why += "; first: " + f;
          break;
        }
      if (!leaks_.report.empty()) why += "; " + leaks_.report.substr(0, 400);
    }
    set(out, invariant::s2, held, why);
    if (!leaks_.checked) out.at(invariant::s2).reason += " (teardown leak check did not run)";
  }
  auto first_of = [&](const char* prefix) {
    for (const auto& f : mon.first)
      if (f.rfind(prefix, 0) == 0) return f;
    return std::string();
  };
  set(out, invariant::s3, mon.s3_violations == 0,
      mon.s3_violations == 0
          ? std::to_string(mon.freed) + " frees, each after a covering invalidation completed"
          : std::to_string(mon.s3_violations) + " early frees; first: " + first_of("S3"));
  {
    const bool held = mon.s4_violations == 0 && rs.wrong_cpu_runs == 0;
    std::string why =
        held ? std::string("no worker on a wrong CPU, no frame lost")
             : std::to_string(mon.s4_violations) + " violations; first: " + first_of("S4");
    if (sc.hotplug.enabled) {
      why += " (" + std::to_string(st.cpu_downs + st.cpu_down_failures) + " offline attempts, " +
             std::to_string(st.cpu_ups) + " online)";
    } else {
      why += " (no hotplug in this scenario)";
    }
    set(out, invariant::s4, held, why);
  }
  {
    const bool held =
        mon.s5_violations == 0 && out.reclaim.peak_pending <= out.reclaim.pending_bound;
    set(out, invariant::s5, held,
        "peak " + std::to_string(out.reclaim.peak_pending) + " pending frames, bound " +
            std::to_string(out.reclaim.pending_bound) + (held ? "" : "; first: " + first_of("S5")));
  }
  if (!stuck.empty() && (fin_ == finish_phase::wait_workload || fin_ == finish_phase::wait_l1)) {
    set(out, invariant::l1, false, stuck);
  } else if (fin_ == finish_phase::wait_workload || fin_ == finish_phase::wait_l1) {
    set(out, invariant::l1, false, "the run stopped before the drain could be observed");
  } else {
    set(out, invariant::l1, l1_held_, l1_reason_);
  }
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
  const reclaim::policy_kind kind = options.policy;
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
  out.cost_source = s.cost_source();
  out.policy = std::string(reclaim::policy_name(kind));
  out.policy_safe = reclaim::policy_is_safe(kind);
  if (reclaim::policy_needs_caller_flush(kind) && s.caller.flush == caller_flush::none)
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
