// Page-table mutation costs: map and unmap of 4 KiB and 2 MiB pages (ns per operation) in
// locked and lock-free mode, and a coalesce/shatter cycle (512 4K pages become a 2M superpage;
// unmapping one page splits it; remapping it coalesces again). Released frames are freed at
// once (as if the invalidation had completed), inside the timed loop where they occur.
// Compare with Linux's generic page-table code, about 60-77 ns per 4 KiB map or unmap.
//
// Scaling: the multi-threaded benchmarks use real time, so items_per_second at 2 threads is the
// total of both threads (Google Benchmark's default divides by the threads' summed CPU time,
// which gives a per-thread rate). Two controls run beside the shared-domain one: the same loop
// on one domain per thread (nothing of ours shared) and a register-only loop: what this host
// gives two threads at all. Each also reports overlap-gated ns per iteration
// (common/overlap.hpp): the cost while both threads run, which the host's load does not hide.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "common/overlap.hpp"
#include "ptreclaim/base/platform.hpp"
#include "ptreclaim/mem/frame_pool.hpp"
#include "ptreclaim/pt/table.hpp"

namespace ptreclaim::pt {
namespace {

constexpr std::uint64_t k4k = 4096;
constexpr std::uint64_t k2m = 2ull << 20;
constexpr unsigned window_pages = 8192;  // pages cycled through before the table is reset
bench::overlap_meter meter;              // the multi-threaded benchmarks' chunk timings

struct fixture {
  mem::frame_pool pool;
  std::unique_ptr<table> t;
  gather g;
  explicit fixture(domain_config cfg, std::uint32_t frames = 1u << 16)
      : pool(mem::pool_config{.capacity_frames = frames, .caches = 4}) {
    t = std::move(make_table(format_kind::vtd_ss_4, cfg, pool)).value();
  }
  ~fixture() {
    g.clear();
    t->destroy(g);
    drain();
  }
  void drain() {
    for (auto f : g.released())
      (void)pool.free(f, "bench");
    g.clear();
  }
};

domain_config cfg_for(int64_t mode) {
  return mode == 0 ? domain_config{.mode = concurrency_mode::locked}
                   : domain_config{.mode = concurrency_mode::lock_free};
}
// Scattered (non-contiguous) phys so 4K maps do not coalesce: the plain map cost.
std::uint64_t phys_of(std::uint64_t i, std::uint64_t page) {
  return ((i * 7919) % 65521 + 1) * page * 3;
}

void BM_Map(benchmark::State& state) {
  const std::uint64_t page = state.range(1) == 4 ? k4k : k2m;
  fixture fx(cfg_for(state.range(0)));
  const iova_t base = (1ull << 40) + static_cast<iova_t>(state.thread_index()) * (1ull << 36);
  std::uint64_t i = 0;
  for (auto _ : state) {
    if (i == window_pages) {
      state.PauseTiming();
      (void)fx.t->unmap(base, window_pages * page, fx.g);
      fx.drain();
      i = 0;
      state.ResumeTiming();
    }
    benchmark::DoNotOptimize(fx.t->map(base + i * page, phys_of(i, page), page, perm_rw, fx.g));
    ++i;
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_Unmap(benchmark::State& state) {
  const std::uint64_t page = state.range(1) == 4 ? k4k : k2m;
  fixture fx(cfg_for(state.range(0)));
  const iova_t base = 1ull << 40;
  std::uint64_t i = window_pages;
  for (auto _ : state) {
    if (i == window_pages) {
      state.PauseTiming();
      for (std::uint64_t j = 0; j < window_pages; ++j)
        (void)fx.t->map(base + j * page, phys_of(j, page), page, perm_rw, fx.g);
      // Locked mode: every 512th 4K unmap empties a leaf table, which is released (and freed
      // here): that cost is part of the figure, as it is in Xen.
      fx.drain();
      i = 0;
      state.ResumeTiming();
    }
    benchmark::DoNotOptimize(fx.t->unmap(base + i * page, page, fx.g));
    fx.g.clear();
    ++i;
  }
  fx.drain();
  state.SetItemsProcessed(state.iterations());
}

// 4K map+unmap pairs on `fx`'s table, each thread in its own 1 GiB range; each thread is a CPU of
// the default platform, so the tables it allocates come from its own pool cache. `fx` is read
// once the loop has started (another thread may still be building it before that).
void map_unmap_4k_loop(benchmark::State& state, fixture* const& fx) {
  default_platform().set_current_cpu(static_cast<unsigned>(state.thread_index()));
  const iova_t base = (1ull << 40) + static_cast<iova_t>(state.thread_index()) * (1ull << 30);
  gather g;
  if (state.thread_index() == 0) meter.reset();
  bench::overlap_meter::probe probe(meter, state);
  std::uint64_t i = 0;
  for (auto _ : state) {
    const iova_t iova = base + (i % window_pages) * k4k;
    benchmark::DoNotOptimize(fx->t->map(iova, phys_of(i, k4k), k4k, perm_rw, g));
    benchmark::DoNotOptimize(fx->t->unmap(iova, k4k, g));
    g.clear();
    ++i;
    probe.tick();
  }
  probe.finish(state);
  state.SetItemsProcessed(2 * state.iterations());
  default_platform().set_current_cpu(0);
}

// Lock-free mode, several threads on one domain, disjoint ranges.
void BM_MapUnmap4KLockFreeShared(benchmark::State& state) {
  static fixture* shared = nullptr;
  if (state.thread_index() == 0) shared = new fixture(cfg_for(1));
  // Google Benchmark starts every thread's loop together, after thread 0 built the fixture.
  map_unmap_4k_loop(state, shared);
  if (state.thread_index() == 0) {
    delete shared;
    shared = nullptr;
  }
}

// The control: the same loop, each thread on a domain and pool of its own.
void BM_MapUnmap4KLockFreeSeparate(benchmark::State& state) {
  fixture own(cfg_for(1), 1u << 12);
  fixture* const fx = &own;
  map_unmap_4k_loop(state, fx);
}

// The host's ceiling: a register-only loop (no memory traffic) per thread. What two threads get
// here bounds what any code can scale to on this machine at that moment.
void BM_ComputeCeiling(benchmark::State& state) {
  std::uint64_t x = static_cast<std::uint64_t>(state.thread_index()) + 1;
  if (state.thread_index() == 0) meter.reset();
  bench::overlap_meter::probe probe(meter, state);
  for (auto _ : state) {
    for (unsigned k = 0; k < 64; ++k)
      x = x * 6364136223846793005ull + 1442695040888963407ull;
    benchmark::DoNotOptimize(x);
    probe.tick();
  }
  probe.finish(state);
  state.SetItemsProcessed(state.iterations());
}

// One cycle: unmap one 4K page of a 2M superpage (split: allocate a table, 512 stores) and map
// it back (the table becomes all-contiguous and coalesces: the table is released and freed).
void BM_CoalesceShatterCycle(benchmark::State& state) {
  fixture fx(domain_config{.mode = concurrency_mode::locked, .coalesce = true});
  const iova_t base = 1ull << 40;
  const std::uint64_t phys = 1ull << 33;
  for (unsigned j = 0; j < 512; ++j)
    (void)fx.t->map(base + j * k4k, phys + j * k4k, k4k, perm_rw, fx.g);
  fx.drain();
  std::uint64_t i = 0;
  for (auto _ : state) {
    const std::uint64_t j = (i++ * 97) % 512;
    benchmark::DoNotOptimize(fx.t->unmap(base + j * k4k, k4k, fx.g));
    benchmark::DoNotOptimize(fx.t->map(base + j * k4k, phys + j * k4k, k4k, perm_rw, fx.g));
    fx.drain();
  }
  state.counters["coalesced"] = static_cast<double>(fx.t->stats().coalesced);
  state.SetItemsProcessed(state.iterations());
}

// 512 contiguous 4K maps that end in a coalesce, then one 2M unmap: the Xen steady state.
void BM_Map512x4KCoalesce(benchmark::State& state) {
  fixture fx(domain_config{.mode = concurrency_mode::locked, .coalesce = true});
  const iova_t base = 1ull << 40;
  const std::uint64_t phys = 1ull << 33;
  for (auto _ : state) {
    for (unsigned j = 0; j < 512; ++j)
      (void)fx.t->map(base + j * k4k, phys + j * k4k, k4k, perm_rw, fx.g);
    (void)fx.t->unmap(base, k2m, fx.g);
    fx.drain();
  }
  state.SetItemsProcessed(state.iterations() * 512);
}

// Args: {mode (0 locked, 1 lock-free), page KiB/1024 marker (4 = 4K, 2 = 2M)}.
BENCHMARK(BM_Map)
    ->ArgNames({"lockfree", "page"})
    ->Args({0, 4})
    ->Args({1, 4})
    ->Args({0, 2})
    ->Args({1, 2});
BENCHMARK(BM_Unmap)
    ->ArgNames({"lockfree", "page"})
    ->Args({0, 4})
    ->Args({1, 4})
    ->Args({0, 2})
    ->Args({1, 2});
BENCHMARK(BM_MapUnmap4KLockFreeShared)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_MapUnmap4KLockFreeSeparate)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_ComputeCeiling)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_CoalesceShatterCycle);
BENCHMARK(BM_Map512x4KCoalesce);

}  // namespace
}  // namespace ptreclaim::pt

BENCHMARK_MAIN();
