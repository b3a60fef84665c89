// The executor's Linux work items (init, queue, run, flush) and Xen timers (init, arm, stop,
// kill), the state machines both executors share; the rest of the machinery is in executor.cpp.
#include <algorithm>
#include <limits>

#include "ptreclaim/runtime/executor.hpp"

namespace ptreclaim::runtime {

// ---- workqueue ----

void executor::work_init(work_item& w, std::function<void()> fn) {
  PTR_ASSERT_MSG(static_cast<bool>(fn), "work_init: empty function");
  lock_t lock(mu_);
  PTR_ASSERT_MSG(!w.queued_ && !w.running_, "work_init of a pending or running work item");
  w.fn_ = std::move(fn);
  w.initialised_ = true;
  w.cpu_ = no_cpu;
  w.resched_cpu_ = no_cpu;
}

void executor::enqueue_work(work_item& w, unsigned cpu) {
  slot_[cpu]->work.push_back(&w);
  w.queued_ = true;
  w.cpu_ = cpu;
  on_cpu_work(cpu, now_ns(), false);
}

bool executor::schedule_work(work_item& w) {
  PTR_ASSERT_MSG(on_cpu(), "schedule_work outside CPU context (use schedule_work_on)");
  return schedule_work_on(current_cpu(), w);
}

bool executor::schedule_work_on(unsigned cpu, work_item& w) {
  PTR_ASSERT_MSG(cpu < cpus_, "schedule_work_on: no such CPU");
  lock_t lock(mu_);
  PTR_ASSERT_MSG(w.initialised_, "schedule_work of an uninitialised work item");
  if (w.queued_ || w.resched_cpu_ != no_cpu) return false;  // already PENDING
  if (w.running_) {
    w.resched_cpu_ = w.cpu_;  // non-reentrant: queue behind itself on the CPU running it
    return true;
  }
  // Still running in the caller's time (its run ended later on the clock of the CPU that ran
  // it): the same rule. Without it a deterministic run let a second CPU run the item in
  // parallel with the first, where Linux queues it behind the running one and the next run
  // takes whatever piled up meanwhile (linux-global-work on sva-kernel: 1.1 pages per flush at
  // 2 CPUs deterministic, 2.7 threaded).
  if (w.cpu_ != no_cpu && now_ns() < w.ran_until_ns_ && slot_[w.cpu_]->online) cpu = w.cpu_;
  enqueue_work(w, cpu);
  return true;
}

void executor::run_work(lock_t& lock, work_item& w, unsigned cpu) {
  w.running_ = true;
  w.cpu_ = cpu;
  ++running_items_;
  lock.unlock();
  charge_ns(config_.costs.work_ns);
  {
    context_guard g(*this, cpu, no_cpu, exec_context::work);
    w.fn_();
    w.ran_until_ns_ = now_ns();
  }
  lock.lock();
  w.running_ = false;
  --running_items_;
  ++slot_[cpu]->stats.work_items;
  ++counters_.work_run;
  const unsigned again = w.resched_cpu_;
  w.resched_cpu_ = no_cpu;
  if (again != no_cpu) enqueue_work(w, again);
  notify_changed();
}

bool executor::flush_work(work_item& w) {
  PTR_ASSERT_MSG(context() != exec_context::actor, "flush_work from an actor");
  lock_t lock(mu_);
  bool did = false;
  for (;;) {
    if (!w.queued_ && !w.running_ && w.resched_cpu_ == no_cpu) return did;
    did = true;
    if (w.running_) {
      PTR_ASSERT_MSG(
          !(on_cpu() && current_cpu() == w.cpu_),
          "flush_work from the work item itself (or its CPU while it runs) would wait forever");
      wait_for_change(lock);
      continue;
    }
    const unsigned c = w.cpu_;
    const bool mine_cpu = on_cpu() && current_cpu() == c;
    if (mine_cpu || !slot_[c]->online) {
      PTR_ASSERT_MSG(on_cpu(), "flush_work from the controller of an item on an offline CPU");
      slot_[c]->work.remove(&w);
      w.queued_ = false;
      run_work(lock, w, current_cpu());
      continue;
    }
    flush_remote(lock, w);
  }
}

unsigned executor::unqueue_work(work_item& w) {
  PTR_ASSERT(w.queued_);
  const unsigned c = w.cpu_;
  slot_[c]->work.remove(&w);
  w.queued_ = false;
  return c;
}

bool executor::work_pending(const work_item& w) const {
  lock_t lock(mu_);
  return w.queued_ || w.resched_cpu_ != no_cpu;
}

// ---- timers ----

void executor::timer_init(timer& t, std::function<void()> fn, unsigned cpu) {
  PTR_ASSERT_MSG(static_cast<bool>(fn), "timer_init: empty function");
  PTR_ASSERT_MSG(cpu < cpus_, "timer_init: no such CPU");
  lock_t lock(mu_);
  PTR_ASSERT_MSG(!t.queued_ && !t.running_, "timer_init of an armed or running timer");
  t.fn_ = std::move(fn);
  t.initialised_ = true;
  t.dead_ = false;
  t.cpu_ = cpu;
}

void executor::set_timer(timer& t, std::uint64_t expires_ns) {
  lock_t lock(mu_);
  PTR_ASSERT_MSG(t.initialised_, "set_timer of an uninitialised timer");
  if (t.dead_) return;
  t.expires_ns_ = expires_ns;
  if (!t.queued_) {
    slot_[t.cpu_]->timers.push_back(&t);
    t.queued_ = true;
  }
  on_cpu_work(t.cpu_, expires_ns, true);
}

bool executor::stop_timer(timer& t) {
  lock_t lock(mu_);
  if (!t.queued_) return false;
  slot_[t.cpu_]->timers.remove(&t);
  t.queued_ = false;
  return true;
}

void executor::kill_timer(timer& t) {
  lock_t lock(mu_);
  if (t.queued_) {
    slot_[t.cpu_]->timers.remove(&t);
    t.queued_ = false;
  }
  t.dead_ = true;
  while (t.running_) {
    PTR_ASSERT_MSG(!(on_cpu() && current_cpu() == t.cpu_), "kill_timer from the timer itself");
    wait_for_change(lock);
  }
}

bool executor::timer_is_armed(const timer& t) const {
  lock_t lock(mu_);
  return t.queued_;
}

}  // namespace ptreclaim::runtime
