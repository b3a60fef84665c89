// flush_epoch_core: the flush-epoch reclamation policy as a freestanding, header-only template,
// for a hypervisor or VMM to embed. The design (the rule, epochs, open batches, who frees and
// when, hotplug) is docs/flush-epoch.md; embedding it is docs/embedding.md. Freestanding: see
// types.hpp. The platform interface P: see platform.hpp.
//
// Each CPU owns a ring of frames (frames_per_cpu), a ring of deferred IOVA ranges
// (iovas_per_cpu, lazy DMA) and a ring of batch descriptors (batches_per_cpu), all in the storage
// handed to init(). A batch is a run of consecutive frames and IOVAs in those rings retired on
// one domain, with the IOVA range an invalidation must cover and two epochs:
//   stamp  P::stamp(d), taken when the batch closes, after the unlink of its every frame;
//   cover  the epoch of a caller's non-leaf invalidation covering the batch's range, when the
//          caller reported one (note_caller_invalidation), 0 if none.
// A closed batch may be freed once  completed(d) >= cover (cover != 0)  or
// completed_full(d) > stamp. The newest batch stays open (unstamped, never freed) and takes the
// frames of further retires of its domain until it holds batch_frames frames (or batch_iovas
// IOVAs), another domain retires, a flush is requested, the caller is about to invalidate, or its
// ring is flushed or adopted. A freed batch's frames go to P::free_frames and its IOVAs to
// P::free_iovas (dma-iommu's flush queue frees both the same way: the IOVA of an unmap and the
// page-table pages it released wait for the same flush).
//
// Entry points and their contexts ("on CPU c": the platform calls it running on c):
//   init(config, storage, bytes)  once, before any other call; any context.
//   retire(d, need, frames, n [, iovas, k])  on the retiring CPU, process context, after the
//                                 frames' unlinks (and the unmaps of the IOVAs); may spin
//                                 (back-pressure) but never sleeps.
//   before_caller_invalidation(d) on that CPU, before the caller submits its own invalidation.
//   note_caller_invalidation(d, r, e)  on that CPU: the caller's non-leaf invalidation of range r
//                                 got epoch e (it may or may not have waited for it).
//   on_timer(c)                   on CPU c, when the timer armed with P::arm_timer(c, ...) fires.
//   cpu_up_prepare(c)             c offline, before it runs; any CPU.
//   cpu_dead(c)                   on a running CPU, after c stopped for good and its timer was
//                                 killed ([core-4]); moves c's frames to the running CPU.
//   cpu_down_failed(c)            any CPU; c runs again. Arms c's timer only.
//   drain_cpu(c), drain()         at quiescence for those rings ([core-8]); frees everything.
//   stats(c), total(), pending()  any context, any time ([core-6]).
// (CPU_DOWN_PREPARE needs no core call: the platform kills c's timer itself.)
//
// Memory-ordering contract. The core publishes nothing through its own rings (they are
// per-CPU); its safety rests on the platform's orderings, tagged here and in platform.hpp:
//  [core-1] P::stamp(d) is a full (seq_cst) fence and then a load of d's epoch counter; the core
//           calls it in close(), on the CPU that unlinked the batch's frames, after the unlinks
//           in program order (or, for an adopted batch, on a CPU the unlinks happen-before by
//           [core-4]). With [core-7] this makes every invalidation numbered after the stamp see
//           the unlinks: an IOMMU walk that starts after such an invalidation cannot reach the
//           frames (the fence argument of dma-iommu's fq_flush_start_cnt after smp_mb()).
//  [core-2] P::completed*(d) (polling or _seen) load with acquire and return e only after the
//           completion of every invalidation counted in e was published with release; the core
//           calls P::free_frames (and P::free_iovas) after such a load on the same thread, so the
//           free (and any reuse of the frame) happens-after the IOMMU stopped using it.
//  [core-3] A CPU's ring (frames, batches, open flag, timer_armed, statistics) has one user at a
//           time and no atomics: retire, before/note_caller_invalidation and on_timer for CPU c
//           run on c and never nest or overlap (Linux: local_bh_disable() around the producer
//           calls, or a timer that only defers to process context; Xen: timers run in softirq
//           context, which does not preempt the caller's hypercall path). Hence no lock.
//  [core-4] Hotplug hand-off: the platform makes c's last call into the core, and the end of c's
//           last timer run (killed at CPU_DOWN_PREPARE), happen-before cpu_dead(c) (the
//           hotplug machinery's own synchronisation: stop_machine, the notifier chain), and
//           cpu_up_prepare(c) happen-before c's first call after it comes back.
//  [core-5] The per-domain request hint (the newest full invalidation any CPU asked for) is a
//           relaxed atomic: it only decides whether to ask for another invalidation; whether a
//           batch may be freed is always read from the backend ([core-2]).
//  [core-6] Statistics are per ring, written only by the ring's user ([core-3], [core-4]) with
//           relaxed load + store; readers anywhere see each counter possibly stale, and a sum
//           over CPUs is not a snapshot.
//  [core-7] P::invalidate numbers the invalidation with a seq_cst read-modify-write of d's
//           counter, submitted after that; an invalidation the core submits itself (inline,
//           back-pressure, drain, requests) is numbered after every unlink the calling CPU made
//           before the call, and after the stamps it waits to pass.
//  [core-8] drain_cpu(c) needs c's ring quiescent: no call for c in progress or starting and c's
//           timer not running until it returns (the platform kills or holds it); the platform's
//           synchronisation for that orders the ring's earlier users before the drain.
//
// Costs (docs/flush-epoch.md "Costs"): per retire two lock-free loads to reap the ring's head
// and a store per frame and per IOVA; per batch one clock read when it opens and one stamp (fence +
// load) when it closes (over the watermark too: a retire there adds two loads, the domain's hint
// and its epoch, while a requested flush is in flight); no lock, no allocation, no RMW on a shared
// line except when asking for an invalidation (the hint's CAS).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <new>
#include <type_traits>

