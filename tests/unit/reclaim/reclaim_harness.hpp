// Shared harness of the reclamation tests: one machine with everything a policy stands on,
// built by the testbed (testbed/testbed.hpp) exactly as the simulator's engine builds its own:
//
//   executor (deterministic or threaded) -> frame pool and iommu::system built on it as their
//   platform -> 2 IOMMU units -> the safety_monitor (the tables' unlink observer, the units'
//   descriptor observer, the backend the policy uses AND its observer, with an optional extra
//   observer of the test's) over an iommu_backend -> N domains (VT-d 4-level tables, locked
//   mode, coalescing on), each attached to both units through its own devices -> a policy from
//   make_reclaimer.
//
// CPU programs release tables for real: CPU c owns the 2 MiB region [c * 2 MiB, (c+1) * 2 MiB)
// of every domain. `fill` maps its 512 4K pages one by one (the last map coalesces them into a
// superpage and releases the leaf table), `churn` unmaps one 4K page (a split: a new leaf
// table) and maps it back (coalesced again: that table is released), `split`/`remap` do the
// two halves in separate steps, `clear` unmaps the region (may release the level-2 table when
// the region was the last one mapped under it). After each mutation the CPU retires the gather
// (policy.retire) and, unless the test says the caller does not flush, invalidates it the Xen
// way (invalidate_after_retire through the monitor).
//
// Devices (iommu::device, one per domain per unit) translate inside the regions as daemon
// actors; step-wise (one PTE read per step) under the deterministic executor, so walks
// interleave with CPU steps read by read.
//
// Failures inside program steps are recorded (record_failure) and checked after the run, since
// gtest's ASSERT cannot leave a step.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "ptreclaim/iommu/device.hpp"
#include "ptreclaim/iommu/system.hpp"
#include "ptreclaim/mem/frame_pool.hpp"
#include "ptreclaim/pt/table.hpp"
#include "ptreclaim/reclaim/iommu_backend.hpp"
#include "ptreclaim/reclaim/reclaimer.hpp"
#include "ptreclaim/reclaim/safety_monitor.hpp"
#include "ptreclaim/runtime/deterministic_executor.hpp"
#include "ptreclaim/testbed/testbed.hpp"

namespace ptreclaim::reclaim::test {

inline constexpr std::uint64_t k4k = 4096;
inline constexpr std::uint64_t k2m = std::uint64_t{2} << 20;
inline constexpr std::uint64_t wait_timeout_ns = 10'000'000'000;

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
inline constexpr bool under_sanitizer = true;
#else
inline constexpr bool under_sanitizer = false;
#endif

enum class exec_kind : std::uint8_t { deterministic, threaded };
[[nodiscard]] inline const char* exec_name(exec_kind k) {
  return k == exec_kind::deterministic ? "deterministic" : "threaded";
}

// The safe policies every contract test runs: every safe one in the registry.
inline constexpr std::size_t safe_policy_count = [] {
  std::size_t n = 0;
  for (const policy_info& p : policy_registry)
    n += p.safe ? 1 : 0;
  return n;
}();
inline constexpr auto safe_policies = [] {
  std::array<policy_kind, safe_policy_count> out{};
  std::size_t i = 0;
  for (const policy_info& p : policy_registry)
    if (p.safe) out[i++] = p.kind;
  return out;
}();

// "linux-global-work" -> "linux_global_work" (gtest parameter names).
[[nodiscard]] inline std::string ident(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c == '-') c = '_';
  return out;
}

struct harness_config {
  policy_kind policy = policy_kind::flush_epoch;
  exec_kind exec = exec_kind::deterministic;
  unsigned cpus = 2;
  unsigned domains = 1;
  std::uint64_t seed = 1;
  reclaim_config reclaim = small_bound();
  std::uint32_t frames = 2048;
  runtime::dead_cpu_work on_cpu_dead = runtime::dead_cpu_work::migrate;
  bool devices = true;
  std::uint64_t device_gap_ns = 300;  // a device's pause between steps
  iommu::unit_config unit{};
  std::uint64_t max_steps = std::uint64_t{20} << 20;  // deterministic: a livelock is a failure

