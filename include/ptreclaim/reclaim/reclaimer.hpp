// The retire contract: the heart of ptreclaim.
//
//   retire(d, gather)   hands over the page-table frames a mutation of domain d released.
//
// Guarantee, for every safe policy: each retired frame is freed exactly once (S2), only after an
// invalidation that covers it (non-leaf, d's domain id, every IOMMU d is attached to) was
// submitted after the retire and has completed (S3), and eventually (L1: drain() frees
// everything; without drain, a bounded time after the workload stops, given CPUs keep passing
// their scheduler points). Frames pending never exceed config.max_pending (S5): at the limit
// the producer invalidates and frees itself instead of growing.
//
// Caller contract (Xen's): after retire, the caller invalidates the gather's range itself
// (invalidate_after_retire() below) before its CPU next passes a scheduler point. Policies that
// invalidate on their own (sync, linux-global-work, flush-epoch) are safe without it and
// flush-epoch rides on it when it happens (no extra invalidation); xen-tasklet depends on it.
//
// Contexts: retire() is called on a CPU (env.rt.current_cpu()) in process context with
// no lock held that a tasklet or work item of that CPU takes; it may spin (sync, back-pressure)
// but never sleeps. drain() is called at quiescence (no concurrent retire) from process context.
//
// Lazy DMA (dma-iommu's deferred flush, caller.flush = "lazy" in the simulator):
//
//   retire_deferred(d, gather, iova)   hands over an unmap the caller did NOT invalidate: the
//                                      gather's range (and its released frames, possibly none)
//                                      and the IOVA allocation it unmapped.
//
// Ownership: from the call on, the policy owns the IOVA; the caller must not use or reallocate
// it. The policy gives it back exactly once, through env.iovas->iova_free(d, iova), only after an
// invalidation of d that covers the IOVA's range (leaf suffices; a domain-wide one always does),
// submitted after the call, has completed on every IOMMU d is attached to (S6: no IOVA is
// allocated again while a translation of its previous mapping may still be cached). Frames of
// the gather follow retire()'s rules (S2, S3, S5), with no caller invalidation to ride on: the
// caller never flushes in lazy mode, so no policy may rely on one here (needs_caller_flush is
// about retire() only). drain() gives back every IOVA still held; L1 covers IOVAs as frames.
// Contexts as retire(). iova_free is called from whatever CPU context frees (the producer, a
// timer, a tasklet, a work item), possibly with a policy lock held, possibly before
// retire_deferred returns (a synchronous policy), so the caller hands the IOVA over in a state it
// can take back at once. An empty iova (iova_range{}) hands over frames only.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "ptreclaim/base/histogram.hpp"
#include "ptreclaim/base/status.hpp"
#include "ptreclaim/mem/frame_pool.hpp"
#include "ptreclaim/pt/gather.hpp"
#include "ptreclaim/reclaim/backend.hpp"
#include "ptreclaim/reclaim/policy.hpp"
#include "ptreclaim/runtime/kernel.hpp"