#include "ptreclaim/core/platform.hpp"
#include "ptreclaim/core/types.hpp"

namespace ptreclaim::core {

template <flush_epoch_platform P, bool LatencyHistogram = false>
class flush_epoch_core {
 public:
  using frame = typename P::frame;
  static constexpr std::size_t storage_align = 64;
  static constexpr std::uint64_t default_poll_ns = 2'000;

 private:
  struct batch {
    domain_id domain = 0;
    std::uint32_t first = 0;  // index of its oldest frame in the ring's frame array
    std::uint32_t count = 0;
    std::uint32_t iova_first = 0;  // the same for its IOVAs
    std::uint32_t iova_count = 0;
    epoch_t stamp = 0;
    epoch_t cover = 0;
    epoch_t scratch = 0;  // flush_all: the invalidation it waits for on this batch's domain
    iova_range range;
    std::uint64_t opened_ns = 0;
  };
  struct poll_hint {
    std::atomic<std::uint64_t> at{0};  // when a CPU last polled the domain's progress (0: never)
    std::atomic<unsigned> by{~0u};     // and which CPU
  };
  struct no_histogram {};
  using histogram_t = std::conditional_t<LatencyHistogram, latency_histogram, no_histogram>;

  struct alignas(storage_align) ring {
    unsigned cpu = 0;
    batch* batches = nullptr;     // batches_per_cpu slots
    frame* frames = nullptr;      // frames_per_cpu slots
    iova_range* iovas = nullptr;  // iovas_per_cpu slots
    std::uint32_t b_head = 0, b_count = 0;
    std::uint32_t f_head = 0, f_count = 0;
    std::uint32_t i_head = 0, i_count = 0;
    bool open = false;         // the newest batch takes more frames and has no stamp
    bool timer_armed = false;  // set by arm(), cleared when it fires (or by up_prepare, drain)
    std::uint64_t timer_at = 0;
    std::uint64_t sample_tick = 0;
    cpu_stats stats;
    [[no_unique_address]] histogram_t hist;
  };

  static constexpr std::size_t round_up(std::size_t x, std::size_t a) noexcept {
    return (x + a - 1) / a * a;
  }

 public:
  // Bytes of storage init() needs for config c (aligned to storage_align).
  static constexpr std::size_t storage_bytes(const core_config& c) noexcept {
    std::size_t n = round_up(sizeof(ring) * c.cpus, storage_align);
    n += round_up(sizeof(batch) * c.batches_per_cpu * c.cpus, storage_align);
    n += round_up(sizeof(frame) * c.frames_per_cpu * c.cpus, storage_align);
    n += round_up(sizeof(iova_range) * c.iovas_per_cpu * c.cpus, storage_align);
    n += round_up(sizeof(std::atomic<epoch_t>) * c.max_domains, storage_align);
    n += round_up(sizeof(poll_hint) * c.max_domains, storage_align);
    return n;
  }

  explicit flush_epoch_core(P& platform) noexcept : p_(platform) {}
  flush_epoch_core(const flush_epoch_core&) = delete;
  flush_epoch_core& operator=(const flush_epoch_core&) = delete;
  ~flush_epoch_core() = default;  // the storage is the caller's; drain() first

