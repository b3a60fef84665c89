// Pieces every format header shares: the software-marker accessors over a run of
// hardware-ignored bits, and the type-erased `format_desc` built from a format type.
// A format header names its ignored bits; everything else about markers lives in the generic
// table code (src/pt), which treats the marker bits as opaque storage.
#pragma once

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

// One static descriptor per format type, holding pointers to the format's own functions.
template <class F>
[[nodiscard]] const format_desc& make_desc() noexcept {
  static constexpr format_desc d{F::name,    F::levels,      F::va_bits,   F::leaf_levels,
                                 &F::decode, &F::make_table, &F::make_leaf};
  return d;
}

}  // namespace ptreclaim::pt::fmt
