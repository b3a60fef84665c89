// The invalidation queue: latency, the wait rule (walks in flight), the bounded ring, AMD-Vi
// commands, flush epochs, and the caches' own replacement and invariants.
#include <gtest/gtest.h>
#include <rapidcheck.h>

#include "iommu_fixture.hpp"
#include "ptreclaim/base/bits.hpp"

namespace ptreclaim::iommu::test {
namespace {

constexpr std::uint64_t big_timeout = 1'000'000'000;

TEST(IommuQueue, DescriptorsTakeTheirConfiguredTime) {
  manual_platform plat;
  fixture f(plat);
  unit_config c;  // default latencies: PSI 200 ns, wait 800 ns
  const unsigned u = f.sys.add_unit(c);
  domain& d = f.add_domain(1);
  ASSERT_TRUE(f.sys.attach(1, u, d, 1).ok());
  plat.set(1000);
  auto t = f.sys.invalidate(d, {0, k4k - 1, true});
  ASSERT_TRUE(t.ok());
  EXPECT_FALSE(f.sys.poll(*t));
  plat.set(1000 + 200 + 799);
  EXPECT_FALSE(f.sys.poll(*t));
  EXPECT_EQ(f.sys.get_unit(u).processed(), 1u) << "the PSI is done, the wait not yet";
  plat.set(1000 + 200 + 800);
  EXPECT_TRUE(f.sys.poll(*t));
  EXPECT_EQ(d.flush_completed(), 1u);
  // wait() advances virtual time through the platform.
  auto t2 = f.sys.invalidate(d, inv_range::all());
  ASSERT_TRUE(t2.ok());
  EXPECT_TRUE(f.sys.wait(*t2, big_timeout).ok());
  EXPECT_EQ(d.flush_completed(), 2u);
  EXPECT_EQ(d.flush_completed_full(), 2u);
  f.teardown();
}

// The wait rule, step by step: a wait cannot complete while a walk that began before the
// invalidation it covers is still reading tables.
// One 4K page mapped at 2M, and a step-wise walk of it stopped after the level-3 entry: it holds
// a pointer to the L2 table that a 1G map over the range is about to retire.
struct walk_in_flight {
  explicit walk_in_flight(const unit_config& c)
      : u(f.sys.add_unit(c)), d(f.add_domain(1, pt::domain_config{.coalesce = false})) {}
  // Attaches, maps and walks up to the L2 table; false (with a test failure) if a step fails.
  [[nodiscard]] bool start() {
    EXPECT_TRUE(f.sys.attach(1, u, d, 1).ok());
    f.map(d, k2m, 0x1000, k4k, g);
    unit& un = f.sys.get_unit(u);
    const bool done = un.begin(w, 1, k2m, pt::perm_read) || un.step(w) /* the root entry */ ||
                      un.step(w) /* the level-3 entry */;
    EXPECT_FALSE(done) << "the walk finished before reaching the L2 table";
    return !done;
  }
  fixture f;
  unsigned u;
  domain& d;
  pt::gather g;
  walk w;
};

TEST(IommuQueue, WaitBlocksOnEarlierWalkInFlight) {
  walk_in_flight s(zero_latency_unit());
  ASSERT_TRUE(s.start());
  fixture& f = s.f;
  domain& d = s.d;
  pt::gather& g = s.g;
  walk& w = s.w;
  unit& un = f.sys.get_unit(s.u);
  EXPECT_EQ(w.next_level(), 2u);

  f.map(d, 0, 0x4000'0000, k1g, g);  // the 1G leaf replaces the L2 table: L2 and L1 retired
  ASSERT_FALSE(g.released().empty());
  auto t = f.sys.invalidate(d, inv_range::from(g));
  ASSERT_TRUE(t.ok());
  for (int i = 0; i < 10; ++i)
    EXPECT_FALSE(f.sys.poll(*t)) << "the walk is still in flight";
  EXPECT_EQ(un.stats().wait_stalls, 1u);
  EXPECT_EQ(d.flush_completed(), 0u);
  EXPECT_EQ(un.processed(), t->parts[0].seq) << "the PSI took effect, the wait did not";
  EXPECT_TRUE(un.check_invariants().ok());

  // The walk finishes through the retired (not yet freed) tables: stale, but no violation.
  while (!un.step(w)) {
  }
  EXPECT_EQ(w.result().result, outcome::ok);
  EXPECT_EQ(w.result().phys, 0x1000u) << "the old translation, read from the retired tables";
  EXPECT_EQ(un.stats().fills_dropped, 1u) << "an invalidation took effect during the walk";
  EXPECT_TRUE(f.sys.poll(*t));
  EXPECT_EQ(d.flush_completed(), 1u);
  f.free_released(g);
  const auto r = f.sys.translate(1, k2m, pt::perm_read);
  EXPECT_EQ(r.phys, 0x4000'0000u + k2m);
  EXPECT_EQ(f.sys.violations().count(), 0u) << f.sys.violations().report();
  EXPECT_TRUE(un.check_coherence(d, 1).ok());
  f.teardown();
}

TEST(IommuQueue, WalkStartedAfterTheInvalidationDoesNotBlock) {
  manual_platform plat;
  fixture f(plat);
  unit_config c;
  c.latency = latency_config::zero();
  c.latency.inv_page_ns = 100;
  c.latency.inv_wait_ns = 100;
  const unsigned u = f.sys.add_unit(c);
  domain& d = f.add_domain(1);
  ASSERT_TRUE(f.sys.attach(1, u, d, 1).ok());
  pt::gather g;
  f.map(d, 0, 0x1000, k4k, g);
  unit& un = f.sys.get_unit(u);
  plat.set(1000);
  auto t = f.sys.invalidate(d, {k2m, 2 * k2m - 1, true});
  ASSERT_TRUE(t.ok());
  plat.set(1150);  // the PSI took effect at 1100
  walk w;
  ASSERT_FALSE(un.begin(w, 1, 0, pt::perm_read));
  plat.set(1200);
  EXPECT_TRUE(f.sys.poll(*t)) << "the walk began after the invalidation took effect";
  while (!un.step(w)) {
  }
  EXPECT_EQ(un.stats().wait_stalls, 0u);
  f.teardown();
}

TEST(IommuQueue, CancelledWalkReleasesTheWait) {
  fixture f;
  const unsigned u = f.sys.add_unit(zero_latency_unit());
  domain& d = f.add_domain(1);
  ASSERT_TRUE(f.sys.attach(1, u, d, 1).ok());
  unit& un = f.sys.get_unit(u);
  walk w;
  ASSERT_FALSE(un.begin(w, 1, 0, pt::perm_read));
  auto t = f.sys.invalidate(d, inv_range::all());
  ASSERT_TRUE(t.ok());
  EXPECT_FALSE(f.sys.poll(*t));
  un.cancel(w);
  EXPECT_EQ(w.phase(), walk_phase::idle);
  EXPECT_TRUE(f.sys.poll(*t));
  f.teardown();
}

TEST(IommuQueue, FullRingIsAnOrdinaryCondition) {
  manual_platform plat;
  fixture f(plat);
  unit_config c;
  c.queue_entries = 256;
  const unsigned u = f.sys.add_unit(c);
  domain& d = f.add_domain(1);
  ASSERT_TRUE(f.sys.attach(1, u, d, 1).ok());
  unit& un = f.sys.get_unit(u);
  for (unsigned i = 0; i < 256; ++i)
    ASSERT_TRUE(un.submit(inv_descriptor::domain(1)).ok());
  EXPECT_EQ(un.submit(inv_descriptor::domain(1)).status().code(), errc::queue_full);
  const std::array<inv_descriptor, 2> pair{inv_descriptor::domain(1), inv_descriptor::wait()};
  plat.add(c.latency.inv_domain_ns);  // one slot frees
  EXPECT_EQ(un.submit(pair).status().code(), errc::queue_full) << "all or nothing";
  EXPECT_TRUE(un.check_invariants().ok());
  // The flush helper advances the hardware (virtual time) until there is room.
  auto t = f.sys.invalidate(d, inv_range::all());
  ASSERT_TRUE(t.ok()) << t.status().to_string();
  EXPECT_TRUE(f.sys.wait(*t, big_timeout).ok());
  EXPECT_GE(un.stats().queue_full, 2u);
  f.teardown();
}

TEST(IommuQueue, WaitWritesItsStatus) {
  fixture f;
  const unsigned u = f.sys.add_unit(zero_latency_unit());
  std::atomic<std::uint64_t> status{0};
  auto s = f.sys.get_unit(u).submit(inv_descriptor::wait(&status, 77));
  ASSERT_TRUE(s.ok());
  EXPECT_TRUE(f.sys.get_unit(u).done(*s));
  EXPECT_EQ(status.load(std::memory_order_acquire), 77u);
  std::atomic<std::uint64_t> amd_store{0};
  const std::array<amd_command, 1> c{amd_command::completion_wait(&amd_store, 5)};
  ASSERT_TRUE(f.sys.get_unit(u).submit_amd(c).ok());
  EXPECT_EQ(amd_store.load(std::memory_order_acquire), 5u);
}

TEST(IommuQueue, FlushHelperChoosesPsiOrDsiAndTheHint) {
  fixture f;
  unit_config small = zero_latency_unit();
  small.max_am = 4;
  const unsigned u0 = f.sys.add_unit(zero_latency_unit());
  const unsigned u1 = f.sys.add_unit(small);
  domain& d = f.add_domain(1);
  ASSERT_TRUE(f.sys.attach(1, u0, d, 1).ok());
  ASSERT_TRUE(f.sys.attach(2, u1, d, 2).ok());
  auto count = [&](unsigned u, inv_type t) {
    return f.sys.get_unit(u).stats().descriptors[static_cast<int>(t)];
  };
  // 3 pages crossing a 4-page boundary: AM = 3 fits both units.
  auto t = f.sys.invalidate(d, {3 * k4k, 5 * k4k + 10, false});
  ASSERT_TRUE(t.ok());
  EXPECT_FALSE(t->full);
  EXPECT_EQ(count(u0, inv_type::page), 1u);
  EXPECT_EQ(count(u1, inv_type::page), 1u);
  // 2 MiB: AM = 9 beyond unit 1's max_am 4: DSI there.
  t = f.sys.invalidate(d, {k2m, 2 * k2m - 1, true});
  ASSERT_TRUE(t.ok());
  EXPECT_FALSE(t->full);
  EXPECT_EQ(count(u0, inv_type::page), 2u);
  EXPECT_EQ(count(u1, inv_type::domain), 1u);
  t = f.sys.invalidate(d, inv_range::all());
  ASSERT_TRUE(t.ok());
  EXPECT_TRUE(t->full);
  EXPECT_EQ(count(u0, inv_type::domain), 1u);
  EXPECT_TRUE(f.sys.poll(*t));
  EXPECT_EQ(d.flush_started(), 3u);
  EXPECT_EQ(d.flush_completed(), 3u);
  EXPECT_EQ(d.flush_completed_full(), 3u);
  f.teardown();
}

// The exact descriptors the flush helper submits on every unit of the domain: AM is the smallest
// naturally aligned block covering the range (or a DSI beyond the unit's max_am), IH = 1 only for
// leaf-only changes, each followed by a wait. Default latencies keep them queued for inspection.
TEST(IommuQueue, FlushHelperDescriptorsExactly) {
  manual_platform plat;
  fixture f(plat);
  unit_config small;
  small.max_am = 4;
  const unsigned u0 = f.sys.add_unit(unit_config{});  // max_am 18
  const unsigned u1 = f.sys.add_unit(small);
  domain& d = f.add_domain(1, pt::domain_config{.coalesce = false});
  ASSERT_TRUE(f.sys.attach(1, u0, d, 1).ok());
  ASSERT_TRUE(f.sys.attach(2, u1, d, 2).ok());
  struct want {
    inv_type type;
    iova_t addr;
    unsigned am;
    bool ih;
  };
  // Invalidates `range`, checks both units' queued descriptors, completes and frees.
  auto check = [&](const char* what, const inv_range& range, want w0, want w1, bool full,
                   pt::gather* g) {
    SCOPED_TRACE(what);
    auto t = f.sys.invalidate(d, range);
    ASSERT_TRUE(t.ok()) << t.status().to_string();
    EXPECT_EQ(t->count, 2u);
    EXPECT_EQ(t->full, full);
    const std::array<std::pair<unsigned, want>, 2> per_unit{{{u0, w0}, {u1, w1}}};
    for (const auto& [u, w] : per_unit) {
      const std::vector<inv_descriptor> q = f.sys.get_unit(u).queued();
      ASSERT_EQ(q.size(), 2u) << "unit " << u;
      EXPECT_EQ(q[0].type, w.type) << "unit " << u << ": " << q[0].describe();
      EXPECT_EQ(q[0].did, u == u0 ? 1u : 2u) << q[0].describe();
      if (w.type == inv_type::page) {
        EXPECT_EQ(q[0].addr, w.addr) << "unit " << u << ": " << q[0].describe();
        EXPECT_EQ(unsigned{q[0].am}, w.am) << "unit " << u << ": " << q[0].describe();
        EXPECT_EQ(q[0].ih, w.ih) << "unit " << u << ": " << q[0].describe();
        EXPECT_LE(q[0].first(), range.first);
        EXPECT_GE(q[0].last(), range.last);
      }
      EXPECT_EQ(q[1].type, inv_type::wait);
    }
    EXPECT_TRUE(f.sys.wait(*t, big_timeout).ok());
    if (g != nullptr) f.free_released(*g);
  };
  const iova_t base = k1g;
  pt::gather g;
  f.map(d, base, 0x10'0000, 16 * k4k, g);
  g.clear();

  f.unmap(d, base + 5 * k4k, k4k, g);
  ASSERT_FALSE(g.nonleaf_changed());
  const want page5{inv_type::page, base + 5 * k4k, 0, true};
  check("4K, leaf only", inv_range::from(g), page5, page5, false, &g);

  f.unmap(d, base + 3 * k4k, 2 * k4k, g);  // pages 3, 4
  f.unmap(d, base + 6 * k4k, k4k, g);      // and 6: a 4-page range crossing an 8-page block
  ASSERT_EQ(g.first(), base + 3 * k4k);
  ASSERT_FALSE(g.nonleaf_changed());
  const want block8{inv_type::page, base, 3, true};
  check("unaligned 3-page range", inv_range::from(g), block8, block8, false, &g);

  f.map(d, base, 0x4000'0000, k2m, g);  // a superpage over the leaf table: a non-leaf change
  ASSERT_EQ(g.released().size(), 1u);
  ASSERT_TRUE(g.nonleaf_changed());
  check("2M superpage, non-leaf", inv_range::from(g), {inv_type::page, base, 9, false},
        {inv_type::domain, 0, 0, false}, false, &g);

  check("2M leaf-only range", {base, base + k2m - 1, false}, {inv_type::page, base, 9, true},
        {inv_type::domain, 0, 0, false}, false, nullptr);
  check("2G: beyond max_am 18", {0, 2 * k1g - 1, false}, {inv_type::domain, 0, 0, false},
        {inv_type::domain, 0, 0, false}, true, nullptr);
  f.teardown();
}

// max_am = 52 is allowed: the whole-space PSI (AM 52) must cover all of it, not one page.
TEST(IommuQueue, MaxAm52WholeSpaceFlushCoversEverything) {
  manual_platform plat;
  fixture f(plat);
  unit_config c;
  c.max_am = 52;
  const unsigned u = f.sys.add_unit(c);
  domain& d = f.add_domain(1, pt::domain_config{.coalesce = false});
  ASSERT_TRUE(f.sys.attach(1, u, d, 1).ok());
  unit& un = f.sys.get_unit(u);
  pt::gather g;
  const std::array<iova_t, 3> pages{0, 5 * k1g + 7 * k4k, 300 * k1g};
  auto fill = [&] {
    for (iova_t p : pages)
      EXPECT_EQ(f.sys.translate(1, p, pt::perm_read).result, outcome::ok);
    EXPECT_EQ(un.iotlb_snapshot().size(), pages.size());
    EXPECT_FALSE(un.psc_snapshot().empty());
  };
  for (iova_t p : pages)
    f.map(d, p, 0x1000, k4k, g);
  g.clear();
  fill();

  auto t = f.sys.invalidate(d, inv_range::all());
  ASSERT_TRUE(t.ok());
  std::vector<inv_descriptor> q = un.queued();
  ASSERT_EQ(q.size(), 2u);
  EXPECT_EQ(q[0].type, inv_type::page);
  EXPECT_EQ(unsigned{q[0].am}, 52u);
  EXPECT_EQ(q[0].addr, 0u);
  EXPECT_FALSE(q[0].ih);
  EXPECT_EQ(q[0].last(), ~iova_t{0});
  EXPECT_TRUE(t->full);
  EXPECT_TRUE(f.sys.wait(*t, big_timeout).ok());
  EXPECT_TRUE(un.iotlb_snapshot().empty());
  EXPECT_TRUE(un.psc_snapshot().empty());
  EXPECT_EQ(d.flush_completed_full(), 1u);

  // A whole-space gather: everything unmapped (tables released), widened to all of the space
  // as a teardown does. AM 52 again; and the format's 48 bits alone (AM 36) are full too.
  for (const bool whole : {true, false}) {
    SCOPED_TRACE(whole ? "64-bit space" : "48-bit space");
    if (!whole) {
      for (iova_t p : pages)
        f.map(d, p, 0x1000, k4k, g);
      g.clear();
    }
    fill();
    f.unmap(d, 0, iova_t{1} << 48, g);
    ASSERT_FALSE(g.released().empty());
    g.add_range(0, whole ? ~iova_t{0} : (iova_t{1} << 48) - 1);
    t = f.sys.invalidate(d, inv_range::from(g));
    ASSERT_TRUE(t.ok());
    q = un.queued();
    ASSERT_EQ(q.size(), 2u);
    EXPECT_EQ(q[0].type, inv_type::page);
    EXPECT_EQ(unsigned{q[0].am}, whole ? 52u : 36u) << q[0].describe();
    EXPECT_EQ(q[0].addr, 0u);
    EXPECT_FALSE(q[0].ih);
    EXPECT_TRUE(t->full);
    EXPECT_TRUE(f.sys.wait(*t, big_timeout).ok());
    EXPECT_TRUE(un.iotlb_snapshot().empty());
    EXPECT_TRUE(un.psc_snapshot().empty());
    EXPECT_EQ(d.flush_completed_full(), t->epoch);
    f.free_released(g);
  }

  // Submitted directly: AM 52 is accepted only at address 0.
  EXPECT_TRUE(un.submit(inv_descriptor::page(1, 0, 52, false)).ok());
  EXPECT_EQ(un.submit(inv_descriptor::page(1, k4k, 52, false)).status().code(),
            errc::invalid_argument);
  EXPECT_EQ(un.submit(inv_descriptor::page(1, 0, 53, false)).status().code(),
            errc::invalid_argument);
  f.teardown();
}

// A unit whose queue stays full past the timeout: invalidate() fails cleanly after submitting to
// the other unit; the failed epoch is never full, so no retired frame may be freed on it.
TEST(IommuQueue, QueueFullPastTheTimeoutFailsTheEpoch) {
  manual_platform plat;
  fixture f(plat, 4096, system_config{.queue_full_timeout_ns = 10'000});
  unit_config slow;
  slow.latency.inv_domain_ns = 1'000'000;  // 256 of them take far longer than the timeout
  const unsigned u0 = f.sys.add_unit(unit_config{});
  const unsigned u1 = f.sys.add_unit(slow);
  domain& d = f.add_domain(1);
  ASSERT_TRUE(f.sys.attach(1, u0, d, 1).ok());
  ASSERT_TRUE(f.sys.attach(2, u1, d, 1).ok());
  unit& un1 = f.sys.get_unit(u1);
  for (unsigned i = 0; i < slow.queue_entries; ++i)
    ASSERT_TRUE(un1.submit(inv_descriptor::domain(7)).ok());
  const std::uint64_t stamp = d.flush_stamp();

  const std::uint64_t before = plat.now_ns();
  auto t = f.sys.invalidate(d, inv_range::all());
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), errc::queue_full);
  EXPECT_NE(t.status().to_string().find("unit 1 queue stayed full"), std::string::npos)
      << t.status().to_string();
  EXPECT_GE(plat.now_ns() - before, 10'000u) << "it retried until the timeout";
  EXPECT_EQ(d.flush_started(), 1u);
  EXPECT_EQ(un1.submitted(), slow.queue_entries) << "nothing was added to the full unit";
  EXPECT_EQ(f.sys.get_unit(u0).submitted(), 2u) << "unit 0 got its DSI and wait (partial)";
  EXPECT_GE(un1.stats().queue_full, 2u);

  // Unit 0's half completes; the epoch still never counts as full.
  plat.add(10'000);
  f.sys.advance();
  EXPECT_EQ(f.sys.get_unit(u0).processed(), 2u);
  EXPECT_EQ(d.flush_completed_full(), 0u);
  EXPECT_FALSE(d.flush_completed_full() > stamp) << "a frame stamped before may not be freed";
  EXPECT_TRUE(f.sys.check_invariants().ok()) << f.sys.check_invariants().to_string();

  // Once unit 1 drains, the next invalidation is full.
  plat.add(slow.queue_entries * slow.latency.inv_domain_ns);
  auto t2 = f.sys.invalidate(d, inv_range::all());
  ASSERT_TRUE(t2.ok()) << t2.status().to_string();
  EXPECT_TRUE(f.sys.wait(*t2, big_timeout).ok());
  EXPECT_EQ(d.flush_completed_full(), 2u);
  f.teardown();
}

// The wait rule is what makes a completed wait safe: with it switched off (test-only mutant)
// the same step-by-step interleaving frees a table a walk in flight still reads, and the check
// catches it. With the rule, WaitBlocksOnEarlierWalkInFlight sees no violation.
TEST(IommuQueue, MutantWithoutTheWaitRuleIsCaught) {
  unit_config c = zero_latency_unit();
  c.mutant_no_wait_rule = true;
  walk_in_flight s(c);
  ASSERT_TRUE(s.start());
  fixture& f = s.f;
  domain& d = s.d;
  pt::gather& g = s.g;
  walk& w = s.w;
  unit& un = f.sys.get_unit(s.u);
  f.map(d, 0, 0x4000'0000, k1g, g);
  auto t = f.sys.invalidate(d, inv_range::from(g));
  ASSERT_TRUE(t.ok());
  EXPECT_TRUE(f.sys.poll(*t)) << "the mutant completes the wait under the walk";
  EXPECT_EQ(un.stats().wait_stalls, 0u);
  f.free_released(g, "after-mutant-wait");
  while (!un.step(w)) {
  }
  EXPECT_GE(w.result().violations, 1u);
  ASSERT_GE(f.sys.violations().count(), 1u);
  EXPECT_EQ(f.sys.violations().first().front().kind, violation_kind::free_frame);
  f.teardown();
}

TEST(IommuQueue, EpochsCompleteInOrderAndFullOnlyForFull) {
  manual_platform plat;
  fixture f(plat);
  const unsigned u0 = f.sys.add_unit(unit_config{});
  unit_config slow;
  slow.latency.inv_wait_ns = 10'000;
  const unsigned u1 = f.sys.add_unit(slow);
  domain& d = f.add_domain(1);
  ASSERT_TRUE(f.sys.attach(1, u0, d, 1).ok());
  const std::uint64_t stamp0 = d.flush_stamp();
  EXPECT_EQ(stamp0, 0u);
  auto a = f.sys.invalidate(d, inv_range::all());  // epoch 1: unit 0 only (fast)
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(f.sys.attach(2, u1, d, 1).ok());
  auto b = f.sys.invalidate(d, {0, k4k - 1, true});  // epoch 2: both, slow on unit 1
  auto c = f.sys.invalidate(d, inv_range::all());    // epoch 3: both
  ASSERT_TRUE(b.ok() && c.ok());
  EXPECT_EQ(d.flush_started(), 3u);
  plat.add(2'000);
  f.sys.advance();
  EXPECT_EQ(d.flush_completed(), 1u);
  EXPECT_EQ(d.flush_completed_full(), 1u);
  EXPECT_FALSE(f.sys.poll(*b));
  plat.add(30'000);
  EXPECT_TRUE(f.sys.poll(*c));
  EXPECT_EQ(d.flush_completed(), 3u) << "epochs follow the hardware, whichever ticket is polled";
  EXPECT_TRUE(f.sys.poll(*b));
  EXPECT_EQ(f.sys.poll_domain(d), 3u);
  EXPECT_EQ(d.flush_completed_full(), 3u);
  EXPECT_GT(d.flush_completed_full(), stamp0);
  f.teardown();
}

TEST(IommuAmd, CommandsMapOntoTheSameModel) {
  rc::check("INVALIDATE_IOMMU_PAGES encodes the smallest aligned block",
            [](std::uint32_t a, std::uint16_t len, bool pde) {
              const iova_t first = iova_t{a} << 12;
              const iova_t last = first + (iova_t{len} << 12) + 0xfff;
              const amd_command c = amd_command::invalidate_pages(5, first, last, pde);
              const inv_descriptor d = translate_amd(c);
              RC_ASSERT(d.type == inv_type::page);
              RC_ASSERT(d.did == 5u);
              RC_ASSERT(d.ih == !pde);
              RC_ASSERT(unsigned{d.am} == covering_block_lg2(first, last, 12));
              RC_ASSERT(d.first() <= first);
              RC_ASSERT(d.last() >= last);
            });
  const inv_descriptor all = translate_amd(amd_command::invalidate_pages(5, 0, ~iova_t{0}, true));
  EXPECT_EQ(all.type, inv_type::domain);
  EXPECT_EQ(translate_amd(amd_command::invalidate_all()).type, inv_type::global);

  // PDE=0 keeps the paging-structure caches, PDE=1 drops them.
  fixture f;
  const unsigned u = f.sys.add_unit(zero_latency_unit());
  domain& d = f.add_domain(1, pt::domain_config{}, pt::format_kind::amd_v1_4);
  ASSERT_TRUE(f.sys.attach(1, u, d, 9).ok());
  pt::gather g;
  f.map(d, k2m, 0x3000, k4k, g);
  EXPECT_EQ(f.sys.translate(1, k2m, pt::perm_read).result, outcome::ok);
  const std::size_t psc_before = f.sys.get_unit(u).psc_snapshot().size();
  EXPECT_EQ(psc_before, 3u);
  std::array<amd_command, 2> cmds{amd_command::invalidate_pages(9, k2m, k2m + k4k - 1, false),
                                  amd_command::completion_wait()};
  ASSERT_TRUE(f.sys.get_unit(u).submit_amd(cmds).ok());
  EXPECT_EQ(f.sys.get_unit(u).psc_snapshot().size(), psc_before);
  EXPECT_TRUE(f.sys.get_unit(u).iotlb_snapshot().empty());
  cmds[0] = amd_command::invalidate_pages(9, k2m, k2m + k4k - 1, true);
  ASSERT_TRUE(f.sys.get_unit(u).submit_amd(cmds).ok());
  EXPECT_TRUE(f.sys.get_unit(u).psc_snapshot().empty());
  f.teardown();
}

TEST(IommuCache, LruEvictsTheLeastRecentlyUsed) {
  iotlb t({4, 4, replacement::lru, 1});
  for (std::uint64_t p = 0; p < 4; ++p)
    t.insert({true, false, 1, pt::perm_read, 1, p, p << 12});
  ASSERT_TRUE(t.lookup(1, 0, 0b10));  // touch page 0
  t.insert({true, false, 1, pt::perm_read, 1, 9, 9 << 12});
  EXPECT_TRUE(t.lookup(1, 0, 0b10)) << "recently used survives";
  EXPECT_FALSE(t.lookup(1, 1u << 12, 0b10)) << "page 1 was least recently used";
  EXPECT_EQ(t.size(), 4u);
  EXPECT_EQ(t.evictions(), 1u);
  EXPECT_TRUE(t.check_invariants().ok());
}

TEST(IommuCache, RandomReplacementIsSeeded) {
  auto run = [](std::uint64_t seed) {
    iotlb t({8, 8, replacement::random, seed});
    for (std::uint64_t p = 0; p < 100; ++p)
      t.insert({true, false, 1, pt::perm_read, 1, p, p << 12});
    std::vector<std::uint64_t> pages;
    t.for_each([&](const iotlb_entry& e) { pages.push_back(e.vpn); });
    return pages;
  };
  EXPECT_EQ(run(3), run(3));
  EXPECT_EQ(run(3).size(), 8u);
}

TEST(IommuCache, RangesAndDomains) {
  psc p({16, 4, replacement::lru, 1});
  p.insert(2, {true, pt::perm_rw, 1, (k2m * 3) >> 21, mem::frame_id{10}, 1});
  p.insert(3, {true, pt::perm_rw, 1, 0, mem::frame_id{11}, 1});
  p.insert(2, {true, pt::perm_rw, 2, (k2m * 3) >> 21, mem::frame_id{12}, 1});
  auto h = p.lookup_deepest(1, 3 * k2m + 5, 4);
  ASSERT_TRUE(h);
  EXPECT_EQ(h->level, 2u);
  EXPECT_EQ(h->entry.next.value, 10u);
  EXPECT_EQ(p.invalidate_range(1, 3 * k2m + k4k, 3 * k2m + k4k), 2u)
      << "the PDE and the PDPE above it";
  EXPECT_EQ(p.size(), 1u);
  EXPECT_EQ(p.invalidate_domain(2), 1u);
  EXPECT_TRUE(p.check_invariants().ok());
}

}  // namespace
}  // namespace ptreclaim::iommu::test
