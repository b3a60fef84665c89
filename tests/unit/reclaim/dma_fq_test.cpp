// linux-dma-fq's own rules (dma-iommu's flush queue), on a testbed with the safety monitor:
//   - an entry goes back only once fq_flush_finish_cnt passed its counter: every IOVA given back
//     is allocated again at once (the sink) and S6 must hold;
//   - a full ring flushes synchronously inside the queuing call (fq_entries = 4: 3 usable);
//   - the timer drains every ring, an offline CPU's included, and a timer armed on a CPU that
//     dies moves to a live one;
//   - the single-queue variant holds what per-CPU rings would have flushed on their own.
// Deterministic executor: each program step is one unmap handed to retire_deferred.
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <memory>
#include <vector>

#include "ptreclaim/reclaim/reclaimer.hpp"
#include "ptreclaim/testbed/testbed.hpp"

namespace ptreclaim::reclaim::test {
namespace {

constexpr std::uint64_t k4k = 4096;
constexpr domain_number dom_id = 1;

// Records every IOVA given back and reuses it at once (the monitor judges S6 there).
class reusing_sink final : public iova_sink {
 public:
  explicit reusing_sink(safety_monitor& m) : mon_(m) {}
  void iova_free(domain_number d, const iova_range& r) noexcept override {
    returned.push_back(r.first);
    mon_.on_iova_allocated(d, r);
  }
  std::vector<pt::iova_t> returned;

 private:
  safety_monitor& mon_;
};

struct fq_bed {
  explicit fq_bed(unsigned cpus, reclaim_config rc = {}) {
    testbed::config tc;
    tc.run.cpus = cpus;
    tc.run.seed = 3;
    tc.run.on_cpu_dead = runtime::dead_cpu_work::park;
    tc.run.max_steps = std::uint64_t{1} << 22;  // a livelock is a failure, not a hang
    tc.pool = mem::pool_config{.capacity_frames = 256, .caches = cpus};
    tc.units = {iommu::unit_config{}};
    tc.max_pending = rc.max_pending;
    auto made = testbed::testbed::create(tc);
    EXPECT_TRUE(made.ok());
    tb = std::move(*made);
    auto d = tb->add_domain({.id = dom_id});
    EXPECT_TRUE(d.ok());
    EXPECT_TRUE(tb->sys().attach(1, 0, *(*d)->dom, dom_id).ok());
    sink = std::make_unique<reusing_sink>(tb->monitor());
    tb->monitor().set_iova_sink(sink.get());
    EXPECT_TRUE(tb->install_policy(policy_kind::linux_dma_fq, rc).ok());
    iommu::system* sys = &tb->sys();
    tb->ex().add_actor({"iommu-engine", [sys] {
                          sys->get_unit(0).advance();
                          return runtime::step_result::sleep_for(100);
                        }});
  }
  // CPU `cpu`'s lazy unmap of the 4K page at `page` (nothing mapped: only the IOVA matters).
  void unmap(unsigned cpu, std::uint64_t page) {
    const iova_range r{page * k4k, page * k4k + k4k - 1};
    pt::gather g;
    g.add_range(r.first, r.last);
    tb->monitor().on_iova_unmapped(dom_id, r);
    EXPECT_EQ(tb->ex().current_cpu(), cpu);
    tb->policy().retire_deferred(dom_id, g, r);
  }
  [[nodiscard]] std::uint64_t invalidations() const { return tb->monitor().result().invalidations; }
  void expect_clean() {
    const safety_monitor::report rep = tb->monitor().result();
    EXPECT_EQ(rep.s6_violations, 0u) << (rep.first.empty() ? "" : rep.first.front());
    EXPECT_EQ(rep.deferred_iovas, 0u) << "IOVAs left with the policy after the run (L1)";
    EXPECT_EQ(rep.iovas_returned, rep.iovas_unmapped);
  }

