// Lock-free domain under concurrent mutation: threads map and unmap disjoint, interleaved
// ranges of one domain (so they race to install the same intermediate tables) while walker
// threads decode the table with atomic loads. Checks: no lost mapping, every translation a
// walker sees is one some mapper wrote, no leaked or doubly linked table, the ledger balances.
// Run it under TSan too (PTRECLAIM_SANITIZE=thread).
#include <gtest/gtest.h>

#include <atomic>
#include <barrier>
#include <thread>
#include <vector>

#include "ptreclaim/base/prng.hpp"
#include "ptreclaim/mem/frame_pool.hpp"
#include "ptreclaim/pt/table.hpp"

namespace ptreclaim::pt {
namespace {

constexpr std::uint64_t k4k = 4096;
constexpr std::uint64_t k2m = 2ull << 20;
constexpr std::uint64_t k1g = 1ull << 30;

#if defined(__SANITIZE_THREAD__)
constexpr unsigned rounds = 12;
#else
constexpr unsigned rounds = 60;
#endif
constexpr unsigned mappers = 4;
constexpr unsigned walkers = 2;
constexpr unsigned pages_per_mapper = 64;  // spread over 8 leaf tables shared by all mappers

// The one phys every mapper uses for an IOVA, so a walker can verify whatever it sees.
constexpr std::uint64_t phys_of(iova_t iova) {
  return (iova ^ 0x5'0000'0000ull) & ((1ull << 51) - 1);
}

iova_t page_of(unsigned round, unsigned mapper, unsigned j) {
  const iova_t region = (1 + round % 8) * k1g;  // a fresh 1G region each round (reused every 8)
  return region + (j % 8) * k2m + ((j / 8) * mappers + mapper) * k4k;
}

void run(format_kind kind, std::uint64_t seed) {
  SCOPED_TRACE("seed " + std::to_string(seed) + " (replay: set the seed in run())");
  real_platform plat(mappers + walkers + 1);
  mem::frame_pool pool(mem::pool_config{.capacity_frames = 4096, .caches = mappers + walkers + 1},
                       plat);
  auto made = make_table(kind, domain_config{.mode = concurrency_mode::lock_free}, pool);
  ASSERT_TRUE(made.ok());
  table& t = **made;
  std::barrier sync(mappers);
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> bad_walks{0}, walks_seen{0};
  std::vector<std::vector<mem::frame_id>> released(mappers);
  std::vector<std::string> errors(mappers);

  std::vector<std::thread> threads;
  for (unsigned w = 0; w < walkers; ++w) {
    threads.emplace_back([&, w] {
      plat.set_current_cpu(mappers + w);
      prng rng(seed ^ (0xabcd + w));
      while (!stop.load(std::memory_order_relaxed)) {
        const iova_t iova = page_of(static_cast<unsigned>(rng.below(rounds)),
                                    static_cast<unsigned>(rng.below(mappers)),
                                    static_cast<unsigned>(rng.below(pages_per_mapper)));
        if (auto tr = t.lookup(iova)) {
          walks_seen.fetch_add(1, std::memory_order_relaxed);
          if (tr->phys != phys_of(iova) || tr->level != 1)
            bad_walks.fetch_add(1, std::memory_order_relaxed);
        }
      }
    });
  }
  for (unsigned m = 0; m < mappers; ++m) {
    threads.emplace_back([&, m] {
      plat.set_current_cpu(m);
      gather g;
      auto fail = [&](const std::string& e) {
        if (errors[m].empty()) errors[m] = e;
      };
      for (unsigned r = 0; r < rounds; ++r) {
        for (unsigned j = 0; j < pages_per_mapper; ++j) {
          const iova_t iova = page_of(r, m, j);
          if (Status s = t.map(iova, phys_of(iova), k4k, perm_rw, g); !s.ok())
            fail("map: " + s.to_string());
        }
        for (unsigned j = 0; j < pages_per_mapper; ++j) {  // no lost mapping
          const iova_t iova = page_of(r, m, j);
          auto tr = t.lookup(iova);
          if (!tr || tr->phys != phys_of(iova)) fail("lost mapping");
        }
        for (unsigned j = 0; j < pages_per_mapper; j += 2) {
          if (Status s = t.unmap(page_of(r, m, j), k4k, g); !s.ok())
            fail("unmap: " + s.to_string());
          if (t.lookup(page_of(r, m, j))) fail("unmapped page still translates");
        }
        sync.arrive_and_wait();
        // One mapper owns the whole region now: a full-range unmap releases its tables.
        if (m == r % mappers) {
          const iova_t region = page_of(r, 0, 0);
          if (Status s = t.unmap(region, k1g, g); !s.ok()) fail("region unmap: " + s.to_string());
        }
        sync.arrive_and_wait();
        released[m].insert(released[m].end(), g.released().begin(), g.released().end());
        g.clear();
      }
    });
  }
  for (unsigned i = walkers; i < threads.size(); ++i)
    threads[i].join();
  stop.store(true);
  for (unsigned i = 0; i < walkers; ++i)
    threads[i].join();

  for (const auto& e : errors)
    EXPECT_EQ(e, "");
  EXPECT_EQ(bad_walks.load(), 0u) << "a walker saw a translation no mapper wrote";
  ASSERT_TRUE(t.check_invariants().ok()) << t.check_invariants().to_string();
  const table_stats st = t.stats();
  EXPECT_EQ(st.tables_allocated, t.linked_tables() + st.tables_released + st.tables_freed_unlinked);
  EXPECT_EQ(pool.stats().in_use, t.linked_tables() + st.tables_released);
  // Everything released went through the gather exactly once.
  std::size_t n_released = 0;
  for (auto& v : released) {
    n_released += v.size();
    for (auto f : v)
      ASSERT_TRUE(pool.free(f, "test").ok());
  }
  EXPECT_EQ(n_released, st.tables_released);
  gather g;
  t.destroy(g);
  for (auto f : g.released())
    ASSERT_TRUE(pool.free(f, "test").ok());
  EXPECT_TRUE(pool.leaks().empty()) << pool.leak_report();
  EXPECT_EQ(pool.ledger_violation_count(), 0u);
  std::printf("races lost: %llu, walks that found a page: %llu\n",
              static_cast<unsigned long long>(st.install_races_lost),
              static_cast<unsigned long long>(walks_seen.load()));
}

TEST(PtConcurrency, LockFreeDisjointMappersAndWalkersVtd4) {
  run(format_kind::vtd_ss_4, 1);
}
TEST(PtConcurrency, LockFreeDisjointMappersAndWalkersAmd) {
  run(format_kind::amd_v1_4, 2);
}
TEST(PtConcurrency, LockFreeDisjointMappersAndWalkersX86_5) {
  run(format_kind::x86_64_5, 3);
}

// Locked mode: the mapping lock serialises mutators of overlapping ranges; coalescing runs.
TEST(PtConcurrency, LockedOverlappingMappers) {
  mem::frame_pool pool(mem::pool_config{.capacity_frames = 1024});
  auto made = make_table(format_kind::vtd_ss_4, domain_config{}, pool);
  ASSERT_TRUE(made.ok());
  table& t = **made;
  std::vector<std::thread> threads;
  std::vector<std::vector<mem::frame_id>> released(mappers);
  for (unsigned m = 0; m < mappers; ++m) {
    threads.emplace_back([&, m] {
      gather g;
      for (unsigned r = 0; r < rounds; ++r) {
        for (unsigned j = m; j < 512; j += mappers)
          (void)t.map(k2m + j * k4k, phys_of(0) + j * k4k, k4k, perm_rw,
                      g);  // may be coalesced already
        (void)t.unmap(k2m + (r % 512) * k4k, k4k, g);
        released[m].insert(released[m].end(), g.released().begin(), g.released().end());
        g.clear();
      }
    });
  }
  for (auto& th : threads)
    th.join();
  ASSERT_TRUE(t.check_invariants().ok()) << t.check_invariants().to_string();
  for (auto& v : released)
    for (auto f : v)
      ASSERT_TRUE(pool.free(f, "test").ok());
  gather g;
  t.destroy(g);
  for (auto f : g.released())
    ASSERT_TRUE(pool.free(f, "test").ok());
  EXPECT_TRUE(pool.leaks().empty()) << pool.leak_report();
}

}  // namespace
}  // namespace ptreclaim::pt
