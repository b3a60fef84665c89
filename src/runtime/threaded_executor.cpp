#include "ptreclaim/runtime/threaded_executor.hpp"

#include <algorithm>
#include <chrono>

#include "ptreclaim/base/bits.hpp"

namespace ptreclaim::runtime {
namespace {
constexpr std::chrono::nanoseconds poll{1000000};  // upper bound of any sleep: 1 ms

std::uint64_t steady_ns() noexcept {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                        std::chrono::steady_clock::now().time_since_epoch())
                                        .count());
}

}  // namespace

threaded_executor::threaded_executor(run_config config) : executor(config), start_ns_(steady_ns()) {
  for (unsigned c = 0; c < cpus_; ++c)
    cpu_threads_.push_back(std::make_unique<cpu_thread>());
}

threaded_executor::~threaded_executor() {
  stop_threads();
}

std::uint64_t threaded_executor::now_ns() noexcept {
  return steady_ns() - start_ns_;
}

bool threaded_executor::wait_until(const std::function<bool()>& done, std::uint64_t timeout_ns) {
  return spin_until(done, timeout_ns);
}

void threaded_executor::wake_actor(actor_id id) {
  lock_t lock(mu_);
  PTR_ASSERT_MSG(id < actors_.size(), "wake_actor: no such actor");
  actors_[id]->wake_ns = 0;
  if (id < actor_threads_.size()) actor_threads_[id]->cv.notify_one();
}

// ---- hooks ----

void threaded_executor::on_cpu_work(unsigned cpu, std::uint64_t /*at_ns*/, bool /*is_timer*/) {
  cpu_threads_[cpu]->attention.store(true, std::memory_order_release);
  cpu_threads_[cpu]->cv.notify_one();
}

void threaded_executor::wait_for_change(lock_t& lock) {
  ++change_waiters_;
  changed_.wait_for(lock, poll);
  --change_waiters_;
}

void threaded_executor::flush_remote(lock_t& lock, work_item& w) {
  if (!threads_running_) {
    // Nobody else will run it: run it here as its CPU.
    const unsigned c = unqueue_work(w);
    context_guard g(*this, c, no_cpu, exec_context::process);
    run_work(lock, w, c);
    return;
  }
  wait_for_change(lock);
}

void threaded_executor::hold(lock_t& lock, unsigned cpu) {
  cpu_thread& t = *cpu_threads_[cpu];
  ++t.holds;
  t.attention.store(true, std::memory_order_release);
  if (!threads_running_) return;
  t.cv.notify_one();
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::nanoseconds(config_.park_timeout_ns);
  while (!t.held) {
    PTR_ASSERT_MSG(std::chrono::steady_clock::now() < deadline,
                   "threaded executor: a CPU did not reach a step boundary to park (is a step "
                   "waiting for the CPU running the hotplug?)");
    ++change_waiters_;
    changed_.wait_for(lock, poll);
    --change_waiters_;
  }
}

void threaded_executor::release(unsigned cpu) {
  cpu_thread& t = *cpu_threads_[cpu];
  PTR_ASSERT(t.holds > 0);
  if (--t.holds == 0) t.cv.notify_one();
}

void threaded_executor::park_cpu(unsigned cpu) {
  lock_t lock(mu_);
  hold(lock, cpu);
}

void threaded_executor::unpark_cpu(unsigned cpu) {
  lock_t lock(mu_);
  release(cpu);
}

Status threaded_executor::controller_hotplug(hotplug_op op, unsigned target) {
  unsigned runner = no_cpu;
  {
    lock_t lock(mu_);
    for (unsigned c = 0; c < cpus_ && runner == no_cpu; ++c)
      if (slot_[c]->online && c != target) runner = c;
    if (runner == no_cpu)
      return Status(errc::invalid_argument, "hotplug: no online CPU besides the target to run it");
    hold(lock, runner);
  }
  Status st;
  {
    context_guard g(*this, runner, no_cpu, exec_context::process);
    st = hotplug(op, target);
  }
  lock_t lock(mu_);
  release(runner);
  return st;
}

// ---- threads ----

void threaded_executor::cpu_loop(unsigned cpu) {
  context_guard g(*this, cpu, no_cpu, exec_context::process);
  cpu_thread& me = *cpu_threads_[cpu];
  cpu_slot& s = *slot_[cpu];
  lock_t lock(mu_);
  while (!stop_) {
    if (me.holds > 0) {
      me.held = true;
      notify_changed();
      me.cv.wait(lock, [&] { return me.holds == 0 || stop_; });
      me.held = false;
      continue;
    }
    if (run_one_softirq(lock, cpu) != ran::nothing) continue;
    if ((s.sched_point || !s.prog_active) && run_one_scheduled(lock, cpu) != ran::nothing) continue;
    const std::uint64_t now = now_ns();
    if (s.prog_active && now >= s.prog_wake_ns) {
      run_steps(lock, cpu);
      continue;
    }
    std::uint64_t wake = next_timer_ns(cpu);
    if (s.prog_active) wake = std::min(wake, s.prog_wake_ns);
    const std::uint64_t wait_ns =
        wake > now ? std::min<std::uint64_t>(wake - now, poll.count()) : 0;
    if (wait_ns > 0) {
      if (quiescent() || stalled()) maybe_done_.notify_one();
      me.cv.wait_for(lock, std::chrono::nanoseconds(wait_ns));
    }
  }
}

