// Cost of the IOMMU model's own machinery (all modelled latencies zero): translations per second
// on an IOTLB hit, a paging-structure-cache hit and a full 4-level walk, and the cost of
// submitting and completing an invalidation (PSI + wait, DSI + wait) through the flush helper.
// These measure the simulator, not hardware; modelled hardware time is in latency_config.
#include <benchmark/benchmark.h>

#include <memory>

#include "ptreclaim/iommu/system.hpp"
#include "ptreclaim/pt/table.hpp"

namespace ptreclaim::iommu {
namespace {

constexpr std::uint64_t k4k = 4096;
constexpr std::uint64_t k512g = 1ull << 39;

struct env {
  explicit env(unit_config c) : pool(mem::pool_config{.capacity_frames = 4096}), sys(pool) {
    c.latency = latency_config::zero();
    u = sys.add_unit(c);
    auto t = pt::make_table(pt::format_kind::vtd_ss_4,
                            pt::domain_config{.domain = 1, .coalesce = false}, pool);
    table = std::move(*t);
    dom = *sys.create_domain({1, &pt::describe(pt::format_kind::vtd_ss_4), table->root(), 0b1110});
    PTR_ASSERT(sys.attach(1, u, *dom, 1).ok());
  }
  void map(iova_t iova, std::uint64_t size) {
    pt::gather g;
    // A physical base off 2 MiB alignment keeps 4 KiB pages (no superpage).
    PTR_ASSERT(table->map(iova, 0x1000'1000, size, pt::perm_rw, g).ok());
  }
  mem::frame_pool pool;
  system sys;
  unsigned u = 0;
  std::unique_ptr<pt::table> table;
  domain* dom = nullptr;
};

void report(benchmark::State& state, const env& e) {
  const unit_stats s = e.sys.get_unit(e.u).stats();
  const double n = static_cast<double>(s.translations);
  state.counters["iotlb_hit"] = n == 0 ? 0 : static_cast<double>(s.iotlb_hits) / n;
  state.counters["pte_reads_per_tr"] = n == 0 ? 0 : static_cast<double>(s.pte_reads) / n;
  state.SetItemsProcessed(state.iterations());
}

void BM_TranslateIotlbHit(benchmark::State& state) {
  static env e{unit_config{}};
  static const bool mapped = (e.map(0, k4k), true);
  (void)mapped;
  for (auto _ : state)
    benchmark::DoNotOptimize(e.sys.translate(1, 0x10, pt::perm_read));
  if (state.thread_index() == 0) report(state, e);
}
BENCHMARK(BM_TranslateIotlbHit)->Threads(1)->Threads(2);

// A 1-entry IOTLB and 512 pages of one leaf table: every translation misses the IOTLB and
// resumes from the level-2 PSC entry (one PTE read).
void BM_TranslatePscHit(benchmark::State& state) {
  unit_config c;
  c.iotlb = {1, 1, replacement::lru, 1};
  env e(c);
  e.map(0, 512 * k4k);
  std::uint64_t i = 0;
  for (auto _ : state)
    benchmark::DoNotOptimize(e.sys.translate(1, (i++ % 512) * k4k, pt::perm_read));
  report(state, e);
}
BENCHMARK(BM_TranslatePscHit);

// 1-entry caches and 16 regions 512 GiB apart: every translation walks all four levels.
void BM_TranslateFullWalk(benchmark::State& state) {
  unit_config c;
  c.iotlb = {1, 1, replacement::lru, 1};
  c.psc = {1, 1, replacement::lru, 1};
  env e(c);
  for (std::uint64_t r = 0; r < 16; ++r)
    e.map(r * k512g, k4k);
  std::uint64_t i = 0;
  for (auto _ : state)
    benchmark::DoNotOptimize(e.sys.translate(1, (i++ % 16) * k512g, pt::perm_read));
  report(state, e);
}
BENCHMARK(BM_TranslateFullWalk);

// The flush helper: PSI (IH=0) + wait submitted and polled to completion, epochs updated.
void BM_InvalidatePsiSubmitComplete(benchmark::State& state) {
  env e{unit_config{}};
  e.map(0, k4k);
  for (auto _ : state) {
    auto t = e.sys.invalidate(*e.dom, {0, k4k - 1, true});
    benchmark::DoNotOptimize(e.sys.poll(*t));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_InvalidatePsiSubmitComplete);

void BM_InvalidateDsiSubmitComplete(benchmark::State& state) {
  env e{unit_config{}};
  e.map(0, k4k);
  for (auto _ : state) {
    auto t = e.sys.invalidate_all(*e.dom);
    benchmark::DoNotOptimize(e.sys.poll(*t));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_InvalidateDsiSubmitComplete);

// The raw queue: one PSI + wait on a unit, polled.
void BM_QueuePsiWaitRaw(benchmark::State& state) {
  env e{unit_config{}};
  unit& u = e.sys.get_unit(e.u);
  const std::array<inv_descriptor, 2> descs{inv_descriptor::page(1, 0, 0, false),
                                            inv_descriptor::wait()};
  for (auto _ : state) {
    auto s = u.submit(descs);
    benchmark::DoNotOptimize(u.poll(*s + 1));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_QueuePsiWaitRaw);

}  // namespace
}  // namespace ptreclaim::iommu
BENCHMARK_MAIN();
