// A tiny platform for the flush-epoch core's tests: a fake IOMMU whose invalidations complete
// only when a test (or a "hardware" thread) says so, per-CPU timers the test fires, and an
// independent safety checker on every free.
//
// The checker shares nothing with the core's epochs: at each retire the test records, per
// frame, the newest invalidation number of its domain at its unlink (unlinked_at); at each free
// it looks in the fake hardware's log for an invalidation numbered after that, completed, and
// either full or containing the frame's range. A frame freed without one, twice, never retired
// or as another domain's is a violation; deferred IOVA ranges (lazy DMA) are checked the same
// way against their unmap.
//
// Thread safety: the platform's members may be called from any thread (the CPU is a
// thread_local); the log and the ledger are under one mutex, never held while calling the core.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "ptreclaim/core/flush_epoch_core.hpp"

namespace ptreclaim::core::testing {

class test_platform {
 public:
  using frame = std::uint32_t;

  static constexpr unsigned max_cpus = 8;

  test_platform(unsigned domains, std::uint32_t max_frames) : doms_(domains), ledger_(max_frames) {}

  // ---- the platform interface ----
  unsigned current_cpu() const noexcept { return cpu_; }
  std::uint64_t now_ns() noexcept { return clock_.load(std::memory_order_relaxed); }
  void arm_timer(unsigned cpu, std::uint64_t at) noexcept {
    timer_at_[cpu].store(at, std::memory_order_relaxed);
    timer_armed_[cpu].store(true, std::memory_order_release);
    arms_.fetch_add(1, std::memory_order_relaxed);
  }
  epoch_t invalidate(domain_id d, iova_range r) {
    std::lock_guard<std::mutex> g(mu_);
    if (fail_invalidate_) return 0;
    domain& dom = doms_[d];
    const epoch_t e = dom.started.fetch_add(1, std::memory_order_seq_cst) + 1;  // [core-7]
    dom.log.push_back({r, r.whole(), false});
    ++invalidations_;
    return e;
  }
  // A synchronous flush of some domain runs on another CPU (set_flush_busy).
  bool flush_busy(domain_id /*d*/) noexcept { return flush_busy_.load(std::memory_order_relaxed); }
  epoch_t stamp(domain_id d) noexcept {
    std::atomic_thread_fence(std::memory_order_seq_cst);  // [core-1]
    return doms_[d].started.load(std::memory_order_relaxed);
  }
  epoch_t completed(domain_id d) {
    polls_.fetch_add(1, std::memory_order_relaxed);
    if (complete_on_poll_.load(std::memory_order_relaxed)) complete_all(d);
    return completed_seen(d);
  }
  epoch_t completed_full(domain_id d) {
    polls_.fetch_add(1, std::memory_order_relaxed);
    if (complete_on_poll_.load(std::memory_order_relaxed)) complete_all(d);
    return completed_full_seen(d);
  }
  // Hardware polls so far (completed or completed_full).
  std::uint64_t polls() const noexcept { return polls_.load(std::memory_order_relaxed); }
  epoch_t completed_seen(domain_id d) noexcept {
    return doms_[d].completed.load(std::memory_order_acquire);  // [core-2]
  }
  epoch_t completed_full_seen(domain_id d) noexcept {
    return doms_[d].completed_full.load(std::memory_order_acquire);  // [core-2]
  }
  bool wait(domain_id d, epoch_t e) {
    if (!complete_on_wait_.load(std::memory_order_relaxed)) return completed_seen(d) >= e;
    complete_through(d, e);
    return completed_seen(d) >= e;
  }
  void free_frames(unsigned /*ring*/, domain_id d, const frame* fs, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i)
      free_frame(d, fs[i]);
  }
  // An IOVA range goes back: it must have been retired (unmapped) and not freed since, and an
  // invalidation numbered after its unmap, completed and covering it, must exist.
  void free_iovas(unsigned /*ring*/, domain_id d, const iova_range* rs, std::size_t k) {
    std::lock_guard<std::mutex> g(mu_);
    for (std::size_t i = 0; i < k; ++i) {
      ++iova_frees_;
      auto it = iovas_.find(key(d, rs[i]));
      if (it == iovas_.end() || it->second.freed) {
        violations_.push_back("IOVA " + std::to_string(rs[i].first) +
                              (it == iovas_.end() ? " never retired" : " freed twice"));
        continue;
      }
      it->second.freed = true;
      if (!covered_locked(it->second))
        violations_.push_back("IOVA " + std::to_string(rs[i].first) + " of domain " +
                              std::to_string(d) + " handed back before an invalidation after its " +
                              "unmap covering it completed");
    }
  }
  void free_frame(domain_id d, frame f) {
    std::lock_guard<std::mutex> g(mu_);
    record& r = ledger_[f];
    ++frees_;
    if (!r.retired || r.freed) {
      violations_.push_back("frame " + std::to_string(f) +
                            (r.freed ? " freed twice" : " never retired"));
      return;
    }
    r.freed = true;
    if (r.d != d)
      violations_.push_back("frame " + std::to_string(f) + " freed as another domain's");
    if (!covered_locked(r))
      violations_.push_back("frame " + std::to_string(f) + " of domain " + std::to_string(r.d) +
                            " freed before an invalidation after its unlink (" +
                            std::to_string(r.unlinked_at) + ") covering it completed");
  }
  void core_bug(const char* what) {
    std::lock_guard<std::mutex> g(mu_);
    violations_.push_back(std::string("core_bug: ") + what);
  }

