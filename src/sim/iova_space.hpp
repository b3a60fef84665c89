// dma-storm's IOVA space: per-CPU slices of fixed-size buffers, each with a state word, for
// the IOVA allocator of lazy DMA and for the `exposure` figure of both DMA modes.
//
// A buffer is never-used, mapped, deferred (unmapped, held by the policy: lazy DMA) or free
// after an unmap. Lazy DMA allocates next-fit from a CPU's cursor over its own slice, taking only
// free (or never-used) buffers, so an IOVA comes back into use only after the policy gave it back
// (iova_free, through the safety monitor). Strict callers keep their bump cursor (dma_storm) and
// only record the states.
//
// Exposure: a device translation that succeeded at an IOVA whose buffer was unmapped before the
// translation began (deferred or free) reached an unmapped buffer, which only a stale IOTLB entry
// can do (the page table no longer maps it). Counted, with the longest window from the unmap to
// such an access. "Unmapped" is when the caller's unmap returned: after its invalidation
// completed in strict mode, at once in lazy mode.
//
// Thread-safety: a CPU allocates and marks only in its own slice; iova_free (any CPU context)
// and check (device actors) may run concurrently. [is-1] release stores of a state pair with
// [is-2] the acquire loads of allocators and devices.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>

#include "ptreclaim/reclaim/reclaimer.hpp"

namespace ptreclaim::sim::detail {

class iova_space final : public reclaim::iova_sink {
 public:
  enum class state : std::uint8_t { unused = 0, mapped = 1, deferred = 2, free = 3 };

  iova_space(unsigned cpus, std::uint64_t slice_bytes, std::uint64_t buffer_bytes);

  [[nodiscard]] std::uint64_t slice_bytes() const noexcept { return slice_; }
  // Lazy DMA: the next buffer of `cpu`'s slice at or after `cursor` (an offset in the slice,
  // advanced past it, wrapping) that is unused or free; marked mapped. nullopt: every buffer of
  // the slice is mapped or still deferred.
  [[nodiscard]] std::optional<std::uint64_t> alloc(unsigned cpu, std::uint64_t& cursor);
  void mark_mapped(std::uint64_t iova) noexcept { set(iova, state::mapped, 0); }
  // The caller's unmap returned at now_ns: deferred (lazy, the policy holds it) or free.
  void mark_unmapped(std::uint64_t iova, std::uint64_t now_ns, bool deferred) noexcept {
    set(iova, deferred ? state::deferred : state::free, now_ns);
  }
  // Lazy DMA: the policy holds the IOVA from before retire_deferred (which may give it back at
  // once), so the state is set first with no unmap time; unmap_returned(now) stamps the time the
  // caller's unmap returned, whatever the state is by then.
  void mark_deferred(std::uint64_t iova) noexcept {
    set(iova, state::deferred, ~std::uint64_t{0} >> 2);
  }
  void unmap_returned(std::uint64_t iova, std::uint64_t now_ns) noexcept;
  // The policy gives a deferred IOVA back (through the monitor): free, unmap time kept.
  void iova_free(reclaim::domain_number d, const reclaim::iova_range& r) noexcept override;

  // A device translation of `iova` that began at start_ns succeeded at now_ns.
  void check(std::uint64_t iova, std::uint64_t start_ns, std::uint64_t now_ns) noexcept;
  [[nodiscard]] std::uint64_t exposures() const noexcept {
    return exposures_.load(std::memory_order_relaxed);
  }
  [[nodiscard]] std::uint64_t longest_exposure_ns() const noexcept {
    return longest_.load(std::memory_order_relaxed);
  }

 private:
  [[nodiscard]] std::atomic<std::uint64_t>* word(std::uint64_t iova) noexcept;
  void set(std::uint64_t iova, state s, std::uint64_t now_ns) noexcept;

  std::uint64_t slice_;
  std::uint64_t buffer_;
  std::uint64_t per_slice_;  // buffers per slice
  std::uint64_t count_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> words_;  // state | unmapped_ns << 2
  std::atomic<std::uint64_t> exposures_{0};
  std::atomic<std::uint64_t> longest_{0};
};

}  // namespace ptreclaim::sim::detail
