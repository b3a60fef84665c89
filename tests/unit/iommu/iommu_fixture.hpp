// Shared setup of the IOMMU model tests: a pool, a system, one page table per domain, helpers
// that free what a gather released (as a reclaimer would, possibly too early on purpose), and
// a manual platform whose time only moves when a test (or a wait) moves it.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <vector>

#include "ptreclaim/base/platform.hpp"
#include "ptreclaim/iommu/system.hpp"
#include "ptreclaim/mem/frame_pool.hpp"
#include "ptreclaim/pt/table.hpp"

namespace ptreclaim::iommu::test {

inline constexpr std::uint64_t k4k = 4096;
inline constexpr std::uint64_t k2m = 2ull << 20;
inline constexpr std::uint64_t k1g = 1ull << 30;

// Virtual time: wait_until advances it in `tick_ns` steps (like the deterministic executor).
class manual_platform final : public platform {
 public:
  std::uint64_t now_ns() noexcept override { return now_.load(std::memory_order_relaxed); }
  unsigned current_cpu() const noexcept override { return 0; }
  unsigned cpu_count() const noexcept override { return 1; }
  bool wait_until(const std::function<bool()>& done, std::uint64_t timeout_ns) override {
    const std::uint64_t deadline = now_ns() + timeout_ns;
    while (!done()) {
      if (now_ns() >= deadline) return done();
      now_.fetch_add(tick_ns, std::memory_order_relaxed);
    }
    return true;
  }
  void set(std::uint64_t t) { now_.store(t, std::memory_order_relaxed); }
  void add(std::uint64_t d) { now_.fetch_add(d, std::memory_order_relaxed); }
  std::uint64_t tick_ns = 50;

 private:
  std::atomic<std::uint64_t> now_{1};
};

inline unit_config zero_latency_unit() {
  unit_config c;
  c.latency = latency_config::zero();
  return c;
}

struct fixture {
  explicit fixture(platform& plat = default_platform(), std::uint32_t frames = 4096,
                   const system_config& sc = {})
      : pool(mem::pool_config{.capacity_frames = frames}, plat), sys(pool, sc, plat) {
    set_expensive_checks(true);
  }
  ~fixture() { EXPECT_TRUE(sys.check_invariants().ok()) << sys.check_invariants().to_string(); }

  // A table and its domain (software id `id`).
  domain& add_domain(std::uint16_t id, pt::domain_config cfg = {},
                     pt::format_kind kind = pt::format_kind::vtd_ss_4) {
    cfg.domain = id;
    auto t = pt::make_table(kind, cfg, pool);
    PTR_ASSERT(t.ok());
    tables.push_back(std::move(*t));
    auto d = sys.create_domain({id, &pt::describe(kind), tables.back()->root(), cfg.leaf_levels});
    PTR_ASSERT(d.ok());
    return **d;
  }
  pt::table& table_of(const domain& d) {
    for (auto& t : tables)
      if (t->config().domain == d.id()) return *t;
    PTR_ASSERT(false);
    return *tables.front();
  }
  // Frees every frame the gather released (a reclaimer's free; too early unless flushed).
  void free_released(pt::gather& g, const char* path = "test-free") {
    for (auto f : g.released())
      EXPECT_TRUE(pool.free(f, path).ok());
    g.clear();
  }
  void map(domain& d, iova_t iova, std::uint64_t phys, std::uint64_t size, pt::gather& g,
           std::uint8_t perms = pt::perm_rw) {
    ASSERT_TRUE(table_of(d).map(iova, phys, size, perms, g).ok());
  }
  void unmap(domain& d, iova_t iova, std::uint64_t size, pt::gather& g) {
    ASSERT_TRUE(table_of(d).unmap(iova, size, g).ok());
  }
  // Flushes everything and tears every table down (leak check).
  void teardown() {
    for (auto& t : tables) {
      pt::gather g;
      t->destroy(g);
      domain* d = sys.find_domain(t->config().domain);
      ASSERT_TRUE(sys.flush_sync(*d, inv_range::all(), 1'000'000'000).ok());
      free_released(g, "teardown");
    }
    tables.clear();
    EXPECT_EQ(pool.leak_report(), "");
  }

  mem::frame_pool pool;
  system sys;
  std::vector<std::unique_ptr<pt::table>> tables;
};

}  // namespace ptreclaim::iommu::test
