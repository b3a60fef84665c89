// Machinery every policy shares: accounting of retires and frees (per CPU, so the hot path
// touches no shared line), the retire-to-free latency histogram, observer calls, and the
// synchronous "invalidate, wait, free" path used by sync, back-pressure and drain.
//
// Pending frames are counted per *holder*: the structure that holds them until they are freed,
// a CPU's own queue (holder = that CPU) or one shared list (global_holder, Linux's). A frame is
// counted on the holder that accepted it and uncounted on the same holder when it is freed (or
// moved with move_held when a dead CPU's queue is adopted), so a per-CPU design pays no shared
// cache line for its accounting. pending() sums the holders; peak_pending is the sum of every
// holder's own peak: exact for one holder, otherwise an upper bound of the momentary peak (and
// the quantity per-CPU budgets bound).
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

  [[nodiscard]] std::uint64_t pending() const noexcept final;
  [[nodiscard]] reclaim_stats stats() const override;

 protected:
  // Per-CPU counters: written only by the CPU that owns the slot (the retiring or freeing CPU).
  struct cpu_counters {
    std::uint64_t retired = 0, freed = 0, invalidations = 0, rides = 0, backpressure = 0;
    std::uint64_t worker_runs = 0, free_errors = 0, wrong_cpu_runs = 0, adopted = 0;
    log_histogram latency;
  };

  // The holder of one shared structure (any other holder number is a CPU).
  static constexpr unsigned global_holder = ~0u;

  // Called by retire() first: observer, counters, and the frames counted on `holder`. Returns
  // the frame count.
  std::uint64_t account_retire(domain_number d, const pt::gather& g, unsigned holder);
  // Frees one retired frame held by `holder` (pool, observer, latency against now_ns, counters).
  void free_frame(mem::frame_id f, const char* path, unsigned holder, std::uint64_t now_ns);
  // Frees every frame of `list`, in order (one clock reading for the lot).
  void free_list(frame_list& list, const char* path, unsigned holder);
  // Frees the frames of a gather directly (sync, immediate, oversize batches).
  void free_gather(const pt::gather& g, const char* path, unsigned holder);
  // Invalidates (fully) every domain that owns a frame on `list`, waits, then frees the list:
  // the safe way to empty a list whose frames have no recorded epochs (back-pressure, drain,
  // Linux's work item).
  void invalidate_owners_and_free(frame_list& list, const char* path, unsigned holder);
  // n frames held by `from` (a dead CPU) now belong to `to` (the CPU that adopted them).
  void move_held(unsigned from, unsigned to, std::uint64_t n);
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
  // Frames a holder has accepted and not freed, and the most it ever had. Written by the
  // holder's CPU (and, for a dead CPU, by its adopter), read by anyone: relaxed atomics, as
  // they publish nothing; RMWs, because Xen's wrong-CPU worker may free another CPU's list.
  struct holder_count {
    std::atomic<std::uint64_t> held{0};
    std::atomic<std::uint64_t> peak{0};
  };
  holder_count& holder(unsigned h) { return h == global_holder ? global_ : holders_[h]; }
  void add_held(unsigned h, std::uint64_t n);

  runtime::per_cpu<holder_count> holders_;
  alignas(runtime::cache_line_size) holder_count global_;
};

}  // namespace ptreclaim::reclaim::detail
