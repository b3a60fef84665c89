// The threaded executor: one OS thread per CPU slot and per actor, real time, real contention.
// It runs the same client code as the deterministic executor.
//
// Each CPU thread loops: softirq point (expired timers, softirq tasklets) -> at the scheduler
// point, plain tasklets and work items -> one program step -> sleep on its condition variable
// when nothing is runnable. current_cpu() is thread-local. Platform charges, touch_line and
// lock hooks are no-ops (real time is measured instead); wait_until spins (pause, then yield)
// until done() or the real-time timeout.
//
// Tasklets, timers and work items run on the CPU's own thread. A kernel runs a work item in a
// kworker, a switch to another thread and back that the deterministic executor charges
// (costs.work_ns); here it costs nothing. A hand-off to a kworker thread was tried: on the
// 2-vCPU VM it made linux-global-work on sva-kernel 8.7x slower (~21 us more per operation),
// further from a kernel's 1-2 us switch than running the item inline.
//
// Hotplug. cpu_down(c) asks c's thread to park at its next step boundary and waits for it
// (run_config::park_timeout_ns, then asserts: a step on c that waits for the CPU running the
// hotplug would deadlock). Hotplug the controller starts (scheduled hotplug_events, or calls
// from the controller thread) runs on the controller thread as the lowest online CPU != c,
// whose own thread is held at a step boundary meanwhile, so per-CPU data still has exactly
// one user at a time. Offline CPUs' threads stay parked until cpu_up.
//
// Stop: the controller (the thread in run()) waits for a CPU that went idle when the run may be
// over (or polls every millisecond) for quiescence (as stop_reason::quiescent), for a stall
// (programs left only on offline CPUs), or for the real-time limit. Daemon actors must not create
// CPU work, or quiescence could be declared while they are about to.
//
// Memory ordering: see executor.hpp; all runtime state is under the executor mutex. One
// exception keeps that mutex off the common path: while nothing is queued for a CPU (its
// `attention` flag is clear) and no timer of its is due, its thread runs consecutive program
// steps without taking the mutex, keeping the step bookkeeping that only it reads
// (sched_point, prog_wake_ns, program_steps) to itself. Everything that gives a CPU something
// to do sets the flag under the mutex (queued work, an armed timer, a park request, stop), and
// the thread goes back through the mutex at its next step boundary. Without this, two CPU
// threads took the mutex twice per step and a 2-CPU threaded run was slower than a 1-CPU one.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "ptreclaim/runtime/executor.hpp"

namespace ptreclaim::runtime {

class threaded_executor final : public executor {
 public:
  explicit threaded_executor(run_config config);
  ~threaded_executor() override;

  // Nanoseconds since the executor was built.
  [[nodiscard]] std::uint64_t now_ns() noexcept override;
  [[nodiscard]] bool wait_until(const std::function<bool()>& done,
                                std::uint64_t timeout_ns) override;
  run_stats run() override;
  void wake_actor(actor_id id) override;

 private:
  struct cpu_thread {
    std::condition_variable cv;
    // Something is queued for this CPU, or it is asked to park or stop. Set under mu_ by
    // whoever queues; cleared under mu_ by the CPU's thread when its queues are empty.
    std::atomic<bool> attention{true};
    unsigned holds = 0;  // park requests (offline, or borrowed by a hotplug); under mu_
    bool held = false;   // the thread sits at a step boundary honouring `holds`; under mu_
    std::thread thread;
  };
  struct actor_thread {
    std::condition_variable cv;
    std::thread thread;
  };

  void on_cpu_work(unsigned cpu, std::uint64_t at_ns, bool is_timer) override;
  void wait_for_change(lock_t& lock) override;
  void flush_remote(lock_t& lock, work_item& w) override;
  void park_cpu(unsigned cpu) override;
  void unpark_cpu(unsigned cpu) override;
  Status controller_hotplug(hotplug_op op, unsigned target) override;

  void cpu_loop(unsigned cpu);
  // mu_ held, the program runnable: runs steps, the first and then, while the CPU needs no
  // attention and no timer of its is due, more without mu_; applies the last one under mu_.
  void run_steps(lock_t& lock, unsigned cpu);
  void actor_loop(unsigned a);
  void hold(lock_t& lock, unsigned cpu);  // mu_ held; returns once cpu's thread is held
  void release(unsigned cpu);             // mu_ held
  void stop_threads();

  std::uint64_t start_ns_;
  std::vector<std::unique_ptr<cpu_thread>> cpu_threads_;
  std::vector<std::unique_ptr<actor_thread>> actor_threads_;
  // The controller's wake-up is executor::maybe_done_: a CPU going idle when the run may be
  // over, an actor finishing, request_stop() (it also polls every millisecond, so a missed
  // hint costs at most that).
  bool threads_running_ = false;  // under mu_
  bool stop_ = false;             // under mu_
};

}  // namespace ptreclaim::runtime
