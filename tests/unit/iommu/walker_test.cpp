// Faithfulness of the walker, caches and invalidations against known software bugs: the
// leaf-only hint after a table was replaced, page-selective masks, superpages, domain ids on
// several units, Linux commit 38c527aeb419, and a flush on only one of two IOMMUs.
#include <gtest/gtest.h>

#include <algorithm>

#include "iommu_fixture.hpp"
#include "ptreclaim/iommu/device.hpp"

namespace ptreclaim::iommu::test {
namespace {

constexpr std::uint64_t big_timeout = 1'000'000'000;

// Submits `d` followed by a wait on unit `u` and completes it (zero latency).
void submit_and_wait(unit& u, const inv_descriptor& d) {
  const std::array<inv_descriptor, 2> descs{d, inv_descriptor::wait()};
  auto seq = u.submit(descs);
  ASSERT_TRUE(seq.ok()) << seq.status().to_string();
  EXPECT_TRUE(u.poll(*seq + 1));
}

TEST(IommuWalker, TranslatesThroughCachesAndFaults) {
  fixture f;
  const unsigned u = f.sys.add_unit(zero_latency_unit());
  domain& d = f.add_domain(1);
  ASSERT_TRUE(f.sys.attach(7, u, d, 42).ok());
  pt::gather g;
  f.map(d, k2m + k4k, 0x5000'0000, k4k, g, pt::perm_read);
  f.map(d, k1g, 0x8000'0000, k2m, g);

  auto r = f.sys.translate(7, k2m + k4k + 0x123, pt::perm_read);
  EXPECT_EQ(r.result, outcome::ok);
  EXPECT_EQ(r.from, source::walk);
  EXPECT_EQ(r.pte_reads, 4u);
  EXPECT_EQ(r.phys, 0x5000'0123u);
  EXPECT_EQ(r.level, 1u);
  r = f.sys.translate(7, k2m + k4k + 8, pt::perm_read);
  EXPECT_EQ(r.from, source::iotlb);
  EXPECT_EQ(r.phys, 0x5000'0008u);
  r = f.sys.translate(7, k2m + k4k, pt::perm_write);
  EXPECT_EQ(r.result, outcome::fault_permission) << "the IOTLB keeps the leaf's permissions";

  r = f.sys.translate(7, k1g + 0x12345, pt::perm_write);
  EXPECT_EQ(r.result, outcome::ok);
  EXPECT_EQ(r.level, 2u);
  EXPECT_EQ(r.phys, 0x8001'2345u);
  EXPECT_EQ(r.from, source::psc) << "the root entry's PSC (level 4) is shared";
  EXPECT_EQ(r.psc_level, 4u);

  r = f.sys.translate(7, 5 * k1g, pt::perm_read);
  EXPECT_EQ(r.result, outcome::fault_not_present);
  r = f.sys.translate(8, k2m, pt::perm_read);
  EXPECT_EQ(r.result, outcome::fault_no_context);
  r = f.sys.translate(7, 1ull << 50, pt::perm_read);
  EXPECT_EQ(r.result, outcome::fault_invalid);

  // A leaf-only PSI drops the IOTLB entry; the walk resumes from the deepest PSC entry.
  submit_and_wait(f.sys.get_unit(u), inv_descriptor::page(42, k2m + k4k, 0, true));
  r = f.sys.translate(7, k2m + k4k, pt::perm_read);
  EXPECT_EQ(r.from, source::psc);
  EXPECT_EQ(r.psc_level, 2u);
  EXPECT_EQ(r.pte_reads, 1u);

  const unit_stats s = f.sys.get_unit(u).stats();
  EXPECT_EQ(s.translations, 7u) << "the unattached device never reached the unit";
  EXPECT_GE(s.iotlb_hits, 2u);
  EXPECT_EQ(s.psc_hits[2], 1u);
  EXPECT_EQ(s.violations, 0u);
  EXPECT_EQ(f.sys.violations().count(), 0u);
  EXPECT_TRUE(f.sys.get_unit(u).check_coherence(d, 42).ok());
  f.teardown();
}

// A leaf table replaced by a superpage; the PSC entry for the PDE still points at it.
struct replaced_table {
  fixture f;
  unsigned u = 0;
  domain* d = nullptr;
  pt::gather g;

  replaced_table() {
    u = f.sys.add_unit(zero_latency_unit());
    d = &f.add_domain(1, pt::domain_config{.coalesce = false});
    PTR_ASSERT(f.sys.attach(1, u, *d, 3).ok());
    f.map(*d, k2m, 0x1000'0000, k4k, g);
    EXPECT_EQ(f.sys.translate(1, k2m, pt::perm_read).result, outcome::ok);
    g.clear();
    f.map(*d, k2m, 0x4000'0000, k2m, g);  // overmap: the leaf table is released
    EXPECT_EQ(g.released().size(), 1u);
    EXPECT_TRUE(g.nonleaf_changed());
  }
};

TEST(IommuFaithful, LeafOnlyHintKeepsStalePscAndFreeingIsCaught) {
  replaced_table t;
  submit_and_wait(t.f.sys.get_unit(t.u), inv_descriptor::page(3, k2m, 9, /*ih=*/true));
  // Before the free: the stale PDE leads to the old (retired) table. Wrong translation, no
  // violation - the deferred-free window.
  auto r = t.f.sys.translate(1, k2m, pt::perm_read);
  EXPECT_EQ(r.from, source::psc);
  EXPECT_EQ(r.phys, 0x1000'0000u) << "the old 4K translation, not the new superpage";
  EXPECT_EQ(t.f.sys.violations().count(), 0u);
  EXPECT_FALSE(t.f.sys.get_unit(t.u).check_coherence(*t.d, 3).ok());
  // Freeing it now is a hardware use-after-free.
  submit_and_wait(t.f.sys.get_unit(t.u), inv_descriptor::page(3, k2m, 9, true));
  t.f.free_released(t.g, "ih1-free");
  r = t.f.sys.translate(1, k2m + 0x40, pt::perm_read);
  EXPECT_GE(r.violations, 1u);
  ASSERT_GE(t.f.sys.violations().count(), 1u);
  const violation v = t.f.sys.violations().first().front();
  EXPECT_EQ(v.kind, violation_kind::free_frame);
  EXPECT_TRUE(v.via_psc);
  EXPECT_EQ(v.level, 1u);
  EXPECT_EQ(v.device, 1u);
  EXPECT_EQ(v.iova, k2m + 0x40);
  EXPECT_NE(v.freed_ns, 0u);
  EXPECT_NE(v.retired_ns, 0u);
  ASSERT_NE(v.freed_by, nullptr);
  EXPECT_STREQ(v.freed_by, "ih1-free");
  EXPECT_NE(v.describe().find("by ih1-free"), std::string::npos) << v.describe();
  EXPECT_NE(v.describe().find("via PSC"), std::string::npos) << v.describe();
  t.f.teardown();
}

// Allocates level-`level` tables of domain `dom` until frame `want` comes back (it was freed);
// returns the extra frames to free afterwards.
std::vector<mem::frame_id> realloc_frame(mem::frame_pool& pool, mem::frame_id want,
                                         std::uint16_t dom, std::uint8_t level) {
  std::vector<mem::frame_id> got;
  for (std::uint32_t i = 0; i < pool.capacity(); ++i) {
    auto f = pool.alloc_table(dom, level);
    EXPECT_TRUE(f.ok());
    if (!f.ok()) break;
    got.push_back(*f);
    if (*f == want) break;
  }
  EXPECT_FALSE(got.empty());
  EXPECT_EQ(got.back(), want) << "the freed frame was reallocated";
  return got;
}

TEST(IommuFaithful, ReusedFrameDetectedByGeneration) {
  replaced_table t;
  const mem::frame_id old_leaf = t.g.released().front();
  const std::uint32_t old_gen = t.f.pool.ident(old_leaf).generation;
  submit_and_wait(t.f.sys.get_unit(t.u), inv_descriptor::page(3, k2m, 9, true));  // IH=1: bug
  t.f.free_released(t.g, "early");
  // The frame comes back as a live level-1 table of the same domain: only the generation the
  // PSC entry cached tells it apart.
  const auto extra = realloc_frame(t.f.pool, old_leaf, 1, 1);
  const auto r = t.f.sys.translate(1, k2m, pt::perm_read);
  EXPECT_GE(r.violations, 1u);
  ASSERT_GE(t.f.sys.violations().count(), 1u);
  const violation v = t.f.sys.violations().first().front();
  EXPECT_EQ(v.kind, violation_kind::generation_changed) << v.describe();
  EXPECT_TRUE(v.has_expected_generation);
  EXPECT_EQ(v.expected_generation, old_gen);
  EXPECT_NE(v.now.generation, old_gen);
  for (auto f : extra)
    EXPECT_TRUE(t.f.pool.free_unlinked_table(f, "test").ok());
  t.f.teardown();
}

TEST(IommuFaithful, ReusedChildReachedThroughRetiredParent) {
  fixture f;
  unit_config c = zero_latency_unit();
  c.psc = {1, 1, replacement::lru, 1};  // one entry per level: the level-2 entry gets evicted
  const unsigned u = f.sys.add_unit(c);
  domain& d = f.add_domain(
      1, pt::domain_config{.mode = pt::concurrency_mode::lock_free, .coalesce = false});
  ASSERT_TRUE(f.sys.attach(1, u, d, 4).ok());
  pt::gather g;
  f.map(d, k1g, 0x1000, k4k, g);
  f.map(d, k1g + k2m, 0x2000, k4k, g);
  EXPECT_EQ(f.sys.translate(1, k1g, pt::perm_read).result, outcome::ok);
  EXPECT_EQ(f.sys.translate(1, k1g + k2m, pt::perm_read).result, outcome::ok);  // evicts PDE of k1g
  f.map(d, k1g, 0x4000'0000, k1g, g);  // releases L1, L1, L2
  ASSERT_EQ(g.released().size(), 3u);
  const mem::frame_id leaf = g.released().front();
  ASSERT_EQ(f.pool.ident(leaf).level, 1u);
  submit_and_wait(f.sys.get_unit(u), inv_descriptor::page(4, k1g, 0, true));  // IOTLB only: bug
  ASSERT_TRUE(f.pool.free(leaf, "early-child").ok());
  const auto extra = realloc_frame(f.pool, leaf, 1, 1);
  const auto r = f.sys.translate(1, k1g, pt::perm_read);
  EXPECT_GE(r.violations, 1u);
  bool seen = false;
  for (const auto& v : f.sys.violations().first())
    seen = seen || v.kind == violation_kind::reused_via_stale;
  EXPECT_TRUE(seen) << f.sys.violations().report();
  for (auto fr : extra)
    EXPECT_TRUE(f.pool.free_unlinked_table(fr, "test").ok());
  ASSERT_TRUE(f.sys.flush_sync(d, inv_range::all(), big_timeout).ok());
  for (std::size_t i = 1; i < g.released().size(); ++i)
    EXPECT_TRUE(f.pool.free(g.released()[i], "test").ok());
  g.clear();
  f.teardown();
}

TEST(IommuFaithful, FullInvalidationsLeaveNoStaleEntry) {
  const std::array<inv_descriptor, 3> fixes{inv_descriptor::page(3, k2m, 9, false),
                                            inv_descriptor::domain(3), inv_descriptor::global()};
  for (const auto& fix : fixes) {
    replaced_table t;
    submit_and_wait(t.f.sys.get_unit(t.u), fix);
    EXPECT_TRUE(t.f.sys.get_unit(t.u).check_coherence(*t.d, 3).ok()) << fix.describe();
    t.f.free_released(t.g);
    const auto r = t.f.sys.translate(1, k2m + 0x40, pt::perm_read);
    EXPECT_EQ(r.result, outcome::ok) << fix.describe();
    EXPECT_EQ(r.phys, 0x4000'0040u) << fix.describe();
    EXPECT_EQ(t.f.sys.violations().count(), 0u) << fix.describe();
    t.f.teardown();
  }
}

TEST(IommuFaithful, PsiMaskCoversExactlyTheAlignedBlock) {
  fixture f;
  const unsigned u = f.sys.add_unit(zero_latency_unit());
  domain& d = f.add_domain(1);
  ASSERT_TRUE(f.sys.attach(1, u, d, 9).ok());
  pt::gather g;
  const iova_t block = 64 * k4k * 5;  // aligned to 16 pages (am = 4)
  const std::array<iova_t, 5> pages{block - k4k, block, block + 7 * k4k, block + 15 * k4k,
                                    block + 16 * k4k};
  for (iova_t p : pages) {
    f.map(d, p, p, k4k, g);
    EXPECT_EQ(f.sys.translate(1, p, pt::perm_read).result, outcome::ok);
  }
  submit_and_wait(f.sys.get_unit(u), inv_descriptor::page(9, block, 4, true));
  std::vector<iova_t> left;
  for (const auto& e : f.sys.get_unit(u).iotlb_snapshot())
    left.push_back(e.first());
  std::sort(left.begin(), left.end());
  EXPECT_EQ(left, (std::vector<iova_t>{block - k4k, block + 16 * k4k}));
  // Misaligned address or a mask beyond max_am is refused.
  EXPECT_EQ(f.sys.get_unit(u).submit(inv_descriptor::page(9, block + k4k, 4, true)).status().code(),
            errc::invalid_argument);
  EXPECT_EQ(f.sys.get_unit(u).submit(inv_descriptor::page(9, 0, 19, true)).status().code(),
            errc::invalid_argument);
  f.teardown();
}

// VT-d §6.5.2.3 (and the IVA_REG AM field): "when invalidating mapping for a 2MB page, software
// must specify an address mask value of at least 9" (18 for 1 GiB). A PSI of one page of a
// superpage with a smaller mask need not drop its IOTLB entry, and the model keeps it.
TEST(IommuFaithful, SuperpageEntryDroppedOnlyByPsiWithMaskOfItsOrder) {
  fixture f;
  const unsigned u = f.sys.add_unit(zero_latency_unit());
  domain& d = f.add_domain(1);
  ASSERT_TRUE(f.sys.attach(1, u, d, 9).ok());
  pt::gather g;
  f.map(d, k1g, k1g, k1g, g);
  f.map(d, 4 * k2m, 4 * k2m, k2m, g);
  EXPECT_EQ(f.sys.translate(1, k1g + 5 * k4k, pt::perm_read).level, 3u);
  EXPECT_EQ(f.sys.translate(1, 4 * k2m + 5 * k4k, pt::perm_read).level, 2u);
  EXPECT_EQ(f.sys.get_unit(u).iotlb_snapshot().size(), 2u);
  unit& un = f.sys.get_unit(u);
  // Masks 0 and 8 on the 2M page, 17 on the 1G page: too small, both entries stay.
  submit_and_wait(un, inv_descriptor::page(9, k1g + 300 * k2m + 17 * k4k, 0, false));
  submit_and_wait(un, inv_descriptor::page(9, 4 * k2m + 256 * k4k, 8, false));
  submit_and_wait(un, inv_descriptor::page(9, k1g, 17, false));
  EXPECT_EQ(un.iotlb_snapshot().size(), 2u);
  for (const iotlb_entry& e : un.iotlb_snapshot())
    EXPECT_LE(e.kept_first, e.kept_last) << "a surviving entry is marked with what was asked";
  // Mask 9 drops the 2M page (and not the 1G one); mask 18 the 1G page.
  submit_and_wait(un, inv_descriptor::page(9, 4 * k2m, 9, true));
  ASSERT_EQ(un.iotlb_snapshot().size(), 1u);
  EXPECT_EQ(un.iotlb_snapshot().front().level, 3u);
  submit_and_wait(un, inv_descriptor::page(9, 0, 18, true));
  EXPECT_EQ(un.iotlb_snapshot().size(), 1u) << "block [0, 1G) does not overlap [1G, 2G)";
  submit_and_wait(un, inv_descriptor::page(9, k1g, 18, true));
  EXPECT_TRUE(un.iotlb_snapshot().empty());
  EXPECT_EQ(f.sys.violations().count(), 0u);
  f.teardown();
}

// The caller whose PSI is too small: a 4K page of a 2M superpage is unmapped (the superpage is
// split) and only that page is invalidated (mask 0). The stale 2M IOTLB entry still translates
// the unmapped page, and the walker reports it; pages still mapped alike are not findings; a
// PSI of mask 9 ends it.
TEST(IommuFaithful, StaleSuperpageAfterTooSmallPsiIsAViolation) {
  fixture f;
  const unsigned u = f.sys.add_unit(zero_latency_unit());
  domain& d = f.add_domain(1);
  ASSERT_TRUE(f.sys.attach(1, u, d, 9).ok());
  pt::gather g;
  f.map(d, 4 * k2m, 0x4000'0000, k2m, g);
  const iova_t gone = 4 * k2m + 7 * k4k;
  EXPECT_EQ(f.sys.translate(1, gone, pt::perm_read).level, 2u);
  g.clear();
  ASSERT_TRUE(f.table_of(d).unmap(gone, k4k, g).ok());
  EXPECT_EQ(g.first(), 4 * k2m) << "the split owes the whole superpage";
  unit& un = f.sys.get_unit(u);
  submit_and_wait(un, inv_descriptor::page(9, gone, 0, false));
  // Still mapped, same translation through the stale entry: harmless.
  translate_result r = f.sys.translate(1, 4 * k2m + 8 * k4k, pt::perm_read);
  EXPECT_EQ(r.result, outcome::ok);
  EXPECT_EQ(r.phys, 0x4000'0000u + 8 * k4k);
  EXPECT_EQ(f.sys.violations().count(), 0u) << f.sys.violations().report();
  // The unmapped page: the device still reaches the old frame.
  r = f.sys.translate(1, gone + 0x10, pt::perm_read);
  EXPECT_EQ(r.result, outcome::ok);
  EXPECT_EQ(r.violations, 1u);
  ASSERT_EQ(f.sys.violations().count(), 1u);
  const violation v = f.sys.violations().first().front();
  EXPECT_EQ(v.kind, violation_kind::stale_superpage) << v.describe();
  EXPECT_EQ(v.iova, gone + 0x10);
  EXPECT_EQ(v.level, 2u);
  EXPECT_EQ(v.psi_am, 0u);
  EXPECT_NE(v.describe().find("needs >= 9"), std::string::npos) << v.describe();
  // A PSI with mask 9 drops it: the page now faults and nothing more is recorded.
  submit_and_wait(un, inv_descriptor::page(9, 4 * k2m, 9, false));
  r = f.sys.translate(1, gone, pt::perm_read);
  EXPECT_EQ(r.result, outcome::fault_not_present);
  EXPECT_EQ(f.sys.violations().count(), 1u);
  f.sys.violations().clear();
  f.teardown();
}

TEST(IommuFaithful, DsiTouchesOnlyItsDidOnItsUnit) {
  fixture f;
  const unsigned u0 = f.sys.add_unit(zero_latency_unit());
  const unsigned u1 = f.sys.add_unit(zero_latency_unit());
  domain& a = f.add_domain(1);
  domain& b = f.add_domain(2);
  ASSERT_TRUE(f.sys.attach(1, u0, a, 10).ok());
  ASSERT_TRUE(f.sys.attach(2, u0, b, 20).ok());
  ASSERT_TRUE(f.sys.attach(3, u1, a, 55).ok()) << "the same domain, another did on another unit";
  EXPECT_FALSE(f.sys.attach(4, u0, b, 10).ok()) << "did 10 on unit 0 belongs to domain 1";
  EXPECT_FALSE(f.sys.attach(4, u1, a, 56).ok()) << "domain 1 already uses did 55 on unit 1";
  pt::gather g;
  f.map(a, 0, 0x100000, k4k, g);
  f.map(b, 0, 0x200000, k4k, g);
  EXPECT_EQ(f.sys.translate(1, 0, pt::perm_read).phys, 0x100000u);
  EXPECT_EQ(f.sys.translate(2, 0, pt::perm_read).phys, 0x200000u);
  EXPECT_EQ(f.sys.translate(3, 0, pt::perm_read).phys, 0x100000u);
  submit_and_wait(f.sys.get_unit(u0), inv_descriptor::domain(10));
  for (const auto& e : f.sys.get_unit(u0).iotlb_snapshot())
    EXPECT_EQ(e.did, 20u);
  for (const auto& [l, e] : f.sys.get_unit(u0).psc_snapshot())
    EXPECT_EQ(e.did, 20u);
  EXPECT_EQ(f.sys.get_unit(u0).iotlb_snapshot().size(), 1u);
  EXPECT_EQ(f.sys.get_unit(u1).iotlb_snapshot().size(), 1u) << "unit 1 untouched";
  EXPECT_EQ(f.sys.get_unit(u1).iotlb_snapshot().front().did, 55u);
  f.teardown();
}

// Linux commit 38c527aeb419 (2021): map 4K, unmap it, map a 1G superpage over the same IOVA
// without flushing the old PDE. The walk uses the stale PSC entry into the old table.
TEST(IommuFaithful, Linux38c527aeb419StalePde) {
  for (const bool fixed : {false, true}) {
    SCOPED_TRACE(fixed ? "fixed order" : "buggy order");
    fixture f;
    const unsigned u = f.sys.add_unit(zero_latency_unit());
    domain& d = f.add_domain(
        1, pt::domain_config{.mode = pt::concurrency_mode::lock_free, .coalesce = false});
    ASSERT_TRUE(f.sys.attach(1, u, d, 4).ok());
    pt::gather g;
    f.map(d, k1g, 0x7000'0000, k4k, g);
    EXPECT_EQ(f.sys.translate(1, k1g, pt::perm_read).result, outcome::ok);
    f.unmap(d, k1g, k4k, g);  // leaves the now-empty tables linked (lock-free mode)
    EXPECT_FALSE(g.nonleaf_changed());
    ASSERT_TRUE(f.sys.flush_sync(d, inv_range::from(g), big_timeout).ok());  // IH=1: leaf only
    g.clear();
    if (!fixed) {
      f.map(d, k1g, 0x8000'0000, k1g, g);  // the superpage replaces the PDPE; tables released
      EXPECT_EQ(g.released().size(), 2u);
      // No flush of the old PDE (the bug): the device walks the old tables.
      auto r = f.sys.translate(1, k1g, pt::perm_read);
      EXPECT_EQ(r.from, source::psc);
      EXPECT_EQ(r.result, outcome::fault_not_present) << "a DMA fault on a mapped IOVA";
      EXPECT_TRUE(f.table_of(d).lookup(k1g).has_value());
      EXPECT_EQ(f.sys.violations().count(), 0u) << "the old tables are still intact";
      f.free_released(g, "linux-buggy");
      r = f.sys.translate(1, k1g + k4k, pt::perm_read);
      EXPECT_GE(r.violations, 1u);
      EXPECT_GE(f.sys.violations().count(), 1u) << f.sys.violations().report();
    } else {
      f.unmap(d, k1g, k1g, g);  // clear: the whole range, so the tables go
      EXPECT_TRUE(g.nonleaf_changed());
      ASSERT_TRUE(f.sys.flush_sync(d, inv_range::from(g), big_timeout).ok());  // IH=0
      f.free_released(g);
      f.map(d, k1g, 0x8000'0000, k1g, g);
      const auto r = f.sys.translate(1, k1g + k4k, pt::perm_read);
      EXPECT_EQ(r.result, outcome::ok);
      EXPECT_EQ(r.phys, 0x8000'1000u);
      EXPECT_EQ(f.sys.violations().count(), 0u) << f.sys.violations().report();
    }
    f.teardown();
  }
}

TEST(IommuFaithful, DomainOnTwoUnitsFlushedOnOneIsCaught) {
  fixture f;
  const unsigned u0 = f.sys.add_unit(zero_latency_unit());
  const unsigned u1 = f.sys.add_unit(zero_latency_unit());
  domain& d = f.add_domain(1, pt::domain_config{.coalesce = false});
  ASSERT_TRUE(f.sys.attach(1, u0, d, 3).ok());
  ASSERT_TRUE(f.sys.attach(2, u1, d, 8).ok());
  pt::gather g;
  f.map(d, 0, 0x1000, k4k, g);
  EXPECT_EQ(f.sys.translate(1, 0, pt::perm_read).result, outcome::ok);
  EXPECT_EQ(f.sys.translate(2, 0, pt::perm_read).result, outcome::ok);
  f.map(d, 0, 0x20'0000, k2m, g);  // releases the leaf table
  submit_and_wait(f.sys.get_unit(u0), inv_descriptor::page(3, 0, 9, false));  // only unit 0
  f.free_released(g, "one-unit-flush");
  EXPECT_EQ(f.sys.translate(1, k4k, pt::perm_read).violations, 0u);
  const auto r = f.sys.translate(2, k4k, pt::perm_read);
  EXPECT_GE(r.violations, 1u);
  ASSERT_GE(f.sys.violations().count(), 1u);
  EXPECT_EQ(f.sys.violations().first().front().unit, u1);
  EXPECT_EQ(f.sys.violations().first().front().did, 8u);
  f.teardown();
}

TEST(IommuFaithful, FlushHelperCoversEveryUnit) {
  fixture f;
  const unsigned u0 = f.sys.add_unit(zero_latency_unit());
  const unsigned u1 = f.sys.add_unit(zero_latency_unit());
  domain& d = f.add_domain(1, pt::domain_config{.coalesce = false});
  ASSERT_TRUE(f.sys.attach(1, u0, d, 3).ok());
  ASSERT_TRUE(f.sys.attach(2, u1, d, 8).ok());
  pt::gather g;
  f.map(d, 0, 0x1000, k4k, g);
  EXPECT_EQ(f.sys.translate(1, 0, pt::perm_read).result, outcome::ok);
  EXPECT_EQ(f.sys.translate(2, 0, pt::perm_read).result, outcome::ok);
  f.map(d, 0, 0x20'0000, k2m, g);
  auto t = f.sys.invalidate(d, inv_range::from(g));
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->count, 2u);
  EXPECT_TRUE(f.sys.poll(*t));
  f.free_released(g);
  EXPECT_EQ(f.sys.translate(1, k4k, pt::perm_read).violations, 0u);
  EXPECT_EQ(f.sys.translate(2, k4k, pt::perm_read).violations, 0u);
  EXPECT_EQ(f.sys.violations().count(), 0u);
  EXPECT_EQ(f.sys.get_unit(u0).stats().descriptors[static_cast<int>(inv_type::page)], 1u);
  EXPECT_EQ(f.sys.get_unit(u1).stats().descriptors[static_cast<int>(inv_type::wait)], 1u);
  f.teardown();
}

TEST(IommuFaithful, CachingModeCachesNotPresentUntilInvalidated) {
  fixture f;
  unit_config c = zero_latency_unit();
  c.caching_mode = true;
  const unsigned u = f.sys.add_unit(c);
  domain& d = f.add_domain(1);
  ASSERT_TRUE(f.sys.attach(1, u, d, 3).ok());
  EXPECT_EQ(f.sys.translate(1, 5 * k4k, pt::perm_read).result, outcome::fault_not_present);
  pt::gather g;
  f.map(d, 5 * k4k, 0x9000, k4k, g);
  EXPECT_TRUE(g.empty()) << "a fresh map owes nothing under caching mode 0";
  auto r = f.sys.translate(1, 5 * k4k, pt::perm_read);
  EXPECT_EQ(r.result, outcome::fault_not_present) << "the negative entry is cached";
  EXPECT_EQ(r.from, source::iotlb);
  ASSERT_TRUE(f.sys.flush_sync(d, {5 * k4k, 6 * k4k - 1, false}, big_timeout).ok());
  r = f.sys.translate(1, 5 * k4k, pt::perm_read);
  EXPECT_EQ(r.result, outcome::ok) << "software invalidated on map";
  EXPECT_EQ(r.phys, 0x9000u);
  f.teardown();
}

// QEMU's vIOMMU (unit_config::qemu_like): caching mode 1 and a 1024-entry IOTLB. Not-present
// results are cached, so a map is not seen until software invalidates it - the reason QEMU
// requires invalidation on map.
TEST(IommuFaithful, QemuLikeUnitSeesAMapOnlyAfterItsInvalidation) {
  fixture f;
  unit_config c = unit_config::qemu_like();
  EXPECT_TRUE(c.caching_mode);
  EXPECT_EQ(c.iotlb.entries, 1024u);
  c.latency = latency_config::zero();
  const unsigned u = f.sys.add_unit(c);
  domain& d = f.add_domain(1, pt::domain_config{.coalesce = false});
  ASSERT_TRUE(f.sys.attach(1, u, d, 3).ok());
  unit& un = f.sys.get_unit(u);
  pt::gather g;
  f.map(d, 0, 0x1000, k4k, g);  // builds the tables down to the leaf table of [0, 2M)
  // 300 not-present 4K pages: 300 negative entries, more than a 64-entry IOTLB holds.
  for (unsigned p = 1; p <= 300; ++p)
    EXPECT_EQ(f.sys.translate(1, p * k4k, pt::perm_read).result, outcome::fault_not_present);
  EXPECT_EQ(un.iotlb_snapshot().size(), 300u);
  EXPECT_EQ(un.stats().iotlb_evictions, 0u);
  // Not present at level 2: one negative entry for the whole 2M region.
  EXPECT_EQ(f.sys.translate(1, 3 * k2m, pt::perm_read).level, 2u);

  g.clear();
  f.map(d, 5 * k4k, 0x9000, k4k, g);
  f.map(d, 3 * k2m + 7 * k4k, 0xa000, k4k, g);
  EXPECT_TRUE(g.empty()) << "the table owes nothing for a fresh map (caching mode 0 rule)";
  for (const iova_t iova : {5 * k4k, 3 * k2m + 7 * k4k}) {
    const auto r = f.sys.translate(1, iova, pt::perm_read);
    EXPECT_EQ(r.result, outcome::fault_not_present) << "the stale negative entry hides the map";
    EXPECT_EQ(r.from, source::iotlb);
    EXPECT_EQ(r.pte_reads, 0u);
  }
  EXPECT_FALSE(un.check_coherence(d, 3).ok());
  ASSERT_TRUE(f.sys.flush_sync(d, {5 * k4k, 6 * k4k - 1, false}, big_timeout).ok());
  EXPECT_EQ(f.sys.translate(1, 5 * k4k, pt::perm_read).phys, 0x9000u);
  EXPECT_EQ(f.sys.translate(1, 3 * k2m + 7 * k4k, pt::perm_read).result, outcome::fault_not_present)
      << "only the invalidated range is seen";
  ASSERT_TRUE(
      f.sys.flush_sync(d, {3 * k2m + 7 * k4k, 3 * k2m + 8 * k4k - 1, false}, big_timeout).ok());
  const auto r = f.sys.translate(1, 3 * k2m + 7 * k4k, pt::perm_read);
  EXPECT_EQ(r.result, outcome::ok);
  EXPECT_EQ(r.phys, 0xa000u);
  // The same sequence on a real-hardware unit (caching mode 0) sees the map at once.
  EXPECT_FALSE(unit_config{}.caching_mode);
  f.teardown();
}

// More walks than walk slots: the request the unit cannot take is outcome::busy (nothing read,
// counted), not an abort; a device retries the same request until a slot frees.
TEST(IommuWalker, OutOfWalkSlotsIsBusyAndTheDeviceRetries) {
  fixture f;
  unit_config c = zero_latency_unit();
  c.max_walks_in_flight = 2;
  const unsigned u = f.sys.add_unit(c);
  domain& d = f.add_domain(1);
  for (device_id dev : {device_id{1}, device_id{2}, device_id{3}})
    ASSERT_TRUE(f.sys.attach(dev, u, d, 1).ok());
  pt::gather g;
  f.map(d, 0, 0x10'0000, 64 * k4k, g);
  unit& un = f.sys.get_unit(u);
  walk a, b, x;
  ASSERT_FALSE(un.begin(a, 1, 0, pt::perm_read));
  ASSERT_FALSE(un.begin(b, 2, k4k, pt::perm_read));
  EXPECT_TRUE(un.begin(x, 3, 2 * k4k, pt::perm_read));
  EXPECT_EQ(x.result().result, outcome::busy);
  EXPECT_EQ(x.result().pte_reads, 0u);
  EXPECT_STREQ(outcome_name(x.result().result), "busy");
  EXPECT_EQ(un.stats().walks_busy, 1u);
  EXPECT_EQ(un.stats().walks, 2u);
  EXPECT_EQ(un.stats().faults, 0u) << "busy is not a translation fault";
  EXPECT_EQ(un.walks_in_flight(), 2u);
  EXPECT_TRUE(un.check_invariants().ok());

  // A step-wise device behind the full unit: its request does not complete, and is retried.
  device dev(f.sys, device_config{.id = 3,
                                  .pattern = access_pattern::sequential,
                                  .windows = {{8 * k4k, 8 * k4k}},
                                  .stepwise = true,
                                  .seed = 7});
  EXPECT_FALSE(dev.step());
  EXPECT_FALSE(dev.walking());
  const iova_t refused = dev.last_iova();
  EXPECT_EQ(dev.stats().busy, 1u);
  EXPECT_EQ(dev.stats().translations, 0u);
  while (!un.step(a)) {
  }
  EXPECT_EQ(a.result().result, outcome::ok);
  while (!dev.step()) {
  }
  EXPECT_EQ(dev.last_iova(), refused) << "the same request, retried";
  EXPECT_EQ(dev.last().result, outcome::ok);
  EXPECT_EQ(dev.stats().translations, 1u);
  EXPECT_EQ(dev.stats().busy, 1u);
  un.cancel(b);
  EXPECT_EQ(un.walks_in_flight(), 0u);
  EXPECT_TRUE(un.check_invariants().ok());
  f.teardown();
}

TEST(IommuFaithful, UnitWithoutOneGigPagesNarrowsTheDomain) {
  fixture f;
  unit_config c = zero_latency_unit();
  c.leaf_levels = 0b0110;
  const unsigned u0 = f.sys.add_unit(zero_latency_unit());
  const unsigned u1 = f.sys.add_unit(c);
  domain& d = f.add_domain(1);
  EXPECT_EQ(d.leaf_levels(), 0b1110u);
  ASSERT_TRUE(f.sys.attach(1, u0, d, 1).ok());
  EXPECT_EQ(d.leaf_levels(), 0b1110u);
  ASSERT_TRUE(f.sys.attach(2, u1, d, 1).ok());
  EXPECT_EQ(d.leaf_levels(), 0b0110u);
  pt::gather g;
  f.map(d, k1g, 0, k1g, g);  // the table was built for 1G: the unit lacking it faults
  EXPECT_EQ(f.sys.translate(1, k1g, pt::perm_read).result, outcome::ok);
  EXPECT_EQ(f.sys.translate(2, k1g, pt::perm_read).result, outcome::fault_invalid);
  f.teardown();
}

// An iova_source aims the device (the simulator aims at recently mapped or released ranges);
// when it declines, the device's own pattern picks from its windows. Pages only: no byte offset.
TEST(IommuDevice, ASourceAimsTheDeviceAndMayDecline) {
  fixture f;
  const unsigned u = f.sys.add_unit(zero_latency_unit());
  domain& d = f.add_domain(1);
  ASSERT_TRUE(f.sys.attach(1, u, d, 1).ok());
  pt::gather g;
  f.map(d, 0, 0, 16 * k4k, g);
  struct every_other final : iova_source {
    unsigned calls = 0;
    bool next(prng& rng, iova_t& iova) override {
      if (calls++ % 2 != 0) return false;
      iova = k1g + rng.below(4) * k4k;  // unmapped: these fault
      return true;
    }
  } src;
  device dev(f.sys, device_config{.id = 1,
                                  .pattern = access_pattern::sequential,
                                  .windows = {{0, 16 * k4k}},
                                  .seed = 3,
                                  .source = &src});
  std::uint64_t aimed = 0, window = 0;
  for (int i = 0; i < 40; ++i) {
    ASSERT_TRUE(dev.step());
    EXPECT_EQ(dev.last_iova() % k4k, 0u);
    if (dev.last_iova() >= k1g) {
      ++aimed;
      EXPECT_NE(dev.last().result, outcome::ok);
    } else {
      EXPECT_EQ(dev.last_iova(), (window % 16) * k4k) << "the window's sequence, undisturbed";
      ++window;
      EXPECT_EQ(dev.last().result, outcome::ok);
    }
  }
  EXPECT_EQ(aimed, 20u);
  EXPECT_EQ(window, 20u);
  EXPECT_EQ(src.calls, 40u);
  f.teardown();
}

TEST(IommuDevice, PatternsAreSeededAndCounted) {
  fixture f;
  const unsigned u = f.sys.add_unit(zero_latency_unit());
  domain& d = f.add_domain(1);
  ASSERT_TRUE(f.sys.attach(1, u, d, 1).ok());
  pt::gather g;
  f.map(d, 0, 0, 4 * k2m, g);
  f.map(d, k1g, 0, 64 * k4k, g);
  for (auto pat : {access_pattern::uniform, access_pattern::sequential, access_pattern::hot_set}) {
    device_config dc{
        .id = 1, .pattern = pat, .windows = {{0, 4 * k2m}, {k1g, 128 * k4k}}, .seed = 99};
    device a(f.sys, dc);
    device b(f.sys, dc);
    for (int i = 0; i < 200; ++i) {
      const bool done_a = a.step();
      const bool done_b = b.step();
      ASSERT_TRUE(done_a && done_b);
      EXPECT_EQ(a.last_iova(), b.last_iova()) << "same seed, same pattern";
    }
    const device_stats s = a.stats();
    EXPECT_EQ(s.translations, 200u);
    EXPECT_GT(s.ok, 0u);
    if (pat == access_pattern::uniform) {
      EXPECT_GT(s.faults, 0u) << "half of the second window is unmapped";
    }
    EXPECT_EQ(s.ok + s.faults, s.translations);
  }
  device_config sw{.id = 1,
                   .pattern = access_pattern::sequential,
                   .windows = {{k1g, 8 * k4k}},
                   .stepwise = true,
                   .seed = 5};
  device c(f.sys, sw);
  while (!c.step()) {
    EXPECT_TRUE(c.walking());
  }
  EXPECT_EQ(c.last().result, outcome::ok);
  EXPECT_TRUE(f.sys.get_unit(u).check_invariants().ok());
  EXPECT_EQ(f.sys.violations().count(), 0u);
  f.teardown();
}

}  // namespace
}  // namespace ptreclaim::iommu::test
