// The flush-epoch core on a benchmark platform: no simulator runtime, no executor, just what
// include/ptreclaim/core/platform.hpp asks for.
//
//   instant_backend  an invalidation completes the moment it is submitted: the mechanism alone.
//   async_backend    each invalidation completes `latency_ns` after it was submitted, in order,
//                    as an IOMMU's invalidation queue does: a completer thread publishes it, and
//                    so does a poll that finds it due; producers never wait unless a ring is full.
//   platform<B>      CPUs are the benchmark threads (tls_owner), timers are per-CPU deadlines
//                    the owning thread checks at its own scheduling points (the benchmark loop),
//                    frames go back to the mech frame_pool.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <thread>

#include "core/mech_pool.hpp"
#include "ptreclaim/core/flush_epoch_core.hpp"

namespace ptreclaim::bench::mech {

using core::epoch_t;

class instant_backend {
 public:
  epoch_t invalidate(core::domain_id, core::iova_range) noexcept {
    return epoch_.fetch_add(1, std::memory_order_seq_cst) + 1;  // [core-7]
  }
  epoch_t stamp(core::domain_id) noexcept {
    std::atomic_thread_fence(std::memory_order_seq_cst);  // [core-1]
    return epoch_.load(std::memory_order_relaxed);
  }
  // Every invalidation numbered so far completed as it was numbered ([core-2]: acquire).
  epoch_t completed(core::domain_id) noexcept { return epoch_.load(std::memory_order_acquire); }
  epoch_t completed_full(core::domain_id d) noexcept { return completed(d); }  // all are done
  epoch_t completed_seen(core::domain_id d) noexcept { return completed(d); }
  epoch_t completed_full_seen(core::domain_id d) noexcept { return completed(d); }
  bool wait(core::domain_id, epoch_t) noexcept { return true; }

 private:
  alignas(64) std::atomic<epoch_t> epoch_{0};
};

class async_backend {
 public:
  static constexpr epoch_t slots = 1024;  // invalidations in flight at most (bounded queue)

  explicit async_backend(std::uint64_t latency_ns) : latency_(latency_ns) {
    worker_ = std::thread([this] {
      while (!stop_.load(std::memory_order_acquire)) {
        advance(now_ns());
        cpu_relax();
      }
    });
  }
  ~async_backend() {
    stop_.store(true, std::memory_order_release);
    worker_.join();
  }
  async_backend(const async_backend&) = delete;
  async_backend& operator=(const async_backend&) = delete;

  epoch_t invalidate(core::domain_id, core::iova_range r) noexcept {
    const epoch_t e = started_.fetch_add(1, std::memory_order_seq_cst) + 1;  // [core-7]
    // The queue is full: as a driver does, wait for room (polling, which may make some).
    while (e - completed_.load(std::memory_order_acquire) > slots)
      advance(now_ns());
    slot& s = ring_[e % slots];
    s.full.store(r.whole(), std::memory_order_relaxed);
    s.submitted_ns.store(now_ns(), std::memory_order_relaxed);
    s.seq.store(e, std::memory_order_release);  // (1) pairs with (2)
    return e;
  }
  epoch_t stamp(core::domain_id) noexcept {
    std::atomic_thread_fence(std::memory_order_seq_cst);  // [core-1]
    return started_.load(std::memory_order_relaxed);
  }
  // Polling: reads the "hardware's" status, publishing what fell due.
  epoch_t completed(core::domain_id d) noexcept {
    advance(now_ns());
    return completed_seen(d);
  }
  epoch_t completed_full(core::domain_id d) noexcept {
    advance(now_ns());
    return completed_full_seen(d);
  }
  epoch_t completed_seen(core::domain_id) noexcept {
    return completed_.load(std::memory_order_acquire);  // [core-2]
  }
  epoch_t completed_full_seen(core::domain_id) noexcept {
    return completed_full_.load(std::memory_order_acquire);  // [core-2]
  }
  bool wait(core::domain_id d, epoch_t e) noexcept {
    const std::uint64_t deadline = now_ns() + 1'000'000'000;  // 1 s: a stuck queue
    while (completed(d) < e)
      if (now_ns() > deadline) return false;
    return true;
  }

