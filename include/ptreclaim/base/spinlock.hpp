// A test-and-test-and-set spinlock that reports to the platform, so the deterministic executor
// can make lock holders and waiters contend in virtual time (a global list lock then shows its
// real scaling at 256 simulated CPUs). Satisfies Lockable; use with std::lock_guard.
// A waiter pauses for spin_limit rounds, then yields the host CPU each round (spin_round): a
// user-space holder can be preempted, where a kernel would have disabled preemption. With 2 CPU
// threads and device threads on a 2-core host, pure spinning cut a threaded 2-CPU run of
// superpage-churn to 17 k ops/s (77-106 k with yielding).
// Memory ordering: [sl-1] the acquiring exchange pairs with [sl-2] the releasing store.
#pragma once

#include <atomic>

#include "ptreclaim/base/platform.hpp"

namespace ptreclaim {

class spinlock {
 public:
  explicit spinlock(platform& p = default_platform()) noexcept : platform_(&p) {}
  spinlock(const spinlock&) = delete;
  spinlock& operator=(const spinlock&) = delete;

  void lock() noexcept {
    platform_->lock_acquire(this);
    for (;;) {
      if (!held_.exchange(true, std::memory_order_acquire)) return;  // [sl-1]
      for (unsigned round = 0; held_.load(std::memory_order_relaxed); ++round)
        spin_round(round, spin_limit);
    }
  }
  // ~ a few microseconds of pause on current x86 cores: longer than any critical section of the
  // library that is not preempted.
  static constexpr unsigned spin_limit = 128;

  bool try_lock() noexcept {
    if (held_.load(std::memory_order_relaxed) || held_.exchange(true, std::memory_order_acquire))
      return false;
    platform_->lock_acquire(this);
    return true;
  }
  void unlock() noexcept {
    held_.store(false, std::memory_order_release);  // [sl-2]
    platform_->lock_release(this);
  }
  [[nodiscard]] bool is_locked() const noexcept { return held_.load(std::memory_order_relaxed); }
  // Held by someone else now: really (threads) or in the platform's time (platform::lock_busy).
  [[nodiscard]] bool busy() const noexcept { return is_locked() || platform_->lock_busy(this); }
  void rebind(platform& p) noexcept { platform_ = &p; }
  // For the contention figures (platform::name_shared); after any rebind.
  void name(const char* n) noexcept { platform_->name_shared(this, n); }

 private:
  std::atomic<bool> held_{false};
  platform* platform_;
};

}  // namespace ptreclaim
