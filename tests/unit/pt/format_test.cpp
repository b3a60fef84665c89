// Encode/decode round trips of every format's entries, bit positions checked against the
// specification layouts, and the run-time format names.
#include <gtest/gtest.h>

#include "ptreclaim/base/prng.hpp"
#include "ptreclaim/mem/frame_pool.hpp"
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

// Linux and Xen write R|W only in VT-d non-leaf entries (X is for leaves, and only with SLEE).
// A non-leaf X never narrows the path: decode reports exec on a table entry either way.
TEST(PtFormat, VtdNonLeafEntriesAreReadWriteWithoutX) {
  for (unsigned level = 2; level <= 5; ++level) {
    const std::uint64_t pte = fmt::vtd_ss_5::make_table(0x7000, level);
    EXPECT_NE(pte & fmt::vtd_ss_5::r_bit, 0u) << "level " << level;
    EXPECT_NE(pte & fmt::vtd_ss_5::w_bit, 0u) << "level " << level;
    EXPECT_EQ(pte & fmt::vtd_ss_5::x_bit, 0u) << "level " << level;
    EXPECT_EQ(pte, 0x7003u);
    EXPECT_EQ(fmt::vtd_ss_5::decode(pte, level).perms, perm_rw | perm_exec);
  }
  EXPECT_EQ(fmt::vtd_ss_4::make_table(0x7000, 4), 0x7003u);
  EXPECT_EQ(fmt::vtd_ss_4::decode(fmt::vtd_ss_4::make_leaf(0x7000, 1, perm_read), 1).perms,
            perm_read)
      << "a leaf without X is not executable";
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
  // Markers sit in the ignored bits 4:1 and 8:7 (value bits 0..3 -> 1..4, 4..5 -> 7..8).
  EXPECT_EQ(F::sw_set(0, 0x3f), std::uint64_t{0x19e});
  EXPECT_EQ(F::sw_set(0, 0x10), std::uint64_t{1} << 7);
  EXPECT_EQ(F::sw_get(0x19e | F::make_leaf(0x5000, 1, perm_rw)), 0x3fu);
  EXPECT_EQ(F::sw_set(~std::uint64_t{0}, 0), ~std::uint64_t{0x19e});
  EXPECT_GE(F::sw_bits, 5u) << "the table's markers need 5 bits";
  EXPECT_EQ(F::make_table(0x3000, 4), 0x3000u | 1u | (3u << 9) | (std::uint64_t{3} << 61));
  EXPECT_EQ(F::make_leaf(0x200000, 2, perm_write), 0x200001u | (std::uint64_t{1} << 62));
  EXPECT_EQ(F::decode(F::make_table(0x3000, 3), 3).kind, entry_kind::table);
  EXPECT_EQ(F::decode(0x3001u | (7u << 9), 2).kind, entry_kind::none) << "NextLevel 7 unused";
  EXPECT_EQ(F::decode(0x3001u | (1u << 9), 3).kind, entry_kind::none) << "skipped level unused";
  EXPECT_FALSE(F::valid_perms(perm_exec));
}

// Walks every table reachable from t's root; calls check(entry word, level) on each entry.
template <class F, class Check>
void walk_entries(const mem::frame_pool& pool, mem::frame_id t, unsigned level, Check& check) {
  const auto* w = pool.words(t);
  for (unsigned i = 0; i < 512; ++i) {
    const std::uint64_t v = w[i].load(std::memory_order_relaxed);
    check(v, level);
    const decoded_entry d = F::decode(v, level);
    if (d.kind == entry_kind::table)
      walk_entries<F>(pool, mem::frame_id::from_phys(d.addr), level - 1, check);
  }
}

// A real AMD IOMMU faults on a reserved bit: random map/unmap with coalescing and splitting
// must never leave one set in any entry of any table (the markers once lived in 58:52).
TEST(PtFormat, AmdEntriesNeverSetReservedBits) {
  using F = fmt::amd_v1_4;
  constexpr std::uint64_t k4k = 4096, k2m = 2ull << 20, k1g = 1ull << 30;
  const std::uint64_t seed = 0x5eed'a3d1;
  SCOPED_TRACE("seed " + std::to_string(seed));
  prng rng(seed);
  mem::frame_pool pool(mem::pool_config{.capacity_frames = 4096});
  auto made = make_table(format_kind::amd_v1_4, domain_config{}, pool);
  ASSERT_TRUE(made.ok());
  table& t = **made;
  // Identity-plus-1G phys keeps neighbouring pages contiguous, so tables do coalesce.
  const auto phys = [](std::uint64_t iova) { return iova + k1g; };
  std::uint64_t marked_entries = 0;
  unsigned bad = 0;
  auto check = [&](std::uint64_t v, unsigned level) {
    if (F::sw_get(v) != 0) ++marked_entries;
    // PTE: 58:52 reserved; PDE: 60:52 (U and FC do not exist in a PDE).
    const bool pde = F::decode(v, level).kind == entry_kind::table;
    const std::uint64_t reserved = pde ? bit_range(52, 60) : F::reserved_mask;
    if ((v & reserved) != 0 && bad++ < 5)
      ADD_FAILURE() << "reserved bit set: level " << level << " entry 0x" << std::hex << v;
  };
  gather g;
  for (unsigned op = 0; op < 400 && bad == 0; ++op) {
    const std::uint64_t region = 2 * k1g + rng.below(4) * k2m;  // a few 2M regions of one 1G
    switch (rng.below(4)) {
      case 0: {  // fill a whole 2M region page by page: coalesces into a 2M leaf
        for (std::uint64_t a = region; a < region + k2m; a += k4k)
          (void)t.map(a, phys(a), k4k, perm_rw, g);
        break;
      }
      case 1: {  // a random run, 4K-granular
        const std::uint64_t a = region + rng.below(512) * k4k;
        const std::uint64_t n = 1 + rng.below(64);
        (void)t.map(a, phys(a), n * k4k, rng.chance(1, 2) ? perm_rw : perm_read, g);
        break;
      }
      case 2:  // unmap a random run (splits superpages)
        (void)t.unmap(region + rng.below(512) * k4k, (1 + rng.below(128)) * k4k, g);
        break;
      default:  // a whole 1G window: 1G leaves or releases
        if (rng.chance(1, 2))
          (void)t.map(4 * k1g, phys(4 * k1g), k1g, perm_rw, g);
        else
          (void)t.unmap(4 * k1g + rng.below(4) * k2m, k2m, g);
        break;
    }
    walk_entries<F>(pool, t.root(), F::levels, check);
    ASSERT_TRUE(t.check_invariants().ok())
        << "op " << op << ": " << t.check_invariants().to_string();
    for (auto f : g.released())
      ASSERT_TRUE(pool.free(f, "test").ok());
    g.clear();
  }
  EXPECT_EQ(bad, 0u);
  EXPECT_GT(marked_entries, 0u) << "the walk never saw a marker: the test checks nothing";
  EXPECT_GT(t.stats().coalesced, 0u);
  EXPECT_GT(t.stats().split, 0u);
  t.destroy(g);
  for (auto f : g.released())
    ASSERT_TRUE(pool.free(f, "test").ok());
  EXPECT_TRUE(pool.leaks().empty()) << pool.leak_report();
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