  // Lays the rings out in `storage` (which must outlive the core). Once, before any other call.
  [[nodiscard]] init_status init(const core_config& c, void* storage, std::size_t bytes) noexcept {
    if (c.cpus == 0 || c.cpus > 65536 || c.max_domains == 0 || c.frames_per_cpu == 0 ||
        c.batches_per_cpu == 0 || c.batch_frames == 0 || c.batch_frames > c.frames_per_cpu ||
        (c.iovas_per_cpu != 0 && (c.batch_iovas == 0 || c.batch_iovas > c.iovas_per_cpu)))
      return init_status::bad_config;
    if (bytes < storage_bytes(c)) return init_status::storage_small;
    if (reinterpret_cast<std::uintptr_t>(storage) % storage_align != 0)
      return init_status::storage_align;
    cfg_ = c;
    const std::uint32_t half = c.frames_per_cpu / 2 > 0 ? c.frames_per_cpu / 2 : 1;
    watermark_ = c.watermark < half ? c.watermark : half;
    const std::uint32_t ihalf = c.iovas_per_cpu / 2 > 0 ? c.iovas_per_cpu / 2 : 1;
    iova_watermark_ = c.iova_watermark < ihalf ? c.iova_watermark : ihalf;
    poll_ns_ = c.poll_ns != 0 ? c.poll_ns : default_poll_ns;
    sample_mask_ = c.latency_sample_shift >= 64 ? ~std::uint64_t{0}
                                                : (std::uint64_t{1} << c.latency_sample_shift) - 1;
    auto* at = static_cast<unsigned char*>(storage);
    rings_ = reinterpret_cast<ring*>(at);
    at += round_up(sizeof(ring) * c.cpus, storage_align);
    batch* batches = reinterpret_cast<batch*>(at);
    at += round_up(sizeof(batch) * c.batches_per_cpu * c.cpus, storage_align);
    frame* frames = reinterpret_cast<frame*>(at);
    at += round_up(sizeof(frame) * c.frames_per_cpu * c.cpus, storage_align);
    iova_range* iovas = reinterpret_cast<iova_range*>(at);
    at += round_up(sizeof(iova_range) * c.iovas_per_cpu * c.cpus, storage_align);
    requested_ = reinterpret_cast<std::atomic<epoch_t>*>(at);
    at += round_up(sizeof(std::atomic<epoch_t>) * c.max_domains, storage_align);
    polled_ = reinterpret_cast<poll_hint*>(at);
    for (unsigned cpu = 0; cpu < c.cpus; ++cpu) {
      ring* q = ::new (static_cast<void*>(&rings_[cpu])) ring;
      q->cpu = cpu;
      q->batches = batches + std::size_t{cpu} * c.batches_per_cpu;
      q->frames = frames + std::size_t{cpu} * c.frames_per_cpu;
      q->iovas = iovas + std::size_t{cpu} * c.iovas_per_cpu;
      for (std::uint32_t i = 0; i < c.batches_per_cpu; ++i)
        ::new (static_cast<void*>(&q->batches[i])) batch;
    }
    for (std::uint32_t d = 0; d < c.max_domains; ++d) {
      ::new (static_cast<void*>(&requested_[d])) std::atomic<epoch_t>(0);
      ::new (static_cast<void*>(&polled_[d])) poll_hint;
    }
    return init_status::ok;
  }

  // Hands over n frames of domain d that a page-table change on this CPU unlinked; `need` is the
  // IOVA range through which a cached entry could still reach them. Call after the unlinks.
  retire_status retire(domain_id d, iova_range need, const frame* frames, std::size_t n) noexcept {
    return retire_all(d, need, frames, n, nullptr, 0);
  }
  // Lazy DMA: the same, plus k IOVA ranges of d unmapped on this CPU (within `need`), handed to
  // P::free_iovas once the invalidation that frees the frames completed. n may be 0.
  retire_status retire(domain_id d, iova_range need, const frame* frames, std::size_t n,
                       const iova_range* iovas, std::size_t k) noexcept requires has_free_iovas<P> {
    return retire_all(d, need, frames, n, iovas, k);
  }

  // The caller is about to submit its own invalidation of d: close the open batch so that the
  // caller's epoch is numbered after its stamp.
  void before_caller_invalidation(domain_id d) noexcept {
    ring& q = rings_[p_.current_cpu()];
    if (q.open && back(q).domain == d) close(q);
  }

  // The caller's own non-leaf invalidation of range r of d got epoch e: the closed batches of d
  // stamped before e whose range r contains are freed once e completes.
  void note_caller_invalidation(domain_id d, iova_range r, epoch_t e) noexcept {
    ring& q = rings_[p_.current_cpu()];
    for (std::uint32_t i = q.b_count; i-- > 0;) {  // newest first
      if (q.open && i + 1 == q.b_count) continue;  // not stamped: nothing can cover it yet
      batch& b = at(q, i);
      if (b.domain != d || b.cover != 0 || e <= b.stamp) continue;
      if (r.contains(b.range)) b.cover = e;
    }
    reap(q, /*poll=*/false);
  }

