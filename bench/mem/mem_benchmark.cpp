// Frame-pool costs: a frame allocated and freed at once (the per-CPU cache's fast path) and
// bursts of frames allocated, then freed (which refill from and spill to the shared depot),
// at 1 and 2 threads, each thread a CPU of its own pool cache. Real time, so items_per_second
// at 2 threads is the total of both; the alloc/free pair also reports overlap-gated ns per
// iteration (common/overlap.hpp): its cost while both threads run, which the host's load does
// not hide. Poisoning on free is an argument (the reclaim benchmark's --reclaim_poison): with
// it, a free writes 4 KiB, as an alloc always does (zeroing).
#include <benchmark/benchmark.h>

#include <array>
#include <cstdint>
#include <memory>

#include "common/overlap.hpp"
#include "ptreclaim/base/platform.hpp"
#include "ptreclaim/mem/frame_pool.hpp"

namespace ptreclaim::mem {
namespace {

constexpr unsigned max_threads = 2;
constexpr std::uint32_t capacity = 1u << 14;  // 64 MiB: enough for every burst below
bench::overlap_meter meter;

real_platform& plat() {
  static real_platform p(max_threads);
  return p;
}

// One pool per poison setting, pre-faulted (every frame allocated and
// freed once), so no benchmark pays first-touch page faults.
frame_pool& pool_for(bool poison) {
  static std::array<std::unique_ptr<frame_pool>, 2> pools;
  auto& p = pools[poison ? 1 : 0];
  if (!p) {
    p = std::make_unique<frame_pool>(
        pool_config{.capacity_frames = capacity, .caches = max_threads, .poison = poison}, plat());
    std::vector<frame_id> all;
    for (Result<frame_id> f = p->alloc_data(); f.ok(); f = p->alloc_data())
      all.push_back(*f);
    for (frame_id f : all)
      (void)p->free(f, "prefault");
  }
  return *p;
}

void BM_alloc_free(benchmark::State& state) {
  frame_pool& pool = pool_for(state.range(0) != 0);
  plat().set_current_cpu(static_cast<unsigned>(state.thread_index()));
  if (state.thread_index() == 0) meter.reset();
  bench::overlap_meter::probe probe(meter, state);
  for (auto _ : state) {
    const Result<frame_id> f = pool.alloc_data();
    benchmark::DoNotOptimize(f);
    (void)pool.free(*f, "bench");
    probe.tick();
  }
  probe.finish(state);
  state.SetItemsProcessed(state.iterations());
}

// `burst` frames allocated, then freed in the same order; items are frames.
void BM_alloc_free_burst(benchmark::State& state) {
  frame_pool& pool = pool_for(state.range(0) != 0);
  const auto burst = static_cast<std::size_t>(state.range(1));
  plat().set_current_cpu(static_cast<unsigned>(state.thread_index()));
  std::vector<frame_id> held(burst);
  for (auto _ : state) {
    for (std::size_t i = 0; i < burst; ++i)
      held[i] = *pool.alloc_data();
    for (std::size_t i = 0; i < burst; ++i)
      (void)pool.free(held[i], "bench");
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(burst));
}

// Both pools are built before main, single-threaded: no benchmark thread races to build one.
const bool built = [] {
  (void)pool_for(false);
  (void)pool_for(true);
  return true;
}();

BENCHMARK(BM_alloc_free)->ArgName("poison")->Arg(0)->Arg(1)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_alloc_free_burst)
    ->ArgNames({"poison", "burst"})
    ->Args({0, 256})
    ->Args({1, 256})
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime();

}  // namespace
}  // namespace ptreclaim::mem

BENCHMARK_MAIN();
