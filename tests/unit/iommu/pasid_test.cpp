// Multi-PASID SVA with ATS device TLBs: cache entries tagged by (did, PASID), PASID-selective
// invalidation (P_IOTLB), the device TLB's fill, invalidation and latency, the flush helper's
// per-PASID and per-device descriptors under iommu_sva_lock, and the checks that catch a flush
// that leaves a PASID or the device TLB out.
#include <gtest/gtest.h>

#include <array>

#include "iommu_fixture.hpp"
#include "ptreclaim/base/bits.hpp"
#include "ptreclaim/iommu/device.hpp"

namespace ptreclaim::iommu::test {
namespace {

constexpr std::uint64_t big_timeout = 1'000'000'000;
constexpr hw_domain_id did = 42;
constexpr device_id dev_id = 7;

TEST(IommuPasid, IotlbAndPscEntriesAreTaggedByPasid) {
  iotlb t({16, 4, replacement::lru, 1});
  iotlb_entry e{true, false, 1, pt::perm_rw, did, 5, 0x1000};
  e.pasid = 1;
  t.insert(e);
  e.pasid = 2;
  e.phys_base = 0x2000;
  t.insert(e);
  EXPECT_EQ(t.size(), 2u) << "the same page under two PASIDs is two entries";
  EXPECT_EQ(t.lookup(did, 5 << 12, 0b10, 1)->phys_base, 0x1000u);
  EXPECT_EQ(t.lookup(did, 5 << 12, 0b10, 2)->phys_base, 0x2000u);
  EXPECT_FALSE(t.lookup(did, 5 << 12, 0b10)) << "a request without PASID misses both";
  EXPECT_EQ(t.invalidate_page_selective(did, 5 << 12, (6 << 12) - 1, 0, 1), 1u);
  EXPECT_FALSE(t.lookup(did, 5 << 12, 0b10, 1));
  EXPECT_TRUE(t.lookup(did, 5 << 12, 0b10, 2)) << "a P_IOTLB of PASID 1 leaves PASID 2";
  EXPECT_EQ(t.invalidate_page_selective(did, 5 << 12, (6 << 12) - 1, 0), 0u)
      << "a PSI without PASID leaves PASID entries";
  EXPECT_EQ(t.invalidate_domain(did), 1u) << "a DSI drops every PASID";
  EXPECT_TRUE(t.check_invariants().ok());

  psc p({16, 4, replacement::lru, 1});
  psc_entry pe{true, pt::perm_rw, did, 0, mem::frame_id{10}, 1};
  pe.pasid = 1;
  p.insert(2, pe);
  pe.pasid = 3;
  pe.next = mem::frame_id{11};
  p.insert(2, pe);
  EXPECT_EQ(p.lookup_deepest(did, 0x1000, 4, 3)->entry.next.value, 11u);
  EXPECT_EQ(p.invalidate_range(did, 0, k2m - 1, 3), 1u);
  EXPECT_FALSE(p.lookup_deepest(did, 0x1000, 4, 3));
  EXPECT_TRUE(p.lookup_deepest(did, 0x1000, 4, 1));
  EXPECT_TRUE(p.check_invariants().ok());
}

TEST(IommuPasid, SubmitValidatesPasidAndDeviceTlbDescriptors) {
  fixture f;
  unit& u = f.sys.get_unit(f.sys.add_unit(zero_latency_unit()));
  EXPECT_FALSE(u.submit(inv_descriptor::pasid_page(did, max_pasid + 1, 0, 0, false)).ok());
  EXPECT_TRUE(u.submit(inv_descriptor::pasid_page(did, 1, 0, 52, false)).ok())
      << "PASID-selective granularity is allowed beyond max_am";
  EXPECT_FALSE(u.submit(inv_descriptor::pasid_page(did, 1, k4k, 40, false)).ok());
  EXPECT_FALSE(u.submit(inv_descriptor::devtlb(dev_id, k4k, 1)).ok()) << "misaligned block";
  EXPECT_TRUE(u.submit(inv_descriptor::devtlb(dev_id, 0, 9)).ok());
  EXPECT_NE(inv_descriptor::pasid_page(did, 3, 0, 0, false).describe().find("P_IOTLB"),
            std::string::npos);
}

TEST(IommuPasid, AttachRejectsBadPasidsAndTooManyAtsDevices) {
  fixture f;
  const unsigned u = f.sys.add_unit(zero_latency_unit());
  domain& d = f.add_domain(1);
  const std::array<pasid_t, 1> zero{0}, big{max_pasid + 1};
  EXPECT_FALSE(f.sys.attach(1, u, d, did, zero).ok());
  EXPECT_FALSE(f.sys.attach(1, u, d, did, big).ok());
  std::vector<std::unique_ptr<devtlb>> tlbs;
  const std::array<pasid_t, 1> one{1};
  for (unsigned i = 0; i <= max_ats_per_unit; ++i) {
    tlbs.push_back(std::make_unique<devtlb>(cache_config{}));
    const Status s =
        f.sys.attach(static_cast<device_id>(10 + i), u, d, did, one, tlbs.back().get());
    EXPECT_EQ(s.ok(), i < max_ats_per_unit) << s.to_string();
  }
  EXPECT_TRUE(d.sva());
  for (unsigned i = 0; i < max_ats_per_unit; ++i)
    ASSERT_TRUE(f.sys.detach(static_cast<device_id>(10 + i)).ok());
  f.teardown();
}

// One unit, one SVA device with PASIDs 1 and 2 and ATS, reading one page round-robin under
// both PASIDs. Latencies zero except the device-TLB invalidation's.
struct sva_rig {
  explicit sva_rig(std::uint64_t devtlb_ns = 0) : f(plat) {
    unit_config uc = zero_latency_unit();
    uc.latency.inv_devtlb_ns = devtlb_ns;
    uc.max_am = 52;  // one P_IOTLB covers what an unmap releases, up to the root entry
    u = f.sys.add_unit(uc);
    d = &f.add_domain(1);
    device_config dc;
    dc.id = dev_id;
    dc.pattern = access_pattern::sequential;
    dc.windows = {{page, k4k}};
    dc.pasids = {1, 2};
    dc.ats = true;
    dev = std::make_unique<device>(f.sys, dc);
    PTR_ASSERT(f.sys.attach(dev_id, u, *d, did, dc.pasids, dev->ats()).ok());
    pt::gather g;
    f.map(*d, page, 0x5000'0000, k4k, g);
  }
  ~sva_rig() {
    dev.reset();
    f.teardown();
  }
  // Two requests: one per PASID.
  void use_both() {
    EXPECT_TRUE(dev->step());
    EXPECT_TRUE(dev->step());
  }
  // Unmaps the page (its leaf table goes too) and returns what that released.
  pt::gather unmap() {
    pt::gather g;
    f.unmap(*d, page, k4k, g);
    return g;
  }
  // Unmaps, flushes as the flush helper would but leaving out PASID 2's P_IOTLB or the
  // device-TLB invalidation if asked, waits, and frees what the unmap released.
  void unmap_and_flush_by_hand(bool pasid2, bool with_devtlb) {
    pt::gather g = unmap();
    const unsigned am = covering_block_lg2(g.first(), g.last(), 12);
    const iova_t base = align_down(g.first(), 12 + am);
    std::vector<inv_descriptor> v{inv_descriptor::pasid_page(did, 1, base, am, false)};
    if (pasid2) v.push_back(inv_descriptor::pasid_page(did, 2, base, am, false));
    if (with_devtlb) v.push_back(inv_descriptor::devtlb(dev_id, base, am));
    v.push_back(inv_descriptor::wait());
    submit(v);
    f.free_released(g);
  }
  void submit(std::vector<inv_descriptor> v) {
    auto seq = f.sys.get_unit(u).submit(std::span<const inv_descriptor>(v));
    ASSERT_TRUE(seq.ok()) << seq.status().to_string();
    ASSERT_TRUE(
        plat.wait_until([&] { return f.sys.get_unit(u).poll(*seq + v.size() - 1); }, big_timeout));
  }

  static constexpr iova_t page = 3 * k2m;
  manual_platform plat;
  fixture f;
  unsigned u = 0;
  domain* d = nullptr;
  std::unique_ptr<device> dev;
};

TEST(IommuPasid, DeviceTlbFillsAndAnswersWithoutTheIommu) {
  sva_rig r;
  r.use_both();
  EXPECT_EQ(r.dev->last().from, source::walk) << "PASID 2's first request walks: its own tag";
  const auto snap = r.f.sys.get_unit(r.u).iotlb_snapshot();
  ASSERT_EQ(snap.size(), 2u);
  EXPECT_NE(snap[0].pasid, snap[1].pasid);
  EXPECT_EQ(r.dev->ats()->size(), 2u);
  const std::uint64_t unit_before = r.f.sys.get_unit(r.u).stats().translations;
  r.use_both();
  EXPECT_EQ(r.dev->last().from, source::devtlb);
  EXPECT_EQ(r.dev->last().phys, 0x5000'0000u);
  EXPECT_EQ(r.f.sys.get_unit(r.u).stats().translations, unit_before)
      << "a device-TLB hit never reaches the IOMMU";
  EXPECT_EQ(r.dev->stats().devtlb_hits, 2u);
}

TEST(IommuPasid, TheSvaFlushSendsAPiotlbPerPasidThenTheDeviceTlbAndWaitsForIt) {
  sva_rig r(/*devtlb_ns=*/3000);
  r.use_both();
  pt::gather g = r.unmap();
  const std::uint64_t t0 = r.plat.now_ns();
  Result<ticket> t = r.f.sys.invalidate(*r.d, inv_range::from(g));
  ASSERT_TRUE(t.ok()) << t.status().to_string();
  EXPECT_TRUE(r.f.sys.poll(*t)) << "an SVA flush returns complete (iommu_sva_lock held)";
  EXPECT_GE(r.plat.now_ns() - t0, 3000u) << "the wait waited for the device's answer";
  const unit_stats s = r.f.sys.get_unit(r.u).stats();
  EXPECT_EQ(s.descriptors[static_cast<std::size_t>(inv_type::page)], 2u);
  EXPECT_EQ(s.descriptors[static_cast<std::size_t>(inv_type::devtlb)], 1u);
  EXPECT_EQ(s.descriptors[static_cast<std::size_t>(inv_type::domain)], 0u);
  EXPECT_EQ(r.dev->ats()->size(), 0u);
  EXPECT_EQ(r.dev->ats()->stats().dropped, 2u);
  r.f.free_released(g);
  r.use_both();
  EXPECT_EQ(r.dev->last().result, outcome::fault_not_present);
  EXPECT_EQ(r.f.sys.violations().count(), 0u) << r.f.sys.violations().report();
}

TEST(IommuPasid, AFillOvertakenByADeviceTlbInvalidationIsDropped) {
  sva_rig r;
  devtlb& tlb = *r.dev->ats();
  const std::uint64_t gen = tlb.generation();
  tlb.invalidate(0, ~iova_t{0});
  devtlb_entry e;
  e.did = did;
  e.pasid = 1;
  e.vpn = 5;
  e.perms = pt::perm_rw;
  tlb.fill(e, gen);
  EXPECT_EQ(tlb.size(), 0u);
  EXPECT_EQ(tlb.stats().fills_dropped, 1u);
  tlb.fill(e, tlb.generation());
  EXPECT_EQ(tlb.size(), 1u);
}

TEST(IommuPasid, AFlushWithoutTheDeviceTlbInvalidationIsCaughtWhenTheDeviceUsesIt) {
  sva_rig r;
  r.use_both();
  r.unmap_and_flush_by_hand(/*pasid2=*/true, /*devtlb=*/false);
  EXPECT_EQ(r.f.sys.violations().count(), 0u) << "nothing used yet";
  EXPECT_TRUE(r.dev->step());
  EXPECT_EQ(r.dev->last().from, source::devtlb);
  ASSERT_EQ(r.f.sys.violations().count(), 1u);
  const violation v = r.f.sys.violations().first().front();
  EXPECT_EQ(v.kind, violation_kind::stale_devtlb);
  EXPECT_EQ(v.pasid, 1u);
  EXPECT_NE(v.describe().find("without a device-TLB invalidation"), std::string::npos);
  r.f.sys.violations().clear();
  r.submit({inv_descriptor::devtlb(dev_id, 0, 52), inv_descriptor::wait()});
}

TEST(IommuPasid, AFlushMissingOnePasidLeavesAStalePointerTheWalkCatches) {
  sva_rig r;
  r.use_both();
  r.unmap_and_flush_by_hand(/*pasid2=*/false, /*devtlb=*/true);
  unit& un = r.f.sys.get_unit(r.u);
  EXPECT_FALSE(un.check_coherence(*r.d, did).ok()) << "PASID 2's entries outlived the flush";
  EXPECT_EQ(un.translate(dev_id, r.page + k4k, pt::perm_read, 1).result, outcome::fault_not_present)
      << "PASID 1 walks from the root";
  EXPECT_EQ(r.f.sys.violations().count(), 0u);
  // PASID 2 resumes at its stale paging-structure entry: the freed leaf table.
  EXPECT_EQ(un.translate(dev_id, r.page + k4k, pt::perm_read, 2).from, source::psc);
  ASSERT_GE(r.f.sys.violations().count(), 1u);
  EXPECT_EQ(r.f.sys.violations().first().front().kind, violation_kind::free_frame);
  r.f.sys.violations().clear();
}

}  // namespace
}  // namespace ptreclaim::iommu::test
