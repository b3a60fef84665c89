// The safety monitor judges by what the hardware did, not by what software asked for: it learns
// unlinks from the page tables and invalidations from the units' processed descriptors. Each
// test unlinks a real table (map then unmap a 4 KiB page: the leaf table empties and is
// released with the span of its parent entry, 2 MiB) and drives the IOMMU units by hand.
#include <gtest/gtest.h>

#include <array>
#include <memory>

#include "ptreclaim/base/bits.hpp"
#include "ptreclaim/iommu/system.hpp"
#include "ptreclaim/mem/frame_pool.hpp"
#include "ptreclaim/pt/table.hpp"
#include "ptreclaim/reclaim/iommu_backend.hpp"
#include "ptreclaim/reclaim/safety_monitor.hpp"

namespace ptreclaim::reclaim {
namespace {

constexpr std::uint64_t k2m = std::uint64_t{2} << 20;
constexpr std::uint64_t timeout_ns = 1'000'000'000;
constexpr domain_number dom_id = 1;
constexpr iommu::hw_domain_id did = 7;

class MonitorTest : public ::testing::Test {
 protected:
  explicit MonitorTest(unsigned max_am = 18) {
    iommu::unit_config uc;
    uc.latency = iommu::latency_config::zero();
    uc.max_am = max_am;
    sys_.add_unit(uc);
    sys_.add_unit(uc);
    pt::domain_config dc{.domain = dom_id, .on_unlink = &mon_};
    auto t = pt::make_table(pt::format_kind::vtd_ss_4, dc, pool_);
    PTR_ASSERT(t.ok());
    table_ = std::move(t.value());
    dom_ = *sys_.create_domain(
        {dom_id, &table_->format(), table_->root(), table_->config().leaf_levels});
  }

  void attach(unsigned unit) {
    ASSERT_TRUE(sys_.attach(static_cast<iommu::device_id>(unit + 1), unit, *dom_, did).ok());
  }

  // Maps and unmaps one 4 KiB page at `base`, retires what that released to the monitor; returns
  // the released frames (the leaf table first, its parents after it as they empty).
  std::vector<mem::frame_id> unlink_at(std::uint64_t base) {
    pt::gather g;
    EXPECT_TRUE(table_->map(base, std::uint64_t{1} << 32, 4096, pt::perm_read, g).ok());
    g.clear();
    EXPECT_TRUE(table_->unmap(base, 4096, g).ok());
    EXPECT_FALSE(g.released().empty());
    for (mem::frame_id f : g.released())
      mon_.on_retire(dom_id, f, invalidation_range::of(g));
    owed_ = invalidation_range::of(g);
    return g.released();
  }

  // Submits descriptors to one unit directly and lets it process them.
  void submit(unsigned unit, std::initializer_list<iommu::inv_descriptor> descs) {
    std::vector<iommu::inv_descriptor> v(descs);
    ASSERT_TRUE(sys_.get_unit(unit).submit(std::span<const iommu::inv_descriptor>(v)).ok());
    sys_.get_unit(unit).advance();
  }

  void free_all(const std::vector<mem::frame_id>& frames) {
    for (mem::frame_id f : frames)
      mon_.on_free(f, "test");
  }

  [[nodiscard]] std::string first_violation() const {
    const auto r = mon_.result();
    return r.first.empty() ? std::string() : r.first.front();
  }

