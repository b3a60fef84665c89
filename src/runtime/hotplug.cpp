// CPU hotplug: the notifier chain and the cpu_down / cpu_up sequences both executors share
// (the executor-specific parts are park_cpu / unpark_cpu / controller_hotplug).
#include <algorithm>

#include "ptreclaim/runtime/executor.hpp"

namespace ptreclaim::runtime {

notifier_id executor::register_cpu_notifier(cpu_notifier n, bool replay_online) {
  PTR_ASSERT_MSG(static_cast<bool>(n), "register_cpu_notifier: empty notifier");
  auto fn = std::make_shared<cpu_notifier>(std::move(n));
  notifier_id id;
  cpu_mask online;
  {
    lock_t lock(mu_);
    PTR_ASSERT_MSG(!hotplug_busy_, "register_cpu_notifier during a hotplug operation");
    PTR_ASSERT_MSG(notifiers_.size() < config_.max_notifiers, "run_config::max_notifiers reached");
    id = next_notifier_id_++;
    notifiers_.push_back({id, fn});
    for (unsigned c = 0; c < cpus_; ++c)
      if (slot_[c]->online) online.set(c);
  }
  if (replay_online) {
    for (unsigned c = online.next(0); c < cpus_; c = online.next(c + 1)) {
      (void)(*fn)(cpu_event::up_prepare, c);
      (void)(*fn)(cpu_event::online, c);
    }
  }
  return id;
}

void executor::unregister_cpu_notifier(notifier_id id) {
  lock_t lock(mu_);
  PTR_ASSERT_MSG(!hotplug_busy_, "unregister_cpu_notifier during a hotplug operation");
  auto it = std::find_if(notifiers_.begin(), notifiers_.end(),
                         [&](const notifier_entry& e) { return e.id == id; });
  PTR_ASSERT_MSG(it != notifiers_.end(), "unregister_cpu_notifier: unknown id");
  notifiers_.erase(it);
}

std::vector<executor::notifier_entry> executor::notifier_snapshot() const {
  lock_t lock(mu_);
  return notifiers_;
}

std::size_t executor::notify(cpu_event e, unsigned cpu, std::size_t limit, bool* vetoed,
                             bool* deferred) {
  const std::vector<notifier_entry> chain = notifier_snapshot();
  const std::size_t n = std::min(limit, chain.size());
  const bool may_veto = e == cpu_event::up_prepare || e == cpu_event::down_prepare;
  for (std::size_t i = 0; i < n; ++i) {
    notify_result r;
    {
      context_guard g(*this, current_cpu(), no_cpu, exec_context::notifier);
      r = (*chain[i].fn)(e, cpu);
    }
    if (r == notify_result::defer && e == cpu_event::down_prepare && deferred != nullptr &&
        hotplug_may_defer()) {
      *deferred = true;
      return i;
    }
    if ((r == notify_result::veto || r == notify_result::defer) && may_veto) {
      if (vetoed != nullptr) *vetoed = true;
      return i;
    }
  }
  return n;
}

void executor::inject_cpu_down_failure(unsigned count) {
  lock_t lock(mu_);
  injected_down_failures_ += count;
}

Status executor::cpu_down(unsigned cpu) {
  PTR_ASSERT_MSG(cpu < cpus_, "cpu_down: no such CPU");
  PTR_ASSERT_MSG(context() != exec_context::actor, "cpu_down from an actor");
  return on_cpu() ? hotplug(hotplug_op::down, cpu) : controller_hotplug(hotplug_op::down, cpu);
}

Status executor::cpu_up(unsigned cpu) {
  PTR_ASSERT_MSG(cpu < cpus_, "cpu_up: no such CPU");
  PTR_ASSERT_MSG(context() != exec_context::actor, "cpu_up from an actor");
  return on_cpu() ? hotplug(hotplug_op::up, cpu) : controller_hotplug(hotplug_op::up, cpu);
}

Status executor::hotplug(hotplug_op op, unsigned target) {
  PTR_ASSERT_MSG(on_cpu(), "hotplug runs as a CPU");
  switch (op) {
    case hotplug_op::down:
      return do_cpu_down(target, false);
    case hotplug_op::down_fail:
      return do_cpu_down(target, true);
    case hotplug_op::up:
      return do_cpu_up(target);
  }
  return errc::invalid_argument;
}

Status executor::do_cpu_down(unsigned target, bool force_fail) {
  const unsigned self = current_cpu();
  bool force = force_fail;
  {
    lock_t lock(mu_);
    if (hotplug_busy_) return Status(errc::busy, "another hotplug operation is in progress");
    if (!slot_[target]->online)
      return Status(errc::invalid_argument, "cpu_down: CPU already offline");
    if (target == self)
      return Status(errc::invalid_argument, "cpu_down: a CPU cannot take itself down");
    unsigned online = 0;
    for (const auto& s : slot_)
      online += s->online ? 1 : 0;
    if (online < 2) return Status(errc::invalid_argument, "cpu_down: last online CPU");
    hotplug_busy_ = true;
  }
  // The target stays parked (at a step boundary) for the whole sequence, so notifiers may
  // touch its per-CPU data: it has exactly one user at a time.
  park_cpu(target);
  bool vetoed = false;
  bool deferred = false;
  const std::size_t called =
      notify(cpu_event::down_prepare, target, ~std::size_t{0}, &vetoed, &deferred);
  // A deferred try is not a hotplug yet (stop_machine still waits): no cost, no injected failure.
  if (!deferred) {
    charge_ns(config_.costs.hotplug_ns);
    lock_t lock(mu_);
    if (!force && injected_down_failures_ > 0) {
      --injected_down_failures_;
      force = true;
    }
  }
  if (deferred || vetoed || force) {
    notify(cpu_event::down_failed, target, called, nullptr);
    unpark_cpu(target);
    lock_t lock(mu_);
    hotplug_busy_ = false;
    if (deferred) {
      down_deferred_ = true;
      ++counters_.hotplug_defers;
      return Status(errc::busy, "cpu_down deferred: CPU " + std::to_string(target) +
                                    " is not at a point where it may stop");
    }
    ++counters_.cpu_down_failures;
    return Status(errc::busy, vetoed ? "cpu_down vetoed by a down_prepare notifier"
                                     : "cpu_down failure injected");
  }
  {
    lock_t lock(mu_);
    cpu_slot& dead = *slot_[target];
    dead.online = false;
    if (config_.on_cpu_dead == dead_cpu_work::migrate) {
      cpu_slot& here = *slot_[self];
      bool moved = false;
      while (tasklet* t = dead.plain.pop_front()) {
        here.plain.push_back(t);
        t->cpu_ = self;
        moved = true;
      }
      while (tasklet* t = dead.softirq.pop_front()) {
        here.softirq.push_back(t);
        t->cpu_ = self;
        moved = true;
      }
      while (work_item* w = dead.work.pop_front()) {
        here.work.push_back(w);
        w->cpu_ = self;
        moved = true;
      }
      while (timer* t = dead.timers.pop_front()) {
        here.timers.push_back(t);
        t->cpu_ = self;
        moved = true;
      }
      if (moved) {
        on_cpu_work(self, now_ns(), false);
        on_cpu_work(self, next_timer_ns(self), true);
      }
    }
  }
  notify(cpu_event::dead, target, ~std::size_t{0}, nullptr);
  lock_t lock(mu_);
  hotplug_busy_ = false;
  ++counters_.cpu_downs;
  notify_changed();
  return {};
}

bool executor::hotplug_down_waiting(unsigned cpu) const {
  lock_t lock(mu_);
  return cpu < deferred_until_.size() && deferred_until_[cpu] != 0;
}

void executor::run_scheduled_hotplug(std::size_t& next, std::uint64_t now_ns) {
  const auto requeue = [this, &next](const hotplug_event& ev) {  // mu_ held
    const auto at = std::upper_bound(
        hotplug_events_.begin() + static_cast<std::ptrdiff_t>(next), hotplug_events_.end(), ev,
        [](const hotplug_event& a, const hotplug_event& b) { return a.at_ns < b.at_ns; });
    hotplug_events_.insert(at, ev);
  };
  hotplug_event ev;
  {
    lock_t lock(mu_);
    ev = hotplug_events_[next++];
    if (ev.defers == 0 && deferred_until_[ev.cpu] != 0) {
      // A later event for a CPU whose cpu_down still waits keeps its place behind it.
      ev.at_ns = std::max(ev.at_ns, deferred_until_[ev.cpu]);
      requeue(ev);
      return;
    }
    // Marks the down as waiting from before its first down_prepare, so the target never sees
    // a deferring notifier's state without it (hotplug_down_waiting).
    if (ev.op != hotplug_op::up && deferred_until_[ev.cpu] == 0) deferred_until_[ev.cpu] = ~0ULL;
  }
  may_defer_.store(ev.defers < config_.hotplug_max_defers, std::memory_order_relaxed);
  const Status s = controller_hotplug(ev.op, ev.cpu);
  may_defer_.store(false, std::memory_order_relaxed);
  lock_t lock(mu_);
  if (down_deferred_) {
    down_deferred_ = false;
    ++ev.defers;
    ev.at_ns = now_ns + std::max<std::uint64_t>(1, config_.hotplug_defer_ns);
    deferred_until_[ev.cpu] = ev.at_ns;
    requeue(ev);
    return;
  }
  if (ev.op != hotplug_op::up) deferred_until_[ev.cpu] = 0;
  --hotplug_events_left_;
  if (!s.ok() && s.code() == errc::invalid_argument) ++counters_.hotplug_rejected;
}

Status executor::do_cpu_up(unsigned target) {
  {
    lock_t lock(mu_);
    if (hotplug_busy_) return Status(errc::busy, "another hotplug operation is in progress");
    if (slot_[target]->online) return Status(errc::invalid_argument, "cpu_up: CPU already online");
    hotplug_busy_ = true;
  }
  charge_ns(config_.costs.hotplug_ns);
  bool vetoed = false;
  const std::size_t called = notify(cpu_event::up_prepare, target, ~std::size_t{0}, &vetoed);
  if (vetoed) {
    notify(cpu_event::up_canceled, target, called, nullptr);
    lock_t lock(mu_);
    hotplug_busy_ = false;
    ++counters_.cpu_up_failures;
    return Status(errc::busy, "cpu_up vetoed by an up_prepare notifier");
  }
  {
    lock_t lock(mu_);
    slot_[target]->online = true;
  }
  unpark_cpu(target);
  notify(cpu_event::online, target, ~std::size_t{0}, nullptr);
  lock_t lock(mu_);
  hotplug_busy_ = false;
  ++counters_.cpu_ups;
  notify_changed();
  return {};
}

}  // namespace ptreclaim::runtime
