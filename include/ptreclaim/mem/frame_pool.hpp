// The frame pool: the simulated physical memory, with a ledger that catches misuse.
//
// Capacity is fixed at construction (an explicit bound); exhaustion is errc::no_memory, never a
// crash, and only when every frame is allocated (or inside an alloc/free that has not
// returned): an allocation takes a frame from its CPU's cache, the depot or another CPU's
// cache, and reports exhaustion only after a last look with every list locked finds none.
// Allocation and free go through per-CPU caches of free frames (the caller's CPU comes from the
// platform seam) backed by a locked depot, so CPUs do not serialise on one lock.
//
// The ledger: every state change is checked. Double free, freeing a frame still linked into a
// table (the page table marks a frame linked when it publishes it: mark_linked), and touching a
// frame id that was never allocated (or is out of range) are refused with
// errc::ledger_violation and recorded in ledger_reports(). leaks() lists every frame not free, with
// its owner, for the teardown check. Freed frames are poisoned (poison_pattern).
//
// Thread-safety: every member function may be called concurrently from any thread.
// Memory ordering: [fp-1] a frame's ident store with release on allocation pairs with [fp-2]
// acquire loads by walkers; frame contents written before a table is linked are published by the
// linking PTE store (see pt/), not by the pool.
//
// Layout: the allocation and free counters live in the per-CPU caches (each written under its
// cache's lock, so no locked add on a line all CPUs write; stats() sums them, and in_use is
// their difference), so an alloc or free that its CPU's cache serves writes no shared line. What
// refills and spills write (the depot, the peak) sits on cache lines apart from what every
// operation only reads (the frame and metadata arrays, the cache table). Frames are 4 KiB
// aligned, so two frames never share a cache line (or a host page).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "ptreclaim/base/limits.hpp"
#include "ptreclaim/base/platform.hpp"
#include "ptreclaim/base/spinlock.hpp"
#include "ptreclaim/base/status.hpp"
#include "ptreclaim/mem/frame.hpp"

namespace ptreclaim::mem {

struct pool_config {
  std::uint32_t capacity_frames = 1u << 16;  // 256 MiB of simulated memory
  unsigned caches = 1;             // per-CPU free-frame caches (<= limits::max_pool_caches)
  unsigned cache_frames = 64;      // frames one cache holds before spilling to the depot
  bool poison = true;              // fill freed frames with poison_pattern
  std::size_t max_reports = 1000;  // ledger reports kept in full (all are counted)
};

struct ledger_report {
  frame_id frame;
  std::string what;  // "double free of frame 17 (freed by xen-tasklet at 1200 ns)"
};

struct leak_record {
  frame_id frame;
  frame_ident owner;
};

// Hears every allocation, link and free, after it happened (a recorder of a frame's history:
// sim's frame story). Called on the allocating / linking / freeing thread; it must not call back
// into the pool and must not charge the platform. Unset (the default), the pool pays one relaxed
// load per call.
class pool_observer {
 public:
  virtual ~pool_observer() = default;
  virtual void on_alloc(frame_id f, frame_ident now) noexcept = 0;
  virtual void on_linked(frame_id f) noexcept = 0;
  virtual void on_freed(frame_id f, frame_ident before, const char* path) noexcept = 0;
};

struct pool_stats {
  std::uint64_t allocations = 0;
  std::uint64_t frees = 0;
  std::uint64_t failed_allocations = 0;
  std::uint32_t in_use = 0;  // allocations - frees: exact at quiescence
  // The most frames ever out of the depot at once (allocated, or free in a CPU's cache), noted
  // when the depot shrinks: at least the peak of in_use, and above it by at most
  // caches x cache_frames (the frames the caches held then).
  std::uint32_t peak_in_use = 0;
};

class frame_pool {
 public:
  explicit frame_pool(pool_config config, platform& plat = default_platform());
  frame_pool(const frame_pool&) = delete;
  frame_pool& operator=(const frame_pool&) = delete;
  ~frame_pool();

  // A zeroed frame owned as a page table of `domain` at `level`, state page_table.
  // errc::no_memory when the pool is exhausted (or an injected failure fires).
  [[nodiscard]] Result<frame_id> alloc_table(std::uint16_t domain, std::uint8_t level);
  // A zeroed data frame (a DMA buffer).
  [[nodiscard]] Result<frame_id> alloc_data();

  // Records that page-table frame f is now linked into a published hierarchy (the page table
  // calls it right after the store or CAS that links it, and for a root). Refused for a frame
  // that is not a page table or is already linked (linked twice).
  Status mark_linked(frame_id f);
  // page_table -> retired: the frame was unlinked by a gather (clears the linked mark).
  // Refused unless the frame is a page table.
  Status mark_retired(frame_id f);
  // Returns a retired or data frame to the pool; `path` (a string literal) names who freed it.
  // Refused (and reported) for a free frame (double free) or a page table not retired (linked,
  // or allocated and never retired).
  Status free(frame_id f, const char* path);
  // Frees a page table that was never linked into a hierarchy (a lost installation race, an
  // error path); such a frame may skip the retired state because no device could see it.
  // Refused for a frame marked linked.
  Status free_unlinked_table(frame_id f, const char* path);

  // Frame contents: 512 eight-byte words, read and written with atomics (devices walk
  // lock-free). Valid for any in-range id; reading a freed frame returns poison.
  [[nodiscard]] std::atomic<std::uint64_t>* words(frame_id f) noexcept;
  [[nodiscard]] const std::atomic<std::uint64_t>* words(frame_id f) const noexcept;

