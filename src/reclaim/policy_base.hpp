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
//
// The bound (S5) is kept by *admission*: room for a retire's frames is taken before they are
// accounted (before the observer sees them retired), and given back only after the observer saw
// them freed, so frames pending never exceed max_pending, however the frees interleave. Two
// scopes: per_cpu, each CPU may hold per_cpu_budget() frames (the budgets sum to at most
// max_pending) and admission checks only the CPU's own count; global, one shared count of
// admitted frames, taken with a CAS and given back by each free (Linux's one list, and every
// policy when max_pending < CPUs, where a CPU's share would be below one frame).
#pragma once

#include <algorithm>
#include <atomic>
#include <optional>
#include <span>
#include <vector>

#include "ptreclaim/reclaim/frame_list.hpp"
#include "ptreclaim/reclaim/reclaimer.hpp"
#include "ptreclaim/runtime/cpu.hpp"
#include "ptreclaim/runtime/kernel.hpp"

namespace ptreclaim::reclaim::detail {

class policy_base : public reclaimer {
 public:
  enum class bound_scope : std::uint8_t { per_cpu, global };
  // per_cpu becomes global when max_pending < CPUs.
  policy_base(const reclaim_env& env, const reclaim_config& config,
              bound_scope scope = bound_scope::per_cpu);

  [[nodiscard]] std::uint64_t pending() const noexcept final;
  [[nodiscard]] reclaim_stats stats() const override;
  // One line per holder with frames: "CPU 2 holds 7 frames" (policies add what they wait for).
  [[nodiscard]] std::string describe_pending() const override;
  // Lazy DMA, correct for any policy: retire()'s inline path (admission, then a non-leaf
  // invalidation of the gather's and the IOVA's range, waited for, before the frees), then the
  // IOVA back. Synchronous, so nothing deferred stays behind (drain() has nothing to add).
  // Admission can only wait for the policy's own frees: a policy whose retire() queues frames
  // on a per-CPU budget and is fed both retire() and retire_deferred() should override it.
  void retire_deferred(domain_number d, const pt::gather& g, const iova_range& iova) override;

 protected:
  // Per-CPU counters: written only by the CPU that owns the slot (the retiring or freeing CPU).
  struct cpu_counters {
    std::uint64_t retired = 0, freed = 0, invalidations = 0, rides = 0, backpressure = 0;
    std::uint64_t worker_runs = 0, free_errors = 0, wrong_cpu_runs = 0, adopted = 0;
    std::uint64_t timer_rearms = 0;
    std::uint64_t iovas_in = 0, iovas_out = 0;
    log_histogram latency;
  };

  // The holder of one shared structure (any other holder number is a CPU).
  static constexpr unsigned global_holder = ~0u;

