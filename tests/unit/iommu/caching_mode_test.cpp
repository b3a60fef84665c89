// Caching mode (VT-d CAP.CM): a unit may cache "not present". A device that faulted on an IOVA
// keeps faulting on it after software maps it, until the mapping caller invalidates the mapped
// range (reclaim::invalidate_after_map, what the simulator's callers do on map for such units,
// as Linux does under cap_caching_mode).
#include <gtest/gtest.h>

#include "iommu_fixture.hpp"
#include "ptreclaim/reclaim/iommu_backend.hpp"
#include "ptreclaim/reclaim/reclaimer.hpp"

namespace ptreclaim::iommu::test {
namespace {

constexpr std::uint64_t big_timeout = 1'000'000'000;
constexpr iova_t faulted = 5 * k4k;
constexpr std::uint64_t phys = 0x9000;

// A caching-mode unit, device 1 on domain 1 (did 3), a page mapped at 0 so the leaf table of
// `faulted` exists, and the device's fault on `faulted` cached as a negative IOTLB entry.
struct caching_unit {
  fixture f;
  domain* d = nullptr;
  unsigned u = 0;
  reclaim::iommu_backend backend{f.sys};

  caching_unit() {
    unit_config c = zero_latency_unit();
    c.caching_mode = true;
    u = f.sys.add_unit(c);
    d = &f.add_domain(1);
    PTR_ASSERT(f.sys.attach(1, u, *d, 3).ok());
    pt::gather g;
    f.map(*d, 0, 0x1000, k4k, g);
    const translate_result r = f.sys.translate(1, faulted, pt::perm_read);
    EXPECT_EQ(r.result, outcome::fault_not_present);
  }
  // Maps `faulted`; the gather owes no invalidation range but records the map.
  pt::gather map_faulted() {
    pt::gather g;
    f.map(*d, faulted, phys, k4k, g);
    EXPECT_TRUE(g.empty()) << "filling empty entries changes no cached translation";
    EXPECT_TRUE(g.mapped_any());
    EXPECT_EQ(g.mapped_first(), faulted);
    EXPECT_EQ(g.mapped_last(), faulted + k4k - 1);
    return g;
  }
  ~caching_unit() { f.teardown(); }
};

TEST(IommuCachingMode, AfterTheMapFlushAFaultedDeviceTranslatesTheMappedAddress) {
  caching_unit t;
  const pt::gather g = t.map_faulted();
  auto e = reclaim::invalidate_after_map(t.backend, 1, g, big_timeout);
  ASSERT_TRUE(e.ok()) << e.status().to_string();
  EXPECT_GT(*e, 0u);
  const translate_result r = t.f.sys.translate(1, faulted + 0x40, pt::perm_read);
  EXPECT_EQ(r.result, outcome::ok) << "the map flush dropped the negative entry";
  EXPECT_EQ(r.phys, phys + 0x40);
  EXPECT_TRUE(t.f.sys.get_unit(t.u).check_coherence(*t.d, 3).ok());
}

TEST(IommuCachingMode, WithoutTheMapFlushTheNegativeEntryPersists) {
  caching_unit t;
  (void)t.map_faulted();
  for (int i = 0; i < 3; ++i) {
    const translate_result r = t.f.sys.translate(1, faulted, pt::perm_read);
    EXPECT_EQ(r.result, outcome::fault_not_present);
    EXPECT_EQ(r.from, source::iotlb) << "the stale negative entry answers";
  }
  EXPECT_FALSE(t.f.sys.get_unit(t.u).check_coherence(*t.d, 3).ok());
  // A gather that mapped nothing owes no map flush.
  pt::gather none;
  auto e = reclaim::invalidate_after_map(t.backend, 1, none, big_timeout);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(*e, 0u);
  EXPECT_EQ(t.f.sys.translate(1, faulted, pt::perm_read).result, outcome::fault_not_present);
}

}  // namespace
}  // namespace ptreclaim::iommu::test
