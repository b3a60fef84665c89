// What the flush-epoch core needs from the system it runs in: the platform interface.
//
// A platform is a type P passed as flush_epoch_core<P>'s template parameter; the core holds a
// P& and calls these members (static or not; no virtual functions needed):
//
//   typename P::frame                        a page-table frame handle, trivially copyable
//                                            (a struct page_info*, a struct page*, a PFN)
//   unsigned      current_cpu()              the CPU running the caller, < core_config::cpus
//   std::uint64_t now_ns()                   monotonic time; read at most once per batch opened,
//                                            once per timer run and once per reap
//   void          arm_timer(unsigned cpu, std::uint64_t at_ns)
//                                            (re)arm CPU cpu's timer to fire at or after at_ns
//                                            (moving an armed one); when it fires, the platform
//                                            calls core.on_timer(cpu) on that CPU ([core-3]).
//                                            Called for the current CPU, except by
//                                            cpu_down_failed(cpu), which arms cpu's from another
//                                            CPU. Never waits.
//   -- the invalidation backend, per domain (the rule: docs/flush-epoch.md) --
//   epoch_t invalidate(domain_id d, iova_range r)
//                                            submit a non-leaf (paging-structure dropping)
//                                            invalidation of r of d on every IOMMU d is attached
//                                            to; return its epoch (> 0), or 0 on failure. Not
//                                            waited for. Numbered with a seq_cst RMW [core-7].
//                                            r.whole() is a full (domain-wide) invalidation.
//   epoch_t stamp(domain_id d)               a full fence, then the newest epoch of d [core-1]
//   epoch_t completed(domain_id d)           every invalidation of d numbered <= result
//                                            completed; polls the hardware; acquire [core-2]
//   epoch_t completed_full(domain_id d)      newest completed full invalidation of d; polls;
//                                            acquire [core-2]
//   epoch_t completed_seen(domain_id d)      the same two as last advanced by anyone, without
//   epoch_t completed_full_seen(domain_id d) polling (the producer path); acquire [core-2]
//   bool    wait(domain_id d, epoch_t e)     spin until completed(d) >= e or the platform's
//                                            timeout; return whether it completed
//   -- where frames and IOVAs go --
//   void free_frames(unsigned ring, domain_id d, const frame* f, std::size_t n)
//                                            f[0..n) of domain d, held by CPU ring's ring, are
//                                            no longer reachable by any IOMMU: free them (one
//                                            call per batch, or two where it wraps the ring)
//
// Optional:
//   void free_iovas(unsigned ring, domain_id d, const iova_range* r, std::size_t k)
//                                            lazy DMA: no translation through r[0..k) of d can
//                                            be cached any more: give them back to the IOVA
//                                            allocator. Needed to retire IOVAs (retire's iovas).
//   void on_taken(unsigned ring, domain_id d, iova_range need, const frame* f, std::size_t n,
//                 std::size_t iovas)         retire() took f[0..n) (and `iovas` IOVA ranges) of
//                                            d into CPU ring's ring (or inline), after making
//                                            room and before storing them: accounting and
//                                            tracing see the take before any free of them
//   void touch_shared(const void* line, bool write)
//                                            the core is about to read (write) a cache line
//                                            other CPUs share (the per-domain request hint): a
//                                            cost model's hook; a kernel leaves it out
//   bool flush_busy(domain_id d)             a synchronous invalidation of d is running on
//                                            another CPU now (Linux SVA's iommu_sva_lock is
//                                            held): one asked for now would only queue behind
//                                            it. Only delays asking; never decides a free
//                                            (default: false)
//   void core_bug(const char* what)          an internal invariant broke (default:
//                                            __builtin_trap())
//
// Calling contexts the platform provides (see flush_epoch_core.hpp for the core's entry points):
// every call for a CPU's ring runs on that CPU and does not nest with another one for the same
// ring ([core-3]); the timer runs on its own CPU.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "ptreclaim/core/types.hpp"

namespace ptreclaim::core {

namespace detail {
template <class T, class U>
concept same = std::is_same_v<T, U>;
template <class T>
concept epoch_like = std::is_same_v<T, epoch_t>;
}  // namespace detail

// The interface as a concept, so a platform that misses a member fails with one message.
template <class P>
concept flush_epoch_platform = std::is_trivially_copyable_v<typename P::frame> &&
    requires(P& p, unsigned cpu, std::uint64_t t, domain_id d, iova_range r, epoch_t e,
             const typename P::frame f) {
  { p.current_cpu() } -> detail::same<unsigned>;
  { p.now_ns() } -> detail::same<std::uint64_t>;
  p.arm_timer(cpu, t);
  { p.invalidate(d, r) } -> detail::epoch_like;
  { p.stamp(d) } -> detail::epoch_like;
  { p.completed(d) } -> detail::epoch_like;
  { p.completed_full(d) } -> detail::epoch_like;
  { p.completed_seen(d) } -> detail::epoch_like;
  { p.completed_full_seen(d) } -> detail::epoch_like;
  { p.wait(d, e) } -> detail::same<bool>;
  p.free_frames(cpu, d, &f, std::size_t{1});
};

template <class P>
concept has_free_iovas = requires(P& p, unsigned cpu, domain_id d, const iova_range* r) {
  p.free_iovas(cpu, d, r, std::size_t{1});
};

template <class P>
concept has_on_taken = requires(P& p, unsigned cpu, domain_id d, iova_range r,
                                const typename P::frame* f) {
  p.on_taken(cpu, d, r, f, std::size_t{1}, std::size_t{0});
};

template <class P>
concept has_touch_shared = requires(P& p, const void* line, bool write) {
  p.touch_shared(line, write);
};

template <class P>
concept has_flush_busy = requires(P& p, domain_id d) {
  { p.flush_busy(d) } -> detail::same<bool>;
};

template <class P>
concept has_core_bug = requires(P& p, const char* what) {
  p.core_bug(what);
};

}  // namespace ptreclaim::core