namespace ptreclaim::reclaim {

struct reclaim_config {
  // S5: retired but not freed, all CPUs together. Room is taken before a retire is accounted
  // and given back after each free. Per-CPU policies (xen-*, flush-epoch) give each CPU
  // max_pending / CPUs and free a larger gather inline; with fewer frames than CPUs they free
  // every retire inline under one shared count.
  std::uint32_t max_pending = 8192;
  // flush-epoch: once a CPU's oldest pending frame has waited this long, the CPU asks for a
  // full invalidation (dma-iommu's 10 ms flush timer). 0 = never: frames then wait for the
  // watermark or a caller's flush, so without callers that flush L1 holds only for CPUs that
  // pass the watermark (describe_pending() says so).
  std::uint64_t flush_age_ns = 100'000;
  // flush-epoch: how soon after asking for an invalidation, and how often while it is in
  // flight, a CPU's timer polls the hardware (its producer path reads the epochs without
  // polling). 0 = 2 us.
  std::uint64_t poll_ns = 0;
  // flush-epoch: at most one hardware poll of a domain's completions per this many ns across
  // CPUs; the others read what that poll published. 0 (the default) = every timer run polls.
  std::uint64_t poll_spacing_ns = 0;
  std::uint32_t watermark = 64;    // flush-epoch: per-CPU pending frames → flush
  unsigned batches_per_cpu = 256;  // flush-epoch: batch descriptors per CPU (a bound)
  // flush-epoch: frames one batch (one stamp) may take. 1 stamps every retire, so each batch
  // rides on any flush another CPU submits later (best with many CPUs per domain); more saves
  // stamps (a full fence each) but an open batch misses the flushes submitted while it is open.
  std::uint32_t batch_frames = 1;
  unsigned xen_yield_every = 512;  // Xen: process_pending_softirqs() every 512 frees
  std::uint64_t wait_timeout_ns = 10'000'000'000;  // a hung invalidation is a failure, not a hang
  // linux-global-work, lazy DMA: deferred IOVAs its one list may hold before the producer runs
  // the work body itself (a bound the kernel's list does not have).
  std::uint32_t max_deferred_iovas = 65536;
  // flush-epoch, lazy DMA: deferred IOVA ranges a CPU may hold (its ring, allocated once; full:
  // invalidate and wait), how many one batch (one stamp) may take, and how many make the CPU ask
  // for a full invalidation early (capped at half the ring).
  std::uint32_t iovas_per_cpu = 256;
  std::uint32_t batch_iovas = 32;
  std::uint32_t iova_watermark = 128;
  // linux-dma-fq: dma-iommu's flush queue (docs/linux-dma-fq.md). Per-CPU rings of fq_entries
  // (IOVA_DEFAULT_FQ_SIZE) and a fq_timeout_ns timer (IOVA_DEFAULT_FQ_TIMEOUT); fq_single_queue
  // selects the one shared ring Linux uses when IOTLB flushes are shadowed (vIOMMUs in caching
  // mode), with fq_single_entries (IOVA_SINGLE_FQ_SIZE) and fq_single_timeout_ns
  // (IOVA_SINGLE_FQ_TIMEOUT). Sizes are powers of two (the ring masks its indices), >= 2.
  bool fq_single_queue = false;
  std::uint32_t fq_entries = 256;
  std::uint64_t fq_timeout_ns = 10'000'000;
  std::uint32_t fq_single_entries = 32768;
  std::uint64_t fq_single_timeout_ns = 1'000'000'000;
};

// An IOVA allocation, inclusive, as retire_deferred() takes it and iova_sink gets it back.
// Empty (first > last): the unmap gave back no IOVA (only frames).
struct iova_range {
  pt::iova_t first = 1;
  pt::iova_t last = 0;
  [[nodiscard]] bool empty() const noexcept { return first > last; }
};

// Where deferred IOVAs go back: the caller's IOVA allocator (dma-iommu's free_iova_fast). Called
// from any CPU context a policy frees in, concurrently from several CPUs, possibly with a policy
// lock held: it must not block or call into the policy.
class iova_sink {
 public:
  virtual ~iova_sink() = default;
  virtual void iova_free(domain_number d, const iova_range& r) noexcept = 0;
};

// Sees every retire and every free; the simulator's safety monitor (S1–S5) is one.
class reclaim_observer {
 public:
  virtual ~reclaim_observer() = default;
  virtual void on_retire(domain_number d, mem::frame_id f, const invalidation_range& need) = 0;
  virtual void on_free(mem::frame_id f, const char* path) = 0;
  // A policy broke one of its own invariants (S4: a worker ran on a CPU that does not own its
  // list). The run goes on, as a release build would, and the observer records it.
  virtual void on_invariant_violation(const std::string& /*what*/) {}
};

struct reclaim_stats {
  std::uint64_t retired = 0;  // frames handed to retire()
  std::uint64_t freed = 0;    // frames freed
  std::uint64_t pending = 0;  // retired - freed, now
  // Sum over the policy's holders (each CPU's queue, or one shared list) of the most each held
  // at once: exact for one holder, an upper bound of the momentary peak otherwise. The safety
  // monitor measures the exact one.
  std::uint64_t peak_pending = 0;
  std::uint64_t invalidations = 0;   // invalidations the policy itself submitted
  std::uint64_t rides = 0;           // batches freed on a caller's invalidation
  std::uint64_t backpressure = 0;    // times the producer hit max_pending and flushed itself
  std::uint64_t worker_runs = 0;     // tasklet / work item / timer executions
  std::uint64_t free_errors = 0;     // frees the ledger refused (a broken policy)
  std::uint64_t wrong_cpu_runs = 0;  // S4: workers that ran on a CPU not owning their list
  std::uint64_t adopted = 0;         // frames moved from a dead CPU's queue to a running CPU's
  // linux-dma-fq: timers armed by a timer pass for the entries it left (off Linux's path)
  std::uint64_t timer_rearms = 0;
  std::uint64_t iovas_deferred = 0;  // IOVAs handed to retire_deferred()
  std::uint64_t iovas_returned = 0;  // of which given back to env.iovas
  log_histogram retire_to_free_ns;   // latency from the gather's release to the free
};

// Everything a policy runs on. rt is the narrow kernel interface (runtime/kernel.hpp): either
// executor, or any other implementation (the benchmarks' bench_kernel); a policy needs nothing
// more of the runtime.
struct reclaim_env {
  runtime::kernel& rt;            // time, CPUs, tasklets, workqueue, timers, hotplug notifiers
  invalidation_backend& backend;  // the IOMMUs
  mem::frame_pool& pool;          // where frames go back
  reclaim_observer* observer = nullptr;
  iova_sink* iovas = nullptr;  // lazy DMA: where deferred IOVAs go back (none: dropped)
};

class reclaimer {
 public:
  virtual ~reclaimer() = default;

