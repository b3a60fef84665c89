// An independent checker of the retire contract, for tests, the simulator and users who want to
// test their own invalidation logic: it wraps the invalidation backend (to see every
// invalidation and its range) and observes every retire and free, and checks
//   S2  every frame is freed exactly once, and only after it was retired;
//   S3  a frame is freed only after an invalidation of its domain that was submitted after the
//       retire, is non-leaf, covers the frame's range (or the whole domain), and has completed;
//   S5  frames pending never exceed the bound.
// It shares no logic with the policies (it does not trust their epochs or batches): it keeps
// its own log of invalidations per domain and asks the backend only whether an epoch completed.
// Violations are recorded (count + the first few in full), never fatal.
//
// Thread-safety: all members may be called concurrently (one internal lock: a checker, not a
// hot path). The lock is a spinlock on the real platform: never charged in virtual time (the
// checker is not part of any design), and in threaded runs a short spin instead of a futex
// sleep and wake-up, which on a 2-core VM were ~8 % of a 2-CPU run (perf).
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "ptreclaim/base/spinlock.hpp"
#include "ptreclaim/reclaim/backend.hpp"
#include "ptreclaim/reclaim/reclaimer.hpp"

namespace ptreclaim::reclaim {

class safety_monitor final : public reclaim_observer, public invalidation_backend {
 public:
  // `inner` does the real work; `max_pending` is the S5 bound.
  safety_monitor(invalidation_backend& inner, std::uint64_t max_pending,
                 std::size_t violations_kept = 16);

  // --- invalidation_backend (forwarded, and recorded) ---
  [[nodiscard]] Result<epoch_t> invalidate(domain_number d,
                                           const invalidation_range& range) override;
  [[nodiscard]] epoch_t stamp(domain_number d) noexcept override { return inner_.stamp(d); }
  [[nodiscard]] epoch_t completed(domain_number d) noexcept override { return inner_.completed(d); }
  [[nodiscard]] epoch_t completed_full(domain_number d) noexcept override {
    return inner_.completed_full(d);
  }
  [[nodiscard]] epoch_t completed_seen(domain_number d) noexcept override {
    return inner_.completed_seen(d);
  }
  [[nodiscard]] epoch_t completed_full_seen(domain_number d) noexcept override {
    return inner_.completed_full_seen(d);
  }
  [[nodiscard]] bool wait(domain_number d, epoch_t e, std::uint64_t timeout_ns) override {
    return inner_.wait(d, e, timeout_ns);
  }

  // --- reclaim_observer ---
  void on_retire(domain_number d, mem::frame_id f, const invalidation_range& need) override;
  void on_free(mem::frame_id f, const char* path) override;
  void on_invariant_violation(const std::string& what) override;

  struct report {
    std::uint64_t retired = 0, freed = 0, pending = 0, peak_pending = 0;
    std::uint64_t s2_violations = 0;  // double free, free of a frame never retired
    std::uint64_t s3_violations = 0;  // freed before a covering invalidation completed
    std::uint64_t s4_violations = 0;  // policy-reported (wrong CPU, lost frames)
    std::uint64_t s5_violations = 0;  // pending above the bound
    std::uint64_t invalidations = 0;
    std::vector<std::string> first;  // the first violations, in full
    [[nodiscard]] bool ok() const noexcept {
      return s2_violations + s3_violations + s4_violations + s5_violations == 0;
    }
  };
  [[nodiscard]] report result() const;
  // Frames retired and not yet freed (the L1 check after quiescence).
  [[nodiscard]] std::uint64_t pending() const;

 private:
  struct retired_frame {
    domain_number domain{};
    invalidation_range need;
    epoch_t started_before{};  // the newest epoch submitted before the retire
  };
  struct recorded_inv {
    invalidation_range range;
  };
  void violation(std::uint64_t report::*counter, std::string what);           // mutex held
  [[nodiscard]] std::vector<epoch_t> covering(const retired_frame& r) const;  // mutex held

  invalidation_backend& inner_;
  std::uint64_t max_pending_;
  std::size_t kept_;
  mutable spinlock mu_;
  std::unordered_map<std::uint32_t, retired_frame> retired_;  // by frame number
  std::unordered_map<domain_number, std::map<epoch_t, recorded_inv>> invs_;
  std::atomic<unsigned> submitting_{0};  // invalidations between submit and record
  report rep_;
};

}  // namespace ptreclaim::reclaim
