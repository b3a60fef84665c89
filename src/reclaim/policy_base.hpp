// Machinery every policy shares: accounting of retires and frees (per CPU, so the hot path
// touches no shared line), the retire-to-free latency histogram, observer calls, and the
// synchronous "invalidate, wait, free" path used by sync, back-pressure and drain.
#pragma once

#include <atomic>
#include <span>

#include "ptreclaim/reclaim/frame_list.hpp"
#include "ptreclaim/reclaim/reclaimer.hpp"
#include "ptreclaim/runtime/cpu.hpp"
#include "ptreclaim/runtime/executor.hpp"

namespace ptreclaim::reclaim::detail {

class policy_base : public reclaimer {
 public:
  policy_base(const reclaim_env& env, const reclaim_config& config);

  [[nodiscard]] std::uint64_t pending() const noexcept final {
    return pending_.load(std::memory_order_relaxed);
  }
  [[nodiscard]] reclaim_stats stats() const override;

 protected:
  // Per-CPU counters: written only by the CPU that owns the slot (the retiring or freeing CPU).
  struct cpu_counters {
    std::uint64_t retired = 0, freed = 0, invalidations = 0, rides = 0, backpressure = 0;
    std::uint64_t worker_runs = 0, free_errors = 0, wrong_cpu_runs = 0;
    log_histogram latency;
  };

  // Called by retire() first: observer, counters, pending. Returns the frame count.
  std::uint64_t account_retire(domain_number d, const pt::gather& g);
  // Frees one retired frame (pool, observer, latency, counters).
  void free_frame(mem::frame_id f, const char* path);
  // Frees every frame of `list`, in order.
  void free_list(frame_list& list, const char* path);
  // Frees the frames of a gather directly (sync, immediate, oversize batches).
  void free_gather(const pt::gather& g, const char* path);
  // Invalidates (fully) every domain that owns a frame on `list`, waits, then frees the list:
  // the safe way to empty a list whose frames have no recorded epochs (back-pressure, drain,
  // Linux's work item).
  void invalidate_owners_and_free(frame_list& list, const char* path);
  // Submits an invalidation of `range` of d and waits for it. A failure (timeout) is a broken
  // model or a hung IOMMU: asserted, because freeing without it would be unsafe.
  epoch_t invalidate_and_wait(domain_number d, const invalidation_range& range);
  // Pending frames one CPU may hold (max_pending spread over the CPU slots), at least 1.
  [[nodiscard]] std::uint64_t per_cpu_budget() const noexcept { return per_cpu_budget_; }
  [[nodiscard]] cpu_counters& counters() { return counters_[env_.rt.current_cpu()]; }
  // A worker found itself on a CPU that does not own its list (Xen's ASSERT(list ==
  // &this_cpu(free_pgt_list))): counted and reported to the observer, not fatal, so a run
  // shows the consequence as the release build would.
  void report_wrong_cpu(unsigned owner, const char* who);

  reclaim_env env_;
  reclaim_config config_;

 private:
  std::uint64_t per_cpu_budget_;
  runtime::per_cpu<cpu_counters> counters_;
  std::atomic<std::uint64_t> pending_{0};  // relaxed: a statistic and the S5 witness
  std::atomic<std::uint64_t> peak_pending_{0};
};

}  // namespace ptreclaim::reclaim::detail
