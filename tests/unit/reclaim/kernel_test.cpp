// runtime::kernel is all a policy needs: every safe policy runs here on a hand-written kernel
// (no executor; one CPU, or several that the test switches between by hand) and a hand-written
// backend whose invalidations complete a fixed virtual time after they are submitted. The
// kernel's clock moves only when the test says so or when something waits (wait_until), so
// "freed before its invalidation completed" is exact, and the observer checks it at every free.
#include "ptreclaim/runtime/kernel.hpp"

#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "ptreclaim/mem/frame_pool.hpp"
#include "ptreclaim/reclaim/reclaimer.hpp"

namespace ptreclaim::reclaim {
namespace {

// Virtual time, everything deferred runs at scheduler_point(). Deliberately naive: linear
// searches, no locking (one thread). One CPU unless asked for more; then the test says which
// CPU runs (as_cpu), and a timer fires on whichever CPU is current.
class toy_kernel final : public runtime::kernel {
 public:
  explicit toy_kernel(unsigned cpus = 1) : cpus_(cpus) {}
  std::uint64_t now_ns() noexcept override { return now_; }
  unsigned current_cpu() const noexcept override { return cpu_; }
  unsigned cpu_count() const noexcept override { return cpus_; }
  void as_cpu(unsigned cpu) {
    ASSERT_LT(cpu, cpus_);
    cpu_ = cpu;
  }
  bool wait_until(const std::function<bool()>& done, std::uint64_t timeout_ns) override {
    const std::uint64_t deadline = now_ + timeout_ns;
    while (!done()) {
      if (now_ >= deadline) return false;
      now_ += 100;  // a spin round
      ++waits;
    }
    return true;
  }

  void tasklet_init(runtime::tasklet& t, std::function<void()> fn,
                    runtime::tasklet_kind kind) override {
    tasklets_[&t] = {std::move(fn), kind, false};
  }
  bool tasklet_schedule(runtime::tasklet& t) override {
    item& it = tasklets_.at(&t);
    if (it.dead || queued(&t)) return false;
    (it.kind == runtime::tasklet_kind::plain ? plain_ : softirq_).push_back(&t);
    return true;
  }
  void tasklet_kill(runtime::tasklet& t) override {
    std::erase(plain_, &t);
    std::erase(softirq_, &t);
    tasklets_.at(&t).dead = true;
  }
  void process_pending_softirqs() override {
    if (in_softirq_) return;
    run_softirqs();
  }
  void work_init(runtime::work_item& w, std::function<void()> fn) override {
    work_[&w] = std::move(fn);
  }
  bool schedule_work(runtime::work_item& w) override {
    if (work_pending(w)) return false;
    work_queue_.push_back(&w);
    return true;
  }
  bool flush_work(runtime::work_item& w) override {
    if (!work_pending(w)) return false;
    std::erase(work_queue_, &w);
    work_.at (&w)();
    return true;
  }
  bool work_pending(const runtime::work_item& w) const override {
    for (const runtime::work_item* q : work_queue_)
      if (q == &w) return true;
    return false;
  }
  void timer_init(runtime::timer& t, std::function<void()> fn, unsigned cpu) override {
    EXPECT_LT(cpu, cpus_);
    timers_[&t] = {std::move(fn), false, false, 0};
  }
  void set_timer(runtime::timer& t, std::uint64_t expires_ns) override {
    timer_item& it = timers_.at(&t);
    if (it.dead) return;
    it.armed = true;
    it.expires = expires_ns;
  }
  void kill_timer(runtime::timer& t) override {
    timers_.at(&t).armed = false;
    timers_.at(&t).dead = true;
  }
  runtime::notifier_id register_cpu_notifier(runtime::cpu_notifier n, bool replay) override {
    if (replay) {
      (void)n(runtime::cpu_event::up_prepare, 0);
      (void)n(runtime::cpu_event::online, 0);
    }
    notifiers_.emplace(++last_id_, std::move(n));
    return last_id_;
  }
  void unregister_cpu_notifier(runtime::notifier_id id) override {
    EXPECT_EQ(notifiers_.erase(id), 1u);
  }

  // The CPU's scheduler point: softirqs (expired timers, softirq tasklets), then plain tasklets
  // and work items, until nothing is left.
  void scheduler_point() {
    run_softirqs();
    for (;;) {
      if (!plain_.empty()) {
        runtime::tasklet* t = plain_.front();
        plain_.pop_front();
        tasklets_.at(t).fn();
      } else if (!work_queue_.empty()) {
        runtime::work_item* w = work_queue_.front();
        work_queue_.pop_front();
        work_.at(w)();
      } else {
        return;
      }
    }
  }
  void advance(std::uint64_t ns) { now_ += ns; }
  [[nodiscard]] std::size_t notifiers() const { return notifiers_.size(); }
  [[nodiscard]] std::size_t armed_timers() const {
    std::size_t n = 0;
    for (const auto& [t, it] : timers_)
      n += it.armed ? 1 : 0;
    return n;
  }

