// Pieces every format header shares: the software-marker accessors over hardware-ignored
// bits (one contiguous run, or a list of scattered positions), and the type-erased `format_desc`
// built from a format type. A format header names its ignored bits; everything else about markers
// lives in the generic table code (src/pt), which treats the marker bits as opaque storage.
#pragma once

#include <bit>
#include <cstdint>

#include "ptreclaim/base/bits.hpp"
#include "ptreclaim/pt/format.hpp"

namespace ptreclaim::pt::fmt {

// Software bits [Lo, Hi] of a PTE, which the hardware of the format ignores.
template <unsigned Lo, unsigned Hi>
struct sw_field {
  static_assert(Lo <= Hi && Hi < 64);
  static constexpr unsigned lo = Lo;
  static constexpr unsigned hi = Hi;
  static constexpr unsigned width = Hi - Lo + 1;
  static constexpr std::uint64_t mask = bit_range(Lo, Hi);

  [[nodiscard]] static constexpr std::uint64_t get(std::uint64_t pte) noexcept {
    return field_get(pte, Lo, Hi);
  }
  // Precondition: value < 2^width (asserted in debug builds).
  [[nodiscard]] static constexpr std::uint64_t set(std::uint64_t pte,
                                                   std::uint64_t value) noexcept {
    PTR_DASSERT(width == 64 || (value >> width) == 0);
    return field_set(pte, Lo, Hi, value);
  }
};

// Software bits at the listed (possibly non-adjacent) positions of a PTE, all ignored by the
// format's hardware. Value bit i is stored at PTE bit Bits[i] (scatter on set, gather on get),
// for formats whose ignored bits are not one contiguous run (AMD-Vi v1: 4:1 and 8:7).
template <unsigned... Bits>
struct sw_bitlist {
  static_assert(sizeof...(Bits) > 0 && ((Bits < 64) && ...));
  static constexpr unsigned width = sizeof...(Bits);
  static constexpr unsigned positions[width] = {Bits...};
  static constexpr std::uint64_t mask = (bit(Bits) | ...);
  static_assert(std::popcount(mask) == static_cast<int>(width), "a bit position is repeated");

  [[nodiscard]] static constexpr std::uint64_t get(std::uint64_t pte) noexcept {
    std::uint64_t v = 0;
    for (unsigned i = 0; i < width; ++i)
      v |= ((pte >> positions[i]) & 1) << i;
    return v;
  }
  // Precondition: value < 2^width (asserted in debug builds).
  [[nodiscard]] static constexpr std::uint64_t set(std::uint64_t pte,
                                                   std::uint64_t value) noexcept {
    PTR_DASSERT((value >> width) == 0);
    pte &= ~mask;
    for (unsigned i = 0; i < width; ++i)
      pte |= ((value >> i) & 1) << positions[i];
    return pte;
  }
};

// The address bits of a level-`level` page below its size, from bit `from` up (level 1: none):
// they must be 0 in a 2M / 1G leaf, whose address is size-aligned.
[[nodiscard]] constexpr std::uint64_t below_page_size(unsigned level, unsigned from) noexcept {
  const unsigned size_lg2 = level_shift(level);
  return size_lg2 > from ? bit_range(from, size_lg2 - 1) : 0;
}

// One static descriptor per format type, holding pointers to the format's own functions.
template <class F>
[[nodiscard]] const format_desc& make_desc() noexcept {
  static constexpr format_desc d{F::name,        F::levels,         F::va_bits,
                                 F::leaf_levels, &F::decode,        &F::make_table,
                                 &F::make_leaf,  &F::reserved_bits, F::width_limited_mask};
  return d;
}

}  // namespace ptreclaim::pt::fmt
