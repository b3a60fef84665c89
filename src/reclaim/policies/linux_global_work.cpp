// Linux 6.19's asynchronous kernel page-table free (mm/pgtable-generic.c,
// CONFIG_ASYNC_KERNEL_PGTABLE_FREE), faithfully: one global list under one spinlock,
// schedule_work() on every page added, and one work item that splices the whole list under the
// lock, invalidates the IOMMUs' caches for the kernel address space (the kernel flushes
// everything: iommu_sva_invalidate_kva_range(0, TLB_FLUSH_ALL); here, every domain with frames
// on the list), then frees outside the lock. The reviewers' warning is what the simulator
// measures: producers and the consumer serialise on one lock and one shared list head.
//
// Additions off the faithful path: back-pressure at the configured bound (the producer runs the
// work body itself) and drain(). Lazy DMA (retire_deferred), which the kernel's list never sees
// (dma-iommu defers IOVAs in its own flush queue): the port puts the IOVA on the same list (a
// vector beside the frames, under the same lock, bounded by max_deferred_iovas) and schedules
// the same work item, whose domain-wide invalidation then covers it; the IOVAs go back after
// the frames are freed.
#include <set>
#include <utility>
#include <vector>

#include "../policies.hpp"
#include "../policy_base.hpp"
#include "ptreclaim/base/spinlock.hpp"

namespace ptreclaim::reclaim::detail {
namespace {

class linux_global_work_policy final : public policy_base {
 public:
  linux_global_work_policy(const reclaim_env& env, const reclaim_config& config)
      : policy_base(env, config, bound_scope::global), lock_(env.rt) {
    lock_.name("linux-global-work: the global list lock");
    env.rt.name_shared(&list_, "linux-global-work: the global list head");
    env_.rt.work_init(work_, [this] { work_fn(); });
  }
  ~linux_global_work_policy() override {
    if (env_.rt.work_pending(work_)) env_.rt.flush_work(work_);
  }

  // pte_free_kernel_async(), once per released page.
  void retire(domain_number d, const pt::gather& g) override {
    const std::uint64_t n = g.released().size();
    if (n == 0) return;
    const unsigned cpu = env_.rt.current_cpu();
    if (n > config_.max_pending) {  // larger than the bound: invalidate and free it inline
      ++counters().backpressure;
      (void)retire_inline(d, g, cpu, "linux-global-work-sync",
                          invalidation_range{g.first(), g.last(), true}, [&] { work_fn(); });
      return;
    }
    // The bound (off the faithful path): admission takes n frames of max_pending before they
    // are accepted, atomically with other producers; the count drops only as frames are freed,
    // so frames a work item (ours or another CPU's) holds between its splice and its free
    // still count. A list-size check would let two producers both pass it.
    if (admit(cpu, n, [&] { work_fn(); })) ++counters().backpressure;
    account_retire(d, g, global_holder);
    for (mem::frame_id f : g.released()) {
      {
        std::lock_guard guard(lock_);
        env_.rt.touch_line(&list_, true);
        env_.rt.charge(cost_kind::enqueue);
        list_.push_back(env_.pool, f);
      }
      env_.rt.schedule_work(work_);
    }
  }

  void retire_deferred(domain_number d, const pt::gather& g, const iova_range& iova) override {
    note_deferred_iova(iova);
    retire(d, g);
    if (iova.empty()) return;
    bool full = false;
    {
      std::lock_guard guard(lock_);
      env_.rt.touch_line(&list_, true);
      env_.rt.charge(cost_kind::enqueue);
      iovas_.emplace_back(d, iova);
      full = iovas_.size() >= config_.max_deferred_iovas;
    }
    if (full) {
      ++counters().backpressure;
      work_fn();
    } else {
      env_.rt.schedule_work(work_);
    }
  }

  Status drain() override {
    env_.rt.flush_work(work_);
    work_fn();
    return {};
  }

  [[nodiscard]] policy_kind kind() const noexcept override {
    return policy_kind::linux_global_work;
  }

 private:
  // kernel_pte_work_func(): splice under the lock, invalidate, free outside the lock.
  void work_fn() {
    ++counters().worker_runs;
    frame_list mine;
    std::vector<std::pair<domain_number, iova_range>> iovas;
    {
      std::lock_guard guard(lock_);
      env_.rt.touch_line(&list_, true);
      mine.splice_back(env_.pool, list_);
      iovas.swap(iovas_);
    }
    if (iovas.empty()) {
      invalidate_owners_and_free(mine, "linux-global-work", global_holder);
      return;
    }
    std::set<domain_number> domains;
    mine.for_each(env_.pool, [&](mem::frame_id f) { domains.insert(env_.pool.ident(f).domain); });
    for (const auto& [d, r] : iovas)
      domains.insert(d);
    for (domain_number d : domains)
      invalidate_and_wait(d, invalidation_range::whole_domain());
    free_list(mine, "linux-global-work", global_holder);
    for (const auto& [d, r] : iovas)
      return_iova(d, r);
  }

  spinlock lock_;
  frame_list list_;
  std::vector<std::pair<domain_number, iova_range>> iovas_;  // lazy DMA, under lock_
  runtime::work_item work_;
};

}  // namespace

std::unique_ptr<reclaimer> make_linux_global_work(const reclaim_env& env,
                                                  const reclaim_config& config) {
  return std::make_unique<linux_global_work_policy>(env, config);
}

}  // namespace ptreclaim::reclaim::detail
