// Injected queue faults (faults.hpp) and the driver's recovery (system.hpp): an aborted wait is
// never done and never reported, its flush epoch completes only with its resubmission, a
// refused invalidation does not take effect, stalls and slow waits delay completion by exactly
// what the schedule drew, and each abort is resubmitted exactly once.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <functional>
#include <mutex>
#include <utility>
#include <vector>

#include "iommu_fixture.hpp"

namespace ptreclaim::iommu::test {
namespace {

constexpr std::uint64_t big_timeout = 1'000'000'000;

// Records every descriptor the units report processed: what a checker believes the hardware did.
class recording_observer final : public inv_observer {
 public:
  void on_processed(unsigned unit, std::uint64_t seq, const inv_descriptor& d) noexcept override {
    std::lock_guard<std::mutex> g(mu_);
    seen_.push_back({unit, seq, d.type});
  }
  struct entry {
    unsigned unit;
    std::uint64_t seq;
    inv_type type;
  };
  [[nodiscard]] std::vector<std::uint64_t> seqs(unsigned unit) const {
    std::lock_guard<std::mutex> g(mu_);
    std::vector<std::uint64_t> out;
    for (const entry& e : seen_)
      if (e.unit == unit) out.push_back(e.seq);
    return out;
  }

 private:
  mutable std::mutex mu_;
  std::vector<entry> seen_;
};

// The smallest seed (from 1) whose schedule for unit `unit` satisfies `want`.
std::uint64_t find_seed(fault_config c, unsigned unit,
                        const std::function<bool(const fault_schedule&)>& want) {
  for (std::uint64_t seed = 1; seed < 100000; ++seed) {
    c.seed = seed;
    if (want(fault_schedule(c, unit))) return seed;
  }
  ADD_FAILURE() << "no seed gives the schedule the test needs";
  return 0;
}

// One unit with default latencies (PSI 200 ns, wait 800 ns), domain 1 behind it, a 4K page
// mapped at 0 and translated so the IOTLB holds it.
struct one_unit {
  explicit one_unit(const fault_config& faults) : f(plat) {
    unit_config c;
    c.faults = faults;
    u = f.sys.add_unit(c);
    d = &f.add_domain(1);
    EXPECT_TRUE(f.sys.attach(1, u, *d, 1).ok());
    f.map(*d, 0, 0x5000, k4k, g);
    EXPECT_EQ(f.sys.translate(1, 0, pt::perm_read).result, outcome::ok);
    f.sys.set_inv_observer(&seen);
    plat.set(1000);
  }
  ~one_unit() { f.sys.set_inv_observer(nullptr); }
  [[nodiscard]] bool iotlb_holds_page0() const {
    for (const iotlb_entry& e : f.sys.get_unit(u).iotlb_snapshot())
      if (e.did == 1 && e.first() == 0) return true;
    return false;
  }
  manual_platform plat;
  fixture f;
  unsigned u = 0;
  domain* d = nullptr;
  pt::gather g;
  recording_observer seen;
};

fault_config ite_only() {
  fault_config c;
  c.ite_probability = 0.5;
  c.ite_timeout_ns = 5000;
  return c;
}

TEST(IommuFaults, AnIteAbortedWaitIsNeverDoneAndItsEpochWaitsForTheResubmission) {
  // The first submission's wait (seq 1) times out; its resubmission's (seq 3, attempt 1) not.
  fault_config c = ite_only();
  c.seed = find_seed(c, 0, [](const fault_schedule& s) {
    return s.at(1, inv_type::wait, 0).ite && !s.at(3, inv_type::wait, 1).ite;
  });
  one_unit t(c);
  unit& un = t.f.sys.get_unit(t.u);
  auto tk = t.f.sys.invalidate(*t.d, {0, k4k - 1, true});
  ASSERT_TRUE(tk.ok());
  ASSERT_EQ(tk->parts[0].seq, 1u);
  // The wait would complete at 1000 + 200 + 800; it times out at + 5000 instead.
  t.plat.set(1000 + 200 + 800 + 5000 - 1);
  un.advance();
  EXPECT_EQ(un.processed(), 1u) << "the PSI took effect; the wait is still timing out";
  t.plat.set(1000 + 200 + 800 + 5000);
  un.advance();
  EXPECT_EQ(un.processed(), 2u) << "the aborted wait left the queue";
  EXPECT_FALSE(un.done(1)) << "an aborted wait is never done";
  EXPECT_TRUE(un.aborted(1));
  EXPECT_TRUE(un.done(0)) << "the PSI before it was processed";
  EXPECT_FALSE(t.iotlb_holds_page0()) << "ITE: the invalidation before the wait took effect";
  EXPECT_EQ(un.stats().ite_errors, 1u);
  EXPECT_EQ(un.stats().waits_completed, 0u);
  EXPECT_EQ(t.seen.seqs(t.u), (std::vector<std::uint64_t>{0})) << "the wait was not reported";
  t.f.sys.update_epochs(*t.d);  // no recovery here
  EXPECT_EQ(t.d->flush_completed(), 0u) << "an epoch whose wait was aborted is not complete";
  EXPECT_FALSE(t.f.sys.wait_done(t.u, 1));

  // A poller looks: the driver resubmits PSI + wait (seqs 2, 3) once, however often it looks.
  EXPECT_FALSE(t.f.sys.poll(*tk));
  EXPECT_FALSE(t.f.sys.poll(*tk));
  t.f.sys.recover(t.u);
  EXPECT_EQ(t.f.sys.resubmissions(), 1u);
  EXPECT_EQ(un.submitted(), 4u);
  EXPECT_EQ(t.d->flush_completed(), 0u) << "the resubmission has not completed";
  t.plat.add(200 + 800);
  EXPECT_TRUE(t.f.sys.poll(*tk)) << "the ticket follows its resubmission";
  EXPECT_EQ(t.d->flush_completed(), 1u);
  EXPECT_EQ(t.d->flush_completed_full(), 0u);
  EXPECT_FALSE(un.done(1)) << "the aborted wait itself stays not done";
  EXPECT_TRUE(t.f.sys.wait_done(t.u, 1));
  EXPECT_EQ(t.seen.seqs(t.u), (std::vector<std::uint64_t>{0, 2, 3}));
  EXPECT_EQ(t.f.sys.resubmissions(), 1u);
  EXPECT_EQ(un.stats().waits_completed, 1u);
  t.f.teardown();
}

TEST(IommuFaults, AnIqeRefusedInvalidationDoesNotTakeEffectUntilItsResubmission) {
  fault_config c;
  c.iqe_probability = 0.5;
  c.seed = find_seed(c, 0, [](const fault_schedule& s) {
    return s.at(0, inv_type::page, 0).iqe && !s.at(2, inv_type::page, 1).iqe;
  });
  one_unit t(c);
  unit& un = t.f.sys.get_unit(t.u);
  ASSERT_TRUE(t.iotlb_holds_page0());
  t.f.unmap(*t.d, 0, k4k, t.g);
  auto tk = t.f.sys.invalidate(*t.d, {0, k4k - 1, false});
  ASSERT_TRUE(tk.ok());
  t.plat.add(200 + 800);
  un.advance();
  EXPECT_EQ(un.processed(), 2u);
  EXPECT_TRUE(t.iotlb_holds_page0()) << "IQE: the refused PSI did not take effect";
  EXPECT_FALSE(un.done(0)) << "the refused descriptor is not done either";
  EXPECT_FALSE(un.done(1));
  EXPECT_TRUE(un.aborted(1));
  EXPECT_EQ(un.stats().iqe_errors, 1u);
  EXPECT_EQ(un.stats().ite_errors, 0u);
  EXPECT_EQ(un.stats().descriptors_aborted, 2u);
  EXPECT_TRUE(t.seen.seqs(t.u).empty()) << "nothing of the aborted group was reported";
  // The stale translation is still served from the IOTLB: a device sees the old page.
  EXPECT_EQ(t.f.sys.translate(1, 0, pt::perm_read).phys, 0x5000u);
  t.f.sys.update_epochs(*t.d);
  EXPECT_EQ(t.d->flush_completed(), 0u);

  EXPECT_FALSE(t.f.sys.poll(*tk));  // resubmits PSI + wait at 2, 3
  EXPECT_TRUE(t.iotlb_holds_page0()) << "not before the resubmission is processed";
  EXPECT_TRUE(t.f.sys.wait(*tk, big_timeout).ok());
  EXPECT_FALSE(t.iotlb_holds_page0());
  EXPECT_EQ(t.d->flush_completed(), 1u);
  EXPECT_EQ(t.f.sys.resubmissions(), 1u);
  EXPECT_EQ(t.seen.seqs(t.u), (std::vector<std::uint64_t>{2, 3}));
  EXPECT_EQ(t.f.sys.translate(1, 0, pt::perm_read).result, outcome::fault_not_present);
  t.f.free_released(t.g);  // safe now: the resubmitted invalidation completed
  t.f.teardown();
}

// An IQE aborts the rest of its group too: a second invalidation behind the refused one is not
// applied, and the whole group is what the driver resubmits.
TEST(IommuFaults, AnIqeAbortsItsWholeGroupAndTheGroupIsResubmitted) {
  fault_config c;
  c.iqe_probability = 0.5;
  c.seed = find_seed(c, 0, [](const fault_schedule& s) {
    return s.at(0, inv_type::page, 0).iqe && !s.at(3, inv_type::page, 1).iqe &&
           !s.at(4, inv_type::page, 1).iqe;
  });
  one_unit t(c);
  unit& un = t.f.sys.get_unit(t.u);
  const std::array<inv_descriptor, 3> group{inv_descriptor::page(7, 0, 0, false),
                                            inv_descriptor::page(1, 0, 0, false),
                                            inv_descriptor::wait()};
  ASSERT_TRUE(un.submit(group).ok());
  t.plat.add(200 + 200 + 800);
  un.advance();
  EXPECT_EQ(un.processed(), 3u);
  EXPECT_TRUE(t.iotlb_holds_page0()) << "the PSI of did 1 sat behind the refused one";
  EXPECT_EQ(un.stats().descriptors_aborted, 3u);
  const auto taken = un.take_aborted();
  ASSERT_EQ(taken.size(), 1u);
  EXPECT_EQ(taken[0].error, queue_error::iqe);
  EXPECT_EQ(taken[0].wait_seq, 2u);
  EXPECT_EQ(taken[0].attempt, 0u);
  ASSERT_EQ(taken[0].descs.size(), 3u);
  EXPECT_EQ(taken[0].descs[1].did, 1u);
  EXPECT_EQ(taken[0].descs[2].type, inv_type::wait);
  EXPECT_TRUE(un.take_aborted().empty()) << "each aborted group is handed out once";
  ASSERT_TRUE(un.resubmit(taken[0].descs, 1).ok());
  t.plat.add(200 + 200 + 800);
  un.advance();
  EXPECT_TRUE(un.done(5));
  EXPECT_FALSE(t.iotlb_holds_page0());
  t.f.teardown();
}

// A domain behind two units: the epoch completes only when the unit whose wait timed out
// completed the resubmission, whatever the other unit did.
TEST(IommuFaults, AnEpochOverTwoUnitsWaitsForTheUnitThatAborted) {
  fault_config c = ite_only();
  c.seed = find_seed(c, 0, [](const fault_schedule& s) {
    return s.at(1, inv_type::wait, 0).ite && !s.at(3, inv_type::wait, 1).ite;
  });
  manual_platform plat;
  fixture f(plat);
  unit_config uc;
  uc.faults = c;
  const unsigned u0 = f.sys.add_unit(uc);
  const unsigned u1 = f.sys.add_unit(unit_config{});
  domain& d = f.add_domain(1);
  ASSERT_TRUE(f.sys.attach(1, u0, d, 1).ok());
  ASSERT_TRUE(f.sys.attach(2, u1, d, 1).ok());
  plat.set(1000);
  auto tk = f.sys.invalidate(d, inv_range::all());
  ASSERT_TRUE(tk.ok());
  plat.add(200 + 800 + 5000);
  EXPECT_EQ(f.sys.poll_domain(d), 0u) << "unit 1 completed, unit 0 aborted and resubmitted";
  EXPECT_TRUE(f.sys.get_unit(u1).done(1));
  EXPECT_EQ(d.flush_completed_full(), 0u);
  plat.add(200 + 800);
  EXPECT_EQ(f.sys.poll_domain(d), 1u);
  EXPECT_EQ(d.flush_completed_full(), 1u) << "the resubmitted DSI is as full as the original";
  EXPECT_TRUE(f.sys.poll(*tk));
  EXPECT_EQ(f.sys.resubmissions(), 1u);
  f.teardown();
}

// Aborted twice in a row: the ticket follows two resubmissions; each abort is resubmitted once.
TEST(IommuFaults, ATicketFollowsEveryResubmission) {
  fault_config c = ite_only();
  c.seed = find_seed(c, 0, [](const fault_schedule& s) {
    return s.at(1, inv_type::wait, 0).ite && s.at(3, inv_type::wait, 1).ite &&
           !s.at(5, inv_type::wait, 2).ite;
  });
  one_unit t(c);
  auto tk = t.f.sys.invalidate(*t.d, {0, k4k - 1, true});
  ASSERT_TRUE(tk.ok());
  EXPECT_TRUE(t.f.sys.wait(*tk, big_timeout).ok());
  EXPECT_EQ(t.f.sys.resubmissions(), 2u);
  EXPECT_EQ(t.f.sys.get_unit(t.u).stats().ite_errors, 2u);
  EXPECT_EQ(t.f.sys.get_unit(t.u).submitted(), 6u);
  EXPECT_EQ(t.d->flush_completed(), 1u);
  EXPECT_TRUE(t.f.sys.wait_done(t.u, 1));
  EXPECT_TRUE(t.f.sys.wait_done(t.u, 3));
  EXPECT_FALSE(t.f.sys.get_unit(t.u).done(3));
  t.f.teardown();
}

// The injector never aborts an invalidation more than max_aborts_in_a_row times: with the
// highest probability allowed, the attempt at the bound completes.
TEST(IommuFaults, AbortsInARowAreBounded) {
  fault_config c;
  c.ite_probability = max_abort_probability;
  c.iqe_probability = max_abort_probability;
  c.max_aborts_in_a_row = 2;
  c.seed = 99;
  const fault_schedule s(c, 3);
  unsigned ite = 0, iqe = 0;
  for (std::uint64_t seq = 0; seq < 20000; ++seq) {
    ite += s.at(seq, inv_type::wait, 0).ite ? 1 : 0;
    iqe += s.at(seq, inv_type::page, 1).iqe ? 1 : 0;
    EXPECT_FALSE(s.at(seq, inv_type::wait, 2).ite);
    EXPECT_FALSE(s.at(seq, inv_type::domain, 3).iqe);
    EXPECT_FALSE(s.at(seq, inv_type::page, 0).ite) << "ITE is drawn for waits only";
    EXPECT_FALSE(s.at(seq, inv_type::wait, 0).iqe) << "IQE is drawn for invalidations only";
  }
  EXPECT_NEAR(ite / 20000.0, 0.5, 0.02);
  EXPECT_NEAR(iqe / 20000.0, 0.5, 0.02);

  // End to end: every wait aborted while it may be, then the bound lets it through.
  one_unit t(c);
  auto tk = t.f.sys.invalidate(*t.d, inv_range::all());
  ASSERT_TRUE(tk.ok());
  EXPECT_TRUE(t.f.sys.wait(*tk, big_timeout).ok());
  EXPECT_LE(t.f.sys.resubmissions(), 2u);
  t.f.teardown();
}

// The schedule is a pure function of (seed, unit, sequence): the same seed replays it, another
// unit or seed draws differently.
TEST(IommuFaults, TheScheduleIsSeeded) {
  fault_config c;
  c.stall_probability = 0.3;
  c.slow_wait_probability = 0.3;
  c.ite_probability = 0.2;
  c.seed = 5;
  const fault_schedule a(c, 0), b(c, 0), other_unit(c, 1);
  c.seed = 6;
  const fault_schedule other_seed(c, 0);
  unsigned same = 0, diff_unit = 0, diff_seed = 0;
  for (std::uint64_t seq = 0; seq < 1000; ++seq) {
    const auto x = a.at(seq, inv_type::wait, 0);
    const auto y = b.at(seq, inv_type::wait, 0);
    same += x.stall_ns == y.stall_ns && x.slow_ns == y.slow_ns && x.ite == y.ite ? 1 : 0;
    diff_unit += x.slow_ns != other_unit.at(seq, inv_type::wait, 0).slow_ns ? 1 : 0;
    diff_seed += x.slow_ns != other_seed.at(seq, inv_type::wait, 0).slow_ns ? 1 : 0;
  }
  EXPECT_EQ(same, 1000u);
  EXPECT_GT(diff_unit, 200u);
  EXPECT_GT(diff_seed, 200u);
}

// Stalls and slow waits: each descriptor completes exactly its latency plus what was drawn.
TEST(IommuFaults, StallsAndSlowWaitsDelayCompletionByTheDrawnAmounts) {
  fault_config c;
  c.stall_probability = 1.0;
  c.stall_ns = 1500;
  c.slow_wait_probability = 1.0;
  c.slow_wait_mean_ns = 3000;
  c.slow_wait_max_ns = 1'000'000;
  c.seed = find_seed(c, 0, [](const fault_schedule& s) {
    const auto w = s.at(1, inv_type::wait, 0);
    return w.slow_ns > 100 && w.slow_ns < 1'000'000;  // a drawn, untruncated delay
  });
  const std::uint64_t slow = fault_schedule(c, 0).at(1, inv_type::wait, 0).slow_ns;
  EXPECT_EQ(fault_schedule(c, 0).at(0, inv_type::page, 0).slow_ns, 0u) << "waits only";
  one_unit t(c);
  unit& un = t.f.sys.get_unit(t.u);
  auto tk = t.f.sys.invalidate(*t.d, {0, k4k - 1, true});
  ASSERT_TRUE(tk.ok());
  const std::uint64_t psi_done = 1000 + 1500 + 200;
  const std::uint64_t wait_done = psi_done + 1500 + 800 + slow;
  t.plat.set(psi_done - 1);
  un.advance();
  EXPECT_EQ(un.processed(), 0u);
  t.plat.set(psi_done);
  un.advance();
  EXPECT_EQ(un.processed(), 1u);
  t.plat.set(wait_done - 1);
  EXPECT_FALSE(t.f.sys.poll(*tk));
  t.plat.set(wait_done);
  EXPECT_TRUE(t.f.sys.poll(*tk));
  const unit_stats st = un.stats();
  EXPECT_EQ(st.stalls, 2u);
  EXPECT_EQ(st.stall_ns, 3000u);
  EXPECT_EQ(st.slow_waits, 1u);
  EXPECT_EQ(st.slow_wait_ns, slow);
  EXPECT_EQ(t.f.sys.resubmissions(), 0u);
  t.f.teardown();
}

// The exponential draw: its mean is near the configured one, and it never exceeds the cap.
TEST(IommuFaults, SlowWaitsAreExponentialAndTruncated) {
  fault_config c;
  c.slow_wait_probability = 1.0;
  c.slow_wait_mean_ns = 10'000;
  c.slow_wait_max_ns = 40'000;
  c.seed = 17;
  const fault_schedule s(c, 2);
  double sum = 0;
  std::uint64_t at_cap = 0;
  constexpr int n = 20000;
  for (std::uint64_t seq = 0; seq < n; ++seq) {
    const std::uint64_t x = s.at(seq, inv_type::wait, 0).slow_ns;
    EXPECT_LE(x, 40'000u);
    at_cap += x == 40'000u ? 1 : 0;
    sum += static_cast<double>(x);
  }
  // E[min(X, 4m)] = m (1 - e^-4) for an exponential of mean m.
  EXPECT_NEAR(sum / n, 10'000 * (1 - std::exp(-4.0)), 300);
  EXPECT_NEAR(static_cast<double>(at_cap) / n, std::exp(-4.0), 0.006);
}

// Without faults nothing of the recovery runs: no lock, no resubmission, done() as before.
TEST(IommuFaults, OffByDefault) {
  const fault_config c;
  EXPECT_FALSE(c.enabled());
  one_unit t(c);
  auto tk = t.f.sys.invalidate(*t.d, inv_range::all());
  ASSERT_TRUE(tk.ok());
  EXPECT_TRUE(t.f.sys.wait(*tk, big_timeout).ok());
  const unit_stats st = t.f.sys.get_unit(t.u).stats();
  EXPECT_EQ(st.ite_errors + st.iqe_errors + st.descriptors_aborted + st.stalls + st.slow_waits, 0u);
  EXPECT_FALSE(t.f.sys.get_unit(t.u).aborted(1));
  EXPECT_EQ(t.f.sys.resubmissions(), 0u);
  t.f.teardown();
}

}  // namespace
}  // namespace ptreclaim::iommu::test
