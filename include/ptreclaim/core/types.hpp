// The freestanding flush-epoch core's vocabulary: epochs, ranges, bounds, statistics.
//
// Freestanding: this header and the others of include/ptreclaim/core include only <cstdint>,
// <cstddef>, <atomic>, <type_traits>, <limits> and <new>, throw nothing, need no RTTI and
// allocate nothing (the core's memory is handed to it once, at init). A CTest test
// (core.freestanding_includes) refuses any other standard header here.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace ptreclaim::core {

using epoch_t = std::uint64_t;    // flush epoch of a domain; 0 = none yet
using domain_id = std::uint32_t;  // < core_config::max_domains
using iova_t = std::uint64_t;

// An IOVA range [first, last] (inclusive) of one domain.
struct iova_range {
  iova_t first = 0;
  iova_t last = ~iova_t{0};

  [[nodiscard]] constexpr bool whole() const noexcept { return first == 0 && last == ~iova_t{0}; }
  [[nodiscard]] constexpr bool contains(const iova_range& r) const noexcept {
    return first <= r.first && r.last <= last;
  }
  static constexpr iova_range whole_domain() noexcept { return {}; }
};

// The explicit bounds the core is built with. Memory is storage_bytes(config), taken once.
struct core_config {
  unsigned cpus = 1;                    // CPU slots, numbered 0 .. cpus-1
  std::uint32_t max_domains = 1;        // domain ids are < max_domains
  std::uint32_t frames_per_cpu = 1024;  // a CPU's ring of frames: the per-CPU bound (S5)
  std::uint32_t batches_per_cpu = 64;   // a CPU's ring of batch descriptors
  std::uint32_t batch_frames = 1;       // frames one batch (one stamp) may take
  // Lazy DMA: IOVA ranges a CPU may hold until their invalidation completed (the per-CPU bound
  // of deferred IOVAs; 0 = this core takes no IOVAs), and how many one batch may take.
  std::uint32_t iovas_per_cpu = 256;
  std::uint32_t batch_iovas = 32;
  // Ask for a full invalidation early once a CPU holds more than this many frames (capped at
  // frames_per_cpu / 2, at least 1), or more than half its batch descriptors are used.
  std::uint32_t watermark = 64;
  // The same for deferred IOVAs (capped at iovas_per_cpu / 2, at least 1).
  std::uint32_t iova_watermark = 128;
  // Ask for a full invalidation once the oldest batch of a CPU is this old; 0 = never.
  std::uint64_t flush_age_ns = 100'000;
  // The timer's period while an invalidation it waits for is in flight; 0 = 2 us.
  std::uint64_t poll_ns = 0;
  // At most one hardware poll of a domain's completions per this many ns across all CPUs: a
  // timer that finds another CPU polled the domain more recently reads the progress that poll
  // published (P::completed*_seen) instead. Many CPUs waiting on one domain then do not all meet
  // on the IOMMU's locks. 0 (the default) = every timer run polls.
  std::uint64_t poll_spacing_ns = 0;
  // Latency histogram (when compiled in): one batch in 2^latency_sample_shift is sampled.
  unsigned latency_sample_shift = 0;
};

enum class init_status : std::uint8_t {
  ok,
  // A zero bound, batch_frames > frames_per_cpu, batch_iovas > iovas_per_cpu (or 0 when IOVAs
  // are taken), or more than 2^16 CPUs.
  bad_config,
  storage_small,  // fewer bytes than storage_bytes(config)
  storage_align,  // storage not aligned to storage_align
};

// What retire() did with the frames and IOVAs.
enum class retire_status : std::uint8_t {
  queued,        // in the CPU's rings; freed later
  inline_freed,  // more than the rings can hold: invalidated, waited for and freed in the call
  // The backend failed (invalidate returned 0, or wait timed out) while the core had to make
  // room or free inline: nothing was taken. The caller still owns the frames and IOVAs; freeing
  // them is unsafe until an invalidation submitted after their unlink completed.
  refused,
};

