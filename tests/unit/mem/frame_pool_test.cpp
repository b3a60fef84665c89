#include "ptreclaim/mem/frame_pool.hpp"

#include <gtest/gtest.h>
#include <rapidcheck.h>

#include <atomic>
#include <set>
#include <thread>
#include <vector>

#include "ptreclaim/base/prng.hpp"

namespace ptreclaim::mem {
namespace {

TEST(FramePool, AllocatesZeroedFramesWithOwnerAndNewGeneration) {
  frame_pool pool({.capacity_frames = 8});
  auto a = pool.alloc_table(7, 2);
  ASSERT_TRUE(a.ok());
  frame_ident id = pool.ident(*a);
  EXPECT_EQ(id.state, frame_state::page_table);
  EXPECT_EQ(id.domain, 7);
  EXPECT_EQ(id.level, 2);
  EXPECT_EQ(id.generation, 1u);
  for (unsigned i = 0; i < 512; ++i)
    ASSERT_EQ(pool.words(*a)[i].load(), 0u);
  pool.words(*a)[3].store(0x1234);
  ASSERT_TRUE(pool.mark_retired(*a).ok());
  EXPECT_EQ(pool.ident(*a).state, frame_state::retired);
  ASSERT_TRUE(pool.free(*a, "test").ok());
  EXPECT_EQ(pool.words(*a)[3].load(), poison_pattern) << "freed frames are poisoned";
  EXPECT_STREQ(pool.meta(*a).freed_by.load(), "test");
  // The same frame comes back from the per-CPU cache with a new generation, zeroed.
  auto b = pool.alloc_data();
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->value, a->value);
  EXPECT_EQ(pool.ident(*b).generation, 2u);
  EXPECT_EQ(pool.words(*b)[3].load(), 0u);
  ASSERT_TRUE(pool.free(*b, "test").ok());
  EXPECT_TRUE(pool.leaks().empty());
  EXPECT_EQ(pool.ledger_violation_count(), 0u);
}

TEST(FramePool, LedgerCatchesDoubleFreeLinkedFreeAndUnknownIds) {
  frame_pool pool({.capacity_frames = 4});
  auto t = pool.alloc_table(1, 1);
  ASSERT_TRUE(t.ok());
  ASSERT_TRUE(pool.mark_linked(*t).ok());
  Status s = pool.free(*t, "early");
  EXPECT_EQ(s.code(), errc::ledger_violation);
  EXPECT_NE(s.message().find("still linked"), std::string::npos) << s.message();
  EXPECT_EQ(pool.ident(*t).state, frame_state::page_table) << "a refused free changes nothing";

  ASSERT_TRUE(pool.mark_retired(*t).ok());
  ASSERT_TRUE(pool.free(*t, "first").ok());
  s = pool.free(*t, "second");
  EXPECT_EQ(s.code(), errc::ledger_violation);
  EXPECT_NE(s.message().find("double free"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("first"), std::string::npos) << "names the earlier freeing path";

  EXPECT_EQ(pool.free(frame_id{3}, "x").code(), errc::ledger_violation);   // never allocated
  EXPECT_EQ(pool.free(frame_id{99}, "x").code(), errc::ledger_violation);  // out of range
  EXPECT_EQ(pool.mark_retired(*t).code(), errc::ledger_violation);         // free frame
  EXPECT_EQ(pool.ledger_violation_count(), 5u);
  auto reports = pool.ledger_reports();
  ASSERT_EQ(reports.size(), 5u);
  EXPECT_NE(reports[2].what.find("never allocated"), std::string::npos) << reports[2].what;
}

TEST(FramePool, UnlinkedTablesMayBeFreedDirectlyButRetiredOnesMayNot) {
  frame_pool pool({.capacity_frames = 4});
  auto t = pool.alloc_table(1, 1);
  ASSERT_TRUE(pool.free_unlinked_table(*t, "lost-race").ok());
  auto u = pool.alloc_table(1, 1);
  ASSERT_TRUE(pool.mark_retired(*u).ok());
  EXPECT_EQ(pool.free_unlinked_table(*u, "x").code(), errc::ledger_violation);
  ASSERT_TRUE(pool.free(*u, "ok").ok());
}

// The page table marks a frame linked when it publishes it: free_unlinked_table (which is
// otherwise fine for a page-table frame) then refuses it, naming the frame and owner.
TEST(FramePool, LinkedMarkRefusesFreeUnlinkedOfALinkedTable) {
  frame_pool pool({.capacity_frames = 4});
  auto t = pool.alloc_table(3, 2);
  ASSERT_TRUE(t.ok());
  ASSERT_TRUE(pool.mark_linked(*t).ok());
  EXPECT_TRUE(pool.meta(*t).linked.load());
  Status s = pool.free_unlinked_table(*t, "pt: never-linked table");
  EXPECT_EQ(s.code(), errc::ledger_violation);
  EXPECT_NE(s.message().find("still linked as a level-2 table of domain 3"), std::string::npos)
      << s.message();
  EXPECT_EQ(pool.ident(*t).state, frame_state::page_table) << "a refused free changes nothing";
  // Linking twice is a ledger violation too (a table installed in two parents).
  EXPECT_EQ(pool.mark_linked(*t).code(), errc::ledger_violation);
  // Retiring clears the mark; the normal free path then works.
  ASSERT_TRUE(pool.mark_retired(*t).ok());
  EXPECT_FALSE(pool.meta(*t).linked.load());
  ASSERT_TRUE(pool.free(*t, "reclaim").ok());
  // A data frame cannot be linked; a reallocated frame starts unlinked.
  auto d = pool.alloc_data();
  EXPECT_EQ(pool.mark_linked(*d).code(), errc::ledger_violation);
  ASSERT_TRUE(pool.free(*d, "t").ok());
  auto u = pool.alloc_table(3, 1);
  EXPECT_FALSE(pool.meta(*u).linked.load());
  ASSERT_TRUE(pool.free_unlinked_table(*u, "lost-race").ok());
  EXPECT_EQ(pool.ledger_violation_count(), 3u);
  const auto reports = pool.ledger_reports();
  ASSERT_EQ(reports.size(), 3u);
  EXPECT_NE(reports[1].what.find("linked twice"), std::string::npos) << reports[1].what;
}

TEST(FramePool, ExhaustionIsAnErrorValueAndLeaksAreListed) {
  frame_pool pool({.capacity_frames = 3, .caches = 2, .cache_frames = 2});
  std::vector<frame_id> got;
  for (int i = 0; i < 3; ++i) {
    auto f = pool.alloc_table(4, 1);
    ASSERT_TRUE(f.ok()) << i;
    got.push_back(*f);
  }
  auto none = pool.alloc_data();
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), errc::no_memory);
  EXPECT_EQ(pool.stats().failed_allocations, 1u);
  EXPECT_EQ(pool.leaks().size(), 3u);
  EXPECT_NE(pool.leak_report().find("level 1 of domain 4"), std::string::npos)
      << pool.leak_report();
  for (frame_id f : got) {
    ASSERT_TRUE(pool.mark_retired(f).ok());
    ASSERT_TRUE(pool.free(f, "t").ok());
  }
  EXPECT_EQ(pool.leak_report(), "");
  EXPECT_EQ(pool.stats().peak_in_use, 3u);
}

