// The reclamation mechanism alone: the freestanding flush-epoch core (include/ptreclaim/core)
// against the peers a hypervisor or VMM could take instead, on the cheapest frames there are.
//
// Every iteration takes a frame from the calling thread's free list (mech_pool.hpp), writes one
// word into it, and hands it to the variant, which frees it (now or later, on this thread or
// another) back to the pool:
//   floor              frees it at once: what every other figure is read against;
//   flush_epoch        core::flush_epoch_core on a benchmark platform (mech_platform.hpp) whose
//                      invalidations complete at once: the mechanism's own cost;
//   flush_epoch_async  the same, with a completer thread finishing each invalidation ~1 us
//                      (--mech_async_ns) after its submission, as an IOMMU's queue does;
//   xenium_hp / xenium_ebr / xenium_qsbr   xenium's hazard pointers, epoch-based (Fraser's EBR)
//                      and quiescent-state-based reclaimers: a node in the frame retired through a
//                      guard_ptr, whose deleter frees the frame;
//   urcu_call_rcu      liburcu (memb flavour) call_rcu with per-CPU call_rcu worker threads;
//   urcu_defer_rcu     liburcu defer_rcu (its defer thread, synchronize_rcu per batch);
//   mutex_list         a mutex-protected list drained by one worker thread.
// Peers keep their node in the frame's metadata (mech_pool.hpp), as Linux keeps an rcu_head in
// struct page, so no variant allocates per frame.
//
// The last iteration of every thread waits, serving its variant, until every frame of every
// thread is back in the pool; that tail is timed, so the time is retire-to-free throughput.
//
// Reading the figures: Google Benchmark's Time for N threads is wall time over all threads'
// frames; ns_per_frame (a counter) is each thread's wall time per frame of its own, the figure
// docs/benchmarks.md subtracts the floor from (mechanism_table.py). Counters: peak_pending (sum
// over threads of the most frames each had out of the pool, sampled every 64 frames), p50_ns /
// p99_ns (retire-to-free of every 64th frame); flush_epoch also peak_held (the core's own per-CPU
// peaks, summed) and requests / stamps per 1000 frames.
#include <benchmark/benchmark.h>
#include <urcu/urcu-memb.h>

#include <array>  // before xenium: generic_epoch_based.hpp uses std::array without including it
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <string>
#include <thread>
#include <vector>
#include <xenium/reclamation/generic_epoch_based.hpp>
#include <xenium/reclamation/hazard_pointer.hpp>
#include <xenium/reclamation/quiescent_state_based.hpp>

#include "core/mech_platform.hpp"
#include "core/mech_pool.hpp"

namespace ptreclaim::bench::mech {
namespace {

// --mech_frames_per_thread=N: 32768 (128 MiB per thread) leaves the peers room for backlog.
frame_index frames_per_thread = 32768;
// The core's bounds (--mech_watermark, --mech_batch_frames) and the async latency.
std::uint32_t core_watermark = 128;
std::uint32_t core_batch_frames = 64;
std::uint64_t async_latency_ns = 1000;
constexpr unsigned tick_every = 64;  // sample a frame, check timers and pending, every 64 frames

frame_pool& the_pool() {
  static frame_pool p(max_threads, frames_per_thread);
  return p;
}

// Per run, reset by thread 0 before the loop (Google Benchmark's start barrier orders it before
// every thread's first iteration); read by thread 0 after every thread has departed.
struct run_state {
  std::atomic<unsigned> arrived{0};
  std::atomic<unsigned> departed{0};
  std::uint64_t peak[max_threads] = {};
};
run_state g_run;

// ---- the variants: each has setup/teardown (thread 0, around the run) and a per-thread
// context with retire(f), tick(now) (every tick_every frames) and serve() (the pool is empty,
// or the run is finishing: make frames come back) ----

struct floor_variant {
  static void setup(unsigned) {}
  static void teardown(benchmark::State&) {}
  struct thread_ctx {
    explicit thread_ctx(unsigned) {}
    void retire(frame_index f) { the_pool().free(f); }
    void tick(std::uint64_t) {}
    void serve() {}
  };
};

template <class Backend>
struct flush_epoch_variant {
  using core_t = core::flush_epoch_core<platform<Backend>>;
  static inline std::optional<Backend> backend;
  static inline std::optional<platform<Backend>> plat;
  static inline std::optional<core_t> core;
  static inline void* storage = nullptr;

