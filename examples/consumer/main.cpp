// An outside project that knows ptreclaim only through the installed CMake package: it builds a
// VT-d page table, lets 512 4 KiB maps coalesce into a 2 MiB superpage, and checks what the
// gather says and that the frame ledger catches a double free.
#include <cstdio>

#include "ptreclaim/config.hpp"
#include "ptreclaim/mem/frame_pool.hpp"
#include "ptreclaim/pt/table.hpp"

int main() {
  using namespace ptreclaim;
  mem::frame_pool pool({.capacity_frames = 64});
  auto table = pt::make_table(pt::format_kind::vtd_ss_4, {.domain = 1}, pool);
  if (!table.ok()) return 1;
  pt::gather g;
  for (unsigned i = 0; i < 512; ++i) {
    if (!(*table)
             ->map(0x200000 + i * 0x1000ULL, 0x40000000 + i * 0x1000ULL, 0x1000, pt::perm_rw, g)
             .ok())
      return 1;
  }
  const auto t = (*table)->lookup(0x200000);
  const bool coalesced = t && t->level == 2 && g.released().size() == 1 && g.nonleaf_changed();
  // The released leaf table may be freed only after an invalidation (here: nothing walks it).
  for (mem::frame_id f : g.released())
    if (!pool.free(f, "consumer").ok()) return 1;
  const bool caught = !pool.free(g.released().front(), "consumer-again").ok();  // double free
  g.clear();
  (*table)->destroy(g);
  for (mem::frame_id f : g.released())
    if (!pool.free(f, "consumer-teardown").ok()) return 1;
  std::printf(
      "ptreclaim %.*s consumer: default policy %.*s, coalesced into a 2 MiB superpage: %s, "
      "double free caught: %s, leaks: %zu\n",
      static_cast<int>(config::version.size()), config::version.data(),
      static_cast<int>(config::default_policy.size()), config::default_policy.data(),
      coalesced ? "yes" : "no", caught ? "yes" : "no", pool.leaks().size());
  return coalesced && caught && pool.leaks().empty() ? 0 : 1;
}
