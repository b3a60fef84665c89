// Behaviour both executors must share: Xen's tasklet rules, the workqueue and timers. Every test
// runs under the deterministic and the threaded executor with the same client code.
#include <atomic>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "test_support.hpp"

namespace ptreclaim::runtime::test {
namespace {

template <class Kind>
class ExecutorTest : public executor_fixture<Kind> {};
TYPED_TEST_SUITE(ExecutorTest, executor_kinds, kind_names);

TYPED_TEST(ExecutorTest, PlainTaskletNeverRunsInsideProcessPendingSoftirqs) {
  auto ex = this->make(2);
  tasklet plain, soft;
  std::atomic<int> plain_runs{0}, soft_runs{0};
  sighting plain_seen, soft_seen;
  ex->tasklet_init(plain, [&] {
    plain_seen = {ex->current_cpu(), ex->context()};
    plain_runs.fetch_add(1);
  });
  ex->tasklet_init(
      soft,
      [&] {
        soft_seen = {ex->current_cpu(), ex->context()};
        EXPECT_TRUE(ex->in_softirq());
        soft_runs.fetch_add(1);
      },
      tasklet_kind::softirq);
  bool checked = false;
  ex->set_program(1, sequence({[&] {
                    EXPECT_TRUE(ex->tasklet_schedule(plain));
                    EXPECT_TRUE(ex->tasklet_schedule(soft));
                    ex->process_pending_softirqs();
                    // The softirq tasklet ran right here; the plain one waits for the scheduler
                    // point.
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
  ex->tasklet_init(
      soft, [&] { soft_runs.fetch_add(1); }, tasklet_kind::softirq);
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
                    for (unsigned c = 0; c < cpus; ++c)
                      EXPECT_TRUE(ex->tasklet_schedule_on(t[c], c));
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
    for (int i = 0; i < 100; ++i)
      ex->charge(cost_kind::op_overhead);
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
                    // Threaded: CPU 1 may have run it already, so flush_work may have nothing to
                    // wait for.
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
  ex->timer_init(
      t,
      [&] {
        seen = {ex->current_cpu(), ex->context()};
        fired_at.store(ex->now_ns());
      },
      2);
  ex->set_program(0, sequence({[&] {
                    armed_for.store(ex->now_ns() + 50000);
                    ex->set_timer(t, armed_for.load());
                    // Armed, unless a slow (sanitized, loaded) host let it fire already.
                    EXPECT_TRUE(ex->timer_is_armed(t) || fired_at.load() != 0);
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
  ex->timer_init(
      a, [&] { fires.fetch_add(1); }, 1);
  ex->timer_init(
      b, [&] { fires.fetch_add(1); }, 1);
  ex->set_program(0, sequence({[&] {
                    // Far deadlines: on a loaded host a threaded run can be
                    // descheduled for milliseconds between these lines.
                    constexpr std::uint64_t far_ns = 10'000'000'000ull;
                    ex->set_timer(a, ex->now_ns() + far_ns);
                    ex->set_timer(b, ex->now_ns() + far_ns);
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
  ex->timer_init(
      t, [&] { fires.fetch_add(1); }, 0);
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

// A timer armed far in the future and a daemon actor that never stops would keep a run going
// (the actor steps until the timer's time): request_stop() ends it at the next step boundary.
TYPED_TEST(ExecutorTest, RequestStopEndsARunThatAFarTimerAndADaemonActorWouldKeepGoing) {
  auto ex = this->make(2);
  timer far;
  std::atomic<bool> fired{false};
  ex->timer_init(
      far, [&] { fired = true; }, 1);
  std::atomic<std::uint64_t> actor_steps{0};
  ex->add_actor({"forever", [&] {
                   actor_steps.fetch_add(1);
                   return step_result::sleep_for(1000);
                 }});
  ex->set_program(1, sequence({[&] {
                    ex->set_timer(far, ex->now_ns() + (std::uint64_t{1} << 50));
                    return true;
                  }}));
  ex->set_program(0, sequence({[&] {
                    ex->request_stop();
                    return true;
                  }}));
  const run_stats st = ex->run();
  EXPECT_EQ(st.reason, stop_reason::requested);
  EXPECT_FALSE(fired.load());
  ex->discard_pending();
}

// The watchdog: a program that yields forever without the progress count moving stops the run
// with no_progress, in steps (deterministic) or real time (threaded).
TYPED_TEST(ExecutorTest, TheWatchdogStopsARunWhoseProgressCountStaysStill) {
  run_config cfg;
  cfg.cpus = 1;
  std::atomic<std::uint64_t> progress{0};
  cfg.progress = [&] { return progress.load(); };
  cfg.stall_steps = 5000;
  cfg.stall_real_ns = 50'000'000;  // 50 ms
  auto ex = this->make(cfg);
  std::atomic<std::uint64_t> steps{0};
  ex->set_program(0, [&](unsigned) {
    // Progress for the first 100 steps, then a livelock.
    if (steps.fetch_add(1) < 100) progress.fetch_add(1);
    return step_result::yield();
  });
  const run_stats st = ex->run();
  EXPECT_EQ(st.reason, stop_reason::no_progress);
  EXPECT_GE(steps.load(), 100u);
  ex->discard_pending();
}

TYPED_TEST(ExecutorTest, TheWatchdogLeavesARunThatProgressesAlone) {
  run_config cfg;
  cfg.cpus = 1;
  std::atomic<std::uint64_t> progress{0};
  cfg.progress = [&] { return progress.load(); };
  cfg.stall_steps = 1000;
  cfg.stall_real_ns = 50'000'000;
  auto ex = this->make(cfg);
  std::atomic<unsigned> left{20000};
  ex->set_program(0, [&](unsigned) {
    progress.fetch_add(1);
    return left.fetch_sub(1) == 1 ? step_result::finished() : step_result::yield();
  });
  EXPECT_EQ(ex->run().reason, stop_reason::quiescent);
}

}  // namespace
}  // namespace ptreclaim::runtime::test
