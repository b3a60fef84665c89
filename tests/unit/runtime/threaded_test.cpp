// Threaded-executor specifics: real concurrency (a kill that waits for a tasklet running on
// another CPU's thread), actors on their own threads, and a stress run meant for TSan.
#include <atomic>
#include <thread>

#include "ptreclaim/base/spinlock.hpp"
#include "test_support.hpp"

namespace ptreclaim::runtime::test {
namespace {

TEST(Threaded, KillWaitsForATaskletRunningOnAnotherCpu) {
  threaded_executor ex(run_config{.cpus = 2});
  tasklet t;
  std::atomic<bool> started{false}, release{false}, finished{false};
  ex.tasklet_init(t, [&] {
    started.store(true);
    // Spin (bounded) until CPU 0 is inside tasklet_kill.
    EXPECT_TRUE(
        ex.wait_until([&] { return release.load(); }, std::uint64_t{5} * 1000 * 1000 * 1000));
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    finished.store(true);
  });
  bool finished_when_kill_returned = false;
  ex.set_program(0, sequence({
                        [&] { return ex.tasklet_schedule_on(t, 1); },
                        [&] { return started.load(); },
                        [&] {
                          release.store(true);
                          ex.tasklet_kill(t);
                          finished_when_kill_returned = finished.load();
                          return true;
                        },
                    }));
  const run_stats st = ex.run();
  EXPECT_EQ(st.reason, stop_reason::quiescent);
  EXPECT_TRUE(finished_when_kill_returned);
  EXPECT_TRUE(ex.tasklet_is_dead(t));
}

TEST(Threaded, FlushWorkWaitsForRemoteRunningItem) {
  threaded_executor ex(run_config{.cpus = 2});
  work_item w;
  std::atomic<bool> started{false}, finished{false};
  ex.work_init(w, [&] {
    started.store(true);
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    finished.store(true);
  });
  bool done_after_flush = false;
  ex.set_program(0, sequence({
                        [&] { return ex.schedule_work_on(1, w); },
                        [&] { return started.load(); },
                        [&] {
                          ex.flush_work(w);
                          done_after_flush = finished.load();
                          return true;
                        },
                    }));
  ex.run();
  EXPECT_TRUE(done_after_flush);
}

TEST(Threaded, ActorsRunOnTheirOwnThreadsAndWaitUntilSeesThem) {
  threaded_executor ex(run_config{.cpus = 2});
  std::atomic<unsigned> doorbell{0}, completed{0};
  auto served = std::make_shared<unsigned>(0);
  ex.add_actor({"engine",
                [&, served] {
                  EXPECT_EQ(ex.context(), exec_context::actor);
                  EXPECT_FALSE(ex.on_cpu());
                  if (doorbell.load() > *served) completed.store(++*served);
                  return *served >= 20 ? step_result::finished() : step_result::sleep_for(1000);
                },
                /*daemon=*/false});
  for (unsigned c = 0; c < 2; ++c) {
    auto left = std::make_shared<unsigned>(10);
    ex.set_program(c, [&, left](unsigned) {
      const unsigned ticket = doorbell.fetch_add(1) + 1;
      EXPECT_TRUE(ex.wait_until([&] { return completed.load() >= ticket; },
                                std::uint64_t{5} * 1000 * 1000 * 1000));
      return --*left ? step_result::yield() : step_result::finished();
    });
  }
  const run_stats st = ex.run();
  EXPECT_EQ(st.reason, stop_reason::quiescent);
  EXPECT_EQ(completed.load(), 20u);
  EXPECT_GE(st.actor_steps[0], 20u);
}

TEST(Threaded, StressTaskletsWorkTimersAndHotplug) {
  constexpr unsigned cpus = 4;
  const unsigned steps = scaled(2000);
  threaded_executor ex(run_config{.cpus = cpus, .seed = 5});
  per_cpu<tasklet> tl(cpus);
  per_cpu<timer> tm(cpus);
  per_cpu<std::atomic<unsigned>> runs(cpus, [](unsigned) { return 0u; });
  work_item w;
  spinlock lock(ex);
  unsigned shared = 0;
  std::atomic<int> wrong_cpu{0};
  for (unsigned c = 0; c < cpus; ++c) {
    ex.tasklet_init(
        tl[c],
        [&, c] {
          if (ex.current_cpu() != c) wrong_cpu.fetch_add(1);
          runs[c].fetch_add(1);
        },
        c % 2 ? tasklet_kind::softirq : tasklet_kind::plain);
    ex.timer_init(
        tm[c],
        [&, c] {
          if (ex.current_cpu() != c) wrong_cpu.fetch_add(1);
        },
        c);
  }
  ex.work_init(w, [&] {
    std::lock_guard<spinlock> g(lock);
    ++shared;
  });
  ex.register_cpu_notifier([&](cpu_event e, unsigned cpu) {
    if (e == cpu_event::down_prepare) {
      ex.tasklet_kill(tl[cpu]);
      ex.kill_timer(tm[cpu]);
    } else if (e == cpu_event::down_failed || e == cpu_event::up_prepare) {
      ex.tasklet_init(
          tl[cpu],
          [&, cpu] {
            if (ex.current_cpu() != cpu) wrong_cpu.fetch_add(1);
            runs[cpu].fetch_add(1);
          },
          cpu % 2 ? tasklet_kind::softirq : tasklet_kind::plain);
      ex.timer_init(
          tm[cpu],
          [&, cpu] {
            if (ex.current_cpu() != cpu) wrong_cpu.fetch_add(1);
          },
          cpu);
    }
    return notify_result::done;
  });
  for (unsigned c = 0; c < cpus; ++c) {
    auto n = std::make_shared<unsigned>(0);
    ex.set_program(c, [&, n](unsigned cpu) {
      ex.tasklet_schedule(tl[cpu]);
      if (*n % 3 == 0) ex.schedule_work(w);
      if (*n % 5 == 0) ex.set_timer(tm[cpu], ex.now_ns() + 2000);
      if (*n % 7 == 0) ex.process_pending_softirqs();
      {
        std::lock_guard<spinlock> g(lock);
        ++shared;
      }
      return ++*n < steps ? (*n % 4 ? step_result::busy() : step_result::yield())
                          : step_result::finished();
    });
  }
  for (unsigned i = 0; i < 6; ++i) {
    const unsigned cpu = 1 + i % (cpus - 1);
    ex.schedule_hotplug(
        {(i + 1) * 200000ull, i % 3 == 2 ? hotplug_op::down_fail : hotplug_op::down, cpu});
    ex.schedule_hotplug({(i + 1) * 200000ull + 100000, hotplug_op::up, cpu});
  }
  const run_stats st = ex.run();
  EXPECT_EQ(st.reason, stop_reason::quiescent);
  EXPECT_EQ(wrong_cpu.load(), 0);
  EXPECT_GE(shared, cpus * steps);
  ex.check_invariants();
}

// CPU 0 runs busy and yield steps, which its thread takes without the executor mutex while
// nothing is queued for it. Work that another CPU queues for it, and a timer armed on it, must
// still reach it: a plain tasklet at its next scheduler point (never inside a run of busy
// steps), a softirq tasklet and the timer at its next step boundary. Without the queueing side
// raising the CPU's attention, CPU 0 would loop until the deadline and the run would fail.
TEST(Threaded, WorkQueuedByAnotherCpuReachesACpuRunningStepsWithoutTheMutex) {
  threaded_executor ex(run_config{.cpus = 2});
  tasklet plain, soft;
  timer tm;
  std::atomic<bool> plain_ran{false}, soft_ran{false}, timer_fired{false}, armed{false};
  std::atomic<bool> plain_inside_busy_run{false};
  bool in_busy_run = false;  // CPU 0's own state: between a busy step and the next yield
  ex.tasklet_init(plain, [&] {
    if (in_busy_run) plain_inside_busy_run.store(true);
    plain_ran.store(true);
  });
  ex.tasklet_init(
      soft, [&] { soft_ran.store(true); }, tasklet_kind::softirq);
  ex.timer_init(
      tm, [&] { timer_fired.store(true); }, 0);
  const std::uint64_t deadline = ex.now_ns() + std::uint64_t{10} * 1000 * 1000 * 1000;
  std::atomic<std::uint64_t> n{0};
  ex.set_program(0, [&](unsigned) {
    const bool all = plain_ran.load() && soft_ran.load() && timer_fired.load();
    if (all || ex.now_ns() > deadline) {
      in_busy_run = false;
      return step_result::finished();
    }
    // Runs of 7 busy steps, then a yield: the scheduler point.
    in_busy_run = (n.fetch_add(1) + 1) % 8 != 0;
    return in_busy_run ? step_result::busy() : step_result::yield();
  });
  ex.set_program(1, sequence({
                        [&] { return n.load() > 1000; },  // CPU 0 is well into its steps
                        [&] { return ex.tasklet_schedule_on(plain, 0); },
                        [&] { return ex.tasklet_schedule_on(soft, 0); },
                        [&] {
                          ex.set_timer(tm, ex.now_ns() + 100'000);
                          armed.store(true);
                          return true;
                        },
                    }));
  const run_stats st = ex.run();
  EXPECT_EQ(st.reason, stop_reason::quiescent);
  EXPECT_TRUE(armed.load());
  EXPECT_TRUE(plain_ran.load());
  EXPECT_TRUE(soft_ran.load());
  EXPECT_TRUE(timer_fired.load());
  EXPECT_FALSE(plain_inside_busy_run.load()) << "a plain tasklet ran between busy steps";
}

}  // namespace
}  // namespace ptreclaim::runtime::test
