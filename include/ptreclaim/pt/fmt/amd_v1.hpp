// AMD-Vi (AMD I/O Virtualization Technology) v1 host page tables, 4-level (AMD IOMMU
// specification, PID 48882, §2.2.3 "I/O Page Tables for Host Translations", figures of the
// I/O Page Directory Entry and I/O Page Table Entry). 4 KiB, 2 MiB and 1 GiB pages.
//
// A level-L entry is a PDE when its NextLevel field names the next level (L-1), and a leaf of
// the level's own size when NextLevel is 0 (the "default page size" encoding). NextLevel 7
// (a page of a non-default size, size encoded in the address) is never produced here and
// decodes as not present, so a walker treating it as a fault stays safe.
//
// Layout used here (the spec section is §2.2.3 for every line; the same layout is Xen's
// `struct amd_iommu_pte` in xen/drivers/passthrough/amd/iommu-defs.h):
//   0      PR         present
//   4:1    ignored    our software markers, low 4 bits (Xen keeps its contiguity markers here
//                     too: IOMMU_PTE_CONTIG_MASK 0x1e)
//   5      A          accessed: written by hardware when access tracking is on; not ours
//   6      D          dirty (PTE) / hardware-written with dirty tracking: not ours
//   8:7    ignored    our software markers, high 2 bits
//   11:9   NextLevel  level of the next table (1..5), or 0 = page at this level
//   51:12  ADDR       physical address of the next table or page
//   58:52  RESERVED   must be 0 (60:52 in a PDE): a set bit is an I/O page fault
//   59     U          untranslated access (PTE only; never set here)
//   60     FC         force coherent (PTE only; never set here)
//   61     IR         read permission
//   62     IW         write permission
//   63     ignored in the PTE (Xen `ignored2`), but not in every entry type: not used
// A PDE carries IR|IW: AMD ANDs permissions along the walk, so the leaf decides. There is no
// execute permission in v1 tables.
#pragma once

#include <cstdint>

#include "ptreclaim/base/bits.hpp"
#include "ptreclaim/pt/fmt/common.hpp"
#include "ptreclaim/pt/format.hpp"

namespace ptreclaim::pt::fmt {

struct amd_v1 {
  static constexpr const char* name = "amd-v1-4";
  static constexpr unsigned levels = 4;
  static constexpr unsigned va_bits = 48;
  static constexpr std::uint32_t leaf_levels = 0b1110;  // 4K, 2M, 1G
  static constexpr std::uint8_t perm_mask = perm_read | perm_write;

  static constexpr std::uint64_t pr_bit = bit(0);  // §2.2.3 PR
  static constexpr unsigned next_level_lo = 9;     // §2.2.3 NextLevel 11:9
  static constexpr unsigned next_level_hi = 11;
  static constexpr std::uint64_t addr_mask = bit_range(12, 51);  // §2.2.3 address
  // Not checked (as before): which address bits AMD-Vi reserves above the physical width or
  // below a default-size page's size was not established from its specification.
  static constexpr std::uint64_t width_limited_mask = 0;
  using sw = sw_bitlist<1, 2, 3, 4, 7, 8>;                               // §2.2.3 ignored 4:1, 8:7
  static constexpr std::uint64_t reserved_mask = bit_range(52, 58);      // §2.2.3 PTE: must be 0
  static constexpr std::uint64_t pde_reserved_mask = bit_range(52, 60);  // §2.2.3 PDE: must be 0
  static constexpr std::uint64_t hw_written_mask = bit(5) | bit(6);      // §2.2.3 A, D
  static constexpr std::uint64_t u_bit = bit(59);                        // §2.2.3 U (unused)
  static constexpr std::uint64_t fc_bit = bit(60);                       // §2.2.3 FC (unused)
  static constexpr std::uint64_t ir_bit = bit(61);                       // §2.2.3 IR
  static constexpr std::uint64_t iw_bit = bit(62);                       // §2.2.3 IW
  static constexpr unsigned sw_bits = sw::width;

  static_assert((addr_mask & sw::mask) == 0 && ((pr_bit | bit_range(next_level_lo, next_level_hi) |
                                                 u_bit | fc_bit | ir_bit | iw_bit) &
                                                (addr_mask | sw::mask)) == 0,
                "AMD v1 fields overlap");
  static_assert((sw::mask & (reserved_mask | hw_written_mask | bit(63))) == 0,
                "AMD v1 markers must sit in bits every entry type ignores");
  static_assert(sw_bits == 6);

  [[nodiscard]] static constexpr bool valid_perms(std::uint8_t p) noexcept {
    return (p & ~perm_mask) == 0 && p != 0;
  }

  [[nodiscard]] static constexpr decoded_entry decode(std::uint64_t pte, unsigned level) noexcept {
    if ((pte & pr_bit) == 0) return {};
    const auto next = static_cast<unsigned>(field_get(pte, next_level_lo, next_level_hi));
    const auto perms = static_cast<std::uint8_t>(((pte & ir_bit) ? perm_read : 0) |
                                                 ((pte & iw_bit) ? perm_write : 0));
    if (next == 0 && level <= 3) return {entry_kind::leaf, pte & addr_mask, perms};
    if (level > 1 && next == level - 1) return {entry_kind::table, pte & addr_mask, perms};
    return {};  // NextLevel 7, a skipped level or a page size this model does not use
  }
  // §2.2.3: bits 58:52 of a PTE (NextLevel 0) and 60:52 of a PDE are reserved.
  [[nodiscard]] static constexpr std::uint64_t reserved_bits(std::uint64_t pte,
                                                             unsigned /*level*/) noexcept {
    const bool pde = field_get(pte, next_level_lo, next_level_hi) != 0;
    return pte & (pde ? pde_reserved_mask : reserved_mask);
  }
  [[nodiscard]] static constexpr std::uint64_t make_table(std::uint64_t table_pa,
                                                          unsigned level) noexcept {
    return field_set((table_pa & addr_mask) | pr_bit | ir_bit | iw_bit, next_level_lo,
                     next_level_hi, level - 1);
  }
  [[nodiscard]] static constexpr std::uint64_t make_leaf(std::uint64_t pa, unsigned /*level*/,
                                                         std::uint8_t perms) noexcept {
    std::uint64_t pte = (pa & addr_mask) | pr_bit;  // NextLevel 0: a page of this level's size
    if (perms & perm_read) pte |= ir_bit;
    if (perms & perm_write) pte |= iw_bit;
    return pte;
  }
  [[nodiscard]] static constexpr std::uint64_t sw_get(std::uint64_t pte) noexcept {
    return sw::get(pte);
  }
  [[nodiscard]] static constexpr std::uint64_t sw_set(std::uint64_t pte, std::uint64_t v) noexcept {
    return sw::set(pte, v);
  }
  [[nodiscard]] static const format_desc& desc() noexcept { return make_desc<amd_v1>(); }
};

using amd_v1_4 = amd_v1;
static_assert(pt_format<amd_v1_4>);

}  // namespace ptreclaim::pt::fmt