  // max_pending = 8: small enough that back-pressure is exercised all the time.
  [[nodiscard]] static reclaim_config small_bound() {
    reclaim_config c;
    c.max_pending = 8;
    c.watermark = 4;
    return c;
  }
};

// The mutations a CPU program performs on its own region of one domain.
enum class mutation : std::uint8_t { fill, churn, split, remap, clear };
enum class region_state : std::uint8_t { empty, coalesced, split };

class harness {
 public:
  explicit harness(const harness_config& c) : cfg_(c), tb_(make_testbed(c)) {
    for (unsigned i = 0; i < c.domains; ++i) {
      const auto id = static_cast<std::uint16_t>(i + 1);
      auto d = tb_->add_domain({.id = id,
                                .format = pt::format_kind::vtd_ss_4,
                                .mode = pt::concurrency_mode::locked,
                                .coalesce = true});
      PTR_ASSERT_MSG(d.ok(), "harness: add_domain failed");
      for (unsigned u : {0u, 1u}) {
        const auto dev = static_cast<iommu::device_id>(1 + 2 * i + u);
        PTR_ASSERT_MSG(tb_->sys().attach(dev, u, *(*d)->dom, id).ok(), "harness: attach failed");
        if (c.devices) {
          iommu::device_config dcfg{.id = dev,
                                    .pattern = iommu::access_pattern::uniform,
                                    .windows = {{0, c.cpus * k2m}},
                                    .stepwise = c.exec == exec_kind::deterministic,
                                    .seed = c.seed * 131 + dev};
          devices_.push_back(std::make_unique<iommu::device>(tb_->sys(), dcfg));
        }
      }
    }
    regions_.assign(std::size_t{c.cpus} * c.domains, region{});
    gathers_.resize(c.cpus);
    PTR_ASSERT_MSG(tb_->install_policy(c.policy, c.reclaim).ok(), "harness: make_reclaimer failed");
    // The IOMMU engine: moves the units' queues to now. Under the deterministic executor a
    // wait_until with no actor ready jumps straight to its deadline (10 s of virtual time per
    // invalidation), so this actor is what lets waits end when the hardware is done. It moves
    // the units only, as the simulator's engine does: the domains' flush epochs advance only
    // when someone polls, so a policy that forgets to poll is left waiting (L1 fails).
    {
      iommu::system* sys = &tb_->sys();
      const std::uint64_t gap = c.exec == exec_kind::deterministic ? 100 : 50'000;
      tb_->ex().add_actor({"iommu-engine", [sys, gap] {
                             for (unsigned u = 0; u < sys->unit_count(); ++u)
                               sys->get_unit(u).advance();
                             return runtime::step_result::sleep_for(gap);
                           }});
    }
    for (auto& d : devices_) {
      iommu::device* dev = d.get();
      const std::uint64_t gap = c.device_gap_ns;
      tb_->ex().add_actor({"device", [dev, gap] {
                             dev->step();
                             return runtime::step_result::sleep_for(gap);
                           }});
    }
  }

  ~harness() {
    for (auto& d : devices_)
      d->cancel();
  }

  harness(const harness&) = delete;
  harness& operator=(const harness&) = delete;