// peak_in_use is noted when the depot shrinks (no shared write per alloc): never below the
// true peak, and above it by at most the frames the caches held (caches x cache_frames).
TEST(FramePool, PeakInUseBoundsTheTruePeakWithinTheCaches) {
  real_platform plat(2);
  frame_pool pool({.capacity_frames = 64, .caches = 2, .cache_frames = 4}, plat);
  std::vector<frame_id> held;
  for (unsigned round = 0; round < 2; ++round) {
    plat.set_current_cpu(round);
    for (int i = 0; i < 10; ++i)
      held.push_back(*pool.alloc_data());
    for (frame_id f : held)
      ASSERT_TRUE(pool.free(f, "t").ok());
    held.clear();
  }
  plat.set_current_cpu(0);
  EXPECT_EQ(pool.stats().in_use, 0u);
  EXPECT_GE(pool.stats().peak_in_use, 10u);
  EXPECT_LE(pool.stats().peak_in_use, 10u + 2 * 4);
}

TEST(FramePool, ExhaustionStealsFromOtherCpuCaches) {
  real_platform plat(2);
  frame_pool pool({.capacity_frames = 8, .caches = 2, .cache_frames = 4}, plat);
  // CPU 0 takes and frees frames so they sit in its cache; CPU 1 must still get them all.
  plat.set_current_cpu(0);
  std::vector<frame_id> mine;
  for (int i = 0; i < 8; ++i)
    mine.push_back(*pool.alloc_data());
  for (frame_id f : mine)
    ASSERT_TRUE(pool.free(f, "t").ok());
  plat.set_current_cpu(1);
  std::vector<frame_id> theirs;
  for (int i = 0; i < 8; ++i) {
    auto f = pool.alloc_data();
    ASSERT_TRUE(f.ok()) << "allocation " << i << " failed with frames free in another cache";
    theirs.push_back(*f);
  }
  for (frame_id f : theirs)
    ASSERT_TRUE(pool.free(f, "t").ok());
  plat.set_current_cpu(0);
}

