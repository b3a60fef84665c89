// Reserved bits: a walk that reads a present entry with a bit set that the hardware reserves
// faults (outcome::fault_invalid) and the model records a `reserved_bits` violation, so a
// format that put its software markers in reserved rather than ignored bits (the AMD-Vi v1
// markers once sat in 58:52) is caught end to end, not only by a table-level check. Bits the
// hardware ignores (where the markers belong) change nothing.
#include <gtest/gtest.h>

#include "iommu_fixture.hpp"
#include "ptreclaim/base/bits.hpp"

namespace ptreclaim::iommu::test {
namespace {

constexpr iova_t page = 3 * k1g + 5 * k2m + 7 * k4k;
constexpr std::uint64_t phys_base = 4 * k1g;  // 1G-aligned: any page size maps it
constexpr std::uint64_t big_timeout = 1'000'000'000;

// The entry at `level` on the path of `iova` (the software walk the hardware does).
std::atomic<std::uint64_t>& entry_at(fixture& f, const pt::table& t, iova_t iova, unsigned level) {
  const pt::format_desc& fmt = t.format();
  mem::frame_id table = t.root();
  for (unsigned l = fmt.levels; l > level; --l) {
    const pt::decoded_entry e = fmt.decode(f.pool.words(table)[pt::level_index(iova, l)].load(), l);
    PTR_ASSERT(e.kind == pt::entry_kind::table);
    table = mem::frame_id::from_phys(e.addr);
  }
  return f.pool.words(table)[pt::level_index(iova, level)];
}

struct one_page {
  fixture f;
  domain* d = nullptr;
  pt::table* t = nullptr;

