// flush-epoch's safety and liveness rules, each written from the property it protects, on a
// machine where nothing helps the policy: the IOMMU engine only advances the units (as the
// simulator's engine actors do; nobody updates the domain's epochs but a poll), and the safety
// monitor never polls and judges by the units' processed descriptors. Each test drives CPU
// programs step by step in the deterministic executor, so the interleaving is exact.
//
// What each test would catch (the mutants of tests/mutants/ are the proof):
//   a caller's flush covers only the batches inside its range;
//   CPU_DEAD closes (stamps) the dead CPU's open batch before adopting it;
//   a batch is stamped when it closes, after the last unlink it holds, not when it opens;
//   a full invalidation numbered at the stamp does not free it (only one numbered after);
//   the timer polls the hardware (else nothing advances the epochs and frames stay, L1);
//   a caller may report its epoch before waiting for it: the batch waits for the completion;
//   an IOMMU attached after the retire is flushed too.
#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "ptreclaim/iommu/system.hpp"
#include "ptreclaim/mem/frame_pool.hpp"
#include "ptreclaim/pt/table.hpp"
#include "ptreclaim/reclaim/iommu_backend.hpp"
#include "ptreclaim/reclaim/reclaimer.hpp"
#include "ptreclaim/reclaim/safety_monitor.hpp"
#include "ptreclaim/runtime/deterministic_executor.hpp"
#include "ptreclaim/runtime/threaded_executor.hpp"

namespace ptreclaim::reclaim {
namespace {

constexpr std::uint64_t k4k = 4096;
constexpr std::uint64_t k2m = std::uint64_t{2} << 20;
constexpr std::uint64_t k64g = std::uint64_t{64} << 30;
constexpr domain_number dom = 1;
constexpr std::uint64_t timeout_ns = 1'000'000'000;
constexpr std::uint64_t phys_base = std::uint64_t{1} << 40;

struct machine_config {
  unsigned cpus = 2;
  reclaim_config reclaim = defaults();
  bool attach_unit1 = true;  // else unit 1 is attached only when a test says so
  std::uint64_t max_steps = 2'000'000;

  // The age flush well after every check a test makes (a few microseconds into the run), the
  // watermark out of the way unless a test wants it.
  static reclaim_config defaults() {
    reclaim_config c;
    c.max_pending = 4096;
    c.flush_age_ns = 200'000;
    c.watermark = 1000;
    return c;
  }
};

class machine {
 public:
  explicit machine(const machine_config& c)
      : cfg_(c),
        ex_(run_config(c)),
        pool_(mem::pool_config{.capacity_frames = 4096, .caches = c.cpus}, ex_),
        sys_(pool_, {}, ex_),
        backend_(sys_),
        monitor_(sys_, backend_, c.reclaim.max_pending) {
    sys_.add_unit({});
    sys_.add_unit({});
    pt::domain_config dc{.domain = dom, .on_unlink = &monitor_};
    auto t = pt::make_table(pt::format_kind::vtd_ss_4, dc, pool_);
    PTR_ASSERT(t.ok());
    table_ = std::move(t.value());
    auto d = sys_.create_domain({dom, &table_->format(), table_->root(), dc.leaf_levels});
    PTR_ASSERT(d.ok());
    dom_ = *d;
    PTR_ASSERT(sys_.attach(1, 0, *dom_, 5).ok());
    if (c.attach_unit1) attach_unit1();
    auto p = make_reclaimer(policy_kind::flush_epoch, {ex_, monitor_, pool_, &monitor_}, c.reclaim);
    PTR_ASSERT(p.ok());
    policy_ = std::move(p.value());
    // The IOMMU engine: moves the units' queues only. The domain's epochs move when someone
    // polls (system::poll_domain through the backend), as in the simulator.
    iommu::system* sys = &sys_;
    ex_.add_actor({"iommu-engine", [sys] {
                     for (unsigned u = 0; u < sys->unit_count(); ++u)
                       sys->get_unit(u).advance();
                     return runtime::step_result::sleep_for(100);
                   }});
  }
  ~machine() { policy_.reset(); }

  void attach_unit1() { PTR_ASSERT(sys_.attach(2, 1, *dom_, 6).ok()); }