  // ---- the test's controls ----
  static void set_cpu(unsigned c) { cpu_ = c; }
  void advance(std::uint64_t ns) { clock_.fetch_add(ns, std::memory_order_relaxed); }
  void set_complete_on_poll(bool v) { complete_on_poll_.store(v, std::memory_order_relaxed); }
  void set_flush_busy(bool v) { flush_busy_.store(v, std::memory_order_relaxed); }
  void set_complete_on_wait(bool v) { complete_on_wait_.store(v, std::memory_order_relaxed); }
  void set_fail_invalidate(bool v) {
    std::lock_guard<std::mutex> g(mu_);
    fail_invalidate_ = v;
  }

  // Marks invalidation e of d completed (any order) and advances the counters: completed to the
  // longest completed prefix, completed_full to the newest completed full one.
  void complete(domain_id d, epoch_t e) {
    std::lock_guard<std::mutex> g(mu_);
    complete_locked(d, e);
  }
  void complete_through(domain_id d, epoch_t e) {
    std::lock_guard<std::mutex> g(mu_);
    for (epoch_t i = 1; i <= e && i <= doms_[d].log.size(); ++i)
      complete_locked(d, i);
  }
  void complete_all(domain_id d) {
    std::lock_guard<std::mutex> g(mu_);
    for (epoch_t i = 1; i <= doms_[d].log.size(); ++i)
      complete_locked(d, i);
  }
  epoch_t started(domain_id d) const { return doms_[d].started.load(std::memory_order_seq_cst); }

  // Records frames [first, first + n) as unlinked now (the ledger's unlinked_at), before the
  // test hands them to retire().
  void unlink(domain_id d, iova_range r, frame first, std::uint32_t n) {
    std::lock_guard<std::mutex> g(mu_);
    for (frame f = first; f < first + n; ++f) {
      record& rec = ledger_[f];
      rec.d = d;
      rec.r = r;
      rec.unlinked_at = doms_[d].started.load(std::memory_order_seq_cst);
      rec.retired = true;
    }
  }
  // Records IOVA range r of d as unmapped now, before the test hands it to retire().
  void unmap(domain_id d, iova_range r) {
    std::lock_guard<std::mutex> g(mu_);
    record& rec = iovas_[key(d, r)];
    rec = record{};
    rec.d = d;
    rec.r = r;
    rec.unlinked_at = doms_[d].started.load(std::memory_order_seq_cst);
    rec.retired = true;
  }
  // IOVA ranges unmapped and not handed back.
  std::uint64_t outstanding_iovas() {
    std::lock_guard<std::mutex> g(mu_);
    std::uint64_t n = 0;
    for (const auto& [k, r] : iovas_)
      n += r.retired && !r.freed ? 1 : 0;
    return n;
  }
  bool iova_freed(domain_id d, iova_range r) {
    std::lock_guard<std::mutex> g(mu_);
    auto it = iovas_.find(key(d, r));
    return it != iovas_.end() && it->second.freed;
  }
  std::uint64_t iova_frees() {
    std::lock_guard<std::mutex> g(mu_);
    return iova_frees_;
  }

