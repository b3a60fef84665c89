// Canaries: the unsafe policies must be caught, in the scenarios built to expose them. A canary
// that stops failing is a broken checker (the safety monitor or the IOMMU model's walker).
//   immediate            frees inside retire, before the caller's flush: S3, and a device walk
//                        between the free and the flush reads the freed table: S1.
//   xen-softirq-tasklet  a process_pending_softirqs() between retire and the caller's flush
//                        runs the softirq tasklet, which frees before the flush: S3, and a
//                        device walk through a cached paging-structure entry before the flush
//                        reads the freed table: S1. Without that softirq point it is not caught.
//   xen-tasklet          the same softirq point does not run a plain tasklet: not caught.
#include <gtest/gtest.h>

#include "reclaim_harness.hpp"

namespace ptreclaim::reclaim::test {
namespace {

using runtime::step_result;

harness_config one_cpu_config(policy_kind k) {
  harness_config c;
  c.policy = k;
  c.cpus = 2;
  c.devices = false;
  c.frames = 512;
  c.reclaim.max_pending = 64;  // no back-pressure: the policies' own paths are under test
  return c;
}

// CPU 0: fill, then `rounds` churns, each retired and flushed by the caller with `o`.
// CPU 1 has nothing to do.
void churn_program(harness& h, unsigned rounds, harness::step_options o) {
  auto n = std::make_shared<unsigned>(0);
  h.ex().set_program(0, [&h, n, rounds, o](unsigned cpu) {
    if (*n > rounds) return step_result::finished();
    h.mutate(cpu, 0, h.releasing(cpu, 0), 3 + *n, o);
    ++*n;
    return step_result::yield();  // scheduler point: plain tasklets run between rounds
  });
  h.ex().set_program(1, [](unsigned) { return step_result::finished(); });
}

TEST(Canary, ImmediateIsCaughtByS3WhenTheCallerFlushesAfterRetire) {
  harness h(one_cpu_config(policy_kind::immediate));
  churn_program(h, 6, {.caller_flush = true});
  h.run();
  const safety_monitor::report rep = h.monitor().result();
  EXPECT_EQ(rep.retired, 7u);
  EXPECT_EQ(rep.s3_violations, rep.retired) << "every frame was freed before its flush";
  ASSERT_FALSE(rep.first.empty());
  EXPECT_NE(rep.first[0].find("freed by immediate before a covering invalidation completed"),
            std::string::npos)
      << rep.first[0];
  EXPECT_EQ(rep.s2_violations, 0u);
  h.teardown_and_expect_whole();
}

TEST(Canary, XenSoftirqTaskletIsCaughtOnlyWithASoftirqPointBeforeTheFlush) {
  for (bool softirq_point : {true, false}) {
    SCOPED_TRACE(softirq_point ? "softirq point between retire and flush" : "no softirq point");
    harness h(one_cpu_config(policy_kind::xen_softirq_tasklet));
    churn_program(h, 6, {.caller_flush = true, .softirq_point = softirq_point});
    h.run();
    const safety_monitor::report rep = h.monitor().result();
    EXPECT_EQ(rep.retired, 7u);
    if (softirq_point) {
      EXPECT_GT(rep.s3_violations, 0u) << "the softirq tasklet freed before the flush: a canary";
      ASSERT_FALSE(rep.first.empty());
      EXPECT_NE(rep.first[0].find("xen-softirq-tasklet"), std::string::npos) << rep.first[0];
    } else {
      // The flush comes before the next softirq point: the ordering assumption holds.
      h.expect_contract("xen-softirq-tasklet without a softirq point");
    }
    h.teardown_and_expect_whole();
  }
}

TEST(Canary, XenTaskletIsNotCaughtWithTheSameSoftirqPoint) {
  harness h(one_cpu_config(policy_kind::xen_tasklet));
  churn_program(h, 6, {.caller_flush = true, .softirq_point = true});
  h.run();
  h.expect_contract("xen-tasklet with a softirq point between retire and flush");
  EXPECT_GT(h.policy().stats().worker_runs, 0u) << "the plain tasklet did run, later";
  h.teardown_and_expect_whole();
}

// S1 through the IOMMU model. Step 1 splits the superpage (a new leaf table T) and, after its
// flush, a device translation caches the level-2 entry pointing at T in the paging-structure cache.
// Step 2 maps the hole back (T coalesced away and released); `immediate` frees T inside retire, and
// a translation of another page (an IOTLB miss, a PSC hit) before the caller's flush reads the
// freed T. The same scenario with flush-epoch and sync reads T while it is retired: legal.
TEST(Canary, ImmediateIsCaughtByS1WhenADeviceWalksBetweenFreeAndFlush) {
  for (policy_kind k : {policy_kind::immediate, policy_kind::flush_epoch, policy_kind::sync}) {
    SCOPED_TRACE(std::string(policy_name(k)));
    harness h(one_cpu_config(k));
    auto n = std::make_shared<unsigned>(0);
    h.ex().set_program(0, [&h, n](unsigned cpu) {
      harness::step_options o{.caller_flush = true, .translate_between = true};
      switch ((*n)++) {
        case 0:
          h.mutate(cpu, 0, mutation::fill, 0, {});
          break;
        case 1:
          h.mutate(cpu, 0, mutation::split, 40, {.caller_flush = true});
          // After the split's flush: the walk caches the level-2 entry -> T.
          (void)h.sys().translate(1, cpu * k2m + 47 * k4k, pt::perm_read);
          break;
        case 2:
          h.mutate(cpu, 0, mutation::remap, 41, o);
          break;  // frees T, translates page 48
        default:
          return step_result::finished();
      }
      return step_result::yield();
    });
    h.ex().set_program(1, [](unsigned) { return step_result::finished(); });
    h.run();
    const std::uint64_t s1 = h.sys().violations().count();
    if (k == policy_kind::immediate) {
      EXPECT_GT(s1, 0u) << "a walk read a freed table and the model did not see it";
      const auto v = h.sys().violations().first();
      ASSERT_FALSE(v.empty());
      EXPECT_EQ(v[0].freed_by, std::string("immediate")) << v[0].describe();
      EXPECT_TRUE(v[0].via_psc) << v[0].describe();
      EXPECT_GT(h.monitor().result().s3_violations, 0u);
    } else {
      EXPECT_EQ(s1, 0u) << h.sys().violations().report();
      h.expect_contract(std::string(policy_name(k)) + " in the S1 scenario");
    }
    h.teardown_and_expect_whole();
  }
}

// S1 for the softirq variant, through the IOMMU model (not only the reclaim layer's monitor):
// as above, the level-2 entry -> T is cached after the split's flush; the remap releases T and
// the softirq point before the caller's flush runs the softirq tasklet, which frees T; a device
// translation of another page (IOTLB miss, PSC hit) then reads the freed T. xen-tasklet in the
// same setup defers the free to the plain tasklet (after the flush): the walk reads a retired
// table, which is legal.
TEST(Canary, XenSoftirqTaskletIsCaughtByS1WhenADeviceWalksBeforeTheFlush) {
  for (policy_kind k : {policy_kind::xen_softirq_tasklet, policy_kind::xen_tasklet}) {
    SCOPED_TRACE(std::string(policy_name(k)));
    harness h(one_cpu_config(k));
    auto n = std::make_shared<unsigned>(0);
    auto replaced = std::make_shared<std::vector<mem::frame_id>>();
    h.ex().set_program(0, [&h, n, replaced](unsigned cpu) {
      switch ((*n)++) {
        case 0:
          h.mutate(cpu, 0, mutation::fill, 0, {});
          break;
        case 1:
          h.mutate(cpu, 0, mutation::split, 40, {.caller_flush = true});
          (void)h.sys().translate(1, cpu * k2m + 47 * k4k, pt::perm_read);  // caches L2 -> T
          break;
        case 2:
          // Retire (T released), process_pending_softirqs(), translate page 48, then flush.
          h.mutate(cpu, 0, mutation::remap, 41,
                   {.caller_flush = true, .softirq_point = true, .translate_between = true});
          *replaced = h.last_gather(cpu).released();
          break;
        default:
          return step_result::finished();
      }
      return step_result::yield();
    });
    h.ex().set_program(1, [](unsigned) { return step_result::finished(); });
    h.run();
    EXPECT_EQ(h.failures(), "");
    ASSERT_EQ(replaced->size(), 1u) << "the remap should release exactly the leaf table T";
    const mem::frame_id t = (*replaced)[0];
    if (k == policy_kind::xen_softirq_tasklet) {
      ASSERT_GT(h.sys().violations().count(), 0u)
          << "a walk read the table the softirq tasklet freed and the model did not see it";
      const iommu::violation v = h.sys().violations().first()[0];
      EXPECT_EQ(v.kind, iommu::violation_kind::free_frame) << v.describe();
      EXPECT_EQ(v.frame, t) << v.describe();
      EXPECT_EQ(v.level, 1u) << v.describe();
      EXPECT_TRUE(v.via_psc) << v.describe();
      EXPECT_EQ(v.domain, h.domain_id(0)) << v.describe();
      EXPECT_EQ(v.iova, 48 * k4k) << v.describe();
      ASSERT_NE(v.freed_by, nullptr) << v.describe();
      EXPECT_EQ(std::string(v.freed_by), "xen-softirq-tasklet") << v.describe();
      EXPECT_GE(v.freed_ns, v.retired_ns) << v.describe();
      EXPECT_GT(v.retired_ns, 0u) << v.describe();
      EXPECT_GT(h.monitor().result().s3_violations, 0u);  // and the monitor agrees
      EXPECT_EQ(h.policy().stats().freed, h.policy().stats().retired);
    } else {
      EXPECT_EQ(h.sys().violations().count(), 0u) << h.sys().violations().report();
      h.expect_contract("xen-tasklet in the softirq S1 scenario");
      EXPECT_GT(h.policy().stats().worker_runs, 0u) << "T was freed by the plain tasklet, later";
    }
    h.teardown_and_expect_whole();
  }
}

// The same with the step-wise walk API: a walk that has read the upper levels and is about to
// read T is in flight while `immediate` frees T; its next read is the violation.
TEST(Canary, ImmediateIsCaughtByS1WithAStepwiseWalkInFlight) {
  harness h(one_cpu_config(policy_kind::immediate));
  auto n = std::make_shared<unsigned>(0);
  auto w = std::make_shared<iommu::walk>();
  iommu::unit& u0 = h.sys().get_unit(0);
  h.ex().set_program(0, [&h, &u0, n, w](unsigned cpu) {
    switch ((*n)++) {
      case 0:
        h.mutate(cpu, 0, mutation::fill, 0, {});
        break;
      case 1: {
        h.mutate(cpu, 0, mutation::split, 40, {.caller_flush = true});
        // Device 1 (unit 0) starts a walk of page 100 and stops just before the leaf table.
        if (u0.begin(*w, 1, cpu * k2m + 100 * k4k, pt::perm_read)) {
          h.record_failure("the walk finished in begin()");
          break;
        }
        while (w->phase() == iommu::walk_phase::walking && w->next_level() > 1)
          u0.step(*w);
        if (w->phase() != iommu::walk_phase::walking || w->next_level() != 1)
          h.record_failure("the walk did not stop before the leaf table");
        break;
      }
      case 2: {
        // Remap: T is released and freed at once; no caller flush yet (its wait would stall
        // behind the walk in flight, as hardware's does).
        h.mutate(cpu, 0, mutation::remap, 0, {.caller_flush = false});
        while (!u0.step(*w)) {
        }
        // Now the caller's flush, too late.
        (void)invalidate_after_retire(
            h.policy(), h.monitor(), 1,
            [&] {
              pt::gather g;
              g.add_range(0, k2m - 1);
              g.set_nonleaf_changed();
              return g;
            }(),
            wait_timeout_ns);
        break;
      }
      default:
        return step_result::finished();
    }
    return step_result::yield();
  });
  h.ex().set_program(1, [](unsigned) { return step_result::finished(); });
  h.run();
  EXPECT_EQ(h.failures(), "");
  EXPECT_EQ(w->result().violations, 1u);
  ASSERT_GT(h.sys().violations().count(), 0u);
  const auto v = h.sys().violations().first();
  EXPECT_EQ(v[0].kind, iommu::violation_kind::free_frame) << v[0].describe();
  EXPECT_EQ(v[0].level, 1u) << v[0].describe();
  EXPECT_EQ(v[0].freed_by, std::string("immediate")) << v[0].describe();
  h.teardown_and_expect_whole();
}

}  // namespace
}  // namespace ptreclaim::reclaim::test
