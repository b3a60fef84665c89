// The driver's lock on one unit's invalidation queue (VT-d qi->q_lock, AMD iommu->lock), kept
// apart from the unit's own lock (unit.hpp), which models the hardware's internal serialisation
// and is taken by device walks: a CPU spinning under q_lock must not keep a device from walking.
//
// A spinlock that reports to the platform (so the deterministic executor makes holders and
// waiters contend in virtual time, and the threaded one really spins), and that measures, in
// platform time, how long acquirers waited and how long it was held: the contention figures the
// simulator reports per unit.
//
// VT-d's spinners, in closed form. qi_submit_sync keeps q_lock while it waits, but for one
// cpu_relax per iteration: with k CPUs waiting on one unit the lock (a FIFO queued spinlock in
// Linux) goes round them, each holding it for its status read (driver_config::poll_ns). Recording
// every one of those holds would cost a hold per iteration per CPU (thousands per flush at 256
// CPUs, beyond what the deterministic executor's lock history keeps). Instead a spinner records
// one interval, when it spun, and the lock derives the round from how many spin intervals cover
// an instant (spinners_at):
//   - an acquirer queues behind the spinners (spin_queue_wait_ns), before taking the lock;
//   - a spinner notices its wait done on its next turn, on average half a round after the
//     hardware completed it (spin_period_ns / 2);
//   - a spinner's turns count as held time: poll_ns of every round.
// In the deterministic executor a spinner sees only the spin intervals of CPUs that ran before
// it (a later CPU whose spin overlaps does not slow an interval already recorded): the same
// slight optimism as the executor's lock model, bounded by one round.
//
// Thread-safety: every member from any thread. The counters are relaxed atomics (figures, not
// synchronisation); the spin record has its own mutex (not a platform lock: it is bookkeeping,
// not the driver's).
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <mutex>

#include "ptreclaim/base/limits.hpp"
#include "ptreclaim/base/platform.hpp"
#include "ptreclaim/base/spinlock.hpp"
#include "ptreclaim/iommu/config.hpp"

namespace ptreclaim::iommu {

struct queue_lock_stats {
  std::uint64_t acquisitions = 0;
  std::uint64_t wait_ns = 0;  // from asking for the lock to holding it, summed
  std::uint64_t hold_ns = 0;  // from taking it to releasing it (and spinners' turns), summed
  std::uint64_t max_wait_ns = 0;
};

// One round of the lock among `k` spinners: each holds it poll_ns per turn and wants it again
// after its relax_ns, so the round is k turns when that keeps the lock busy, else one
// spinner's own poll + relax.
[[nodiscard]] constexpr std::uint64_t spin_period_ns(std::uint64_t k,
                                                     const driver_config& d) noexcept {
  return std::max(k * d.poll_ns, d.poll_ns + d.relax_ns);
}

// What an acquirer arriving among `k` spinners waits, on average. If the spinners keep the lock
// busy (k * poll >= poll + relax) it waits for the holder's remaining half turn and the k - 1
// queued turns; else the lock is held with probability k * poll / (poll + relax), for half a turn.
[[nodiscard]] constexpr std::uint64_t spin_queue_wait_ns(std::uint64_t k,
                                                         const driver_config& d) noexcept {
  if (k == 0 || d.poll_ns == 0) return 0;
  const std::uint64_t want = k * d.poll_ns;
  const std::uint64_t cycle = d.poll_ns + d.relax_ns;
  if (want < cycle) return want * d.poll_ns / (2 * cycle);
  return (k - 1) * d.poll_ns + d.poll_ns / 2;
}

class queue_lock {
 public:
  // Spin intervals remembered per unit: more than every CPU and actor spinning at once
  // (limits::max_cpus), so a round is never undercounted for lack of room.
  static constexpr unsigned spin_capacity = 512;
  static_assert(spin_capacity > limits::max_cpus, "every CPU may spin on one unit at once");

  explicit queue_lock(platform& p) noexcept : plat_(&p), lock_(p) {}
  queue_lock(const queue_lock&) = delete;
  queue_lock& operator=(const queue_lock&) = delete;

  // Takes the lock, first queueing behind the unit's spinners (see the file comment).
  void lock(const driver_config& d) noexcept {
    const std::uint64_t asked = plat_->now_ns();
    const std::uint64_t queued = spin_queue_wait_ns(spinners_at(asked), d);
    if (queued != 0) (void)plat_->wait_until([] { return false; }, queued);
    lock_.lock();
    taken_ns_ = plat_->now_ns();
    const std::uint64_t waited = taken_ns_ - asked;
    add(acquisitions_, 1);
    add(wait_ns_, waited);
    if (waited > max_wait_ns_.load(std::memory_order_relaxed))
      max_wait_ns_.store(waited, std::memory_order_relaxed);
  }
  void unlock() noexcept {
    add(hold_ns_, plat_->now_ns() - taken_ns_);
    lock_.unlock();
  }

  // A spinner starts (open interval from now) and ends; end_spin charges its turns as held.
  [[nodiscard]] std::uint64_t begin_spin() noexcept;
  void end_spin(std::uint64_t token, const driver_config& d) noexcept;
  // Spin intervals covering `t` (open ones included).
  [[nodiscard]] unsigned spinners_at(std::uint64_t t) const noexcept;

  [[nodiscard]] queue_lock_stats stats() const noexcept {
    auto ld = [](const std::atomic<std::uint64_t>& a) { return a.load(std::memory_order_relaxed); };
    return {ld(acquisitions_), ld(wait_ns_), ld(hold_ns_), ld(max_wait_ns_)};
  }

 private:
  // The holder and end_spin (lock-free) both add to hold_ns_.
  static void add(std::atomic<std::uint64_t>& a, std::uint64_t v) noexcept {
    a.fetch_add(v, std::memory_order_relaxed);
  }
  struct spin_interval {
    std::uint64_t start = 0;
    std::uint64_t end = 0;  // ~0 while it spins
    std::uint64_t id = 0;   // 0 = empty slot
  };
  platform* plat_;
  spinlock lock_;
  std::uint64_t taken_ns_ = 0;
  std::atomic<std::uint64_t> acquisitions_{0}, wait_ns_{0}, hold_ns_{0}, max_wait_ns_{0};
  mutable std::mutex spin_mu_;
  std::array<spin_interval, spin_capacity> spins_{};  // a ring, oldest overwritten
  std::uint64_t next_spin_id_ = 1;
};

}  // namespace ptreclaim::iommu