  [[nodiscard]] frame_meta& meta(frame_id f) noexcept;
  [[nodiscard]] const frame_meta& meta(frame_id f) const noexcept;
  [[nodiscard]] frame_ident ident(frame_id f) const noexcept { return meta(f).load_ident(); }
  [[nodiscard]] bool contains(frame_id f) const noexcept { return f.value < capacity_; }
  [[nodiscard]] std::uint32_t capacity() const noexcept { return capacity_; }

  [[nodiscard]] pool_stats stats() const noexcept;
  // Every frame not free, with its owner (the teardown leak check).
  [[nodiscard]] std::vector<leak_record> leaks() const;
  // A human-readable leak report: "" when the pool is whole.
  [[nodiscard]] std::string leak_report(std::size_t max_lines = 20) const;
  [[nodiscard]] std::vector<ledger_report> ledger_reports() const;
  [[nodiscard]] std::uint64_t ledger_violation_count() const noexcept {
    return violations_.load(std::memory_order_relaxed);
  }

  // Fault injection: the next `n`-th allocation (1 = the next one) fails with no_memory.
  // 0 disables. Used by tests that fail every allocation point of a scenario in turn.
  void inject_alloc_failure(std::uint64_t n) noexcept {
    fail_countdown_.store(n, std::memory_order_relaxed);
  }

  // Fault injection at random points: each page-table allocation from now on fails with
  // no_memory with `probability` (0 disables), drawn per attempt from `seed` with a counter, so
  // a deterministic executor replays the schedule. Data frames are never failed.
  void set_table_alloc_faults(double probability, std::uint64_t seed) noexcept;
  [[nodiscard]] std::uint64_t injected_table_failures() const noexcept {
    return injected_.load(std::memory_order_relaxed);
  }

  [[nodiscard]] platform& plat() const noexcept { return *platform_; }

  // Reports every allocation, link and free to `o` (nullptr: to nobody). Set it while nothing
  // allocates (before a run).
  void set_observer(pool_observer* o) noexcept { observer_.store(o, std::memory_order_relaxed); }

 private:
  static constexpr std::size_t line = 64;  // host cache line: the unit of false sharing

  // One frame's contents, on its own page as in hardware.
  struct alignas(limits::page_size) frame_words {
    std::atomic<std::uint64_t> w[limits::ptes_per_table];
  };
  static_assert(sizeof(frame_words) == limits::page_size);
  // Frames live in anonymous pages that start as zero bytes (see memory_): that must be a
  // lock-free atomic holding 0, with no hidden lock word.
  static_assert(std::atomic<std::uint64_t>::is_always_lock_free);

  // A CPU's free frames and its share of the statistics. The counters are written only under
  // `lock` (relaxed load and store: the lock orders the writers, no locked add) and read
  // without it by stats() (relaxed: a statistic, not a synchronisation point).
  struct alignas(line) cache {
    spinlock lock;
    std::vector<std::uint32_t> frames;
    std::atomic<std::uint64_t> allocations{0};  // frames taken from this cache's list
    std::atomic<std::uint64_t> frees{0};        // frames put back into it
    explicit cache(platform& p) : lock(p) {}
  };
  // Adds one to a counter of a cache whose lock the caller holds.
  static void bump(std::atomic<std::uint64_t>& c) noexcept {
    c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }

  Result<frame_id> alloc(frame_ident owner);
  Status free_checked(frame_id f, const char* path, bool from_retired_only);
  bool take_frame(std::uint32_t& out);
  bool take_frame_exhausted(cache& mine, std::uint32_t& out);
  void note_out_of_depot() noexcept;
  void give_frame(std::uint32_t f);
  void report(frame_id f, std::string what);

  // Read by every operation, written only at construction (fail_countdown_ and the table
  // fault settings: by fault injection, never on a measured path).
  platform* platform_;
  pool_config config_;
  std::uint32_t capacity_;
  // Anonymous pages from the kernel: zero until first touched, so a 256 MiB pool costs nothing
  // until its frames are used (value-initialising it wrote every page of every run's pool).
  struct unmap_pages {
    std::size_t bytes;  // no initialiser: it would make the deleter not default-constructible here
    void operator()(frame_words* p) const noexcept;
  };
  std::unique_ptr<frame_words[], unmap_pages> memory_;
  std::unique_ptr<frame_meta[]> meta_;
  std::vector<std::unique_ptr<cache>> caches_;
  std::atomic<std::uint64_t> fail_countdown_{0};
  std::atomic<pool_observer*> observer_{nullptr};
  // set_table_alloc_faults: the probability in 2^-53 units (0 = off) and the seed.
  std::atomic<std::uint64_t> table_fail_threshold_{0};
  std::uint64_t table_fail_seed_ = 0;

  // Written by refills and spills (cache_frames / 2 frames at a time); peak_ under depot_lock_
  // (a plain store: one writer at a time), read by stats() without it.
  alignas(line) spinlock depot_lock_;
  std::vector<std::uint32_t> depot_;
  std::atomic<std::uint32_t> peak_{0};

  // Error paths and fault injection only.
  alignas(line) std::atomic<std::uint64_t> failed_{0};
  std::atomic<std::uint64_t> table_attempts_{0};  // set_table_alloc_faults: attempts drawn
  std::atomic<std::uint64_t> injected_{0};
  std::atomic<std::uint64_t> violations_{0};
  mutable std::mutex reports_mutex_;
  std::vector<ledger_report> reports_;
};

}  // namespace ptreclaim::mem
