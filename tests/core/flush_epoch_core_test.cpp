// The freestanding flush-epoch core (include/ptreclaim/core) on a tiny test platform
// (test_platform.hpp): frames leave only after an invalidation submitted after their unlink and
// covering them completed (an independent checker on the fake hardware's log), the per-CPU
// bounds hold (back-pressure invalidates and waits), a dead CPU's frames move to a running CPU,
// nothing is lost at drain, and the same on real threads (run under TSan by the tsan preset).
#include "ptreclaim/core/flush_epoch_core.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "core/rig.hpp"

namespace ptreclaim::core {
namespace {

using testing::high;
using testing::low;
using testing::rig;
using testing::small_config;
using testing::test_platform;
using frame = test_platform::frame;

TEST(CoreInit, RefusesBadBoundsAndSmallOrMisalignedStorage) {
  test_platform p(1, 16);
  flush_epoch_core<test_platform> core(p);
  alignas(64) static unsigned char storage[1 << 16];
  core_config c = small_config();
  c.frames_per_cpu = 0;
  EXPECT_EQ(core.init(c, storage, sizeof storage), init_status::bad_config);
  c = small_config();
  c.batch_frames = c.frames_per_cpu + 1;
  EXPECT_EQ(core.init(c, storage, sizeof storage), init_status::bad_config);
  c = small_config();
  const std::size_t need = flush_epoch_core<test_platform>::storage_bytes(c);
  ASSERT_LE(need, sizeof storage);
  EXPECT_EQ(core.init(c, storage, need - 1), init_status::storage_small);
  EXPECT_EQ(core.init(c, storage + 8, need), init_status::storage_align);
  EXPECT_EQ(core.init(c, storage, need), init_status::ok);
  EXPECT_EQ(core.watermark(), 32u);  // capped at half the ring
}

// The rule, first half: a full invalidation numbered before the unlink (at the stamp) does not
// free the frame, however completed; the next one does.
TEST(CoreSafety, AFullInvalidationNumberedBeforeTheUnlinkDoesNotFree) {
  rig<> r(small_config());
  const epoch_t before = r.p.invalidate(0, iova_range::whole_domain());  // another CPU's
  r.retire(0, 0, low, 3);  // one batch (one retire), closed at once: stamp 1
  r.p.complete_all(0);
  ASSERT_EQ(r.p.completed_full(0), before);
  r.fire(0);                  // polls: completed_full = 1, not after the stamps
  r.caller_flush(0, 1, low);  // another domain's flush frees nothing here
  r.p.complete_all(1);
  r.fire(0);
  EXPECT_EQ(r.core.pending(), 3u);
  EXPECT_EQ(r.p.outstanding(), 3u);
  const epoch_t after = r.p.invalidate(0, iova_range::whole_domain());
  r.fire(0);  // in flight: still nothing
  EXPECT_EQ(r.core.pending(), 3u);
  r.p.complete(0, after);
  r.fire(0);
  EXPECT_EQ(r.core.pending(), 0u);
  EXPECT_EQ(r.p.outstanding(), 0u);
  EXPECT_EQ(r.p.violations(), std::vector<std::string>{});
}

// The rule, second half: a caller's ranged invalidation frees the batches whose range it
// contains, and only those.
TEST(CoreSafety, ACallerFlushFreesOnlyTheBatchesInsideItsRange) {
  rig<> r(small_config());
  r.retire(0, 0, low);
  r.retire(0, 0, high);
  const epoch_t e = r.caller_flush(0, 0, low);
  EXPECT_EQ(r.core.pending(), 2u);  // not completed yet
  r.p.complete(0, e);
  r.caller_flush(0, 1, low);  // any later call on CPU 0 reaps; so does the timer
  r.fire(0);
  EXPECT_TRUE(r.p.freed(0));
  EXPECT_FALSE(r.p.freed(1));
  EXPECT_EQ(r.core.stats(0).rides.get(), 1u);
  const epoch_t e2 = r.caller_flush(0, 0, high);
  r.p.complete(0, e2);
  r.fire(0);
  EXPECT_TRUE(r.p.freed(1));
  EXPECT_EQ(r.core.pending(), 0u);
  EXPECT_EQ(r.p.violations(), std::vector<std::string>{});
}

// An open batch takes later frames; its stamp is read when it closes, after their unlinks.
TEST(CoreSafety, TheStampIsTakenWhenTheBatchClosesNotWhenItOpens) {
  core_config c = small_config();
  c.batch_frames = 4;
  rig<> r(c);
  r.retire(0, 0, low);                                              // opens a batch
  const epoch_t e = r.p.invalidate(0, iova_range::whole_domain());  // another CPU's
  r.retire(0, 0, low);  // joins the open batch, unlinked after e was numbered
  r.retire(0, 1, low);  // another domain: closes the batch, stamp = e
  r.p.complete(0, e);
  r.fire(0);
  EXPECT_FALSE(r.p.freed(0));  // same batch as frame 1, which e does not cover
  EXPECT_FALSE(r.p.freed(1));
  EXPECT_EQ(r.core.stats(0).stamps.get(), 1u);
  ASSERT_TRUE(r.core.drain());
  EXPECT_EQ(r.core.pending(), 0u);
  EXPECT_EQ(r.p.violations(), std::vector<std::string>{});
}

// A caller's flush after before_caller_invalidation covers the open batch it closed.
TEST(CoreSafety, TheCallersFlushRidesOnItsOwnRetire) {
  core_config c = small_config();
  c.batch_frames = 8;
  rig<> r(c);
  r.retire(0, 0, low, 2);
  const std::uint64_t invalidations = r.p.invalidations();
  const epoch_t e = r.caller_flush(0, 0, low);
  r.p.complete(0, e);
  r.caller_flush(0, 1, low);  // reaps
  EXPECT_EQ(r.core.pending(), 0u);
  EXPECT_EQ(r.p.invalidations(), invalidations + 2);  // the callers' own, nothing extra
  EXPECT_EQ(r.core.stats(0).requests.get(), 0u);
  EXPECT_EQ(r.p.violations(), std::vector<std::string>{});
}

// Many CPUs waiting on one domain: within poll_spacing_ns of another CPU's poll a timer reads the
// published progress instead of polling; its own earlier poll never holds a CPU back; 0 = always.
TEST(CoreTimer, ATimerLeavesTheHardwarePollToACpuThatPolledTheDomainJustBefore) {
  for (const std::uint64_t spacing : {std::uint64_t{1000}, std::uint64_t{0}}) {
    SCOPED_TRACE("poll_spacing_ns " + std::to_string(spacing));
    core_config c = small_config();
    c.flush_age_ns = 1000;
    c.poll_ns = 100;
    c.poll_spacing_ns = spacing;
    rig<> r(c);
    r.retire(0, 0, low);
    r.retire(1, 0, low);
    r.p.advance(1000);
    ASSERT_TRUE(r.tick(0));  // asks for the flush, polls
    const std::uint64_t after_first = r.p.polls();
    EXPECT_GT(after_first, 0u);
    r.p.advance(10);
    ASSERT_TRUE(r.tick(1));  // 10 ns after CPU 0's poll
    if (spacing != 0) {
      EXPECT_EQ(r.p.polls(), after_first);  // read what CPU 0's poll published
    } else {
      EXPECT_GT(r.p.polls(), after_first);
    }
    EXPECT_EQ(r.core.pending(), 2u);  // nothing completed: both still wait
    r.p.advance(100);
    const std::uint64_t before_own = r.p.polls();
    ASSERT_TRUE(r.tick(0));  // CPU 0 polled last: its own poll does not hold it back
    EXPECT_GT(r.p.polls(), before_own);
    // Completions from now on: the timers poll (or read each other's polls) until all is free.
    r.p.set_complete_on_poll(true);
    for (int round = 0; round < 20 && r.core.pending() != 0; ++round) {
      r.p.advance(100);
      r.tick(0);
      r.tick(1);
    }
    EXPECT_EQ(r.core.pending(), 0u);
    EXPECT_EQ(r.p.violations(), std::vector<std::string>{});
  }
}

// Without callers that flush, the age timer asks for a full invalidation and polls until it
// completes.
TEST(CoreTimer, TheAgeTimerAsksForAFullInvalidationAndPolls) {
  core_config c = small_config();
  c.flush_age_ns = 1000;
  c.poll_ns = 100;
  rig<> r(c);
  r.retire(0, 0, low);
  ASSERT_TRUE(r.p.timer_armed(0));
  EXPECT_FALSE(r.tick(0));  // not due
  r.p.advance(1000);
  EXPECT_TRUE(r.tick(0));
  EXPECT_EQ(r.core.stats(0).requests.get(), 1u);
  ASSERT_TRUE(r.p.timer_armed(0));
  EXPECT_EQ(r.p.timer_at(0), r.p.now_ns() + 100);  // polls soon
  r.p.set_complete_on_poll(true);
  r.p.advance(100);
  EXPECT_TRUE(r.tick(0));
  EXPECT_EQ(r.core.pending(), 0u);
  EXPECT_EQ(r.p.violations(), std::vector<std::string>{});
}

// Two CPUs whose batches age together ask for one invalidation: the second rides on the first's.
TEST(CoreTimer, OneRequestInFlightPerDomainForAllCpus) {
  core_config c = small_config();
  c.flush_age_ns = 1000;
  rig<> r(c);
  r.retire(0, 0, low);
  r.retire(1, 0, high);
  r.p.advance(1000);
  EXPECT_TRUE(r.tick(0));
  EXPECT_TRUE(r.tick(1));
  EXPECT_EQ(r.core.total().requests, 1u);
  EXPECT_EQ(r.p.invalidations(), 1u);
  r.p.complete_all(0);
  r.fire(0);
  r.fire(1);
  EXPECT_EQ(r.core.pending(), 0u);
  EXPECT_EQ(r.p.violations(), std::vector<std::string>{});
}

// Over the watermark with a requested flush still in flight (an asynchronous backend), a retire
// neither closes the open batch nor asks again: the batch closes at batch_frames, so stamps stay
// one per batch_frames frames (not one per retire) and the batch ring does not fill into
// back-pressure. Once the request completed, the next retire closes and asks again.
TEST(CoreTimer, OverTheWatermarkAFlushInFlightKeepsTheBatchOpen) {
  core_config c = small_config();
  c.watermark = 8;
  c.batch_frames = 16;
  rig<> r(c);
  r.p.set_complete_on_poll(false);
  for (int i = 0; i < 40; ++i)
    EXPECT_EQ(r.retire(0, 0, low), retire_status::queued);
  // The 9th retire closes [1, 9] and asks; [10, 25] closes at batch_frames; [26, 40] is open.
  EXPECT_EQ(r.core.total().stamps, 2u);
  EXPECT_EQ(r.core.total().requests, 1u);
  EXPECT_EQ(r.core.stats(0).backpressure.get(), 0u);
  EXPECT_EQ(r.core.held(0), 40u);
  EXPECT_TRUE(r.p.timer_armed(0));
  r.p.complete_all(0);
  r.retire(0, 0, low);  // frees [1, 9]; still over the watermark: closes [26, 41] and asks
  EXPECT_EQ(r.core.held(0), 32u);
  EXPECT_EQ(r.core.total().stamps, 3u);
  EXPECT_EQ(r.core.total().requests, 2u);
  r.p.complete_all(0);
  r.fire(0);
  EXPECT_EQ(r.core.pending(), 0u);
  EXPECT_EQ(r.p.outstanding(), 0u);
  EXPECT_EQ(r.p.violations(), std::vector<std::string>{});
}

// Behind a synchronous flush running on another CPU (Linux SVA's iommu_sva_lock held), neither
// a retire over the watermark nor the timer asks for a flush (it would only queue behind the
// running one); the timer closes the batch, so a flush anyone starts later covers it, and polls
// again. Once the lock is free, the timer asks.
TEST(CoreTimer, BehindABusySynchronousFlushTheTimerClosesAndAsksOnlyOnceItIsFree) {
  core_config c = small_config();
  c.watermark = 8;
  c.batch_frames = 16;
  rig<> r(c);
  r.p.set_complete_on_poll(false);
  r.p.set_flush_busy(true);
  for (int i = 0; i < 9; ++i)
    EXPECT_EQ(r.retire(0, 0, low), retire_status::queued);
  EXPECT_EQ(r.core.total().requests, 0u) << "over the watermark, but the flush path is busy";
  EXPECT_EQ(r.core.total().stamps, 0u) << "the batch stays open";
  EXPECT_TRUE(r.p.timer_armed(0)) << "polls soon";
  r.fire(0);
  EXPECT_EQ(r.core.total().requests, 0u);
  EXPECT_EQ(r.core.total().stamps, 1u) << "closed: a later flush by anyone covers it";
  EXPECT_TRUE(r.p.timer_armed(0));
  r.p.set_flush_busy(false);
  r.fire(0);
  EXPECT_EQ(r.core.total().requests, 1u);
  EXPECT_EQ(r.p.invalidations(), 1u);
  r.p.complete_all(0);
  r.fire(0);
  EXPECT_EQ(r.core.pending(), 0u);
  EXPECT_EQ(r.p.violations(), std::vector<std::string>{});
}

// Bounds: a full frame ring invalidates, waits and frees before it takes more; the ring never
// holds more than frames_per_cpu.
TEST(CoreBounds, AFullFrameRingInvalidatesAndWaits) {
  core_config c = small_config();
  c.frames_per_cpu = 4;
  c.watermark = 100;  // capped at 2: asks early (not waited for), never completed here
  rig<> r(c);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(r.retire(0, 0, low), retire_status::queued);
    EXPECT_LE(r.core.held(0), 4u);
  }
  EXPECT_EQ(r.core.held(0), 4u);
  EXPECT_EQ(r.core.stats(0).backpressure.get(), 0u);
  EXPECT_EQ(r.retire(0, 0, low), retire_status::queued);  // full: flush_all, then taken
  EXPECT_EQ(r.core.stats(0).backpressure.get(), 1u);
  EXPECT_EQ(r.core.held(0), 1u);
  EXPECT_EQ(r.p.outstanding(), 1u);
  EXPECT_LE(r.core.stats(0).peak_frames.get(), 4u);
  EXPECT_EQ(r.p.violations(), std::vector<std::string>{});
}

TEST(CoreBounds, AFullBatchRingInvalidatesAndWaits) {
  core_config c = small_config();
  c.batches_per_cpu = 2;
  rig<> r(c);
  r.retire(0, 0, low);
  r.retire(0, 1, low);
  EXPECT_EQ(r.core.stats(0).backpressure.get(), 0u);
  r.retire(0, 2, low);  // a third batch: both domains invalidated and waited for
  EXPECT_EQ(r.core.stats(0).backpressure.get(), 1u);
  EXPECT_TRUE(r.p.freed(0));
  EXPECT_TRUE(r.p.freed(1));
  EXPECT_EQ(r.core.held(0), 1u);
  EXPECT_EQ(r.p.violations(), std::vector<std::string>{});
}

TEST(CoreBounds, AGatherLargerThanTheRingIsFreedInline) {
  core_config c = small_config();
  c.frames_per_cpu = 4;
  rig<> r(c);
  EXPECT_EQ(r.retire(0, 0, low, 10), retire_status::inline_freed);
  EXPECT_EQ(r.core.pending(), 0u);
  EXPECT_EQ(r.p.outstanding(), 0u);
  EXPECT_EQ(r.core.stats(0).inline_frames.get(), 10u);
  EXPECT_EQ(r.p.violations(), std::vector<std::string>{});
}

TEST(CoreBounds, WhenTheBackendFailsAFullRingRefusesAndFreesNothing) {
  core_config c = small_config();
  c.frames_per_cpu = 2;
  rig<> r(c);
  r.p.set_complete_on_wait(false);  // wait() times out
  r.retire(0, 0, low, 2);
  EXPECT_EQ(r.retire(0, 0, low), retire_status::refused);
  EXPECT_EQ(r.core.held(0), 2u);
  EXPECT_EQ(r.core.stats(0).refused.get(), 1u);
  EXPECT_EQ(r.p.frees(), 0u);
  r.p.set_complete_on_wait(true);
  ASSERT_TRUE(r.core.drain());
  EXPECT_EQ(r.p.outstanding(), 0u);
  EXPECT_EQ(r.p.violations(), std::vector<std::string>{});
}

// Hotplug: CPU_DEAD moves the dead CPU's batches, with their stamps, to the running CPU, whose
// timer then frees them; the dead CPU's open batch is stamped at the move, after its unlinks.
TEST(CoreHotplug, ADeadCpusFramesMoveToTheRunningCpu) {
  core_config c = small_config();
  c.batch_frames = 4;
  rig<> r(c);
  r.retire(1, 0, low);
  const epoch_t early = r.p.invalidate(0, iova_range::whole_domain());
  r.retire(1, 0, low);  // joins CPU 1's open batch after `early` was numbered
  r.p.complete(0, early);
  test_platform::set_cpu(0);
  r.p.kill_timer(1);  // CPU_DOWN_PREPARE (the platform's job)
  EXPECT_EQ(r.core.cpu_dead(1), 2u);
  EXPECT_EQ(r.core.held(1), 0u);
  EXPECT_EQ(r.core.held(0), 2u);
  EXPECT_EQ(r.core.stats(0).adopted.get(), 2u);
  EXPECT_TRUE(r.p.timer_armed(0));
  EXPECT_TRUE(r.tick(0));  // `early` completed, but it was numbered before the stamp
  EXPECT_EQ(r.core.pending(), 2u);
  r.p.complete_all(0);
  const epoch_t later = r.p.invalidate(0, iova_range::whole_domain());
  r.p.complete(0, later);
  r.fire(0);
  EXPECT_EQ(r.core.pending(), 0u);
  EXPECT_EQ(r.p.violations(), std::vector<std::string>{});
  test_platform::set_cpu(1);
  r.core.cpu_up_prepare(1);  // back: an empty ring
  EXPECT_EQ(r.retire(1, 0, low), retire_status::queued);
  ASSERT_TRUE(r.core.drain());
  EXPECT_EQ(r.p.outstanding(), 0u);
}

TEST(CoreHotplug, AdoptingMoreThanFitsFlushesTheRunningCpusRing) {
  core_config c = small_config();
  c.frames_per_cpu = 4;
  c.watermark = 100;
  rig<> r(c);
  r.retire(0, 0, low, 3);
  r.retire(1, 1, low, 3);
  test_platform::set_cpu(0);
  EXPECT_EQ(r.core.cpu_dead(1), 3u);
  EXPECT_EQ(r.core.stats(0).backpressure.get(), 1u);
  EXPECT_EQ(r.core.held(0), 3u);
  EXPECT_EQ(r.p.outstanding(), 3u);
  ASSERT_TRUE(r.core.drain());
  EXPECT_EQ(r.p.outstanding(), 0u);
  EXPECT_EQ(r.p.violations(), std::vector<std::string>{});
}

TEST(CoreHotplug, AFailedOfflineOnlyArmsTheTimerOfTheCpuThatStayedUp) {
  rig<> r(small_config());
  r.retire(1, 0, low);
  const std::uint64_t held = r.core.held(1);
  test_platform::set_cpu(0);
  r.p.kill_timer(1);
  r.core.cpu_down_failed(1);
  EXPECT_TRUE(r.p.timer_armed(1));
  EXPECT_EQ(r.core.held(1), held);
  EXPECT_EQ(r.core.held(0), 0u);
  r.p.complete_all(0);
  EXPECT_TRUE(r.tick(1));  // runs on CPU 1, as its owner
}

// Nothing lost: a seeded random mix of retires, callers' flushes, completions in any order,
// timers and offlines, then drain: every frame freed exactly once, safely.
TEST(CoreDrain, NothingIsLostAtDrain) {
  for (unsigned seed = 1; seed <= 20; ++seed) {
    core_config c = small_config();
    c.frames_per_cpu = 8;
    c.batches_per_cpu = 4;
    c.batch_frames = 1 + seed % 4;
    c.flush_age_ns = seed % 2 ? 500 : 0;
    c.watermark = 1 + seed % 5;
    rig<true> r(c);
    std::mt19937 rng(seed);
    bool dead[4] = {};
    std::uint32_t retired = 0;
    for (int step = 0; step < 2000; ++step) {
      const unsigned cpu = rng() % 4;
      if (dead[cpu]) continue;
      const domain_id d = rng() % 3;
      const iova_range range = rng() % 2 ? low : high;
      switch (rng() % 8) {
        case 0:
        case 1:
        case 2: {
          const std::uint32_t n = 1 + rng() % 3 + (rng() % 50 == 0 ? 10 : 0);
          if (r.retire(cpu, d, range, n) != retire_status::refused) retired += n;
          break;
        }
        case 3:
          r.caller_flush(cpu, d, rng() % 4 ? range : iova_range::whole_domain());
          break;
        case 4: {
          const epoch_t started = r.p.started(d);
          if (started != 0) r.p.complete(d, 1 + rng() % started);
          break;
        }
        case 5:
          r.p.advance(rng() % 300);
          r.tick(cpu);
          break;
        case 6:
          if (rng() % 20 == 0 && cpu != 0) {  // CPU cpu goes down; CPU 0 adopts
            r.p.kill_timer(cpu);
            dead[cpu] = true;
            test_platform::set_cpu(0);
            r.core.cpu_dead(cpu);
          } else if (rng() % 10 == 0) {  // a dead CPU comes back
            for (unsigned o = 1; o < 4; ++o) {
              if (!dead[o]) continue;
              test_platform::set_cpu(0);
              r.core.cpu_up_prepare(o);
              dead[o] = false;
              break;
            }
          }
          break;
        default:
          r.tick(cpu);
          break;
      }
    }
    ASSERT_TRUE(r.core.drain()) << "seed " << seed;
    EXPECT_EQ(r.core.pending(), 0u) << "seed " << seed;
    EXPECT_EQ(r.p.outstanding(), 0u) << "seed " << seed;
    EXPECT_EQ(r.p.frees(), retired) << "seed " << seed;
    EXPECT_EQ(r.p.violations(), std::vector<std::string>{}) << "seed " << seed;
    for (unsigned cpu = 0; cpu < 4; ++cpu)
      EXPECT_LE(r.core.stats(cpu).peak_frames.get(), c.frames_per_cpu) << "seed " << seed;
    std::uint64_t sampled = 0;
    for (unsigned cpu = 0; cpu < 4; ++cpu)
      sampled += r.core.latency(cpu).samples();
    EXPECT_EQ(sampled, retired - r.core.total().inline_frames) << "seed " << seed;
  }
}

// Real threads: three CPUs retire and run their own timers, a hardware thread completes
// invalidations, CPU 2 goes down halfway and CPU 0 adopts its ring. For TSan (tsan preset).
TEST(CoreThreaded, CpusTimersHardwareAndAnOffline) {
  core_config c = small_config();
  c.frames_per_cpu = 32;
  c.batches_per_cpu = 8;
  c.batch_frames = 2;
  c.flush_age_ns = 200;
  c.poll_ns = 50;
  c.watermark = 8;
  rig<> r(c);
  constexpr unsigned cpus = 3;
  constexpr std::uint32_t per_cpu = 3000;
  std::atomic<frame> next{0};
  std::atomic<bool> cpu2_parked{false};
  std::atomic<bool> stop_hw{false};
  std::atomic<std::uint32_t> refused{0};
  std::thread hw([&] {
    std::mt19937 rng(7);
    while (!stop_hw.load(std::memory_order_relaxed)) {
      const domain_id d = rng() % 2;
      const epoch_t started = r.p.started(d);
      if (started != 0) r.p.complete(d, 1 + rng() % started);
      r.p.advance(10);
      std::this_thread::yield();
    }
  });
  auto cpu_main = [&](unsigned cpu) {
    test_platform::set_cpu(cpu);
    std::mt19937 rng(cpu + 1);
    const std::uint32_t until = cpu == 2 ? per_cpu / 2 : per_cpu;
    for (std::uint32_t i = 0; i < until; ++i) {
      const domain_id d = rng() % 2;
      const iova_range range = rng() % 2 ? low : high;
      const std::uint32_t n = 1 + rng() % 2;
      const frame first = next.fetch_add(n);
      std::vector<frame> fs(n);
      for (std::uint32_t k = 0; k < n; ++k)
        fs[k] = first + k;
      r.p.unlink(d, range, first, n);
      if (r.core.retire(d, range, fs.data(), n) == retire_status::refused) {
        r.p.unretire(first, n);
        refused.fetch_add(n);
      }
      if (rng() % 4 == 0) {
        r.core.before_caller_invalidation(d);
        const epoch_t e = r.p.invalidate(d, range);
        r.core.note_caller_invalidation(d, range, e);
      }
      if (r.p.take_due_timer(cpu)) r.core.on_timer(cpu);
      (void)r.core.stats(0).freed.get();  // statistics are readable from anywhere
    }
    if (cpu == 2) {
      r.p.kill_timer(2);  // CPU_DOWN_PREPARE; then it parks
      cpu2_parked.store(true, std::memory_order_release);
      return;
    }
    if (cpu == 0) {
      while (!cpu2_parked.load(std::memory_order_acquire))
        std::this_thread::yield();
      r.core.cpu_dead(2);  // on CPU 0, after CPU 2's last step ([core-4])
    }
    for (int spin = 0; spin < 2000 && r.core.held(cpu) != 0; ++spin) {
      if (r.p.take_due_timer(cpu)) r.core.on_timer(cpu);
      std::this_thread::yield();
    }
  };
  std::vector<std::thread> threads;
  for (unsigned cpu = 0; cpu < cpus; ++cpu)
    threads.emplace_back(cpu_main, cpu);
  for (std::thread& t : threads)
    t.join();
  stop_hw.store(true);
  hw.join();
  EXPECT_EQ(r.core.held(2), 0u);
  ASSERT_TRUE(r.core.drain());
  EXPECT_EQ(r.core.pending(), 0u);
  EXPECT_EQ(r.p.outstanding(), 0u);
  EXPECT_EQ(r.p.frees() + refused.load(), next.load());
  EXPECT_EQ(r.p.violations(), std::vector<std::string>{});
  EXPECT_GT(r.core.total().timer_runs, 0u);
}

}  // namespace
}  // namespace ptreclaim::core
