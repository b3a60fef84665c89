// The driver's bookkeeping of one unit's aborted groups (system.hpp, "Queue errors"). Private to
// the iommu library.
#pragma once

#include <atomic>
#include <cstdint>
#include <unordered_map>
#include <vector>

#include "ptreclaim/base/spinlock.hpp"
#include "ptreclaim/iommu/system.hpp"

namespace ptreclaim::iommu {

struct system::recovery_state {
  // A real-platform lock: the driver's own map is not modelled hardware, and wait_done() is
  // read by checkers that must not perturb virtual time.
  mutable spinlock mu;
  std::vector<aborted_group> retry;                       // taken, but the queue was full
  std::unordered_map<std::uint64_t, std::uint64_t> next;  // aborted wait -> its resubmission's
  std::atomic<bool> any_retry{false};                     // retry is not empty (a hint)
  std::atomic<bool> any_next{false};                      // next is not empty
};

}  // namespace ptreclaim::iommu