  std::uint64_t waits = 0;

 private:
  struct item {
    std::function<void()> fn;
    runtime::tasklet_kind kind;
    bool dead;
  };
  struct timer_item {
    std::function<void()> fn;
    bool armed, dead;
    std::uint64_t expires;
  };
  bool queued(const runtime::tasklet* t) const {
    return std::find(plain_.begin(), plain_.end(), t) != plain_.end() ||
           std::find(softirq_.begin(), softirq_.end(), t) != softirq_.end();
  }
  void run_softirqs() {
    in_softirq_ = true;
    for (bool ran = true; ran;) {
      ran = false;
      for (auto& [t, it] : timers_) {
        if (it.armed && it.expires <= now_) {
          it.armed = false;
          it.fn();
          ran = true;
          break;  // the callback may have re-armed or killed timers
        }
      }
      if (!ran && !softirq_.empty()) {
        runtime::tasklet* t = softirq_.front();
        softirq_.pop_front();
        tasklets_.at(t).fn();
        ran = true;
      }
    }
    in_softirq_ = false;
  }

  const unsigned cpus_;
  unsigned cpu_ = 0;
  std::uint64_t now_ = 1000;
  bool in_softirq_ = false;
  std::map<runtime::tasklet*, item> tasklets_;
  std::deque<runtime::tasklet*> plain_, softirq_;
  std::map<runtime::work_item*, std::function<void()>> work_;
  std::deque<runtime::work_item*> work_queue_;
  std::map<runtime::timer*, timer_item> timers_;
  std::map<runtime::notifier_id, runtime::cpu_notifier> notifiers_;
  runtime::notifier_id last_id_ = 0;
};

// Invalidations complete `latency_ns` of kernel time after they are submitted.
class timed_backend final : public invalidation_backend {
 public:
  static constexpr std::uint64_t latency_ns = 5000;
  explicit timed_backend(toy_kernel& k) : k_(k) {}

  Result<epoch_t> invalidate(domain_number, const invalidation_range& range) override {
    subs_.push_back({range, k_.now_ns() + latency_ns});
    return static_cast<epoch_t>(subs_.size());
  }
  epoch_t stamp(domain_number) noexcept override { return subs_.size(); }
  epoch_t completed(domain_number) noexcept override {
    epoch_t e = 0;
    while (e < subs_.size() && subs_[e].done_ns <= k_.now_ns())
      ++e;
    return e;
  }
  epoch_t completed_full(domain_number d) noexcept override {
    epoch_t full = 0;
    for (epoch_t e = completed(d); e > 0 && full == 0; --e)
      if (subs_[e - 1].range.domain_wide() && subs_[e - 1].range.nonleaf) full = e;
    return full;
  }
  bool wait(domain_number d, epoch_t e, std::uint64_t timeout_ns) override {
    if (on_wait) std::exchange(on_wait, nullptr)();  // once: another CPU acts meanwhile
    return k_.wait_until([&] { return completed(d) >= e; }, timeout_ns);
  }
  std::function<void()> on_wait;  // run at the start of the next wait()
  // Some invalidation numbered > after, non-leaf and covering [first, last], has completed.
  [[nodiscard]] bool covered_since(epoch_t after, pt::iova_t first, pt::iova_t last) {
    for (epoch_t e = after + 1; e <= completed(0); ++e)
      if (subs_[e - 1].range.covers(first, last)) return true;
    return false;
  }
  [[nodiscard]] std::size_t submitted() const { return subs_.size(); }

 private:
  struct sub {
    invalidation_range range;
    std::uint64_t done_ns;
  };
  toy_kernel& k_;
  std::vector<sub> subs_;
};

// S3 and S2 at every free.
class checking_observer final : public reclaim_observer {
 public:
  explicit checking_observer(timed_backend& b) : b_(b) {}
  void on_retire(domain_number, mem::frame_id f, const invalidation_range& need) override {
    retired_[f.value] = {need, b_.stamp(0)};
  }
  void on_free(mem::frame_id f, const char* path) override {
    const auto it = retired_.find(f.value);
    ASSERT_NE(it, retired_.end()) << "freed a frame never retired (or twice), path " << path;
    EXPECT_TRUE(b_.covered_since(it->second.stamp, it->second.need.first, it->second.need.last))
        << "frame " << f.value << " freed (" << path
        << ") before an invalidation covering it completed";
    retired_.erase(it);
    ++freed;
  }
  std::uint64_t freed = 0;

