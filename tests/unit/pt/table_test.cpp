// Scenario tests of the generic table (VT-d 4-level, the format the demo uses): coalescing,
// shattering, overmap, empty-table release, gathers, fault injection, the ledger.
#include "ptreclaim/pt/table.hpp"

#include <gtest/gtest.h>

#include <vector>

#include "ptreclaim/mem/frame_pool.hpp"

namespace ptreclaim::pt {
namespace {

constexpr std::uint64_t k4k = 4096;
constexpr std::uint64_t k2m = 2ull << 20;
constexpr std::uint64_t k1g = 1ull << 30;

class TableTest : public ::testing::Test {
 protected:
  void SetUp() override { set_expensive_checks(true); }
  std::unique_ptr<table> make(domain_config cfg = {}, format_kind k = format_kind::vtd_ss_4) {
    auto t = make_table(k, cfg, pool_);
    EXPECT_TRUE(t.ok());
    return std::move(*t);
  }
  // Frees what a gather released, like a reclamation layer after invalidation.
  void drain(gather& g) {
    for (auto f : g.released())
      ASSERT_TRUE(pool_.free(f, "test").ok());
    g.clear();
  }
  void finish(std::unique_ptr<table>& t) {
    gather g;
    t->destroy(g);
    drain(g);
    EXPECT_EQ(pool_.leak_report(), "");
    EXPECT_TRUE(pool_.leaks().empty());
    EXPECT_EQ(pool_.ledger_violation_count(), 0u);
  }
  mem::frame_pool pool_{mem::pool_config{.capacity_frames = 4096}};
};

TEST_F(TableTest, FourKPagesCoalesceInto2MAndShatter) {
  auto t = make();
  gather g;
  for (unsigned i = 0; i < 512; ++i) {
    ASSERT_TRUE(t->map(k2m + i * k4k, 0x4000'0000 + i * k4k, k4k, perm_rw, g).ok());
    if (i < 511) {
      EXPECT_TRUE(g.released().empty());
    }
  }
  ASSERT_EQ(g.released().size(), 1u) << "the leaf table became a superpage";
  EXPECT_TRUE(g.nonleaf_changed());
  EXPECT_EQ(g.first(), k2m);
  EXPECT_EQ(g.last(), 2 * k2m - 1);
  EXPECT_EQ(pool_.ident(g.released()[0]).state, mem::frame_state::retired);
  drain(g);
  auto tr = t->lookup(k2m + 5 * k4k + 12);
  ASSERT_TRUE(tr);
  EXPECT_EQ(tr->level, 2u);
  EXPECT_EQ(tr->phys, 0x4000'0000 + 5 * k4k + 12);
  EXPECT_EQ(t->stats().coalesced, 1u);
  ASSERT_TRUE(t->check_invariants().ok()) << t->check_invariants().to_string();

  ASSERT_TRUE(t->unmap(k2m + 7 * k4k, k4k, g).ok());
  EXPECT_EQ(t->stats().split, 1u);
  EXPECT_TRUE(g.nonleaf_changed());
  EXPECT_FALSE(t->lookup(k2m + 7 * k4k));
  ASSERT_TRUE(t->lookup(k2m + 8 * k4k));
  EXPECT_EQ(t->lookup(k2m + 8 * k4k)->level, 1u);
  ASSERT_TRUE(t->check_invariants().ok()) << t->check_invariants().to_string();
  g.clear();
  ASSERT_TRUE(t->map(k2m + 7 * k4k, 0x4000'0000 + 7 * k4k, k4k, perm_rw, g).ok());
  EXPECT_EQ(g.released().size(), 1u) << "recoalesced";
  drain(g);
  ASSERT_TRUE(t->unmap(0, k1g, g).ok());
  EXPECT_FALSE(t->lookup(k2m));
  // the level-3 and level-2 tables became empty and were released
  EXPECT_EQ(t->linked_tables(), 1u);
  drain(g);
  ASSERT_TRUE(t->check_invariants().ok()) << t->check_invariants().to_string();
  finish(t);
}

TEST_F(TableTest, OvermapReleasesSubtreeChildrenFirst) {
  auto t = make(domain_config{.coalesce = false});
  gather g;
  ASSERT_TRUE(t->map(k1g + 3 * k4k, 0x1000, k4k, perm_read, g).ok());
  ASSERT_TRUE(t->map(k1g + k2m + 3 * k4k, 0x1000, k4k, perm_read, g).ok());
  EXPECT_EQ(t->linked_tables(), 5u);  // root, L3, L2, two L1
  ASSERT_TRUE(t->map(k1g, 0, k1g, perm_rw, g).ok());
  ASSERT_EQ(g.released().size(), 3u);
  EXPECT_EQ(pool_.ident(g.released()[2]).level, 2u) << "parent last";
  EXPECT_TRUE(g.nonleaf_changed());
  EXPECT_EQ(t->lookup(k1g + 3 * k4k)->phys, 3 * k4k);
  drain(g);
  ASSERT_TRUE(t->check_invariants().ok());
  finish(t);
}

TEST_F(TableTest, RefuseOvermap) {
  auto t = make(domain_config{.refuse_overmap = true});
  gather g;
  ASSERT_TRUE(t->map(0, 0, k4k, perm_read, g).ok());
  EXPECT_EQ(t->map(0, 0, k2m, perm_read, g).code(), errc::address_in_use);
  EXPECT_EQ(t->map(0, 0, k4k, perm_read, g).code(), errc::address_in_use);
  finish(t);
}

// The table marks every table frame it publishes as linked in the pool, so the ledger itself
// refuses a free of a live table, even through free_unlinked_table (which accepts any
// never-linked page-table frame); retiring clears the mark.
TEST_F(TableTest, PublishedTablesAreMarkedLinkedInTheLedger) {
  for (auto mode : {concurrency_mode::locked, concurrency_mode::lock_free}) {
    auto t = make(domain_config{.mode = mode, .coalesce = false});
    gather g;
    ASSERT_TRUE(t->map(k1g + 3 * k4k, 0x1000, k4k, perm_read, g).ok());  // chain L3, L2, L1
    ASSERT_TRUE(t->map(5 * k1g, 0, k2m, perm_read, g).ok());
    ASSERT_TRUE(t->unmap(5 * k1g + k4k, k4k, g).ok());  // a split: the L1 child is published
    EXPECT_EQ(t->stats().split, 1u);
    std::vector<mem::frame_id> tables;
    for (std::uint32_t f = 0; f < pool_.capacity(); ++f)
      if (pool_.ident(mem::frame_id{f}).state == mem::frame_state::page_table)
        tables.push_back(mem::frame_id{f});
    ASSERT_EQ(tables.size(), 6u);  // root, L3, L2, L1 (map), L2 + L1 (the split, one L3)
    ASSERT_EQ(tables.size(), t->linked_tables());
    for (auto f : tables)
      EXPECT_TRUE(pool_.meta(f).linked.load()) << "frame " << f.value;
    const auto before = pool_.ledger_violation_count();
    for (auto f : tables) {
      Status s = pool_.free_unlinked_table(f, "buggy error path");
      EXPECT_EQ(s.code(), errc::ledger_violation);
      EXPECT_NE(s.message().find("still linked"), std::string::npos) << s.message();
    }
    EXPECT_EQ(pool_.ledger_violation_count(), before + tables.size());
    EXPECT_TRUE(t->check_invariants().ok()) << "refused frees changed nothing";
    ASSERT_TRUE(t->unmap(k1g, k1g, g).ok());  // releases the first chain (retired: unmarked)
    for (auto f : g.released()) {
      EXPECT_FALSE(pool_.meta(f).linked.load());
      ASSERT_TRUE(pool_.free(f, "test").ok());
    }
    g.clear();
    gather d;
    t->destroy(d);
    drain(d);
    EXPECT_TRUE(pool_.leaks().empty()) << pool_.leak_report();
  }
}

TEST_F(TableTest, BadArguments) {
  auto t = make();
  gather g;
  EXPECT_EQ(t->map(1, 0, k4k, perm_read, g).code(), errc::invalid_argument);
  EXPECT_EQ(t->map(0, 0, 0, perm_read, g).code(), errc::invalid_argument);
  EXPECT_EQ(t->map(0, 0, k4k, perm_none, g).code(), errc::invalid_argument);
  EXPECT_EQ(t->map(1ull << 48, 0, k4k, perm_read, g).code(), errc::out_of_range);
  EXPECT_EQ(t->map((1ull << 48) - k4k, 0, 2 * k4k, perm_read, g).code(), errc::out_of_range);
  EXPECT_EQ(t->unmap(0, 3, g).code(), errc::invalid_argument);
  EXPECT_TRUE(t->unmap(0, k4k, g).ok()) << "unmapping nothing is fine";
  EXPECT_TRUE(g.empty());
  finish(t);
}

TEST_F(TableTest, AllocationFailureAtEveryPoint) {
  for (bool lock_free : {false, true}) {
    for (std::uint64_t n = 1;; ++n) {
      auto t = make(domain_config{.mode = lock_free ? concurrency_mode::lock_free
                                                    : concurrency_mode::locked});
      gather g;
      pool_.inject_alloc_failure(n);
      bool fired = false;
      const auto step = [&](Status s) {
        if (s.ok()) return;
        // After an earlier failure the scenario may legitimately hit what is still mapped.
        if (fired && s.code() == errc::address_in_use) return;
        EXPECT_EQ(s.code(), errc::no_memory) << "n=" << n << " " << s.to_string();
        fired = true;
      };
      step(t->map(k1g, 0, k1g, perm_rw, g));                 // no allocation below root
      step(t->map(0, 0x10'0000'0000, 3 * k4k, perm_rw, g));  // chain of 3
      step(t->unmap(k1g + k2m + k4k, k4k, g));               // two splits
      step(t->map(k1g + k2m + k4k, k2m + k4k, k4k, perm_rw, g));
      pool_.inject_alloc_failure(0);
      ASSERT_TRUE(t->check_invariants().ok())
          << "n=" << n << " " << t->check_invariants().to_string();
      drain(g);
      finish(t);
      if (!fired) break;
      ASSERT_LT(n, 20u);
    }
  }
}

}  // namespace
}  // namespace ptreclaim::pt