  // ---- parts ----
  [[nodiscard]] runtime::executor& ex() noexcept { return tb_->ex(); }
  [[nodiscard]] runtime::deterministic_executor* det() noexcept {
    return dynamic_cast<runtime::deterministic_executor*>(&tb_->ex());
  }
  [[nodiscard]] mem::frame_pool& pool() noexcept { return tb_->pool(); }
  [[nodiscard]] iommu::system& sys() noexcept { return tb_->sys(); }
  [[nodiscard]] safety_monitor& monitor() noexcept { return tb_->monitor(); }
  // A test's own observer of the policy's retires and frees, besides the monitor (set it
  // before run(); it must outlive the harness's run).
  void set_extra_observer(reclaim_observer* o) noexcept { tb_->obs().set_extra(o); }
  [[nodiscard]] reclaimer& policy() noexcept { return tb_->policy(); }
  [[nodiscard]] pt::table& table(unsigned di) noexcept { return *tb_->domains()[di]->table; }
  [[nodiscard]] domain_number domain_id(unsigned di) const noexcept {
    return static_cast<domain_number>(di + 1);
  }
  [[nodiscard]] const harness_config& config() const noexcept { return cfg_; }
  // The gather of CPU `cpu`'s last mutate() (valid until its next one).
  [[nodiscard]] const pt::gather& last_gather(unsigned cpu) const { return gathers_[cpu]; }
  [[nodiscard]] region_state state(unsigned cpu, unsigned di) const {
    return regions_[idx(cpu, di)].state;
  }

  // ---- the CPU side ----
  struct step_options {
    bool caller_flush = true;        // invalidate_after_retire after the retire
    bool softirq_point = false;      // process_pending_softirqs() between retire and flush
    bool translate_between = false;  // a device translation (the domain's first device)
                                     // between retire and flush, at an unused page
  };

  // The mutations legal from a region's state.
  [[nodiscard]] static bool legal(region_state s, mutation m) noexcept {
    switch (m) {
      case mutation::fill:
        return s == region_state::empty;
      case mutation::churn:
        return s == region_state::coalesced;
      case mutation::split:
        return s == region_state::coalesced;
      case mutation::remap:
        return s == region_state::split;
      case mutation::clear:
        return true;
    }
    return false;
  }

  // A releasing mutation that is legal now: fill, churn or remap.
  [[nodiscard]] mutation releasing(unsigned cpu, unsigned di) const {
    switch (state(cpu, di)) {
      case region_state::empty:
        return mutation::fill;
      case region_state::coalesced:
        return mutation::churn;
      case region_state::split:
        return mutation::remap;
    }
    return mutation::fill;
  }

  // Performs `m` on CPU `cpu`'s region of domain `di`, retires the gather, and (per `o`)
  // flushes. Call from CPU `cpu`'s program step. Returns the frames released.
  std::size_t mutate(unsigned cpu, unsigned di, mutation m, unsigned page, step_options o) {
    PTR_ASSERT_MSG(cpu == ex().current_cpu(), "harness::mutate from another CPU");
    region& r = regions_[idx(cpu, di)];
    PTR_ASSERT_MSG(legal(r.state, m), "harness::mutate: mutation illegal in this state");
    pt::table& t = table(di);
    pt::gather& g = gathers_[cpu];
    g.clear();
    const pt::iova_t base = cpu * k2m;
    const std::uint64_t phys = phys_base(cpu, di);
    page %= 512;
    switch (m) {
      case mutation::fill:
        for (unsigned i = 0; i < 512; ++i)
          check(t.map(base + i * k4k, phys + i * k4k, k4k, pt::perm_rw, g), "fill map");
        r.state = region_state::coalesced;
        break;
      case mutation::churn:
        check(t.unmap(base + page * k4k, k4k, g), "churn unmap");
        check(t.map(base + page * k4k, phys + page * k4k, k4k, pt::perm_rw, g), "churn map");
        break;
      case mutation::split:
        check(t.unmap(base + page * k4k, k4k, g), "split unmap");
        r.state = region_state::split;
        r.hole = page;
        break;
      case mutation::remap:
        check(t.map(base + r.hole * k4k, phys + r.hole * k4k, k4k, pt::perm_rw, g), "remap map");
        r.state = region_state::coalesced;
        break;
      case mutation::clear:
        check(t.unmap(base, k2m, g), "clear unmap");
        r.state = region_state::empty;
        break;
    }
    const domain_number d = domain_id(di);
    policy().retire(d, g);
    if (o.softirq_point) ex().process_pending_softirqs();
    if (o.translate_between) {
      const auto dev = static_cast<iommu::device_id>(1 + 2 * di);
      (void)sys().translate(dev, base + ((page + 7) % 512) * k4k, pt::perm_read);
    }
    if (o.caller_flush && !g.empty()) {
      Result<epoch_t> e = invalidate_after_retire(policy(), monitor(), d, g, wait_timeout_ns);
      if (!e.ok()) record_failure("invalidate_after_retire: " + e.status().to_string());
    }
    return g.released().size();
  }

