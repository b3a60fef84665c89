// Injected invalidation-queue faults of one IOMMU unit (all off by default; configured by
// config.hpp fault_config), and what the unit reports when one aborts a submission.
//
// Faults, each drawn per descriptor from a seeded schedule that is a pure function of (seed,
// unit, descriptor sequence, purpose), so a deterministic executor replays them exactly:
//   ITE    (VT-d invalidation time-out error) a wait descriptor does not complete: after
//          ite_timeout_ns the unit reports ITE and aborts the wait. The invalidations before it
//          took effect (and were reported to the inv_observer as processed); the wait was not.
//   IQE    (VT-d invalid-descriptor error) an invalidation descriptor is refused: it does not
//          take effect, and the rest of its group (every descriptor up to and including the
//          next wait) is aborted unprocessed.
//   stall  the queue stalls for stall_ns before processing the descriptor.
//   slow   a wait that completes takes an extra delay drawn exponential (mean slow_wait_mean_ns,
//          truncated at slow_wait_max_ns).
// An aborted wait is never done() (unit.hpp) and never reported to the inv_observer. The unit
// keeps each aborted group (its invalidations and its wait) for the driver, which resubmits it
// as Linux's qi_submit_sync does when qi_check_fault reports QI_ABORT (system.hpp: recover()).
// A resubmission carries `attempt` (how often that invalidation was aborted before); the
// injector never aborts an attempt >= max_aborts_in_a_row, so every invalidation completes
// within a bounded time (docs/iommu-model.md, "Injected faults").
// Simplifications: real ITE aborts every pending wait of the queue and IQE halts the queue until
// software clears the error; here an ITE aborts its own wait, and the queue goes on past an
// aborted group at once (the driver's clearing of the error is not timed).
#pragma once

#include <cstdint>
#include <vector>

#include "ptreclaim/iommu/inv_queue.hpp"

namespace ptreclaim::iommu {

// The fault schedule of one unit: what happens to the descriptor at `seq`.
class fault_schedule {
 public:
  struct draw {
    std::uint64_t stall_ns = 0;  // the queue stalls this long before the descriptor
    std::uint64_t slow_ns = 0;   // wait only: extra latency if it completes
    bool ite = false;            // wait only: times out (ITE) and is aborted
    bool iqe = false;            // invalidation only: refused (IQE), its group aborted
  };
  fault_schedule(const fault_config& c, unsigned unit) noexcept : c_(c), unit_(unit) {}
  [[nodiscard]] bool enabled() const noexcept { return c_.enabled(); }
  // `attempt`: the descriptor's resubmission count (aborts are not drawn past the bound).
  [[nodiscard]] draw at(std::uint64_t seq, inv_type type, unsigned attempt) const noexcept;

 private:
  enum class purpose : std::uint64_t { stall = 1, slow = 2, slow_length = 3, ite = 4, iqe = 5 };
  // Uniform in [0, 1).
  [[nodiscard]] double uniform(std::uint64_t seq, purpose p) const noexcept;
  fault_config c_;
  unsigned unit_;
};

enum class queue_error : std::uint8_t { ite, iqe };
[[nodiscard]] const char* queue_error_name(queue_error e) noexcept;  // "ITE"

// A group the unit aborted: what the driver must resubmit to get the invalidation done.
struct aborted_group {
  queue_error error = queue_error::ite;
  std::uint64_t wait_seq = 0;         // the aborted wait
  unsigned attempt = 0;               // aborts of this invalidation before this one
  std::vector<inv_descriptor> descs;  // the group's invalidations, then its wait
};

}  // namespace ptreclaim::iommu
