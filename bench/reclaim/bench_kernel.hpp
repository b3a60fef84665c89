// A runtime::kernel for Google Benchmark threads: each benchmark thread registers itself as a
// CPU (cpu_scope) and passes its scheduler point when it chooses (scheduler_point), where its
// expired timers, softirq tasklets, plain tasklets and work items run - on that thread, as that
// CPU. Real time (steady clock), no hotplug (notifiers only see the replay at registration).
//
// Why not an executor: the threaded_executor owns its CPU threads and runs client code only as
// programs, so Google Benchmark's own threads could not be the producers. Policies need only
// the kernel interface (ptreclaim/runtime/kernel.hpp), so this implements it directly, with the
// executors' rules (deferred.hpp) and one mutex over all deferred state, as the executors (and
// Xen's global tasklet_lock) have; callbacks run with it released. Per-object state lives here,
// beside the intrusive objects (whose fields are the executor's).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "ptreclaim/base/assert.hpp"
#include "ptreclaim/runtime/kernel.hpp"

namespace ptreclaim::bench {

class bench_kernel final : public runtime::kernel {
  // Who the calling thread runs as.
  struct context {
    const bench_kernel* owner = nullptr;
    unsigned cpu = runtime::no_cpu;
    bool softirq = false;  // a timer or softirq tasklet is running on this thread
  };
  static context& tls() noexcept {
    thread_local context c;
    return c;
  }
  using guard_t = std::unique_lock<std::mutex>;

 public:
  explicit bench_kernel(unsigned cpus)
      : cpus_(cpus), start_(std::chrono::steady_clock::now()), q_(cpus) {
    PTR_ASSERT_MSG(cpus >= 1, "bench_kernel needs a CPU");
  }
  ~bench_kernel() override {
    for (const cpu_queues& q : q_)
      PTR_ASSERT_MSG(q.plain.empty() && q.softirq.empty() && q.work.empty() && q.timers.empty(),
                     "bench_kernel destroyed with deferred work queued");
  }

  // The calling thread runs as CPU `cpu` (process context) while this object lives.
  class cpu_scope {
   public:
    cpu_scope(const bench_kernel& k, unsigned cpu) : saved_(tls()) {
      PTR_ASSERT_MSG(cpu < k.cpus_, "cpu_scope: no such CPU");
      tls() = {&k, cpu, false};
    }
    ~cpu_scope() { tls() = saved_; }
    cpu_scope(const cpu_scope&) = delete;
    cpu_scope& operator=(const cpu_scope&) = delete;

   private:
    context saved_;
  };

  // Runs everything due on `cpu` (the caller's CPU): softirq work, then tasklets and work.
  void scheduler_point(unsigned cpu) {
    PTR_ASSERT_MSG(on_cpu() && tls().cpu == cpu, "scheduler_point of another CPU");
    guard_t lock(mu_);
    while (run_softirq_item(lock, cpu)) {
    }
    while (run_scheduled_item(lock, cpu)) {
    }
  }

