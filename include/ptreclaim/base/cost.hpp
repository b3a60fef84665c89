// cost_kind: what a step costs in the deterministic executor's virtual time. Code charges a kind
// through its platform (platform::charge, platform.hpp); the deterministic executor prices it
// with the cost model (runtime/cost_model.hpp, which indexes every kind; values come from a cost
// file, `ptreclaim calibrate`). The threaded executor and the real platform ignore charges (real
// time is measured instead).
//
// It lives in base because mem, pt and iommu charge through base's platform and sit below
// runtime. Each enumerator says which layer charges it; a kind no layer charges today stays so
// cost files keep their fields.
#pragma once

#include <cstdint>

namespace ptreclaim {

enum class cost_kind : std::uint8_t {
  pte_write,            // pt: each PTE store of a map, unmap or table clear
  pte_read,             // nobody (IOMMU walks price their reads in iommu's own latency model)
  frame_alloc,          // mem: frame_pool::alloc_table
  frame_free,           // mem: frame_pool::free
  enqueue,              // reclaim: a policy queues retired frames (tasklet, work or batch list)
  dequeue,              // nobody today
  inv_submit,           // reclaim (the IOMMU backend submits an invalidation); iommu (the driver
                        // resubmits a group after a queue error)
  inv_poll,             // reclaim: the IOMMU backend polls an invalidation's completion
  cache_line_transfer,  // runtime: the deterministic executor, when touch_line moves a line
  lock_uncontended,     // runtime: the deterministic executor's lock hooks; iommu: a domain's
                        // full fence (about a locked op)
  op_overhead,          // sim: the engine's fixed cost of one workload operation
  table_fill,           // pt: writing all 512 entries of a new table in one loop (a split)
  count_,
};

}  // namespace ptreclaim
