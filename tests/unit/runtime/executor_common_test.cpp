// Behaviour both executors must share: Xen's tasklet rules, the workqueue, timers and CPU
// hotplug. Every test runs under the deterministic and the threaded executor with the same
// client code.
#include <atomic>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "test_support.hpp"

namespace ptreclaim::runtime::test {
namespace {

template <class Kind>
class ExecutorTest : public ::testing::Test {
 protected:
  std::unique_ptr<executor> make(unsigned cpus, std::uint64_t seed = 1) {
    run_config cfg;
    cfg.cpus = cpus;
    cfg.seed = seed;
    return Kind::make(cfg);
  }
  std::unique_ptr<executor> make(run_config cfg) { return Kind::make(std::move(cfg)); }
};
TYPED_TEST_SUITE(ExecutorTest, executor_kinds, kind_names);

// Where and how a callback ran.
struct sighting {
  unsigned cpu = no_cpu;
  exec_context ctx = exec_context::none;
};

TYPED_TEST(ExecutorTest, PlainTaskletNeverRunsInsideProcessPendingSoftirqs) {
  auto ex = this->make(2);
  tasklet plain, soft;
  std::atomic<int> plain_runs{0}, soft_runs{0};
  sighting plain_seen, soft_seen;
  ex->tasklet_init(plain, [&] {
    plain_seen = {ex->current_cpu(), ex->context()};
    plain_runs.fetch_add(1);
  });
  ex->tasklet_init(soft, [&] {
    soft_seen = {ex->current_cpu(), ex->context()};
    EXPECT_TRUE(ex->in_softirq());
    soft_runs.fetch_add(1);
  }, tasklet_kind::softirq);
  bool checked = false;
  ex->set_program(1, sequence({[&] {
    EXPECT_TRUE(ex->tasklet_schedule(plain));
    EXPECT_TRUE(ex->tasklet_schedule(soft));
    ex->process_pending_softirqs();
    // The softirq tasklet ran right here; the plain one waits for the scheduler point.
    EXPECT_EQ(soft_runs.load(), 1);
    EXPECT_EQ(plain_runs.load(), 0);
    EXPECT_TRUE(ex->tasklet_is_scheduled(plain));
    checked = true;
    return true;
  }}));
  const run_stats st = ex->run();
  EXPECT_EQ(st.reason, stop_reason::quiescent);
  EXPECT_TRUE(checked);
  EXPECT_EQ(plain_runs.load(), 1);
  EXPECT_EQ(plain_seen.cpu, 1u);
  EXPECT_EQ(plain_seen.ctx, exec_context::tasklet);
  EXPECT_EQ(soft_seen.cpu, 1u);
  EXPECT_EQ(soft_seen.ctx, exec_context::softirq);
  EXPECT_EQ(st.tasklets_run, 1u);
  EXPECT_EQ(st.softirq_tasklets_run, 1u);
}

TYPED_TEST(ExecutorTest, ProcessPendingSoftirqsInsideAPlainTaskletRunsOnlySoftirqWork) {
  // Xen's free_queued_pgtables calls process_pending_softirqs every 512 frees: a plain tasklet
  // scheduled meanwhile must not run inside it, a softirq tasklet must.
  auto ex = this->make(1);
  tasklet worker, other_plain, soft;
  std::atomic<int> other_runs{0}, soft_runs{0};
  int soft_seen_inside = -1, plain_seen_inside = -1;
  ex->tasklet_init(other_plain, [&] { other_runs.fetch_add(1); });
  ex->tasklet_init(soft, [&] { soft_runs.fetch_add(1); }, tasklet_kind::softirq);
  ex->tasklet_init(worker, [&] {
    ex->tasklet_schedule(other_plain);
    ex->tasklet_schedule(soft);
    ex->process_pending_softirqs();
    soft_seen_inside = soft_runs.load();
    plain_seen_inside = other_runs.load();
  });
  ex->set_program(0, sequence({[&] { return ex->tasklet_schedule(worker); }}));
  const run_stats st = ex->run();
  EXPECT_EQ(st.reason, stop_reason::quiescent);
  EXPECT_EQ(soft_seen_inside, 1);
  EXPECT_EQ(plain_seen_inside, 0);
  EXPECT_EQ(other_runs.load(), 1);
}

TYPED_TEST(ExecutorTest, TaskletRunsOnTheCpuItWasScheduledOn) {
  constexpr unsigned cpus = 4;
  auto ex = this->make(cpus);
  per_cpu<tasklet> t(cpus);
  per_cpu<std::atomic<unsigned>> ran_on(cpus, [](unsigned) { return no_cpu; });
  for (unsigned c = 0; c < cpus; ++c)
    ex->tasklet_init(t[c], [&, c] {
      EXPECT_EQ(ex->context(), exec_context::tasklet);
      ran_on[c].store(ex->current_cpu());
    });
  // CPU 0 schedules every CPU's tasklet remotely.
  ex->set_program(0, sequence({[&] {
    for (unsigned c = 0; c < cpus; ++c) EXPECT_TRUE(ex->tasklet_schedule_on(t[c], c));
    return true;
  }}));
  const run_stats st = ex->run();
  EXPECT_EQ(st.reason, stop_reason::quiescent);
  for (unsigned c = 0; c < cpus; ++c) {
    EXPECT_EQ(ran_on[c].load(), c);
    EXPECT_EQ(st.cpu[c].tasklets, 1u);
  }
}

TYPED_TEST(ExecutorTest, SchedulingAScheduledTaskletIsANoOp) {
  auto ex = this->make(2);
  tasklet t;
  std::atomic<int> runs{0};
  ex->tasklet_init(t, [&] { runs.fetch_add(1); });
  ex->set_program(0, sequence({[&] {
    EXPECT_TRUE(ex->tasklet_schedule(t));
    EXPECT_FALSE(ex->tasklet_schedule(t));
    EXPECT_FALSE(ex->tasklet_schedule_on(t, 0));
    EXPECT_EQ(ex->pending_on(0).plain_tasklets, 1u);
    return true;
  }}));
  ex->run();
  EXPECT_EQ(runs.load(), 1);
}

TYPED_TEST(ExecutorTest, TaskletRescheduledFromItselfRunsAgain) {
  auto ex = this->make(1);
  tasklet t;
  std::atomic<int> runs{0};
  ex->tasklet_init(t, [&] {
    if (runs.fetch_add(1) + 1 < 5) {
      EXPECT_TRUE(ex->tasklet_schedule(t));
    }
  });
  ex->set_program(0, sequence({[&] { return ex->tasklet_schedule(t); }}));
  ex->run();
  EXPECT_EQ(runs.load(), 5);
}

TYPED_TEST(ExecutorTest, KillUnschedulesAndBlocksUntilReinit) {
  auto ex = this->make(2);
  tasklet t;
  std::atomic<int> runs{0};
  ex->tasklet_init(t, [&] { runs.fetch_add(1); });
  ex->set_program(0, sequence({
      [&] {
        EXPECT_TRUE(ex->tasklet_schedule(t));
        ex->tasklet_kill(t);
        EXPECT_FALSE(ex->tasklet_is_scheduled(t));
        EXPECT_TRUE(ex->tasklet_is_dead(t));
        EXPECT_FALSE(ex->tasklet_schedule(t));  // dead: ignored
        EXPECT_FALSE(ex->tasklet_schedule_on(t, 1));
        return true;
      },
      [&] { return true; },  // a scheduler point passes; nothing may run
      [&] {
        EXPECT_EQ(runs.load(), 0);
        ex->tasklet_init(t, [&] { runs.fetch_add(1); });
        EXPECT_FALSE(ex->tasklet_is_dead(t));
        return ex->tasklet_schedule(t);
      },
  }));
  ex->run();
  EXPECT_EQ(runs.load(), 1);
}

TYPED_TEST(ExecutorTest, ScheduleOnAnotherCpuMovesAQueuedTasklet) {
  auto ex = this->make(3);
  tasklet t;
  std::atomic<unsigned> where{no_cpu};
  std::atomic<int> runs{0};
  ex->tasklet_init(t, [&] {
    where.store(ex->current_cpu());
    runs.fetch_add(1);
  });
  // CPUs 1 and 2 stay busy (no scheduler point) until the tasklet has moved.
  std::atomic<unsigned> busy_cpus{0};
  std::atomic<bool> moved{false};
  for (unsigned c : {1u, 2u}) {
    auto first = std::make_shared<bool>(true);
    ex->set_program(c, [&, first](unsigned) {
      if (*first) busy_cpus.fetch_add(1);
      *first = false;
      return moved.load() ? step_result::finished() : step_result::busy();
    });
  }
  ex->set_program(0, sequence({[&] {
    if (busy_cpus.load() < 2) return false;
    EXPECT_TRUE(ex->tasklet_schedule_on(t, 1));
    EXPECT_TRUE(ex->tasklet_schedule_on(t, 2));  // Xen: moves it
    EXPECT_EQ(ex->pending_on(1).plain_tasklets, 0u);
    EXPECT_EQ(ex->pending_on(2).plain_tasklets, 1u);
    moved.store(true);
    return true;
  }}));
  ex->run();
  EXPECT_EQ(runs.load(), 1);
  EXPECT_EQ(where.load(), 2u);
}

// ---- workqueue ----

TYPED_TEST(ExecutorTest, ReschedulingPendingWorkIsANoOpAndItRunsOncePerPendingPeriod) {
  auto ex = this->make(2);
  work_item w;
  std::atomic<int> runs{0};
  sighting seen;
  ex->work_init(w, [&] {
    seen = {ex->current_cpu(), ex->context()};
    runs.fetch_add(1);
  });
  ex->set_program(1, sequence({
      [&] {
        EXPECT_TRUE(ex->schedule_work(w));
        EXPECT_FALSE(ex->schedule_work(w));
        EXPECT_FALSE(ex->schedule_work_on(0, w));
        EXPECT_TRUE(ex->work_pending(w));
        return true;
      },
      [&] { return runs.load() == 1; },  // ran at the scheduler point
      [&] {
        EXPECT_FALSE(ex->work_pending(w));
        EXPECT_TRUE(ex->schedule_work(w));
        return true;
      },
  }));
  const run_stats st = ex->run();
  EXPECT_EQ(st.reason, stop_reason::quiescent);
  EXPECT_EQ(runs.load(), 2);
  EXPECT_EQ(st.work_run, 2u);
  EXPECT_EQ(seen.cpu, 1u);
  EXPECT_EQ(seen.ctx, exec_context::work);
}

TYPED_TEST(ExecutorTest, WorkNeverRunsConcurrentlyWithItself) {
  constexpr unsigned cpus = 4;
  auto ex = this->make(cpus);
  work_item w;
  std::atomic<int> inside{0}, runs{0}, overlaps{0};
  ex->work_init(w, [&] {
    if (inside.fetch_add(1) != 0) overlaps.fetch_add(1);
    runs.fetch_add(1);
    for (int i = 0; i < 100; ++i) ex->charge(cost_kind::op_overhead);
    inside.fetch_sub(1);
  });
  const unsigned rounds = scaled(200);
  for (unsigned c = 0; c < cpus; ++c) {
    auto n = std::make_shared<unsigned>(0);
    ex->set_program(c, [&, n](unsigned) {
      ex->schedule_work(w);
      return ++*n < rounds ? step_result::yield() : step_result::finished();
    });
  }
  ex->run();
  EXPECT_EQ(overlaps.load(), 0);
  EXPECT_GE(runs.load(), 1);
  EXPECT_LE(runs.load(), static_cast<int>(cpus * rounds));
}

TYPED_TEST(ExecutorTest, FlushWorkWaitsForLocalAndRemoteItems) {
  auto ex = this->make(2);
  work_item local, remote;
  std::atomic<int> local_runs{0}, remote_runs{0};
  ex->work_init(local, [&] { local_runs.fetch_add(1); });
  ex->work_init(remote, [&] { remote_runs.fetch_add(1); });
  ex->set_program(0, sequence({[&] {
    EXPECT_FALSE(ex->flush_work(local));  // idle: nothing to wait for
    EXPECT_TRUE(ex->schedule_work(local));
    EXPECT_TRUE(ex->flush_work(local));
    EXPECT_EQ(local_runs.load(), 1);
    EXPECT_TRUE(ex->schedule_work_on(1, remote));
    // Threaded: CPU 1 may have run it already, so flush_work may have nothing to wait for.
    const bool waited = ex->flush_work(remote);
    if (TypeParam::deterministic) {
      EXPECT_TRUE(waited);
    }
    EXPECT_EQ(remote_runs.load(), 1);
    EXPECT_FALSE(ex->work_pending(remote));
    return true;
  }}));
  const run_stats st = ex->run();
  EXPECT_EQ(st.reason, stop_reason::quiescent);
  EXPECT_EQ(local_runs.load(), 1);
  EXPECT_EQ(remote_runs.load(), 1);
}

// ---- timers ----

TYPED_TEST(ExecutorTest, TimerFiresAfterItsTimeInSoftirqContextOnItsCpu) {
  auto ex = this->make(3);
  timer t;
  std::atomic<std::uint64_t> fired_at{0}, armed_for{0};
  sighting seen;
  ex->timer_init(t, [&] {
    seen = {ex->current_cpu(), ex->context()};
    fired_at.store(ex->now_ns());
  }, 2);
  ex->set_program(0, sequence({[&] {
    armed_for.store(ex->now_ns() + 50000);
    ex->set_timer(t, armed_for.load());
    EXPECT_TRUE(ex->timer_is_armed(t));
    return true;
  }}));
  const run_stats st = ex->run();
  EXPECT_EQ(st.reason, stop_reason::quiescent);
  EXPECT_EQ(st.timers_fired, 1u);
  EXPECT_GE(fired_at.load(), armed_for.load());
  EXPECT_EQ(seen.cpu, 2u);
  EXPECT_EQ(seen.ctx, exec_context::softirq);
  EXPECT_FALSE(ex->timer_is_armed(t));
}

TYPED_TEST(ExecutorTest, StoppedAndKilledTimersDoNotFire) {
  auto ex = this->make(2);
  timer a, b;
  std::atomic<int> fires{0};
  ex->timer_init(a, [&] { fires.fetch_add(1); }, 1);
  ex->timer_init(b, [&] { fires.fetch_add(1); }, 1);
  ex->set_program(0, sequence({[&] {
    ex->set_timer(a, ex->now_ns() + 1000);
    ex->set_timer(b, ex->now_ns() + 1000);
    EXPECT_TRUE(ex->stop_timer(a));
    EXPECT_FALSE(ex->stop_timer(a));
    ex->kill_timer(b);
    ex->set_timer(b, ex->now_ns() + 10);  // ignored: killed
    EXPECT_FALSE(ex->timer_is_armed(b));
    return true;
  }}));
  ex->run();
  EXPECT_EQ(fires.load(), 0);
}

TYPED_TEST(ExecutorTest, ProcessPendingSoftirqsRunsExpiredTimers) {
  auto ex = this->make(1);
  timer t;
  std::atomic<int> fires{0};
  ex->timer_init(t, [&] { fires.fetch_add(1); }, 0);
  int seen = -1;
  ex->set_program(0, sequence({[&] {
    ex->set_timer(t, 0);  // already expired
    ex->process_pending_softirqs();
    seen = fires.load();
    return true;
  }}));
  ex->run();
  EXPECT_EQ(seen, 1);
}

// ---- hotplug ----

struct note {
  cpu_event event;
  unsigned cpu;
  unsigned on;
  exec_context ctx;
  friend bool operator==(const note&, const note&) = default;
};

struct notifier_log {
  std::mutex mu;
  std::vector<note> notes;
  void add(executor& ex, cpu_event e, unsigned cpu) {
    std::lock_guard<std::mutex> g(mu);
    notes.push_back({e, cpu, ex.current_cpu(), ex.context()});
  }
  std::vector<note> take() {
    std::lock_guard<std::mutex> g(mu);
    return std::exchange(notes, {});
  }
};

TYPED_TEST(ExecutorTest, HotplugNotifierOrderFromACpu) {
  auto ex = this->make(3);
  notifier_log log;
  ex->register_cpu_notifier([&](cpu_event e, unsigned cpu) {
    log.add(*ex, e, cpu);
    return notify_result::done;
  });
  std::vector<note> down, failed, up;
  ex->set_program(0, sequence({
      [&] {
        EXPECT_TRUE(ex->cpu_down(2).ok());
        EXPECT_FALSE(ex->cpu_online(2));
        down = log.take();
        ex->inject_cpu_down_failure();
        const Status s = ex->cpu_down(1);
        EXPECT_EQ(s, errc::busy);
        EXPECT_TRUE(ex->cpu_online(1));
        failed = log.take();
        EXPECT_TRUE(ex->cpu_up(2).ok());
        EXPECT_TRUE(ex->cpu_online(2));
        up = log.take();
        EXPECT_EQ(ex->cpu_down(0), errc::invalid_argument);  // itself
        EXPECT_EQ(ex->cpu_up(1), errc::invalid_argument);    // already online
        return true;
      },
  }));
  const run_stats st = ex->run();
  using E = cpu_event;
  const auto N = exec_context::notifier;
  EXPECT_EQ(down, (std::vector<note>{{E::down_prepare, 2, 0, N}, {E::dead, 2, 0, N}}));
  EXPECT_EQ(failed, (std::vector<note>{{E::down_prepare, 1, 0, N}, {E::down_failed, 1, 0, N}}));
  EXPECT_EQ(up, (std::vector<note>{{E::up_prepare, 2, 0, N}, {E::online, 2, 0, N}}));
  EXPECT_EQ(st.cpu_downs, 1u);
  EXPECT_EQ(st.cpu_down_failures, 1u);
  EXPECT_EQ(st.cpu_ups, 1u);
}

TYPED_TEST(ExecutorTest, DownPrepareVetoSendsDownFailedToEarlierNotifiersOnly) {
  auto ex = this->make(2);
  notifier_log first, second, third;
  ex->register_cpu_notifier([&](cpu_event e, unsigned c) { first.add(*ex, e, c); return notify_result::done; });
  ex->register_cpu_notifier([&](cpu_event e, unsigned c) {
    second.add(*ex, e, c);
    return e == cpu_event::down_prepare ? notify_result::veto : notify_result::done;
  });
  ex->register_cpu_notifier([&](cpu_event e, unsigned c) { third.add(*ex, e, c); return notify_result::done; });
  ex->set_program(0, sequence({[&] {
    EXPECT_EQ(ex->cpu_down(1), errc::busy);
    return true;
  }}));
  ex->run();
  using E = cpu_event;
  const auto N = exec_context::notifier;
  EXPECT_EQ(first.take(), (std::vector<note>{{E::down_prepare, 1, 0, N}, {E::down_failed, 1, 0, N}}));
  EXPECT_EQ(second.take(), (std::vector<note>{{E::down_prepare, 1, 0, N}}));
  EXPECT_TRUE(third.take().empty());
  EXPECT_TRUE(ex->cpu_online(1));
}

TYPED_TEST(ExecutorTest, ControllerHotplugRunsDeadOnAnotherOnlineCpu) {
  run_config cfg;
  cfg.cpus = 4;
  auto ex = this->make(cfg);
  notifier_log log;
  ex->register_cpu_notifier([&](cpu_event e, unsigned cpu) {
    log.add(*ex, e, cpu);
    return notify_result::done;
  });
  ex->schedule_hotplug({1000, hotplug_op::down, 1});
  ex->schedule_hotplug({2000, hotplug_op::down_fail, 2});
  ex->schedule_hotplug({3000, hotplug_op::up, 1});
  const run_stats st = ex->run();
  EXPECT_EQ(st.reason, stop_reason::quiescent);
  const std::vector<note> notes = log.take();
  ASSERT_EQ(notes.size(), 6u);
  const cpu_event expected[] = {cpu_event::down_prepare, cpu_event::dead, cpu_event::down_prepare,
                                cpu_event::down_failed, cpu_event::up_prepare, cpu_event::online};
  for (std::size_t i = 0; i < notes.size(); ++i) {
    EXPECT_EQ(notes[i].event, expected[i]) << i;
    EXPECT_NE(notes[i].on, notes[i].cpu) << "notifier ran on the CPU changing state, note " << i;
    EXPECT_EQ(notes[i].ctx, exec_context::notifier);
  }
  EXPECT_NE(notes[1].on, 1u);  // DEAD on an online CPU other than the dead one
  EXPECT_EQ(st.cpu_downs, 1u);
  EXPECT_EQ(st.cpu_down_failures, 1u);
  EXPECT_EQ(st.cpu_ups, 1u);
}

TYPED_TEST(ExecutorTest, AnOfflineCpuRunsNothingAndKeepsItsWork) {
  auto ex = this->make(3);
  tasklet t;
  work_item w;
  timer tm;
  std::atomic<int> t_runs{0}, w_runs{0}, tm_runs{0}, prog2_steps{0};
  ex->tasklet_init(t, [&] { t_runs.fetch_add(1); });
  ex->work_init(w, [&] { w_runs.fetch_add(1); });
  ex->timer_init(tm, [&] { tm_runs.fetch_add(1); }, 2);
  ex->set_program(2, [&](unsigned) {
    prog2_steps.fetch_add(1);
    return step_result::sleep_for(1000);
  });
  int steps_when_down = -1;
  ex->set_program(0, sequence({
      [&] { return prog2_steps.load() > 0; },
      [&] {
        EXPECT_TRUE(ex->cpu_down(2).ok());
        steps_when_down = prog2_steps.load();
        EXPECT_TRUE(ex->tasklet_schedule_on(t, 2));
        EXPECT_TRUE(ex->schedule_work_on(2, w));
        ex->set_timer(tm, ex->now_ns());
        return true;
      },
  }));
  const run_stats st = ex->run();
  // CPU 2's program never finishes, so the run stalls (deterministic) or times out (threaded).
  EXPECT_NE(st.reason, stop_reason::quiescent);
  EXPECT_EQ(prog2_steps.load(), steps_when_down);
  EXPECT_EQ(t_runs.load() + w_runs.load() + tm_runs.load(), 0);
  const pending_counts p = ex->pending_on(2);
  EXPECT_EQ(p.plain_tasklets, 1u);
  EXPECT_EQ(p.work_items, 1u);
  EXPECT_EQ(p.timers, 1u);
  EXPECT_EQ(st.stranded_tasklets, 1u);
  EXPECT_EQ(st.stranded_work, 1u);
  EXPECT_EQ(st.stranded_timers, 1u);
  ex->check_invariants();
  ex->discard_pending();
}

TYPED_TEST(ExecutorTest, WorkParkedOnADeadCpuRunsAfterItComesBack) {
  auto ex = this->make(2);
  tasklet t;
  std::atomic<int> runs{0};
  std::atomic<unsigned> ran_on{no_cpu};
  ex->tasklet_init(t, [&] {
    ran_on.store(ex->current_cpu());
    runs.fetch_add(1);
  });
  ex->set_program(0, sequence({
      [&] {
        EXPECT_TRUE(ex->cpu_down(1).ok());
        EXPECT_TRUE(ex->tasklet_schedule_on(t, 1));
        return true;
      },
      [&] {
        EXPECT_EQ(runs.load(), 0);
        EXPECT_TRUE(ex->cpu_up(1).ok());
        return true;
      },
  }));
  const run_stats st = ex->run();
  EXPECT_EQ(st.reason, stop_reason::quiescent);
  EXPECT_EQ(runs.load(), 1);
  EXPECT_EQ(ran_on.load(), 1u);
}

TYPED_TEST(ExecutorTest, MigratePolicyMovesLeftoversToTheCpuRunningDead) {
  run_config cfg;
  cfg.cpus = 3;
  cfg.on_cpu_dead = dead_cpu_work::migrate;
  auto ex = this->make(cfg);
  tasklet t;
  std::atomic<unsigned> ran_on{no_cpu};
  ex->tasklet_init(t, [&] { ran_on.store(ex->current_cpu()); });
  std::atomic<bool> cpu2_busy{false};
  ex->set_program(0, sequence({[&] {
    // CPU 2 is busy in its program (never again at a scheduler point) while we queue and
    // take it down.
    if (!cpu2_busy.load()) return false;
    EXPECT_TRUE(ex->tasklet_schedule_on(t, 2));
    return true;
  }, [&] {
    EXPECT_TRUE(ex->cpu_down(2).ok());
    return true;
  }}));
  ex->set_program(2, [&](unsigned) {
    cpu2_busy.store(true);
    return step_result::busy();
  });
  const run_stats st = ex->run();
  // The tasklet either ran on CPU 2 before it went down, or moved to CPU 0 (the DEAD runner).
  EXPECT_EQ(ran_on.load(), 0u) << "a busy CPU 2 never reaches its scheduler point, so the "
                                   "tasklet can only have run after migrating to CPU 0";
  EXPECT_EQ(st.stranded_tasklets, 0u);
  ex->discard_pending();
}

// Xen's free_pgt notifier, verbatim in structure (seeds/000): per-CPU list + per-CPU tasklet,
// the worker asserts it runs on its list's CPU. Producers queue "pages" while random hotplug
// happens; every page must be freed exactly once and no worker may run on a foreign CPU.
TYPED_TEST(ExecutorTest, XenFreePgtNotifierSurvivesRandomHotplug) {
  constexpr unsigned cpus = 4;
  for (std::uint64_t seed = 1; seed <= 3; ++seed) {
    run_config cfg;
    cfg.cpus = cpus;
    cfg.seed = seed;
    auto ex = this->make(cfg);
    per_cpu<std::vector<unsigned>> list(cpus);
    per_cpu<tasklet> tl(cpus);
    std::vector<std::atomic<int>> freed(4096);
    std::atomic<int> wrong_cpu{0};
    auto worker = [&](unsigned owner) {
      if (ex->current_cpu() != owner) wrong_cpu.fetch_add(1);
      unsigned done = 0;
      while (!list[owner].empty()) {
        freed[list[owner].back()].fetch_add(1);
        list[owner].pop_back();
        if (!(++done & 0x1f)) ex->process_pending_softirqs();
      }
    };
    auto callback = [&](cpu_event e, unsigned cpu) {
      switch (e) {
        case cpu_event::down_prepare: ex->tasklet_kill(tl[cpu]); break;
        case cpu_event::dead:
          if (!list[cpu].empty()) {
            auto& here = list[ex->current_cpu()];
            here.insert(here.end(), list[cpu].begin(), list[cpu].end());
            list[cpu].clear();
            ex->tasklet_schedule(tl[ex->current_cpu()]);
          }
          break;
        case cpu_event::up_prepare:
          list[cpu].clear();
          [[fallthrough]];
        case cpu_event::down_failed:
          ex->tasklet_init(tl[cpu], [&, cpu] { worker(cpu); });
          // The v6 patch says tasklet_schedule(tasklet): that queues it on the CPU running
          // the notifier, not on `cpu` (see XenV6DownFailedSchedulesOnTheNotifierCpu).
          if (!list[cpu].empty()) ex->tasklet_schedule_on(tl[cpu], cpu);
          break;
        default: break;
      }
      return notify_result::done;
    };
    ex->register_cpu_notifier(callback, /*replay_online=*/true);
    const unsigned per_cpu_pages = scaled(400) / 4 * 4;
    for (unsigned c = 0; c < cpus; ++c) {
      auto next = std::make_shared<unsigned>(0);
      ex->set_program(c, [&, c, next](unsigned cpu) {
        EXPECT_EQ(cpu, c);
        if (*next >= per_cpu_pages) return step_result::finished();
        list[cpu].push_back(c * 1000 + (*next)++);
        ex->tasklet_schedule(tl[cpu]);
        ex->charge(cost_kind::op_overhead, 10);
        return (*next % 8) ? step_result::busy() : step_result::yield();
      });
    }
    prng rng(seed);
    // CPU 0 stays online, so every program can finish; the others churn.
    for (unsigned i = 0; i < 12; ++i) {
      const unsigned cpu = 1 + static_cast<unsigned>(rng.below(cpus - 1));
      const auto op = static_cast<hotplug_op>(rng.below(3));
      ex->schedule_hotplug({(i + 1) * 20000, op, cpu});
    }
    // Bring everyone back at the end so parked programs can finish.
    for (unsigned c = 1; c < cpus; ++c) ex->schedule_hotplug({400000, hotplug_op::up, c});
    const run_stats st = ex->run();
    EXPECT_EQ(st.reason, stop_reason::quiescent) << "seed " << seed;
    EXPECT_EQ(wrong_cpu.load(), 0) << "seed " << seed;
    for (unsigned c = 0; c < cpus; ++c)
      for (unsigned i = 0; i < per_cpu_pages; ++i)
        EXPECT_EQ(freed[c * 1000 + i].load(), 1) << "page " << c * 1000 + i << " seed " << seed;
    ex->check_invariants();
  }
}

// The CPU_DOWN_FAILED branch of the v6 patch re-inits the tasklet and calls
// tasklet_schedule(tasklet), which queues it on the CPU running the notifier. When the dying
// CPU's list is non-empty (its tasklet was killed in DOWN_PREPARE before it could run), the
// worker then runs on the wrong CPU: Roger's ASSERT(list == &this_cpu(free_pgt_list)) fires.
// Scheduling it on `cpu` keeps the worker on its own CPU.
TYPED_TEST(ExecutorTest, XenV6DownFailedSchedulesOnTheNotifierCpu) {
  for (const bool v6 : {true, false}) {
    auto ex = this->make(2);
    per_cpu<std::vector<unsigned>> list(2);
    per_cpu<tasklet> tl(2);
    std::atomic<int> wrong_cpu{0}, freed{0};
    std::atomic<bool> queued{false}, hotplug_done{false};
    auto worker = [&](unsigned owner) {
      if (ex->current_cpu() != owner) wrong_cpu.fetch_add(1);
      freed.fetch_add(static_cast<int>(list[owner].size()));
      list[owner].clear();
    };
    ex->register_cpu_notifier([&](cpu_event e, unsigned cpu) {
      switch (e) {
        case cpu_event::down_prepare: ex->tasklet_kill(tl[cpu]); break;
        case cpu_event::up_prepare:
          list[cpu].clear();
          [[fallthrough]];
        case cpu_event::down_failed:
          ex->tasklet_init(tl[cpu], [&, cpu] { worker(cpu); });
          if (!list[cpu].empty()) {
            if (v6) {
              ex->tasklet_schedule(tl[cpu]);
            } else {
              ex->tasklet_schedule_on(tl[cpu], cpu);
            }
          }
          break;
        default: break;
      }
      return notify_result::done;
    }, true);
    auto n = std::make_shared<unsigned>(0);
    ex->set_program(1, [&, n](unsigned cpu) {
      if (*n < 10) {  // queue 10 pages without passing a scheduler point
        list[cpu].push_back((*n)++);
        ex->tasklet_schedule(tl[cpu]);
        if (*n == 10) queued.store(true);
        return step_result::busy();
      }
      return hotplug_done.load() ? step_result::finished() : step_result::busy();
    });
    ex->set_program(0, sequence({[&] {
      if (!queued.load()) return false;
      ex->inject_cpu_down_failure();
      EXPECT_EQ(ex->cpu_down(1), errc::busy);
      hotplug_done.store(true);
      return true;
    }}));
    const run_stats st = ex->run();
    EXPECT_EQ(st.reason, stop_reason::quiescent);
    EXPECT_EQ(freed.load(), 10);
    EXPECT_EQ(wrong_cpu.load(), v6 ? 1 : 0) << (v6 ? "v6 code" : "fixed code");
  }
}

// Every sequence of three controller hotplug operations on three CPUs keeps the executor
// consistent: the online mask follows a simple model, and notifications match the results.
TYPED_TEST(ExecutorTest, ExhaustiveSmallHotplugSequencesStayConsistent) {
  constexpr unsigned cpus = 3;
  constexpr unsigned choices = 3 * cpus;  // op x cpu
  const unsigned total = choices * choices * choices;
  const unsigned stride = TypeParam::deterministic ? 1 : (scaled(4) >= 4 ? 7 : 23);
  for (unsigned code = 0; code < total; code += stride) {
    auto ex = this->make(cpus);
    notifier_log log;
    ex->register_cpu_notifier([&](cpu_event e, unsigned c) {
      log.add(*ex, e, c);
      return notify_result::done;
    });
    tasklet t;
    std::atomic<int> runs{0};
    ex->tasklet_init(t, [&] { runs.fetch_add(1); });
    std::vector<hotplug_event> seq;
    unsigned x = code;
    for (unsigned i = 0; i < 3; ++i, x /= choices)
      seq.push_back({(i + 1) * 1000, static_cast<hotplug_op>((x % choices) / cpus), (x % choices) % cpus});
    for (const auto& e : seq) ex->schedule_hotplug(e);
    EXPECT_TRUE(ex->tasklet_schedule_on(t, 2));
    const run_stats st = ex->run();
    // Model.
    std::vector<bool> online(cpus, true);
    unsigned downs = 0, ups = 0, fails = 0;
    for (const auto& e : seq) {
      unsigned n_online = 0;
      for (bool b : online) n_online += b ? 1 : 0;
      if (e.op == hotplug_op::up) {
        if (!online[e.cpu]) { online[e.cpu] = true; ++ups; }
      } else if (online[e.cpu] && n_online >= 2) {
        if (e.op == hotplug_op::down) { online[e.cpu] = false; ++downs; } else { ++fails; }
      }
    }
    const cpu_mask m = ex->online_mask();
    for (unsigned c = 0; c < cpus; ++c) EXPECT_EQ(m.test(c), online[c]) << "code " << code;
    EXPECT_EQ(st.cpu_downs, downs) << "code " << code;
    EXPECT_EQ(st.cpu_ups, ups) << "code " << code;
    EXPECT_EQ(st.cpu_down_failures, fails) << "code " << code;
    const std::vector<note> notes = log.take();
    EXPECT_EQ(notes.size(), 2 * (downs + ups + fails)) << "code " << code;
    for (const note& n : notes) EXPECT_NE(n.on, n.cpu) << "code " << code;
    // The tasklet ran once, unless CPU 2 ended offline with it parked there.
    EXPECT_EQ(runs.load() + static_cast<int>(ex->pending_on(2).plain_tasklets), 1) << "code " << code;
    ex->check_invariants();
    ex->discard_pending();
  }
}

}  // namespace
}  // namespace ptreclaim::runtime::test
