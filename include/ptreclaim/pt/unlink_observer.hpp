// Who hears, from the page-table code itself, of every table frame a mutation unlinks.
//
// A checker that must not trust the reclamation layer (reclaim::safety_monitor) learns here
// which frames left the hierarchy, when (right after the store that unlinked them, before the
// mutation returns its gather) and through which IOVA range a cached entry could still reach
// them: the span of the entry whose change unlinked the subtree. Every frame of a released
// subtree reports that same top span, because a stale cached pointer to the subtree's root
// leads a walk down to its children too.
#pragma once

#include <cstdint>

#include "ptreclaim/mem/frame.hpp"

namespace ptreclaim::pt {

using iova_t = std::uint64_t;

struct unlinked_table {
  std::uint16_t domain = 0;  // domain_config::domain
  mem::frame_id frame;
  unsigned level = 0;  // the frame's own level (1 = a table of 4 KiB leaves)
  iova_t first = 0;    // [first, last]: span of the entry whose change unlinked the subtree
  iova_t last = 0;
};

class unlink_observer {
 public:
  virtual ~unlink_observer() = default;
  // Called on the mutating thread, after the unlinking store, inside the table's mapping lock
  // in locked mode: it must not call back into the table.
  virtual void on_unlinked(const unlinked_table& t) noexcept = 0;
};

}  // namespace ptreclaim::pt