// A per-CPU statistics counter. Single writer (the one user of its CPU's ring, [core-6]):
// a relaxed load and store, no read-modify-write (a plain add on x86), so readers on other CPUs
// are race-free and see a value that may be stale.
class counter {
 public:
  void add(std::uint64_t n = 1) noexcept {
    v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  void raise_to(std::uint64_t n) noexcept {
    if (n > v_.load(std::memory_order_relaxed)) v_.store(n, std::memory_order_relaxed);
  }
  [[nodiscard]] std::uint64_t get() const noexcept { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> v_{0};
};

// One CPU ring's statistics (read with flush_epoch_core::stats(cpu), summed with total()).
struct cpu_stats {
  counter retired;        // frames handed to retire() on this CPU and taken
  counter freed;          // frames freed from this ring (or inline on this CPU)
  counter refused;        // frames retire() refused (backend failure)
  counter batches;        // batches opened
  counter stamps;         // batches closed (one stamp each)
  counter rides;          // batches freed on a caller's invalidation
  counter requests;       // full invalidations the core asked for without waiting
  counter backpressure;   // times the ring was full and the core invalidated and waited
  counter inline_frames;  // frames freed inline (a gather larger than the ring)
  counter timer_runs;     // on_timer() calls for this CPU
  counter adopted;        // frames moved in from a dead CPU's ring
  counter peak_frames;    // the most frames the ring held at once
  counter iovas_retired;  // deferred IOVA ranges taken
  counter iovas_freed;    // of which handed back (P::free_iovas)
  counter peak_iovas;     // the most IOVA ranges the ring held at once
};

// A plain copy of statistics, summed over CPUs.
struct stats_snapshot {
  std::uint64_t retired = 0, freed = 0, refused = 0, batches = 0, stamps = 0, rides = 0;
  std::uint64_t requests = 0, backpressure = 0, inline_frames = 0, timer_runs = 0, adopted = 0;
  std::uint64_t peak_frames = 0;  // sum of the rings' own peaks (an upper bound of the total)
  std::uint64_t iovas_retired = 0, iovas_freed = 0, peak_iovas = 0;

  void add(const cpu_stats& s) noexcept {
    retired += s.retired.get();
    freed += s.freed.get();
    refused += s.refused.get();
    batches += s.batches.get();
    stamps += s.stamps.get();
    rides += s.rides.get();
    requests += s.requests.get();
    backpressure += s.backpressure.get();
    inline_frames += s.inline_frames.get();
    timer_runs += s.timer_runs.get();
    adopted += s.adopted.get();
    peak_frames += s.peak_frames.get();
    iovas_retired += s.iovas_retired.get();
    iovas_freed += s.iovas_freed.get();
    peak_iovas += s.peak_iovas.get();
  }
};

// What one CPU's ring holds and its oldest batch waits for (flush_epoch_core::view: for the
// ring's user or at quiescence, [core-3]; for watchdogs and debuggers).
struct ring_view {
  std::uint32_t frames = 0, iovas = 0, batches = 0;
  bool open = false;         // the newest batch is open (unstamped)
  bool timer_armed = false;  // as the core last armed it
  // The oldest batch (batches != 0): its domain, when it opened, its stamp and cover (0: none),
  // and the newest full invalidation of its domain any CPU asked for.
  domain_id oldest_domain = 0;
  std::uint64_t oldest_opened_ns = 0;
  epoch_t oldest_stamp = 0, oldest_cover = 0, requested = 0;
};

// Retire-to-free latency, log2 buckets of nanoseconds (bucket i: [2^i, 2^(i+1)), 0 also 0),
// per CPU, single writer like counter. Compiled in only with flush_epoch_core<P, true>.
struct latency_histogram {
  static constexpr unsigned buckets = 64;
  counter bucket[buckets];

  static constexpr unsigned bucket_of(std::uint64_t ns) noexcept {
    return ns == 0 ? 0u : 63u - static_cast<unsigned>(__builtin_clzll(ns));
  }
  void record(std::uint64_t ns, std::uint64_t weight) noexcept {
    bucket[bucket_of(ns)].add(weight);
  }
  [[nodiscard]] std::uint64_t samples() const noexcept {
    std::uint64_t n = 0;
    for (const counter& c : bucket)
      n += c.get();
    return n;
  }
};

}  // namespace ptreclaim::core
