// linux-dma-fq: dma-iommu's flush queue (drivers/iommu/dma-iommu.c, Linux 6.x), faithfully.
// Design note: docs/linux-dma-fq.md.
//
// Per domain a "cookie" (iommu_dma_init_fq, built on the domain's first unmap): per-CPU rings
// (struct iova_fq) of fq_entries slots, each ring under its own spinlock; two shared counters
// fq_flush_start_cnt and fq_flush_finish_cnt; one timer, armed by whichever CPU wins the
// exchange of fq_timer_on. An entry is one unmap: its IOVA range, the page-table frames it
// released (the freelist) and the start counter read when it was queued.
//
//   queue_iova          (retire_deferred; retire with no IOVA) on the unmapping CPU: a full
//                       fence, take the ring lock, free the entries whose counter is below
//                       finish_cnt (fq_ring_free_locked), if the ring is full flush synchronously
//                       (fq_flush_iotlb) and free again, add the entry (counter = start_cnt),
//                       drop the lock, arm the timer unless fq_timer_on is already set.
//   fq_flush_iotlb      start_cnt++, a domain-wide invalidation (flush_iotlb_all: non-leaf, every
//                       IOMMU of the domain) waited for, finish_cnt++.
//   fq_flush_timeout    (the timer, fq_timeout_ns after it was armed): clear fq_timer_on, flush,
//                       then every CPU's ring, offline CPUs' included, under its lock.
// An entry is freed once finish_cnt > its counter: a flush that started after the entry was
// queued has finished. fq_single_queue: one shared ring (IOVA_SINGLE_FQ_SIZE, 1 s timer).
//
// Off the faithful path, as for the other policies: admission against max_pending before the
// frames are accounted (S5; a full budget flushes like a full ring), a gather larger than the
// budget invalidated and freed inline, drain(), and the CPU-dead timer migration Linux's timer
// core does (timers_dead_cpu) made explicit: a timer armed on a CPU that dies is re-armed, with
// its expiry, on the CPU running CPU_DEAD; and a timer whose pass left entries behind arms the
// next one (fq_flush_timeout below; Linux leaves them to the domain's next unmap; counted as
// timer_rearms). Caller invalidations (strict callers of retire()) are not ridden on:
// dma-iommu's flush queue knows only its own flushes.
#include <array>
#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "../policies.hpp"
#include "../policy_base.hpp"
#include "ptreclaim/base/bits.hpp"
#include "ptreclaim/base/spinlock.hpp"

namespace ptreclaim::reclaim::detail {
namespace {

// struct iova_fq_entry
struct fq_entry {
  iova_range iova;
  frame_list freelist;
  std::uint64_t counter = 0;  // fq_flush_start_cnt when queued
};

// struct iova_fq: a ring of a power-of-two size that keeps one slot free (fq_full).
struct flush_queue {
  flush_queue(runtime::kernel& k, unsigned size, unsigned holder_in)
      : lock(k), mask(size - 1), holder(holder_in), entries(size) {}
  spinlock lock;
  unsigned head = 0, tail = 0;  // under lock
  const unsigned mask;
  const unsigned holder;  // whose pending count the entries' frames are on
  std::vector<fq_entry> entries;
  [[nodiscard]] bool full() const noexcept { return ((tail + 1) & mask) == head; }
  [[nodiscard]] unsigned used() const noexcept { return (tail - head) & mask; }
};

class linux_dma_fq_policy final : public policy_base {
 public:
  linux_dma_fq_policy(const reclaim_env& env, const reclaim_config& config)
      : policy_base(env, config,
                    config.fq_single_queue ? bound_scope::global : bound_scope::per_cpu),
        single_(config.fq_single_queue),
        fq_size_(single_ ? config.fq_single_entries : config.fq_entries),
        timeout_ns_(single_ ? config.fq_single_timeout_ns : config.fq_timeout_ns) {
    PTR_ASSERT_MSG(fq_size_ >= 2 && is_pow2(fq_size_),
                   "reclaim_config: flush-queue sizes must be powers of two >= 2");
    notifier_ = env_.rt.register_cpu_notifier(
        [this](runtime::cpu_event e, unsigned cpu) { return cpu_callback(e, cpu); });
  }
  ~linux_dma_fq_policy() override {
    env_.rt.unregister_cpu_notifier(notifier_);
    for (auto& c : owned_)
      for (unsigned cpu = 0; cpu < c->timers.size(); ++cpu)
        env_.rt.kill_timer(c->timers[cpu]);
  }