  static void setup(unsigned threads) {
    if constexpr (std::is_same_v<Backend, async_backend>)
      backend.emplace(async_latency_ns);
    else
      backend.emplace();
    plat.emplace(*backend, the_pool());
    core.emplace(*plat);
    core::core_config c;
    c.cpus = threads;
    c.max_domains = 1;
    c.frames_per_cpu = 2048;
    c.batches_per_cpu = 64;
    c.batch_frames = core_batch_frames;
    c.watermark = core_watermark;
    c.flush_age_ns = 20'000;
    c.iovas_per_cpu = 0;  // frames only: no lazy DMA here
    const std::size_t bytes = core_t::storage_bytes(c);
    storage = ::operator new (bytes, std::align_val_t{core_t::storage_align});
    if (core->init(c, storage, bytes) != core::init_status::ok) {
      std::fprintf(stderr, "mechanism_benchmark: core init failed\n");
      std::exit(1);
    }
  }
  static void teardown(benchmark::State& state) {
    const core::stats_snapshot s = core->total();
    const auto per_k = [&](std::uint64_t v) {
      return 1000.0 * static_cast<double>(v) / static_cast<double>(s.retired ? s.retired : 1);
    };
    state.counters["peak_held"] = static_cast<double>(s.peak_frames);
    state.counters["requests_per_k"] = per_k(s.requests);
    state.counters["stamps_per_k"] = per_k(s.stamps);
    state.counters["backpressure"] = static_cast<double>(s.backpressure);
    if (s.retired != s.freed || s.refused != 0) {
      std::fprintf(stderr, "mechanism_benchmark: the core left %llu frames or refused %llu\n",
                   static_cast<unsigned long long>(s.retired - s.freed),
                   static_cast<unsigned long long>(s.refused));
      std::exit(1);
    }
    core.reset();
    plat.reset();
    backend.reset();  // joins the completer
    ::operator delete (storage, std::align_val_t{core_t::storage_align});
    storage = nullptr;
  }
  struct thread_ctx {
    explicit thread_ctx(unsigned t) : cpu(t) {}
    void retire(frame_index f) {
      const std::uint64_t a = std::uint64_t{f} << 12;
      if (core->retire(0, core::iova_range{a, a + 4095}, &f, 1) != core::retire_status::queued) {
        std::fprintf(stderr, "mechanism_benchmark: the core did not queue a frame\n");
        std::exit(1);
      }
    }
    void tick(std::uint64_t now) {
      if (plat->take_due_timer(cpu, now)) core->on_timer(cpu);
    }
    void serve() {
      if (!core->drain_cpu(cpu)) {
        std::fprintf(stderr, "mechanism_benchmark: drain failed (the backend timed out)\n");
        std::exit(1);
      }
    }
    unsigned cpu;
  };
};

// xenium: a node in the frame's metadata, retired through a guard_ptr; dummies (serve) live on the
// heap.
template <class R>
struct xen_node;
template <class R>
struct xen_deleter {
  void operator()(xen_node<R>* n) const noexcept {
    if (n->in_frame) {
      const frame_index f = the_pool().of_node(n);
      n->~xen_node<R>();
      the_pool().free(f);
    } else {
      delete n;
    }
  }
};
template <class R>
struct xen_node : R::template enable_concurrent_ptr<xen_node<R>, 0, xen_deleter<R>> {
  bool in_frame = false;
};

template <class R>
struct xenium_variant {
  static_assert(sizeof(xen_node<R>) <= node_bytes, "the node must fit in the frame's metadata");
  using cptr = typename R::template concurrent_ptr<xen_node<R>>;
  static void setup(unsigned) {}
  static void teardown(benchmark::State&) {}
  static void reclaim(xen_node<R>* n) {
    typename cptr::guard_ptr g{typename cptr::marked_ptr{n}};
    g.reclaim();
  }
  struct thread_ctx {
    explicit thread_ctx(unsigned) {}
    void retire(frame_index f) {
      auto* n = ::new (the_pool().node(f)) xen_node<R>();
      n->in_frame = true;
      reclaim(n);
    }
    void tick(std::uint64_t) {}
    // Retired nodes are freed when the thread's list passes its threshold or the epoch moves:
    // retiring an empty node is what makes that happen.
    void serve() { reclaim(new xen_node<R>()); }
  };
};
using xenium_hp = xenium_variant<xenium::reclamation::hazard_pointer<>>;
using xenium_ebr = xenium_variant<xenium::reclamation::epoch_based<>>;
using xenium_qsbr = xenium_variant<xenium::reclamation::quiescent_state_based>;

// liburcu: the rcu_head (or the defer argument) is the frame's metadata node.
static_assert(sizeof(rcu_head) <= node_bytes, "rcu_head must fit in the frame's metadata");
void urcu_free(rcu_head* h) {
  the_pool().free(the_pool().of_node(h));
}
void urcu_free_arg(void* p) {
  the_pool().free(the_pool().of_node(p));
}

// liburcu asserts when a thread registers twice, and cannot register a thread for defer_rcu
// again after unregistering it; Google Benchmark's thread 0 is the main thread of every run. So
// each thread registers once (a reader, and for defer_rcu once more) and unregisters at its exit.
// A registered reader outside a read-side section does not hold up grace periods.
struct urcu_thread {
  bool reader = false, defer = false;
  void need_reader() {
    if (!reader) urcu_memb_register_thread();
    reader = true;
  }
  void need_defer() {
    need_reader();
    if (!defer && urcu_memb_defer_register_thread() != 0) {
      std::fprintf(stderr, "mechanism_benchmark: defer_register_thread failed\n");
      std::exit(1);
    }
    defer = true;
  }
  urcu_thread() = default;
  urcu_thread(const urcu_thread&) = delete;
  urcu_thread& operator=(const urcu_thread&) = delete;
  ~urcu_thread() {
    if (defer) urcu_memb_defer_unregister_thread();
    if (reader) urcu_memb_unregister_thread();
  }
};
urcu_thread& this_urcu_thread() {
  static thread_local urcu_thread t;
  return t;
}

struct urcu_call_rcu_variant {
  static void setup(unsigned) {
    static const bool workers = urcu_memb_create_all_cpu_call_rcu_data(0) == 0;
    if (!workers) {
      std::fprintf(stderr, "mechanism_benchmark: create_all_cpu_call_rcu_data failed\n");
      std::exit(1);
    }
  }
  static void teardown(benchmark::State&) {}
  struct thread_ctx {
    explicit thread_ctx(unsigned) { this_urcu_thread().need_reader(); }
    void retire(frame_index f) {
      urcu_memb_call_rcu(static_cast<rcu_head*>(the_pool().node(f)), urcu_free);
    }
    void tick(std::uint64_t) {}
    void serve() { urcu_memb_barrier(); }
  };
};

struct urcu_defer_rcu_variant {
  static void setup(unsigned) {}
  static void teardown(benchmark::State&) {}
  struct thread_ctx {
    explicit thread_ctx(unsigned) { this_urcu_thread().need_defer(); }
    void retire(frame_index f) { urcu_memb_defer_rcu(urcu_free_arg, the_pool().node(f)); }
    void tick(std::uint64_t) {}
    void serve() { urcu_memb_defer_barrier(); }
  };
};

struct mutex_list_variant {
  struct shared {
    std::mutex mu;
    std::vector<frame_index> list;
    std::atomic<bool> stop{false};
    std::thread worker;
  };
  static inline std::unique_ptr<shared> s;
  static void setup(unsigned threads) {
    s = std::make_unique<shared>();
    s->list.reserve(std::size_t{threads} * frames_per_thread);
    s->worker = std::thread([] {
      std::vector<frame_index> mine;
      mine.reserve(std::size_t{max_threads} * frames_per_thread);
      while (!s->stop.load(std::memory_order_acquire)) {
        {
          std::lock_guard l(s->mu);
          mine.swap(s->list);
        }
        if (mine.empty()) std::this_thread::yield();
        for (frame_index f : mine)
          the_pool().free(f);
        mine.clear();
      }
    });
  }
  static void teardown(benchmark::State&) {
    s->stop.store(true, std::memory_order_release);
    s->worker.join();
    s.reset();
  }
  struct thread_ctx {
    explicit thread_ctx(unsigned) {}
    void retire(frame_index f) {
      std::lock_guard l(s->mu);
      s->list.push_back(f);
    }
    void tick(std::uint64_t) {}
    void serve() { std::this_thread::yield(); }
  };
};

template <class V>
void BM_mechanism(benchmark::State& state) {
  const auto t = static_cast<unsigned>(state.thread_index());
  const auto threads = static_cast<unsigned>(state.threads());
  tls_owner = t;
  frame_pool& pool = the_pool();
  if (t == 0) {
    g_run.arrived.store(0, std::memory_order_relaxed);
    g_run.departed.store(0, std::memory_order_relaxed);
    pool.latency().clear();
    V::setup(threads);
  }
  std::uint64_t peak = 0;
  std::uint64_t n = 0;
  const auto last = static_cast<std::uint64_t>(state.max_iterations);
  std::uint64_t wall = 0;
  {
    typename V::thread_ctx ctx(t);
    const std::uint64_t start = now_ns();
    for (auto _ : state) {
      frame_index f = pool.alloc();
      while (f == no_frame) {
        ctx.serve();
        f = pool.alloc();
      }
      pool.use(f) = n;  // the one word a frame gets
      if (n % tick_every == 0) {
        const std::uint64_t now = now_ns();
        pool.sample(f) = now;  // a latency sample
        ctx.tick(now);
        const std::uint64_t out = pool.outstanding(t);
        if (out > peak) peak = out;
      }
      ctx.retire(f);
      if (++n == last) {
        // The timed tail: every thread serves its variant until every frame is home.
        g_run.arrived.fetch_add(1, std::memory_order_acq_rel);
        while (g_run.arrived.load(std::memory_order_acquire) < threads || !pool.all_home())
          ctx.serve();
      }
    }
    wall = now_ns() - start;
  }
  g_run.peak[t] = peak;
  state.counters["ns_per_frame"] = benchmark::Counter(
      static_cast<double>(wall) / static_cast<double>(n ? n : 1), benchmark::Counter::kAvgThreads);
  g_run.departed.fetch_add(1, std::memory_order_acq_rel);  // (1) pairs with (2)
  if (t != 0) return;
  while (g_run.departed.load(std::memory_order_acquire) < threads) {  // (2) pairs with (1)
  }
  std::uint64_t peaks = 0;
  for (unsigned i = 0; i < threads; ++i)
    peaks += g_run.peak[i];
  const log_histogram lat = pool.latency().snapshot();
  state.counters["peak_pending"] = static_cast<double>(peaks);
  state.counters["p50_ns"] = static_cast<double>(lat.percentile(0.50));
  state.counters["p99_ns"] = static_cast<double>(lat.percentile(0.99));
  V::teardown(state);
}

// Registered from main, after the flags. No ->UseRealTime() or ->Iterations(): either would put
// "real_time" or "iterations:N" into the names; the wall-clock figure is the ns_per_frame
// counter.
void register_all() {
  const auto add = [&](const char* name, void (*fn)(benchmark::State&)) {
    benchmark::RegisterBenchmark((std::string("BM_mechanism/") + name).c_str(), fn)
        ->Threads(1)
        ->Threads(2);
  };
  add("floor", BM_mechanism<floor_variant>);
  add("flush_epoch", BM_mechanism<flush_epoch_variant<instant_backend>>);
  add("flush_epoch_async", BM_mechanism<flush_epoch_variant<async_backend>>);
  add("xenium_hp", BM_mechanism<xenium_hp>);
  add("xenium_ebr", BM_mechanism<xenium_ebr>);
  add("xenium_qsbr", BM_mechanism<xenium_qsbr>);
  add("urcu_call_rcu", BM_mechanism<urcu_call_rcu_variant>);
  add("urcu_defer_rcu", BM_mechanism<urcu_defer_rcu_variant>);
  add("mutex_list", BM_mechanism<mutex_list_variant>);
}

// Our flags among Google Benchmark's: --name=N with N in [lo, hi], else exit 2.
bool take_flag(const char* arg, const char* name, std::uint64_t lo, std::uint64_t hi,
               std::uint64_t& out) {
  const std::size_t len = std::strlen(name);
  if (std::strncmp(arg, name, len) != 0 || arg[len] != '=') return false;
  char* end = nullptr;
  const unsigned long long v = std::strtoull(arg + len + 1, &end, 10);
  if (end == arg + len + 1 || *end != '\0' || v < lo || v > hi) {
    std::fprintf(stderr, "mechanism_benchmark: %s wants a number in %llu..%llu, got '%s'\n", name,
                 static_cast<unsigned long long>(lo), static_cast<unsigned long long>(hi),
                 arg + len + 1);
    std::exit(2);
  }
  out = v;
  return true;
}

}  // namespace
}  // namespace ptreclaim::bench::mech

int main(int argc, char** argv) {
  namespace m = ptreclaim::bench::mech;
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    std::uint64_t v = 0;
    if (m::take_flag(argv[i], "--mech_frames_per_thread", 4096, 1u << 20, v)) {
      m::frames_per_thread = static_cast<m::frame_index>(v);
    } else if (m::take_flag(argv[i], "--mech_watermark", 1, 1024, v)) {
      m::core_watermark = static_cast<std::uint32_t>(v);
    } else if (m::take_flag(argv[i], "--mech_batch_frames", 1, 2048, v)) {
      m::core_batch_frames = static_cast<std::uint32_t>(v);
    } else if (m::take_flag(argv[i], "--mech_async_ns", 0, 1'000'000, v)) {
      m::async_latency_ns = v;
    } else {
      args.push_back(argv[i]);
    }
  }
  int n = static_cast<int>(args.size());
  benchmark::Initialize(&n, args.data());
  if (benchmark::ReportUnrecognizedArguments(n, args.data())) return 1;
  m::register_all();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