  // ---- platform ----
  [[nodiscard]] std::uint64_t now_ns() noexcept override {
    return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                          std::chrono::steady_clock::now() - start_)
                                          .count());
  }
  [[nodiscard]] unsigned current_cpu() const noexcept override {
    return tls().owner == this ? tls().cpu : 0;
  }
  [[nodiscard]] unsigned cpu_count() const noexcept override { return cpus_; }
  [[nodiscard]] bool wait_until(const std::function<bool()>& done,
                                std::uint64_t timeout_ns) override {
    const std::uint64_t deadline = now_ns() + timeout_ns;
    for (unsigned spins = 0;; ++spins) {
      if (done()) return true;
      if (now_ns() >= deadline) return done();
      if (spins > 64) std::this_thread::yield();
    }
  }

  // ---- tasklets ----
  void tasklet_init(runtime::tasklet& t, std::function<void()> fn,
                    runtime::tasklet_kind kind = runtime::tasklet_kind::plain) override {
    PTR_ASSERT_MSG(static_cast<bool>(fn), "tasklet_init: empty function");
    guard_t lock(mu_);
    tasklet_state& s = tasklets_[&t];
    PTR_ASSERT_MSG(!s.queued && !s.running, "tasklet_init of a scheduled or running tasklet");
    s = tasklet_state{};
    s.fn = std::move(fn);
    s.kind = kind;
  }
  bool tasklet_schedule(runtime::tasklet& t) override {
    PTR_ASSERT_MSG(on_cpu(), "tasklet_schedule outside CPU context");
    const unsigned cpu = current_cpu();
    guard_t lock(mu_);
    tasklet_state& s = tasklet_of(t);
    if (s.dead) return false;
    if (s.running) {
      if (s.resched_cpu == cpu) return false;
      s.resched_cpu = cpu;
      return true;
    }
    if (s.queued) {
      if (s.cpu == cpu) return false;
      unlink(tasklet_queue(s.cpu, s.kind), &t);
      s.queued = false;
    }
    enqueue(t, s, cpu);
    return true;
  }
  void tasklet_kill(runtime::tasklet& t) override {
    guard_t lock(mu_);
    tasklet_state& s = tasklet_of(t);
    if (s.queued) {
      unlink(tasklet_queue(s.cpu, s.kind), &t);
      s.queued = false;
    }
    s.resched_cpu = runtime::no_cpu;
    s.dead = true;
    while (s.running) {
      PTR_ASSERT_MSG(!(on_cpu() && current_cpu() == s.cpu), "tasklet_kill from the tasklet");
      changed_.wait(lock);
    }
  }

  // ---- softirq ----
  void process_pending_softirqs() override {
    PTR_ASSERT_MSG(on_cpu(), "process_pending_softirqs outside CPU context");
    if (tls().softirq) return;  // softirqs do not nest
    const unsigned cpu = current_cpu();
    guard_t lock(mu_);
    while (run_softirq_item(lock, cpu)) {
    }
  }

  // ---- workqueue ----
  void work_init(runtime::work_item& w, std::function<void()> fn) override {
    PTR_ASSERT_MSG(static_cast<bool>(fn), "work_init: empty function");
    guard_t lock(mu_);
    work_state& s = work_[&w];
    PTR_ASSERT_MSG(!s.queued && !s.running, "work_init of a pending or running work item");
    s = work_state{};
    s.fn = std::move(fn);
  }
  bool schedule_work(runtime::work_item& w) override {
    PTR_ASSERT_MSG(on_cpu(), "schedule_work outside CPU context");
    const unsigned cpu = current_cpu();
    guard_t lock(mu_);
    work_state& s = work_of(w);
    if (s.queued || s.resched_cpu != runtime::no_cpu) return false;  // already pending
    if (s.running) {
      s.resched_cpu = s.cpu;  // non-reentrant: behind itself on the CPU running it
      return true;
    }
    enqueue(w, s, cpu);
    return true;
  }
  bool flush_work(runtime::work_item& w) override {
    guard_t lock(mu_);
    work_state& s = work_of(w);
    bool did = false;
    for (;;) {
      if (!s.queued && !s.running && s.resched_cpu == runtime::no_cpu) return did;
      did = true;
      if (s.running) {
        PTR_ASSERT_MSG(!(on_cpu() && current_cpu() == s.cpu), "flush_work from the work item");
        changed_.wait(lock);
        continue;
      }
      // Pending anywhere: run it here, as the CPU it is queued on (the benchmark CPUs poll, so
      // waiting for another one's scheduler point could wait for a thread that has finished).
      const unsigned c = s.cpu;
      unlink(q_[c].work, &w);
      s.queued = false;
      run_work(lock, w, s, c);
    }
  }
  [[nodiscard]] bool work_pending(const runtime::work_item& w) const override {
    guard_t lock(mu_);
    const auto it = work_.find(&w);
    PTR_ASSERT_MSG(it != work_.end(), "work_pending of an uninitialised work item");
    return it->second.queued || it->second.resched_cpu != runtime::no_cpu;
  }

  // ---- timers ----
  void timer_init(runtime::timer& t, std::function<void()> fn, unsigned cpu) override {
    PTR_ASSERT_MSG(static_cast<bool>(fn), "timer_init: empty function");
    PTR_ASSERT_MSG(cpu < cpus_, "timer_init: no such CPU");
    guard_t lock(mu_);
    timer_state& s = timers_[&t];
    PTR_ASSERT_MSG(!s.armed && !s.running, "timer_init of an armed or running timer");
    s = timer_state{};
    s.fn = std::move(fn);
    s.cpu = cpu;
  }
  void set_timer(runtime::timer& t, std::uint64_t expires_ns) override {
    guard_t lock(mu_);
    timer_state& s = timer_of(t);
    if (s.dead) return;
    s.expires_ns = expires_ns;
    if (!s.armed) {
      q_[s.cpu].timers.push_back(&t);
      s.armed = true;
    }
  }
  void kill_timer(runtime::timer& t) override {
    guard_t lock(mu_);
    timer_state& s = timer_of(t);
    if (s.armed) {
      unlink(q_[s.cpu].timers, &t);
      s.armed = false;
    }
    s.dead = true;
    while (s.running) {
      PTR_ASSERT_MSG(!(on_cpu() && current_cpu() == s.cpu), "kill_timer from the timer itself");
      changed_.wait(lock);
    }
  }

  // ---- hotplug notifiers: every CPU stays online, so only the replay calls them ----
  runtime::notifier_id register_cpu_notifier(runtime::cpu_notifier n,
                                             bool replay_online = false) override {
    PTR_ASSERT_MSG(static_cast<bool>(n), "register_cpu_notifier: empty notifier");
    if (replay_online) {
      for (unsigned c = 0; c < cpus_; ++c) {
        (void)n(runtime::cpu_event::up_prepare, c);
        (void)n(runtime::cpu_event::online, c);
      }
    }
    guard_t lock(mu_);
    const runtime::notifier_id id = next_notifier_++;
    notifiers_.emplace(id, std::move(n));
    return id;
  }
  void unregister_cpu_notifier(runtime::notifier_id id) override {
    guard_t lock(mu_);
    PTR_ASSERT_MSG(notifiers_.erase(id) == 1, "unregister_cpu_notifier: unknown id");
  }

 private:
  [[nodiscard]] bool on_cpu() const noexcept { return tls().owner == this; }

  struct tasklet_state {
    std::function<void()> fn;
    runtime::tasklet_kind kind = runtime::tasklet_kind::plain;
    bool queued = false, running = false, dead = false;
    unsigned cpu = runtime::no_cpu;          // queued on or running on
    unsigned resched_cpu = runtime::no_cpu;  // scheduled while running: requeue here afterwards
  };
  struct work_state {
    std::function<void()> fn;
    bool queued = false, running = false;
    unsigned cpu = runtime::no_cpu;
    unsigned resched_cpu = runtime::no_cpu;
  };
  struct timer_state {
    std::function<void()> fn;
    bool armed = false, running = false, dead = false;
    unsigned cpu = runtime::no_cpu;
    std::uint64_t expires_ns = 0;
  };
  struct cpu_queues {
    std::deque<runtime::tasklet*> plain, softirq;
    std::deque<runtime::work_item*> work;
    std::vector<runtime::timer*> timers;  // unsorted: a CPU holds a handful
  };

  template <class Q, class T>
  static void unlink(Q& q, T* item) {
    for (auto it = q.begin(); it != q.end(); ++it) {
      if (*it == item) {
        q.erase(it);
        return;
      }
    }
    PTR_ASSERT_MSG(false, "bench_kernel: queued item missing from its queue");
  }
  // std::unordered_map keeps references to its elements valid across inserts.
  tasklet_state& tasklet_of(runtime::tasklet& t) {
    const auto it = tasklets_.find(&t);
    PTR_ASSERT_MSG(it != tasklets_.end(), "tasklet used before tasklet_init");
    return it->second;
  }
  work_state& work_of(runtime::work_item& w) {
    const auto it = work_.find(&w);
    PTR_ASSERT_MSG(it != work_.end(), "work item used before work_init");
    return it->second;
  }
  timer_state& timer_of(runtime::timer& t) {
    const auto it = timers_.find(&t);
    PTR_ASSERT_MSG(it != timers_.end(), "timer used before timer_init");
    return it->second;
  }
  std::deque<runtime::tasklet*>& tasklet_queue(unsigned cpu, runtime::tasklet_kind k) {
    return k == runtime::tasklet_kind::plain ? q_[cpu].plain : q_[cpu].softirq;
  }
  void enqueue(runtime::tasklet& t, tasklet_state& s, unsigned cpu) {
    tasklet_queue(cpu, s.kind).push_back(&t);
    s.queued = true;
    s.cpu = cpu;
  }
  void enqueue(runtime::work_item& w, work_state& s, unsigned cpu) {
    q_[cpu].work.push_back(&w);
    s.queued = true;
    s.cpu = cpu;
  }

  // Runs fn as `cpu` with mu_ released (mu_ held on entry and exit).
  void call_as(guard_t& lock, unsigned cpu, bool softirq, const std::function<void()>& fn) {
    lock.unlock();
    const context saved = tls();
    tls() = {this, cpu, softirq};
    fn();
    tls() = saved;
    lock.lock();
  }
  void run_tasklet(guard_t& lock, runtime::tasklet& t, tasklet_state& s, unsigned cpu) {
    s.running = true;
    s.cpu = cpu;
    call_as(lock, cpu, s.kind == runtime::tasklet_kind::softirq, s.fn);
    s.running = false;
    const unsigned again = s.resched_cpu;
    s.resched_cpu = runtime::no_cpu;
    if (again != runtime::no_cpu && !s.dead) enqueue(t, s, again);
    changed_.notify_all();
  }
  void run_work(guard_t& lock, runtime::work_item& w, work_state& s, unsigned cpu) {
    s.running = true;
    s.cpu = cpu;
    call_as(lock, cpu, false, s.fn);
    s.running = false;
    const unsigned again = s.resched_cpu;
    s.resched_cpu = runtime::no_cpu;
    if (again != runtime::no_cpu) enqueue(w, s, again);
    changed_.notify_all();
  }
  // The earliest expired timer, else a softirq tasklet. Returns whether it ran one.
  bool run_softirq_item(guard_t& lock, unsigned cpu) {
    std::vector<runtime::timer*>& timers = q_[cpu].timers;
    if (!timers.empty()) {
      const std::uint64_t now = now_ns();
      runtime::timer* best = nullptr;
      std::uint64_t best_ns = 0;
      for (runtime::timer* t : timers) {
        const std::uint64_t e = timers_.at(t).expires_ns;
        if (e <= now && (best == nullptr || e < best_ns)) {
          best = t;
          best_ns = e;
        }
      }
      if (best != nullptr) {
        unlink(timers, best);
        timer_state& s = timers_.at(best);
        s.armed = false;
        s.running = true;
        call_as(lock, cpu, true, s.fn);
        s.running = false;
        changed_.notify_all();
        return true;
      }
    }
    if (!q_[cpu].softirq.empty()) {
      runtime::tasklet* t = q_[cpu].softirq.front();
      q_[cpu].softirq.pop_front();
      tasklet_state& s = tasklets_.at(t);
      s.queued = false;
      run_tasklet(lock, *t, s, cpu);
      return true;
    }
    return false;
  }
  // A plain tasklet, else a work item. Returns whether it ran one.
  bool run_scheduled_item(guard_t& lock, unsigned cpu) {
    if (!q_[cpu].plain.empty()) {
      runtime::tasklet* t = q_[cpu].plain.front();
      q_[cpu].plain.pop_front();
      tasklet_state& s = tasklets_.at(t);
      s.queued = false;
      run_tasklet(lock, *t, s, cpu);
      return true;
    }
    if (!q_[cpu].work.empty()) {
      runtime::work_item* w = q_[cpu].work.front();
      q_[cpu].work.pop_front();
      work_state& s = work_.at(w);
      s.queued = false;
      run_work(lock, *w, s, cpu);
      return true;
    }
    return false;
  }

  const unsigned cpus_;
  const std::chrono::steady_clock::time_point start_;
  mutable std::mutex mu_;
  std::condition_variable changed_;  // an item finished running
  std::vector<cpu_queues> q_;
  std::unordered_map<const runtime::tasklet*, tasklet_state> tasklets_;
  std::unordered_map<const runtime::work_item*, work_state> work_;
  std::unordered_map<const runtime::timer*, timer_state> timers_;
  std::unordered_map<runtime::notifier_id, runtime::cpu_notifier> notifiers_;
  runtime::notifier_id next_notifier_ = 1;
};

}  // namespace ptreclaim::bench