  // CPU `owner`'s timer fired (on owner, [core-3]).
  void on_timer(unsigned owner) noexcept {
    if (p_.current_cpu() != owner) bug("flush_epoch_core: a CPU's timer ran on another CPU");
    ring& q = rings_[owner];
    q.stats.timer_runs.add();
    q.timer_armed = false;
    reap(q, /*poll=*/true);
    if (q.b_count == 0) return;
    const std::uint64_t now = p_.now_ns();
    batch& oldest = front(q);
    const bool aged = cfg_.flush_age_ns != 0 && now - oldest.opened_ns >= cfg_.flush_age_ns;
    bool deferred = false;
    if (aged || over_watermark(q)) {
      close(q);  // the oldest may be the open batch: a stamp is what a flush can cover
      // Behind a running synchronous flush, ask at the next poll instead of queueing: a flush
      // numbered after the stamp, whoever asks for it, covers the batch.
      if (!awaited(q, oldest)) {
        deferred = flush_busy(oldest.domain);
        if (!deferred) request_flush(q, oldest.domain, oldest.stamp);
      }
    }
    if (deferred || awaited(q, oldest)) {
      arm(q, now + poll_ns_);  // poll until what was asked for completes
    } else if (cfg_.flush_age_ns != 0) {
      const std::uint64_t due = oldest.opened_ns + cfg_.flush_age_ns;
      arm(q, due > now ? due : now + 1);
    }
    // Else (flush_age_ns = 0): it waits for a caller's flush or the watermark.
  }

  // CPU c is offline and about to come up: its ring has no other user.
  void cpu_up_prepare(unsigned c) noexcept { rings_[c].timer_armed = false; }

  // CPU c is dead (its timer killed, [core-4]); called on a running CPU, which adopts c's batches
  // with their stamps and covers (invalidating and freeing its own ring when they do not fit)
  // and arms its timer. Returns the frames moved. Frames that could not be moved (the backend
  // failed while making room) stay on c's ring, c's own again when it comes back.
  std::uint64_t cpu_dead(unsigned c) noexcept {
    const unsigned here = p_.current_cpu();
    if (here == c) bug("flush_epoch_core: cpu_dead ran on the dead CPU");
    ring& to = rings_[here];
    const std::uint64_t moved = adopt(to, rings_[c]);
    if (to.b_count != 0) arm(to, p_.now_ns());
    return moved;
  }

  // CPU c's offline failed and c runs again: its ring is its own, so nothing of it is read here;
  // c's timer (killed at CPU_DOWN_PREPARE and set up again by the platform) fires on c at once
  // and looks at the ring there.
  void cpu_down_failed(unsigned c) noexcept { p_.arm_timer(c, p_.now_ns()); }

  // Invalidates every domain in c's ring, waits, frees everything ([core-8]). False if the
  // backend failed (frames remain).
  [[nodiscard]] bool drain_cpu(unsigned c) noexcept {
    ring& q = rings_[c];
    q.timer_armed = false;
    return flush_all(q);
  }
  [[nodiscard]] bool drain() noexcept {
    bool ok = true;
    for (unsigned c = 0; c < cfg_.cpus; ++c)
      ok = drain_cpu(c) && ok;
    return ok;
  }

  [[nodiscard]] const cpu_stats& stats(unsigned c) const noexcept { return rings_[c].stats; }
  [[nodiscard]] stats_snapshot total() const noexcept {
    stats_snapshot s;
    for (unsigned c = 0; c < cfg_.cpus; ++c)
      s.add(rings_[c].stats);
    return s;
  }
  // Frames taken and not freed yet, all CPUs ([core-6]: exact at quiescence).
  [[nodiscard]] std::uint64_t pending() const noexcept {
    const stats_snapshot s = total();
    return s.retired - s.freed;
  }
  // Frames in c's ring: for c's ring user only ([core-3]) or at quiescence.
  [[nodiscard]] std::uint32_t held(unsigned c) const noexcept { return rings_[c].f_count; }
  [[nodiscard]] const latency_histogram& latency(unsigned c) const noexcept requires
      LatencyHistogram {
    return rings_[c].hist;
  }
  // IOVA ranges in c's ring (the same rules as held()).
  [[nodiscard]] std::uint32_t held_iovas(unsigned c) const noexcept { return rings_[c].i_count; }
  // What c's ring holds and waits for (the same rules as held()).
  [[nodiscard]] ring_view view(unsigned c) const noexcept {
    const ring& q = rings_[c];
    ring_view v;
    v.frames = q.f_count;
    v.iovas = q.i_count;
    v.batches = q.b_count;
    v.open = q.open;
    v.timer_armed = q.timer_armed;
    if (q.b_count != 0) {
      const batch& b = q.batches[q.b_head];
      v.oldest_domain = b.domain;
      v.oldest_opened_ns = b.opened_ns;
      v.oldest_stamp = b.stamp;
      v.oldest_cover = b.cover;
      v.requested = requested_[b.domain].load(std::memory_order_relaxed);
    }
    return v;
  }
  [[nodiscard]] const core_config& config() const noexcept { return cfg_; }
  [[nodiscard]] std::uint32_t watermark() const noexcept { return watermark_; }

