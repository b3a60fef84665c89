// Shared page-table lines: the page-table code reports the cache line of every entry it reads
// or writes to its platform (platform::touch_table_line), and the deterministic executor charges
// a cache_line_transfer when a line another CPU wrote last moves. Without the reports, two CPUs
// writing PTEs in one 64-byte line cost no more virtual time than two CPUs in different tables.
#include <gtest/gtest.h>

#include <array>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "ptreclaim/mem/frame_pool.hpp"
#include "ptreclaim/pt/table.hpp"
#include "ptreclaim/runtime/cost_model.hpp"
#include "ptreclaim/runtime/deterministic_executor.hpp"

namespace ptreclaim::pt {
namespace {

constexpr std::uint64_t k4k = 4096;
constexpr std::uint64_t k2m = 2ull << 20;

// Records every reported line touch and counts the charges per kind.
class recording_platform final : public platform {
 public:
  std::uint64_t now_ns() noexcept override { return 0; }
  unsigned current_cpu() const noexcept override { return 0; }
  unsigned cpu_count() const noexcept override { return 1; }
  bool wait_until(const std::function<bool()>& done, std::uint64_t) override { return done(); }
  void touch_table_line(const void* entry, bool write) noexcept override {
    (write ? writes : reads).insert(reinterpret_cast<std::uintptr_t>(entry) / 64);
  }
  bool tracks_table_lines() const noexcept override { return true; }
  void charge(cost_kind kind, std::uint64_t count) noexcept override {
    charged[static_cast<std::size_t>(kind)] += count;
  }
  [[nodiscard]] std::uint64_t of(cost_kind k) const { return charged[static_cast<std::size_t>(k)]; }
  std::set<std::uintptr_t> reads, writes;
  std::array<std::uint64_t, runtime::cost_kind_count> charged{};
};

std::uintptr_t line_of(const mem::frame_pool& pool, mem::frame_id t, unsigned idx) {
  return reinterpret_cast<std::uintptr_t>(&pool.words(t)[idx]) / 64;
}

TEST(TableLines, MapAndUnmapReportTheLinesOfTheEntriesTheyWrite) {
  for (auto mode : {concurrency_mode::locked, concurrency_mode::lock_free}) {
    recording_platform plat;
    mem::frame_pool pool(mem::pool_config{.capacity_frames = 64}, plat);
    auto t = make_table(format_kind::x86_64_4, domain_config{.mode = mode}, pool);
    ASSERT_TRUE(t.ok());
    const mem::frame_id root = (*t)->root();
    gather g;
    const std::uint64_t iova = 5 * k4k;  // PTE index 5, in the first line of its table
    ASSERT_TRUE((*t)->map(iova, 0x10'0000, k4k, perm_rw, g).ok());
    EXPECT_TRUE(plat.writes.count(line_of(pool, root, 0))) << "the upper-level entry installed";
    // lookup names no table: follow entry 0 down to the leaf table.
    mem::frame_id leaf = root;
    for (unsigned level = 4; level > 1; --level) {
      const std::uint64_t v = pool.words(leaf)[0].load();
      leaf = mem::frame_id::from_phys(v & 0x000f'ffff'ffff'f000ull);
    }
    const std::uintptr_t pte_line = line_of(pool, leaf, 5);
    EXPECT_TRUE(plat.writes.count(pte_line)) << "the leaf PTE written by map";
    EXPECT_TRUE(plat.reads.count(line_of(pool, root, 0))) << "the walk reads the root entry";
    plat.writes.clear();
    ASSERT_TRUE((*t)->unmap(iova, k4k, g).ok());
    EXPECT_TRUE(plat.writes.count(pte_line)) << "the leaf PTE cleared by unmap";
    (*t)->destroy(g);
    for (auto f : g.released())
      ASSERT_TRUE(pool.free(f, "test").ok());
  }
}

// Two CPUs, each mapping and unmapping one 4K page per step, 100 steps each, in one lock-free
// table. `same_line`: their PTEs share a 64-byte line (entries 0 and 4 of one PTE table), so
// every step moves the line; else they sit 16 MiB apart (different PTE tables, and different
// lines of the PMD table above).
struct outcome {
  std::uint64_t elapsed_ns = 0;
  std::uint64_t transfers = 0;
};

outcome two_cpus_writing(bool same_line, unsigned pt_lines = 1u << 16) {
  runtime::run_config cfg;
  cfg.cpus = 2;
  cfg.costs.step_jitter_ns = 0;
  cfg.pt_lines = pt_lines;
  runtime::deterministic_executor ex(cfg);
  mem::frame_pool pool(mem::pool_config{.capacity_frames = 256, .caches = 2}, ex);
  auto t =
      make_table(format_kind::x86_64_4, domain_config{.mode = concurrency_mode::lock_free}, pool);
  EXPECT_TRUE(t.ok());
  table& tab = **t;
  std::vector<gather> gathers(2);
  for (unsigned c = 0; c < 2; ++c) {
    const std::uint64_t iova = same_line ? c * 4 * k4k : c * 8 * k2m;
    auto n = std::make_shared<unsigned>(0);
    ex.set_program(c, [&, iova, n](unsigned cpu) {
      EXPECT_TRUE(tab.map(iova, 0x100'0000 + iova, k4k, perm_rw, gathers[cpu]).ok());
      EXPECT_TRUE(tab.unmap(iova, k4k, gathers[cpu]).ok());
      return ++*n < 100 ? runtime::step_result::busy() : runtime::step_result::finished();
    });
  }
  outcome o;
  o.elapsed_ns = ex.run().elapsed_ns;
  o.transfers = ex.table_line_transfers();
  gather g;
  tab.destroy(g);
  for (auto f : g.released())
    EXPECT_TRUE(pool.free(f, "test").ok());
  return o;
}

TEST(TableLines, TwoCpusWritingOneLineCostMoreThanTwoCpusInDifferentTables) {
  const outcome shared = two_cpus_writing(true), separate = two_cpus_writing(false);
  const std::uint64_t transfer = runtime::cost_model{}.cost(cost_kind::cache_line_transfer);
  // Each of the 200 steps finds the line last written by the other CPU (bar a few the
  // scheduler runs back to back): at least 100 transfers, each paid in virtual time.
  EXPECT_GE(shared.transfers, 100u);
  EXPECT_LE(separate.transfers, 10u) << "only the first installs move a line";
  EXPECT_GE(shared.elapsed_ns, separate.elapsed_ns + 50 * transfer)
      << "shared " << shared.elapsed_ns << " ns, separate " << separate.elapsed_ns << " ns";
}

// A split writes the new table's 512 entries in one loop of stores: one table_fill, not 512
// pte_write (a map call's cost per entry, ~150x a store in that loop; charging it made a split
// ~10 us of virtual time against ~0.6 us real, and superpage-churn's operations twice too long).
TEST(TableCosts, ASplitIsChargedOneTableFillNotAPteWritePerEntry) {
  for (auto kind : {format_kind::vtd_ss_4, format_kind::x86_64_4, format_kind::amd_v1_4}) {
    SCOPED_TRACE(std::string(format_kind_name(kind)));
    recording_platform plat;
    mem::frame_pool pool(mem::pool_config{.capacity_frames = 64}, plat);
    auto t = make_table(kind, domain_config{.mode = concurrency_mode::locked}, pool);
    ASSERT_TRUE(t.ok());
    gather g;
    ASSERT_TRUE((*t)->map(k2m, 0x4000'0000, k2m, perm_rw, g).ok());  // one 2M leaf
    const std::uint64_t writes_before = plat.of(cost_kind::pte_write);
    EXPECT_EQ(plat.of(cost_kind::table_fill), 0u);
    ASSERT_TRUE((*t)->unmap(k2m + 7 * k4k, k4k, g).ok());  // splits it
    EXPECT_EQ(plat.of(cost_kind::table_fill), 1u);
    EXPECT_LT(plat.of(cost_kind::pte_write) - writes_before, 16u)
        << "the split's 512 entries were charged as map calls";
    (*t)->destroy(g);
    for (auto f : g.released())
      ASSERT_TRUE(pool.free(f, "test").ok());
  }
}

TEST(TableLines, NoSlotsChargeNothing) {
  const outcome off = two_cpus_writing(true, 0);
  EXPECT_EQ(off.transfers, 0u);
  EXPECT_LT(off.elapsed_ns, two_cpus_writing(true).elapsed_ns);
}

}  // namespace
}  // namespace ptreclaim::pt
