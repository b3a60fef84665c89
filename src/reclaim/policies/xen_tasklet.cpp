// Xen 4.17's iommu_queue_free_pgtable(), faithfully (xen/drivers/passthrough/x86/iommu.c):
// a per-CPU page list without locking, a per-CPU tasklet scheduled on every queued page, a
// worker that asserts it runs on its list's CPU and calls process_pending_softirqs() every 512
// frees, and the CPU notifier's four cases exactly as merged. Safety rests on an ordering
// assumption: the caller's synchronous IOTLB flush comes before the tasklet can run. A plain
// tasklet runs only at the scheduler/idle point, so that holds; the softirq-tasklet variant Jan
// Beulich considered (and rejected) also runs inside process_pending_softirqs(), so a softirq
// point between queuing and the caller's flush frees too early: that variant is a canary.
//
// Two additions, both off the faithful path: back-pressure at the configured bound (Xen relies
// on producers being preempted; see reclaim_config::max_pending), and drain() for teardown.
//
// Lazy DMA (retire_deferred) is not Xen's: Xen's callers always flush. A port keeps the design
// (the unmap's frames and its IOVA on the CPU's list, the tasklet scheduled) and moves the
// flush its safety rests on into the worker: the plain tasklet, finding deferred unmaps on its
// list, invalidates their domains (iommu_iotlb_flush_all: domain-wide, non-leaf) and waits
// before it frees the frames and gives the IOVAs back. The softirq-tasklet canary keeps its
// nature: it assumes the caller's flush came first, so it frees and gives the IOVAs back as soon
// as it runs (at the next softirq point), before any invalidation: S3 and S6 catch it.
#include <atomic>
#include <set>
#include <utility>
#include <vector>

#include "../policies.hpp"
#include "../policy_base.hpp"

namespace ptreclaim::reclaim::detail {
namespace {

class xen_policy final : public policy_base {
 public:
  xen_policy(const reclaim_env& env, const reclaim_config& config, runtime::tasklet_kind kind)
      : policy_base(env, config),
        kind_(kind),
        slots_(env.rt.cpu_count(), [&](unsigned) { return slot(env.rt); }) {
    // bsp_init(): CPU_UP_PREPARE for the CPUs already up, then register the notifier.
    notifier_ = env_.rt.register_cpu_notifier(
        [this](runtime::cpu_event e, unsigned cpu) { return cpu_callback(e, cpu); },
        /*replay_online=*/true);
  }
  ~xen_policy() override {
    env_.rt.unregister_cpu_notifier(notifier_);
    for (unsigned c = 0; c < slots_.size(); ++c) {
      if (slots_[c].initialised) env_.rt.tasklet_kill(slots_[c].tasklet);
    }
  }

  // iommu_queue_free_pgtable(), once per released page.
  void retire(domain_number d, const pt::gather& g) override {
    const unsigned cpu = env_.rt.current_cpu();
    slot& s = slots_[cpu];
    const std::uint64_t n = g.released().size();
    if (n == 0) return;
    // Larger than this CPU's share, or a bound below one frame per CPU (which per-CPU lists
    // cannot keep without waiting on other CPUs' tasklets): invalidate and free inline.
    if (global_bound() || n > per_cpu_budget()) {
      ++counters().backpressure;
      (void)retire_inline(d, g, cpu, "xen-backpressure",
                          invalidation_range{g.first(), g.last(), true},
                          [&] { invalidate_owners_and_free(s.list, "xen-backpressure", cpu); });
      return;
    }
    // Back-pressure before the frames are accepted, so pending never exceeds the bound.
    if (admit(cpu, n, [&] { invalidate_owners_and_free(s.list, "xen-backpressure", cpu); }))
      ++counters().backpressure;
    account_retire(d, g, cpu);
    for (mem::frame_id f : g.released()) {
      env_.rt.charge(cost_kind::enqueue);
      s.list.push_back(env_.pool, f);
      env_.rt.tasklet_schedule(s.tasklet);
    }
  }

  void retire_deferred(domain_number d, const pt::gather& g, const iova_range& iova) override {
    note_deferred_iova(iova);
    slot& s = slots_[env_.rt.current_cpu()];
    {
      std::lock_guard guard(s.lazy_lock);
      s.lazy_used.store(true, std::memory_order_relaxed);
      if (!iova.empty()) s.iovas.emplace_back(d, iova);
      s.lazy_domains.insert(d);
    }
    retire(d, g);
    env_.rt.tasklet_schedule(s.tasklet);
  }

  Status drain() override {
    for (unsigned c = 0; c < slots_.size(); ++c) {
      invalidate_owners_and_free(slots_[c].list, "xen-drain", c);
      lazy_batch b = take_lazy(slots_[c]);
      for (domain_number d : b.domains)
        invalidate_and_wait(d, invalidation_range::whole_domain());
      for (const auto& [d, r] : b.iovas)
        return_iova(d, r);
    }
    return {};
  }

  [[nodiscard]] policy_kind kind() const noexcept override {
    return kind_ == runtime::tasklet_kind::plain ? policy_kind::xen_tasklet
                                                 : policy_kind::xen_softirq_tasklet;
  }