// Exhaustion must mean every frame is held. `threads` threads keep at most `quota` frames each (so
// the frames held, or inside an alloc or free, never reach capacity when one asks) while hopping
// CPUs, so frees land in random caches and allocations must find them there (the depot is
// tiny). Any no_memory here is spurious.
void hammer_at_capacity(unsigned threads, unsigned quota, std::uint64_t seed) {
  constexpr unsigned cpus = 8;
  SCOPED_TRACE("threads " + std::to_string(threads) + " quota " + std::to_string(quota) + " seed " +
               std::to_string(seed));
  real_platform plat(cpus);
  frame_pool pool({.capacity_frames = threads * quota, .caches = cpus, .cache_frames = 2}, plat);
  std::atomic<std::uint64_t> spurious{0};
  std::vector<std::thread> ts;
  for (unsigned t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      prng rng(seed + t);
      std::vector<frame_id> held;
      for (int i = 0; i < 20000; ++i) {
        plat.set_current_cpu(static_cast<unsigned>(rng.below(cpus)));
        if (held.size() < quota && (held.empty() || rng.chance(3, 5))) {
          auto f = pool.alloc_data();
          if (f.ok())
            held.push_back(*f);
          else
            spurious.fetch_add(1, std::memory_order_relaxed);
        } else {
          const std::size_t k = rng.below(held.size());
          EXPECT_TRUE(pool.free(held[k], "t").ok());
          held[k] = held.back();
          held.pop_back();
        }
      }
      for (frame_id f : held)
        EXPECT_TRUE(pool.free(f, "t").ok());
    });
  }
  for (auto& t : ts)
    t.join();
  EXPECT_EQ(spurious.load(), 0u) << "no_memory while fewer than capacity frames were held";
  EXPECT_EQ(pool.stats().failed_allocations, 0u);
  EXPECT_TRUE(pool.leaks().empty());
  EXPECT_EQ(pool.stats().in_use, 0u);
}

TEST(FramePool, NoSpuriousExhaustionUnderContention) {
  // Few frames per thread: a thread that asks often finds the only free frame in a cache
  // another thread is using (the case a try_lock-only steal reported as exhausted).
  hammer_at_capacity(3, 1, 0xf4a3e);
  hammer_at_capacity(4, 2, 0xf4a3f);
  hammer_at_capacity(8, 1, 0xf4a40);
}

