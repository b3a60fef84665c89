// The reclamation machinery, alone: retire-to-free throughput, frames pending and
// retire-to-free latency of every policy and of three peers, on the same 4 KiB frames.
//
// Every iteration takes a frame from a pre-filled frame pool (alloc_table), marks it retired
// (pool.mark_retired, which stamps meta.retired_ns) and hands it over:
//   BM_plain_free          pool.free at once: the floor every figure is a ratio to;
//   BM_retire/<policy>     a one-frame gather to policy.retire(), for every policy of the registry,
//                          `immediate` being the floor plus the policy layer's accounting;
//   BM_urcu_call_rcu       liburcu (memb flavour) call_rcu with per-CPU call_rcu workers;
//   BM_xenium_hazard_pointer  xenium hazard_pointer: retire of a node holding the frame id,
//                          whose deleter frees the frame;
//   BM_mutex_list_worker   a mutex-protected global list drained by one worker thread.
// The invalidation source completes at once (instant_backend), so only the machinery counts.
// Each thread is a CPU of a bench_kernel (bench_kernel.hpp) and passes its scheduler
// point every `sched_every` retires; the last iteration waits until every frame is really
// freed (that tail is timed), so items_per_second is retire-to-free throughput.
//
// Counters: peak_pending (frames allocated and not freed, sampled by the producers every
// `sched_every` iterations), peak_held_sum (policies: the sum of every holder's own peak, an
// upper bound of the true peak), p50_ns / p99_ns (retire-to-free latency; policies: every frame,
// from the policy's histogram; peers: every 16th frame, in the deleter).
#include <benchmark/benchmark.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "ptreclaim/base/histogram.hpp"
#include "ptreclaim/mem/frame_pool.hpp"
#include "ptreclaim/reclaim/reclaimer.hpp"
#include "reclaim/bench_kernel.hpp"

#if PTRECLAIM_BENCH_HAVE_URCU
#include <urcu/urcu-memb.h>
#endif
#if PTRECLAIM_BENCH_HAVE_XENIUM
#include <xenium/reclamation/hazard_pointer.hpp>
#endif

namespace ptreclaim::bench {
namespace {

constexpr unsigned max_threads = 2;
// 1 GiB of frames: room for the peers' backlog. --reclaim_pool_frames=N (anywhere among
// Google Benchmark's flags) shrinks it for smoke runs; a producer that finds the pool empty
// waits for the consumers.
std::uint32_t pool_frames = 1u << 18;
// The pool's per-CPU caches and poisoning, the same for every benchmark (floor, policies and
// peers): --reclaim_pool_cache=N, --reclaim_poison=0|1. 512 frames per CPU, like the hundreds of
// pages Linux's per-CPU page lists hold: with the pool's default of 64, every batched free of 64
// frames spills to the shared depot, and the benchmark would measure that lock, not reclamation.
unsigned pool_cache_frames = 512;
bool pool_poison = true;
// flush-epoch's batch_frames and watermark for BM_retire_low_latency: --reclaim_batch_frames=N,
// --reclaim_watermark=N.
std::uint32_t batch_frames = 4;
std::uint64_t watermark = 3;  // more than 3 frames waiting: at the 4th
constexpr unsigned sched_every = 64;
constexpr reclaim::domain_number dom = 1;

// Invalidations complete the moment they are submitted.
class instant_backend final : public reclaim::invalidation_backend {
 public:
  Result<reclaim::epoch_t> invalidate(reclaim::domain_number,
                                      const reclaim::invalidation_range&) override {
    return epoch_.fetch_add(1, std::memory_order_seq_cst) + 1;  // (1) pairs with (2)
  }
  // As iommu::domain::flush_stamp(): a full fence and a load, so stamping shares the line.
  reclaim::epoch_t stamp(reclaim::domain_number) noexcept override {
    std::atomic_thread_fence(std::memory_order_seq_cst);  // (2) pairs with (1)
    return epoch_.load(std::memory_order_relaxed);
  }
  reclaim::epoch_t completed(reclaim::domain_number) noexcept override {
    return epoch_.load(std::memory_order_acquire);  // (3) pairs with (1)
  }
  reclaim::epoch_t completed_full(reclaim::domain_number) noexcept override {
    return epoch_.load(std::memory_order_acquire);  // (3) pairs with (1)
  }
  bool wait(reclaim::domain_number, reclaim::epoch_t, std::uint64_t) override { return true; }