 private:
  void touch(const void* line, bool write) noexcept {
    if constexpr (has_touch_shared<P>) {
      p_.touch_shared(line, write);
    } else {
      (void)line;
      (void)write;
    }
  }

  void bug(const char* what) noexcept {
    if constexpr (has_core_bug<P>) {
      p_.core_bug(what);
    } else {
      (void)what;
      __builtin_trap();
    }
  }

  retire_status retire_all(domain_id d, iova_range need, const frame* frames, std::size_t n,
                           const iova_range* iovas, std::size_t k) noexcept {
    if (n == 0 && k == 0) return retire_status::queued;
    ring& q = rings_[p_.current_cpu()];
    reap(q, /*poll=*/false);
    if (n > cfg_.frames_per_cpu || k > cfg_.iovas_per_cpu)
      return retire_inline(q, d, need, frames, n, iovas, k);
    // Back-pressure before anything is taken, so the rings never hold more than their bounds.
    if (!room(q, d, n, k)) {
      q.stats.backpressure.add();
      (void)flush_all(q);
      if (!room(q, d, n, k)) {
        q.stats.refused.add(n);
        return retire_status::refused;
      }
    }
    if constexpr (has_on_taken<P>) p_.on_taken(q.cpu, d, need, frames, n, k);
    batch* b = nullptr;
    if (can_merge(q, d, n, k)) {
      b = &back(q);
      if (need.first < b->range.first) b->range.first = need.first;
      if (need.last > b->range.last) b->range.last = need.last;
    } else {
      close(q);
      b = &push_batch(q);
      b->domain = d;
      b->range = need;
      b->opened_ns = p_.now_ns();  // the one clock read per batch
      q.open = true;
      q.stats.batches.add();
    }
    for (std::size_t i = 0; i < n; ++i)
      q.frames[slot(q, q.f_count + static_cast<std::uint32_t>(i))] = frames[i];
    for (std::size_t i = 0; i < k; ++i)
      q.iovas[iova_slot(q, q.i_count + static_cast<std::uint32_t>(i))] = iovas[i];
    q.f_count += static_cast<std::uint32_t>(n);
    q.i_count += static_cast<std::uint32_t>(k);
    b->count += static_cast<std::uint32_t>(n);
    b->iova_count += static_cast<std::uint32_t>(k);
    q.stats.retired.add(n);
    q.stats.peak_frames.raise_to(q.f_count);
    if (k != 0) {
      q.stats.iovas_retired.add(k);
      q.stats.peak_iovas.raise_to(q.i_count);
    }
    if (b->count >= cfg_.batch_frames || (k != 0 && b->iova_count >= cfg_.batch_iovas)) close(q);
    // Ask early, without waiting: over a watermark or with half the batch descriptors used. While
    // a full flush of the domain is in flight, closing could not ask for a newer one (one request
    // per domain), so the batch stays open until batch_frames and the timer polls: one stamp per
    // batch_frames frames or per completed request, not per retire; frames_per_cpu and
    // batches_per_cpu still bound the ring (back-pressure above). The same while a synchronous
    // flush runs on another CPU (flush_busy): asking now would only queue behind it.
    bool requested = false;
    if (over_watermark(q)) {
      const domain_id od = back(q).domain;
      if (!flush_in_flight(od) && !flush_busy(od)) {
        close(q);
        request_flush(q, od, back(q).stamp);
        requested = true;
        reap(q, /*poll=*/false);  // a fast invalidation may have completed already
      } else if (!q.timer_armed) {
        requested = true;  // another CPU's request: the timer notices its completion
      }
    }
    if (requested && q.b_count != 0)
      poll_soon(q);
    else if (!q.timer_armed && q.b_count != 0 && cfg_.flush_age_ns != 0)
      arm(q, front(q).opened_ns + cfg_.flush_age_ns);
    return retire_status::queued;
  }

