// CPU hotplug under both executors: notifier order and contexts, vetoes and injected
// failures, offline CPUs running nothing, Xen's free_pgt callback, exhaustive small sequences.
#include <atomic>
#include <mutex>
#include <vector>

#include "test_support.hpp"

namespace ptreclaim::runtime::test {
namespace {

template <class Kind>
class HotplugTest : public executor_fixture<Kind> {};
TYPED_TEST_SUITE(HotplugTest, executor_kinds, kind_names);

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

TYPED_TEST(HotplugTest, HotplugNotifierOrderFromACpu) {
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

TYPED_TEST(HotplugTest, DownPrepareVetoSendsDownFailedToEarlierNotifiersOnly) {
  auto ex = this->make(2);
  notifier_log first, second, third;
  ex->register_cpu_notifier([&](cpu_event e, unsigned c) {
    first.add(*ex, e, c);
    return notify_result::done;
  });
  ex->register_cpu_notifier([&](cpu_event e, unsigned c) {
    second.add(*ex, e, c);
    return e == cpu_event::down_prepare ? notify_result::veto : notify_result::done;
  });
  ex->register_cpu_notifier([&](cpu_event e, unsigned c) {
    third.add(*ex, e, c);
    return notify_result::done;
  });
  ex->set_program(0, sequence({[&] {
                    EXPECT_EQ(ex->cpu_down(1), errc::busy);
                    return true;
                  }}));
  ex->run();
  using E = cpu_event;
  const auto N = exec_context::notifier;
  EXPECT_EQ(first.take(),
            (std::vector<note>{{E::down_prepare, 1, 0, N}, {E::down_failed, 1, 0, N}}));
  EXPECT_EQ(second.take(), (std::vector<note>{{E::down_prepare, 1, 0, N}}));
  EXPECT_TRUE(third.take().empty());
  EXPECT_TRUE(ex->cpu_online(1));
}

// A notifier that defers a scheduled cpu_down (its CPU is inside a region stop_machine cannot
// interrupt) moves the event later; the CPU's later `up` waits behind it; a direct cpu_down
// may not defer (defer counts as a veto); and the last try may not defer either.
TYPED_TEST(HotplugTest, DeferredDownRunsLaterAndKeepsItsUpBehindIt) {
  run_config cfg;
  cfg.cpus = 3;
  cfg.hotplug_defer_ns = 500;
  auto ex = this->make(cfg);
  notifier_log first, guard;
  std::atomic<unsigned> defers_left{3};
  std::atomic<unsigned> waiting_seen{0};
  ex->register_cpu_notifier([&](cpu_event e, unsigned c) {
    first.add(*ex, e, c);
    return notify_result::done;
  });
  ex->register_cpu_notifier([&](cpu_event e, unsigned c) {
    guard.add(*ex, e, c);
    if (e != cpu_event::down_prepare || c != 1) return notify_result::done;
    // The down counts as waiting from before its first down_prepare until its last try ends.
    if (ex->hotplug_down_waiting(1)) waiting_seen.fetch_add(1);
    if (defers_left.load() == 0) return notify_result::done;
    EXPECT_TRUE(ex->hotplug_may_defer());
    defers_left.fetch_sub(1);
    return notify_result::defer;
  });
  ex->schedule_hotplug({1000, hotplug_op::down, 1});
  ex->schedule_hotplug({1200, hotplug_op::up, 1});  // due before the deferred down goes through
  const run_stats st = ex->run();
  EXPECT_EQ(st.reason, stop_reason::quiescent);
  EXPECT_EQ(st.hotplug_defers, 3u);
  EXPECT_EQ(st.cpu_downs, 1u);
  EXPECT_EQ(st.cpu_ups, 1u);
  EXPECT_EQ(st.cpu_down_failures, 0u);
  EXPECT_EQ(st.hotplug_rejected, 0u);
  EXPECT_EQ(waiting_seen.load(), 4u);  // every try: three deferred, then the one that went down
  EXPECT_FALSE(ex->hotplug_down_waiting(1));
  EXPECT_TRUE(ex->cpu_online(1));
  using E = cpu_event;
  std::vector<E> seen;
  for (const note& n : first.take())
    seen.push_back(n.event);
  // Three tries deferred (down_failed to the notifier before the deferring one), then the
  // down, then the up: the up kept its place behind the down.
  EXPECT_EQ(seen, (std::vector<E>{E::down_prepare, E::down_failed, E::down_prepare, E::down_failed,
                                  E::down_prepare, E::down_failed, E::down_prepare, E::dead,
                                  E::up_prepare, E::online}));
}

TYPED_TEST(HotplugTest, DeferIsAVetoWhenTheDownMayNotWait) {
  run_config cfg;
  cfg.cpus = 3;
  cfg.hotplug_max_defers = 2;
  for (const bool scheduled : {false, true}) {
    SCOPED_TRACE(scheduled ? "scheduled cpu_down" : "direct cpu_down");
    auto ex = this->make(cfg);
    std::atomic<unsigned> asked{0}, allowed{0};
    ex->register_cpu_notifier([&](cpu_event e, unsigned) {
      if (e != cpu_event::down_prepare) return notify_result::done;
      asked.fetch_add(1);
      if (ex->hotplug_may_defer()) allowed.fetch_add(1);
      return notify_result::defer;  // always: the last try must fail, not loop
    });
    if (scheduled) {
      ex->schedule_hotplug({1000, hotplug_op::down, 2});
    } else {
      ex->set_program(0, sequence({[&] {
                        EXPECT_EQ(ex->cpu_down(1), errc::busy);  // direct: may not defer
                        return true;
                      }}));
    }
    const run_stats st = ex->run();
    EXPECT_EQ(st.reason, stop_reason::quiescent);
    // Direct: one try, a veto. Scheduled: two deferred tries, then the last, a veto.
    EXPECT_EQ(asked.load(), scheduled ? 3u : 1u);
    EXPECT_EQ(allowed.load(), scheduled ? 2u : 0u);
    EXPECT_EQ(st.hotplug_defers, scheduled ? 2u : 0u);
    EXPECT_EQ(st.cpu_down_failures, 1u);
    EXPECT_TRUE(ex->cpu_online(1));
    EXPECT_TRUE(ex->cpu_online(2));
  }
}

TYPED_TEST(HotplugTest, ControllerHotplugRunsDeadOnAnotherOnlineCpu) {
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
  const cpu_event expected[] = {cpu_event::down_prepare, cpu_event::dead,
                                cpu_event::down_prepare, cpu_event::down_failed,
                                cpu_event::up_prepare,   cpu_event::online};
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

TYPED_TEST(HotplugTest, AnOfflineCpuRunsNothingAndKeepsItsWork) {
  auto ex = this->make(3);
  tasklet t;
  work_item w;
  timer tm;
  std::atomic<int> t_runs{0}, w_runs{0}, tm_runs{0}, prog2_steps{0};
  ex->tasklet_init(t, [&] { t_runs.fetch_add(1); });
  ex->work_init(w, [&] { w_runs.fetch_add(1); });
  ex->timer_init(
      tm, [&] { tm_runs.fetch_add(1); }, 2);
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

TYPED_TEST(HotplugTest, WorkParkedOnADeadCpuRunsAfterItComesBack) {
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

TYPED_TEST(HotplugTest, MigratePolicyMovesLeftoversToTheCpuRunningDead) {
  run_config cfg;
  cfg.cpus = 3;
  cfg.on_cpu_dead = dead_cpu_work::migrate;
  auto ex = this->make(cfg);
  tasklet t;
  std::atomic<unsigned> ran_on{no_cpu};
  ex->tasklet_init(t, [&] { ran_on.store(ex->current_cpu()); });
  std::atomic<bool> cpu2_busy{false};
  ex->set_program(0, sequence({[&] {
                                 // CPU 2 is busy in its program (never again at a scheduler point)
                                 // while we queue and take it down.
                                 if (!cpu2_busy.load()) return false;
                                 EXPECT_TRUE(ex->tasklet_schedule_on(t, 2));
                                 return true;
                               },
                               [&] {
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
TYPED_TEST(HotplugTest, XenFreePgtNotifierSurvivesRandomHotplug) {
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
        case cpu_event::down_prepare:
          ex->tasklet_kill(tl[cpu]);
          break;
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
        default:
          break;
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
    for (unsigned c = 1; c < cpus; ++c)
      ex->schedule_hotplug({400000, hotplug_op::up, c});
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
TYPED_TEST(HotplugTest, XenV6DownFailedSchedulesOnTheNotifierCpu) {
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
    ex->register_cpu_notifier(
        [&](cpu_event e, unsigned cpu) {
          switch (e) {
            case cpu_event::down_prepare:
              ex->tasklet_kill(tl[cpu]);
              break;
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
            default:
              break;
          }
          return notify_result::done;
        },
        true);
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
TYPED_TEST(HotplugTest, ExhaustiveSmallHotplugSequencesStayConsistent) {
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
      seq.push_back(
          {(i + 1) * 1000, static_cast<hotplug_op>((x % choices) / cpus), (x % choices) % cpus});
    for (const auto& e : seq)
      ex->schedule_hotplug(e);
    EXPECT_TRUE(ex->tasklet_schedule_on(t, 2));
    const run_stats st = ex->run();
    // Model.
    std::vector<bool> online(cpus, true);
    unsigned downs = 0, ups = 0, fails = 0;
    for (const auto& e : seq) {
      unsigned n_online = 0;
      for (bool b : online)
        n_online += b ? 1 : 0;
      if (e.op == hotplug_op::up) {
        if (!online[e.cpu]) {
          online[e.cpu] = true;
          ++ups;
        }
      } else if (online[e.cpu] && n_online >= 2) {
        if (e.op == hotplug_op::down) {
          online[e.cpu] = false;
          ++downs;
        } else {
          ++fails;
        }
      }
    }
    const cpu_mask m = ex->online_mask();
    for (unsigned c = 0; c < cpus; ++c)
      EXPECT_EQ(m.test(c), online[c]) << "code " << code;
    EXPECT_EQ(st.cpu_downs, downs) << "code " << code;
    EXPECT_EQ(st.cpu_ups, ups) << "code " << code;
    EXPECT_EQ(st.cpu_down_failures, fails) << "code " << code;
    const std::vector<note> notes = log.take();
    EXPECT_EQ(notes.size(), 2 * (downs + ups + fails)) << "code " << code;
    for (const note& n : notes)
      EXPECT_NE(n.on, n.cpu) << "code " << code;
    // The tasklet ran once, unless CPU 2 ended offline with it parked there.
    EXPECT_EQ(runs.load() + static_cast<int>(ex->pending_on(2).plain_tasklets), 1)
        << "code " << code;
    ex->check_invariants();
    ex->discard_pending();
  }
}

}  // namespace
}  // namespace ptreclaim::runtime::test
