// Lazy DMA in the flush-epoch core: deferred IOVA ranges wait in their CPU's ring under the same
// stamp as the table frames of their unmap, go back to the allocator (P::free_iovas) only after
// an invalidation numbered after the unmap and covering them completed (the test platform's
// independent checker), stay within iovas_per_cpu, move with a dead CPU's batches, and are
// handed back inline when more arrive at once than the ring holds.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/rig.hpp"

namespace ptreclaim::core {
namespace {

using testing::rig;
using testing::small_config;
using testing::test_platform;

iova_range page(iova_t n) {
  return {n << 12, (n << 12) + 0xfff};
}

TEST(CoreIova, AnIovaGoesBackOnlyAfterAnInvalidationAfterItsUnmapCompleted) {
  core_config c = small_config();
  c.batch_iovas = 1;  // closed (stamped) at once
  rig<> r(c);
  const epoch_t before = r.p.invalidate(0, iova_range::whole_domain());
  EXPECT_EQ(r.retire_lazy(0, 0, {page(1)}), retire_status::queued);
  r.p.complete(0, before);
  r.fire(0);  // `before` was numbered before the unmap: the IOVA stays
  EXPECT_FALSE(r.p.iova_freed(0, page(1)));
  EXPECT_EQ(r.core.held_iovas(0), 1u);
  const epoch_t after = r.p.invalidate(0, iova_range::whole_domain());
  r.fire(0);  // in flight
  EXPECT_FALSE(r.p.iova_freed(0, page(1)));
  r.p.complete(0, after);
  r.fire(0);
  EXPECT_TRUE(r.p.iova_freed(0, page(1)));
  EXPECT_EQ(r.core.held_iovas(0), 0u);
  EXPECT_EQ(r.core.total().iovas_freed, 1u);
  EXPECT_EQ(r.p.violations(), std::vector<std::string>{});
}

// One unmap's IOVA and the tables it released share a batch, a stamp and a free; a caller's
// ranged flush that does not contain the IOVA frees neither.
TEST(CoreIova, AnUnmapsIovaAndTablesWaitForTheSameCoveringFlush) {
  core_config c = small_config();
  c.batch_frames = 8;
  rig<> r(c);
  r.retire_lazy(0, 0, {page(4)}, 2);
  EXPECT_EQ(r.core.total().batches, 1u);
  r.caller_flush(0, 0, page(5));  // does not contain page 4
  r.p.complete_all(0);
  r.fire(0);
  EXPECT_EQ(r.core.pending(), 2u);
  EXPECT_FALSE(r.p.iova_freed(0, page(4)));
  r.caller_flush(0, 0, {page(4).first, page(5).last});
  r.p.complete_all(0);
  r.fire(0);
  EXPECT_EQ(r.core.pending(), 0u);
  EXPECT_TRUE(r.p.iova_freed(0, page(4)));
  EXPECT_EQ(r.p.violations(), std::vector<std::string>{});
}

// Unmaps without table frames still make batches that close at batch_iovas and ask for a flush
// at the IOVA watermark.
TEST(CoreIova, IovaOnlyUnmapsCloseAtBatchIovasAndAskAtTheirWatermark) {
  core_config c = small_config();
  c.batch_frames = 64;
  c.iovas_per_cpu = 16;
  c.batch_iovas = 4;
  c.iova_watermark = 6;
  rig<> r(c);
  r.p.set_complete_on_poll(false);
  for (iova_t i = 0; i < 6; ++i)
    r.retire_lazy(0, 0, {page(i)});
  EXPECT_EQ(r.core.total().stamps, 1u);  // the first four made one batch
  EXPECT_EQ(r.p.invalidations(), 0u);    // 6 held: at the watermark, not over it
  r.retire_lazy(0, 0, {page(6)});
  EXPECT_EQ(r.p.invalidations(), 1u);  // over it: one full invalidation asked for
  EXPECT_TRUE(r.p.timer_armed(0));
  r.p.complete_all(0);
  r.fire(0);
  EXPECT_EQ(r.core.held_iovas(0), 0u);
  EXPECT_EQ(r.p.outstanding_iovas(), 0u);
  EXPECT_EQ(r.p.violations(), std::vector<std::string>{});
}

TEST(CoreIova, AFullIovaRingInvalidatesAndWaitsAndNeverHoldsMore) {
  core_config c = small_config();
  c.iovas_per_cpu = 4;
  c.batch_iovas = 1;
  c.iova_watermark = 100;  // capped at 2
  rig<> r(c);
  for (iova_t i = 0; i < 10; ++i) {
    EXPECT_EQ(r.retire_lazy(0, 0, {page(i)}), retire_status::queued);
    EXPECT_LE(r.core.held_iovas(0), 4u);
  }
  EXPECT_GE(r.core.stats(0).backpressure.get(), 1u);
  EXPECT_LE(r.core.stats(0).peak_iovas.get(), 4u);
  ASSERT_TRUE(r.core.drain());
  EXPECT_EQ(r.p.outstanding_iovas(), 0u);
  EXPECT_EQ(r.p.iova_frees(), 10u);
  EXPECT_EQ(r.p.violations(), std::vector<std::string>{});
}

TEST(CoreIova, MoreIovasThanTheRingHoldsGoBackInline) {
  core_config c = small_config();
  c.iovas_per_cpu = 2;
  c.batch_iovas = 2;
  rig<> r(c);
  EXPECT_EQ(r.retire_lazy(0, 0, {page(1), page(2), page(3)}, 1), retire_status::inline_freed);
  EXPECT_EQ(r.p.outstanding_iovas(), 0u);
  EXPECT_EQ(r.p.outstanding(), 0u);
  EXPECT_EQ(r.core.total().iovas_freed, 3u);
  EXPECT_EQ(r.p.violations(), std::vector<std::string>{});
}

// The dead CPU's open batch is stamped when it moves, after the unmap.
TEST(CoreIova, ADeadCpusIovasMoveToTheRunningCpuWithTheirStamps) {
  rig<> r(small_config());
  r.retire_lazy(1, 0, {page(7)}, 1);
  test_platform::set_cpu(0);
  r.p.kill_timer(1);
  EXPECT_EQ(r.core.cpu_dead(1), 1u);
  EXPECT_EQ(r.core.held_iovas(1), 0u);
  EXPECT_EQ(r.core.held_iovas(0), 1u);
  r.fire(0);  // nothing asked for yet covers it
  EXPECT_FALSE(r.p.iova_freed(0, page(7)));
  const epoch_t e = r.p.invalidate(0, iova_range::whole_domain());
  r.p.complete(0, e);
  r.fire(0);
  EXPECT_TRUE(r.p.iova_freed(0, page(7)));
  EXPECT_EQ(r.p.violations(), std::vector<std::string>{});
}

TEST(CoreIova, ABadIovaBatchBoundIsRefusedAtInit) {
  test_platform p(1, 16);
  flush_epoch_core<test_platform> core(p);
  alignas(64) static unsigned char storage[1 << 16];
  core_config c = small_config();
  c.batch_iovas = c.iovas_per_cpu + 1;
  EXPECT_EQ(core.init(c, storage, sizeof storage), init_status::bad_config);
  c.batch_iovas = 0;
  EXPECT_EQ(core.init(c, storage, sizeof storage), init_status::bad_config);
  c.iovas_per_cpu = 0;  // no IOVAs taken: batch_iovas does not matter
  EXPECT_EQ(core.init(c, storage, sizeof storage), init_status::ok);
}

}  // namespace
}  // namespace ptreclaim::core
