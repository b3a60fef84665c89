#include <gtest/gtest.h>
#include <rapidcheck.h>

#include <set>

#include "ptreclaim/base/bits.hpp"
#include "ptreclaim/base/prng.hpp"
#include "ptreclaim/base/status.hpp"

namespace ptreclaim {
namespace {

TEST(Bits, RangeAndFields) {
  EXPECT_EQ(bit_range(12, 51), 0x000ffffffffff000ULL);
  EXPECT_EQ(bit_range(0, 63), ~0ULL);
  EXPECT_EQ(field_get(0xabcULL << 9, 9, 11), 0x4ULL);  // low three bits of 0xabc
  EXPECT_EQ(field_set(0, 61, 62, 3), (1ULL << 61) | (1ULL << 62));
  EXPECT_TRUE(is_aligned(0x200000, 21));
  EXPECT_FALSE(is_aligned(0x201000, 21));
  EXPECT_EQ(log2_floor(4096), 12u);
}

TEST(Bits, CoveringBlockIsSmallestAlignedCover) {
  EXPECT_EQ(covering_block_lg2(0x1000, 0x1fff, 12), 0u);
  EXPECT_EQ(covering_block_lg2(0x200000, 0x3fffff, 12), 9u);
  EXPECT_EQ(covering_block_lg2(0x1000, 0x2fff, 12), 2u);  // crosses a 2-page boundary at 0x2000
  ASSERT_TRUE(rc::check("the block covers the range and is minimal",
                        [](std::uint32_t a, std::uint16_t len) {
                          const u64 first = u64{a} << 12;
                          const u64 last = first + (u64{len} << 12) + 0xfff;
                          const unsigned am = covering_block_lg2(first, last, 12);
                          const u64 base = align_down(first, 12 + am);
                          RC_ASSERT(base <= first);
                          RC_ASSERT(last < base + (u64{1} << (12 + am)));
                          if (am > 0) {
                            const u64 smaller = align_down(first, 12 + am - 1);
                            RC_ASSERT(last >= smaller + (u64{1} << (12 + am - 1)));
                          }
                        }));
}

TEST(Prng, SameSeedSameStreamAndForksDiffer) {
  prng a(42), b(42);
  for (int i = 0; i < 100; ++i)
    ASSERT_EQ(a.next(), b.next());
  prng c = a.fork(1), d = a.fork(2);
  EXPECT_NE(c.next(), d.next());
  std::set<std::uint64_t> seen;
  for (int i = 0; i < 1000; ++i) {
    auto v = a.below(10);
    ASSERT_LT(v, 10u);
    seen.insert(v);
  }
  EXPECT_EQ(seen.size(), 10u);
}

TEST(Status, ResultCarriesValueOrError) {
  Result<int> ok(5);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(*ok, 5);
  Result<int> bad(Status(errc::no_memory, "pool exhausted"));
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), errc::no_memory);
  EXPECT_EQ(bad.status().to_string(), "no_memory: pool exhausted");
}

TEST(StatusDeathTest, ValueOfFailedResultAborts) {
  Result<int> bad(errc::busy);
  EXPECT_DEATH((void)bad.value(), "value\\(\\) of a failed Result");
}

}  // namespace
}  // namespace ptreclaim

#include "ptreclaim/base/histogram.hpp"

namespace ptreclaim {
namespace {

TEST(LogHistogram, PercentilesWithinOneSixteenth) {
  log_histogram h;
  for (std::uint64_t v = 1; v <= 10000; ++v)
    h.record(v);
  EXPECT_EQ(h.count(), 10000u);
  EXPECT_EQ(h.max(), 10000u);
  EXPECT_EQ(h.min(), 1u);
  const std::uint64_t p50 = h.percentile(0.5), p99 = h.percentile(0.99);
  EXPECT_GE(p50, 5000u);
  EXPECT_LE(p50, 5000u + 5000u / 16 + 1);
  EXPECT_GE(p99, 9900u);
  EXPECT_LE(p99, 10000u);
  EXPECT_EQ(h.percentile(1.0), 10000u);
  log_histogram other;
  other.record(1u << 20);
  h.merge(other);
  EXPECT_EQ(h.max(), 1u << 20);
}

TEST(LogHistogram, BucketEdgesTileTheRange) {
  for (unsigned i = 0; i + 1 < log_histogram::bucket_count; ++i) {
    ASSERT_EQ(log_histogram::bucket_upper(i) + 1, log_histogram::bucket_lower(i + 1)) << i;
    ASSERT_LE(log_histogram::bucket_lower(i), log_histogram::bucket_upper(i)) << i;
  }
  ASSERT_TRUE(rc::check("a value lands in the bucket whose edges contain it", [](std::uint64_t v) {
    log_histogram h;
    h.record(v);
    for (unsigned i = 0; i < log_histogram::bucket_count; ++i) {
      if (h.bucket(i) != 0) {
        RC_ASSERT(log_histogram::bucket_lower(i) <= v);
        RC_ASSERT(v <= log_histogram::bucket_upper(i));
      }
    }
  }));
}

}  // namespace
}  // namespace ptreclaim