void threaded_executor::run_steps(lock_t& lock, unsigned cpu) {
  cpu_thread& me = *cpu_threads_[cpu];
  cpu_slot& s = *slot_[cpu];
  // cpu_loop has just found, without releasing mu_, no park request and no softirq item. What
  // is still queued (a tasklet or work item waiting for a scheduler point) keeps the flag set,
  // and anything queued later sets it: either sends the next step boundary through mu_.
  PTR_ASSERT(me.holds == 0 && s.softirq.empty());
  me.attention.store(has_scheduled_work(cpu), std::memory_order_relaxed);
  const std::uint64_t timer_due = next_timer_ns(cpu);
  lock.unlock();
  step_result r = s.prog(cpu);
  for (;;) {
    const auto k = r.what();
    if (k != step_result::kind::busy && k != step_result::kind::yield) break;
    if (me.attention.load(std::memory_order_acquire) || now_ns() >= timer_due) break;
    // busy and yield touch only this CPU's step bookkeeping, which only this thread reads
    // while the threads run.
    apply_step_result(cpu, r, 0);
    r = s.prog(cpu);
  }
  lock.lock();
  apply_step_result(cpu, r, now_ns());
}

void threaded_executor::actor_loop(unsigned a) {
  context_guard g(*this, no_cpu, a, exec_context::actor);
  actor_thread& me = *actor_threads_[a];
  actor_slot& s = *actors_[a];
  lock_t lock(mu_);
  while (!stop_ && !s.finished) {
    const std::uint64_t now = now_ns();
    if (s.wake_ns > now) {
      me.cv.wait_for(
          lock, std::chrono::nanoseconds(std::min<std::uint64_t>(s.wake_ns - now, poll.count())));
      continue;
    }
    lock.unlock();
    const step_result r = s.spec.step();
    lock.lock();
    ++s.steps;
    switch (r.what()) {
      case step_result::kind::busy:
      case step_result::kind::yield:
        s.wake_ns = 0;
        break;
      case step_result::kind::idle:
        s.wake_ns = sat_add(now_ns(), config_.costs.idle_poll_ns);
        break;
      case step_result::kind::sleep:
        s.wake_ns = sat_add(now_ns(), r.sleep_ns());
        break;
      case step_result::kind::finished:
        s.finished = true;
        if (!s.spec.daemon) --nondaemon_actors_active_;
        notify_changed();
        maybe_done_.notify_one();
        break;
    }
  }
}

void threaded_executor::stop_threads() {
  {
    lock_t lock(mu_);
    if (!threads_running_) return;
    stop_ = true;
    for (auto& t : cpu_threads_) {
      t->attention.store(true, std::memory_order_release);
      t->cv.notify_all();
    }
    for (auto& t : actor_threads_)
      t->cv.notify_all();
  }
  for (auto& t : cpu_threads_)
    if (t->thread.joinable()) t->thread.join();
  for (auto& t : actor_threads_)
    if (t->thread.joinable()) t->thread.join();
  lock_t lock(mu_);
  threads_running_ = false;
}

run_stats threaded_executor::run() {
  run_stats st;
  const std::uint64_t begin = now_ns();
  {
    lock_t lock(mu_);
    start_run();
    for (unsigned c = 0; c < cpus_; ++c) {
      cpu_threads_[c]->holds = slot_[c]->online ? 0 : 1;
      cpu_threads_[c]->held = false;
    }
    for (std::size_t a = 0; a < actors_.size(); ++a)
      actor_threads_.push_back(std::make_unique<actor_thread>());
    threads_running_ = true;
    for (unsigned c = 0; c < cpus_; ++c)
      cpu_threads_[c]->thread = std::thread([this, c] { cpu_loop(c); });
    for (unsigned a = 0; a < actors_.size(); ++a)
      actor_threads_[a]->thread = std::thread([this, a] { actor_loop(a); });
  }
  std::size_t next_event = 0;
  std::uint64_t progress_seen = config_.progress ? config_.progress() : 0;
  std::uint64_t progress_at = begin;
  for (;;) {
    lock_t lock(mu_);
    if (stop_requested_.load(std::memory_order_acquire)) {
      st.reason = stop_reason::requested;
      break;
    }
    if (quiescent()) {
      st.reason = stop_reason::quiescent;
      break;
    }
    if (stalled()) {
      st.reason = stop_reason::stalled;
      break;
    }
    const std::uint64_t now = now_ns();
    if (now - begin >= config_.real_time_limit_ns) {
      st.reason = stop_reason::time_limit;
      break;
    }
    if (config_.progress && config_.stall_real_ns != 0) {
      const std::uint64_t p = config_.progress();
      if (p != progress_seen) {
        progress_seen = p;
        progress_at = now;
      } else if (now - progress_at >= config_.stall_real_ns) {
        st.reason = stop_reason::no_progress;
        break;
      }
    }
    if (next_event < hotplug_events_.size() && begin + hotplug_events_[next_event].at_ns <= now) {
      lock.unlock();
      run_scheduled_hotplug(next_event, now - begin);
      continue;
    }
    std::uint64_t wait_ns = poll.count();
    if (next_event < hotplug_events_.size())
      wait_ns = std::min(wait_ns, begin + hotplug_events_[next_event].at_ns - now);
    maybe_done_.wait_for(lock, std::chrono::nanoseconds(wait_ns));
  }
  stop_threads();
  lock_t lock(mu_);
  st.elapsed_ns = now_ns() - begin;
  for (const auto& a : actors_) {
    st.actor_steps.push_back(a->steps);
    st.steps += a->steps;
  }
  fill_stats(st, st.reason == stop_reason::quiescent);
  for (const auto& c : st.cpu)
    st.steps += c.program_steps + c.tasklets + c.softirq_tasklets + c.work_items + c.timers;
  return st;
}

}  // namespace ptreclaim::runtime
