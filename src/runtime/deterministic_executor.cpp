#include "ptreclaim/runtime/deterministic_executor.hpp"

#include <algorithm>
#include <limits>

#include "ptreclaim/base/bits.hpp"

namespace ptreclaim::runtime {
namespace {
constexpr std::uint64_t never = std::numeric_limits<std::uint64_t>::max();
}  // namespace

const char* trace_what_name(trace_event::what w) noexcept {
  switch (w) {
    case trace_event::what::timer:
      return "timer";
    case trace_event::what::softirq_tasklet:
      return "softirq_tasklet";
    case trace_event::what::tasklet:
      return "tasklet";
    case trace_event::what::work:
      return "work";
    case trace_event::what::program_step:
      return "program_step";
    case trace_event::what::hotplug:
      return "hotplug";
    case trace_event::what::actor:
      return "actor";
    case trace_event::what::idle:
      return "idle";
  }
  return "?";
}

deterministic_executor::deterministic_executor(run_config config)
    : executor(config), rng_(config_.seed) {
  PTR_ASSERT_MSG(config_.costs.step_ns >= 1, "cost_model::step_ns must be >= 1 (progress)");
  clock_.assign(cpus_ + max_actors_limit, 0);
  PTR_ASSERT_MSG(
      config_.pt_lines <= max_pt_lines && (config_.pt_lines & (config_.pt_lines - 1)) == 0,
      "run_config::pt_lines must be 0 or a power of two <= max_pt_lines");
  table_lines_.resize(config_.pt_lines);
  locks_held_.assign(cpus_ + max_actors_limit, 0);
}

unsigned deterministic_executor::entity() const noexcept {
  const tls_context* m = mine();
  if (m == nullptr) return none;
  if (m->cpu != no_cpu) return m->cpu;
  if (m->actor != no_cpu) return cpus_ + m->actor;
  return none;
}

std::uint64_t deterministic_executor::now_ns() noexcept {
  const unsigned e = entity();
  return e == none ? global_now_ : clock_[e];
}

void deterministic_executor::charge_ns(std::uint64_t ns) noexcept {
  const unsigned e = entity();
  if (e != none) clock_[e] = sat_add(clock_[e], ns);
}

void deterministic_executor::charge(cost_kind kind, std::uint64_t count) noexcept {
  charge_ns(config_.costs.cost(kind) * count);
}

namespace {
// Moves line l to an entity whose clock is `arrive`: the transfer starts when no earlier
// transfer of l occupies it and takes `transfer` ns; returns when it ends.
template <typename Line>
std::uint64_t transfer_line(Line& l, std::uint64_t arrive, std::uint64_t transfer) noexcept {
  const std::uint64_t start = l.transfers.earliest_free(arrive);
  const std::uint64_t end = sat_add(start, transfer);
  l.transfers.add(start, end);
  return end;
}
}  // namespace

void deterministic_executor::touch_line(const void* line, bool write) noexcept {
  const unsigned e = entity();
  if (e == none) return;
  line_state& l = lines_[reinterpret_cast<std::uintptr_t>(line) / cache_line_size];
  const std::uint64_t transfer = config_.costs.cost(cost_kind::cache_line_transfer);
  const std::uint64_t before = clock_[e];
  bool moved = false;
  if (write) {
    bool others = l.owner != none && l.owner != e;
    if (!others) {
      const bool had = l.sharers.test(e);
      l.sharers.reset(e);
      others = l.sharers.any();
      if (had) l.sharers.set(e);
    }
    if (others) {
      clock_[e] = transfer_line(l, clock_[e], transfer);
      moved = true;
    }
    l.owner = e;
    l.sharers.reset();
    l.sharers.set(e);
  } else {
    if (l.owner != none && l.owner != e) {
      clock_[e] = transfer_line(l, clock_[e], transfer);
      moved = true;
      l.sharers.set(l.owner);
      l.owner = none;  // downgraded to shared
    }
    l.sharers.set(e);
  }
  if (moved) {
    ++l.moves;
    l.queued += clock_[e] - before > transfer ? 1 : 0;
    if (e < cpus_) l.delay_ns += clock_[e] - before;  // CPU time (devices' is not the CPUs')
  }
}

bool deterministic_executor::table_line_moves(unsigned e, std::uintptr_t line,
                                              bool write) noexcept {
  table_line& l = table_lines_[line & (table_lines_.size() - 1)];
  if (l.line != line) l = table_line{line, none, 0};  // forget the line that held the slot
  const std::uint64_t self = std::uint64_t{1} << (e % 64);
  bool transfer = false;
  if (write) {
    transfer = (l.owner != none && l.owner != e) || (l.sharers & ~self) != 0;
    l.owner = e;
    l.sharers = self;
  } else {
    if (l.owner != none && l.owner != e) {
      transfer = true;
      l.sharers |= std::uint64_t{1} << (l.owner % 64);
      l.owner = none;  // downgraded to shared
    }
    l.sharers |= self;
  }
  if (transfer) ++table_line_transfers_;
  return transfer;
}

void deterministic_executor::charge_table_transfer(unsigned e) noexcept {
  const std::uint64_t cost = config_.costs.cost(cost_kind::cache_line_transfer);
  if (e < cpus_) table_line_delay_ns_ += cost;  // CPU time, as in touch_line
  clock_[e] = sat_add(clock_[e], cost);
}

void deterministic_executor::touch_table_line(const void* entry, bool write) noexcept {
  const unsigned e = entity();
  if (e == none || table_lines_.empty()) return;
  if (table_line_moves(e, reinterpret_cast<std::uintptr_t>(entry) / cache_line_size, write))
    charge_table_transfer(e);
}

void deterministic_executor::touch_table_lines(const void* first, unsigned lines) noexcept {
  const unsigned e = entity();
  if (e == none || table_lines_.empty()) return;
  const std::uintptr_t line0 = reinterpret_cast<std::uintptr_t>(first) / cache_line_size;
  bool moved = false;
  for (unsigned i = 0; i < lines; ++i)
    moved = table_line_moves(e, line0 + i, true) || moved;
  if (moved) charge_table_transfer(e);  // the loop's stores overlap their transfers
}

void deterministic_executor::lock_acquire(const void* lock) noexcept {
  const unsigned e = entity();
  if (e == none) return;
  lock_state& st = locks_[lock];
  PTR_ASSERT_MSG(st.holder == none,
                 "deterministic executor: lock already held (a lock must be released in the step "
                 "that took it, and never taken recursively)");
  const std::uint64_t arrive = clock_[e];
  std::uint64_t t = st.held.earliest_free(arrive);
  st.taken_at_ns = t;
  ++st.acquisitions;
  if (t > arrive) ++st.waits;
  t = sat_add(t, config_.costs.cost(cost_kind::lock_uncontended));
  if (st.last != none && st.last != e)
    t = sat_add(t, config_.costs.cost(cost_kind::cache_line_transfer));
  if (e < cpus_) st.delay_ns += t - arrive;  // CPU time (devices' is not the CPUs')
  clock_[e] = t;
  st.holder = e;
  ++locks_held_[e];
}

void deterministic_executor::lock_release(const void* lock) noexcept {
  const unsigned e = entity();
  if (e == none) return;
  auto it = locks_.find(lock);
  PTR_ASSERT_MSG(it != locks_.end() && it->second.holder == e,
                 "deterministic executor: lock released by an entity that does not hold it");
  lock_state& st = it->second;
  // Holds recorded inside this one (busy_intervals.hpp: it began in a gap shorter than itself)
  // were others' turns: the holder waited for them, and its clock moves on by their length.
  // (Not to the first gap it fits in whole: a long hold, a wait under the lock, then jumped
  // past every short hold recorded ahead and missed its own deadlines.)
  const std::uint64_t length = clock_[e] - st.taken_at_ns;
  const std::uint64_t late = st.held.busy_within(st.taken_at_ns, clock_[e]);
  if (late != 0) {
    clock_[e] = sat_add(clock_[e], late);
    if (e < cpus_) st.delay_ns += late;  // CPU time, as at the acquire
  }
  st.held.add(st.taken_at_ns, clock_[e]);
  st.hold_ns += length;
  st.last = e;
  st.holder = none;
  --locks_held_[e];
}

bool deterministic_executor::lock_busy(const void* lock) noexcept {
  const unsigned e = entity();
  if (e == none) return false;
  const auto it = locks_.find(lock);
  if (it == locks_.end()) return false;
  const lock_state& st = it->second;
  if (st.holder != none) return st.holder != e;
  return st.held.earliest_free(clock_[e]) > clock_[e];
}

void deterministic_executor::name_shared(const void* object, const char* name) noexcept {
  lock_names_[object] = name;
  line_names_[reinterpret_cast<std::uintptr_t>(object) / cache_line_size] = name;
}

std::vector<contention_stat> deterministic_executor::contention() const {
  std::vector<contention_stat> out;
  const auto add = [&out](const char* name, bool lock) -> contention_stat& {
    for (contention_stat& c : out)
      if (c.lock == lock && c.name == name) return c;
    out.push_back(contention_stat{name, lock, 0, 0, 0, 0});
    return out.back();
  };
  const auto name_of = [](const auto& names, const auto& key, const char* unnamed) {
    const auto n = names.find(key);
    return n != names.end() ? n->second : unnamed;
  };
  for (const auto& [addr, st] : locks_) {
    if (st.acquisitions == 0) continue;
    contention_stat& c = add(name_of(lock_names_, addr, "unnamed lock"), true);
    c.accesses += st.acquisitions;
    c.waits += st.waits;
    c.delay_ns += st.delay_ns;
    c.hold_ns += st.hold_ns;
  }
  for (const auto& [line, l] : lines_) {
    if (l.moves == 0) continue;
    contention_stat& c = add(name_of(line_names_, line, "unnamed line"), false);
    c.accesses += l.moves;
    c.waits += l.queued;
    c.delay_ns += l.delay_ns;
  }
  if (table_line_transfers_ != 0) {
    contention_stat& c = add("page-table entries' lines", false);
    c.accesses += table_line_transfers_;
    c.delay_ns += table_line_delay_ns_;
  }
  // Largest first; ties by name, so the order does not depend on the maps' iteration order.
  std::sort(out.begin(), out.end(), [](const contention_stat& a, const contention_stat& b) {
    if (a.delay_ns != b.delay_ns) return a.delay_ns > b.delay_ns;
    if (a.name != b.name) return a.name < b.name;
    return a.lock && !b.lock;
  });
  return out;
}

std::uint64_t deterministic_executor::cpu_clock_ns(unsigned cpu) const {
  PTR_ASSERT_MSG(cpu < cpus_, "cpu_clock_ns: no such CPU");
  return clock_[cpu];
}

std::uint64_t deterministic_executor::actor_clock_ns(actor_id id) const {
  PTR_ASSERT_MSG(id < actors_.size(), "actor_clock_ns: no such actor");
  return clock_[cpus_ + id];
}

void deterministic_executor::wake_actor(actor_id id) {
  PTR_ASSERT_MSG(id < actors_.size(), "wake_actor: no such actor");
  const std::uint64_t now = now_ns();
  lock_t lock(mu_);
  actor_slot& a = *actors_[id];
  a.wake_ns = std::min(a.wake_ns, now);
}

// ---- hooks ----

void deterministic_executor::on_cpu_work(unsigned cpu, std::uint64_t at_ns, bool is_timer) {
  if (is_timer) return;  // cpu_ready_ns() looks at timer expiries itself
  const cpu_slot& s = *slot_[cpu];
  const bool program_runnable = s.prog_active && s.prog_wake_ns <= clock_[cpu];
  if (program_runnable) return;  // a busy CPU sees the item at its next step
  // An idle CPU wakes when the item arrives, not in its own past.
  clock_[cpu] = std::max(clock_[cpu], at_ns);
}

void deterministic_executor::wait_for_change(lock_t& /*lock*/) {
  PTR_ASSERT_MSG(false,
                 "deterministic executor: waiting for an item that is running on the "
                 "current call chain would wait forever");
}

void deterministic_executor::flush_remote(lock_t& lock, work_item& w) {
  // Run it now as its CPU, no earlier than the caller's time; the caller then waits for it.
  const unsigned c = unqueue_work(w);
  const unsigned e = entity();
  clock_[c] = std::max(clock_[c], e == none ? global_now_ : clock_[e]);
  run_work(lock, w, c);
  if (e != none) clock_[e] = std::max(clock_[e], clock_[c]);
}

void deterministic_executor::park_cpu(unsigned /*cpu*/) {}  // steps are atomic: it is parked

void deterministic_executor::unpark_cpu(unsigned cpu) {
  const std::uint64_t now = now_ns();
  clock_[cpu] = std::max(clock_[cpu], now);
}

Status deterministic_executor::controller_hotplug(hotplug_op op, unsigned target) {
  unsigned runner = none;
  {
    lock_t lock(mu_);
    unsigned n = 0;
    for (unsigned c = 0; c < cpus_; ++c)
      if (slot_[c]->online && c != target) ++n;
    if (n == 0)
      return Status(errc::invalid_argument, "hotplug: no online CPU besides the target to run it");
    unsigned pick = static_cast<unsigned>(rng_.below(n));
    for (unsigned c = 0; c < cpus_; ++c) {
      if (!slot_[c]->online || c == target) continue;
      if (pick-- == 0) {
        runner = c;
        break;
      }
    }
  }
  clock_[runner] = std::max(clock_[runner], global_now_);
  const std::uint64_t start = clock_[runner];
  Status st;
  {
    context_guard g(*this, runner, no_cpu, exec_context::process);
    st = hotplug(op, target);
  }
  end_step(runner, trace_event::what::hotplug, start);
  return st;
}

// ---- scheduling ----

std::uint64_t deterministic_executor::cpu_ready_ns(unsigned cpu) const {
  const cpu_slot& s = *slot_[cpu];
  if (!s.online) return never;
  const std::uint64_t clock = clock_[cpu];
  if (!s.softirq.empty()) return clock;
  if ((s.sched_point || !s.prog_active) && has_scheduled_work(cpu)) return clock;
  std::uint64_t t = never;
  if (s.prog_active) t = std::max(clock, s.prog_wake_ns);
  const std::uint64_t timer = next_timer_ns(cpu);
  if (timer != never) t = std::min(t, std::max(clock, timer));
  return t;
}

std::uint64_t deterministic_executor::actor_ready_ns(unsigned a) const {
  const actor_slot& s = *actors_[a];
  if (s.finished) return never;
  return std::max(clock_[cpus_ + a], s.wake_ns);
}

void deterministic_executor::mix(std::uint64_t v) noexcept {
  std::uint64_t x = hash_ ^ v;
  hash_ = prng::splitmix64(x);
}

void deterministic_executor::end_step(unsigned e, trace_event::what kind, std::uint64_t start_ns) {
  const std::uint64_t jitter =
      config_.costs.step_jitter_ns == 0 ? 0 : rng_.below(config_.costs.step_jitter_ns + 1);
  clock_[e] = sat_add(clock_[e], config_.costs.step_ns + jitter);
  PTR_ASSERT_MSG(
      locks_held_[e] == 0,
      "deterministic executor: a step ended holding a lock (release it in the same step)");
  mix((std::uint64_t{e} << 8) | static_cast<std::uint64_t>(kind));
  mix(start_ns);
  mix(clock_[e]);
  if (sink_) {
    trace_event ev;
    ev.index = steps_;
    ev.is_actor = e >= cpus_;
    ev.entity = ev.is_actor ? e - cpus_ : e;
    ev.kind = kind;
    ev.start_ns = start_ns;
    ev.end_ns = clock_[e];
    sink_(ev);
  }
  ++steps_;
}

void deterministic_executor::cpu_step(unsigned cpu) {
  const std::uint64_t start = clock_[cpu];
  trace_event::what kind = trace_event::what::idle;
  {
    context_guard g(*this, cpu, no_cpu, exec_context::process);
    lock_t lock(mu_);
    cpu_slot& s = *slot_[cpu];
    ran r = run_one_softirq(lock, cpu);
    if (r == ran::nothing && (s.sched_point || !s.prog_active)) r = run_one_scheduled(lock, cpu);
    if (r == ran::nothing && s.prog_active && clock_[cpu] >= s.prog_wake_ns) {
      lock.unlock();
      const step_result res = s.prog(cpu);
      lock.lock();
      apply_step_result(cpu, res, clock_[cpu]);
      r = ran::program_step;
    }
    switch (r) {
      case ran::timer:
        kind = trace_event::what::timer;
        break;
      case ran::softirq_tasklet:
        kind = trace_event::what::softirq_tasklet;
        break;
      case ran::tasklet:
        kind = trace_event::what::tasklet;
        break;
      case ran::work:
        kind = trace_event::what::work;
        break;
      case ran::program_step:
        kind = trace_event::what::program_step;
        break;
      default:
        // Woken with nothing to do (cannot happen with consistent ready times); make progress.
        clock_[cpu] = sat_add(clock_[cpu], config_.costs.idle_poll_ns);
        break;
    }
  }
  end_step(cpu, kind, start);
}

void deterministic_executor::actor_step(unsigned a) {
  const unsigned e = cpus_ + a;
  actor_slot& s = *actors_[a];
  clock_[e] = std::max(clock_[e], s.wake_ns);
  const std::uint64_t start = clock_[e];
  step_result res = step_result::busy();
  {
    context_guard g(*this, no_cpu, a, exec_context::actor);
    res = s.spec.step();
  }
  {
    lock_t lock(mu_);
    ++s.steps;
    switch (res.what()) {
      case step_result::kind::busy:
      case step_result::kind::yield:
        s.wake_ns = 0;
        break;
      case step_result::kind::idle:
        s.wake_ns = sat_add(clock_[e], config_.costs.idle_poll_ns);
        break;
      case step_result::kind::sleep:
        s.wake_ns = sat_add(clock_[e], res.sleep_ns());
        break;
      case step_result::kind::finished:
        s.finished = true;
        if (!s.spec.daemon) --nondaemon_actors_active_;
        break;
    }
  }
  end_step(e, trace_event::what::actor, start);
}

bool deterministic_executor::wait_until(const std::function<bool()>& done,
                                        std::uint64_t timeout_ns) {
  const unsigned e = entity();
  PTR_ASSERT_MSG(e != none, "wait_until outside a CPU or actor step");
  const unsigned self_actor = e >= cpus_ ? e - cpus_ : none;
  const std::uint64_t deadline = sat_add(clock_[e], timeout_ns);
  for (;;) {
    if (done()) return true;
    std::uint64_t best_t = never;
    unsigned best = none, ties = 0;
    {
      lock_t lock(mu_);
      for (unsigned a = 0; a < actors_.size(); ++a) {
        if (a == self_actor) continue;
        const std::uint64_t t = actor_ready_ns(a);
        if (t == never) continue;
        if (t < best_t) {
          best_t = t;
          best = a;
          ties = 1;
        } else if (t == best_t && rng_.below(++ties) == 0) {
          best = a;
        }
      }
    }
    if (best == none || best_t > deadline) {
      if (e < cpus_ && deadline > clock_[e]) cpu_wait_ns_ += deadline - clock_[e];
      clock_[e] = std::max(clock_[e], deadline);
      return done();
    }
    if (e < cpus_ && best_t > clock_[e]) cpu_wait_ns_ += best_t - clock_[e];
    clock_[e] = std::max(clock_[e], best_t);
    actor_step(best);
  }
}

run_stats deterministic_executor::run() {
  run_stats st;
  {
    lock_t lock(mu_);
    start_run();
  }
  std::size_t next_event = 0;
  enum class pick : std::uint8_t { cpu, actor, event };
  const bool watchdog = config_.progress && config_.stall_steps != 0;
  std::uint64_t progress_seen = watchdog ? config_.progress() : 0;
  std::uint64_t progress_step = 0, next_check = 0;
  for (;;) {
    pick kind = pick::cpu;
    unsigned id = none;
    std::uint64_t best_t = never;
    // The probe is the client's: asked outside mu_, every 1024 steps (it may sum counters).
    if (watchdog && steps_ >= next_check) {
      next_check = steps_ + 1024;
      const std::uint64_t p = config_.progress();
      if (p != progress_seen) {
        progress_seen = p;
        progress_step = steps_;
      } else if (steps_ - progress_step >= config_.stall_steps) {
        st.reason = stop_reason::no_progress;
        break;
      }
    }
    {
      lock_t lock(mu_);
      if (stop_requested_.load(std::memory_order_acquire)) {
        st.reason = stop_reason::requested;
        break;
      }
      if (quiescent()) {
        st.reason = stop_reason::quiescent;
        break;
      }
      if (steps_ >= config_.max_steps) {
        st.reason = stop_reason::step_limit;
        break;
      }
      unsigned ties = 0;
      auto consider = [&](std::uint64_t t, pick k, unsigned i) {
        if (t == never) return;
        if (t < best_t) {
          best_t = t;
          kind = k;
          id = i;
          ties = 1;
        } else if (t == best_t && rng_.below(++ties) == 0) {
          kind = k;
          id = i;
        }
      };
      for (unsigned c = 0; c < cpus_; ++c)
        consider(cpu_ready_ns(c), pick::cpu, c);
      for (unsigned a = 0; a < actors_.size(); ++a)
        consider(actor_ready_ns(a), pick::actor, a);
      if (next_event < hotplug_events_.size())
        consider(std::max(hotplug_events_[next_event].at_ns, global_now_), pick::event,
                 static_cast<unsigned>(next_event));
      if (best_t == never) {
        st.reason = stop_reason::stalled;
        break;
      }
      if (best_t > config_.virtual_time_limit_ns) {
        st.reason = stop_reason::time_limit;
        break;
      }
      global_now_ = std::max(global_now_, best_t);
    }
    switch (kind) {
      case pick::cpu:
        clock_[id] = std::max(clock_[id], best_t);
        cpu_step(id);
        break;
      case pick::actor:
        actor_step(id);
        break;
      case pick::event:
        run_scheduled_hotplug(next_event, best_t);
        break;
    }
  }
  lock_t lock(mu_);
  st.trace_hash = hash_;
  st.steps = steps_;
  std::uint64_t end = global_now_;
  for (unsigned e = 0; e < cpus_ + actors_.size(); ++e)
    end = std::max(end, clock_[e]);
  st.elapsed_ns = end;
  for (const auto& a : actors_)
    st.actor_steps.push_back(a->steps);
  st.cpu.resize(cpus_);
  for (unsigned c = 0; c < cpus_; ++c)
    st.cpu[c].clock_ns = clock_[c];
  fill_stats(st, st.reason == stop_reason::quiescent);
  st.contention = contention();
  st.cpu_wait_ns = cpu_wait_ns_;
  return st;
}

}  // namespace ptreclaim::runtime