  // ---- the run ----
  runtime::run_stats run() {
    stats_ = ex().run();
    return stats_;
  }

  // Everything the contract promises, checked after a run that reached quiescence, before any
  // drain(). expect_s4 = false: wrong-CPU runs are tolerated (the caller asserts them itself).
  void expect_contract(const std::string& context, bool check_s4 = true) {
    SCOPED_TRACE(context);
    EXPECT_EQ(failures(), "");
    EXPECT_EQ(stats_.reason, runtime::stop_reason::quiescent)
        << runtime::stop_reason_name(stats_.reason) << "\n"
        << describe_run();
    const safety_monitor::report rep = monitor().result();
    const std::string firsts = join(rep.first);
    EXPECT_GT(rep.retired, 0u) << "the workload released nothing: the test tests nothing";
    EXPECT_EQ(rep.s2_violations, 0u) << firsts;
    EXPECT_EQ(rep.s3_violations, 0u) << firsts;
    EXPECT_EQ(rep.s5_violations, 0u) << firsts << " peak " << rep.peak_pending;
    if (check_s4) {
      EXPECT_EQ(rep.s4_violations, 0u) << firsts;
    }
    EXPECT_LE(rep.peak_pending, cfg_.reclaim.max_pending);
    // L1: everything freed once the machine went quiet, without drain().
    EXPECT_EQ(policy().pending(), 0u) << policy().describe_pending();
    EXPECT_EQ(monitor().pending(), 0u);
    EXPECT_EQ(rep.retired, rep.freed);
    const reclaim_stats st = policy().stats();
    EXPECT_EQ(st.retired, rep.retired);
    EXPECT_EQ(st.freed, rep.freed);
    EXPECT_EQ(st.free_errors, 0u);
    if (check_s4) {
      EXPECT_EQ(st.wrong_cpu_runs, 0u);
    }
    EXPECT_EQ(pool().ledger_violation_count(), 0u) << ledger();
    EXPECT_EQ(sys().violations().count(), 0u) << sys().violations().report();  // S1
  }

  // Destroys every table, invalidates, frees what the teardown released, and checks that the
  // pool is whole. The policy is not involved (the executor has stopped).
  void teardown_and_expect_whole() {
    for (auto& d : devices_)
      d->cancel();
    for (auto& dom : tb_->domains()) {
      pt::gather g;
      dom->table->destroy(g);
      // The deterministic executor's time stands still after run() (no waiting outside a
      // step); no device walks any more, so the frames may go back without the flush there.
      if (cfg_.exec == exec_kind::threaded) {
        EXPECT_TRUE(sys().flush_sync(*dom->dom, iommu::inv_range::all(), wait_timeout_ns).ok());
      }
      for (mem::frame_id f : g.released())
        EXPECT_TRUE(pool().free(f, "teardown").ok());
    }
    EXPECT_EQ(pool().leak_report(), "");
    EXPECT_TRUE(pool().leaks().empty());
    EXPECT_EQ(pool().ledger_violation_count(), 0u) << ledger();
  }