  // A strict caller's unmap (no IOVA): its freelist goes through the queue all the same.
  void retire(domain_number d, const pt::gather& g) override {
    if (g.released().empty()) return;
    queue_iova(d, g, iova_range{});
  }

  // __iommu_dma_unmap with gather->queued: iommu_dma_free_iova -> queue_iova.
  void retire_deferred(domain_number d, const pt::gather& g, const iova_range& iova) override {
    note_deferred_iova(iova);
    if (g.released().empty() && iova.empty()) return;
    queue_iova(d, g, iova);
  }

  Status drain() override {
    for (auto& c : owned_) {
      bool any = false;
      for (auto& q : c->queues) {
        std::lock_guard guard(q->lock);
        any = any || q->used() != 0;
      }
      if (!any) continue;  // nothing to flush for (drain may run outside any CPU)
      fq_flush_iotlb(*c);
      for (auto& q : c->queues)
        fq_ring_free(*c, *q);
    }
    return {};
  }

  [[nodiscard]] policy_kind kind() const noexcept override { return policy_kind::linux_dma_fq; }

  [[nodiscard]] std::string describe_pending() const override {
    std::string out = policy_base::describe_pending();
    for (const auto& c : owned_) {
      unsigned entries = 0, rings = 0;
      for (const auto& q : c->queues) {
        const unsigned n = q->used();
        entries += n;
        rings += n != 0 ? 1 : 0;
      }
      if (entries == 0) continue;
      const unsigned armed = c->armed_cpu.load(std::memory_order_relaxed);
      out += "domain " + std::to_string(c->domain) + ": " + std::to_string(entries) +
             " flush-queue entries on " + std::to_string(rings) + " rings, fq_flush_start_cnt " +
             std::to_string(c->start_cnt.load(std::memory_order_relaxed)) +
             ", fq_flush_finish_cnt " +
             std::to_string(c->finish_cnt.load(std::memory_order_relaxed)) + ", timer " +
             (armed == runtime::no_cpu ? std::string("not armed")
                                       : "armed on CPU " + std::to_string(armed)) +
             "\n";
    }
    return out;
  }

 private:
  // struct iommu_dma_cookie, the flush-queue part.
  struct cookie {
    cookie(linux_dma_fq_policy& p, domain_number d)
        : domain(d), timers(p.env_.rt.cpu_count(), [](unsigned) { return runtime::timer(); }) {
      const unsigned n = p.single_ ? 1 : p.env_.rt.cpu_count();
      for (unsigned q = 0; q < n; ++q) {
        queues.push_back(
            std::make_unique<flush_queue>(p.env_.rt, p.fq_size_, p.single_ ? global_holder : q));
        queues.back()->lock.name(p.single_ ? "linux-dma-fq: the single queue's lock"
                                           : "linux-dma-fq: a CPU's ring lock");
      }
      p.env_.rt.name_shared(&start_cnt, "linux-dma-fq: fq_flush_start_cnt");
      p.env_.rt.name_shared(&finish_cnt, "linux-dma-fq: fq_flush_finish_cnt");
      p.env_.rt.name_shared(&timer_on, "linux-dma-fq: fq_timer_on");
      for (unsigned cpu = 0; cpu < timers.size(); ++cpu)
        p.env_.rt.timer_init(
            timers[cpu], [&p, this] { p.fq_flush_timeout(*this); }, cpu);
    }
    const domain_number domain;
    std::vector<std::unique_ptr<flush_queue>> queues;
    alignas(runtime::cache_line_size) std::atomic<std::uint64_t> start_cnt{0};
    alignas(runtime::cache_line_size) std::atomic<std::uint64_t> finish_cnt{0};
    alignas(runtime::cache_line_size) std::atomic<unsigned> timer_on{0};
    // mod_timer queues the timer on the arming CPU: one timer object per CPU, at most one armed
    // (fq_timer_on). armed_cpu/expires_ns let CPU_DEAD migrate it.
    std::atomic<unsigned> armed_cpu{runtime::no_cpu};
    std::atomic<std::uint64_t> expires_ns{0};
    runtime::per_cpu<runtime::timer> timers;
  };