 private:
  alignas(64) std::atomic<reclaim::epoch_t> epoch_{0};
};

struct world {
  world() {
    // Pre-fault the whole pool (allocate, retire and free every frame once), so no benchmark
    // pays the kernel's first-touch page faults - the first one to run would pay the most.
    std::vector<mem::frame_id> all;
    all.reserve(pool_frames);
    for (;;) {
      Result<mem::frame_id> f = pool.alloc_table(dom, 1);
      if (!f.ok()) break;
      all.push_back(*f);
    }
    for (mem::frame_id f : all) {
      (void)pool.mark_retired(f);
      (void)pool.free(f, "prefault");
    }
  }
  bench_kernel ex{max_threads};
  mem::frame_pool pool{mem::pool_config{.capacity_frames = pool_frames,
                                        .caches = max_threads,
                                        .cache_frames = pool_cache_frames,
                                        .poison = pool_poison},
                       ex};
  instant_backend backend;
};
world& the_world() {
  static world w;
  return w;
}

// Per benchmark run (set up by thread 0 before the loop, read by all after the start barrier).
struct run_state {
  std::unique_ptr<reclaim::reclaimer> policy;
  std::atomic<unsigned> arrived{0};
  std::atomic<std::uint64_t> peak{0};
  std::mutex lat_mu;
  log_histogram lat;  // peers' sampled latencies
};
run_state* g_run = nullptr;

void note_peak(std::uint64_t v) {
  std::uint64_t p = g_run->peak.load(std::memory_order_relaxed);
  while (v > p && !g_run->peak.compare_exchange_weak(p, v, std::memory_order_relaxed)) {
  }
}

// A peer's free: the pool, plus a latency sample for every 16th frame.
void peer_free(mem::frame_id f) {
  mem::frame_pool& pool = the_world().pool;
  if ((f.value & 15) == 0) {
    const std::uint64_t r = pool.meta(f).retired_ns.load(std::memory_order_relaxed);
    const std::uint64_t now = the_world().ex.now_ns();
    std::lock_guard g(g_run->lat_mu);
    g_run->lat.record(now >= r ? now - r : 0);
  }
  (void)pool.free(f, "peer");
}

// Takes a frame and retires it; while the pool is empty, `relieve` lets the consumers run.
template <class Relieve>
mem::frame_id take_retired(Relieve&& relieve) {
  mem::frame_pool& pool = the_world().pool;
  for (;;) {
    Result<mem::frame_id> f = pool.alloc_table(dom, 1);
    if (f.ok()) {
      (void)pool.mark_retired(*f);
      return *f;
    }
    relieve();
  }
}

// The timed tail of the last iteration: every thread arrives, then waits (serving its own
// deferred work through `serve`) until every frame is free.
template <class Serve>
void finish(benchmark::State& state, Serve&& serve) {
  mem::frame_pool& pool = the_world().pool;
  g_run->arrived.fetch_add(1, std::memory_order_acq_rel);  // (4) pairs with (5)
  while (g_run->arrived.load(std::memory_order_acquire) <  // (5) pairs with (4)
         static_cast<unsigned>(state.threads()))
    serve();
  while (pool.stats().in_use != 0)
    serve();
}

void report(benchmark::State& state, std::uint64_t p50, std::uint64_t p99) {
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
  if (state.thread_index() != 0) return;
  state.counters["peak_pending"] = static_cast<double>(g_run->peak.load());
  state.counters["p50_ns"] = static_cast<double>(p50);
  state.counters["p99_ns"] = static_cast<double>(p99);
}

void setup_run(benchmark::State& state) {
  if (state.thread_index() == 0) g_run = new run_state();
}
void teardown_run(benchmark::State& state) {
  if (state.thread_index() == 0) {
    PTR_ASSERT_MSG(the_world().pool.stats().in_use == 0, "benchmark left frames allocated");
    delete g_run;
    g_run = nullptr;
  }
}

// ---- the floor ----

void BM_plain_free(benchmark::State& state) {
  setup_run(state);
  mem::frame_pool& pool = the_world().pool;
  const auto cpu = static_cast<unsigned>(state.thread_index());
  bench_kernel::cpu_scope scope(the_world().ex, cpu);
  for (auto _ : state) {
    const mem::frame_id f = take_retired([] {});
    (void)pool.free(f, "floor");
  }
  report(state, 0, 0);
  teardown_run(state);
}

// ---- the policies ----

// caller_flush: after each retire the caller invalidates the gather and waits (Xen's caller
// contract, invalidate_after_retire); flush-epoch rides on it.
void retire_bench(benchmark::State& state, reclaim::policy_kind kind, bool caller_flush,
                  const reclaim::reclaim_config& config = {}) {
  world& w = the_world();
  if (state.thread_index() == 0) {
    setup_run(state);
    auto p = reclaim::make_reclaimer(kind, reclaim::reclaim_env{w.ex, w.backend, w.pool, nullptr},
                                     config);
    PTR_ASSERT_MSG(p.ok(), "make_reclaimer failed");
    g_run->policy = std::move(*p);
  }
  const auto cpu = static_cast<unsigned>(state.thread_index());
  bench_kernel::cpu_scope scope(w.ex, cpu);
  pt::gather g;
  g.add_released(mem::no_frame);  // capacity for one frame: the loop never allocates
  std::uint64_t n = 0;
  const auto serve = [&] { w.ex.scheduler_point(cpu); };
  for (auto _ : state) {
    const mem::frame_id f = take_retired(serve);
    g.clear();
    g.add_range(std::uint64_t{f.value} << 12, (std::uint64_t{f.value} << 12) + 4095);
    g.set_nonleaf_changed();
    g.add_released(f);
    g_run->policy->retire(dom, g);
    if (caller_flush)
      (void)reclaim::invalidate_after_retire(*g_run->policy, w.backend, dom, g, 1'000'000'000);
    if (++n % sched_every == 0) {
      serve();
      note_peak(w.pool.stats().in_use);
    }
    if (n == static_cast<std::uint64_t>(state.max_iterations)) finish(state, serve);
  }
  std::uint64_t p50 = 0, p99 = 0;
  if (state.thread_index() == 0) {
    const reclaim::reclaim_stats st = g_run->policy->stats();
    p50 = st.retire_to_free_ns.percentile(0.50);
    p99 = st.retire_to_free_ns.percentile(0.99);
    state.counters["peak_held_sum"] = static_cast<double>(st.peak_pending);
    state.counters["invalidations"] = static_cast<double>(st.invalidations);
  }
  report(state, p50, p99);
  if (state.thread_index() == 0) {
    PTR_ASSERT_MSG(g_run->policy->pending() == 0, "policy left frames pending");
    g_run->policy.reset();  // unregisters its tasklets, timers and notifiers
  }
  teardown_run(state);
}

void BM_retire(benchmark::State& state, reclaim::policy_kind kind) {
  retire_bench(state, kind, false);
}
void BM_retire_caller_flush(benchmark::State& state, reclaim::policy_kind kind) {
  retire_bench(state, kind, true);
}

// flush-epoch without caller flushes, tuned for latency: it asks for its own (asynchronous)
// invalidation once 4 frames wait (watermark 3: it asks when a CPU holds more than that), in
// batches of 4, instead of at the default watermark of 64.
void BM_retire_low_latency(benchmark::State& state) {
  reclaim::reclaim_config c;
  c.watermark = watermark;
  c.batch_frames = batch_frames;
  c.flush_age_ns = 10'000;
  retire_bench(state, reclaim::policy_kind::flush_epoch, false, c);
}
BENCHMARK(BM_retire_low_latency)->Threads(1)->Threads(2)->UseRealTime();

// The floor with the caller's flush: invalidate, wait, free.
void BM_flush_then_free(benchmark::State& state) {
  setup_run(state);
  world& w = the_world();
  const auto cpu = static_cast<unsigned>(state.thread_index());
  bench_kernel::cpu_scope scope(w.ex, cpu);
  for (auto _ : state) {
    const mem::frame_id f = take_retired([] {});
    Result<reclaim::epoch_t> e = w.backend.invalidate(dom, {});
    (void)w.backend.wait(dom, *e, 1'000'000'000);
    (void)w.pool.free(f, "floor");
  }
  report(state, 0, 0);
  teardown_run(state);
}

#define PTR_RETIRE_BENCH(name, kind)                                          \
  BENCHMARK_CAPTURE(BM_retire, name, reclaim::policy_kind::kind)              \
      ->Threads(1)                                                            \
      ->Threads(2)                                                            \
      ->UseRealTime();                                                        \
  BENCHMARK_CAPTURE(BM_retire_caller_flush, name, reclaim::policy_kind::kind) \
      ->Threads(1)                                                            \
      ->Threads(2)                                                            \
      ->UseRealTime()

BENCHMARK(BM_plain_free)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_flush_then_free)->Threads(1)->Threads(2)->UseRealTime();
// Every policy of the registry.
#define PTRECLAIM_POLICY(id, name, safe, needs_caller_flush, summary) PTR_RETIRE_BENCH(id, id);
#include "ptreclaim/reclaim/policies.def"
#undef PTRECLAIM_POLICY

// ---- peer: a mutex-protected global list drained by one worker thread ----

struct mutex_list {
  std::mutex mu;
  std::vector<std::uint32_t> list;
  std::atomic<bool> stop{false};
  std::thread worker;
};
mutex_list* g_ml = nullptr;

void BM_mutex_list_worker(benchmark::State& state) {
  if (state.thread_index() == 0) {
    setup_run(state);
    g_ml = new mutex_list();
    g_ml->list.reserve(pool_frames);
    g_ml->worker = std::thread([] {
      std::vector<std::uint32_t> mine;
      mine.reserve(pool_frames);
      while (!g_ml->stop.load(std::memory_order_acquire)) {  // (6) pairs with (7)
        {
          std::lock_guard l(g_ml->mu);
          mine.swap(g_ml->list);
        }
        if (mine.empty()) {
          std::this_thread::yield();
          continue;
        }
        for (std::uint32_t f : mine)
          peer_free(mem::frame_id{f});
        mine.clear();
      }
    });
  }
  const auto cpu = static_cast<unsigned>(state.thread_index());
  bench_kernel::cpu_scope scope(the_world().ex, cpu);
  std::uint64_t n = 0;
  for (auto _ : state) {
    const mem::frame_id f = take_retired([] { std::this_thread::yield(); });
    {
      std::lock_guard l(g_ml->mu);
      g_ml->list.push_back(f.value);
    }
    if (++n % sched_every == 0) note_peak(the_world().pool.stats().in_use);
    if (n == static_cast<std::uint64_t>(state.max_iterations))
      finish(state, [] { std::this_thread::yield(); });
  }
  std::uint64_t p50 = 0, p99 = 0;
  if (state.thread_index() == 0) {
    g_ml->stop.store(true, std::memory_order_release);  // (7) pairs with (6)
    g_ml->worker.join();
    delete g_ml;
    g_ml = nullptr;
    p50 = g_run->lat.percentile(0.50);
    p99 = g_run->lat.percentile(0.99);
  }
  report(state, p50, p99);
  teardown_run(state);
}
BENCHMARK(BM_mutex_list_worker)->Threads(1)->Threads(2)->UseRealTime();

// ---- peer: liburcu call_rcu with per-CPU call_rcu workers ----

#if PTRECLAIM_BENCH_HAVE_URCU
struct rcu_frame {
  struct rcu_head head;
  std::uint32_t frame;
};
rcu_frame* g_rcu_nodes = nullptr;  // one per frame: a frame is retired at most once at a time

void rcu_free_frame(struct rcu_head* h) {
  static_assert(offsetof(rcu_frame, head) == 0, "the rcu_head opens the node");
  const auto* n = reinterpret_cast<const rcu_frame*>(h);
  peer_free(mem::frame_id{n->frame});
}

void BM_urcu_call_rcu(benchmark::State& state) {
  static const bool workers = [] {
    g_rcu_nodes = new rcu_frame[pool_frames]();
    return urcu_memb_create_all_cpu_call_rcu_data(0) == 0;
  }();
  if (!workers) {
    state.SkipWithError("create_all_cpu_call_rcu_data failed");
    return;
  }
  setup_run(state);
  urcu_memb_register_thread();
  const auto cpu = static_cast<unsigned>(state.thread_index());
  bench_kernel::cpu_scope scope(the_world().ex, cpu);
  std::uint64_t n = 0;
  for (auto _ : state) {
    const mem::frame_id f = take_retired([] { std::this_thread::yield(); });
    rcu_frame& node = g_rcu_nodes[f.value];
    node.frame = f.value;
    urcu_memb_call_rcu(&node.head, rcu_free_frame);
    if (++n % sched_every == 0) note_peak(the_world().pool.stats().in_use);
    if (n == static_cast<std::uint64_t>(state.max_iterations)) {
      finish(state, [&] {
        if (state.thread_index() == 0) urcu_memb_barrier();
        std::this_thread::yield();
      });
    }
  }
  urcu_memb_unregister_thread();
  std::uint64_t p50 = 0, p99 = 0;
  if (state.thread_index() == 0) {
    p50 = g_run->lat.percentile(0.50);
    p99 = g_run->lat.percentile(0.99);
  }
  report(state, p50, p99);
  teardown_run(state);
}
BENCHMARK(BM_urcu_call_rcu)->Threads(1)->Threads(2)->UseRealTime();
#endif

// ---- peer: xenium hazard pointers ----

#if PTRECLAIM_BENCH_HAVE_XENIUM
using hp = xenium::reclamation::hazard_pointer<>;
struct hp_node;
struct hp_deleter {
  void operator()(hp_node* n) const noexcept;
};
struct hp_node : hp::enable_concurrent_ptr<hp_node, 0, hp_deleter> {
  std::uint32_t frame = mem::no_frame.value;
};
void hp_deleter::operator()(hp_node* n) const noexcept {
  if (n->frame != mem::no_frame.value) peer_free(mem::frame_id{n->frame});
  delete n;
}
using hp_ptr = hp::concurrent_ptr<hp_node>;

void hp_retire(std::uint32_t frame) {
  auto* n = new hp_node();
  n->frame = frame;
  hp_ptr::guard_ptr g{hp_ptr::marked_ptr{n}};
  g.reclaim();
}

void BM_xenium_hazard_pointer(benchmark::State& state) {
  setup_run(state);
  const auto cpu = static_cast<unsigned>(state.thread_index());
  bench_kernel::cpu_scope scope(the_world().ex, cpu);
  std::uint64_t n = 0;
  for (auto _ : state) {
    const mem::frame_id f = take_retired([] { hp_retire(mem::no_frame.value); });
    hp_retire(f.value);
    if (++n % sched_every == 0) note_peak(the_world().pool.stats().in_use);
    // Retired nodes are scanned when a thread's list passes its threshold: the tail retires
    // empty nodes until every frame has been freed.
    if (n == static_cast<std::uint64_t>(state.max_iterations))
      finish(state, [] { hp_retire(mem::no_frame.value); });
  }
  std::uint64_t p50 = 0, p99 = 0;
  if (state.thread_index() == 0) {
    p50 = g_run->lat.percentile(0.50);
    p99 = g_run->lat.percentile(0.99);
  }
  report(state, p50, p99);
  teardown_run(state);
}
BENCHMARK(BM_xenium_hazard_pointer)->Threads(1)->Threads(2)->UseRealTime();
#endif

}  // namespace
}  // namespace ptreclaim::bench

int main(int argc, char** argv) {
  std::vector<char*> args;
  // Our own flags, among Google Benchmark's; a malformed value is an error, not a crash.
  const auto number = [](const std::string& a, const std::string& key, unsigned long lo,
                         unsigned long hi, unsigned long& out) {
    if (a.rfind(key, 0) != 0) return false;
    const std::string v = a.substr(key.size());
    std::size_t used = 0;
    try {
      out = std::stoul(v, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != v.size() || v.empty() || out < lo || out > hi) {
      std::fprintf(stderr, "reclaim_benchmark: %s wants a number in %lu..%lu, got '%s'\n",
                   key.c_str(), lo, hi, v.c_str());
      std::exit(2);
    }
    return true;
  };
  for (int i = 0; i < argc; ++i) {
    const std::string a = argv[i];
    unsigned long v = 0;
    if (number(a, "--reclaim_pool_frames=", 1024, 1ul << 24, v)) {
      ptreclaim::bench::pool_frames = static_cast<std::uint32_t>(v);
    } else if (number(a, "--reclaim_pool_cache=", 2, 1ul << 16, v)) {
      ptreclaim::bench::pool_cache_frames = static_cast<unsigned>(v);
    } else if (number(a, "--reclaim_batch_frames=", 1, 1ul << 20, v)) {
      ptreclaim::bench::batch_frames = static_cast<std::uint32_t>(v);
    } else if (number(a, "--reclaim_watermark=", 1, 1ul << 20, v)) {
      ptreclaim::bench::watermark = v;
    } else if (number(a, "--reclaim_poison=", 0, 1, v)) {
      ptreclaim::bench::pool_poison = v != 0;
    } else {
      args.push_back(argv[i]);
    }
  }
  int n = static_cast<int>(args.size());
  benchmark::Initialize(&n, args.data());
  if (benchmark::ReportUnrecognizedArguments(n, args.data())) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