  // Maps the 512 pages of the 2 MiB region at `base`: the last map coalesces them into a
  // superpage and releases the leaf table (span: the region). Returns the gather.
  pt::gather release_at(std::uint64_t base) {
    pt::gather g;
    for (unsigned i = 0; i < 512; ++i) {
      pt::gather one;
      EXPECT_TRUE(
          table_->map(base + i * k4k, phys_base + base + i * k4k, k4k, pt::perm_rw, one).ok());
      g.merge(one);
    }
    EXPECT_EQ(g.released().size(), 1u);
    return g;
  }
  // The first half: a region at `base` released and retired on the calling CPU.
  pt::gather retire_at(std::uint64_t base) {
    pt::gather g = release_at(base);
    policy_->retire(dom, g);
    return g;
  }
  // Unmaps the superpage at `base` again (no table released), so the region can be refilled.
  void clear(std::uint64_t base) {
    pt::gather g;
    EXPECT_TRUE(table_->unmap(base, k2m, g).ok());
  }
  // A full invalidation of the domain that nobody tells the policy about (another CPU's, or a
  // driver's), polled to completion.
  epoch_t full_flush_elsewhere() {
    Result<epoch_t> e = monitor_.invalidate(dom, invalidation_range::whole_domain());
    EXPECT_TRUE(e.ok());
    EXPECT_TRUE(backend_.wait(dom, *e, timeout_ns));
    return *e;
  }

  // CPU `cpu` runs `steps` in order, one per program step, then finishes. A step that
  // returns false is run again at the next step (a wait for another CPU).
  using step = std::function<bool()>;
  void program(unsigned cpu, std::vector<step> steps) {
    auto list = std::make_shared<std::vector<step>>(std::move(steps));
    auto next = std::make_shared<std::size_t>(0);
    ex_.set_program(cpu, [list, next](unsigned) {
      if (*next < list->size() && (*list)[*next]()) ++*next;
      return *next < list->size() ? runtime::step_result::yield()
                                  : runtime::step_result::finished();
    });
  }
  static step once(std::function<void()> f) {
    return [f = std::move(f)] {
      f();
      return true;
    };
  }
  static step until(const bool& flag) {
    return [&flag] { return flag; };
  }

  runtime::run_stats run() { return ex_.run(); }

  [[nodiscard]] safety_monitor::report report() const { return monitor_.result(); }
  [[nodiscard]] std::string firsts() const {
    std::string s;
    for (const auto& f : monitor_.result().first)
      s += f + "\n";
    return s;
  }
  // Safe and live: nothing freed early or twice, everything freed without drain().
  void expect_safe_and_drained(const runtime::run_stats& st) {
    EXPECT_EQ(st.reason, runtime::stop_reason::quiescent) << runtime::stop_reason_name(st.reason);
    const auto r = report();
    EXPECT_GT(r.retired, 0u);
    EXPECT_EQ(r.s2_violations, 0u) << firsts();
    EXPECT_EQ(r.s3_violations, 0u) << firsts();
    EXPECT_EQ(r.s4_violations, 0u) << firsts();
    EXPECT_EQ(policy_->pending(), 0u) << policy_->describe_pending();
    EXPECT_EQ(r.freed, r.retired);
  }

  reclaimer& policy() { return *policy_; }
  safety_monitor& monitor() { return monitor_; }
  iommu_backend& backend() { return backend_; }
  runtime::deterministic_executor& ex() { return ex_; }

 private:
  static runtime::run_config run_config(const machine_config& c) {
    runtime::run_config rc;
    rc.cpus = c.cpus;
    rc.max_steps = c.max_steps;
    rc.on_cpu_dead = runtime::dead_cpu_work::migrate;
    return rc;
  }