TEST(FramePool, InjectedFailureFiresExactlyOnce) {
  frame_pool pool({.capacity_frames = 8});
  pool.inject_alloc_failure(2);
  auto a = pool.alloc_data();
  auto b = pool.alloc_data();
  auto c = pool.alloc_data();
  EXPECT_TRUE(a.ok());
  EXPECT_FALSE(b.ok());
  EXPECT_TRUE(c.ok());
  ASSERT_TRUE(pool.free(*a, "t").ok());
  ASSERT_TRUE(pool.free(*c, "t").ok());
}

TEST(FramePool, RandomSequencesKeepTheLedgerBalanced) {
  const bool ok = rc::check("alloc/retire/free sequences against a model", [] {
    const auto ops =
        *rc::gen::container<std::vector<std::uint8_t>>(rc::gen::inRange<std::uint8_t>(0, 4));
    frame_pool pool({.capacity_frames = 16, .caches = 3, .cache_frames = 4});
    std::set<std::uint32_t> linked, retired, data;
    std::uint64_t expected_violations = 0;
    for (std::uint8_t op : ops) {
      switch (op) {
        case 0: {
          auto f = pool.alloc_table(1, 1);
          if (linked.size() + retired.size() + data.size() == 16) {
            RC_ASSERT(!f.ok());
          } else {
            RC_ASSERT(f.ok());
            RC_ASSERT(linked.insert(f->value).second);
          }
          break;
        }
        case 1:
          if (!linked.empty()) {
            auto it = linked.begin();
            RC_ASSERT(pool.mark_retired(frame_id{*it}).ok());
            retired.insert(*it);
            linked.erase(it);
          }
          break;
        case 2:
          if (!retired.empty()) {
            auto it = retired.begin();
            RC_ASSERT(pool.free(frame_id{*it}, "t").ok());
            retired.erase(it);
          }
          break;
        case 3: {
          auto f = pool.alloc_data();
          if (f.ok()) RC_ASSERT(data.insert(f->value).second);
          break;
        }
        default:
          if (!linked.empty()) {  // a buggy free: refused, nothing changes
            RC_ASSERT(!pool.free(frame_id{*linked.begin()}, "bug").ok());
            ++expected_violations;
          }
      }
      RC_ASSERT(pool.stats().in_use == linked.size() + retired.size() + data.size());
    }
    RC_ASSERT(pool.leaks().size() == linked.size() + retired.size() + data.size());
    RC_ASSERT(pool.ledger_violation_count() == expected_violations);
  });
  ASSERT_TRUE(ok);
}

TEST(FramePool, ConcurrentAllocFreeFromManyCpus) {
  constexpr unsigned threads = 4;
  real_platform plat(threads);
  frame_pool pool({.capacity_frames = 256, .caches = threads, .cache_frames = 16}, plat);
  std::vector<std::thread> ts;
  for (unsigned t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      plat.set_current_cpu(t);
      std::vector<frame_id> held;
      for (int i = 0; i < 5000; ++i) {
        if (held.size() < 40) {
          auto f = pool.alloc_table(static_cast<std::uint16_t>(t), 1);
          if (f.ok()) {
            pool.words(*f)[0].store(t + 1);
            held.push_back(*f);
          }
        } else {
          for (frame_id f : held) {
            EXPECT_EQ(pool.words(f)[0].load(), t + 1) << "frame handed to two owners";
            EXPECT_EQ(pool.ident(f).domain, t);
            EXPECT_TRUE(pool.mark_retired(f).ok());
            EXPECT_TRUE(pool.free(f, "t").ok());
          }
          held.clear();
        }
      }
      for (frame_id f : held) {
        EXPECT_TRUE(pool.mark_retired(f).ok());
        EXPECT_TRUE(pool.free(f, "t").ok());
      }
    });
  }
  for (auto& t : ts)
    t.join();
  EXPECT_TRUE(pool.leaks().empty());
  EXPECT_EQ(pool.ledger_violation_count(), 0u);
  EXPECT_EQ(pool.stats().allocations, pool.stats().frees);
}

}  // namespace
}  // namespace ptreclaim::mem