  // ---- the rings ----
  [[nodiscard]] std::uint32_t slot(const ring& q, std::uint32_t i) const noexcept {
    return (q.f_head + i) % cfg_.frames_per_cpu;
  }
  [[nodiscard]] std::uint32_t iova_slot(const ring& q, std::uint32_t i) const noexcept {
    return cfg_.iovas_per_cpu == 0 ? 0 : (q.i_head + i) % cfg_.iovas_per_cpu;
  }
  [[nodiscard]] batch& at(ring& q, std::uint32_t i) noexcept {
    return q.batches[(q.b_head + i) % cfg_.batches_per_cpu];
  }
  [[nodiscard]] batch& front(ring& q) noexcept { return q.batches[q.b_head]; }
  [[nodiscard]] batch& back(ring& q) noexcept { return at(q, q.b_count - 1); }
  batch& push_batch(ring& q) noexcept {
    batch& b = at(q, q.b_count);
    ++q.b_count;
    b = batch{};
    b.first = slot(q, q.f_count);
    b.iova_first = iova_slot(q, q.i_count);
    return b;
  }
  void pop_batch(ring& q) noexcept {
    q.b_head = (q.b_head + 1) % cfg_.batches_per_cpu;
    --q.b_count;
  }

  [[nodiscard]] bool can_merge(ring& q, domain_id d, std::size_t n, std::size_t k) noexcept {
    return q.open && back(q).domain == d && back(q).count + n <= cfg_.batch_frames &&
           back(q).iova_count + k <= cfg_.batch_iovas;
  }
  [[nodiscard]] bool room(ring& q, domain_id d, std::size_t n, std::size_t k) noexcept {
    return q.f_count + n <= cfg_.frames_per_cpu && q.i_count + k <= cfg_.iovas_per_cpu &&
           (can_merge(q, d, n, k) || q.b_count < cfg_.batches_per_cpu);
  }
  [[nodiscard]] bool over_watermark(const ring& q) const noexcept {
    return q.f_count > watermark_ || q.i_count > iova_watermark_ ||
           2 * q.b_count > cfg_.batches_per_cpu;
  }

  // ---- epochs ----
  // Stamps the open batch, after the unlinks of its frames ([core-1]).
  void close(ring& q) noexcept {
    if (!q.open) return;
    batch& b = back(q);
    b.stamp = p_.stamp(b.domain);
    q.open = false;
    q.stats.stamps.add();
  }

  // `poll`: ask the hardware for progress; otherwise read the epochs as last advanced (the
  // producer path, so producers on many CPUs do not meet on the IOMMU's locks).
  [[nodiscard]] bool eligible(const batch& b, bool poll) noexcept {
    if (b.cover != 0 && (poll ? p_.completed(b.domain) : p_.completed_seen(b.domain)) >= b.cover)
      return true;
    return (poll ? p_.completed_full(b.domain) : p_.completed_full_seen(b.domain)) > b.stamp;
  }

  // A flush that will free the closed batch is on its way (the caller's, or a full one asked
  // for), or an older request is in flight and must complete before this CPU asks again.
  [[nodiscard]] bool awaited(ring& q, batch& b) noexcept {
    if (q.open && &b == &back(q)) return false;
    const epoch_t asked = requested_[b.domain].load(std::memory_order_relaxed);  // [core-5]
    return b.cover != 0 || asked > b.stamp || p_.completed_full_seen(b.domain) < asked;
  }

  // Whether CPU `cpu` should poll the hardware for d's progress at `now`: no other CPU did within
  // poll_spacing_ns (a CPU's own earlier poll never holds it back, so a lone CPU polls as often
  // as before). Relaxed hints like [core-5]: two CPUs racing both poll, which is harmless.
  [[nodiscard]] bool claim_poll(unsigned cpu, domain_id d, std::uint64_t now) noexcept {
    if (cfg_.poll_spacing_ns == 0) return true;
    poll_hint& h = polled_[d];
    touch(&h, false);
    const std::uint64_t t = h.at.load(std::memory_order_relaxed);
    if (t != 0 && now < t + cfg_.poll_spacing_ns && h.by.load(std::memory_order_relaxed) != cpu)
      return false;
    touch(&h, true);
    h.at.store(now, std::memory_order_relaxed);
    h.by.store(cpu, std::memory_order_relaxed);
    return true;
  }

