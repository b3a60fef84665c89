// Encode/decode round trips of every format's entries, bit positions checked against the
// specification layouts, and the run-time format names.
#include <gtest/gtest.h>

#include "ptreclaim/pt/fmt/amd_v1.hpp"
#include "ptreclaim/pt/fmt/vtd_ss.hpp"
#include "ptreclaim/pt/fmt/x86_64.hpp"
#include "ptreclaim/pt/table.hpp"

namespace ptreclaim::pt {
namespace {

template <class F>
void round_trip() {
  const std::uint64_t pa =
      0x000f'ffff'ffff'f000ULL & ~std::uint64_t{0x1fffff};  // 2M aligned, 52-bit
  for (unsigned level = 1; level <= F::levels; ++level) {
    const auto t = F::decode(F::make_table(pa, level), level);
    if (level > 1) {
      EXPECT_EQ(t.kind, entry_kind::table) << F::name << " level " << level;
      EXPECT_EQ(t.addr, pa);
    }
    if (!(F::leaf_levels & (1u << level))) continue;
    for (std::uint8_t p : {std::uint8_t{perm_read}, std::uint8_t{perm_rw},
                           std::uint8_t{perm_read | perm_exec}, std::uint8_t{perm_write}}) {
      if (!F::valid_perms(p)) continue;
      const auto pte = F::make_leaf(pa, level, p);
      const auto d = F::decode(pte, level);
      EXPECT_EQ(d.kind, entry_kind::leaf) << F::name << " level " << level;
      EXPECT_EQ(d.addr, pa);
      EXPECT_EQ(d.perms & p, p);
      EXPECT_EQ(d.perms & ~p & F::perm_mask & ~perm_exec, 0) << "no write/read added";
      // Markers never change what hardware sees.
      const auto marked = F::sw_set(pte, (std::uint64_t{1} << F::sw_bits) - 1);
      EXPECT_EQ(F::sw_get(marked), (std::uint64_t{1} << F::sw_bits) - 1);
      const auto dm = F::decode(marked, level);
      EXPECT_EQ(dm.kind, d.kind);
      EXPECT_EQ(dm.addr, d.addr);
      EXPECT_EQ(dm.perms, d.perms);
      EXPECT_EQ(F::sw_set(marked, 0), pte);
    }
  }
  EXPECT_EQ(F::decode(0, 1).kind, entry_kind::none);
  EXPECT_EQ(F::decode(F::sw_set(0, 5), 2).kind, entry_kind::none)
      << "markers alone are not present";
  const auto& d = F::desc();
  EXPECT_EQ(d.levels, F::levels);
  EXPECT_EQ(d.decode(F::make_leaf(pa, 1, perm_read), 1).addr, pa);
}

TEST(PtFormat, RoundTrips) {
  round_trip<fmt::vtd_ss_4>();
  round_trip<fmt::vtd_ss_5>();
  round_trip<fmt::x86_64_4>();
  round_trip<fmt::x86_64_5>();
  round_trip<fmt::amd_v1_4>();
}

TEST(PtFormat, VtdBits) {
  using F = fmt::vtd_ss_4;
  EXPECT_EQ(F::make_leaf(0x1000, 1, perm_read), 0x1001u);
  EXPECT_EQ(F::make_leaf(0x1000, 1, perm_write), 0x1002u);
  EXPECT_EQ(F::make_leaf(0x200000, 2, perm_read | perm_exec), 0x200085u);  // R, X, PS
  EXPECT_EQ(F::decode(0x1000, 1).kind, entry_kind::none) << "no present bit: R|W==0";
  EXPECT_EQ(F::decode(0x1080 | 1, 4).kind, entry_kind::table) << "PS is reserved at level 4";
  EXPECT_EQ(F::decode(0x1080 | 1, 3).kind, entry_kind::leaf);
  EXPECT_EQ(F::sw_set(0, 1), std::uint64_t{1} << 52);
  EXPECT_EQ(F::sw_bits, 10u);
}

TEST(PtFormat, X86Bits) {
  using F = fmt::x86_64_4;
  const auto pte = F::make_leaf(0x5000, 1, perm_rw);
  EXPECT_EQ(pte & 1, 1u);
  EXPECT_EQ(pte & 2, 2u);
  EXPECT_NE(pte >> 63, 0u) << "no exec: XD set";
  EXPECT_EQ(F::decode(F::make_leaf(0x5000, 1, perm_read | perm_exec), 1).perms,
            perm_read | perm_exec);
  EXPECT_FALSE(F::valid_perms(perm_write)) << "x86 leaves are always readable";
  EXPECT_EQ(F::sw_set(0, 0x7f), std::uint64_t{0x7f} << 52);
}

TEST(PtFormat, AmdBits) {
  using F = fmt::amd_v1_4;
  EXPECT_EQ(F::make_table(0x3000, 4), 0x3000u | 1u | (3u << 9) | (std::uint64_t{3} << 61));
  EXPECT_EQ(F::make_leaf(0x200000, 2, perm_write), 0x200001u | (std::uint64_t{1} << 62));
  EXPECT_EQ(F::decode(F::make_table(0x3000, 3), 3).kind, entry_kind::table);
  EXPECT_EQ(F::decode(0x3001u | (7u << 9), 2).kind, entry_kind::none) << "NextLevel 7 unused";
  EXPECT_EQ(F::decode(0x3001u | (1u << 9), 3).kind, entry_kind::none) << "skipped level unused";
  EXPECT_FALSE(F::valid_perms(perm_exec));
}

TEST(PtFormat, Names) {
  for (auto k : {format_kind::vtd_ss_4, format_kind::vtd_ss_5, format_kind::x86_64_4,
                 format_kind::x86_64_5, format_kind::amd_v1_4}) {
    auto parsed = parse_format_kind(format_kind_name(k));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, k);
    EXPECT_EQ(std::string_view(describe(k).name), format_kind_name(k));
  }
  EXPECT_EQ(describe(format_kind::vtd_ss_5).va_bits, 57u);
  auto bad = parse_format_kind("vtd-ss-6");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), errc::invalid_argument);
}

}  // namespace
}  // namespace ptreclaim::pt
