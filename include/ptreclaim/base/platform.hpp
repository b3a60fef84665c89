// The one seam through which all nondeterminism flows: time, the identity of the running CPU,
// waiting, and the cost model. Library code never reads a clock, a thread id or a random
// source directly; it asks its platform. Two implementations exist:
//   real_platform (here)             real time, CPU = the calling thread's registered id;
//   runtime::deterministic_executor  virtual time, a seeded scheduler and a cost model in which
//                                    locks and shared cache lines contend.
// Memory ordering: the platform itself publishes nothing; callers order their own data.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <thread>

#include "ptreclaim/base/cost.hpp"

namespace ptreclaim {

class platform {
 public:
  platform() = default;
  platform(const platform&) = delete;
  platform& operator=(const platform&) = delete;
  virtual ~platform() = default;

  // Nanoseconds since the platform started; monotonic.
  [[nodiscard]] virtual std::uint64_t now_ns() noexcept = 0;
  // The simulated CPU running the caller (0 for threads no executor registered).
  [[nodiscard]] virtual unsigned current_cpu() const noexcept = 0;
  // Number of CPU slots (online or not) the platform models.
  [[nodiscard]] virtual unsigned cpu_count() const noexcept = 0;

  // Cost model hooks (cost_kind: base/cost.hpp); no-ops on the real platform.
  virtual void charge(cost_kind /*kind*/, std::uint64_t /*count*/ = 1) noexcept {}
  // The caller read (write=false) or wrote a cache line shared between CPUs.
  virtual void touch_line(const void* /*line*/, bool /*write*/) noexcept {}
  // The caller (the page-table code) read or wrote the entry at `entry`. Kept apart from
  // touch_line because page-table lines are many and each is rarely contended: the
  // deterministic executor keeps them in a bounded table (run_config::pt_lines) instead of
  // touch_line's per-line transfer history.
  virtual void touch_table_line(const void* /*entry*/, bool /*write*/) noexcept {}
  // The caller wrote `lines` consecutive 64-byte lines from `first` in one loop (a table filled
  // whole). Its stores overlap their line transfers, so a platform that charges them charges
  // the batch as one transfer (a 4 KiB fill of a frame another core wrote last costs ~125 ns
  // more than a local one on a 2-core Xeon guest, not 64 transfers); this default reports each.
  virtual void touch_table_lines(const void* first, unsigned lines) noexcept {
    for (unsigned i = 0; i < lines; ++i)
      touch_table_line(static_cast<const char*>(first) + std::size_t{64} * i, true);
  }
  // Whether touch_table_line does anything here. The page-table code asks once per table and
  // skips the calls when it does not: they are several per map, and on the real platform an
  // indirect call each cost a 4 KiB map about 5 ns.
  [[nodiscard]] virtual bool tracks_table_lines() const noexcept { return false; }
  // Lock hooks bracket a critical section so virtual time can make holders and waiters contend.
  virtual void lock_acquire(const void* /*lock*/) noexcept {}
  virtual void lock_release(const void* /*lock*/) noexcept {}
  // Whether another entity holds `lock` at the caller's time, as far as the platform models
  // time (the deterministic executor: a recorded hold covers the caller's clock). The lock's own
  // state answers for real time (spinlock::busy).
  [[nodiscard]] virtual bool lock_busy(const void* /*lock*/) noexcept { return false; }
  // Names a lock or a shared line (its address) for the contention figures: the deterministic
  // executor sums the virtual time lost on every object of one name. `name` must be a string
  // with static storage (a literal); objects of one kind (every CPU's ring lock) share one name.
  virtual void name_shared(const void* /*object*/, const char* /*name*/) noexcept {}

  // Busy-waits until done() returns true or timeout_ns of platform time pass; returns done().
  // Deterministic executor: advances virtual time and runs device and engine events meanwhile.
  // May be called from any CPU context that may spin (not from a device walk).
  [[nodiscard]] virtual bool wait_until(const std::function<bool()>& done,
                                        std::uint64_t timeout_ns) = 0;

 protected:
  // wait_until for platforms whose time is real: pause, then yield, until done() or the
  // deadline on now_ns().
  [[nodiscard]] bool spin_until(const std::function<bool()>& done, std::uint64_t timeout_ns);
};

// One round of a busy wait on real threads: `pause` for the first `pause_rounds` rounds, then
// yield the host CPU each round. In user space the thread waited for can be preempted, and with
// more threads than host cores a pure spinner would burn its time slice while that thread waits
// for a core. Shared by spin_until and spinlock.
inline void spin_round(unsigned round, unsigned pause_rounds) noexcept {
  if (round < pause_rounds) {
    __builtin_ia32_pause();
  } else {
    std::this_thread::yield();
  }
}

// Real time, real threads. A thread names its simulated CPU with set_current_cpu().
class real_platform final : public platform {
 public:
  explicit real_platform(unsigned cpus = 1);
  [[nodiscard]] std::uint64_t now_ns() noexcept override;
  [[nodiscard]] unsigned current_cpu() const noexcept override;
  [[nodiscard]] unsigned cpu_count() const noexcept override { return cpus_; }
  [[nodiscard]] bool wait_until(const std::function<bool()>& done,
                                std::uint64_t timeout_ns) override;

  // Binds the calling OS thread to simulated CPU `cpu` (< cpu_count()).
  void set_current_cpu(unsigned cpu) noexcept;

 private:
  unsigned cpus_;
  std::uint64_t start_ns_;
};

// The process-wide real platform, for code and tests that need no executor.
[[nodiscard]] real_platform& default_platform();

}  // namespace ptreclaim
