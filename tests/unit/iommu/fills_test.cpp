// Cache fills of a walk that overlapped invalidations: only the fills an invalidation that took
// effect during the walk covers are dropped (same did or global, overlapping block, IH=1 only the
// IOTLB fill). An unrelated invalidation must not keep a stale PSC entry from being created, or
// heavy unrelated flush traffic would hide a missing flush that real hardware exposes.
#include <gtest/gtest.h>

#include <algorithm>

#include "iommu_fixture.hpp"

namespace ptreclaim::iommu::test {
namespace {

constexpr hw_domain_id did = 3;

// Domain 1 (did 3) with a 4K page at 2M: tables L4 -> L3 -> L2 -> L1. A walk of 2M is started and
// has read the root entry and the level-3 entry (it holds the L2 table).
struct walk_in_flight {
  fixture f;
  unsigned u = 0;
  domain* d = nullptr;
  pt::gather g;
  walk w;

  walk_in_flight() {
    u = f.sys.add_unit(zero_latency_unit());
    d = &f.add_domain(1, pt::domain_config{.coalesce = false});
    PTR_ASSERT(f.sys.attach(1, u, *d, did).ok());
    f.map(*d, k2m, 0x1000'0000, k4k, g);
    g.clear();
    EXPECT_FALSE(un().begin(w, 1, k2m, pt::perm_read));
    EXPECT_FALSE(un().step(w));
    EXPECT_FALSE(un().step(w));
  }
  unit& un() { return f.sys.get_unit(u); }
  // Submits `d` and a wait; the wait must stall on the walk (the wait rule is untouched).
  std::uint64_t invalidate_during_walk(const inv_descriptor& inv) {
    const std::array<inv_descriptor, 2> descs{inv, inv_descriptor::wait()};
    auto seq = un().submit(descs);
    EXPECT_TRUE(seq.ok());
    EXPECT_EQ(un().processed(), *seq + 1) << "the invalidation took effect, the wait did not";
    return *seq + 1;
  }
  void finish_walk(std::uint64_t wait_seq) {
    while (!un().step(w)) {
    }
    EXPECT_EQ(w.result().result, outcome::ok);
    EXPECT_EQ(un().stats().walks_overlapped, 1u);
    EXPECT_EQ(un().stats().wait_stalls, 1u);
    EXPECT_TRUE(un().poll(wait_seq)) << "the walk ended: the wait completes";
  }
  // The PSC levels holding an entry for 2M, and whether the IOTLB holds the 4K page.
  std::vector<unsigned> psc_levels() {
    std::vector<unsigned> out;
    for (const auto& [l, e] : un().psc_snapshot())
      if (e.did == did && e.prefix == (k2m >> pt::level_shift(l))) out.push_back(l);
    std::sort(out.begin(), out.end());
    return out;
  }
  bool iotlb_has_page() {
    const auto t = un().iotlb_snapshot();
    return std::any_of(t.begin(), t.end(),
                       [](const iotlb_entry& e) { return e.did == did && e.first() == k2m; });
  }
  // The CPU replaces the leaf table by a superpage and frees it without any flush (the bug).
  void unlink_and_free_without_flush() {
    f.map(*d, k2m, 0x4000'0000, k2m, g);
    EXPECT_EQ(g.released().size(), 1u);
    f.free_released(g, "no-flush-free");
  }
};

TEST(IommuFills, UnrelatedInvalidationsKeepTheFillsSoAMissingFlushIsCaught) {
  const std::array<inv_descriptor, 3> unrelated{
      inv_descriptor::page(did + 1, k2m, 0, false),  // another did, the same page
      inv_descriptor::domain(did + 1),               // another did, everything
      inv_descriptor::page(did, 4 * k1g, 0, false),  // this did, another 1G region
  };
  for (const auto& inv : unrelated) {
    SCOPED_TRACE(inv.describe());
    walk_in_flight t;
    const std::uint64_t wait = t.invalidate_during_walk(inv);
    t.finish_walk(wait);
    // The PSI at 4G overlaps the level-4 entry's 512G region: that fill alone goes.
    const bool same_did = inv.did == did;
    EXPECT_EQ(t.psc_levels(),
              same_did ? (std::vector<unsigned>{2, 3}) : (std::vector<unsigned>{2, 3, 4}));
    EXPECT_EQ(t.un().stats().fills_dropped, same_did ? 1u : 0u);
    EXPECT_TRUE(t.iotlb_has_page());
    // The kept PDE still points at the leaf table: freeing it unflushed is a use-after-free the
    // next walk through the PSC trips on.
    t.unlink_and_free_without_flush();
    const auto r = t.f.sys.translate(1, k2m + 5 * k4k, pt::perm_read);
    EXPECT_EQ(r.from, source::psc);
    EXPECT_GE(r.violations, 1u);
    ASSERT_GE(t.f.sys.violations().count(), 1u);
    EXPECT_EQ(t.f.sys.violations().first().front().kind, violation_kind::free_frame);
    EXPECT_TRUE(t.f.sys.violations().first().front().via_psc);
    t.f.teardown();
  }
}

TEST(IommuFills, CoveringInvalidationDropsTheFillsItCovers) {
  struct expect {
    inv_descriptor inv;
    std::vector<unsigned> psc;  // PSC levels still filled
    bool iotlb;                 // the IOTLB fill kept
  };
  const std::array<expect, 4> cases{{
      {inv_descriptor::page(did, k2m, 0, false), {}, false},        // the page, IH=0: every fill
      {inv_descriptor::page(did, k2m, 0, true), {2, 3, 4}, false},  // IH=1: only the leaf
      {inv_descriptor::domain(did), {}, false},
      {inv_descriptor::global(), {}, false},
  }};
  for (const auto& c : cases) {
    SCOPED_TRACE(c.inv.describe());
    walk_in_flight t;
    const std::uint64_t wait = t.invalidate_during_walk(c.inv);
    t.finish_walk(wait);
    EXPECT_EQ(t.psc_levels(), c.psc);
    EXPECT_EQ(t.iotlb_has_page(), c.iotlb);
    EXPECT_EQ(t.un().stats().fills_dropped, 1u);
    if (c.psc.empty()) {
      // Nothing stale was cached: the next walk starts at the root and sees the superpage.
      t.unlink_and_free_without_flush();
      const auto r = t.f.sys.translate(1, k2m + 5 * k4k, pt::perm_read);
      EXPECT_EQ(r.from, source::walk);
      EXPECT_EQ(r.phys, 0x4000'0000u + 5 * k4k);
      EXPECT_EQ(t.f.sys.violations().count(), 0u) << t.f.sys.violations().report();
    }
    t.f.teardown();
  }
}

// A walk that began after the invalidation took effect is not marked at all.
TEST(IommuFills, WalkAfterTheInvalidationFillsEverything) {
  fixture f;
  const unsigned u = f.sys.add_unit(zero_latency_unit());
  domain& d = f.add_domain(1, pt::domain_config{.coalesce = false});
  ASSERT_TRUE(f.sys.attach(1, u, d, did).ok());
  pt::gather g;
  f.map(d, k2m, 0x1000'0000, k4k, g);
  ASSERT_TRUE(f.sys.flush_sync(d, inv_range::all(), 1'000'000).ok());
  EXPECT_EQ(f.sys.translate(1, k2m, pt::perm_read).from, source::walk);
  const unit_stats s = f.sys.get_unit(u).stats();
  EXPECT_EQ(s.walks_overlapped, 0u);
  EXPECT_EQ(s.fills_dropped, 0u);
  EXPECT_EQ(f.sys.get_unit(u).psc_snapshot().size(), 3u);
  EXPECT_EQ(f.sys.get_unit(u).iotlb_snapshot().size(), 1u);
  f.teardown();
}

}  // namespace
}  // namespace ptreclaim::iommu::test
