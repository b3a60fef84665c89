// The drivers' queue lock (iommu/system.hpp, "The queue lock"): a synchronous VT-d flush holds
// it while it spins for its wait, dropping it once per iteration (in closed form: the spinners'
// round, queue_lock.hpp); AMD drops it once the COMPLETION_WAIT is written. In the deterministic
// executor the holds and waits are virtual time; in the threaded one the lock is real.
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "ptreclaim/iommu/system.hpp"
#include "ptreclaim/mem/frame_pool.hpp"
#include "ptreclaim/pt/table.hpp"
#include "ptreclaim/runtime/deterministic_executor.hpp"
#include "ptreclaim/runtime/threaded_executor.hpp"

namespace ptreclaim::iommu {
namespace {

constexpr std::uint64_t timeout_ns = 1'000'000'000;

// One domain on one unit, and `cpus` CPUs each doing `flushes` synchronous flushes of it.
struct rig {
  explicit rig(runtime::executor& ex, const unit_config& uc, system_config sc = {})
      : pool(mem::pool_config{.capacity_frames = 256}, ex), sys(pool, std::move(sc), ex) {
    sys.add_unit(uc);
    pt::domain_config dc{.domain = 1};
    auto t = pt::make_table(pt::format_kind::vtd_ss_4, dc, pool);
    PTR_ASSERT(t.ok());
    table = std::move(*t);
    auto d = sys.create_domain({1, &table->format(), table->root(), dc.leaf_levels});
    PTR_ASSERT(d.ok());
    dom = *d;
    PTR_ASSERT(sys.attach(1, 0, *dom, 1).ok());
  }
  Status flush() { return sys.flush_sync(*dom, {0, 4095, true}, timeout_ns); }
  mem::frame_pool pool;
  system sys;
  std::unique_ptr<pt::table> table;
  domain* dom = nullptr;
};

queue_lock_stats run_sync_flushes(unsigned cpus, unsigned flushes, const unit_config& uc) {
  runtime::run_config rc;
  rc.cpus = cpus;
  rc.seed = 3;
  runtime::deterministic_executor ex(rc);
  rig r(ex, uc);
  for (unsigned c = 0; c < cpus; ++c) {
    auto left = std::make_shared<unsigned>(flushes);
    ex.set_program(c, [&r, left](unsigned) {
      EXPECT_TRUE(r.flush().ok());
      return --*left == 0 ? runtime::step_result::finished() : runtime::step_result::busy();
    });
  }
  EXPECT_EQ(ex.run().reason, runtime::stop_reason::quiescent);
  return r.sys.queue_lock_stats_of(0);
}

double mean_wait(const queue_lock_stats& s) {
  return static_cast<double>(s.wait_ns) / static_cast<double>(s.acquisitions);
}

// The closed form's two figures, from the driver's times (poll 200 ns, relax 40 ns).
TEST(QueueLockClosedForm, RoundAndQueueWaitFollowFromPollAndRelax) {
  const driver_config d;  // 200 / 40
  EXPECT_EQ(spin_period_ns(1, d), 240u) << "alone: its own read and cpu_relax";
  EXPECT_EQ(spin_period_ns(2, d), 400u) << "two keep the lock busy: a turn each";
  EXPECT_EQ(spin_period_ns(64, d), 64u * 200);
  EXPECT_EQ(spin_queue_wait_ns(0, d), 0u);
  EXPECT_EQ(spin_queue_wait_ns(1, d), 200u * 200 / (2 * 240)) << "held 5/6 of the time";
  EXPECT_EQ(spin_queue_wait_ns(2, d), 200u + 100) << "the holder's half turn and one queued";
  EXPECT_EQ(spin_queue_wait_ns(64, d), 63u * 200 + 100);
  driver_config slow_relax = d;
  slow_relax.relax_ns = 1000;  // 3 spinners want 600 ns of every 1200: not saturated
  EXPECT_EQ(spin_queue_wait_ns(3, slow_relax), 600u * 200 / (2 * 1200));
  EXPECT_EQ(spin_period_ns(3, slow_relax), 1200u);
}

// The spin record counts the intervals covering an instant, open ones included, and forgets
// an interval only when spin_capacity newer ones began.
TEST(QueueLockClosedForm, SpinnersAtCountsCoveringIntervals) {
  runtime::run_config rc;
  rc.cpus = 1;
  runtime::deterministic_executor ex(rc);
  queue_lock q(ex);
  const driver_config d;
  std::uint64_t a = 0, b = 0;
  ex.set_program(0, [&](unsigned) {
    a = q.begin_spin();  // [t0, t0 + 1000)
    const std::uint64_t t0 = ex.now_ns();
    (void)ex.wait_until([] { return false; }, 500);
    b = q.begin_spin();  // [t0 + 500, t0 + 2000)
    EXPECT_EQ(q.spinners_at(t0 + 600), 2u) << "both open";
    (void)ex.wait_until([] { return false; }, 500);
    q.end_spin(a, d);
    (void)ex.wait_until([] { return false; }, 1000);
    q.end_spin(b, d);
    EXPECT_EQ(q.spinners_at(t0 + 200), 1u);
    EXPECT_EQ(q.spinners_at(t0 + 700), 2u);
    EXPECT_EQ(q.spinners_at(t0 + 1500), 1u);
    EXPECT_EQ(q.spinners_at(t0 + 2000), 0u) << "half-open";
    for (unsigned i = 0; i < queue_lock::spin_capacity; ++i)
      q.end_spin(q.begin_spin(), d);
    EXPECT_EQ(q.spinners_at(t0 + 700), 0u) << "forgotten after spin_capacity newer spins";
    return runtime::step_result::finished();
  });
  EXPECT_EQ(ex.run().reason, runtime::stop_reason::quiescent);
  // Turns held: a alone for 500 ns of its 1000 then with b; b's 1500 with whoever spun at its end.
  EXPECT_GT(q.stats().hold_ns, 0u);
}

// qi_submit_sync at scale: every CPU that waits keeps the lock but for its cpu_relax, so the
// more CPUs flush synchronously, the longer each acquisition waits.
TEST(QueueLock, VtdWaitPerAcquisitionGrowsWithCpusFlushingSynchronously) {
  const unit_config uc;  // VT-d driver, default latencies
  const queue_lock_stats one = run_sync_flushes(1, 20, uc);
  const queue_lock_stats four = run_sync_flushes(4, 20, uc);
  const queue_lock_stats sixteen = run_sync_flushes(16, 20, uc);
  // Taken to submit, and again for the read that sees the wait done; the turns in between are
  // held time (closed form), not acquisitions.
  EXPECT_EQ(one.acquisitions, 20u * 2);
  EXPECT_EQ(sixteen.acquisitions, 16u * 20 * 2);
  EXPECT_GT(one.hold_ns, 20u * uc.latency.inv_wait_ns / 2) << "held while it spins";
  EXPECT_LT(mean_wait(one), 2.0 * static_cast<double>(uc.driver.relax_ns + 200));
  EXPECT_GT(mean_wait(four), 2.0 * mean_wait(one));
  EXPECT_GT(mean_wait(sixteen), 2.0 * mean_wait(four));
  EXPECT_GT(sixteen.max_wait_ns, four.max_wait_ns);
}

// AMD (and Xen's VT-d driver) poll the completion without the lock: one acquisition per flush, held
// only while the commands are written.
TEST(QueueLock, AmdHoldsTheLockOnlyWhileWritingCommands) {
  unit_config uc;
  uc.driver.kind = queue_driver::unlocked_poll;
  const queue_lock_stats one = run_sync_flushes(1, 20, uc);
  EXPECT_EQ(one.acquisitions, 20u);
  // Each hold is what the cost model charges: the acquisition and two descriptors written.
  const runtime::cost_model costs;
  EXPECT_EQ(one.hold_ns, 20u * (costs.cost(cost_kind::lock_uncontended) +
                                2 * costs.cost(cost_kind::inv_submit)));
}

// A waiter that drops the lock each iteration lets another CPU submit while it waits; one that
// never drops it (relax_ns = 0: no gap) keeps the other CPU out for its whole wait.
TEST(QueueLock, ADroppingWaiterLetsAnotherCpuSubmitWhileItWaits) {
  auto second_cpu_wait = [](std::uint64_t relax_ns) {
    unit_config uc;
    uc.latency.inv_wait_ns = 100'000;  // a slow wait: CPU 0 spins for ~100 us
    uc.driver.relax_ns = relax_ns;
    runtime::run_config rc;
    rc.cpus = 2;
    runtime::deterministic_executor ex(rc);
    rig r(ex, uc);
    std::uint64_t cpu1_submitted_at = 0, cpu0_done_at = 0;
    ex.set_program(0, [&](unsigned) {
      EXPECT_TRUE(r.flush().ok());
      cpu0_done_at = ex.now_ns();
      return runtime::step_result::finished();
    });
    ex.set_program(1, [&](unsigned) {
      if (ex.now_ns() < 1000) return runtime::step_result::sleep_for(1000);  // CPU 0 first
      EXPECT_TRUE(r.sys.invalidate(*r.dom, {0, 4095, true}).ok());
      cpu1_submitted_at = ex.now_ns();
      return runtime::step_result::finished();
    });
    EXPECT_EQ(ex.run().reason, runtime::stop_reason::quiescent);
    EXPECT_GT(cpu0_done_at, 100'000u);
    return cpu1_submitted_at;
  };
  const std::uint64_t dropping = second_cpu_wait(40);
  const std::uint64_t keeping = second_cpu_wait(0);
  EXPECT_LT(dropping, 5'000u) << "in within an iteration of CPU 0's spin";
  EXPECT_GT(keeping, 100'000u) << "kept out until CPU 0's wait completed";
}

// A synchronous flush returns success only once every earlier epoch of the domain completed
// too: a caller frees what its epoch covers at once. Here epoch 1 is numbered but not yet
// submitted (its CPU is between numbering and submitting) when epoch 2 is flushed synchronously:
// epoch 2's own wait completes, but the flush must time out rather than claim epoch 2 complete.
TEST(QueueLock, ASynchronousFlushWaitsForEarlierEpochsOfTheDomain) {
  runtime::run_config rc;
  rc.cpus = 1;
  runtime::deterministic_executor ex(rc);
  system_config sc;
  rig* r = nullptr;
  Result<std::uint64_t> nested = std::uint64_t{0};
  std::uint64_t completed_after = 0;
  sc.after_numbering = [&](std::uint16_t, std::uint64_t epoch) {
    if (epoch != 1) return;
    nested = r->sys.flush_sync_epoch(*r->dom, {0, 4095, true}, 50'000);
    completed_after = r->dom->flush_completed();
  };
  rig rr(ex, unit_config{}, std::move(sc));
  r = &rr;
  ex.set_program(0, [&](unsigned) {
    EXPECT_TRUE(rr.sys.flush_sync(*rr.dom, {0, 4095, true}, timeout_ns).ok());
    return runtime::step_result::finished();
  });
  EXPECT_EQ(ex.run().reason, runtime::stop_reason::quiescent);
  ASSERT_FALSE(nested.ok()) << "epoch 2 claimed complete while epoch 1 was not submitted";
  EXPECT_EQ(nested.status().code(), errc::busy);
  EXPECT_EQ(completed_after, 0u);
  EXPECT_GE(rr.dom->flush_completed(), 2u) << "both complete once epoch 1 is submitted";
}

// Threaded: the lock is real. CPU 0's flush spins for a slow wait; CPU 1 gets the lock in one of
// its drops and submits before CPU 0's flush returns.
TEST(QueueLockThreaded, AnotherCpuSubmitsWhileAVtdWaiterSpins) {
  unit_config uc;
  uc.latency.inv_wait_ns = 200'000'000;  // 200 ms of real time: room for a busy host
  runtime::run_config rc;
  rc.cpus = 2;
  runtime::threaded_executor ex(rc);
  rig r(ex, uc);
  std::atomic<bool> cpu0_done{false}, cpu1_in_time{false};
  ex.set_program(0, [&](unsigned) {
    EXPECT_TRUE(r.flush().ok());
    cpu0_done = true;
    return runtime::step_result::finished();
  });
  ex.set_program(1, [&](unsigned) {
    while (r.sys.get_unit(0).submitted_peek() < 2)  // CPU 0's PSI and wait are queued
      std::this_thread::yield();
    EXPECT_TRUE(r.sys.invalidate(*r.dom, {0, 4095, true}).ok());
    cpu1_in_time = !cpu0_done.load();
    return runtime::step_result::finished();
  });
  EXPECT_EQ(ex.run().reason, runtime::stop_reason::quiescent);
  EXPECT_TRUE(cpu1_in_time.load());
  // CPU 0 took it to submit and for its last read, CPU 1 once.
  EXPECT_EQ(r.sys.queue_lock_stats_of(0).acquisitions, 3u);
}

}  // namespace
}  // namespace ptreclaim::iommu