  // Frees every eligible batch from the head of q (never the open one), oldest first. `poll`:
  // the hardware may be polled (at most once per domain and poll_spacing_ns across CPUs).
  void reap(ring& q, bool poll) noexcept {
    [[maybe_unused]] std::uint64_t now = 0;
    std::uint64_t poll_now = 0;
    domain_id polled = 0;
    bool may_poll = false;
    const auto hw = [&](domain_id d) {
      if (!poll) return false;
      if (poll_now == 0 || polled != d) {
        if (poll_now == 0) poll_now = p_.now_ns();
        polled = d;
        may_poll = claim_poll(q.cpu, d, poll_now);
      }
      return may_poll;
    };
    while (q.b_count != 0 && !(q.open && q.b_count == 1) &&
           eligible(front(q), hw(front(q).domain))) {
      batch& b = front(q);
      if (b.first != q.f_head || (b.iova_count != 0 && b.iova_first != q.i_head))
        bug("flush_epoch_core: a batch's frames are not at the ring's head");
      if (b.cover != 0) q.stats.rides.add();
      free_head(q, b);  // after the acquire in eligible() ([core-2])
      if constexpr (LatencyHistogram) {
        if ((q.sample_tick++ & sample_mask_) == 0) {
          if (now == 0) now = p_.now_ns();  // one clock read per reap
          q.hist.record(now >= b.opened_ns ? now - b.opened_ns : 0, b.count);
        }
      }
      pop_batch(q);
    }
  }

  // Hands the `count` entries at `head` of a ring of `cap` slots to give(first, n), a span at a
  // time (two where the ring wraps); returns the new head.
  template <class T, class Give>
  static std::uint32_t give_spans(T* slots, std::uint32_t cap, std::uint32_t head,
                                  std::uint32_t count, Give&& give) noexcept {
    while (count != 0) {
      const std::uint32_t to_end = cap - head;
      const std::uint32_t span = count < to_end ? count : to_end;
      give(slots + head, span);
      head = (head + span) % cap;
      count -= span;
    }
    return head;
  }

  // Frees batch b's frames and IOVAs from the heads of q's rings.
  void free_head(ring& q, const batch& b) noexcept {
    q.f_head =
        give_spans(q.frames, cfg_.frames_per_cpu, q.f_head, b.count,
                   [&](const frame* f, std::uint32_t n) { p_.free_frames(q.cpu, b.domain, f, n); });
    q.f_count -= b.count;
    q.stats.freed.add(b.count);
    if constexpr (has_free_iovas<P>) {
      q.i_head = give_spans(
          q.iovas, cfg_.iovas_per_cpu, q.i_head, b.iova_count,
          [&](const iova_range* r, std::uint32_t k) { p_.free_iovas(q.cpu, b.domain, r, k); });
      q.i_count -= b.iova_count;
      q.stats.iovas_freed.add(b.iova_count);
    }
  }

  void arm(ring& q, std::uint64_t at_ns) noexcept {
    p_.arm_timer(q.cpu, at_ns);
    q.timer_armed = true;
    q.timer_at = at_ns;
  }
  // The timer fires within poll_ns (re-armed only if it would fire later).
  void poll_soon(ring& q) noexcept {
    const std::uint64_t at_ns = p_.now_ns() + poll_ns_;
    if (!q.timer_armed || q.timer_at > at_ns) arm(q, at_ns);
  }

  // The platform's optional flush_busy: a synchronous invalidation of d runs on another CPU.
  [[nodiscard]] bool flush_busy(domain_id d) noexcept {
    if constexpr (has_flush_busy<P>) {
      return p_.flush_busy(d);
    } else {
      (void)d;
      return false;
    }
  }

  // A full invalidation of d that some CPU asked for has not completed yet ([core-5]).
  [[nodiscard]] bool flush_in_flight(domain_id d) noexcept {
    touch(&requested_[d], false);
    return p_.completed_full_seen(d) < requested_[d].load(std::memory_order_relaxed);
  }

  // Makes sure a full invalidation of d numbered after `stamp` is on its way, at most one in
  // flight per domain across CPUs: ride on a newer request; wait for an older one in flight.
  void request_flush(ring& q, domain_id d, epoch_t stamp) noexcept {
    std::atomic<epoch_t>& newest = requested_[d];
    touch(&newest, false);
    const epoch_t last = newest.load(std::memory_order_relaxed);  // [core-5]
    if (last > stamp || p_.completed_full_seen(d) < last) return;
    const epoch_t e = p_.invalidate(d, iova_range::whole_domain());
    if (e == 0) return;  // failed: the timer asks again
    q.stats.requests.add();
    if (p_.completed_full_seen(d) >= e) return;  // already done (a synchronous backend)
    touch(&newest, true);
    epoch_t seen = newest.load(std::memory_order_relaxed);
    while (seen < e && !newest.compare_exchange_weak(seen, e, std::memory_order_relaxed)) {
    }
  }

