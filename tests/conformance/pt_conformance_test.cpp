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

#include <algorithm>
#include <sstream>

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
// each failure is a clean no_memory, the table stays consistent and nothing leaks, and the
// failed operation's effect on translations is exactly what table.hpp allows:
//   map    a prefix [iova, iova+k) of the range is mapped as asked (chunks are mapped in
//          ascending order and an error stops there), every other translation is as before;
//   unmap  a prefix [iova, iova+k) is unmapped, every other translation is as before; in
//          particular the superpage whose split failed still translates its whole range (its
//          page size may have shrunk if an outer split completed first).
// Before the failure, the table equals a clean reference run whose every step the interval
// oracle checked (pt_model::apply).
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
  using runs = std::vector<mapping>;
  const auto same = [](const runs& a, const runs& b) {
    return std::equal(
        a.begin(), a.end(), b.begin(), b.end(), [](const mapping& x, const mapping& y) {
          return x.iova == y.iova && x.size == y.size && x.phys == y.phys && x.perms == y.perms;
        });
  };
  for (auto mode : {concurrency_mode::locked, concurrency_mode::lock_free}) {
    // The reference: translations after each step of a clean run, checked by the oracle.
    std::vector<runs> reference{runs{}};
    {
      pt_model ref(TypeParam::kind, domain_config{.mode = mode}, 0, 32);
      for (const op_spec& o : scenario) {
        ASSERT_EQ(ref.apply(o), "");
        reference.push_back(ref.oracle_runs());
      }
      ASSERT_EQ(ref.finish(), "");
    }
    for (std::uint64_t n = 1;; ++n) {
      ASSERT_LT(n, 64u) << "the scenario never ran clean";
      pt_model m(TypeParam::kind, domain_config{.mode = mode}, 0, 32);
      m.pool().inject_alloc_failure(n);
      bool fired = false;
      for (std::size_t i = 0; i < scenario.size(); ++i) {
        const op_spec& o = scenario[i];
        const runs before = pt_model::table_runs(m.tbl());
        if (!fired) {
          ASSERT_TRUE(same(before, reference[i]))
              << "n=" << n << " step " << i << ": table " << pt_model::show(before) << "\noracle "
              << pt_model::show(reference[i]);
        }
        const auto failed_before = m.pool().stats().failed_allocations;
        gather g;
        const Status s = m.apply_to_table_only(o, g);
        const runs after = pt_model::table_runs(m.tbl());
        if (m.pool().stats().failed_allocations != failed_before) {
          fired = true;
          EXPECT_EQ(s.code(), errc::no_memory) << "n=" << n << " " << s.to_string();
          const auto r = m.resolve(o);
          const iova_t end = r.iova + r.size;
          iova_t done = r.iova;  // end of the prefix the failed op completed
          if (o.is_map) {
            for (const mapping& a : after) {  // the requested translation, run by run
              if (a.iova + a.size <= done || a.iova > done) continue;
              if (a.perms != r.perms || a.phys + (done - a.iova) != r.phys + (done - r.iova)) break;
              done = std::min(a.iova + a.size, end);
            }
          } else {
            done = end;
            for (const mapping& a : after)
              if (a.iova + a.size > r.iova && a.iova < end) {
                done = std::max(a.iova, r.iova);
                break;
              }
          }
          EXPECT_LT(done, end) << "n=" << n << " step " << i
                               << ": a failed op must leave part of its range as it was";
          runs expect = pt_model::carve(before, r.iova, done);
          if (o.is_map && done > r.iova) expect.push_back({r.iova, r.phys, done - r.iova, r.perms});
          expect = pt_model::normalize(expect);
          EXPECT_TRUE(same(after, expect))
              << "n=" << n << " step " << i << " (" << testing::describe_op(o)
              << "): after the failure " << pt_model::show(after) << "\nallowed "
              << pt_model::show(expect) << "\nbefore " << pt_model::show(before);
        } else if (!s.ok()) {
          // After an injected failure, later steps may meet what the failed one left behind.
          EXPECT_TRUE(fired) << "n=" << n << " " << s.to_string();
        }
        ASSERT_TRUE(m.tbl().check_invariants().ok())
            << "n=" << n << " " << m.tbl().check_invariants().to_string();
        ASSERT_EQ(m.drain(g), "");
        ASSERT_EQ(m.pool().stats().in_use, testing::count_reachable_tables(m.tbl(), m.pool()))
            << "n=" << n;
      }
      ASSERT_EQ(m.finish(), "") << "n=" << n;
      if (!fired) break;
    }
  }
}