  mem::frame_pool pool_{mem::pool_config{.capacity_frames = 256, .caches = 1}};
  iommu::system sys_{pool_};
  iommu_backend backend_{sys_};
  safety_monitor mon_{sys_, backend_, 1024};
  std::unique_ptr<pt::table> table_;
  iommu::domain* dom_ = nullptr;
  invalidation_range owed_;  // what the last unlink_at's gather owes
};

TEST_F(MonitorTest, AFreeAfterACoveringFlushOnEveryUnitIsClean) {
  attach(0);
  attach(1);
  const auto frames = unlink_at(0);
  // The leaf table (span 2 MiB) and its emptied parents (1 GiB, 512 GiB): the gather's range.
  ASSERT_EQ(frames.size(), 3u);
  ASSERT_TRUE(sys_.flush_sync(*dom_, {owed_.first, owed_.last, true}, timeout_ns).ok());
  free_all(frames);
  EXPECT_TRUE(mon_.result().ok()) << first_violation();
  EXPECT_EQ(mon_.result().freed, frames.size());
  EXPECT_EQ(mon_.pending(), 0u);
}

// The case that fooled the old monitor: callers that batch flushes ask for one range spanning
// far-apart regions; the model turns it into a domain-selective invalidation (AM beyond
// max_am), which covers every frame of the domain. Judged by the requested range, the free
// looked early; by what the units did, it is safe.
class WidenedMonitorTest : public MonitorTest {
 protected:
  WidenedMonitorTest() : MonitorTest(/*max_am=*/9) {}
};

TEST_F(WidenedMonitorTest, ARangeTheHardwareWidenedToTheDomainCoversFramesOutsideIt) {
  attach(0);
  attach(1);
  const auto frames = unlink_at(std::uint64_t{2} << 30);  // at 2 GiB
  // Requested: [0, 1 GiB + 2 MiB), which does not contain the frame's span; the block it needs
  // is beyond max_am = 9, so each unit gets a DSI.
  Result<epoch_t> e = mon_.invalidate(dom_id, {0, (std::uint64_t{1} << 30) + k2m - 1, true});
  ASSERT_TRUE(e.ok());
  ASSERT_TRUE(mon_.wait(dom_id, *e, timeout_ns));
  EXPECT_EQ(sys_.get_unit(0).stats().descriptors[static_cast<std::size_t>(iommu::inv_type::domain)],
            1u);
  free_all(frames);
  EXPECT_TRUE(mon_.result().ok()) << first_violation();
}

TEST_F(MonitorTest, APageSelectiveFlushOfAnotherRangeDoesNotCover) {
  attach(0);
  const auto frames = unlink_at(0);
  ASSERT_TRUE(sys_.flush_sync(*dom_, {k2m, 2 * k2m - 1, true}, timeout_ns).ok());
  free_all(frames);
  const auto r = mon_.result();
  EXPECT_EQ(r.s3_violations, frames.size());
  EXPECT_NE(first_violation().find("no non-leaf invalidation covering [0x0, 0x1fffff]"),
            std::string::npos)
      << first_violation();
}

TEST_F(MonitorTest, APageSelectiveFlushThatCoversOnlyPartOfTheSpanDoesNotCover) {
  attach(0);
  const auto frames = unlink_at(0);
  // The leaf table's span is 2 MiB; a 4 KiB PSI inside it is not enough for this checker.
  submit(0, {iommu::inv_descriptor::page(did, 0, 0, false), iommu::inv_descriptor::wait()});
  mon_.on_free(frames.front(), "test");
  EXPECT_EQ(mon_.result().s3_violations, 1u) << first_violation();
}

TEST_F(MonitorTest, ALeafOnlyFlushDoesNotCover) {
  attach(0);
  const auto frames = unlink_at(0);
  submit(0, {iommu::inv_descriptor::page(did, 0, 9, /*ih=*/true), iommu::inv_descriptor::wait()});
  mon_.on_free(frames.front(), "test");
  EXPECT_EQ(mon_.result().s3_violations, 1u) << first_violation();
}

TEST_F(MonitorTest, AFlushOfAnotherDidDoesNotCover) {
  attach(0);
  const auto frames = unlink_at(0);
  submit(0, {iommu::inv_descriptor::domain(did + 1), iommu::inv_descriptor::wait()});
  mon_.on_free(frames.front(), "test");
  EXPECT_EQ(mon_.result().s3_violations, 1u) << first_violation();
}

TEST_F(MonitorTest, AGlobalFlushCovers) {
  attach(0);
  const auto frames = unlink_at(0);
  submit(0, {iommu::inv_descriptor::global(), iommu::inv_descriptor::wait()});
  free_all(frames);
  EXPECT_TRUE(mon_.result().ok()) << first_violation();
}

TEST_F(MonitorTest, ACoveringFlushWithoutACompletedWaitBehindItDoesNotCount) {
  attach(0);
  const auto frames = unlink_at(0);
  submit(0, {iommu::inv_descriptor::domain(did)});
  mon_.on_free(frames.front(), "test");
  EXPECT_EQ(mon_.result().s3_violations, 1u);
  EXPECT_NE(first_violation().find("no wait behind it completed"), std::string::npos)
      << first_violation();
}

TEST_F(MonitorTest, AFlushSubmittedBeforeTheUnlinkDoesNotCoverEvenIfProcessedAfter) {
  attach(0);
  // Queued before the unlink; the unit processes lazily, so it takes effect after it.
  std::vector<iommu::inv_descriptor> v{iommu::inv_descriptor::domain(did),
                                       iommu::inv_descriptor::wait()};
  ASSERT_TRUE(sys_.get_unit(0).submit(std::span<const iommu::inv_descriptor>(v)).ok());
  const auto frames = unlink_at(0);
  sys_.get_unit(0).advance();
  mon_.on_free(frames.front(), "test");
  EXPECT_EQ(mon_.result().s3_violations, 1u) << first_violation();
}

TEST_F(MonitorTest, EveryUnitAttachedAtTheUnlinkMustBeCovered) {
  attach(0);
  attach(1);
  const auto frames = unlink_at(0);
  submit(0, {iommu::inv_descriptor::domain(did), iommu::inv_descriptor::wait()});
  mon_.on_free(frames.front(), "test");
  EXPECT_EQ(mon_.result().s3_violations, 1u);
  EXPECT_NE(first_violation().find("on IOMMU 1"), std::string::npos) << first_violation();
}

TEST_F(MonitorTest, AUnitAttachedAfterTheUnlinkNeverSawTheFrame) {
  attach(0);
  const auto frames = unlink_at(0);
  submit(0, {iommu::inv_descriptor::domain(did), iommu::inv_descriptor::wait()});
  attach(1);
  free_all(frames);
  EXPECT_TRUE(mon_.result().ok()) << first_violation();
}

TEST_F(MonitorTest, ARetireOfAFrameThePageTablesNeverUnlinkedIsAnS2Finding) {
  attach(0);
  auto f = pool_.alloc_table(dom_id, 1);
  ASSERT_TRUE(f.ok());
  mon_.on_retire(dom_id, *f, invalidation_range::whole_domain());
  EXPECT_EQ(mon_.result().s2_violations, 1u);
  EXPECT_NE(first_violation().find("never unlinked"), std::string::npos) << first_violation();
}

TEST_F(MonitorTest, ADoubleFreeIsAnS2Finding) {
  attach(0);
  const auto frames = unlink_at(0);
  submit(0, {iommu::inv_descriptor::global(), iommu::inv_descriptor::wait()});
  mon_.on_free(frames.front(), "test");
  mon_.on_free(frames.front(), "test");
  EXPECT_EQ(mon_.result().s2_violations, 1u);
  EXPECT_EQ(mon_.result().s3_violations, 0u);
}

// A subtree unlinked by one store (a superpage mapped over a table): every frame of it reports
// the span of the replaced entry, so a flush of only a child's own span does not cover it.
TEST_F(MonitorTest, FramesOfASubtreeUnlinkedAtOnceNeedTheWholeSubtreeSpan) {
  attach(0);
  pt::gather g;
  const std::uint64_t gib = std::uint64_t{1} << 30;
  ASSERT_TRUE(table_->map(gib, std::uint64_t{1} << 33, 4096, pt::perm_read, g).ok());
  g.clear();
  // A 1 GiB superpage over the level-2 table and its level-1 child.
  ASSERT_TRUE(table_->map(gib, std::uint64_t{1} << 34, gib, pt::perm_read, g).ok());
  ASSERT_EQ(g.released().size(), 2u);
  for (mem::frame_id f : g.released())
    mon_.on_retire(dom_id, f, invalidation_range::of(g));
  // The level-1 child's own 2 MiB span, flushed: not enough, a stale pointer to the level-2
  // table still leads to it.
  submit(0, {iommu::inv_descriptor::page(did, gib, 9, false), iommu::inv_descriptor::wait()});
  mon_.on_free(g.released().front(), "test");
  EXPECT_EQ(mon_.result().s3_violations, 1u) << first_violation();
  submit(0, {iommu::inv_descriptor::page(did, gib, 18, false), iommu::inv_descriptor::wait()});
  mon_.on_free(g.released().back(), "test");
  EXPECT_EQ(mon_.result().s3_violations, 1u) << first_violation();
}

// SVA: PASIDs 1 and 2 are bound on unit 0, so the caches hold entries per PASID and each needs
// its own P_IOTLB (or a DSI). The flush helper sends both; a flush that leaves one out is caught.
class PasidMonitorTest : public MonitorTest {
 protected:
  PasidMonitorTest() : MonitorTest(/*max_am=*/52) {}  // one PSI/P_IOTLB covers the 512 GiB span
  void attach_pasids() {
    const std::array<iommu::pasid_t, 2> pasids{1, 2};
    ASSERT_TRUE(sys_.attach(1, 0, *dom_, did, pasids).ok());
  }
};

TEST_F(PasidMonitorTest, TheFlushHelperCoversEveryBoundPasid) {
  attach_pasids();
  const auto frames = unlink_at(0);
  ASSERT_TRUE(sys_.flush_sync(*dom_, {owed_.first, owed_.last, true}, timeout_ns).ok());
  const auto st = sys_.get_unit(0).stats();
  EXPECT_EQ(st.descriptors[static_cast<std::size_t>(iommu::inv_type::page)], 2u)
      << "one P_IOTLB per bound PASID, no PSI without PASID";
  free_all(frames);
  EXPECT_TRUE(mon_.result().ok()) << first_violation();
}

TEST_F(PasidMonitorTest, AFlushMissingOnePasidIsCaught) {
  attach_pasids();
  const auto frames = unlink_at(0);
  const unsigned am = covering_block_lg2(owed_.first, owed_.last, 12);
  submit(0,
         {iommu::inv_descriptor::pasid_page(did, 1, 0, am, false), iommu::inv_descriptor::wait()});
  free_all(frames);
  EXPECT_EQ(mon_.result().s3_violations, frames.size());
  EXPECT_NE(first_violation().find("(PASID 2 not covered)"), std::string::npos)
      << first_violation();
}

TEST_F(PasidMonitorTest, APsiWithoutPasidDoesNotCoverPasidEntries) {
  attach_pasids();
  const auto frames = unlink_at(0);
  const unsigned am = covering_block_lg2(owed_.first, owed_.last, 12);
  submit(0, {iommu::inv_descriptor::page(did, 0, am, false), iommu::inv_descriptor::wait()});
  free_all(frames);
  EXPECT_EQ(mon_.result().s3_violations, frames.size()) << first_violation();
}

}  // namespace
}  // namespace ptreclaim::reclaim