  machine_config cfg_;
  runtime::deterministic_executor ex_;
  mem::frame_pool pool_;
  iommu::system sys_;
  iommu_backend backend_;
  safety_monitor monitor_;
  std::unique_ptr<pt::table> table_;
  iommu::domain* dom_ = nullptr;
  std::unique_ptr<reclaimer> policy_;
};

// A caller's flush of one region frees that region's batch, not the batch of a distant region
// the same CPU retired just before (whose range it does not contain).
TEST(FlushEpoch, ACallerFlushCoversOnlyTheBatchesInsideItsRange) {
  machine_config c;
  c.cpus = 1;
  machine m(c);
  pt::gather near, far;
  m.program(0, {machine::once([&] { far = m.retire_at(k64g); }),
                machine::once([&] { near = m.retire_at(0); }), machine::once([&] {
                  // The caller flushes only the near region (a 2 MiB PSI: not widened).
                  Result<epoch_t> e =
                      invalidate_after_retire(m.policy(), m.monitor(), dom, near, timeout_ns);
                  ASSERT_TRUE(e.ok());
                  // The ring is reaped in order, so the near batch may wait behind the far one;
                  // the far one must not go on this flush.
                  EXPECT_GE(m.policy().pending(), 1u)
                      << "the far region's batch must wait: " << m.policy().describe_pending();
                })});
  m.expect_safe_and_drained(m.run());
}

// A CPU dies with an open batch (batch_frames > 1, no caller flush). The adopter must stamp it
// after its unlinks: a full invalidation that completed before the retire does not cover it.
class FlushEpochDeadOpenBatch : public ::testing::TestWithParam<unsigned> {};

TEST_P(FlushEpochDeadOpenBatch, TheAdoptedOpenBatchIsStampedAfterItsUnlinks) {
  machine_config c;
  c.reclaim.batch_frames = GetParam();
  c.reclaim.flush_age_ns = 50'000;
  machine m(c);
  bool retired = false;
  m.program(1, {machine::once([&] { m.full_flush_elsewhere(); }), machine::once([&] {
                  (void)m.retire_at(k2m);  // opens a batch, leaves it open
                  retired = true;
                })});
  m.program(0, {machine::until(retired), machine::once([&] {
                  ASSERT_TRUE(m.ex().cpu_down(1).ok());  // CPU_DEAD runs here: CPU 0 adopts
                }),
                machine::once([&] {
                  // A retire on the adopter reaps its ring: the adopted batch must not go.
                  (void)m.retire_at(0);
                  EXPECT_GE(m.policy().pending(), 2u) << m.policy().describe_pending();
                })});
  m.expect_safe_and_drained(m.run());
}

INSTANTIATE_TEST_SUITE_P(BatchFrames, FlushEpochDeadOpenBatch, ::testing::Values(2u, 8u, 64u));

// A failed offline (CPU_DOWN_FAILED) and a completed offline/online of a CPU holding an open
// batch: nothing is lost, nothing freed early, everything freed in the end.
class FlushEpochHotplugOpenBatch : public ::testing::TestWithParam<unsigned> {};

TEST_P(FlushEpochHotplugOpenBatch, OfflineFailedOfflineAndOnlineWithOpenBatchesLoseNothing) {
  machine_config c;
  c.reclaim.batch_frames = GetParam();
  c.reclaim.flush_age_ns = 50'000;
  machine m(c);
  bool retired = false;
  m.program(1, {machine::once([&] {
              (void)m.retire_at(k2m);
              retired = true;
            })});
  m.program(
      0, {machine::once([&] { (void)m.retire_at(0); }), machine::until(retired), machine::once([&] {
            m.ex().inject_cpu_down_failure(1);
            EXPECT_FALSE(m.ex().cpu_down(1).ok());  // CPU_DOWN_FAILED
          }),
          machine::once([&] { (void)m.retire_at(4 * k2m); }),
          machine::once([&] { ASSERT_TRUE(m.ex().cpu_down(1).ok()); }),
          machine::once([&] { (void)m.retire_at(6 * k2m); }),
          machine::once([&] { ASSERT_TRUE(m.ex().cpu_up(1).ok()); })});
  m.expect_safe_and_drained(m.run());
}

INSTANTIATE_TEST_SUITE_P(BatchFrames, FlushEpochHotplugOpenBatch,
                         ::testing::Values(1u, 2u, 8u, 64u));

// One open batch takes a retire, then another CPU's full invalidation completes, then a second
// retire joins the batch: the stamp must follow the second unlink, so that invalidation (which
// came before it) does not free the batch.
TEST(FlushEpoch, TheStampIsTakenWhenTheBatchClosesNotWhenItOpens) {
  machine_config c;
  c.cpus = 1;
  c.reclaim.batch_frames = 8;
  c.reclaim.watermark = 1;  // the second frame closes the batch, asks for a flush and reaps
  machine m(c);
  m.program(0, {machine::once([&] { (void)m.retire_at(0); }),
                machine::once([&] { m.full_flush_elsewhere(); }), machine::once([&] {
                  (void)m.retire_at(k2m);
                  EXPECT_EQ(m.policy().pending(), 2u)
                      << "freed on an invalidation that came before its second unlink: "
                      << m.policy().describe_pending();
                })});
  m.expect_safe_and_drained(m.run());
}

// A full invalidation numbered exactly at a batch's stamp was numbered before the stamp's read,
// so possibly before the unlink: only one numbered after it frees the batch.
TEST(FlushEpoch, AFullInvalidationNumberedAtTheStampDoesNotFreeTheBatch) {
  machine_config c;
  c.cpus = 1;
  c.reclaim.flush_age_ns = 50'000;
  machine m(c);
  m.program(0, {machine::once([&] {
                  // Numbered (1) and submitted, then the unlink and the stamp (1): the batch
                  // needs a full invalidation numbered 2 or later.
                  Result<epoch_t> e =
                      m.monitor().invalidate(dom, invalidation_range::whole_domain());
                  ASSERT_TRUE(e.ok());
                  (void)m.retire_at(0);
                  ASSERT_TRUE(m.backend().wait(dom, *e, timeout_ns));
                }),
                machine::once([&] {
                  (void)m.retire_at(k2m);  // reaps: the first batch must stay
                  EXPECT_EQ(m.policy().pending(), 2u) << m.policy().describe_pending();
                })});
  m.expect_safe_and_drained(m.run());
}

// No caller flush, nobody else polls: only the CPU's timer can see the invalidation it asked for
// complete. A timer that reaps without polling would leave the frames for ever (L1).
TEST(FlushEpoch, TheTimerPollsTheHardwareSoFramesLeaveWithoutHelp) {
  machine_config c;
  c.cpus = 1;
  c.reclaim.flush_age_ns = 20'000;
  machine m(c);
  m.program(0, {machine::once([&] { (void)m.retire_at(0); }),
                machine::once([&] { (void)m.retire_at(k2m); })});
  m.expect_safe_and_drained(m.run());
}

// The same with flush_age_ns = 0 (never): the watermark asks, the timer polls what was asked.
TEST(FlushEpoch, WithoutAnAgeFlushTheWatermarkAsksAndTheTimerPolls) {
  machine_config c;
  c.cpus = 1;
  c.reclaim.flush_age_ns = 0;
  c.reclaim.watermark = 1;
  machine m(c);
  m.program(0, {machine::once([&] { (void)m.retire_at(0); }),
                machine::once([&] { (void)m.retire_at(k2m); })});
  m.expect_safe_and_drained(m.run());
}

// The interface lets a caller report its epoch before waiting for it: the batch then waits for
// that invalidation's completion, whoever reaps.
TEST(FlushEpoch, ACallerEpochReportedBeforeItsWaitFreesOnlyOnceItCompleted) {
  machine_config c;
  c.cpus = 1;
  machine m(c);
  m.program(0, {machine::once([&] {
                  pt::gather g = m.retire_at(0);
                  m.policy().before_caller_invalidation(dom);
                  Result<epoch_t> e = m.monitor().invalidate(dom, invalidation_range::of(g));
                  ASSERT_TRUE(e.ok());
                  m.policy().note_caller_invalidation(dom, invalidation_range::of(g), *e);
                  // Not waited for: a retire right now reaps, and must not free it yet.
                  (void)m.retire_at(k64g);
                  EXPECT_GE(m.policy().pending(), 1u);
                  ASSERT_TRUE(m.backend().wait(dom, *e, timeout_ns));
                }),
                machine::once([&] {
                  m.clear(0);
                  (void)m.retire_at(0);  // reaps the first batch now that it completed
                })});
  m.expect_safe_and_drained(m.run());
}

// An IOMMU attached to the domain after frames were retired and before the covering flush:
// the flush goes to both units, and nothing breaks the epochs' accounting.
TEST(FlushEpoch, AnIommuAttachedAfterTheRetireAndBeforeTheFlushIsHandled) {
  machine_config c;
  c.cpus = 1;
  c.attach_unit1 = false;
  machine m(c);
  m.program(0, {machine::once([&] {
                  pt::gather g = m.retire_at(0);
                  m.attach_unit1();
                  Result<epoch_t> e =
                      invalidate_after_retire(m.policy(), m.monitor(), dom, g, timeout_ns);
                  ASSERT_TRUE(e.ok());
                }),
                machine::once([&] { (void)m.retire_at(k2m); })});
  m.expect_safe_and_drained(m.run());
}

// Threaded: CPU 0 numbers an invalidation (epoch n) and is preempted before submitting it;
// CPU 1 retires a frame (stamped n: its stamp follows the numbering), then a full invalidation
// n+1 is numbered, submitted and completes, so completed_full = n+1 runs ahead of the in-order
// completed (n-1). The frame may go: n+1 was numbered after its stamp, so after its unlink, and
// dropped everything on every unit. A checker that waited for in-order completion called this
// early (a false S3); judged by the units' descriptors, it is safe.
TEST(FlushEpochThreaded, AFullFlushThatCompletesAheadOfAnUnsubmittedOneFreesLaterStamps) {
  runtime::run_config rc;
  rc.cpus = 2;
  runtime::threaded_executor ex(rc);
  mem::frame_pool pool(mem::pool_config{.capacity_frames = 1024, .caches = 2}, ex);
  std::atomic<bool> hold{false}, held{false}, release{false};
  iommu::system_config sc;
  sc.after_numbering = [&](std::uint16_t, std::uint64_t) {
    if (!hold.exchange(false)) return;
    held = true;
    while (!release.load())
      std::this_thread::yield();
  };
  iommu::system sys(pool, sc, ex);
  sys.add_unit({});
  sys.add_unit({});
  iommu_backend backend(sys);
  safety_monitor monitor(sys, backend, 1024);
  pt::domain_config dc{.domain = dom, .on_unlink = &monitor};
  auto table = pt::make_table(pt::format_kind::vtd_ss_4, dc, pool);
  ASSERT_TRUE(table.ok());
  auto d = sys.create_domain({dom, &(*table)->format(), (*table)->root(), dc.leaf_levels});
  ASSERT_TRUE(d.ok());
  ASSERT_TRUE(sys.attach(1, 0, **d, 5).ok());
  ASSERT_TRUE(sys.attach(2, 1, **d, 6).ok());
  reclaim_config cfg = machine_config::defaults();
  auto policy = make_reclaimer(policy_kind::flush_epoch, {ex, monitor, pool, &monitor}, cfg);
  ASSERT_TRUE(policy.ok());
  iommu::system* sysp = &sys;
  ex.add_actor({"iommu-engine", [sysp] {
                  for (unsigned u = 0; u < sysp->unit_count(); ++u)
                    sysp->get_unit(u).advance();
                  return runtime::step_result::sleep_for(20'000);
                }});
  auto release_at = [&](std::uint64_t base) {
    pt::gather g;
    for (unsigned i = 0; i < 512; ++i) {
      pt::gather one;
      EXPECT_TRUE(
          (*table)->map(base + i * k4k, phys_base + base + i * k4k, k4k, pt::perm_rw, one).ok());
      g.merge(one);
    }
    return g;
  };
  std::atomic<bool> freed_ahead{false};
  ex.set_program(0, [&](unsigned) {
    hold = true;
    Result<epoch_t> e = monitor.invalidate(dom, {0, k2m - 1, true});  // held after numbering
    EXPECT_TRUE(e.ok());
    EXPECT_TRUE(backend.wait(dom, *e, timeout_ns));
    return runtime::step_result::finished();
  });
  ex.set_program(1, [&](unsigned) {
    while (!held.load())
      std::this_thread::yield();
    const epoch_t numbered = sys.find_domain(dom)->flush_started();
    (*policy)->retire(dom, release_at(k64g));  // stamped `numbered`
    Result<epoch_t> full = monitor.invalidate(dom, invalidation_range::whole_domain());
    EXPECT_TRUE(full.ok());
    EXPECT_EQ(*full, numbered + 1);
    while (backend.completed_full(dom) < *full)
      std::this_thread::yield();
    EXPECT_LT(backend.completed(dom), numbered) << "in-order completion waits for the held one";
    (*policy)->retire(dom, release_at(2 * k64g));  // reaps: the first frame goes now
    freed_ahead = (*policy)->pending() == 1;
    release = true;
    return runtime::step_result::finished();
  });
  const runtime::run_stats st = ex.run();
  EXPECT_EQ(st.reason, runtime::stop_reason::quiescent);
  EXPECT_TRUE(freed_ahead.load()) << (*policy)->describe_pending();
  const auto r = monitor.result();
  EXPECT_EQ(r.s3_violations, 0u) << (r.first.empty() ? "" : r.first.front());
  EXPECT_EQ(r.s2_violations, 0u);
  EXPECT_EQ((*policy)->pending(), 0u) << (*policy)->describe_pending();
  policy->reset();
}

}  // namespace
}  // namespace ptreclaim::reclaim