 private:
  struct rec {
    invalidation_range need;
    epoch_t stamp;
  };
  timed_backend& b_;
  std::unordered_map<std::uint32_t, rec> retired_;
};

constexpr domain_number dom = 1;

// A gather that releases one table frame of `dom` (allocated here, marked retired) at 2 MiB
// block i, as an unmap that emptied the table would.
pt::gather one_table(mem::frame_pool& pool, unsigned i) {
  Result<mem::frame_id> f = pool.alloc_table(dom, 1);
  PTR_ASSERT_MSG(f.ok(), "the test's pool is too small");
  const Status retired = pool.mark_retired(*f);
  PTR_ASSERT_MSG(retired.ok(), "a fresh table could not be marked retired");
  pt::gather g;
  const pt::iova_t base = pt::iova_t{i} << 21;
  g.add_range(base, base + (pt::iova_t{1} << 21) - 1);
  g.set_nonleaf_changed();
  g.add_released(*f);
  return g;
}

// `n` table frames released by one unmap at 2 MiB blocks i .. i + n - 1.
pt::gather tables(mem::frame_pool& pool, unsigned i, unsigned n) {
  pt::gather g;
  for (unsigned k = 0; k < n; ++k) {
    const pt::gather one = one_table(pool, i + k);
    g.add_range(one.first(), one.last());
    g.add_released(one.released().front());
  }
  g.set_nonleaf_changed();
  return g;
}

struct toy_param {
  policy_kind policy;
  bool caller_flush;  // Xen's contract: the caller invalidates after each retire
};

class KernelInterface : public testing::TestWithParam<toy_param> {};

TEST_P(KernelInterface, PolicyFreesOnlyAfterItsInvalidationCompleted) {
  const toy_param p = GetParam();
  toy_kernel k;
  mem::frame_pool pool(mem::pool_config{.capacity_frames = 64}, k);
  timed_backend b(k);
  checking_observer obs(b);
  reclaim_config cfg;
  cfg.flush_age_ns = 20'000;
  cfg.poll_ns = 1000;
  cfg.wait_timeout_ns = 1'000'000;
  {
    auto made = make_reclaimer(p.policy, reclaim_env{k, b, pool, &obs}, cfg);
    ASSERT_TRUE(made.ok()) << made.status().to_string();
    reclaimer& r = **made;

    constexpr unsigned frames = 6;
    for (unsigned i = 0; i < frames; ++i) {
      const pt::gather g = one_table(pool, i);
      r.retire(dom, g);
      if (p.caller_flush) {
        Result<epoch_t> e = invalidate_after_retire(r, b, dom, g, cfg.wait_timeout_ns);
        ASSERT_TRUE(e.ok()) << e.status().to_string();
      }
      k.advance(300);
      k.scheduler_point();
    }
    // The deferred policies get their frames freed by the kernel's timers, tasklets and work.
    for (unsigned round = 0; round < 1000 && r.pending() != 0; ++round) {
      k.advance(1000);
      k.scheduler_point();
    }
    EXPECT_EQ(r.pending(), 0u) << r.describe_pending();
    EXPECT_EQ(obs.freed, frames);
    EXPECT_GE(b.submitted(), 1u);
    // sync waits for its invalidation inside retire: time moved only in wait_until.
    if (p.policy == policy_kind::sync) {
      EXPECT_GT(k.waits, 0u);
    }
    ASSERT_TRUE(r.drain().ok());
    const reclaim_stats st = r.stats();
    EXPECT_EQ(st.retired, frames);
    EXPECT_EQ(st.freed, frames);
  }
  // The policy unregistered its notifier and left nothing armed.
  EXPECT_EQ(k.notifiers(), 0u);
  EXPECT_EQ(k.armed_timers(), 0u);
}

INSTANTIATE_TEST_SUITE_P(Policies, KernelInterface,
                         testing::Values(toy_param{policy_kind::sync, false},
                                         toy_param{policy_kind::linux_global_work, false},
                                         toy_param{policy_kind::flush_epoch, false},
                                         toy_param{policy_kind::flush_epoch, true},
                                         toy_param{policy_kind::xen_tasklet, true}),
                         [](const testing::TestParamInfo<toy_param>& i) {
                           std::string name(policy_name(i.param.policy));
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name + (i.param.caller_flush ? "_caller_flush" : "");
                         });

// Linux's work item takes the list (splice) BEFORE it invalidates: a frame retired while the
// worker waits for its invalidation stays on the list for the next run. Deterministic: the
// backend retires a frame ("another CPU") at the start of the worker's wait. A worker that
// invalidated first and spliced afterwards would free that frame uncovered.
TEST(KernelInterfaceLinuxGlobalWork, ARetireDuringTheWorkersFlushWaitsForTheNextOne) {
  toy_kernel k;
  mem::frame_pool pool(mem::pool_config{.capacity_frames = 16}, k);
  timed_backend b(k);
  checking_observer obs(b);
  reclaim_config cfg;
  cfg.wait_timeout_ns = 1'000'000;
  auto made = make_reclaimer(policy_kind::linux_global_work, reclaim_env{k, b, pool, &obs}, cfg);
  ASSERT_TRUE(made.ok());
  reclaimer& r = **made;
  r.retire(dom, one_table(pool, 0));
  bool raced = false;
  b.on_wait = [&] {
    r.retire(dom, one_table(pool, 1));
    raced = true;
  };
  for (unsigned round = 0; round < 100 && (r.pending() != 0 || !raced); ++round) {
    k.advance(1000);
    k.scheduler_point();
  }
  EXPECT_TRUE(raced) << "the worker never waited for an invalidation";
  EXPECT_EQ(r.pending(), 0u) << r.describe_pending();
  EXPECT_EQ(obs.freed, 2u);
  ASSERT_TRUE(r.drain().ok());
}

// dma-iommu's fq_flush_iotlb brackets its flush with two counters that other flushes move too,
// so the timer's pass over the rings can find fq_flush_finish_cnt one short while another
// CPU's flush is in flight, and leave an entry queued after that flush started. In Linux the
// entry then waits for the domain's next unmap (which arms a timer); a flush that is followed by
// no queuing (here: back-pressure for a gather larger than the CPU's budget, freed inline) leaves
// it there in an idle domain. The policy re-arms the timer when its pass leaves entries behind
// and none is armed, so the machine going quiet still frees everything (L1). Deterministic: the
// backend runs "CPU 1" (an unmap, then the timer) inside CPU 0's back-pressure flush.
TEST(KernelInterfaceLinuxDmaFq, TheTimerRearmsWhenAFlushInFlightLeftAnEntryBehind) {
  toy_kernel k(2);
  mem::frame_pool pool(mem::pool_config{.capacity_frames = 16}, k);
  timed_backend b(k);
  checking_observer obs(b);
  reclaim_config cfg;
  cfg.max_pending = 4;  // 2 frames per CPU: a 3-frame gather is freed inline
  cfg.wait_timeout_ns = 1'000'000;
  auto made = make_reclaimer(policy_kind::linux_dma_fq, reclaim_env{k, b, pool, &obs}, cfg);
  ASSERT_TRUE(made.ok());
  reclaimer& r = **made;
  k.as_cpu(1);
  r.retire(dom, one_table(pool, 0));  // CPU 1 arms the timer
  k.as_cpu(0);
  r.retire(dom, one_table(pool, 1));  // CPU 0's budget now holds 1 of 2
  bool raced = false;
  b.on_wait = [&] {  // inside CPU 0's back-pressure flush (fq_flush_start_cnt 1, finish 0)
    k.as_cpu(1);
    r.retire(dom, one_table(pool, 2));  // counter 1; the timer is armed: no new one
    k.advance(cfg.fq_timeout_ns);
    k.process_pending_softirqs();  // the timer: its flush is the second; finish_cnt then 1
    k.as_cpu(0);
    raced = true;
  };
  r.retire(dom, tables(pool, 3, 3));  // more than CPU 0's budget: room first, then inline
  EXPECT_TRUE(raced) << "CPU 0 never waited for a back-pressure flush";
  for (unsigned round = 0; round < 100 && r.pending() != 0; ++round) {
    k.advance(cfg.fq_timeout_ns);
    k.scheduler_point();
  }
  EXPECT_EQ(r.pending(), 0u) << "an entry stayed queued with no timer armed:\n"
                             << r.describe_pending();
  EXPECT_EQ(obs.freed, 6u);
  EXPECT_EQ(r.stats().timer_rearms, 1u);
  ASSERT_TRUE(r.drain().ok());
}

// The test can fail: the unsafe `immediate` policy, on the same kernel, frees before any
// invalidation, and the observer catches it.
TEST(KernelInterfaceCanary, ImmediateIsCaught) {
  toy_kernel k;
  mem::frame_pool pool(mem::pool_config{.capacity_frames = 16}, k);
  timed_backend b(k);
  checking_observer obs(b);
  auto made = make_reclaimer(policy_kind::immediate, reclaim_env{k, b, pool, &obs});
  ASSERT_TRUE(made.ok());
  const pt::gather g = one_table(pool, 0);
  reclaimer& r = **made;
  EXPECT_NONFATAL_FAILURE(r.retire(dom, g), "before an invalidation covering it");
}

}  // namespace
}  // namespace ptreclaim::reclaim
