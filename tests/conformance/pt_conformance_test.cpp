// The page-table conformance suite: every format passes the same typed tests (as generic_pt's
// KUnit suite is compiled once per format). Property tests drive random map/unmap sequences
// against the interval-map oracle of pt_model.hpp with coalescing on and off and in lock-free
// mode; boundary sweeps cover every page size at every level, IOVA 0, the top of the address
// space and (5-level formats) addresses above 2^48; allocation failure is injected at every
// allocation point of a scenario in turn.
//
// Replay a rapidcheck failure with the RC_PARAMS line it prints (e.g.
// RC_PARAMS="reproduce=..." ./pt_conformance_test --gtest_filter=...).
#include <gtest/gtest.h>
#include <rapidcheck.h>

#include "conformance/pt_model.hpp"
#include "ptreclaim/pt/fmt/amd_v1.hpp"
#include "ptreclaim/pt/fmt/vtd_ss.hpp"
#include "ptreclaim/pt/fmt/x86_64.hpp"

namespace ptreclaim::pt {
namespace {

using testing::op_spec;
using testing::pt_model;

template <class F, format_kind K>
struct fmt_case {
  using format = F;
  static constexpr format_kind kind = K;
};

using all_formats = ::testing::Types<
    fmt_case<fmt::vtd_ss_4, format_kind::vtd_ss_4>, fmt_case<fmt::vtd_ss_5, format_kind::vtd_ss_5>,
    fmt_case<fmt::x86_64_4, format_kind::x86_64_4>, fmt_case<fmt::x86_64_5, format_kind::x86_64_5>,
    fmt_case<fmt::amd_v1_4, format_kind::amd_v1_4>>;

template <class C>
class PtConformance : public ::testing::Test {
 protected:
  void SetUp() override { set_expensive_checks(true); }
};
TYPED_TEST_SUITE(PtConformance, all_formats);

// Case counts: rapidcheck reads RC_PARAMS once; default it (unless the user set it) to a count
// that keeps the suite short, smaller under sanitizers.
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
constexpr const char* default_rc_params = "max_success=15";
#else
constexpr const char* default_rc_params = "max_success=30";
#endif
const bool rc_params_set = [] { return setenv("RC_PARAMS", default_rc_params, 0) == 0; }();

rc::Gen<op_spec> gen_op() {
  return rc::gen::apply(
      [](bool is_map, int unit_sel, std::uint64_t index, unsigned count, bool contig,
         std::uint64_t phys_index, unsigned perm_sel) {
        // 4K: 75%, 2M: 20%, 1G: 5%. Counts up to 600 4K pages so tables fill and coalesce.
        const unsigned unit = unit_sel < 15 ? 12 : unit_sel < 19 ? 21 : 30;
        const unsigned max_count = unit == 12 ? 600 : unit == 21 ? 3 : 1;
        return op_spec{is_map, unit, index, 1 + count % max_count, contig, phys_index, perm_sel};
      },
      rc::gen::weightedElement<bool>({{3, true}, {2, false}}), rc::gen::inRange(0, 20),
      rc::gen::inRange<std::uint64_t>(0, 4096), rc::gen::inRange(0u, 1200u),
      rc::gen::weightedElement<bool>({{4, true}, {1, false}}), rc::gen::arbitrary<std::uint64_t>(),
      rc::gen::weightedElement<unsigned>({{6, 2}, {1, 0}, {1, 1}, {1, 3}}));
}

// Runs random sequences against the oracle in one configuration.
template <class C>
void run_property(const char* name, domain_config cfg) {
  using F = typename C::format;
  const bool ok = rc::check(name, [cfg] {
    // Window: 8 MiB (collisions, 4K/2M) or 4 GiB (1G pages); base: 0, the top of the address
    // space, and above 2^48 for 5-level formats.
    // Without 1G leaves a 4 GiB window would map 2^20 4K pages per op: keep it at 8 MiB then.
    const unsigned window_lg2 = (cfg.leaf_levels & 0b1000) ? *rc::gen::element(23u, 32u) : 23u;
    std::vector<iova_t> bases{0, (iova_t{1} << F::va_bits) - (iova_t{1} << window_lg2)};
    if (F::va_bits > 48) bases.push_back(iova_t{1} << 52);
    const iova_t base = *rc::gen::elementOf(bases);
    const auto ops = *rc::gen::container<std::vector<op_spec>>(gen_op());
    pt_model m(C::kind, cfg, base, window_lg2);
    for (const op_spec& o : ops) {
      const std::string e = m.apply(o);
      RC_ASSERT_FALSE(!e.empty() && (RC_LOG() << e << "\n", true));
    }
    const std::string e = m.finish();
    RC_ASSERT(e.empty());
  });
  ASSERT_TRUE(ok) << name;
}

TYPED_TEST(PtConformance, PropertyLockedCoalescing) {
  run_property<TypeParam>("locked, coalescing", domain_config{.coalesce = true});
}
TYPED_TEST(PtConformance, PropertyLockedNoCoalescing) {
  run_property<TypeParam>("locked, no coalescing", domain_config{.coalesce = false});
}
TYPED_TEST(PtConformance, PropertyLockFree) {
  run_property<TypeParam>("lock-free", domain_config{.mode = concurrency_mode::lock_free});
}
TYPED_TEST(PtConformance, PropertyRefuseOvermap4KOnly) {
  run_property<TypeParam>("refuse overmap, 4K leaves only",
                          domain_config{.refuse_overmap = true, .leaf_levels = 0b10});
}

// Every leaf size at every level it may sit, at IOVA 0, in the middle, at the top of the address
// space and (5-level) above 2^48: map, look up first and last byte, unmap, check nothing is left.
TYPED_TEST(PtConformance, BoundarySweep) {
  using F = typename TypeParam::format;
  for (auto mode : {concurrency_mode::locked, concurrency_mode::lock_free}) {
    mem::frame_pool pool(mem::pool_config{.capacity_frames = 256});
    auto made = make_table(TypeParam::kind, domain_config{.mode = mode}, pool);
    ASSERT_TRUE(made.ok());
    auto& t = **made;
    const iova_t top = iova_t{1} << F::va_bits;
    for (unsigned level = 1; level <= 3; ++level) {
      ASSERT_TRUE(F::leaf_levels & (1u << level));
      const std::uint64_t size = std::uint64_t{1} << level_shift(level);
      std::vector<iova_t> at{0, size, top / 2, top - size, top - 2 * size};
      if (F::va_bits > 48) {
        at.push_back(iova_t{1} << 48);
        at.push_back((iova_t{1} << 56) + (iova_t{1} << 48) - size);
      }
      for (iova_t iova : at) {
        gather g;
        const std::uint64_t phys = (std::uint64_t{1} << 51) - size;  // the top of physical memory
        ASSERT_TRUE(t.map(iova, phys, size, perm_read, g).ok()) << level << " " << iova;
        for (iova_t probe : {iova, iova + size - 1}) {
          auto tr = t.lookup(probe);
          ASSERT_TRUE(tr) << "level " << level << " iova " << std::hex << probe;
          EXPECT_EQ(tr->level, level);
          EXPECT_EQ(tr->phys, phys + (probe - iova));
        }
        EXPECT_FALSE(t.lookup(iova == 0 ? size : iova - 1)) << "neighbour stays unmapped";
        EXPECT_TRUE(t.check_invariants().ok()) << t.check_invariants().to_string();
        EXPECT_EQ(t.map(iova, phys, size, perm_read, g).code(), errc::address_in_use);
        ASSERT_TRUE(t.unmap(iova, size, g).ok());
        EXPECT_FALSE(t.lookup(iova));
        EXPECT_LE(g.first(), iova);
        EXPECT_GE(g.last(), iova + size - 1);
        if (mode == concurrency_mode::locked) {
          EXPECT_EQ(t.linked_tables(), 1u) << "empty tables released";
        }
        for (auto f : g.released())
          ASSERT_TRUE(pool.free(f, "test").ok());
      }
    }
    // One past the top.
    gather g;
    EXPECT_EQ(t.map(top, 0, 4096, perm_read, g).code(), errc::out_of_range);
    EXPECT_EQ(t.unmap(top - 4096, 8192, g).code(), errc::out_of_range);
    EXPECT_FALSE(t.lookup(top));
    t.destroy(g);
    for (auto f : g.released())
      ASSERT_TRUE(pool.free(f, "test").ok());
    EXPECT_TRUE(pool.leaks().empty()) << pool.leak_report();
  }
}

// Fails the n-th allocation of a scenario for n = 1, 2, ... until the scenario runs clean:
// each failure is a clean no_memory, the table stays consistent and nothing leaks.
TYPED_TEST(PtConformance, AllocationFailureAtEveryPoint) {
  const std::vector<op_spec> scenario{
      {true, 30, 1, 1, true, 0, 2},    // a 1G leaf (no allocation below the root)
      {true, 12, 3, 600, true, 0, 2},  // 4K pages across two leaf tables: a chain, coalescing
      {false, 12, 262144 + 512 + 1, 1, true, 0, 0},  // splits the 1G leaf twice
      {true, 21, 1100, 2, false, 77, 0},             // 2M leaves elsewhere
      {false, 12, 5, 3, true, 0, 0},
      {true, 12, 5, 3, true, 0, 2},
      {false, 30, 0, 2, true, 0, 0},
  };
  for (auto mode : {concurrency_mode::locked, concurrency_mode::lock_free}) {
    for (std::uint64_t n = 1;; ++n) {
      ASSERT_LT(n, 64u) << "the scenario never ran clean";
      pt_model m(TypeParam::kind, domain_config{.mode = mode}, 0, 32);
      m.pool().inject_alloc_failure(n);
      bool fired = false;
      for (const op_spec& o : scenario) {
        const auto before = m.pool().stats().failed_allocations;
        gather g;
        const unsigned unit = o.unit_lg2;
        const iova_t iova = o.index << unit;
        const std::uint64_t size = std::uint64_t{o.count} << unit;
        Status s = o.is_map ? m.tbl().map(iova, (std::uint64_t{1} << 36) + iova, size, perm_rw, g)
                            : m.tbl().unmap(iova, size, g);
        if (m.pool().stats().failed_allocations != before) {
          fired = true;
          EXPECT_EQ(s.code(), errc::no_memory) << "n=" << n << " " << s.to_string();
        } else if (!s.ok()) {
          // After an injected failure, later steps may meet what the failed one left behind.
          EXPECT_TRUE(fired) << "n=" << n << " " << s.to_string();
        }
        ASSERT_TRUE(m.tbl().check_invariants().ok())
            << "n=" << n << " " << m.tbl().check_invariants().to_string();
        ASSERT_EQ(m.drain(g), "");
        ASSERT_EQ(m.pool().stats().in_use, m.tbl().linked_tables()) << "n=" << n;
      }
      ASSERT_EQ(m.finish(), "") << "n=" << n;
      if (!fired) break;
    }
  }
}

}  // namespace
}  // namespace ptreclaim::pt
