// sim::run(): one scenario, one policy, one executor, measured. The machine is built in
// engine_machine.cpp (on a testbed), the workloads in workload_*.cpp, devices and the sampler in
// engine_actors.cpp; this file runs it, engine_results.cpp gathers what it measured and
// invariants.cpp judges it.
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "ptreclaim/reclaim/policy.hpp"
#include "sim/engine_internal.hpp"
#include "sim/recorder.hpp"

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
  const runtime::run_stats st = run_executor();
  out.time_base = deterministic_ ? "virtual" : "real";
  std::uint64_t caller_flushes = 0, map_flushes = 0, op_trace = 0;
  out.operations = 0;
  for (unsigned c = 0; c < cpus; ++c) {
    const cpu_driver& d = (*drivers_)[c];
    out.operations += d.ops;
    caller_flushes += d.caller_flushes;
    map_flushes += d.map_flushes;
    op_trace = op_trace * 0x100000001b3ULL ^ d.trace;
  }
  out.elapsed_ns = stop_ns_ > run_start_ns_ ? stop_ns_ - run_start_ns_ : 0;
  const std::string stuck = note_how_it_stopped(st, out);
  if (!snap_.taken) {
    // The finisher never reached teardown (a limit or a stall): measure what is there now.
    snapshot_metrics();
    if (ex_) ex_->discard_pending();
  }
  snap_.stats = rec_->stats();  // every CPU has stopped: the per-CPU counters are quiet
  fault_results(out);
  collect_devices(out);
  collect_reclaim(out, caller_flushes);
  out.invalidations.map_flushes = map_flushes;
  collect_hotplug(st, out);
  collect_dma(out);
  judge_invariants(evidence(st, out, stuck), out);
  for (const runtime::contention_stat& c : st.contention)
    out.contention.push_back({c.name, c.lock, c.accesses, c.waits, c.delay_ns, c.hold_ns});
  out.cpu_wait_ns = st.cpu_wait_ns;
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
    h = prng::splitmix64(h) ^ out.operations;
    out.trace_hash = prng::splitmix64(h);
  }
  for (auto& n : notes_)
    out.notes.push_back(std::move(n));
  notes_.clear();
  // The frame the first violation names: an S1 walk's, else the first monitor or ledger
  // report's ("S3: frame 812 of domain 2 freed by ...").
  if (snap_.s1_count > 0 && snap_.s1_first_frame) {
    out.violations.first_frame = snap_.s1_first_frame;
  } else if (const auto at = out.violations.first.find("frame "); at != std::string::npos) {
    std::uint64_t v = 0;
    std::size_t i = at + 6, digits = 0;
    for (; i < out.violations.first.size() && digits < 10; ++i, ++digits) {
      const char c = out.violations.first[i];
      if (c < '0' || c > '9') break;
      v = v * 10 + static_cast<std::uint64_t>(c - '0');
    }
    if (digits > 0 && v <= 0xfffffffeULL)
      out.violations.first_frame = static_cast<std::uint32_t>(v);
  }
  if (recorder_) recorder_->finish(sys_->violations().first(), out);
}

runtime::run_stats machine::run_executor() {
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
  return st;
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