  // iommu_dma_init_fq, on the domain's first unmap (Linux: when the domain gets its cookie).
  cookie& cookie_of(domain_number d) {
    PTR_ASSERT_MSG(d < cookies_.size(), "linux-dma-fq: domain number beyond limits::max_domains");
    if (cookie* c = cookies_[d].load(std::memory_order_acquire)) return *c;
    std::lock_guard guard(create_mu_);
    if (cookie* c = cookies_[d].load(std::memory_order_acquire)) return *c;
    owned_.push_back(std::make_unique<cookie>(*this, d));
    cookie* c = owned_.back().get();
    cookies_[d].store(c, std::memory_order_release);  // pairs with the acquire loads above
    const unsigned n = ncookies_.load(std::memory_order_relaxed);
    by_age_[n].store(c, std::memory_order_release);
    ncookies_.store(n + 1, std::memory_order_release);  // pairs with make_room's acquire
    return *c;
  }

  void queue_iova(domain_number d, const pt::gather& g, const iova_range& iova) {
    cookie& c = cookie_of(d);
    const unsigned cpu = env_.rt.current_cpu();
    flush_queue& q = single_ ? *c.queues[0] : *c.queues[cpu];
    const std::uint64_t n = g.released().size();
    if (n > admission_limit()) {  // larger than the whole budget: invalidate and free inline
      ++counters().backpressure;
      (void)retire_inline(d, g, cpu, "linux-dma-fq-sync", covering(g, iova),
                          [&] { make_room(cpu); });
      return_iova(d, iova);
      return;
    }
    // Admission before the frames are accounted, so pending never exceeds the bound.
    if (n != 0 && admit(cpu, n, [&] { make_room(cpu); })) ++counters().backpressure;
    // smp_mb(): orders the unmap's PTE clears before the counter read below.
    env_.rt.charge(cost_kind::lock_uncontended);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    {
      std::lock_guard guard(q.lock);
      fq_ring_free_locked(c, q);
      if (q.full()) {
        fq_flush_iotlb(c);
        fq_ring_free_locked(c, q);
      }
      fq_entry& e = q.entries[q.tail];
      q.tail = (q.tail + 1) & q.mask;
      e.iova = iova;
      env_.rt.touch_line(&c.start_cnt, false);
      e.counter = c.start_cnt.load(std::memory_order_relaxed);
      if (n != 0) {
        account_frames(d, invalidation_range{g.first(), g.last(), true}, g.released(), q.holder);
        for (mem::frame_id f : g.released()) {
          env_.rt.charge(cost_kind::enqueue);
          e.freelist.push_back(env_.pool, f);
        }
      }
    }
    (void)arm_timer(c, cpu);
  }

  // The winner of fq_timer_on arms its CPU's timer; returns whether this call did. "Avoid false
  // sharing as much as possible": read before the exchange.
  bool arm_timer(cookie& c, unsigned cpu) {
    env_.rt.touch_line(&c.timer_on, false);
    if (c.timer_on.load(std::memory_order_relaxed) != 0) return false;
    env_.rt.touch_line(&c.timer_on, true);
    if (c.timer_on.exchange(1, std::memory_order_acq_rel) != 0) return false;
    const std::uint64_t at = env_.rt.now_ns() + timeout_ns_;
    c.expires_ns.store(at, std::memory_order_relaxed);
    c.armed_cpu.store(cpu, std::memory_order_relaxed);
    env_.rt.set_timer(c.timers[cpu], at);
    return true;
  }

  // fq_ring_free_locked: frees, in order, the entries a finished flush started after.
  void fq_ring_free_locked(cookie& c, flush_queue& q) {
    env_.rt.touch_line(&c.finish_cnt, false);
    const std::uint64_t finished = c.finish_cnt.load(std::memory_order_acquire);
    while (q.head != q.tail) {
      fq_entry& e = q.entries[q.head];
      if (e.counter >= finished) break;
      free_list(e.freelist, "linux-dma-fq", q.holder);
      return_iova(c.domain, e.iova);
      e.iova = iova_range{};
      q.head = (q.head + 1) & q.mask;
    }
  }