  // retire() refused them: the caller keeps them.
  void unretire(frame first, std::uint32_t n) {
    std::lock_guard<std::mutex> g(mu_);
    for (frame f = first; f < first + n; ++f)
      ledger_[f].retired = false;
  }

  // Frames retired and not freed; violations so far.
  std::uint64_t outstanding() {
    std::lock_guard<std::mutex> g(mu_);
    std::uint64_t n = 0;
    for (const record& r : ledger_)
      n += r.retired && !r.freed ? 1 : 0;
    return n;
  }
  bool freed(frame f) {
    std::lock_guard<std::mutex> g(mu_);
    return ledger_[f].freed;
  }
  std::vector<std::string> violations() {
    std::lock_guard<std::mutex> g(mu_);
    return violations_;
  }
  std::uint64_t invalidations() {
    std::lock_guard<std::mutex> g(mu_);
    return invalidations_;
  }
  std::uint64_t frees() {
    std::lock_guard<std::mutex> g(mu_);
    return frees_;
  }
  // CPU c's timer, if armed and due, is disarmed and true is returned (the caller then runs
  // core.on_timer(c) on c).
  bool take_due_timer(unsigned c) {
    if (!timer_armed_[c].load(std::memory_order_acquire)) return false;
    if (timer_at_[c].load(std::memory_order_relaxed) > now_ns()) return false;
    return timer_armed_[c].exchange(false, std::memory_order_acq_rel);
  }
  bool timer_armed(unsigned c) const { return timer_armed_[c].load(std::memory_order_acquire); }
  std::uint64_t timer_at(unsigned c) const { return timer_at_[c].load(std::memory_order_relaxed); }
  void kill_timer(unsigned c) { timer_armed_[c].store(false, std::memory_order_release); }
  std::uint64_t arms() const { return arms_.load(std::memory_order_relaxed); }

 private:
  struct logged {
    iova_range r;
    bool full;
    bool done;
  };
  struct domain {
    std::atomic<epoch_t> started{0};
    std::atomic<epoch_t> completed{0};
    std::atomic<epoch_t> completed_full{0};
    std::vector<logged> log;  // invalidation e is log[e - 1]
  };
  struct record {
    domain_id d = 0;
    iova_range r;
    epoch_t unlinked_at = 0;
    bool retired = false;
    bool freed = false;
  };

  static std::uint64_t key(domain_id d, iova_range r) {
    return (std::uint64_t{d} << 48) ^ r.first;  // tests keep IOVAs below 2^48
  }

  void complete_locked(domain_id d, epoch_t e) {
    domain& dom = doms_[d];
    if (e == 0 || e > dom.log.size()) return;
    dom.log[e - 1].done = true;
    epoch_t c = dom.completed.load(std::memory_order_relaxed);
    while (c < dom.log.size() && dom.log[c].done)
      ++c;
    dom.completed.store(c, std::memory_order_release);  // pairs with [core-2]
    if (dom.log[e - 1].full && e > dom.completed_full.load(std::memory_order_relaxed))
      dom.completed_full.store(e, std::memory_order_release);
  }
  bool covered_locked(const record& r) const {
    const domain& dom = doms_[r.d];
    for (epoch_t e = r.unlinked_at + 1; e <= dom.log.size(); ++e) {
      const logged& l = dom.log[e - 1];
      if (l.done && (l.full || l.r.contains(r.r))) return true;
    }
    return false;
  }

  static inline thread_local unsigned cpu_ = 0;
  std::atomic<std::uint64_t> clock_{1};
  std::atomic<bool> complete_on_poll_{false};
  std::atomic<std::uint64_t> polls_{0};
  std::atomic<bool> complete_on_wait_{true};
  std::atomic<bool> timer_armed_[max_cpus] = {};
  std::atomic<bool> flush_busy_{false};
  std::atomic<std::uint64_t> timer_at_[max_cpus] = {};
  std::atomic<std::uint64_t> arms_{0};
  std::mutex mu_;
  bool fail_invalidate_ = false;
  std::vector<domain> doms_;
  std::vector<record> ledger_;
  std::map<std::uint64_t, record> iovas_;  // by key(domain, first)
  std::uint64_t iova_frees_ = 0;
  std::vector<std::string> violations_;
  std::uint64_t invalidations_ = 0;
  std::uint64_t frees_ = 0;
};

}  // namespace ptreclaim::core::testing
