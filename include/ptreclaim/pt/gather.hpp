// The gather: what a page-table mutation owes the hardware. Every map/unmap returns one.
//   - the IOVA range [first, last] (inclusive) whose translations changed and must be invalidated;
//   - whether any non-leaf entry changed (a table was unlinked or replaced): then the
//     invalidation must also drop paging-structure caches, so the leaf-only hint (IH=1) is
//     forbidden;
//   - the range map() was asked to fill (not present -> present): nothing to invalidate for an
//     IOMMU that never caches a not-present entry, but one in caching mode (VT-d CAP.CM) may,
//     and its callers flush this range (reclaim::invalidate_after_map);
//   - the frames released (state retired in the pool), children before parents, which the
//     page table never frees itself: that is the reclamation layer's job, after the
//     invalidation has completed.
// A gather is reused across operations (clear() keeps its capacity) so steady-state mutation
// does not allocate.
#pragma once

#include <cstdint>
#include <vector>

#include "ptreclaim/mem/frame.hpp"

namespace ptreclaim::pt {

using iova_t = std::uint64_t;

class gather {
 public:
  [[nodiscard]] bool empty() const noexcept { return first_ > last_; }
  [[nodiscard]] iova_t first() const noexcept { return first_; }
  [[nodiscard]] iova_t last() const noexcept { return last_; }
  [[nodiscard]] bool nonleaf_changed() const noexcept { return nonleaf_changed_; }
  [[nodiscard]] const std::vector<mem::frame_id>& released() const noexcept { return released_; }

  // Widens the range to include [first, last].
  void add_range(iova_t first, iova_t last) noexcept {
    if (first < first_) first_ = first;
    if (last > last_) last_ = last;
  }
  void set_nonleaf_changed() noexcept { nonleaf_changed_ = true; }
  // What the operations asked for: the union of the ranges map/unmap were called with (empty
  // while request_first() > request_last()). A caller that invalidates only this, and not the
  // range above, is Xen's page_count flush (it misses a split superpage or a coalesced range).
  [[nodiscard]] iova_t request_first() const noexcept { return req_first_; }
  [[nodiscard]] iova_t request_last() const noexcept { return req_last_; }
  void add_request(iova_t first, iova_t last) noexcept {
    if (first < req_first_) req_first_ = first;
    if (last > req_last_) req_last_ = last;
  }
  // What map() was asked to map (empty while mapped_first() > mapped_last()).
  [[nodiscard]] iova_t mapped_first() const noexcept { return map_first_; }
  [[nodiscard]] iova_t mapped_last() const noexcept { return map_last_; }
  [[nodiscard]] bool mapped_any() const noexcept { return map_first_ <= map_last_; }
  void add_mapped(iova_t first, iova_t last) noexcept {
    if (first < map_first_) map_first_ = first;
    if (last > map_last_) map_last_ = last;
  }
  // Appends a released frame; callers add children before their parent.
  void add_released(mem::frame_id f) { released_.push_back(f); }
  // Merges another gather into this one (ranges widen, released frames append in order).
  void merge(const gather& other) {
    if (!other.empty()) add_range(other.first_, other.last_);
    if (other.req_first_ <= other.req_last_) add_request(other.req_first_, other.req_last_);
    if (other.mapped_any()) add_mapped(other.map_first_, other.map_last_);
    nonleaf_changed_ = nonleaf_changed_ || other.nonleaf_changed_;
    released_.insert(released_.end(), other.released_.begin(), other.released_.end());
  }
  // Forgets the released frames (the caller took them) but keeps the range and hint.
  void take_released(std::vector<mem::frame_id>& out) {
    out.insert(out.end(), released_.begin(), released_.end());
    released_.clear();
  }
  void clear() noexcept {
    first_ = ~iova_t{0};
    last_ = 0;
    nonleaf_changed_ = false;
    req_first_ = ~iova_t{0};
    req_last_ = 0;
    map_first_ = ~iova_t{0};
    map_last_ = 0;
    released_.clear();
  }

 private:
  iova_t first_ = ~iova_t{0};
  iova_t last_ = 0;
  bool nonleaf_changed_ = false;
  iova_t req_first_ = ~iova_t{0};
  iova_t req_last_ = 0;
  iova_t map_first_ = ~iova_t{0};
  iova_t map_last_ = 0;
  std::vector<mem::frame_id> released_;
};

}  // namespace ptreclaim::pt