// The exact leaves of a table, in IOVA order.
std::vector<mapping> leaves(const table& t) {
  std::vector<mapping> v;
  t.for_each_mapping([&](const mapping& m) { v.push_back(m); });
  return v;
}

// refuse_overmap: a superpage over a populated table is address_in_use and changes nothing:
// every leaf (page sizes included) stays, no table is released, the gather stays empty.
TYPED_TEST(PtConformance, RefuseOvermapChangesNothing) {
  constexpr std::uint64_t k4k = 4096, k2m = 2ull << 20, k1g = 1ull << 30;
  for (auto mode : {concurrency_mode::locked, concurrency_mode::lock_free}) {
    for (std::uint32_t leaf_levels : {0b110u, 0b1110u}) {
      SCOPED_TRACE("lock-free " + std::to_string(mode == concurrency_mode::lock_free) +
                   " leaf_levels " + std::to_string(leaf_levels));
      mem::frame_pool pool(mem::pool_config{.capacity_frames = 256});
      auto made = make_table(
          TypeParam::kind,
          domain_config{.mode = mode, .refuse_overmap = true, .leaf_levels = leaf_levels}, pool);
      ASSERT_TRUE(made.ok());
      table& t = **made;
      gather g;
      // A 2M region holding a few 4K pages; a 1G region holding a 4K page and a 2M leaf.
      ASSERT_TRUE(t.map(3 * k2m + 5 * k4k, 0x7000'0000, 2 * k4k, perm_read, g).ok());
      ASSERT_TRUE(t.map(2 * k1g + 7 * k4k, 0x1000, k4k, perm_read, g).ok());
      ASSERT_TRUE(t.map(2 * k1g + 9 * k2m, 5 * k1g, k2m, perm_read, g).ok());
      ASSERT_TRUE(g.empty() && g.released().empty()) << "filling empty entries owes nothing";
      const std::vector<mapping> before = leaves(t);
      const std::uint64_t tables = testing::count_reachable_tables(t, pool);
      const auto unchanged = [&](const char* what) {
        const std::vector<mapping> now = leaves(t);
        ASSERT_EQ(now.size(), before.size()) << what;
        for (std::size_t i = 0; i < now.size(); ++i) {
          EXPECT_EQ(now[i].iova, before[i].iova) << what;
          EXPECT_EQ(now[i].size, before[i].size) << what;
          EXPECT_EQ(now[i].phys, before[i].phys) << what;
          EXPECT_EQ(now[i].perms, before[i].perms) << what;
        }
        EXPECT_EQ(testing::count_reachable_tables(t, pool), tables) << what;
        EXPECT_TRUE(g.empty()) << what << ": gather range widened";
        EXPECT_TRUE(g.released().empty()) << what << ": a table was released";
        EXPECT_FALSE(g.nonleaf_changed()) << what;
        EXPECT_TRUE(t.check_invariants().ok()) << what << ": " << t.check_invariants().to_string();
      };
      EXPECT_EQ(t.map(3 * k2m, 4 * k1g, k2m, perm_rw, g).code(), errc::address_in_use);
      unchanged("2M over a leaf table");
      if (leaf_levels & 0b1000) {
        EXPECT_EQ(t.map(2 * k1g, 4 * k1g, k1g, perm_rw, g).code(), errc::address_in_use);
        unchanged("1G over a level-2 table");
      }
      t.destroy(g);
      for (auto f : g.released())
        ASSERT_TRUE(pool.free(f, "test").ok());
      EXPECT_TRUE(pool.leaks().empty()) << pool.leak_report();
    }
  }
}

// map() picks the largest page each chunk allows. Expected leaves are written out by hand
// here (not derived from a size-picking rule) and compared with the table's exact leaves and
// with lookup()'s level at every leaf's first and last byte.
TYPED_TEST(PtConformance, LargestPageSizes) {
  constexpr std::uint64_t k4k = 4096, k2m = 2ull << 20, k1g = 1ull << 30;
  constexpr std::uint64_t phys_off = 64 * k1g;  // keeps iova and phys congruent mod 1G
  struct leaf {
    iova_t iova;
    std::uint64_t size;
  };
  const auto run = [&](std::uint32_t leaf_levels, concurrency_mode mode, iova_t first, iova_t end,
                       std::uint64_t phys, const std::vector<leaf>& want) {
    SCOPED_TRACE("leaf_levels " + std::to_string(leaf_levels) + " lock-free " +
                 std::to_string(mode == concurrency_mode::lock_free) + " first 0x" + [&] {
                   std::ostringstream o;
                   o << std::hex << first << " phys 0x" << phys;
                   return o.str();
                 }());
    mem::frame_pool pool(mem::pool_config{.capacity_frames = 64});
    auto made =
        make_table(TypeParam::kind, domain_config{.mode = mode, .leaf_levels = leaf_levels}, pool);
    ASSERT_TRUE(made.ok());
    table& t = **made;
    gather g;
    ASSERT_TRUE(t.map(first, phys, end - first, perm_read, g).ok());
    const std::vector<mapping> got = leaves(t);
    ASSERT_EQ(got.size(), want.size());
    for (std::size_t i = 0; i < want.size(); ++i) {
      EXPECT_EQ(got[i].iova, want[i].iova) << "leaf " << i;
      EXPECT_EQ(got[i].size, want[i].size) << "leaf " << i << " at 0x" << std::hex << got[i].iova;
      EXPECT_EQ(got[i].phys, phys + (want[i].iova - first)) << "leaf " << i;
      const unsigned level = want[i].size == k4k ? 1 : want[i].size == k2m ? 2 : 3;
      for (iova_t at : {want[i].iova, want[i].iova + want[i].size - 1}) {
        auto tr = t.lookup(at);
        ASSERT_TRUE(tr) << std::hex << at;
        EXPECT_EQ(tr->level, level) << "lookup(0x" << std::hex << at << ")";
        EXPECT_EQ(tr->phys, phys + (at - first));
      }
    }
    t.destroy(g);
    for (auto f : g.released())
      ASSERT_TRUE(pool.free(f, "test").ok());
    EXPECT_TRUE(pool.leaks().empty()) << pool.leak_report();
  };
  for (auto mode : {concurrency_mode::locked, concurrency_mode::lock_free}) {
    // 3 pages below a 2M boundary, two 2M pages, 5 pages above.
    const iova_t a = 5 * k2m - 3 * k4k, a_end = 7 * k2m + 5 * k4k;
    const std::vector<leaf> two_m{{a, k4k},
                                  {a + k4k, k4k},
                                  {a + 2 * k4k, k4k},
                                  {5 * k2m, k2m},
                                  {6 * k2m, k2m},
                                  {7 * k2m, k4k},
                                  {7 * k2m + k4k, k4k},
                                  {7 * k2m + 2 * k4k, k4k},
                                  {7 * k2m + 3 * k4k, k4k},
                                  {7 * k2m + 4 * k4k, k4k}};
    run(0b110, mode, a, a_end, a + phys_off, two_m);
    run(0b1110, mode, a, a_end, a + phys_off, two_m);
    // 4K, 2M below a 1G boundary, one 1G page, 2M, two 4K above.
    const iova_t b = k1g - k2m - k4k, b_end = 2 * k1g + k2m + 2 * k4k;
    std::vector<leaf> one_g{{b, k4k},       {k1g - k2m, k2m},     {k1g, k1g},
                            {2 * k1g, k2m}, {2 * k1g + k2m, k4k}, {2 * k1g + k2m + k4k, k4k}};
    if (TypeParam::format::leaf_levels & 0b1000) run(0b1110, mode, b, b_end, b + phys_off, one_g);
    // Without 1G leaves the middle gigabyte is 512 2M pages.
    std::vector<leaf> no_1g{{b, k4k}, {k1g - k2m, k2m}};
    for (unsigned i = 0; i < 512; ++i)
      no_1g.push_back({k1g + i * k2m, k2m});
    no_1g.insert(no_1g.end(), {{2 * k1g, k2m}, {2 * k1g + k2m, k4k}, {2 * k1g + k2m + k4k, k4k}});
    run(0b110, mode, b, b_end, b + phys_off, no_1g);
    // phys 4K-congruent only: every page is 4K, whatever the IOVA alignment.
    std::vector<leaf> all_4k;
    for (iova_t at = 4 * k2m; at < 6 * k2m; at += k4k)
      all_4k.push_back({at, k4k});
    run(0b1110, mode, 4 * k2m, 6 * k2m, phys_off + k4k, all_4k);
  }
}

}  // namespace
}  // namespace ptreclaim::pt
