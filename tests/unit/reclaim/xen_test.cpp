// xen-tasklet's worker, free_queued_pgtables(): it calls process_pending_softirqs() after every
// xen_yield_every (Xen: 512) frees, so a long list does not hold softirqs off.
//
// CPU 0 retires 1300 single-table gathers in busy steps (no scheduler point, so its tasklet
// waits and the list grows to 1300), the caller flushing each, then yields: the worker frees
// the 1300 frames in one run. An observer counts the frees and keeps a softirq tasklet
// scheduled on CPU 0; the tasklet can run only at a softirq point, so the free counts at which
// it ran while the worker was still freeing are exactly the worker's yields.
#include <gtest/gtest.h>

#include <memory>

#include "reclaim_harness.hpp"

namespace ptreclaim::reclaim::test {
namespace {

using runtime::step_result;

class yield_probe final : public reclaim_observer {
 public:
  explicit yield_probe(runtime::executor& ex) : ex_(ex) {
    ex_.tasklet_init(
        probe_, [this] { ran_at_.push_back(freed_); }, runtime::tasklet_kind::softirq);
  }
  ~yield_probe() override { ex_.tasklet_kill(probe_); }
  yield_probe(const yield_probe&) = delete;
  yield_probe& operator=(const yield_probe&) = delete;

  void on_retire(domain_number, mem::frame_id, const invalidation_range&) override {}
  void on_free(mem::frame_id, const char*) override {
    ++freed_;
    (void)ex_.tasklet_schedule_on(probe_, 0);  // no-op while already queued
  }

  [[nodiscard]] std::uint64_t freed() const noexcept { return freed_; }
  // The free counts at which the probe ran (after that many frees).
  [[nodiscard]] const std::vector<std::uint64_t>& ran_at() const noexcept { return ran_at_; }

 private:
  runtime::executor& ex_;
  runtime::tasklet probe_;
  std::uint64_t freed_ = 0;  // deterministic executor: one thread
  std::vector<std::uint64_t> ran_at_;
};

// Returns what the probe saw; `yield_every` is reclaim_config::xen_yield_every.
struct yield_run {
  std::uint64_t freed = 0, retired = 0, worker_runs = 0;
  std::vector<std::uint64_t> yields;  // probe runs at a free count below the total
};

yield_run run_long_list(unsigned frames, unsigned yield_every) {
  harness_config c;
  c.policy = policy_kind::xen_tasklet;
  c.cpus = 2;
  c.devices = false;
  c.frames = 4096;
  c.reclaim.max_pending = 4096;  // a CPU's share (2048) holds the whole list: no back-pressure
  c.reclaim.xen_yield_every = yield_every;
  harness h(c);
  yield_probe probe(h.ex());
  h.set_extra_observer(&probe);
  auto n = std::make_shared<unsigned>(0);
  h.ex().set_program(0, [&h, n, frames](unsigned cpu) {
    if (*n == frames) return step_result::finished();
    // The first step fills the region (releases its leaf table); each later one churns.
    h.mutate(cpu, 0, h.releasing(cpu, 0), 5 + *n, {.caller_flush = true});
    ++*n;
    return *n == frames ? step_result::yield() : step_result::busy();
  });
  h.ex().set_program(1, [](unsigned) { return step_result::finished(); });
  h.run();
  h.expect_contract("xen-tasklet, a list of " + std::to_string(frames) + " frames");
  yield_run r;
  const reclaim_stats st = h.policy().stats();
  r.freed = probe.freed();
  r.retired = st.retired;
  r.worker_runs = st.worker_runs;
  for (std::uint64_t at : probe.ran_at())
    if (at < frames) r.yields.push_back(at);
  h.set_extra_observer(nullptr);
  h.teardown_and_expect_whole();
  return r;
}

TEST(XenTasklet, WorkerYieldsToSoftirqsEvery512Frees) {
  const yield_run r = run_long_list(1300, 512);
  EXPECT_EQ(r.retired, 1300u);
  EXPECT_EQ(r.freed, r.retired);
  // The worker took the whole list in its first run (the list grew without a scheduler point).
  ASSERT_EQ(r.yields.size(), 2u) << "1300 frees: process_pending_softirqs after 512 and 1024";
  EXPECT_EQ(r.yields[0], 512u);
  EXPECT_EQ(r.yields[1], 1024u);
}

// The period is the configuration's, not a constant: 1300 frees at 300 yield four times.
TEST(XenTasklet, WorkerYieldPeriodFollowsTheConfig) {
  const yield_run r = run_long_list(1300, 300);
  EXPECT_EQ(r.freed, r.retired);
  EXPECT_EQ(r.yields, (std::vector<std::uint64_t>{300, 600, 900, 1200}));
}

}  // namespace
}  // namespace ptreclaim::reclaim::test
