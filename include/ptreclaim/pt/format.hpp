// A page-table format, described once. Each hardware format (pt/fmt/*.hpp) is a type that
// satisfies the `pt_format` concept; the generic table code (table.hpp) is instantiated per
// format so per-level code inlines. For code that must handle any format at run time (the IOMMU
// model's hardware walker, reports), every format also exposes a `format_desc` of plain
// function pointers.
//
// Levels are numbered from 1 (the leaf table, 4 KiB entries) up to `levels` (the root).
// An entry at level L covers 2^(12 + 9*(L-1)) bytes: 4 KiB, 2 MiB, 1 GiB, 512 GiB, 256 TiB.
#pragma once

#include <concepts>
#include <cstdint>

#include "ptreclaim/base/limits.hpp"

namespace ptreclaim::pt {

// Access permissions of a leaf (and of the walk).
enum perm : std::uint8_t {
  perm_none = 0,
  perm_read = 1,
  perm_write = 2,
  perm_exec = 4,
  perm_rw = perm_read | perm_write,
};

enum class entry_kind : std::uint8_t {
  none,   // not present: a translation fault if walked
  table,  // points to the next-level table at `addr`
  leaf,   // maps the page at `addr` of the level's size (a superpage above level 1)
};

struct decoded_entry {
  entry_kind kind = entry_kind::none;
  std::uint64_t addr = 0;  // physical address (frame-aligned) of the next table or the page
  std::uint8_t perms = perm_none;
};

[[nodiscard]] constexpr unsigned level_shift(unsigned level) noexcept {
  return limits::page_size_lg2 + limits::ptes_per_table_lg2 * (level - 1);
}
[[nodiscard]] constexpr unsigned level_index(std::uint64_t iova, unsigned level) noexcept {
  return static_cast<unsigned>((iova >> level_shift(level)) & (limits::ptes_per_table - 1));
}

// Type-erased view of a format for run-time users (the hardware walker).
struct format_desc {
  const char* name;           // "vtd-ss-4", "vtd-ss-5", "x86-64-4", "amd-v1-4", ...
  unsigned levels;            // root level number
  unsigned va_bits;           // IOVA width the format translates
  std::uint32_t leaf_levels;  // bit L set: a leaf may sit at level L (bit 1 = 4K, 2 = 2M, 3 = 1G)
  decoded_entry (*decode)(std::uint64_t pte, unsigned level) noexcept;
  std::uint64_t (*make_table)(std::uint64_t table_pa, unsigned level) noexcept;
  std::uint64_t (*make_leaf)(std::uint64_t pa, unsigned level, std::uint8_t perms) noexcept;
  // The bits of a present entry at `level` that the hardware reserves (must be 0) and that are
  // set: a walk that reads such an entry faults. 0 for a well-formed entry.
  std::uint64_t (*reserved_bits)(std::uint64_t pte, unsigned level) noexcept;
  // The address bits whose part at or above a unit's host_address_width is reserved too (the
  // walker checks it: the width is the unit's); 0 where the model does not check it.
  std::uint64_t width_limited_mask;
};

// The compile-time description every format provides. Software-only bits (the contiguity
// markers of coalescing) live in bits the format's hardware IGNORES (never in reserved bits,
// which fault): `sw_bits` of them, packed into a value by sw_get/sw_set, which may gather them
// from non-adjacent positions (fmt/common.hpp). decode() must ignore them (Xen XSA-style bug
// of 2023: lookups that forgot to mask them).
template <class F>
concept pt_format = requires(std::uint64_t pte, std::uint64_t pa, unsigned level, std::uint8_t p) {
  { F::desc() } -> std::same_as<const format_desc&>;
  { F::levels } -> std::convertible_to<unsigned>;
  { F::va_bits } -> std::convertible_to<unsigned>;
  { F::leaf_levels } -> std::convertible_to<std::uint32_t>;
  { F::decode(pte, level) }
  noexcept->std::same_as<decoded_entry>;
  { F::make_table(pa, level) }
  noexcept->std::same_as<std::uint64_t>;
  { F::make_leaf(pa, level, p) }
  noexcept->std::same_as<std::uint64_t>;
  { F::reserved_bits(pte, level) }
  noexcept->std::same_as<std::uint64_t>;  // set reserved bits of a present entry
  { F::width_limited_mask } -> std::convertible_to<std::uint64_t>;
  { F::sw_get(pte) }
  noexcept->std::same_as<std::uint64_t>;  // software marker bits
  { F::sw_set(pte, pa) }
  noexcept->std::same_as<std::uint64_t>;            // (pa: the new value)
  { F::sw_bits } -> std::convertible_to<unsigned>;  // how many marker bits
};

}  // namespace ptreclaim::pt
