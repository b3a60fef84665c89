// Deterministic-executor specifics: reproducibility, seeded interleavings, virtual-time
// contention, wait_until with actors, the cost model.

#include <atomic>
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "ptreclaim/base/spinlock.hpp"
#include "test_support.hpp"

namespace ptreclaim::runtime::test {
namespace {

// A small workload with tasklets, work, timers, an actor and shared state: returns the trace
// (entity sequence) and the stats.
struct outcome {
  std::vector<std::tuple<bool, unsigned, int, std::uint64_t>> trace;
  run_stats stats;
};

// `cpus` CPUs and no step jitter: clocks move only by what the test charges.
run_config unjittered(unsigned cpus) {
  run_config cfg;
  cfg.cpus = cpus;
  cfg.costs.step_jitter_ns = 0;
  return cfg;
}

outcome run_mixed(std::uint64_t seed, unsigned cpus = 4) {
  run_config cfg;
  cfg.cpus = cpus;
  cfg.seed = seed;
  deterministic_executor ex(cfg);
  outcome out;
  ex.set_trace_sink([&](const trace_event& e) {
    out.trace.emplace_back(e.is_actor, e.entity, static_cast<int>(e.kind), e.end_ns);
  });
  per_cpu<tasklet> tl(cpus);
  work_item w;
  timer tm;
  spinlock lock(ex);
  unsigned shared = 0;
  for (unsigned c = 0; c < cpus; ++c)
    ex.tasklet_init(tl[c], [&] { ex.charge(cost_kind::frame_free, 3); });
  ex.work_init(w, [&] { ex.charge(cost_kind::inv_submit); });
  ex.timer_init(
      tm, [&] { ex.charge(cost_kind::dequeue); }, 0);
  for (unsigned c = 0; c < cpus; ++c) {
    auto n = std::make_shared<unsigned>(0);
    ex.set_program(c, [&, n](unsigned cpu) {
      {
        std::lock_guard<spinlock> g(lock);
        ++shared;
        ex.touch_line(&shared, true);
      }
      ex.tasklet_schedule(tl[cpu]);
      if (*n % 5 == 0) ex.schedule_work(w);
      if (*n % 7 == 0) ex.set_timer(tm, ex.now_ns() + 3000);
      return ++*n < 50 ? (*n % 3 ? step_result::busy() : step_result::yield())
                       : step_result::finished();
    });
  }
  auto dev = std::make_shared<unsigned>(0);
  ex.add_actor({"dev",
                [&, dev] {
                  ex.touch_line(&shared, false);
                  return ++*dev < 30 ? step_result::sleep_for(500) : step_result::finished();
                },
                false});
  out.stats = ex.run();
  EXPECT_EQ(out.stats.trace_hash, ex.trace_hash());
  EXPECT_EQ(shared, cpus * 50);
  return out;
}

TEST(Deterministic, SameSeedSameInterleavingAndHash) {
  for (std::uint64_t seed : {1ULL, 7ULL, 12345ULL}) {
    const outcome a = run_mixed(seed);
    const outcome b = run_mixed(seed);
    EXPECT_EQ(a.stats.reason, stop_reason::quiescent);
    EXPECT_EQ(a.stats.trace_hash, b.stats.trace_hash) << "seed " << seed;
    EXPECT_EQ(a.trace, b.trace) << "seed " << seed;
    EXPECT_EQ(a.stats.elapsed_ns, b.stats.elapsed_ns);
    EXPECT_EQ(a.stats.steps, b.stats.steps);
  }
}

TEST(Deterministic, DifferentSeedsGiveDifferentInterleavings) {
  std::set<std::uint64_t> hashes;
  std::set<std::vector<unsigned>> orders;
  constexpr unsigned seeds = 8;
  for (std::uint64_t seed = 1; seed <= seeds; ++seed) {
    const outcome o = run_mixed(seed);
    hashes.insert(o.stats.trace_hash);
    std::vector<unsigned> order;
    for (const auto& e : o.trace)
      order.push_back(std::get<1>(e) + (std::get<0>(e) ? 1000 : 0));
    orders.insert(order);
  }
  EXPECT_EQ(hashes.size(), seeds);
  EXPECT_GE(orders.size(), seeds - 1) << "the entity order itself must depend on the seed";
}

// N CPUs hammering one lock take about N times longer in virtual time than N CPUs each on its
// own lock: the critical sections serialise.
std::uint64_t lock_run(unsigned cpus, bool shared_lock) {
  run_config cfg;
  cfg.cpus = cpus;
  cfg.seed = 3;
  deterministic_executor ex(cfg);
  per_cpu<spinlock> own(cpus, [&](unsigned) { return spinlock(ex); });
  spinlock global(ex);
  constexpr unsigned iterations = 200;
  for (unsigned c = 0; c < cpus; ++c) {
    auto n = std::make_shared<unsigned>(0);
    ex.set_program(c, [&, n](unsigned cpu) {
      spinlock& l = shared_lock ? global : own[cpu];
      l.lock();
      ex.charge(cost_kind::op_overhead, 4);  // 200 ns critical section
      l.unlock();
      return ++*n < iterations ? step_result::busy() : step_result::finished();
    });
  }
  const run_stats st = ex.run();
  EXPECT_EQ(st.reason, stop_reason::quiescent);
  return st.elapsed_ns;
}

TEST(Deterministic, OneLockSerialisesInVirtualTime) {
  for (unsigned n : {4u, 16u, 64u}) {
    const double global = static_cast<double>(lock_run(n, true));
    const double own = static_cast<double>(lock_run(n, false));
    const double ratio = global / own;
    EXPECT_GT(ratio, 0.6 * n) << n << " CPUs: global " << global << " own " << own;
    EXPECT_LT(ratio, 2.0 * n) << n << " CPUs: global " << global << " own " << own;
  }
}

TEST(Deterministic, WritesToASharedLineCostTransfers) {
  auto run = [](bool same_line) {
    const run_config cfg = unjittered(2);
    deterministic_executor ex(cfg);
    alignas(64) static unsigned lines[2][16];
    for (unsigned c = 0; c < 2; ++c) {
      auto n = std::make_shared<unsigned>(0);
      ex.set_program(c, [&, n](unsigned cpu) {
        ex.touch_line(same_line ? &lines[0][0] : &lines[cpu][0], true);
        return ++*n < 100 ? step_result::busy() : step_result::finished();
      });
    }
    return ex.run().elapsed_ns;
  };
  const std::uint64_t shared = run(true), separate = run(false);
  const std::uint64_t transfer = cost_model{}.cost(cost_kind::cache_line_transfer);
  EXPECT_GE(shared, separate + 50 * transfer) << "ping-ponging a line must cost transfers";
}

// N CPUs that each write one shared counter per step are serial on that line: the run takes
// at least N * steps transfers of virtual time, however many CPUs there are.
TEST(Deterministic, WritersOfOneLineSerialise) {
  for (unsigned n : {4u, 16u, 64u}) {
    const run_config cfg = unjittered(n);
    deterministic_executor ex(cfg);
    alignas(64) static unsigned line[16];
    constexpr unsigned steps = 20;
    for (unsigned c = 0; c < n; ++c) {
      auto k = std::make_shared<unsigned>(0);
      ex.set_program(c, [&, k](unsigned) {
        ex.touch_line(line, true);
        return ++*k < steps ? step_result::busy() : step_result::finished();
      });
    }
    const std::uint64_t transfer = cost_model{}.cost(cost_kind::cache_line_transfer);
    const std::uint64_t elapsed = ex.run().elapsed_ns;
    EXPECT_GE(elapsed, (n * steps - 1) * transfer) << n << " CPUs";
  }
}

// touch_table_line's accounting, one scripted access at a time (a CPU whose turn it is not
// only steps): a write costs a transfer after another CPU's access, a read after another CPU's
// write; a line whose slot another line took is forgotten.
TEST(Deterministic, TableLinesChargeTransfersBetweenWritersAndReaders) {
  run_config cfg;
  cfg.cpus = 2;
  cfg.pt_lines = 4;  // lines 4 apart share a slot
  deterministic_executor ex(cfg);
  alignas(64) static std::uint64_t mem[8][8];  // 8 lines: A = 0, B = 1, C = 4 (A's slot)
  struct access {
    unsigned cpu;
    unsigned line;
    bool write;
    std::uint64_t transfers;  // expected for this access
  };
  const std::vector<access> script = {
      {0, 0, true, 0},   // A new
      {0, 0, true, 0},   // A still cpu 0's
      {1, 0, false, 1},  // A modified by cpu 0: moves, now shared
      {0, 0, false, 0},  // shared: reads are free
      {1, 0, false, 0},  //
      {0, 0, true, 1},   // cpu 1 shares it: a write moves it
      {1, 0, true, 1},   // cpu 0 modified it
      {1, 1, true, 0},   // B new
      {0, 4, true, 0},   // C new, takes A's slot
      {0, 0, true, 0},   // A forgotten: free, though cpu 1 wrote it last
  };
  std::vector<std::uint64_t> seen;
  std::size_t next = 0;
  for (unsigned c = 0; c < 2; ++c) {
    ex.set_program(c, [&](unsigned cpu) {
      if (next < script.size() && script[next].cpu == cpu) {
        const std::uint64_t before = ex.table_line_transfers();
        ex.touch_table_line(&mem[script[next].line][3], script[next].write);
        seen.push_back(ex.table_line_transfers() - before);
        ++next;
      }
      return next < script.size() ? step_result::yield() : step_result::finished();
    });
  }
  (void)ex.run();
  ASSERT_EQ(seen.size(), script.size());
  for (std::size_t i = 0; i < script.size(); ++i)
    EXPECT_EQ(seen[i], script[i].transfers) << "access " << i;
}

// A table written whole in one loop (split) moves every line another CPU wrote, but its stores
// overlap the transfers: one transfer charged for the batch (measured: a 4 KiB fill of a frame
// the other core wrote costs ~125 ns more than a local one, about one transfer, not 64).
TEST(Deterministic, AWholeTableFillMovesEveryLineForTheTimeOfOneTransfer) {
  for (bool bulk : {true, false}) {
    const run_config cfg = unjittered(2);
    deterministic_executor ex(cfg);
    alignas(64) static std::uint64_t table[512];
    std::uint64_t charged = 0, moved = 0;
    ex.set_program(0, sequence({[&] {
                     ex.touch_table_lines(table, 64);
                     return true;
                   }}));
    auto step = std::make_shared<unsigned>(0);
    ex.set_program(1, [&, step, bulk](unsigned) {
      if ((*step)++ == 0) return step_result::sleep_for(1000);  // after cpu 0's writes
      const std::uint64_t t0 = ex.now_ns(), m0 = ex.table_line_transfers();
      if (bulk) {
        ex.touch_table_lines(table, 64);
      } else {
        for (unsigned i = 0; i < 512; i += 8)
          ex.touch_table_line(&table[i], true);
      }
      charged = ex.now_ns() - t0;
      moved = ex.table_line_transfers() - m0;
      return step_result::finished();
    });
    (void)ex.run();
    const std::uint64_t transfer = cfg.costs.cost(cost_kind::cache_line_transfer);
    EXPECT_EQ(moved, 64u) << (bulk ? "bulk" : "line by line");
    EXPECT_EQ(charged, bulk ? transfer : 64 * transfer) << (bulk ? "bulk" : "line by line");
  }
}

TEST(BusyIntervals, AnAccessStartsInTheFirstGapAtOrAfterItsArrival) {
  busy_intervals b;
  EXPECT_EQ(b.earliest_free(5), 5u);
  b.add(10, 20);
  b.add(30, 40);
  b.add(20, 25);                        // out of order: kept sorted
  EXPECT_EQ(b.earliest_free(0), 0u);    // before every hold: it got there first
  EXPECT_EQ(b.earliest_free(10), 25u);  // inside [10,20) then [20,25)
  EXPECT_EQ(b.earliest_free(27), 27u);  // in the gap
  EXPECT_EQ(b.earliest_free(35), 40u);
  EXPECT_EQ(b.earliest_free(99), 99u);
  for (unsigned i = 0; i < 2 * busy_intervals::capacity; ++i)
    b.add(100 + 10 * i, 105 + 10 * i);
  EXPECT_EQ(b.size(), busy_intervals::capacity);  // bounded: the oldest are forgotten
  EXPECT_EQ(b.earliest_free(10), 10u);
}

TEST(BusyIntervals, TheTimeRecordedHoldsCoverInsideASpanIsSummed) {
  busy_intervals b;
  b.add(10, 20);
  b.add(22, 30);
  b.add(40, 50);
  EXPECT_EQ(b.busy_within(0, 10), 0u);
  EXPECT_EQ(b.busy_within(0, 100), 28u);
  EXPECT_EQ(b.busy_within(15, 25), 8u);  // the end of [10,20) and the start of [22,30)
  EXPECT_EQ(b.busy_within(31, 39), 0u);
  EXPECT_EQ(b.busy_within(45, 60), 5u);
}

// A CPU whose one long step took a lock far ahead in virtual time must not push a CPU with an
// earlier clock forward to that release: only a hold the acquirer falls into delays it.
TEST(Deterministic, ALockHeldFarAheadDoesNotDelayAnEarlierAcquirer) {
  const run_config cfg = unjittered(2);
  deterministic_executor ex(cfg);
  spinlock lock(ex);
  std::uint64_t late_clock = 0;
  auto k0 = std::make_shared<unsigned>(0);
  ex.set_program(0, [&, k0](unsigned) {
    ex.charge(cost_kind::frame_free, 2500);  // a long step (100 us), then the lock
    std::lock_guard<spinlock> g(lock);
    return ++*k0 < 1 ? step_result::busy() : step_result::finished();
  });
  auto k1 = std::make_shared<unsigned>(0);
  ex.set_program(1, [&, k1](unsigned) {
    if (*k1 == 1) {
      std::lock_guard<spinlock> g(lock);
      late_clock = ex.now_ns();
    }
    return ++*k1 < 3 ? step_result::busy() : step_result::finished();
  });
  (void)ex.run();
  EXPECT_LT(late_clock, 10'000u) << "CPU 1 was pushed to CPU 0's far-ahead release";
}

// CPU 0 takes the lock 100 times in one step with a few ns between holds (a superpage fill maps
// 512 pages, each under the domain's lock); CPU 1, whose clock is earlier, asks for it once and
// starts in a gap shorter than its hold. The CPU 0 hold it then overlaps was a turn it waited
// for: its own hold ends that much later. (It used to end as if alone, overlapping CPU 0's.)
TEST(Deterministic, AHoldThatOverlapsAnotherWaitedForIt) {
  const run_config cfg = unjittered(2);
  deterministic_executor ex(cfg);
  spinlock lock(ex);
  std::uint64_t cpu1_taken = 0, cpu1_release = 0;
  ex.set_program(0, [&](unsigned) {
    for (unsigned i = 0; i < 100; ++i) {
      {
        std::lock_guard<spinlock> g(lock);
        ex.charge(cost_kind::frame_free, 4);  // the hold
      }
      ex.charge(cost_kind::op_overhead);  // the gap: shorter than a hold
    }
    return step_result::finished();
  });
  auto k1 = std::make_shared<unsigned>(0);
  ex.set_program(1, [&, k1](unsigned) {
    if (*k1 == 1) {  // its second step, after CPU 0's (clock order, CPU 1 still near 0)
      {
        std::lock_guard<spinlock> g(lock);
        cpu1_taken = ex.now_ns();
        ex.charge(cost_kind::frame_free, 4);
      }
      cpu1_release = ex.now_ns();
    }
    return ++*k1 < 2 ? step_result::busy() : step_result::finished();
  });
  (void)ex.run();
  const std::uint64_t hold = cfg.costs.cost(cost_kind::frame_free) * 4;
  const std::uint64_t gap = cfg.costs.cost(cost_kind::op_overhead);
  ASSERT_GT(hold, gap);
  EXPECT_GE(cpu1_release - cpu1_taken, hold + (hold - gap))
      << "CPU 1's hold (taken at " << cpu1_taken << " ns) overlapped CPU 0's and ended as if alone";
}

// The contention figures: CPUs that meet on a named lock and a named line lose time to them,
// summed by name; unnamed objects are summed as such; nobody waits where nobody meets.
TEST(Deterministic, ContentionFiguresSumTheTimeLostOnEachNamedObject) {
  const run_config cfg = unjittered(4);
  deterministic_executor ex(cfg);
  spinlock named(ex);
  named.name("the test's hot lock");
  alignas(64) static std::uint64_t hot_line[8];
  alignas(64) static std::uint64_t plain_line[8];
  ex.name_shared(hot_line, "the test's hot line");
  for (unsigned c = 0; c < 4; ++c)
    ex.set_program(c, [&, n = 0u](unsigned) mutable {
      {
        std::lock_guard<spinlock> g(named);
        ex.charge(cost_kind::frame_free, 4);  // held a while: the other CPUs queue
      }
      ex.touch_line(hot_line, true);
      ex.touch_line(plain_line, true);
      return ++n < 10 ? step_result::busy() : step_result::finished();
    });
  const run_stats st = ex.run();
  const auto find = [&](const std::string& name) -> const contention_stat* {
    for (const contention_stat& c : st.contention)
      if (c.name == name) return &c;
    return nullptr;
  };
  const contention_stat* lock = find("the test's hot lock");
  ASSERT_NE(lock, nullptr);
  EXPECT_TRUE(lock->lock);
  EXPECT_EQ(lock->accesses, 40u);
  EXPECT_GT(lock->waits, 0u);
  EXPECT_GT(lock->delay_ns, lock->waits * cfg.costs.cost(cost_kind::lock_uncontended));
  EXPECT_GT(lock->hold_ns, 0u);
  const contention_stat* line = find("the test's hot line");
  ASSERT_NE(line, nullptr);
  EXPECT_FALSE(line->lock);
  EXPECT_GT(line->accesses, 0u);
  EXPECT_GE(line->delay_ns, line->accesses * cfg.costs.cost(cost_kind::cache_line_transfer));
  const contention_stat* unnamed = find("unnamed line");
  ASSERT_NE(unnamed, nullptr);
  EXPECT_GT(unnamed->accesses, 0u);
  EXPECT_EQ(find("unnamed lock"), nullptr);  // every lock taken was named
  for (std::size_t i = 1; i < st.contention.size(); ++i)
    EXPECT_GE(st.contention[i - 1].delay_ns, st.contention[i].delay_ns) << "largest first";
}

// Xen's tasklets share one tasklet_lock over every CPU's lists: a schedule takes it once and a
// run twice (dequeue; then is_running = 0). CPUs that each schedule their own tasklet still meet
// there, and pay the lock's line moving between them.
TEST(Deterministic, XensTaskletLockIsTakenToScheduleAndTwicePerRun) {
  for (unsigned cpus : {1u, 2u}) {
    const run_config cfg = unjittered(cpus);
    deterministic_executor ex(cfg);
    per_cpu<tasklet> own(cpus);
    for (unsigned c = 0; c < cpus; ++c)
      ex.tasklet_init(own[c], [] {});
    for (unsigned c = 0; c < cpus; ++c)
      ex.set_program(c, [&, n = 0u](unsigned cpu) mutable {
        ex.tasklet_schedule(own[cpu]);
        return ++n < 10 ? step_result::yield() : step_result::finished();
      });
    const run_stats st = ex.run();
    const contention_stat* lock = nullptr;
    for (const contention_stat& c : st.contention)
      if (c.name == "Xen's tasklet_lock (every CPU's tasklet lists)") lock = &c;
    ASSERT_NE(lock, nullptr) << cpus << " CPUs";
    EXPECT_TRUE(lock->lock);
    EXPECT_EQ(lock->accesses, 3u * 10u * cpus) << cpus << " CPUs";
    const std::uint64_t uncontended = lock->accesses * cfg.costs.cost(cost_kind::lock_uncontended);
    if (cpus == 1)
      EXPECT_EQ(lock->delay_ns, uncontended);  // one CPU: the lock's line never moves
    else
      EXPECT_GE(lock->delay_ns, uncontended + 10 * cfg.costs.cost(cost_kind::cache_line_transfer));
  }
}

TEST(Deterministic, ReadsOfACleanLineAreFree) {
  const run_config cfg = unjittered(8);
  deterministic_executor ex(cfg);
  alignas(64) static unsigned line[16];
  for (unsigned c = 0; c < 8; ++c)
    ex.set_program(c, [&](unsigned) {
      ex.touch_line(line, false);
      return step_result::finished();
    });
  const run_stats st = ex.run();
  for (unsigned c = 0; c < 8; ++c)
    EXPECT_EQ(st.cpu[c].clock_ns, cfg.costs.step_ns);
}

TEST(Deterministic, WaitUntilRunsActorsAndTimesOut) {
  deterministic_executor ex(run_config{.cpus = 2});
  std::atomic<bool> done{false};
  auto polls = std::make_shared<unsigned>(0);
  const actor_id dev = ex.add_actor({"engine", [&, polls] {
                                       if (++*polls == 5) done.store(true);
                                       return step_result::sleep_for(1000);
                                     }});
  bool first = false, second = true;
  std::uint64_t before = 0, after = 0;
  unsigned cpu1_steps_during_wait = 0;
  std::atomic<unsigned> cpu1_steps{0};
  ex.set_program(1, [&](unsigned) {
    cpu1_steps.fetch_add(1);
    return step_result::sleep_for(100);
  });
  ex.set_program(0, sequence({[&] {
                   const unsigned c1 = cpu1_steps.load();
                   first = ex.wait_until([&] { return done.load(); }, 1000000);
                   cpu1_steps_during_wait = cpu1_steps.load() - c1;
                   before = ex.now_ns();
                   second = ex.wait_until([] { return false; }, 5000);
                   after = ex.now_ns();
                   EXPECT_EQ(ex.context(), exec_context::process);
                   return true;
                 }}));
  ex.set_program(1, {});
  run_config unused;
  (void)unused;
  const run_stats st = ex.run();
  EXPECT_TRUE(first);
  EXPECT_FALSE(second);
  EXPECT_GE(after - before, 5000u);
  EXPECT_EQ(cpu1_steps_during_wait, 0u) << "wait_until must not run other CPUs";
  EXPECT_GE(st.actor_steps[dev], 5u);
  EXPECT_GE(ex.actor_clock_ns(dev), 4000u);
}

TEST(Deterministic, IdleCpuWakesAtTheSendersTime) {
  deterministic_executor ex(run_config{.cpus = 2});
  tasklet t;
  std::uint64_t ran_at = 0, sent_at = 0;
  ex.tasklet_init(t, [&] { ran_at = ex.now_ns(); });
  ex.set_program(0, sequence({[&] {
                   ex.charge(cost_kind::op_overhead, 1000);  // 50 us
                   sent_at = ex.now_ns();
                   return ex.tasklet_schedule_on(t, 1);
                 }}));
  ex.run();
  EXPECT_GE(ran_at, sent_at);
}

// A work item is non-reentrant: queued while it runs, it runs again after, on the CPU running it
// (Linux since 3.7). The deterministic executor runs CPU 0's 10 us work item ahead of CPU 1's
// clock, so when CPU 1 queues it at 1 us the item is still running in CPU 1's time: the second
// run must be CPU 0's, after the first. Queued on CPU 1 instead, both runs overlapped in
// virtual time and linux-global-work's consumer flushed one page at a time on every CPU.
TEST(Deterministic, WorkQueuedWhileItRunsInTheCallersTimeRunsAgainOnItsCpuAfterwards) {
  deterministic_executor ex(run_config{.cpus = 2, .seed = 5});
  work_item w;
  struct run {
    unsigned cpu;
    std::uint64_t start, end;
  };
  std::vector<run> runs;
  ex.work_init(w, [&] {
    const std::uint64_t start = ex.now_ns();
    ex.charge(cost_kind::op_overhead, 200);  // 10 us
    runs.push_back({ex.current_cpu(), start, ex.now_ns()});
  });
  std::uint64_t queued_at = 0;
  bool queued = false;
  ex.set_program(0, sequence({[&] { return ex.schedule_work(w); }}));
  auto step = std::make_shared<unsigned>(0);
  ex.set_program(1, [&, step](unsigned) {
    if ((*step)++ == 0) return step_result::sleep_for(1000);
    queued_at = ex.now_ns();
    queued = ex.schedule_work(w);
    return step_result::finished();
  });
  EXPECT_EQ(ex.run().reason, stop_reason::quiescent);
  ASSERT_TRUE(queued);
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[0].cpu, 0u);
  EXPECT_LT(queued_at, runs[0].end) << "the test needs CPU 1 to queue it during the first run";
  EXPECT_EQ(runs[1].cpu, 0u) << "queued behind its own run, on the CPU running it";
  EXPECT_GE(runs[1].start, runs[0].end);
}

TEST(Deterministic, StepAndTimeLimitsStopTheRun) {
  {
    deterministic_executor ex(run_config{.cpus = 1, .max_steps = 100});
    ex.set_program(0, [](unsigned) { return step_result::busy(); });
    const run_stats st = ex.run();
    EXPECT_EQ(st.reason, stop_reason::step_limit);
    EXPECT_EQ(st.steps, 100u);
  }
  {
    deterministic_executor ex(run_config{.cpus = 1, .virtual_time_limit_ns = 100000});
    ex.set_program(0, [](unsigned) { return step_result::sleep_for(1000); });
    const run_stats st = ex.run();
    EXPECT_EQ(st.reason, stop_reason::time_limit);
    EXPECT_LE(st.elapsed_ns, 100000u + 2000u);
    EXPECT_FALSE(st.programs_finished);
  }
}

TEST(Deterministic, ScalesTo256Cpus) {
  deterministic_executor ex(run_config{.cpus = 256, .seed = 9});
  per_cpu<tasklet> t(256);
  std::vector<unsigned> runs(256, 0);
  for (unsigned c = 0; c < 256; ++c)
    ex.tasklet_init(t[c], [&, c] {
      ++runs[ex.current_cpu()];
      (void)c;
    });
  for (unsigned c = 0; c < 256; ++c)
    ex.set_program(c, sequence({[&] { return ex.tasklet_schedule(t[ex.current_cpu()]); }}));
  const run_stats st = ex.run();
  EXPECT_EQ(st.reason, stop_reason::quiescent);
  for (unsigned c = 0; c < 256; ++c)
    EXPECT_EQ(runs[c], 1u);
}

TEST(Deterministic, ExecutorIsThePlatformForLibraryCode) {
  deterministic_executor ex(run_config{.cpus = 3});
  platform& p = ex;
  EXPECT_EQ(p.cpu_count(), 3u);
  std::vector<unsigned> seen;
  for (unsigned c = 0; c < 3; ++c)
    ex.set_program(c, [&](unsigned) {
      seen.push_back(p.current_cpu());
      p.charge(cost_kind::pte_write, 10);
      return step_result::finished();
    });
  const run_stats st = ex.run();
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(seen, (std::vector<unsigned>{0, 1, 2}));
  for (unsigned c = 0; c < 3; ++c)
    EXPECT_GE(st.cpu[c].clock_ns, 50u);
}

// ---- per_cpu ----

TEST(PerCpu, SlotsAreCacheLineAlignedAndIndependent) {
  per_cpu<unsigned> v(8, [](unsigned c) { return c * 10; });
  for (unsigned c = 0; c < 8; ++c) {
    EXPECT_EQ(v[c], c * 10);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(&v[c]) % cache_line_size, 0u);
  }
  for (unsigned c = 1; c < 8; ++c)
    EXPECT_GE(reinterpret_cast<std::uintptr_t>(&v[c]) - reinterpret_cast<std::uintptr_t>(&v[c - 1]),
              cache_line_size);
}

TEST(CpuMask, FirstNextCount) {
  cpu_mask m = cpu_mask::first(5);
  EXPECT_EQ(m.count(), 5u);
  m.reset(2);
  EXPECT_EQ(m.next(2), 3u);
  EXPECT_EQ(m.next(5), limits::max_cpus);
  EXPECT_FALSE(m.test(300));
}

}  // namespace
}  // namespace ptreclaim::runtime::test