  // True when the bound is one shared count (see the file comment).
  [[nodiscard]] bool global_bound() const noexcept { return global_bound_; }
  // The most frames one admission may take: the CPU's budget, or max_pending.
  [[nodiscard]] std::uint64_t admission_limit() const noexcept {
    return global_bound_ ? config_.max_pending : per_cpu_budget_;
  }
  // Takes room for n (<= admission_limit()) frames that `cpu` (the current CPU) will account;
  // false if they do not fit now. per_cpu: only `cpu` adds to its own count (frees only
  // subtract), so a fit stays a fit until it accounts them.
  [[nodiscard]] bool try_admit(unsigned cpu, std::uint64_t n);
  // Whether a global bound has room for n now (a hint: try_admit decides).
  [[nodiscard]] bool room_for(std::uint64_t n) const noexcept {
    return admitted_.load(std::memory_order_relaxed) + n <= config_.max_pending;
  }
  static constexpr std::uint64_t admit_poll_ns = 2'000;  // make_room() again this often
  // Admits n frames: at once, or after make_room() (the policy frees what it can reach: this
  // CPU's queue, or Linux's whole list). With a global bound other CPUs may hold the room
  // (threaded): make_room() is retried while waiting, as the frames that fill the room may sit
  // where only it reaches them (a work item queued on this very CPU, spinning here). Returns
  // whether room had to be made.
  template <class MakeRoom>
  bool admit(unsigned cpu, std::uint64_t n, MakeRoom&& make_room) {
    if (try_admit(cpu, n)) return false;
    const std::uint64_t deadline = env_.rt.now_ns() + config_.wait_timeout_ns;
    for (;;) {
      make_room();
      if (try_admit(cpu, n)) return true;
      PTR_ASSERT_MSG(env_.rt.now_ns() < deadline,
                     "back-pressure found no room below max_pending within wait_timeout_ns");
      (void)env_.rt.wait_until([&] { return room_for(n); }, admit_poll_ns);
    }
  }
  // Retires g's frames and frees them in this call, in chunks of at most admission_limit():
  // admit (make_room as above), account on `cpu`, invalidate `inv` and wait (unless nullopt),
  // free. A gather larger than the limit costs one invalidation per chunk, as each chunk's
  // invalidation must follow its retire. Returns whether any admission had to make room.
  template <class MakeRoom>
  bool retire_inline(domain_number d, const pt::gather& g, unsigned cpu, const char* path,
                     const std::optional<invalidation_range>& inv, MakeRoom&& make_room) {
    const std::vector<mem::frame_id>& all = g.released();
    const invalidation_range need = invalidation_range::of(g);
    bool pressed = false;
    for (std::size_t at = 0; at < all.size();) {
      const std::size_t k = std::min<std::size_t>(all.size() - at, admission_limit());
      const std::span<const mem::frame_id> chunk(all.data() + at, k);
      pressed = admit(cpu, k, make_room) || pressed;
      account_frames(d, need, chunk, cpu);
      if (inv) invalidate_and_wait(d, *inv);
      free_frames(chunk, path, cpu);
      at += k;
    }
    return pressed;
  }
  // Called by retire() after admission: observer, counters, and the frames counted on
  // `holder`. Returns the frame count.
  std::uint64_t account_retire(domain_number d, const pt::gather& g, unsigned holder) {
    return account_frames(d, invalidation_range::of(g), g.released(), holder);
  }
  std::uint64_t account_frames(domain_number d, const invalidation_range& need,
                               std::span<const mem::frame_id> frames, unsigned holder);
  // Frees one retired frame held by `holder` (pool, observer, latency against now_ns, counters).
  void free_frame(mem::frame_id f, const char* path, unsigned holder, std::uint64_t now_ns);
  // Frees every frame of `list`, in order (one clock reading for the lot).
  void free_list(frame_list& list, const char* path, unsigned holder);
  // Frees frames directly (one clock reading for the lot).
  void free_frames(std::span<const mem::frame_id> frames, const char* path, unsigned holder);
  // Invalidates (fully) every domain that owns a frame on `list`, waits, then frees the list:
  // the safe way to empty a list whose frames have no recorded epochs (back-pressure, drain,
  // Linux's work item).
  void invalidate_owners_and_free(frame_list& list, const char* path, unsigned holder);
  // n frames held by `from` (a dead CPU) now belong to `to` (the CPU that adopted them).
  void move_held(unsigned from, unsigned to, std::uint64_t n);
  // Lazy DMA bookkeeping: an IOVA taken by retire_deferred (counted on this CPU), and one given
  // back to env.iovas (counted on the CPU that gives it back). Empty ranges are not counted.
  void note_deferred_iova(const iova_range& r) {
    if (!r.empty()) ++counters().iovas_in;
  }
  void return_iova(domain_number d, const iova_range& r);
  // The invalidation that covers both an unmap's gather and its IOVA (non-leaf: frames may hang
  // below the range).
  [[nodiscard]] static invalidation_range covering(const pt::gather& g, const iova_range& iova);
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
  bool global_bound_;
  runtime::per_cpu<cpu_counters> counters_;
  // Frames a holder has accepted and not freed, and the most it ever had. Written by the
  // holder's CPU (and, for a dead CPU, by its adopter), read by anyone: relaxed atomics, as
  // they publish nothing; RMWs, because Xen's wrong-CPU worker may free another CPU's list.
  struct holder_count {
    std::atomic<std::uint64_t> held{0};
    std::atomic<std::uint64_t> peak{0};
  };
  holder_count& holder(unsigned h) { return h == global_holder ? global_ : holders_[h]; }
  // free_frame() without giving back its room (true if freed).
  bool release_frame(mem::frame_id f, const char* path, unsigned holder, std::uint64_t now_ns);
  void unadmit(std::uint64_t n);  // gives back n frames of a global bound's room
  void add_held(unsigned h, std::uint64_t n);

  runtime::per_cpu<holder_count> holders_;
  alignas(runtime::cache_line_size) holder_count global_;
  // Global bound: frames admitted and not yet freed. Relaxed: a count, it publishes nothing.
  alignas(runtime::cache_line_size) std::atomic<std::uint64_t> admitted_{0};
};

}  // namespace ptreclaim::reclaim::detail
