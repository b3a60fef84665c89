// Intel VT-d second-stage (SL) paging entries, 4- and 5-level (VT-d specification rev. 3.x/4.x,
// section 9.8 "Second-Stage Paging Entries", tables of SL-PML5E, SL-PML4E, SL-PDPE, SL-PDE,
// SL-PTE). 4 KiB, 2 MiB and 1 GiB pages (levels 1, 2, 3).
//
// There is NO present bit: an entry is present when R or W is set (§9.8, "... entry is not
// present if bits 1:0 are 0"). A non-leaf entry therefore carries R|W so the walk is allowed
// through; the effective permission is the AND along the walk, so the leaf decides. Non-leaf
// entries carry no X, as Linux and Xen write them: X is honoured only with SLEE, which this
// model does not enable, so a non-leaf entry's X never narrows the path (decode reports it set).
//
// Layout used here (bit: meaning, the spec section is §9.8 for every line):
//   0      R    read permission (walk / page)
//   1      W    write permission
//   2      X    execute permission, leaves only (honoured only with SLEE; never in a non-leaf)
//   7      PS   page size: 1 = this SL-PDPE (level 3) / SL-PDE (level 2) maps a page.
//                Reserved (must be 0) in SL-PML5E / SL-PML4E; ignored in SL-PTE.
//   51:12  ADDR physical address of the next table or of the page; bits 51:HAW are reserved
//                (the unit's host_address_width), and so are bits 20:12 of a 2M page and
//                29:12 of a 1G page (the address is page-aligned)
//   61:52  ignored by hardware in every second-stage entry: our software markers (sw bits).
//   (3:5 EMT, 6 IPAT, 11 SNP, 62 TM, 63 ignored/reserved: never set by this code.)
#pragma once

#include <cstdint>

#include "ptreclaim/base/bits.hpp"
#include "ptreclaim/pt/fmt/common.hpp"
#include "ptreclaim/pt/format.hpp"

namespace ptreclaim::pt::fmt {

template <unsigned Levels>
struct vtd_ss {
  static_assert(Levels == 4 || Levels == 5, "VT-d second stage walks 4 or 5 levels");

  static constexpr const char* name = Levels == 4 ? "vtd-ss-4" : "vtd-ss-5";
  static constexpr unsigned levels = Levels;
  static constexpr unsigned va_bits = Levels == 4 ? 48 : 57;  // 4-level: 48-bit AGAW, 5: 57
  static constexpr std::uint32_t leaf_levels = 0b1110;        // 4K, 2M, 1G
  // Permissions a leaf can express; a leaf needs R or W (else it is "not present").
  static constexpr std::uint8_t perm_mask = perm_read | perm_write | perm_exec;

  static constexpr std::uint64_t r_bit = bit(0);                  // §9.8 R
  static constexpr std::uint64_t w_bit = bit(1);                  // §9.8 W
  static constexpr std::uint64_t x_bit = bit(2);                  // §9.8 X
  static constexpr std::uint64_t ps_bit = bit(7);                 // §9.8 PS (SL-PDPE, SL-PDE)
  static constexpr std::uint64_t addr_mask = bit_range(12, 51);   // §9.8 ADDR
  static constexpr std::uint64_t width_limited_mask = addr_mask;  // §9.8 51:HAW reserved
  using sw = sw_field<52, 61>;                                    // §9.8 bits 61:52 ignored
  static constexpr unsigned sw_bits = sw::width;

  static_assert((addr_mask & sw::mask) == 0 &&
                    ((r_bit | w_bit | x_bit | ps_bit) & (addr_mask | sw::mask)) == 0,
                "VT-d SL fields overlap");
  static_assert(sw_bits == 10);

  [[nodiscard]] static constexpr bool valid_perms(std::uint8_t p) noexcept {
    return (p & ~perm_mask) == 0 && (p & (perm_read | perm_write)) != 0;
  }

  [[nodiscard]] static constexpr decoded_entry decode(std::uint64_t pte, unsigned level) noexcept {
    if ((pte & (r_bit | w_bit)) == 0) return {};  // no present bit: R|W == 0 is not present
    const bool leaf = level == 1 || ((level == 2 || level == 3) && (pte & ps_bit) != 0);
    const auto perms = static_cast<std::uint8_t>(((pte & r_bit) ? perm_read : 0) |
                                                 ((pte & w_bit) ? perm_write : 0) |
                                                 (!leaf || (pte & x_bit) ? perm_exec : 0));
    return {leaf ? entry_kind::leaf : entry_kind::table, pte & addr_mask, perms};
  }
  // §9.8: PS is reserved (must be 0) in SL-PML5E and SL-PML4E (levels 5 and 4); in a 2M / 1G
  // page the address bits below the page size are (20:12, 29:12). (Bits 51:HAW: the walker.)
  [[nodiscard]] static constexpr std::uint64_t reserved_bits(std::uint64_t pte,
                                                             unsigned level) noexcept {
    if (level >= 4) return pte & ps_bit;
    if ((level == 2 || level == 3) && (pte & ps_bit) != 0) return pte & below_page_size(level, 12);
    return 0;
  }
  [[nodiscard]] static constexpr std::uint64_t make_table(std::uint64_t table_pa,
                                                          unsigned /*level*/) noexcept {
    return (table_pa & addr_mask) | r_bit | w_bit;
  }
  [[nodiscard]] static constexpr std::uint64_t make_leaf(std::uint64_t pa, unsigned level,
                                                         std::uint8_t perms) noexcept {
    std::uint64_t pte = pa & addr_mask;
    if (perms & perm_read) pte |= r_bit;
    if (perms & perm_write) pte |= w_bit;
    if (perms & perm_exec) pte |= x_bit;
    if (level > 1) pte |= ps_bit;
    return pte;
  }
  [[nodiscard]] static constexpr std::uint64_t sw_get(std::uint64_t pte) noexcept {
    return sw::get(pte);
  }
  [[nodiscard]] static constexpr std::uint64_t sw_set(std::uint64_t pte, std::uint64_t v) noexcept {
    return sw::set(pte, v);
  }
  [[nodiscard]] static const format_desc& desc() noexcept { return make_desc<vtd_ss>(); }
};

using vtd_ss_4 = vtd_ss<4>;
using vtd_ss_5 = vtd_ss<5>;
static_assert(pt_format<vtd_ss_4> && pt_format<vtd_ss_5>);

}  // namespace ptreclaim::pt::fmt