  // ---- failures recorded inside steps ----
  void record_failure(const std::string& what) {
    std::lock_guard g(fail_mu_);
    if (failures_.size() < 2000) failures_ += what + "\n";
  }
  [[nodiscard]] std::string failures() const {
    std::lock_guard g(fail_mu_);
    return failures_;
  }
  [[nodiscard]] std::string ledger() const {
    std::string s;
    for (const auto& r : tb_->pool().ledger_reports())
      s += r.what + "\n";
    return s;
  }
  [[nodiscard]] static std::string join(const std::vector<std::string>& v) {
    std::string s;
    for (const auto& x : v)
      s += x + "\n";
    return s;
  }
  [[nodiscard]] const runtime::run_stats& last_run() const noexcept { return stats_; }
  // One line per CPU of the last run (for failure messages).
  [[nodiscard]] std::string describe_run() const {
    std::string s = "steps " + std::to_string(stats_.steps) + ", programs finished " +
                    (stats_.programs_finished ? "yes" : "no") + "\n";
    for (unsigned c = 0; c < stats_.cpu.size(); ++c) {
      const runtime::cpu_run_stats& x = stats_.cpu[c];
      const runtime::pending_counts q = tb_->ex().pending_on(c);
      s += "  cpu " + std::to_string(c) + (tb_->ex().cpu_online(c) ? " online" : " offline") +
           ": program steps " + std::to_string(x.program_steps) + ", tasklets " +
           std::to_string(x.tasklets) + ", softirq tasklets " + std::to_string(x.softirq_tasklets) +
           ", work " + std::to_string(x.work_items) + ", timers " + std::to_string(x.timers) +
           ", clock " + std::to_string(x.clock_ns) +
           " ns; queued now: " + std::to_string(q.plain_tasklets) + " tasklets, " +
           std::to_string(q.work_items) + " work, " + std::to_string(q.timers) + " timers\n";
    }
    return s;
  }

 private:
  struct region {
    region_state state = region_state::empty;
    unsigned hole = 0;
  };
  // Two IOMMU units with the test's configuration, a pool of c.frames with a cache per CPU.
  static std::unique_ptr<testbed::testbed> make_testbed(const harness_config& c) {
    testbed::config tc;
    tc.executor = c.exec == exec_kind::deterministic ? testbed::executor_kind::deterministic
                                                     : testbed::executor_kind::threaded;
    tc.run.cpus = c.cpus;
    tc.run.seed = c.seed;
    tc.run.on_cpu_dead = c.on_cpu_dead;
    tc.run.max_steps = c.max_steps;
    tc.run.real_time_limit_ns = std::uint64_t{60} * 1000 * 1000 * 1000;
    tc.pool = mem::pool_config{.capacity_frames = c.frames, .caches = c.cpus};
    tc.units = {c.unit, c.unit};
    tc.max_pending = c.reclaim.max_pending;
    auto tb = testbed::testbed::create(tc);
    PTR_ASSERT_MSG(tb.ok(), "harness: testbed::create failed");
    return std::move(*tb);
  }
  [[nodiscard]] std::size_t idx(unsigned cpu, unsigned di) const noexcept {
    return std::size_t{cpu} * cfg_.domains + di;
  }
  [[nodiscard]] static std::uint64_t phys_base(unsigned cpu, unsigned di) noexcept {
    return (std::uint64_t{1} << 32) + (std::uint64_t{cpu} * 64 + di) * k2m;
  }
  void check(const Status& s, const char* what) {
    if (!s.ok()) record_failure(std::string(what) + ": " + s.to_string());
  }

  harness_config cfg_;
  std::unique_ptr<testbed::testbed> tb_;
  std::vector<std::unique_ptr<iommu::device>> devices_;  // before the testbed's system goes
  std::vector<region> regions_;      // per (cpu, domain): touched only by that CPU
  std::vector<pt::gather> gathers_;  // per CPU
  runtime::run_stats stats_;
  mutable std::mutex fail_mu_;
  std::string failures_;
};

}  // namespace ptreclaim::reclaim::test