  // See the file comment. The frames of g.released() are in state retired.
  virtual void retire(domain_number d, const pt::gather& g) = 0;
  // Lazy DMA (see the file comment): g is the unmap (its range; its frames, possibly none),
  // `iova` the allocation that goes back to env.iovas once an invalidation covering it completed.
  virtual void retire_deferred(domain_number d, const pt::gather& g, const iova_range& iova) = 0;
  // The caller is about to invalidate d after a retire on this CPU (before it submits), so a
  // policy that batches retires can close its batch and let that invalidation cover it.
  virtual void before_caller_invalidation(domain_number /*d*/) {}
  // The caller's own invalidation of d got epoch e for `range` (after a retire on this CPU).
  // flush-epoch records it so the batch it covers is freed as soon as e completes.
  virtual void note_caller_invalidation(domain_number /*d*/, const invalidation_range& /*range*/,
                                        epoch_t /*e*/) {}
  // Frees every pending frame, invalidating as needed; returns when pending() == 0.
  [[nodiscard]] virtual Status drain() = 0;
  [[nodiscard]] virtual std::uint64_t pending() const noexcept = 0;
  [[nodiscard]] virtual reclaim_stats stats() const = 0;
  [[nodiscard]] virtual policy_kind kind() const noexcept = 0;
  [[nodiscard]] std::string_view name() const noexcept { return policy_name(kind()); }
  // What the frames still pending wait for, one line per holder that has any ("CPU 2: 7
  // frames, oldest retired 1.2 ms ago, waiting for ..."); empty when nothing is pending. For
  // the watchdog's and L1's reports: call only while no CPU runs the policy (after run()).
  [[nodiscard]] virtual std::string describe_pending() const = 0;
};

// Builds a policy. Registers its hotplug notifiers, tasklets and work items with env.rt, so it
// must be built before the kernel's CPUs run (an executor's run()) and destroyed after they
// stopped (pending() == 0).
[[nodiscard]] Result<std::unique_ptr<reclaimer>> make_reclaimer(policy_kind kind,
                                                                const reclaim_env& env,
                                                                const reclaim_config& config = {});

// The Xen caller's side of the contract: invalidate the gather's range of d (non-leaf if the
// gather says so), tell the reclaimer, and wait for completion. Returns the epoch.
[[nodiscard]] Result<epoch_t> invalidate_after_retire(reclaimer& r, invalidation_backend& b,
                                                      domain_number d, const pt::gather& g,
                                                      std::uint64_t timeout_ns);
// The same with the range the caller chose (a driver's own flush logic; it may cover less than
// the gather, and then a policy that rides on caller flushes must not count it for more).
[[nodiscard]] Result<epoch_t> invalidate_after_retire(reclaimer& r, invalidation_backend& b,
                                                      domain_number d,
                                                      const invalidation_range& range,
                                                      std::uint64_t timeout_ns);

// A map onto a unit in caching mode (VT-d CAP.CM): the unit may hold "not present" for what
// g's maps filled, so the caller invalidates the mapped range (a PSI, IH = 0) and waits, as
// Linux does on map under cap_caching_mode (__mapping_notify_one -> iommu_flush_iotlb_psi)
// and Xen does for a flush of added mappings. Not a retire's flush: the policy is not told.
// Returns epoch 0 when g mapped nothing.
[[nodiscard]] Result<epoch_t> invalidate_after_map(invalidation_backend& b, domain_number d,
                                                   const pt::gather& g, std::uint64_t timeout_ns);

}  // namespace ptreclaim::reclaim