  std::unique_ptr<testbed::testbed> tb;
  std::unique_ptr<reusing_sink> sink;
};

// A CPU program from a list of step bodies (each returns after one step; yield between).
runtime::program steps(std::vector<std::function<void()>> body) {
  auto at = std::make_shared<std::size_t>(0);
  auto b = std::make_shared<std::vector<std::function<void()>>>(std::move(body));
  return [at, b](unsigned) {
    if (*at >= b->size()) return runtime::step_result::finished();
    (*b)[(*at)++]();
    return runtime::step_result::yield();
  };
}

TEST(dma_fq, a_full_ring_flushes_synchronously_and_frees_only_finished_entries) {
  reclaim_config rc;
  rc.fq_entries = 4;  // 3 usable: fq_full keeps one slot free
  fq_bed b(1, rc);
  std::uint64_t before = 0;
  b.tb->ex().set_program(
      0, steps({
             [&] { b.unmap(0, 1); },
             [&] { b.unmap(0, 2); },
             [&] {
               b.unmap(0, 3);
               // Nothing flushed yet: the timer is 10 ms away.
               EXPECT_TRUE(b.sink->returned.empty());
               before = b.invalidations();
             },
             [&] {
               b.unmap(0, 4);  // the ring is full: flush inside this call
               EXPECT_EQ(b.invalidations(), before + 1);
               EXPECT_EQ(b.sink->returned, (std::vector<pt::iova_t>{k4k, 2 * k4k, 3 * k4k}));
             },
         }));
  b.tb->ex().run();  // the timer then gives back the 4th
  EXPECT_EQ(b.sink->returned.size(), 4u);
  b.expect_clean();
}

TEST(dma_fq, an_entry_queued_after_a_flush_started_waits_for_the_next_one) {
  // Two CPUs fill their rings alternately: each full ring's flush frees only what was queued
  // before it started, on that ring; the other CPU's entries wait for its own next look.
  reclaim_config rc;
  rc.fq_entries = 2;  // 1 usable: every second unmap of a CPU flushes
  fq_bed b(2, rc);
  auto cpu_body = [&](unsigned cpu) {
    std::vector<std::function<void()>> body;
    for (std::uint64_t i = 0; i < 12; ++i)
      body.push_back([&b, cpu, i] { b.unmap(cpu, 1 + cpu * 100 + i); });
    return body;
  };
  b.tb->ex().set_program(0, steps(cpu_body(0)));
  b.tb->ex().set_program(1, steps(cpu_body(1)));
  b.tb->ex().run();
  EXPECT_EQ(b.sink->returned.size(), 24u);
  b.expect_clean();  // every reuse came after a covering flush (S6)
}

TEST(dma_fq, the_timer_drains_an_offline_cpus_ring_and_a_dead_cpus_timer_moves) {
  for (bool timer_on_dying_cpu : {false, true}) {
    SCOPED_TRACE(timer_on_dying_cpu ? "timer armed on the dying CPU" : "timer armed on CPU 0");
    fq_bed b(2);
    bool down = false;
    // CPU 0 queues first (its CPU wins fq_timer_on) unless the timer is to sit on CPU 1.
    b.tb->ex().set_program(1, steps({[&] { b.unmap(1, 7); }}));
    unsigned phase = 0, polls = 0;
    bool up = false;
    b.tb->ex().set_program(0, [&](unsigned) {
      switch (phase++) {
        case 0:
          if (!timer_on_dying_cpu) b.unmap(0, 5);
          return runtime::step_result::yield();
        case 1:
          return runtime::step_result::yield();
        case 2:
          EXPECT_TRUE(b.sink->returned.empty());
          down = b.tb->ex().cpu_down(1).ok();
          return runtime::step_result::yield();
        default: {
          // Wait (virtual time) for the timer to give CPU 1's IOVA back, then bring CPU 1 back.
          const bool back = std::find(b.sink->returned.begin(), b.sink->returned.end(), 7 * k4k) !=
                            b.sink->returned.end();
          if (!back && ++polls < 100) return runtime::step_result::sleep_for(1'000'000);
          up = b.tb->ex().cpu_up(1).ok();
          return runtime::step_result::finished();
        }
      }
    });
    const runtime::run_stats st = b.tb->ex().run();
    EXPECT_EQ(st.reason, runtime::stop_reason::quiescent) << runtime::stop_reason_name(st.reason);
    EXPECT_TRUE(down);
    EXPECT_TRUE(up);
    EXPECT_LT(polls, 100u) << "the timer never gave the offline CPU's IOVA back";
    // CPU 1's entry went back while CPU 1 was offline.
    EXPECT_NE(std::find(b.sink->returned.begin(), b.sink->returned.end(), 7 * k4k),
              b.sink->returned.end());
    EXPECT_EQ(b.tb->policy().pending(), 0u);
    b.expect_clean();
  }
}

TEST(dma_fq, the_single_queue_holds_what_per_cpu_rings_would_flush) {
  for (bool single : {false, true}) {
    reclaim_config rc;
    rc.fq_entries = 4;
    rc.fq_single_queue = single;
    rc.fq_single_entries = 64;
    rc.fq_single_timeout_ns = 5'000'000;  // within the test's step budget
    fq_bed b(2, rc);
    std::uint64_t returned_during_run = 0;
    std::vector<std::function<void()>> body;
    for (std::uint64_t i = 0; i < 8; ++i)
      body.push_back([&b, i] { b.unmap(0, 1 + i); });
    body.push_back([&] { returned_during_run = b.sink->returned.size(); });
    b.tb->ex().set_program(0, steps(body));
    b.tb->ex().run();
    if (single)
      EXPECT_EQ(returned_during_run, 0u) << "one 64-entry queue: only its timer flushes";
    else
      EXPECT_GT(returned_during_run, 0u) << "a 4-entry per-CPU ring flushes when full";
    EXPECT_EQ(b.sink->returned.size(), 8u);
    b.expect_clean();
  }
}

}  // namespace
}  // namespace ptreclaim::reclaim::test