  void fq_ring_free(cookie& c, flush_queue& q) {
    std::lock_guard guard(q.lock);
    fq_ring_free_locked(c, q);
  }

  // fq_flush_iotlb: the counters bracket a synchronous domain-wide flush.
  void fq_flush_iotlb(cookie& c) {
    env_.rt.touch_line(&c.start_cnt, true);
    c.start_cnt.fetch_add(1, std::memory_order_acq_rel);
    invalidate_and_wait(c.domain, invalidation_range::whole_domain());
    env_.rt.touch_line(&c.finish_cnt, true);
    c.finish_cnt.fetch_add(1, std::memory_order_release);  // pairs with fq_ring_free_locked
  }

  // Back-pressure (off the faithful path), from outside any ring lock: what this CPU's budget
  // holds may sit in any domain's ring of this CPU, so every domain is flushed and those rings
  // freed; with one shared bound (single queue, or max_pending below one frame per CPU) the room
  // may sit in any ring, so all are freed, as the timer does.
  void make_room(unsigned cpu) {
    const unsigned n = ncookies_.load(std::memory_order_acquire);
    for (unsigned i = 0; i < n; ++i) {
      cookie& c = *by_age_[i].load(std::memory_order_acquire);
      fq_flush_iotlb(c);
      if (global_bound()) {
        for (auto& q : c.queues)
          fq_ring_free(c, *q);
      } else {
        fq_ring_free(c, *c.queues[cpu]);
      }
    }
  }

  // fq_flush_timeout: every ring, those of offline CPUs too (for_each_possible_cpu).
  void fq_flush_timeout(cookie& c) {
    ++counters().worker_runs;
    c.armed_cpu.store(runtime::no_cpu, std::memory_order_relaxed);
    env_.rt.touch_line(&c.timer_on, true);
    c.timer_on.store(0, std::memory_order_release);
    fq_flush_iotlb(c);
    bool left = false;
    for (auto& q : c.queues) {
      std::lock_guard guard(q->lock);
      fq_ring_free_locked(c, *q);
      left = left || q->used() != 0;
    }
    // Off the faithful path: another CPU's flush in flight (started before an entry was queued,
    // finished after this pass read fq_flush_finish_cnt) can leave an entry whose CPU saw this
    // timer armed. Linux leaves it for the domain's next unmap; a quiet domain would keep it.
    if (left && arm_timer(c, env_.rt.current_cpu())) ++counters().timer_rearms;
  }

  runtime::notify_result cpu_callback(runtime::cpu_event e, unsigned cpu) {
    if (e != runtime::cpu_event::dead) return runtime::notify_result::done;
    // timers_dead_cpu: a timer pending on the dead CPU moves to this one, expiry kept.
    const unsigned here = env_.rt.current_cpu();
    std::lock_guard guard(create_mu_);
    for (auto& c : owned_) {
      if (c->armed_cpu.load(std::memory_order_relaxed) != cpu) continue;
      env_.rt.kill_timer(c->timers[cpu]);
      cookie* raw = c.get();
      env_.rt.timer_init(
          c->timers[cpu], [this, raw] { fq_flush_timeout(*raw); }, cpu);
      c->armed_cpu.store(here, std::memory_order_relaxed);
      env_.rt.set_timer(c->timers[here], c->expires_ns.load(std::memory_order_relaxed));
    }
    return runtime::notify_result::done;
  }

  const bool single_;
  const unsigned fq_size_;
  const std::uint64_t timeout_ns_;
  std::mutex create_mu_;  // cookie creation and the CPU_DEAD walk over them (not a hot path)
  std::vector<std::unique_ptr<cookie>> owned_;
  std::array<std::atomic<cookie*>, limits::max_domains> cookies_{};
  // The cookies in creation order, readable without create_mu_ (make_room).
  std::array<std::atomic<cookie*>, limits::max_domains> by_age_{};
  std::atomic<unsigned> ncookies_{0};
  runtime::notifier_id notifier_ = 0;
};

}  // namespace

std::unique_ptr<reclaimer> make_linux_dma_fq(const reclaim_env& env, const reclaim_config& config) {
  return std::make_unique<linux_dma_fq_policy>(env, config);
}

}  // namespace ptreclaim::reclaim::detail
