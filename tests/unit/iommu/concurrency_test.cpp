// Real threads: devices walk (step-wise and one-shot) while a CPU thread replaces tables,
// invalidates through the flush helper, waits, and frees. With the correct protocol no walk
// may ever read a freed frame (zero violations) - which holds only if a wait never completes
// while an earlier walk is still reading tables. Run under TSan too.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "iommu_fixture.hpp"
#include "ptreclaim/iommu/device.hpp"

namespace ptreclaim::iommu::test {
namespace {

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
constexpr unsigned rounds = 300;
#else
constexpr unsigned rounds = 3000;
#endif

TEST(IommuConcurrency, WaitNeverCompletesUnderAWalkInFlight) {
  fixture f(default_platform(), 8192);
  unit_config c = zero_latency_unit();
  const unsigned u0 = f.sys.add_unit(c);
  const unsigned u1 = f.sys.add_unit(c);
  domain& d = f.add_domain(1, pt::domain_config{.coalesce = false});
  ASSERT_TRUE(f.sys.attach(1, u0, d, 1).ok());
  ASSERT_TRUE(f.sys.attach(2, u0, d, 1).ok());
  ASSERT_TRUE(f.sys.attach(3, u1, d, 6).ok());
  pt::table& t = f.table_of(d);

  std::atomic<bool> stop{false};
  std::vector<std::thread> devs;
  std::atomic<std::uint64_t> translations{0};
  for (device_id id : {device_id{1}, device_id{2}, device_id{3}}) {
    devs.emplace_back([&, id] {
      device_config dc{.id = id,
                       .pattern = access_pattern::uniform,
                       .windows = {{0, 8 * k2m}},
                       .stepwise = id != 2,
                       .seed = 1000u + id};
      device dev(f.sys, dc);
      while (!stop.load(std::memory_order_relaxed)) {
        if (dev.step()) translations.fetch_add(1, std::memory_order_relaxed);
        std::this_thread::yield();
      }
      dev.cancel();
    });
  }

  // CPU: alternately shatter a 2M region into 4K pages (a leaf table) and overmap it with a
  // superpage (the table is released), each time unlink -> invalidate -> wait -> free.
  pt::gather g;
  prng rng(42);
  for (unsigned i = 0; i < rounds; ++i) {
    const iova_t region = rng.below(8) * k2m;
    g.clear();
    if (rng.chance(1, 2)) {
      ASSERT_TRUE(t.unmap(region, k2m, g).ok());
      for (unsigned p = 0; p < 4; ++p)
        ASSERT_TRUE(t.map(region + rng.below(512) * k4k, 0x1000, k4k, pt::perm_rw, g).ok() || true);
    } else {
      ASSERT_TRUE(t.unmap(region, k2m, g).ok());
      ASSERT_TRUE(t.map(region, 0x4000'0000, k2m, pt::perm_rw, g).ok());
    }
    if (g.empty()) continue;
    auto tk = f.sys.invalidate(d, inv_range::from(g));
    ASSERT_TRUE(tk.ok()) << tk.status().to_string();
    ASSERT_TRUE(f.sys.wait(*tk, 10'000'000'000ull).ok());
    f.free_released(g, "cpu-after-wait");
  }
  stop.store(true);
  for (auto& th : devs)
    th.join();
  EXPECT_GT(translations.load(), 0u);
  EXPECT_EQ(f.sys.violations().count(), 0u) << f.sys.violations().report();
  EXPECT_TRUE(f.sys.check_invariants().ok());
  f.teardown();
}

}  // namespace
}  // namespace ptreclaim::iommu::test
