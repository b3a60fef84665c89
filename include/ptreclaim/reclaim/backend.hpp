// The reclamation layer's view of the hardware: an invalidation backend.
//
// The policies never talk to an IOMMU directly. They ask a backend to invalidate a domain's
// range and to tell them which invalidations have completed, in *flush epochs*: every
// invalidation submitted on a domain gets the next number of that domain, and completed(d) is
// the largest n such that every invalidation of d numbered <= n has completed on every IOMMU d
// is attached to. A retired frame stamped with s = started(d) at retire is safe to free once
//   (a) an invalidation numbered > s that is non-leaf and covers the frame's range completed, or
//   (b) a domain-wide non-leaf invalidation numbered > s completed (completed_full(d) > s).
// This is Linux dma-iommu's fq_flush_start_cnt / fq_flush_finish_cnt rule, made range-aware.
//
// iommu_backend (iommu_backend.hpp) implements it on the IOMMU model; a kernel that lifts the
// reclamation core implements it on its own driver. Observers (safety monitors, tracers) see
// every submit and completion.
//
// Thread-safety: every member may be called from any CPU concurrently.
#pragma once

#include <cstdint>

#include "ptreclaim/base/status.hpp"
#include "ptreclaim/pt/gather.hpp"

namespace ptreclaim::reclaim {

using domain_number = std::uint16_t;  // the software domain number (frame ledger owner tag)
using epoch_t = std::uint64_t;

struct invalidation_range {
  pt::iova_t first = 0;
  pt::iova_t last = ~pt::iova_t{0};
  bool nonleaf = true;  // drop paging-structure caches too (IH=0)

  [[nodiscard]] bool domain_wide() const noexcept { return first == 0 && last == ~pt::iova_t{0}; }
  [[nodiscard]] bool covers(pt::iova_t f, pt::iova_t l) const noexcept {
    return nonleaf && first <= f && l <= last;
  }
  static invalidation_range whole_domain() noexcept { return {}; }
  static invalidation_range of(const pt::gather& g) noexcept {
    return {g.first(), g.last(), g.nonleaf_changed()};
  }
};

class invalidation_backend {
 public:
  virtual ~invalidation_backend() = default;

  // Submits an invalidation of `range` of domain `d` on every IOMMU it is attached to and
  // returns its epoch number. Waits (bounded) for queue space; errors only on timeout or an
  // unknown domain. Any CPU context that may spin.
  [[nodiscard]] virtual Result<epoch_t> invalidate(domain_number d,
                                                   const invalidation_range& range) = 0;
  // Epoch of the newest invalidation submitted on d (0: none yet), read so that the caller's
  // earlier unlink is visible to every invalidation numbered after it (on the IOMMU model: a
  // full fence, then a load of the domain's counter, as dma-iommu reads fq_flush_start_cnt
  // after smp_mb(); the counter's line is only read). Call after the unlink.
  [[nodiscard]] virtual epoch_t stamp(domain_number d) noexcept = 0;
  // Every invalidation of d numbered <= the result has completed. Polls the hardware
  // (advances completions), so it may cost a few loads; never blocks.
  [[nodiscard]] virtual epoch_t completed(domain_number d) noexcept = 0;
  // Number of the newest full (domain-wide, non-leaf) invalidation of d that has completed.
  [[nodiscard]] virtual epoch_t completed_full(domain_number d) noexcept = 0;
  // The same two counters as last advanced by anyone, read without polling the hardware (a
  // lock-free load): for hot paths that look often and can wait for the next poll. Default:
  // the polling versions.
  [[nodiscard]] virtual epoch_t completed_seen(domain_number d) noexcept { return completed(d); }
  [[nodiscard]] virtual epoch_t completed_full_seen(domain_number d) noexcept {
    return completed_full(d);
  }
  // A synchronous invalidation of d runs on another CPU now, so one asked for now would queue
  // behind it (Linux SVA's iommu_sva_lock). A hint for when to ask; never for when to free.
  [[nodiscard]] virtual bool flush_busy(domain_number /*d*/) noexcept { return false; }
  // Spins until completed(d) >= e or the timeout passes; returns whether it completed.
  [[nodiscard]] virtual bool wait(domain_number d, epoch_t e, std::uint64_t timeout_ns) = 0;
  // A synchronous invalidation, submitted and waited for the way the driver does it (on the
  // IOMMU model: under each unit's queue lock, iommu/system.hpp). errc::busy when it did not
  // complete within the timeout. Default: invalidate, then wait.
  [[nodiscard]] virtual Result<epoch_t> invalidate_sync(domain_number d,
                                                        const invalidation_range& range,
                                                        std::uint64_t timeout_ns) {
    Result<epoch_t> e = invalidate(d, range);
    if (e.ok() && !wait(d, *e, timeout_ns))
      return Status(errc::busy, "invalidation did not complete within the timeout");
    return e;
  }
};

}  // namespace ptreclaim::reclaim
