// The executor machinery both executors share: deferred-work state machines (Xen tasklets,
// Linux work items, Xen timers), softirq processing and the hotplug sequence. Executor-specific
// parts (time, waking, waiting, parking) are the virtual hooks.
#include "ptreclaim/runtime/executor.hpp"

#include <algorithm>
#include <limits>

namespace ptreclaim::runtime {
namespace {
constexpr std::uint64_t never = std::numeric_limits<std::uint64_t>::max();
}  // namespace

const char* exec_context_name(exec_context c) noexcept {
  switch (c) {
    case exec_context::none:
      return "none";
    case exec_context::process:
      return "process";
    case exec_context::softirq:
      return "softirq";
    case exec_context::tasklet:
      return "tasklet";
    case exec_context::work:
      return "work";
    case exec_context::notifier:
      return "notifier";
    case exec_context::actor:
      return "actor";
  }
  return "?";
}

const char* cpu_event_name(cpu_event e) noexcept {
  switch (e) {
    case cpu_event::up_prepare:
      return "up_prepare";
    case cpu_event::up_canceled:
      return "up_canceled";
    case cpu_event::online:
      return "online";
    case cpu_event::down_prepare:
      return "down_prepare";
    case cpu_event::down_failed:
      return "down_failed";
    case cpu_event::dead:
      return "dead";
  }
  return "?";
}

const char* stop_reason_name(stop_reason r) noexcept {
  switch (r) {
    case stop_reason::quiescent:
      return "quiescent";
    case stop_reason::time_limit:
      return "time_limit";
    case stop_reason::step_limit:
      return "step_limit";
    case stop_reason::stalled:
      return "stalled";
    case stop_reason::requested:
      return "requested";
    case stop_reason::no_progress:
      return "no_progress";
  }
  return "?";
}

// ---- contexts ----

executor::tls_context& executor::tls() noexcept {
  thread_local tls_context ctx;
  return ctx;
}

const executor::tls_context* executor::mine() const noexcept {
  const tls_context& c = tls();
  return c.owner == this ? &c : nullptr;
}

executor::context_guard::context_guard(const executor& ex, unsigned cpu, unsigned actor,
                                       exec_context kind) noexcept
    : saved_(tls()) {
  tls() = tls_context{&ex, cpu, actor, kind};
}

executor::context_guard::~context_guard() {
  tls() = saved_;
}

unsigned executor::current_cpu() const noexcept {
  const tls_context* m = mine();
  return m != nullptr && m->cpu != no_cpu ? m->cpu : 0;
}

bool executor::on_cpu() const noexcept {
  const tls_context* m = mine();
  return m != nullptr && m->cpu != no_cpu;
}

exec_context executor::context() const noexcept {
  const tls_context* m = mine();
  return m != nullptr ? m->kind : exec_context::none;
}

// ---- construction and setup ----

executor::executor(run_config config) : config_(config), cpus_(config_.cpus) {
  PTR_ASSERT_MSG(cpus_ >= 1 && cpus_ <= limits::max_cpus, "run_config::cpus must be 1..max_cpus");
  PTR_ASSERT_MSG(config_.max_actors <= max_actors_limit, "run_config::max_actors beyond limit");
  if (config_.online.empty()) config_.online = cpu_mask::first(cpus_);
  PTR_ASSERT_MSG(config_.online.next(cpus_) == limits::max_cpus,
                 "run_config::online names a CPU beyond run_config::cpus");
  slot_.reserve(cpus_);
  for (unsigned c = 0; c < cpus_; ++c) {
    slot_.push_back(std::make_unique<cpu_slot>());
    slot_.back()->online = config_.online.test(c);
  }
  counters_.cpu.resize(cpus_);
}

executor::~executor() = default;

bool executor::cpu_online(unsigned cpu) const {
  PTR_ASSERT_MSG(cpu < cpus_, "cpu_online: no such CPU");
  lock_t lock(mu_);
  return slot_[cpu]->online;
}

cpu_mask executor::online_mask() const {
  lock_t lock(mu_);
  cpu_mask m;
  for (unsigned c = 0; c < cpus_; ++c)
    if (slot_[c]->online) m.set(c);
  return m;
}

void executor::set_program(unsigned cpu, program p) {
  PTR_ASSERT_MSG(cpu < cpus_, "set_program: no such CPU");
  lock_t lock(mu_);
  PTR_ASSERT_MSG(!ran_, "set_program after run()");
  slot_[cpu]->prog = std::move(p);
}

actor_id executor::add_actor(actor_spec spec) {
  PTR_ASSERT_MSG(static_cast<bool>(spec.step), "add_actor: empty step function");
  lock_t lock(mu_);
  PTR_ASSERT_MSG(!ran_, "add_actor after run()");
  PTR_ASSERT_MSG(actors_.size() < config_.max_actors, "add_actor: run_config::max_actors reached");
  actors_.push_back(std::make_unique<actor_slot>());
  actors_.back()->spec = std::move(spec);
  return static_cast<actor_id>(actors_.size() - 1);
}

void executor::schedule_hotplug(hotplug_event e) {
  PTR_ASSERT_MSG(e.cpu < cpus_, "schedule_hotplug: no such CPU");
  lock_t lock(mu_);
  PTR_ASSERT_MSG(!ran_, "schedule_hotplug after run()");
  hotplug_events_.push_back(e);
}

void executor::start_run() {
  PTR_ASSERT_MSG(!ran_, "run() called twice");
  ran_ = true;
  programs_active_ = 0;
  for (auto& s : slot_) {
    s->prog_active = static_cast<bool>(s->prog);
    s->sched_point = true;
    s->prog_wake_ns = 0;
    if (s->prog_active) ++programs_active_;
  }
  nondaemon_actors_active_ = 0;
  for (auto& a : actors_)
    if (!a->spec.daemon) ++nondaemon_actors_active_;
  std::stable_sort(
      hotplug_events_.begin(), hotplug_events_.end(),
      [](const hotplug_event& a, const hotplug_event& b) { return a.at_ns < b.at_ns; });
  hotplug_events_left_ = static_cast<int>(hotplug_events_.size());
  deferred_until_.assign(cpus_, 0);
}

// ---- tasklets ----

void executor::tasklet_lock_pass() {
  lock_acquire(&tasklet_lock_);
  charge(cost_kind::enqueue);  // the list operation under it
  lock_release(&tasklet_lock_);
}

void executor::tasklet_init(tasklet& t, std::function<void()> fn, tasklet_kind kind) {
  PTR_ASSERT_MSG(static_cast<bool>(fn), "tasklet_init: empty function");
  name_shared(&tasklet_lock_, "Xen's tasklet_lock (every CPU's tasklet lists)");
  lock_t lock(mu_);
  PTR_ASSERT_MSG(!t.queued_ && !t.running_, "tasklet_init of a scheduled or running tasklet");
  t.fn_ = std::move(fn);
  t.kind_ = kind;
  t.initialised_ = true;
  t.dead_ = false;
  t.cpu_ = no_cpu;
  t.resched_cpu_ = no_cpu;
}

bool executor::tasklet_schedule(tasklet& t) {
  PTR_ASSERT_MSG(on_cpu(), "tasklet_schedule outside CPU context (use tasklet_schedule_on)");
  return tasklet_schedule_on(t, current_cpu());
}

void executor::enqueue_tasklet(tasklet& t, unsigned cpu) {
  cpu_slot& s = *slot_[cpu];
  (t.kind_ == tasklet_kind::plain ? s.plain : s.softirq).push_back(&t);
  t.queued_ = true;
  t.cpu_ = cpu;
  on_cpu_work(cpu, now_ns(), false);
}

bool executor::tasklet_schedule_on(tasklet& t, unsigned cpu) {
  PTR_ASSERT_MSG(cpu < cpus_, "tasklet_schedule_on: no such CPU");
  tasklet_lock_pass();
  lock_t lock(mu_);
  PTR_ASSERT_MSG(t.initialised_, "tasklet_schedule of an uninitialised tasklet");
  if (t.dead_) return false;
  if (t.running_) {
    if (t.resched_cpu_ == cpu) return false;
    t.resched_cpu_ = cpu;  // Xen: scheduled_on; requeued when the run ends
    return true;
  }
  if (t.queued_) {
    if (t.cpu_ == cpu) return false;
    cpu_slot& old = *slot_[t.cpu_];
    (t.kind_ == tasklet_kind::plain ? old.plain : old.softirq).remove(&t);
    t.queued_ = false;
  }
  enqueue_tasklet(t, cpu);
  return true;
}

void executor::tasklet_kill(tasklet& t) {
  lock_t lock(mu_);
  if (t.queued_) {
    cpu_slot& s = *slot_[t.cpu_];
    (t.kind_ == tasklet_kind::plain ? s.plain : s.softirq).remove(&t);
    t.queued_ = false;
  }
  t.resched_cpu_ = no_cpu;
  t.dead_ = true;
  while (t.running_) {
    // Only one thread runs as a CPU at a time, so a running tasklet on our own CPU is us.
    PTR_ASSERT_MSG(!(on_cpu() && current_cpu() == t.cpu_),
                   "tasklet_kill from the tasklet itself would wait forever");
    wait_for_change(lock);
  }
}

bool executor::tasklet_is_scheduled(const tasklet& t) const {
  lock_t lock(mu_);
  return t.queued_ || (t.running_ && t.resched_cpu_ != no_cpu);
}
bool executor::tasklet_is_running(const tasklet& t) const {
  lock_t lock(mu_);
  return t.running_;
}
bool executor::tasklet_is_dead(const tasklet& t) const {
  lock_t lock(mu_);
  return t.dead_;
}

void executor::run_tasklet(lock_t& lock, tasklet& t, unsigned cpu) {
  t.running_ = true;
  t.cpu_ = cpu;
  ++running_items_;
  const bool plain = t.kind_ == tasklet_kind::plain;
  lock.unlock();
  charge_ns(plain ? config_.costs.tasklet_ns : config_.costs.softirq_item_ns);
  tasklet_lock_pass();  // do_tasklet_work: dequeue, is_running = 1
  {
    context_guard g(*this, cpu, no_cpu, plain ? exec_context::tasklet : exec_context::softirq);
    t.fn_();
  }
  tasklet_lock_pass();  // is_running = 0; re-enqueued if scheduled meanwhile
  lock.lock();
  t.running_ = false;
  --running_items_;
  if (plain) {
    ++slot_[cpu]->stats.tasklets;
    ++counters_.tasklets_run;
  } else {
    ++slot_[cpu]->stats.softirq_tasklets;
    ++counters_.softirq_tasklets_run;
  }
  const unsigned again = t.resched_cpu_;
  t.resched_cpu_ = no_cpu;
  if (again != no_cpu && !t.dead_) enqueue_tasklet(t, again);
  notify_changed();
}

// ---- softirq and scheduler points ----

executor::ran executor::run_one_softirq(lock_t& lock, unsigned cpu) {
  cpu_slot& s = *slot_[cpu];
  const std::uint64_t now = now_ns();
  timer* best = nullptr;
  s.timers.for_each([&](timer* t) {
    if (t->expires_ns_ <= now && (best == nullptr || t->expires_ns_ < best->expires_ns_)) best = t;
  });
  if (best != nullptr) {
    s.timers.remove(best);
    best->queued_ = false;
    best->running_ = true;
    ++running_items_;
    lock.unlock();
    charge_ns(config_.costs.softirq_item_ns);
    {
      context_guard g(*this, cpu, no_cpu, exec_context::softirq);
      best->fn_();
    }
    lock.lock();
    best->running_ = false;
    --running_items_;
    ++s.stats.timers;
    ++counters_.timers_fired;
    notify_changed();
    return ran::timer;
  }
  if (tasklet* t = s.softirq.pop_front()) {
    t->queued_ = false;
    run_tasklet(lock, *t, cpu);
    return ran::softirq_tasklet;
  }
  return ran::nothing;
}

executor::ran executor::run_one_scheduled(lock_t& lock, unsigned cpu) {
  cpu_slot& s = *slot_[cpu];
  if (tasklet* t = s.plain.pop_front()) {
    t->queued_ = false;
    run_tasklet(lock, *t, cpu);
    return ran::tasklet;
  }
  if (work_item* w = s.work.pop_front()) {
    w->queued_ = false;
    run_work(lock, *w, cpu);
    return ran::work;
  }
  return ran::nothing;
}

bool executor::has_softirq_work(unsigned cpu, std::uint64_t now) const {
  const cpu_slot& s = *slot_[cpu];
  return !s.softirq.empty() || next_timer_ns(cpu) <= now;
}

bool executor::has_scheduled_work(unsigned cpu) const {
  const cpu_slot& s = *slot_[cpu];
  return !s.plain.empty() || !s.work.empty();
}

std::uint64_t executor::next_timer_ns(unsigned cpu) const {
  std::uint64_t t = never;
  slot_[cpu]->timers.for_each([&](timer* x) { t = std::min(t, x->expires_ns_); });
  return t;
}

void executor::process_pending_softirqs() {
  PTR_ASSERT_MSG(on_cpu(), "process_pending_softirqs outside CPU context");
  if (context() == exec_context::softirq) return;  // softirqs do not nest
  const unsigned cpu = current_cpu();
  lock_t lock(mu_);
  while (run_one_softirq(lock, cpu) != ran::nothing) {
  }
}

void executor::apply_step_result(unsigned cpu, step_result r, std::uint64_t now) {
  cpu_slot& s = *slot_[cpu];
  ++s.stats.program_steps;
  switch (r.what()) {
    case step_result::kind::busy:
      s.sched_point = false;
      s.prog_wake_ns = 0;
      break;
    case step_result::kind::yield:
      s.sched_point = true;
      s.prog_wake_ns = 0;
      break;
    case step_result::kind::idle:
      s.sched_point = true;
      s.prog_wake_ns = now + config_.costs.idle_poll_ns;
      break;
    case step_result::kind::sleep:
      s.sched_point = true;
      s.prog_wake_ns = now + r.sleep_ns();
      break;
    case step_result::kind::finished:
      s.sched_point = true;
      s.prog_active = false;
      --programs_active_;
      notify_changed();
      break;
  }
}

// ---- introspection ----

pending_counts executor::pending_on(unsigned cpu) const {
  PTR_ASSERT_MSG(cpu < cpus_, "pending_on: no such CPU");
  lock_t lock(mu_);
  const cpu_slot& s = *slot_[cpu];
  return {s.plain.size(), s.softirq.size(), s.work.size(), s.timers.size()};
}

bool executor::quiescent() const {
  if (programs_active_ != 0 || nondaemon_actors_active_ != 0 || running_items_ != 0 ||
      hotplug_events_left_ != 0 || hotplug_busy_)
    return false;
  for (const auto& s : slot_) {
    if (!s->online) continue;
    if (!s->plain.empty() || !s->softirq.empty() || !s->work.empty() || !s->timers.empty())
      return false;
  }
  return true;
}

bool executor::stalled() const {
  if (programs_active_ == 0 || nondaemon_actors_active_ != 0 || running_items_ != 0 ||
      hotplug_events_left_ != 0 || hotplug_busy_)
    return false;
  for (const auto& s : slot_) {
    if (!s->online) continue;
    if (s->prog_active || !s->plain.empty() || !s->softirq.empty() || !s->work.empty() ||
        !s->timers.empty())
      return false;
  }
  return true;
}

void executor::fill_stats(run_stats& st, bool at_quiescence) const {
  const stop_reason reason = st.reason;
  const std::uint64_t elapsed = st.elapsed_ns, hash = st.trace_hash, steps = st.steps;
  std::vector<std::uint64_t> actor_steps = std::move(st.actor_steps);
  std::vector<std::uint64_t> clocks(cpus_, 0);
  for (unsigned c = 0; c < cpus_ && c < st.cpu.size(); ++c)
    clocks[c] = st.cpu[c].clock_ns;
  st = counters_;
  st.reason = reason;
  st.elapsed_ns = elapsed;
  st.trace_hash = hash;
  st.steps = steps;
  st.actor_steps = std::move(actor_steps);
  st.cpu.resize(cpus_);
  for (unsigned c = 0; c < cpus_; ++c) {
    st.cpu[c] = slot_[c]->stats;
    st.cpu[c].clock_ns = clocks[c];
    const cpu_slot& s = *slot_[c];
    if (s.online && at_quiescence) continue;
    st.stranded_tasklets += s.plain.size() + s.softirq.size();
    st.stranded_work += s.work.size();
    st.stranded_timers += s.timers.size();
  }
  st.programs_finished = programs_active_ == 0;
}

void executor::check_invariants() const {
  lock_t lock(mu_);
  for (unsigned c = 0; c < cpus_; ++c) {
    const cpu_slot& s = *slot_[c];
    std::uint32_t n = 0;
    s.plain.for_each([&](tasklet* t) {
      PTR_ASSERT(t->queued_ && !t->running_ && t->cpu_ == c && t->kind_ == tasklet_kind::plain &&
                 !t->dead_);
      ++n;
    });
    PTR_ASSERT(n == s.plain.size());
    n = 0;
    s.softirq.for_each([&](tasklet* t) {
      PTR_ASSERT(t->queued_ && !t->running_ && t->cpu_ == c && t->kind_ == tasklet_kind::softirq &&
                 !t->dead_);
      ++n;
    });
    PTR_ASSERT(n == s.softirq.size());
    n = 0;
    s.work.for_each([&](work_item* w) {
      PTR_ASSERT(w->queued_ && !w->running_ && w->cpu_ == c);
      ++n;
    });
    PTR_ASSERT(n == s.work.size());
    n = 0;
    s.timers.for_each([&](timer* t) {
      PTR_ASSERT(t->queued_ && t->cpu_ == c && !t->dead_);
      ++n;
    });
    PTR_ASSERT(n == s.timers.size());
  }
  unsigned active = 0;
  for (const auto& s : slot_)
    active += s->prog_active ? 1 : 0;
  PTR_ASSERT_MSG(!ran_ || active == programs_active_, "program count out of step");
}

void executor::discard_pending() {
  lock_t lock(mu_);
  PTR_ASSERT_MSG(running_items_ == 0, "discard_pending while an item runs");
  for (auto& s : slot_) {
    while (tasklet* t = s->plain.pop_front())
      t->queued_ = false;
    while (tasklet* t = s->softirq.pop_front())
      t->queued_ = false;
    while (work_item* w = s->work.pop_front())
      w->queued_ = false;
    while (timer* t = s->timers.pop_front())
      t->queued_ = false;
  }
}

}  // namespace ptreclaim::runtime
