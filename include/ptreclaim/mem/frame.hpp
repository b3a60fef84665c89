// Frame identity and per-frame metadata of the simulated physical memory.
// A frame is a 4 KiB page named by its frame number (not a host pointer): page-table entries
// hold frame numbers, exactly as hardware PTEs hold physical addresses.
//
// Glossary: a page-table frame is *linked* while a table entry points at it, *retired* once a
// gather released it (unlinked, contents intact, a device may still hold a cached pointer), and
// *free* after the reclamation layer returned it to the pool. "retire" is not "free".
#pragma once

#include <atomic>
#include <compare>
#include <cstdint>
#include <limits>

namespace ptreclaim::mem {

struct frame_id {
  std::uint32_t value = std::numeric_limits<std::uint32_t>::max();

  [[nodiscard]] constexpr bool valid() const noexcept {
    return value != std::numeric_limits<std::uint32_t>::max();
  }
  [[nodiscard]] constexpr std::uint64_t phys() const noexcept { return std::uint64_t{value} << 12; }
  [[nodiscard]] static constexpr frame_id from_phys(std::uint64_t pa) noexcept {
    return frame_id{static_cast<std::uint32_t>(pa >> 12)};
  }
  friend constexpr auto operator<=>(frame_id, frame_id) = default;
};
inline constexpr frame_id no_frame{};

enum class frame_state : std::uint8_t {
  free = 0,
  page_table = 1,  // linked into a table of `domain` at `level` (1 = leaf table)
  retired = 2,     // released by a gather, owned by the reclamation layer until freed
  data = 3,        // a data page (a DMA buffer)
};
[[nodiscard]] const char* frame_state_name(frame_state s) noexcept;

// A consistent snapshot of who owns a frame, read with one atomic load so a lock-free walker
// never sees a torn (state, domain, generation) triple.
struct frame_ident {
  frame_state state = frame_state::free;
  std::uint8_t level = 0;
  std::uint16_t domain = 0;
  std::uint32_t generation = 0;  // changes on every allocation

  [[nodiscard]] static constexpr frame_ident unpack(std::uint64_t w) noexcept {
    return {static_cast<frame_state>(w & 0xff), static_cast<std::uint8_t>((w >> 8) & 0xff),
            static_cast<std::uint16_t>((w >> 16) & 0xffff), static_cast<std::uint32_t>(w >> 32)};
  }
  [[nodiscard]] constexpr std::uint64_t pack() const noexcept {
    return std::uint64_t{static_cast<std::uint8_t>(state)} | (std::uint64_t{level} << 8) |
           (std::uint64_t{domain} << 16) | (std::uint64_t{generation} << 32);
  }
  friend constexpr bool operator==(frame_ident, frame_ident) = default;
};

// Per-frame metadata. `ident` is the ledger's truth. `link` and `tag` belong to whoever owns the
// frame in its current state (the reclamation layer while retired), so queuing never allocates.
// The history fields exist for violation reports and are written with relaxed atomics.
struct frame_meta {
  std::atomic<std::uint64_t> ident{0};  // frame_ident::pack()
  std::atomic<std::uint32_t> link{std::numeric_limits<std::uint32_t>::max()};  // intrusive next
  std::atomic<std::uint64_t> tag{0};           // the owner's stamp (e.g. a flush sequence)
  std::atomic<std::uint64_t> retired_ns{0};    // when a gather released it (0: never)
  std::atomic<std::uint64_t> freed_ns{0};      // when it was last freed (0: never)
  std::atomic<const char*> freed_by{nullptr};  // static string naming the freeing path
  std::atomic<std::uint16_t> last_domain{0};   // owner before the last free, for reports
  std::atomic<std::uint8_t> last_level{0};
  // Set by the page table while this page-table frame is linked into a published hierarchy
  // (frame_pool::mark_linked), cleared when it is retired; lets the ledger refuse a free of a
  // linked frame by its own record, not only by its state.
  std::atomic<bool> linked{false};

  [[nodiscard]] frame_ident load_ident(
      std::memory_order o = std::memory_order_acquire) const noexcept {
    return frame_ident::unpack(ident.load(o));
  }
};

// Poison written over every freed frame: a device that walks a freed table reads this.
inline constexpr std::uint64_t poison_pattern = 0xdeadbeefdeadbeefULL;

}  // namespace ptreclaim::mem