 private:
  using deferred_iovas = std::vector<std::pair<domain_number, iova_range>>;
  struct slot {
    explicit slot(runtime::kernel& k) : lazy_lock(k) {
      lazy_lock.name("xen: a CPU's lazy-IOVA lock");
    }
    frame_list list;
    runtime::tasklet tasklet;
    bool initialised = false;
    // Lazy DMA (the port, see the file comment): unmaps not invalidated by their caller. A lock,
    // unlike the list, because the faithful CPU_DOWN_FAILED path runs a worker on another CPU.
    spinlock lazy_lock;
    // Set by the first retire_deferred (never cleared), so strict runs never take lazy_lock.
    // Relaxed: the tasklet_schedule after it orders it for this CPU's worker.
    std::atomic<bool> lazy_used{false};
    deferred_iovas iovas;
    std::set<domain_number> lazy_domains;
  };
  struct lazy_batch {
    deferred_iovas iovas;
    std::set<domain_number> domains;
  };
  lazy_batch take_lazy(slot& s) {
    lazy_batch b;
    if (!s.lazy_used.load(std::memory_order_relaxed)) return b;
    std::lock_guard guard(s.lazy_lock);
    b.iovas.swap(s.iovas);
    b.domains.swap(s.lazy_domains);
    return b;
  }

  const char* path() const noexcept {
    return kind_ == runtime::tasklet_kind::plain ? "xen-tasklet" : "xen-softirq-tasklet";
  }

  // free_queued_pgtables(list of `owner`).
  void free_queued_pgtables(unsigned owner) {
    ++counters().worker_runs;
    // ASSERT(list == &this_cpu(free_pgt_list)): reported, and the run goes on as a release
    // build would.
    if (env_.rt.current_cpu() != owner) report_wrong_cpu(owner, "free_queued_pgtables");
    frame_list& list = slots_[owner].list;
    // Lazy DMA: what was deferred up to now, frames included (they are on `list` already).
    lazy_batch lazy = take_lazy(slots_[owner]);
    if (kind_ == runtime::tasklet_kind::plain) {
      for (domain_number d : lazy.domains)
        invalidate_and_wait(d, invalidation_range::whole_domain());
    }
    unsigned done = 0;
    std::uint64_t now = env_.rt.now_ns();  // the latency clock, read again after each yield
    while (!list.empty()) {
      free_frame(list.pop_front(env_.pool), path(), owner, now);
      if ((++done % config_.xen_yield_every) == 0) {
        env_.rt.process_pending_softirqs();
        now = env_.rt.now_ns();
      }
    }
    for (const auto& [d, r] : lazy.iovas)
      return_iova(d, r);
  }

  runtime::notify_result cpu_callback(runtime::cpu_event action, unsigned cpu) {
    slot& s = slots_[cpu];
    switch (action) {
      case runtime::cpu_event::down_prepare:
        env_.rt.tasklet_kill(s.tasklet);
        break;
      case runtime::cpu_event::dead: {
        const unsigned here_cpu = env_.rt.current_cpu();
        slot& here = slots_[here_cpu];
        // Lazy DMA (the port): the dead CPU's deferred unmaps go with its list.
        lazy_batch moved = take_lazy(s);
        const bool lazy = !moved.iovas.empty() || !moved.domains.empty();
        if (lazy) {
          here.lazy_used.store(true, std::memory_order_relaxed);
          std::lock_guard guard(here.lazy_lock);
          here.iovas.insert(here.iovas.end(), moved.iovas.begin(), moved.iovas.end());
          here.lazy_domains.insert(moved.domains.begin(), moved.domains.end());
        }
        if (!s.list.empty()) {
          move_held(cpu, here_cpu, s.list.size());
          here.list.splice_back(env_.pool, s.list);
          // Off the faithful path: the spliced list may exceed this CPU's share of
          // max_pending, and the dead CPU may come back and fill a share again (S5).
          if (here.list.size() > per_cpu_budget()) {
            ++counters().backpressure;
            invalidate_owners_and_free(here.list, "xen-backpressure", here_cpu);
          }
          env_.rt.tasklet_schedule(here.tasklet);
        } else if (lazy) {
          env_.rt.tasklet_schedule(here.tasklet);
        }
        break;
      }
      case runtime::cpu_event::up_prepare:
        // INIT_PAGE_LIST_HEAD(list): a non-empty list here would be lost; CPU_DEAD emptied it.
        if (!s.list.empty() && env_.observer != nullptr) {
          env_.observer->on_invariant_violation("CPU_UP_PREPARE found a non-empty list on CPU " +
                                                std::to_string(cpu) + " (frames lost)");
        }
        s.list = frame_list{};
        [[fallthrough]];
      case runtime::cpu_event::down_failed:
        env_.rt.tasklet_init(
            s.tasklet, [this, cpu] { free_queued_pgtables(cpu); }, kind_);
        s.initialised = true;
        // tasklet_schedule() queues on the CPU running this notifier, which is not `cpu` for
        // CPU_DOWN_FAILED (cpu_down runs elsewhere): the worker's ownership check sees it.
        if (!s.list.empty()) env_.rt.tasklet_schedule(s.tasklet);
        break;
      case runtime::cpu_event::online:
      case runtime::cpu_event::up_canceled:
        break;
    }
    return runtime::notify_result::done;
  }

  runtime::tasklet_kind kind_;
  runtime::per_cpu<slot> slots_;
  runtime::notifier_id notifier_ = 0;
};

}  // namespace

std::unique_ptr<reclaimer> make_xen_tasklet(const reclaim_env& env, const reclaim_config& config) {
  return std::make_unique<xen_policy>(env, config, runtime::tasklet_kind::plain);
}

std::unique_ptr<reclaimer> make_xen_softirq_tasklet(const reclaim_env& env,
                                                    const reclaim_config& config) {
  return std::make_unique<xen_policy>(env, config, runtime::tasklet_kind::softirq);
}

}  // namespace ptreclaim::reclaim::detail