  // Maps the page of `leaf_level`'s size around `page` on a unit of that address width.
  explicit one_page(pt::format_kind kind, unsigned leaf_level = 1, unsigned address_width = 52) {
    unit_config c = zero_latency_unit();
    c.host_address_width = address_width;
    const unsigned u = f.sys.add_unit(c);
    d = &f.add_domain(1, pt::domain_config{}, kind);
    t = &f.table_of(*d);
    PTR_ASSERT(f.sys.attach(5, u, *d, 9).ok());
    pt::gather g;
    const unsigned size_lg2 = pt::level_shift(leaf_level);
    const iova_t base = align_down(page, size_lg2);
    f.map(*d, base, phys_base, std::uint64_t{1} << size_lg2, g);
    expected_phys = phys_base + (page + 0x10 - base);
  }
  std::uint64_t expected_phys = 0;
  // Sets `bits` in the entry at `level`, translates with cold caches, restores the entry.
  translate_result translate_with(unsigned level, std::uint64_t bits) {
    EXPECT_TRUE(f.sys.flush_sync(*d, inv_range::all(), big_timeout).ok());
    std::atomic<std::uint64_t>& e = entry_at(f, *t, page, level);
    const std::uint64_t old = e.load();
    e.store(old | bits);
    const translate_result r = f.sys.translate(5, page + 0x10, pt::perm_read);
    e.store(old);
    return r;
  }
  ~one_page() {
    EXPECT_TRUE(f.sys.flush_sync(*d, inv_range::all(), big_timeout).ok());
    f.teardown();
  }
};

struct reserved_case {
  pt::format_kind kind;
  unsigned level;
  std::uint64_t reserved;       // a bit the hardware reserves in that entry
  std::uint64_t ignored;        // a bit it ignores there (where software markers may live)
  unsigned leaf_level = 1;      // the mapped page's level (2: a 2M page, 3: 1G)
  unsigned address_width = 52;  // the unit's host_address_width
};

void PrintTo(const reserved_case& c, std::ostream* os) {
  *os << pt::format_kind_name(c.kind) << " level " << c.level << " leaf level " << c.leaf_level
      << " width " << c.address_width << std::hex << " reserved 0x" << c.reserved << " ignored 0x"
      << c.ignored;
}

class IommuReservedBits : public testing::TestWithParam<reserved_case> {};

TEST_P(IommuReservedBits, ReservedFaultsAndIsRecordedIgnoredTranslates) {
  const reserved_case c = GetParam();
  SCOPED_TRACE(std::string(pt::format_kind_name(c.kind)) + " level " + std::to_string(c.level));
  one_page p(c.kind, c.leaf_level, c.address_width);

  translate_result r = p.translate_with(c.level, c.ignored);
  EXPECT_EQ(r.result, outcome::ok) << "an ignored bit changed the walk";
  EXPECT_EQ(r.phys, p.expected_phys);
  EXPECT_EQ(r.level, c.leaf_level);
  EXPECT_EQ(p.f.sys.violations().count(), 0u) << p.f.sys.violations().report();

  r = p.translate_with(c.level, c.reserved);
  EXPECT_EQ(r.result, outcome::fault_invalid);
  EXPECT_EQ(r.level, c.level);
  EXPECT_EQ(r.violations, 1u);
  ASSERT_EQ(p.f.sys.violations().count(), 1u);
  const violation v = p.f.sys.violations().first().front();
  EXPECT_EQ(v.kind, violation_kind::reserved_bits) << v.describe();
  EXPECT_EQ(v.reserved, c.reserved);
  EXPECT_EQ(v.level, c.level);
  EXPECT_EQ(v.iova, page + 0x10);
  EXPECT_NE(v.describe().find("reserved bits 0x"), std::string::npos) << v.describe();

  // Restored: the walk is clean again and nothing else was recorded.
  r = p.translate_with(c.level, 0);
  EXPECT_EQ(r.result, outcome::ok);
  EXPECT_EQ(p.f.sys.violations().count(), 1u);
}

INSTANTIATE_TEST_SUITE_P(
    Formats, IommuReservedBits,
    testing::Values(
        // AMD-Vi v1 §2.2.3: PTE bits 58:52 reserved (the old marker bits), 4:1 and 8:7 ignored.
        reserved_case{pt::format_kind::amd_v1_4, 1, bit(52), bit(1)},
        reserved_case{pt::format_kind::amd_v1_4, 1, bit(58), bit(8)},
        // ... a PDE reserves 60:52 (59 and 60 are U and FC only in a PTE).
        reserved_case{pt::format_kind::amd_v1_4, 4, bit(59), bit(3)},
        reserved_case{pt::format_kind::amd_v1_4, 2, bit(60), bit(7)},
        // VT-d second stage §9.8: PS reserved in SL-PML4E / SL-PML5E; 61:52 ignored.
        reserved_case{pt::format_kind::vtd_ss_4, 4, bit(7), bit(52)},
        reserved_case{pt::format_kind::vtd_ss_5, 5, bit(7), bit(61)},
        // x86-64 §4.5: PS reserved in PML4E / PML5E; 58:52 ignored.
        reserved_case{pt::format_kind::x86_64_4, 4, bit(7), bit(52)},
        reserved_case{pt::format_kind::x86_64_5, 5, bit(7), bit(58)},
        // VT-d §9.8: the address bits of a 2M / 1G page below its size (20:12, 29:12).
        reserved_case{pt::format_kind::vtd_ss_4, 2, bit(12), bit(52), 2},
        reserved_case{pt::format_kind::vtd_ss_4, 2, bit(20), bit(61), 2},
        reserved_case{pt::format_kind::vtd_ss_4, 3, bit(12), bit(52), 3},
        reserved_case{pt::format_kind::vtd_ss_5, 3, bit(29), bit(61), 3},
        // x86-64 §4.5: 20:13 and 29:13; bit 12 of a 2M / 1G page is PAT, allowed.
        reserved_case{pt::format_kind::x86_64_4, 2, bit(13), bit(12), 2},
        reserved_case{pt::format_kind::x86_64_4, 2, bit(20), bit(12), 2},
        reserved_case{pt::format_kind::x86_64_5, 3, bit(29), bit(12), 3},
        // Address bits at or above the unit's width (VT-d HAW, x86-64 MAXPHYADDR), in leaves
        // and tables, 4K and large.
        reserved_case{pt::format_kind::vtd_ss_4, 1, bit(39), bit(52), 1, 39},
        reserved_case{pt::format_kind::vtd_ss_4, 4, bit(51), bit(61), 1, 48},
        reserved_case{pt::format_kind::vtd_ss_5, 2, bit(46), bit(52), 2, 46},
        reserved_case{pt::format_kind::x86_64_4, 1, bit(46), bit(52), 1, 46},
        reserved_case{pt::format_kind::x86_64_4, 3, bit(39), bit(58), 1, 39},
        reserved_case{pt::format_kind::x86_64_5, 3, bit(51), bit(52), 3, 48}),
    [](const testing::TestParamInfo<reserved_case>& i) {
      std::string n(pt::format_kind_name(i.param.kind));
      for (char& ch : n)
        if (ch == '-') ch = '_';
      return n + "_level" + std::to_string(i.param.level) + "_leaf" +
             std::to_string(i.param.leaf_level) + "_width" + std::to_string(i.param.address_width) +
             "_" + std::to_string(i.index);
    });

// VT-d non-leaf entries carry R|W and no X (as Linux and Xen write them); the walk's
// permission AND still lets a leaf's X through, so an executable leaf stays executable.
TEST(IommuVtdNonLeaf, NoXInTablesAndTheLeafStillDecidesExec) {
  fixture f;
  const unsigned u = f.sys.add_unit(zero_latency_unit());
  domain& d = f.add_domain(1, pt::domain_config{}, pt::format_kind::vtd_ss_4);
  ASSERT_TRUE(f.sys.attach(5, u, d, 9).ok());
  pt::gather g;
  f.map(d, page, 0x7000'0000, k4k, g, pt::perm_read | pt::perm_exec);
  f.map(d, page + k4k, 0x7000'1000, k4k, g, pt::perm_read);
  for (unsigned l = 2; l <= 4; ++l) {
    const std::uint64_t pte = entry_at(f, f.table_of(d), page, l).load();
    EXPECT_EQ(pte & 0b111, 0b011u) << "level " << l << ": R and W set, X clear";
  }
  translate_result r = f.sys.translate(5, page, pt::perm_read | pt::perm_exec);
  EXPECT_EQ(r.result, outcome::ok);
  EXPECT_EQ(r.perms, pt::perm_read | pt::perm_exec);
  r = f.sys.translate(5, page + k4k, pt::perm_read | pt::perm_exec);
  EXPECT_EQ(r.result, outcome::fault_permission);
  EXPECT_TRUE(f.sys.flush_sync(d, inv_range::all(), big_timeout).ok());
  f.teardown();
}

// The formats' own entries never set a reserved bit: every entry a table writes for maps,
// superpages and splits decodes without one (checked on every level of every format).
TEST(IommuReservedBits, WellFormedEntriesOfEveryFormatPass) {
  for (auto kind : {pt::format_kind::vtd_ss_4, pt::format_kind::vtd_ss_5, pt::format_kind::x86_64_4,
                    pt::format_kind::x86_64_5, pt::format_kind::amd_v1_4}) {
    SCOPED_TRACE(std::string(pt::format_kind_name(kind)));
    const pt::format_desc& fmt = pt::describe(kind);
    for (unsigned l = 1; l <= fmt.levels; ++l) {
      EXPECT_EQ(fmt.reserved_bits(fmt.make_table(0x1234'5000, l), l), 0u) << "table, level " << l;
      if ((fmt.leaf_levels & (1u << l)) != 0) {
        for (std::uint8_t perms : {std::uint8_t{pt::perm_read}, std::uint8_t{pt::perm_rw}})
          EXPECT_EQ(fmt.reserved_bits(fmt.make_leaf(0x4000'0000, l, perms), l), 0u)
              << "leaf, level " << l;
      }
    }
  }
}

}  // namespace
}  // namespace ptreclaim::iommu::test
