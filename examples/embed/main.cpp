// An outside project embedding ptreclaim's freestanding flush-epoch core (find_package(ptreclaim),
// target ptreclaim::core): plain std::threads play the CPUs of a VMM and retire page-table frames
// and unmapped IOVA ranges (lazy DMA) while a separate completer thread finishes the IOMMU
// invalidations about 1 us after they were submitted, and the main thread takes CPUs offline and
// back (CPU_DOWN_PREPARE, then CPU_DEAD or CPU_DOWN_FAILED, then CPU_UP_PREPARE) while they work.
// It prints what was freed and when, and exits non-zero if anything was freed before an
// invalidation covering it completed, or if anything was not freed at the end.
//
// usage: ptreclaim_embed [--verbose]   (--verbose prints every free)
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "embed_platform.hpp"
#include "ptreclaim/core/flush_epoch_core.hpp"

namespace {

using core_t = ptreclaim::core::flush_epoch_core<embed::platform>;
using ptreclaim::core::iova_range;

constexpr unsigned cpus = 4;
constexpr unsigned domains = 2;
constexpr std::uint32_t frames = 8192;
constexpr unsigned ops_per_cpu = 6000;      // unmaps each CPU thread makes
constexpr std::uint64_t latency_ns = 1000;  // the IOMMU's invalidation latency
constexpr unsigned hotplug_rounds = 12;     // offline/online cycles the main thread runs
constexpr unsigned caller_flush_every = 8;  // every 8th unmap the caller invalidates itself

// One simulated CPU's mailbox, written by the main thread (the hotplug controller).
struct cpu_slot {
  // The hotplug handshake, one state with one writer per transition (each waited for by the
  // other side, so no request or acknowledgement can be missed or taken from an earlier round):
  //   running -> down_requested (controller: CPU_DOWN_PREPARE), -> parked (c: no core call from
  //   now on and its timer is dead), -> resuming (controller: after CPU_DEAD + UP_PREPARE, or
  //   DOWN_FAILED), -> running (c).
  enum : int { running, down_requested, parked, resuming };
  std::atomic<int> state{running};
  std::atomic<unsigned> run_dead{0};  // run cpu_dead(x - 1) here, on this running CPU
  std::atomic<std::uint64_t> adopted{~std::uint64_t{0}};  // what that cpu_dead moved
  std::atomic<bool> finished{false};
};

struct world {
  embed::platform plat{cpus, domains, frames};
  core_t core{plat};
  void* storage = nullptr;
  cpu_slot slot[cpus];
  std::atomic<bool> controller_done{false};
  std::atomic<bool> stop_completer{false};
};

// A CPU's safe point: its due timer, a cpu_dead to run for the controller, or going down.
void safe_point(world& w, unsigned c) {
  if (w.plat.take_due_timer(c)) w.core.on_timer(c);
  cpu_slot& s = w.slot[c];
  if (const unsigned x = s.run_dead.load(std::memory_order_acquire); x != 0) {
    const std::uint64_t moved = w.core.cpu_dead(x - 1);  // on this running CPU ([core-4])
    s.run_dead.store(0, std::memory_order_relaxed);
    s.adopted.store(moved, std::memory_order_release);
  }
  if (s.state.load(std::memory_order_acquire) == cpu_slot::down_requested) {
    w.plat.kill_timer(c);  // CPU_DOWN_PREPARE: the CPU's timer dies with it
    s.state.store(cpu_slot::parked, std::memory_order_release);  // after c's last core call
    while (s.state.load(std::memory_order_acquire) != cpu_slot::resuming)
      std::this_thread::yield();
    s.state.store(cpu_slot::running, std::memory_order_release);
  }
}

// A CPU: unmaps (0-3 page-table frames unlinked, 1-2 IOVA ranges unmapped, retired together),
// sometimes with its own invalidation of the range, and passes its safe point after every unmap.
void cpu_main(world& w, unsigned c) {
  embed::this_cpu = c;
  std::uint32_t next = c * (frames / cpus);
  std::vector<embed::platform::frame> batch;
  for (unsigned op = 0; op < ops_per_cpu; ++op) {
    const ptreclaim::core::domain_id d = (op + c) % domains;
    const std::uint64_t base = (std::uint64_t{c} << 40) | (std::uint64_t{op} << 21);
    const iova_range need{base, base + (std::uint64_t{1} << 21) - 1};
    batch.clear();
    const unsigned n = op % 4;  // 0: an unmap that released no page table, IOVAs only
    for (unsigned tries = 0; batch.size() < n && tries < frames; ++tries) {
      const embed::platform::frame f = next;
      next = (next + 1) % frames;
      if (w.plat.take(f)) batch.push_back(f);
    }
    for (embed::platform::frame f : batch)
      w.plat.unlinked(f, d, need);
    // The unmapped IOVAs (1 or 2 ranges of 4-64 KiB inside `need`), deferred with the frames.
    iova_range iovas[2];
    const unsigned k = 1 + op % 2;
    for (unsigned i = 0; i < k; ++i) {
      const std::uint64_t first = base + (std::uint64_t{i} << 20);
      iovas[i] = {first, first + (std::uint64_t{4096} << (op % 5)) - 1};
      w.plat.unmapped_iova(d, iovas[i]);
    }
    if (w.core.retire(d, need, batch.data(), batch.size(), iovas, k) ==
        ptreclaim::core::retire_status::refused) {
      std::fprintf(stderr, "embed: cpu %u: retire refused (backend failure)\n", c);
      std::exit(3);
    }
    if (op % caller_flush_every == 0) {  // the caller's own flush of what it unmapped
      w.core.before_caller_invalidation(d);
      const ptreclaim::core::epoch_t e = w.plat.invalidate(d, need);
      w.core.note_caller_invalidation(d, need, e);
    }
    safe_point(w, c);
  }
  w.slot[c].finished.store(true, std::memory_order_release);
  // Keep the CPU's timer and mailbox served until every CPU is done and the controller has
  // finished its rounds: it may still take this CPU down or ask it to adopt a dead CPU's frames.
  for (;;) {
    bool all = w.controller_done.load(std::memory_order_acquire);
    for (unsigned i = 0; i < cpus; ++i)
      all = all && w.slot[i].finished.load(std::memory_order_acquire);
    if (all) break;
    safe_point(w, c);
    std::this_thread::yield();
  }
}

// The controller: takes CPU c (never CPU 0) down, and either lets it die (CPU_DEAD on a running
// CPU, then CPU_UP_PREPARE) or fails the offline (CPU_DOWN_FAILED), then lets it run again.
void hotplug(world& w) {
  for (unsigned round = 0; round < hotplug_rounds; ++round) {
    const unsigned c = 1 + round % (cpus - 1);
    cpu_slot& s = w.slot[c];
    // c serves its safe points until controller_done, finished with its unmaps or not.
    while (s.state.load(std::memory_order_acquire) != cpu_slot::running)
      std::this_thread::yield();  // c still returning from the previous round
    s.state.store(cpu_slot::down_requested, std::memory_order_release);
    while (s.state.load(std::memory_order_acquire) != cpu_slot::parked)
      std::this_thread::yield();
    std::this_thread::sleep_for(std::chrono::microseconds(200));
    if (round % 2 == 0) {
      // CPU_DEAD: CPU 0 adopts c's frames, on its own thread.
      w.slot[0].adopted.store(~std::uint64_t{0}, std::memory_order_relaxed);
      w.slot[0].run_dead.store(c + 1, std::memory_order_release);
      std::uint64_t moved = ~std::uint64_t{0};
      while ((moved = w.slot[0].adopted.load(std::memory_order_acquire)) == ~std::uint64_t{0})
        std::this_thread::yield();
      std::printf("%9.1f us  cpu %u dead: cpu 0 adopted %llu frames\n", embed::now_ns() / 1e3, c,
                  static_cast<unsigned long long>(moved));
      w.core.cpu_up_prepare(c);  // c is offline; nothing else touches its ring
      std::printf("%9.1f us  cpu %u up_prepare, online again\n", embed::now_ns() / 1e3, c);
    } else {
      w.core.cpu_down_failed(c);  // arms c's timer; c looks at its ring itself
      std::printf("%9.1f us  cpu %u down failed: it keeps its frames\n", embed::now_ns() / 1e3, c);
    }
    s.state.store(cpu_slot::resuming, std::memory_order_release);
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  w.controller_done.store(true, std::memory_order_release);
}

}  // namespace

int main(int argc, char** argv) {
  const bool verbose = argc > 1 && std::strcmp(argv[1], "--verbose") == 0;
  auto w = std::make_unique<world>();
  ptreclaim::core::core_config cfg;
  cfg.cpus = cpus;
  cfg.max_domains = domains;
  cfg.frames_per_cpu = 256;
  cfg.batches_per_cpu = 32;
  cfg.batch_frames = 16;
  cfg.watermark = 32;
  cfg.flush_age_ns = 50'000;
  cfg.iovas_per_cpu = 128;
  cfg.batch_iovas = 16;
  cfg.iova_watermark = 32;
  const std::size_t bytes = core_t::storage_bytes(cfg);
  w->storage = ::operator new (bytes, std::align_val_t{core_t::storage_align});
  if (w->core.init(cfg, w->storage, bytes) != ptreclaim::core::init_status::ok) {
    std::fprintf(stderr, "embed: core init failed\n");
    return 2;
  }
  std::printf("flush-epoch core embedded: %u CPUs, %u domains, invalidation latency %llu ns\n",
              cpus, domains, static_cast<unsigned long long>(latency_ns));

  std::thread completer([&] {
    while (!w->stop_completer.load(std::memory_order_acquire))
      for (unsigned d = 0; d < domains; ++d)
        while (w->plat.queue(d).complete_next(latency_ns)) {
        }
  });
  std::vector<std::thread> cpu_threads;
  for (unsigned c = 0; c < cpus; ++c)
    cpu_threads.emplace_back(cpu_main, std::ref(*w), c);
  hotplug(*w);
  for (std::thread& t : cpu_threads)
    t.join();
  // Quiescent: every CPU thread stopped ([core-8]); free what is left, as at shutdown.
  for (unsigned c = 0; c < cpus; ++c)
    w->plat.kill_timer(c);
  const bool drained = w->core.drain();
  w->stop_completer.store(true, std::memory_order_release);
  completer.join();

  const std::vector<embed::freed_event> ev = w->plat.events();
  const auto print = [](const embed::freed_event& e) {
    char what[48];
    std::snprintf(what, sizeof what, e.iova ? "IOVA range at %#llx" : "frame %llu",
                  static_cast<unsigned long long>(e.what));
    const std::string by = e.cpu == embed::no_cpu ? "drain" : "cpu " + std::to_string(e.cpu);
    std::printf(
        "%9.1f us  %-6s freed %s of domain %u: retired at %.1f us, invalidation %llu "
        "completed at %.1f us\n",
        e.at_ns / 1e3, by.c_str(), what, e.d, e.retired_ns / 1e3,
        static_cast<unsigned long long>(e.by), e.inv_done_ns / 1e3);
  };
  const std::size_t show = verbose ? ev.size() : 12;
  for (std::size_t i = 0; i < ev.size() && i < show; ++i)
    print(ev[i]);
  if (ev.size() > show) std::printf("... (%zu more; --verbose prints all)\n", ev.size() - show);

  std::size_t iova_frees = 0;
  for (const embed::freed_event& e : ev)
    iova_frees += e.iova ? 1 : 0;
  std::printf("freed %zu frames and %zu IOVA ranges in all\n", ev.size() - iova_frees, iova_frees);
  // The margin the checker saw: how long after its covering invalidation completed each free came.
  std::uint64_t min_margin = ~std::uint64_t{0}, max_wait = 0;
  for (const embed::freed_event& e : ev) {
    const std::uint64_t margin = e.at_ns - e.inv_done_ns;  // >= 0: the checker found it complete
    if (margin < min_margin) min_margin = margin;
    if (e.at_ns - e.retired_ns > max_wait) max_wait = e.at_ns - e.retired_ns;
  }
  if (!ev.empty())
    std::printf(
        "every free came %.2f us or more after its covering invalidation completed; the "
        "longest retire-to-free was %.1f us\n",
        min_margin / 1e3, max_wait / 1e3);

  const ptreclaim::core::stats_snapshot s = w->core.total();
  std::uint32_t not_freed = 0;
  for (std::uint32_t f = 0; f < frames; ++f)
    not_freed += w->plat.is_free(f) ? 0 : 1;
  std::printf(
      "retired %llu frames, freed %llu (%llu adopted from dead CPUs), %llu timer runs, "
      "%llu flushes asked for, %llu rode on the caller's\n",
      static_cast<unsigned long long>(s.retired), static_cast<unsigned long long>(s.freed),
      static_cast<unsigned long long>(s.adopted), static_cast<unsigned long long>(s.timer_runs),
      static_cast<unsigned long long>(s.requests), static_cast<unsigned long long>(s.rides));
  int rc = 0;
  for (const std::string& v : w->plat.violations()) {
    std::printf("VIOLATION: %s\n", v.c_str());
    rc = 1;
  }
  const std::size_t iovas_left = w->plat.iovas_outstanding();
  if (!drained || not_freed != 0 || s.retired != s.freed || iovas_left != 0) {
    std::printf("FAIL: %u frames and %zu IOVA ranges not freed at the end (drain %s)\n", not_freed,
                iovas_left, drained ? "ok" : "failed");
    rc = 1;
  }
  ::operator delete (w->storage, std::align_val_t{core_t::storage_align});
  std::printf(rc == 0 ? "ok: nothing was freed before its invalidation completed\n" : "FAILED\n");
  return rc;
}
