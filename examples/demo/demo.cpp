// ptreclaim_demo: what a page table owes the IOMMU, step by step.
// Maps 512 4 KiB pages of one domain (VT-d second stage, 4 levels, locked mode, coalescing on)
// so they coalesce into one 2 MiB superpage, shows the table that was released, splits the
// superpage with a partial unmap, unmaps everything, frees the released frames (as the
// reclamation layer would after the invalidation completed) and checks that nothing leaked.
// Exits non-zero if anything is not as expected.
#include <cinttypes>
#include <cstdio>
#include <string>

#include "ptreclaim/mem/frame_pool.hpp"
#include "ptreclaim/pt/table.hpp"

using namespace ptreclaim;

namespace {

int failures = 0;

void expect(bool ok, const char* what) {
  if (!ok) {
    std::printf("  !! unexpected: %s\n", what);
    ++failures;
  }
}

void show_gather(const pt::gather& g) {
  if (g.empty()) {
    std::printf("  the IOMMU needs no invalidation for this step\n");
  } else {
    std::printf("  the IOMMU must invalidate IOVAs 0x%" PRIx64 "..0x%" PRIx64 "%s\n", g.first(),
                g.last(),
                g.nonleaf_changed() ? ", including its cached page-table pointers (non-leaf change)"
                                    : " (leaf entries only)");
  }
  for (mem::frame_id f : g.released())
    std::printf(
        "  page-table frame %u was unlinked and is now retired: it may be freed only after "
        "that invalidation completes\n",
        f.value);
}

void free_released(mem::frame_pool& pool, pt::gather& g) {
  for (mem::frame_id f : g.released())
    expect(pool.free(f, "demo").ok(), "freeing a released frame");
  if (!g.released().empty())
    std::printf("  (invalidation done) freed %zu frame(s)\n", g.released().size());
  g.clear();
}

}  // namespace

int main() {
  mem::frame_pool pool(mem::pool_config{.capacity_frames = 256});
  const pt::domain_config cfg{.domain = 1, .mode = pt::concurrency_mode::locked, .coalesce = true};
  auto made = pt::make_table(pt::format_kind::vtd_ss_4, cfg, pool);
  if (!made.ok()) {
    std::printf("cannot build the table: %s\n", made.status().to_string().c_str());
    return 1;
  }
  pt::table& t = **made;
  const pt::iova_t iova = 0x4000'0000;       // 1 GiB
  const std::uint64_t phys = 0x1'2340'0000;  // 2 MiB aligned
  pt::gather g;

  std::printf("1. Map 512 pages of 4 KiB at IOVA 0x%" PRIx64 " -> physical 0x%" PRIx64
              ", one at a time.\n",
              iova, phys);
  for (unsigned i = 0; i < 512; ++i) {
    if (i == 511) {
      std::printf("  after 511 pages the domain uses %" PRIu64 " page-table frames\n",
                  t.linked_tables());
      expect(g.released().empty(), "no table released before the last page");
    }
    expect(t.map(iova + i * 4096ull, phys + i * 4096ull, 4096, pt::perm_rw, g).ok(),
           "map of a 4K page");
  }
  auto tr = t.lookup(iova + 0x12345);
  expect(tr && tr->level == 2 && tr->phys == phys + 0x12345,
         "a 2 MiB translation after coalescing");
  std::printf(
      "  the 512th page completed a contiguous run: the leaf table became one 2 MiB entry "
      "(lookup now reports a level-%u leaf)\n",
      tr ? tr->level : 0);
  expect(g.released().size() == 1 && g.nonleaf_changed(),
         "one released table and a non-leaf change");
  show_gather(g);
  free_released(pool, g);

  std::printf("2. Unmap one 4 KiB page in the middle of the superpage (IOVA 0x%" PRIx64 ").\n",
              iova + 0x7000);
  expect(t.unmap(iova + 0x7000, 4096, g).ok(), "partial unmap");
  std::printf(
      "  the superpage was split into a new table of 512 entries, then one entry cleared\n");
  expect(!t.lookup(iova + 0x7000) && t.lookup(iova + 0x8000) && t.lookup(iova + 0x8000)->level == 1,
         "the page is gone, its neighbours are 4K pages");
  expect(g.released().empty() && g.nonleaf_changed(),
         "a split releases nothing but changes a non-leaf entry");
  show_gather(g);
  g.clear();

  std::printf("3. Unmap the whole 2 MiB range.\n");
  expect(t.unmap(iova, 2u << 20, g).ok(), "full unmap");
  expect(!t.lookup(iova) && !t.lookup(iova + 0x1ff000), "nothing left mapped");
  std::printf(
      "  the leaf table and the intermediate tables above it became empty and were released, "
      "children first\n");
  expect(g.released().size() == 3,
         "three tables released (4K table, 2M-level table, 1G-level table)");
  show_gather(g);
  free_released(pool, g);

  std::printf("4. Tear the domain down.\n");
  t.destroy(g);
  const pt::table_stats st = t.stats();
  show_gather(g);
  free_released(pool, g);
  std::printf("  tables allocated %" PRIu64 ", released %" PRIu64 ", coalesced %" PRIu64
              ", split %" PRIu64 "\n",
              st.tables_allocated, st.tables_released, st.coalesced, st.split);

  const std::string leaks = pool.leak_report();
  expect(leaks.empty(), "the pool is whole after teardown");
  expect(pool.ledger_violation_count() == 0, "no ledger violation");
  std::printf("Leak check: %s\n",
              leaks.empty() ? "every frame is back in the pool" : leaks.c_str());
  std::printf("%s\n", failures == 0 ? "OK: everything happened as expected."
                                    : "FAILED: see the lines marked !!");
  return failures == 0 ? 0 : 1;
}
