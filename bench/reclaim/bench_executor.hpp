// An executor for Google Benchmark threads: each benchmark thread registers itself as a CPU
// (cpu_scope) and passes its scheduler point when it chooses (scheduler_point), where its
// expired timers, softirq tasklets, plain tasklets and work items run - on that thread, as
// that CPU. Real time (steady clock), no hotplug, no programs, no actors.
//
// Why not the threaded_executor: it owns its CPU threads and runs client code only as
// programs, so Google Benchmark's own threads could not be the producers. This adapter reuses
// the executor core (the same tasklet, workqueue and timer code the policies run on in the
// simulator, including its one executor mutex), so the figures include what the policies pay
// to the runtime.
#pragma once

#include <chrono>
#include <thread>

#include "ptreclaim/runtime/executor.hpp"

namespace ptreclaim::bench {

class bench_executor final : public runtime::executor {
 public:
  explicit bench_executor(unsigned cpus)
      : executor(config_for(cpus)), start_(std::chrono::steady_clock::now()) {}

  // The calling thread runs as CPU `cpu` (process context) while this object lives.
  class cpu_scope {
   public:
    cpu_scope(const bench_executor& ex, unsigned cpu)
        : guard_(ex, cpu, runtime::no_cpu, runtime::exec_context::process) {}

   private:
    context_guard guard_;
  };

  // Runs everything due on `cpu` (the caller's CPU): softirq work, then tasklets and work.
  void scheduler_point(unsigned cpu) {
    lock_t lock(mu_);
    while (run_one_softirq(lock, cpu) != ran::nothing) {
    }
    while (run_one_scheduled(lock, cpu) != ran::nothing) {
    }
  }

  [[nodiscard]] std::uint64_t now_ns() noexcept override {
    return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                          std::chrono::steady_clock::now() - start_)
                                          .count());
  }
  [[nodiscard]] bool wait_until(const std::function<bool()>& done,
                                std::uint64_t timeout_ns) override {
    const std::uint64_t deadline = now_ns() + timeout_ns;
    for (unsigned spins = 0;; ++spins) {
      if (done()) return true;
      if (now_ns() >= deadline) return done();
      if (spins > 64) std::this_thread::yield();
    }
  }
  runtime::run_stats run() override {
    PTR_ASSERT_MSG(false, "bench_executor has no run(): benchmark threads are its CPUs");
    return {};
  }
  void wake_actor(runtime::actor_id) override {}

 private:
  static runtime::run_config config_for(unsigned cpus) {
    runtime::run_config c;
    c.cpus = cpus;
    return c;
  }
  void on_cpu_work(unsigned, std::uint64_t, bool) override {}  // the CPU polls
  void wait_for_change(lock_t& lock) override { changed_.wait(lock); }
  void flush_remote(lock_t& lock, runtime::work_item& w) override {
    const unsigned cpu = unqueue_work(w);
    run_work(lock, w, cpu);
  }
  void park_cpu(unsigned) override {}
  void unpark_cpu(unsigned) override {}
  Status controller_hotplug(runtime::hotplug_op, unsigned) override {
    return Status(errc::invalid_argument, "bench_executor: no hotplug");
  }

  std::chrono::steady_clock::time_point start_;
};

}  // namespace ptreclaim::bench
