// Compiled with -ffreestanding -fno-exceptions -fno-rtti (tests/core/CMakeLists.txt): the core
// and a minimal platform, nothing else. core.freestanding_symbols then checks that the object
// needs no symbol from outside this file (no libstdc++, no libatomic, no operator new).
#include "ptreclaim/core/flush_epoch_core.hpp"

namespace {

struct bare_platform {
  using frame = unsigned long;
  unsigned cpu = 0;
  std::uint64_t clock = 0;
  ptreclaim::core::epoch_t started = 0;
  ptreclaim::core::epoch_t done = 0;
  unsigned long freed = 0;

  unsigned current_cpu() const noexcept { return cpu; }
  std::uint64_t now_ns() noexcept { return ++clock; }
  void arm_timer(unsigned, std::uint64_t) noexcept {}
  ptreclaim::core::epoch_t invalidate(ptreclaim::core::domain_id, ptreclaim::core::iova_range) {
    return ++started;
  }
  ptreclaim::core::epoch_t stamp(ptreclaim::core::domain_id) noexcept { return started; }
  ptreclaim::core::epoch_t completed(ptreclaim::core::domain_id) noexcept { return done; }
  ptreclaim::core::epoch_t completed_full(ptreclaim::core::domain_id) noexcept { return done; }
  ptreclaim::core::epoch_t completed_seen(ptreclaim::core::domain_id) noexcept { return done; }
  ptreclaim::core::epoch_t completed_full_seen(ptreclaim::core::domain_id) noexcept { return done; }
  bool wait(ptreclaim::core::domain_id, ptreclaim::core::epoch_t e) noexcept {
    done = e;
    return true;
  }
  void free_frames(unsigned, ptreclaim::core::domain_id, const frame* f, std::size_t n) noexcept {
    for (std::size_t i = 0; i < n; ++i)
      freed += f[i];
  }
  void free_iovas(unsigned, ptreclaim::core::domain_id, const ptreclaim::core::iova_range* r,
                  std::size_t k) noexcept {
    for (std::size_t i = 0; i < k; ++i)
      freed += r[i].first;
  }
};

constexpr ptreclaim::core::core_config config{
    .cpus = 2, .max_domains = 4, .frames_per_cpu = 8, .batches_per_cpu = 4};
template <bool Latency>
using core_t = ptreclaim::core::flush_epoch_core<bare_platform, Latency>;
alignas(64) unsigned char storage[core_t<true>::storage_bytes(config)];

}  // namespace

// extern "C" and used, so the compiler keeps every entry point's code in the object.
extern "C" unsigned long ptreclaim_core_freestanding_entry() {
  bare_platform p;
  core_t<true> core(p);
  if (core.init(config, storage, sizeof storage) != ptreclaim::core::init_status::ok) return 0;
  const unsigned long frames[3] = {1, 2, 3};
  (void)core.retire(1, {0, 4095}, frames, 3);
  const ptreclaim::core::iova_range iovas[2] = {{0, 4095}, {4096, 8191}};
  (void)core.retire(1, {0, 8191}, frames, 0, iovas, 2);
  core.before_caller_invalidation(1);
  core.note_caller_invalidation(1, {0, 4095}, p.invalidate(1, {0, 4095}));
  core.on_timer(0);
  p.cpu = 1;
  (void)core.cpu_dead(0);
  core.cpu_up_prepare(0);
  core.cpu_down_failed(0);
  (void)core.drain();
  return p.freed + core.pending() + core.latency(1).samples() + core.total().freed;
}

extern "C" unsigned long ptreclaim_core_freestanding_entry_no_latency() {
  bare_platform p;
  core_t<false> core(p);
  if (core.init(config, storage, sizeof storage) != ptreclaim::core::init_status::ok) return 0;
  const unsigned long frames[1] = {7};
  (void)core.retire(0, {}, frames, 1);
  (void)core.drain();
  return p.freed;
}