  // Back-pressure and drain: close, invalidate every domain in q (submitted first, then waited
  // for), free everything. False if the backend failed and batches remain.
  bool flush_all(ring& q) noexcept {
    if (q.b_count == 0) return true;
    close(q);
    bool ok = true;
    for (std::uint32_t i = 0; i < q.b_count; ++i) {
      batch& b = at(q, i);
      b.scratch = 0;
      bool first_of_domain = true;
      for (std::uint32_t j = 0; j < i && first_of_domain; ++j)
        first_of_domain = at(q, j).domain != b.domain;
      if (!first_of_domain) continue;
      b.scratch = p_.invalidate(b.domain, iova_range::whole_domain());  // [core-7]
      if (b.scratch == 0) ok = false;
    }
    for (std::uint32_t i = 0; i < q.b_count; ++i) {
      batch& b = at(q, i);
      if (b.scratch != 0 && !p_.wait(b.domain, b.scratch)) ok = false;
    }
    reap(q, /*poll=*/true);
    if (ok && q.b_count != 0) bug("flush_epoch_core: a completed full invalidation left batches");
    return q.b_count == 0;
  }

  // More than the rings can hold: invalidate the range, wait, free, in this call.
  retire_status retire_inline(ring& q, domain_id d, iova_range need, const frame* frames,
                              std::size_t n, const iova_range* iovas, std::size_t k) noexcept {
    const epoch_t e = p_.invalidate(d, need);  // [core-7]: numbered after the unlinks
    if (e == 0 || !p_.wait(d, e)) {
      q.stats.refused.add(n);
      return retire_status::refused;
    }
    if constexpr (has_on_taken<P>) p_.on_taken(q.cpu, d, need, frames, n, k);
    if (n != 0) p_.free_frames(q.cpu, d, frames, n);  // after wait's acquire
    if constexpr (has_free_iovas<P>) {
      if (k != 0) p_.free_iovas(q.cpu, d, iovas, k);
      q.stats.iovas_retired.add(k);
      q.stats.iovas_freed.add(k);
    } else {
      (void)iovas;
      (void)k;
    }
    q.stats.retired.add(n);
    q.stats.freed.add(n);
    q.stats.inline_frames.add(n);
    q.stats.backpressure.add();
    return retire_status::inline_freed;
  }

  // Moves every batch of `from` (a dead CPU's ring) behind `to`'s.
  std::uint64_t adopt(ring& to, ring& from) noexcept {
    close(from);  // stamped now, after every unlink of its frames ([core-4]): safe, if late
    close(to);    // adopted batches go behind it, and only the newest batch may be open
    std::uint64_t moved = 0;
    while (from.b_count != 0) {
      batch& b = front(from);
      if (!fits(to, b)) {
        to.stats.backpressure.add();
        (void)flush_all(to);
        if (!fits(to, b)) break;  // the backend failed: the rest stays on `from`
      }
      batch& nb = push_batch(to);
      const std::uint32_t first = nb.first;
      const std::uint32_t iova_first = nb.iova_first;
      nb = b;
      nb.first = first;
      nb.iova_first = iova_first;
      nb.scratch = 0;
      for (std::uint32_t i = 0; i < b.count; ++i) {
        to.frames[slot(to, to.f_count + i)] = from.frames[from.f_head];
        from.f_head = (from.f_head + 1) % cfg_.frames_per_cpu;
      }
      for (std::uint32_t i = 0; i < b.iova_count; ++i) {
        to.iovas[iova_slot(to, to.i_count + i)] = from.iovas[from.i_head];
        from.i_head = (from.i_head + 1) % cfg_.iovas_per_cpu;
      }
      to.f_count += b.count;
      from.f_count -= b.count;
      to.i_count += b.iova_count;
      from.i_count -= b.iova_count;
      moved += b.count;
      to.stats.adopted.add(b.count);  // retired and freed stay where they happened
      pop_batch(from);
    }
    to.stats.peak_frames.raise_to(to.f_count);
    to.stats.peak_iovas.raise_to(to.i_count);
    return moved;
  }
  [[nodiscard]] bool fits(const ring& to, const batch& b) const noexcept {
    return to.b_count < cfg_.batches_per_cpu && to.f_count + b.count <= cfg_.frames_per_cpu &&
           to.i_count + b.iova_count <= cfg_.iovas_per_cpu;
  }

  P& p_;
  core_config cfg_{};
  std::uint32_t watermark_ = 1;
  std::uint32_t iova_watermark_ = 1;
  std::uint64_t poll_ns_ = default_poll_ns;
  std::uint64_t sample_mask_ = 0;
  ring* rings_ = nullptr;
  std::atomic<epoch_t>* requested_ = nullptr;  // per domain, [core-5]
  poll_hint* polled_ = nullptr;                // per domain: the last hardware poll
};

}  // namespace ptreclaim::core
