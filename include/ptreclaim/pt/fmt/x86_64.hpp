// x86-64 first-stage paging entries, 4-level and 5-level (LA57), as used by the IOMMU's
// first-stage translation for SVA (Intel SDM vol. 3A §4.5 "4-Level Paging and 5-Level Paging",
// tables 4-15 .. 4-20 for PML5E, PML4E, PDPTE, PDE, PTE). 4 KiB, 2 MiB and 1 GiB pages.
//
// Layout used here (the SDM section is §4.5 for every line):
//   0      P    present
//   1      R/W  writes allowed (0 = read-only)
//   2      U/S  user-mode access allowed; set on non-leaf entries so the leaf decides
//   5      A    accessed; pre-set on leaves so hardware need not write it back
//   6      D    dirty (leaves only); pre-set for writable leaves
//   7      PS   page size: 1 = this PDPTE (level 3) / PDE (level 2) maps a page; reserved in
//               PML5E/PML4E; bit 7 of a PTE is PAT, never set here
//   51:12  ADDR physical address; bits 51:MAXPHYADDR are reserved (the unit's
//               host_address_width), and so are bits 20:13 of a 2M page and 29:13 of a 1G page
//               (bit 12 of a 2M / 1G page is its PAT bit, allowed; never set here)
//   58:52  ignored by hardware: our software markers (sw bits)
//   62:59  protection key on leaves when CR4.PKE (never set here)
//   63     XD   execute-disable (with EFER.NXE)
// Readability is implied by P: every present leaf is readable, so a leaf's permissions must
// include perm_read. IOVAs are taken as unsigned va_bits-wide numbers (no canonical sign
// extension: the IOMMU model translates the low va_bits of a device address).
#pragma once

#include <cstdint>

#include "ptreclaim/base/bits.hpp"
#include "ptreclaim/pt/fmt/common.hpp"
#include "ptreclaim/pt/format.hpp"

namespace ptreclaim::pt::fmt {

template <unsigned Levels>
struct x86_64 {
  static_assert(Levels == 4 || Levels == 5, "x86-64 paging is 4- or 5-level");

  static constexpr const char* name = Levels == 4 ? "x86-64-4" : "x86-64-5";
  static constexpr unsigned levels = Levels;
  static constexpr unsigned va_bits = Levels == 4 ? 48 : 57;
  static constexpr std::uint32_t leaf_levels = 0b1110;  // 4K, 2M, 1G
  static constexpr std::uint8_t perm_mask = perm_read | perm_write | perm_exec;

  static constexpr std::uint64_t p_bit = bit(0);                  // §4.5 P
  static constexpr std::uint64_t rw_bit = bit(1);                 // §4.5 R/W
  static constexpr std::uint64_t us_bit = bit(2);                 // §4.5 U/S
  static constexpr std::uint64_t a_bit = bit(5);                  // §4.5 A
  static constexpr std::uint64_t d_bit = bit(6);                  // §4.5 D
  static constexpr std::uint64_t ps_bit = bit(7);                 // §4.5 PS (PDPTE, PDE)
  static constexpr std::uint64_t addr_mask = bit_range(12, 51);   // §4.5 address
  static constexpr std::uint64_t width_limited_mask = addr_mask;  // §4.5 51:MAXPHYADDR reserved
  using sw = sw_field<52, 58>;                                    // §4.5 bits 58:52 ignored
  static constexpr std::uint64_t xd_bit = bit(63);                // §4.5 XD
  static constexpr unsigned sw_bits = sw::width;

  static_assert((addr_mask & sw::mask) == 0 &&
                    ((p_bit | rw_bit | us_bit | a_bit | d_bit | ps_bit | xd_bit) &
                     (addr_mask | sw::mask)) == 0,
                "x86-64 fields overlap");
  static_assert(sw_bits == 7);

  [[nodiscard]] static constexpr bool valid_perms(std::uint8_t p) noexcept {
    return (p & ~perm_mask) == 0 && (p & perm_read) != 0;
  }

  [[nodiscard]] static constexpr decoded_entry decode(std::uint64_t pte, unsigned level) noexcept {
    if ((pte & p_bit) == 0) return {};
    const auto perms = static_cast<std::uint8_t>(perm_read | ((pte & rw_bit) ? perm_write : 0) |
                                                 ((pte & xd_bit) ? 0 : perm_exec));
    const bool leaf = level == 1 || ((level == 2 || level == 3) && (pte & ps_bit) != 0);
    return {leaf ? entry_kind::leaf : entry_kind::table, pte & addr_mask, perms};
  }
  // §4.5: PS is reserved (must be 0) in PML5E and PML4E (levels 5 and 4); in a 2M / 1G page
  // the address bits below the page size above PAT are (20:13, 29:13). (Bits 51:MAXPHYADDR:
  // the walker, with the unit's width.)
  [[nodiscard]] static constexpr std::uint64_t reserved_bits(std::uint64_t pte,
                                                             unsigned level) noexcept {
    if (level >= 4) return pte & ps_bit;
    if ((level == 2 || level == 3) && (pte & ps_bit) != 0) return pte & below_page_size(level, 13);
    return 0;
  }
  [[nodiscard]] static constexpr std::uint64_t make_table(std::uint64_t table_pa,
                                                          unsigned /*level*/) noexcept {
    return (table_pa & addr_mask) | p_bit | rw_bit | us_bit | a_bit;
  }
  [[nodiscard]] static constexpr std::uint64_t make_leaf(std::uint64_t pa, unsigned level,
                                                         std::uint8_t perms) noexcept {
    std::uint64_t pte = (pa & addr_mask) | p_bit | a_bit;
    if (perms & perm_write) pte |= rw_bit | d_bit;
    if (!(perms & perm_exec)) pte |= xd_bit;
    if (level > 1) pte |= ps_bit;
    return pte;
  }
  [[nodiscard]] static constexpr std::uint64_t sw_get(std::uint64_t pte) noexcept {
    return sw::get(pte);
  }
  [[nodiscard]] static constexpr std::uint64_t sw_set(std::uint64_t pte, std::uint64_t v) noexcept {
    return sw::set(pte, v);
  }
  [[nodiscard]] static const format_desc& desc() noexcept { return make_desc<x86_64>(); }
};

using x86_64_4 = x86_64<4>;
using x86_64_5 = x86_64<5>;
static_assert(pt_format<x86_64_4> && pt_format<x86_64_5>);

}  // namespace ptreclaim::pt::fmt