 private:
  struct slot {
    std::atomic<epoch_t> seq{0};
    std::atomic<bool> full{false};
    std::atomic<std::uint64_t> submitted_ns{0};
  };

  // In order, each invalidation completes latency_ns after its submission: the completer thread
  // publishes it then, and so does any poll that finds it due first (reading an IOMMU's status
  // sees a completion whether or not an interrupt handler ran). So the completion time is the
  // simulated hardware's, not the host scheduler's: on a loaded machine the completer thread may
  // not run for milliseconds. Racing publishers agree through the CAS on completed_.
  void advance(std::uint64_t now) noexcept {
    for (;;) {
      epoch_t done = completed_.load(std::memory_order_acquire);
      const epoch_t next = done + 1;
      slot& s = ring_[next % slots];
      if (s.seq.load(std::memory_order_acquire) != next) return;  // (2) pairs with (1)
      if (now < s.submitted_ns.load(std::memory_order_relaxed) + latency_) return;
      if (s.full.load(std::memory_order_relaxed)) {
        epoch_t f = completed_full_.load(std::memory_order_relaxed);
        while (f < next && !completed_full_.compare_exchange_weak(
                               f, next, std::memory_order_release, std::memory_order_relaxed)) {
        }
      }
      (void)completed_.compare_exchange_strong(done, next, std::memory_order_release,
                                               std::memory_order_relaxed);  // [core-2]
    }
  }

  std::uint64_t latency_;
  alignas(64) std::atomic<epoch_t> started_{0};
  alignas(64) std::atomic<epoch_t> completed_{0};
  std::atomic<epoch_t> completed_full_{0};
  alignas(64) std::atomic<bool> stop_{false};
  slot ring_[slots];
  std::thread worker_;
};

// The platform the core runs on in the benchmark.
template <class Backend>
class platform {
 public:
  using frame = frame_index;

  platform(Backend& b, frame_pool& pool) : b_(b), pool_(pool) {}

  unsigned current_cpu() const noexcept { return tls_owner; }
  std::uint64_t now_ns() const noexcept { return mech::now_ns(); }
  void arm_timer(unsigned cpu, std::uint64_t at) noexcept {
    timers_[cpu].at = at;
    timers_[cpu].armed = true;
  }
  epoch_t invalidate(core::domain_id d, core::iova_range r) noexcept { return b_.invalidate(d, r); }
  epoch_t stamp(core::domain_id d) noexcept { return b_.stamp(d); }
  epoch_t completed(core::domain_id d) noexcept { return b_.completed(d); }
  epoch_t completed_full(core::domain_id d) noexcept { return b_.completed_full(d); }
  epoch_t completed_seen(core::domain_id d) noexcept { return b_.completed_seen(d); }
  epoch_t completed_full_seen(core::domain_id d) noexcept { return b_.completed_full_seen(d); }
  bool wait(core::domain_id d, epoch_t e) noexcept { return b_.wait(d, e); }
  void free_frames(unsigned, core::domain_id, const frame* f, std::size_t n) noexcept {
    for (std::size_t i = 0; i < n; ++i)
      pool_.free(f[i]);
  }

  // The calling CPU's timer, if armed and due at `now`: disarmed, and true (run on_timer then).
  bool take_due_timer(unsigned cpu, std::uint64_t now) noexcept {
    timer& t = timers_[cpu];
    if (!t.armed || now < t.at) return false;
    t.armed = false;
    return true;
  }

 private:
  // Per CPU, touched only by that CPU's thread (the benchmark never calls cpu_down_failed).
  struct alignas(64) timer {
    bool armed = false;
    std::uint64_t at = 0;
  };
  Backend& b_;
  frame_pool& pool_;
  timer timers_[max_threads];
};

}  // namespace ptreclaim::bench::mech
