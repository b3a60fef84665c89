// Bit math used by page-table formats and caches. `_lg2` names are log2 of a size;
// `last` is inclusive, `end` is exclusive, and the two are never mixed in one interface.
#pragma once

#include <bit>
#include <concepts>
#include <cstdint>

#include "ptreclaim/base/assert.hpp"

namespace ptreclaim {

using u64 = std::uint64_t;

[[nodiscard]] constexpr u64 bit(unsigned n) noexcept {
  return u64{1} << n;
}

// Bits lo..hi inclusive set, e.g. bit_range(12, 51) is the VT-d address field.
[[nodiscard]] constexpr u64 bit_range(unsigned lo, unsigned hi) noexcept {
  return (hi >= 63 ? ~u64{0} : (bit(hi + 1) - 1)) & ~(bit(lo) - 1);
}

[[nodiscard]] constexpr u64 field_get(u64 word, unsigned lo, unsigned hi) noexcept {
  return (word & bit_range(lo, hi)) >> lo;
}

[[nodiscard]] constexpr u64 field_set(u64 word, unsigned lo, unsigned hi, u64 value) noexcept {
  return (word & ~bit_range(lo, hi)) | ((value << lo) & bit_range(lo, hi));
}

[[nodiscard]] constexpr bool is_aligned(u64 value, unsigned align_lg2) noexcept {
  return (value & (bit(align_lg2) - 1)) == 0;
}

// Saturating: times and deadlines near 2^64 - 1 ("never") stay there instead of wrapping.
[[nodiscard]] constexpr u64 sat_add(u64 a, u64 b) noexcept {
  return a > ~u64{0} - b ? ~u64{0} : a + b;
}
[[nodiscard]] constexpr u64 sat_sub(u64 a, u64 b) noexcept {
  return a > b ? a - b : 0;
}

[[nodiscard]] constexpr u64 align_down(u64 value, unsigned align_lg2) noexcept {
  return value & ~(bit(align_lg2) - 1);
}

[[nodiscard]] constexpr unsigned log2_floor(u64 value) noexcept {
  return value == 0 ? 0 : 63u - static_cast<unsigned>(std::countl_zero(value));
}

[[nodiscard]] constexpr bool is_pow2(u64 value) noexcept {
  return std::has_single_bit(value);
}

// Smallest power-of-two-aligned block (log2 pages) that contains [first, last], in units of
// 2^unit_lg2: the "address mask" of a page-selective invalidation.
[[nodiscard]] constexpr unsigned covering_block_lg2(u64 first, u64 last,
                                                    unsigned unit_lg2) noexcept {
  u64 a = first >> unit_lg2;
  u64 b = last >> unit_lg2;
  unsigned am = 0;
  while ((a >> am) != (b >> am))
    ++am;
  return am;
}

}  // namespace ptreclaim
