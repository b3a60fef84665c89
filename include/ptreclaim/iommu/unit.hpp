// One IOMMU: its context table (device -> domain, with this unit's did), IOTLB, paging-structure
// caches, invalidation queue, the walks in flight, and the hardware walker.
//
// The walker. A translation first tries the IOTLB, then the deepest paging-structure-cache hit,
// then walks from the domain's root. Every PTE read is an acquire load from the frame pool,
// bracketed by two reads of the frame's ledger identity; a frame that is not a live table of the
// walking domain at the expected level (and, when it came from a PSC entry, of the cached
// generation) is a violation (violation.hpp), recorded and walked on. Faults (not present,
// permission, reserved) are results, as hardware fault records are. A walk is step-wise so a
// deterministic simulator can interleave it with CPU operations one memory read at a time:
//   begin()  takes the unit lock: processes due descriptors, reads the context entry, the IOTLB
//            and the PSCs, and registers the walk (with the queue position it started at);
//   step()   one PTE read, lock-free;
//   (finish) the last step takes the lock again: fills the caches, except the entries an
//            invalidation that took effect during the walk covers (a fill would undo it), and
//            unregisters the walk.
// Fills dropped. While a walk is registered, every invalidation that takes effect marks, in the
// walk's slot, the fills it covers: a global one or a DSI of the walk's did all of them; a PSI of
// the walk's did the IOTLB fill of every page size whose page holding the IOVA overlaps its
// block, if its mask is at least that page's order (the superpage rule, cache.hpp; a fill of a
// larger page is made but marked, as the cache marks an entry the PSI leaves) and, with IH=0,
// each PSC fill whose IOVA region overlaps it. Other fills are kept, as
// hardware may keep them: an unrelated invalidation must not hide a missing flush.
//
// The invalidation queue is processed lazily: descriptors finish in order, each taking its
// configured latency after the previous one finished (or after its submission); whoever calls
// advance(), poll(), submit() or begin() moves the hardware up to the platform's now.
// The wait rule: a wait descriptor completes only when every earlier descriptor is done AND no
// walk that began before the last of those invalidations took effect is still in flight. So a
// completed wait means no walk can still use an entry the invalidations dropped.
//
// Thread-safety: every public member may be called from any thread; one walk object is driven
// by one thread at a time. Caches, queue, context table and walk registry live under the unit's
// spinlock (reported to the platform, so the deterministic executor sees the contention).
// Memory ordering: [iu-1] the release store of the processed count after a descriptor took effect
// pairs with [iu-2] the acquire loads in done()/processed(); [iu-3] a wait's status write is a
// release store that pairs with [iu-4] the submitter's acquire load of its status word; [iu-5] PTE
// loads are acquire, pairing with the page table's release stores that link a table; frame
// identities are loaded with acquire, pairing with the pool's release store on allocation.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "ptreclaim/base/platform.hpp"
#include "ptreclaim/base/spinlock.hpp"
#include "ptreclaim/base/status.hpp"
#include "ptreclaim/iommu/cache.hpp"
#include "ptreclaim/iommu/config.hpp"
#include "ptreclaim/iommu/devtlb.hpp"
#include "ptreclaim/iommu/domain.hpp"
#include "ptreclaim/iommu/faults.hpp"
#include "ptreclaim/iommu/inv_queue.hpp"
#include "ptreclaim/iommu/violation.hpp"
#include "ptreclaim/mem/frame_pool.hpp"

namespace ptreclaim::iommu {

enum class outcome : std::uint8_t {
  ok,
  fault_not_present,  // an entry on the path was not present
  fault_permission,   // the leaf (AND the path) lacks the access asked for
  fault_no_context,   // the device has no context entry on this unit
  fault_invalid,      // reserved encoding: reserved bits set in an entry (also recorded as a
                      // reserved_bits violation), a page size the unit lacks, an IOVA beyond
                      // the format's width, an entry naming a frame outside memory
  busy,               // every walk slot of the unit is taken: nothing was read, retry later
                      // (hardware stalls the request; device::step retries it)
};
[[nodiscard]] const char* outcome_name(outcome o) noexcept;

enum class source : std::uint8_t { none, iotlb, psc, walk, devtlb };  // devtlb: device side

struct translate_result {
  outcome result = outcome::fault_no_context;
  source from = source::none;  // iotlb: no memory read; psc: walk resumed below a cached entry
  unsigned psc_level = 0;      // from == psc: the level of the cached entry
  std::uint64_t phys = 0;      // ok: the physical address of the IOVA
  unsigned level = 0;          // ok / permission: the leaf's level (1 = 4K)
  std::uint8_t perms = 0;      // permissions of the path
  unsigned pte_reads = 0;
  unsigned violations = 0;    // violations this translation recorded
  std::uint64_t cost_ns = 0;  // modelled time (latency_config): miss overhead + reads
};

enum class walk_phase : std::uint8_t { idle, walking, done };

// The state of one translation in progress. Owned by the caller (a device), reusable.
class walk {
 public:
  [[nodiscard]] walk_phase phase() const noexcept { return phase_; }
  [[nodiscard]] const translate_result& result() const noexcept { return result_; }
  [[nodiscard]] iova_t iova() const noexcept { return iova_; }
  [[nodiscard]] device_id device() const noexcept { return device_; }
  [[nodiscard]] pasid_t pasid() const noexcept { return pasid_; }
  [[nodiscard]] hw_domain_id did() const noexcept { return did_; }  // once begun with a context
  // The level of the table the next step() reads (walking only).
  [[nodiscard]] unsigned next_level() const noexcept { return level_; }
  [[nodiscard]] mem::frame_id next_table() const noexcept { return table_; }

 private:
  friend class unit;
  walk_phase phase_ = walk_phase::idle;
  device_id device_ = 0;
  iova_t iova_ = 0;
  std::uint8_t access_ = 0;
  const domain* domain_ = nullptr;
  hw_domain_id did_ = 0;
  pasid_t pasid_ = no_pasid;
  unsigned level_ = 0;
  mem::frame_id table_ = mem::no_frame;
  bool expect_valid_ = false;
  std::uint32_t expect_generation_ = 0;
  bool via_psc_ = false;
  bool stale_ = false;  // the walk read a retired table
  std::uint8_t perms_ = 0;
  std::uint32_t slot_ = ~0u;
  std::uint64_t start_seq_ = 0;
  unsigned walked_top_ = 0;  // the highest level read from memory
  // For PSC fills: the level-L entry pointed at next_[L], read with generation gen_[L],
  // with accumulated permissions perm_[L].
  std::array<mem::frame_id, limits::max_levels + 1> next_{};
  std::array<std::uint32_t, limits::max_levels + 1> gen_{};
  std::array<bool, limits::max_levels + 1> gen_known_{};
  std::array<std::uint8_t, limits::max_levels + 1> perm_{};
  translate_result result_;
};

// A walk of the current tables with no cache and no ledger check: the oracle the cache checker
// and tests compare against. `tables[L]` is the table read at level L (no_frame if not reached).
struct reference_result {
  outcome result = outcome::fault_not_present;
  std::uint64_t phys = 0;
  unsigned level = 0;
  std::uint8_t perms = 0;
  std::array<mem::frame_id, limits::max_levels + 1> tables{};
};
[[nodiscard]] reference_result reference_walk(const mem::frame_pool& pool, const domain& dom,
                                              iova_t iova);

struct context_entry {
  domain* dom = nullptr;
  hw_domain_id did = 0;
  devtlb* ats = nullptr;  // the device's TLB when it uses ATS
};

struct unit_stats {
  std::uint64_t translations = 0;
  std::uint64_t iotlb_hits = 0;
  std::uint64_t iotlb_misses = 0;
  std::array<std::uint64_t, limits::max_levels + 1> psc_hits{};  // index = level of the entry
  std::uint64_t walks = 0;                                       // translations that read memory
  std::uint64_t pte_reads = 0;
  std::uint64_t faults = 0;
  std::array<std::uint64_t, static_cast<std::size_t>(inv_type::count_)> descriptors{};  // processed
  std::uint64_t waits_completed = 0;
  std::uint64_t wait_stalls = 0;  // a due wait found an earlier walk still in flight
  std::uint64_t queue_full = 0;
  std::uint64_t fills_dropped = 0;     // walks that dropped a fill an invalidation covered
  std::uint64_t walks_overlapped = 0;  // walks during which some invalidation took effect
  std::uint64_t walks_busy = 0;        // begin() refused: no walk slot free (outcome::busy)
  std::uint64_t violations = 0;
  std::uint64_t iotlb_evictions = 0;
  // Injected faults (faults.hpp): errors reported, descriptors aborted unprocessed (aborted waits
  // included), queue stalls and slow waits with the time they added.
  std::uint64_t ite_errors = 0;
  std::uint64_t iqe_errors = 0;
  std::uint64_t descriptors_aborted = 0;
  std::uint64_t stalls = 0;
  std::uint64_t stall_ns = 0;
  std::uint64_t slow_waits = 0;
  std::uint64_t slow_wait_ns = 0;
};

class unit {
 public:
  unit(unsigned index, const unit_config& config, mem::frame_pool& pool, platform& plat,
       violation_log& log);
  unit(const unit&) = delete;
  unit& operator=(const unit&) = delete;

  [[nodiscard]] unsigned index() const noexcept { return index_; }
  [[nodiscard]] const unit_config& config() const noexcept { return config_; }

  // --- context table (normally managed by system::attach) ---
  // `ats`: the device's TLB, which device-TLB invalidations for `dev` reach (nullptr: no ATS).
  void set_context(device_id dev, domain* dom, hw_domain_id did, devtlb* ats = nullptr);
  void clear_context(device_id dev);
  // Forgets the device TLB `t` wherever a context entry names it (its device is going away).
  void forget_devtlb(const devtlb* t);
  [[nodiscard]] std::optional<context_entry> context(device_id dev) const;

  // --- translation (any thread; a walk object is used by one thread at a time) ---
  // Starts translating `iova` for `access` (pt::perm bits). Returns true when the result is
  // already known (IOTLB hit, no context, fault before any read, outcome::busy when all
  // max_walks_in_flight slots are taken): w.phase() == done.
  // `pasid`: the request's PASID (no_pasid: a request without one); it tags the cache entries
  // the translation uses and fills.
  bool begin(walk& w, device_id dev, iova_t iova, std::uint8_t access, pasid_t pasid = no_pasid);
  // One PTE read. Returns true when the walk is done (result in w.result()).
  bool step(walk& w);
  // Abandons a walk in flight (a device reset): unregisters it, fills nothing.
  void cancel(walk& w);
  // begin + step until done.
  translate_result translate(device_id dev, iova_t iova, std::uint8_t access,
                             pasid_t pasid = no_pasid);

  // --- invalidation queue ---
  // Appends descriptors atomically (all or none): errc::queue_full when fewer slots are free,
  // errc::invalid_argument for a PSI whose address is not aligned to its mask or whose AM
  // exceeds max_am. Returns the sequence of the first; the rest follow consecutively.
  [[nodiscard]] Result<std::uint64_t> submit(std::span<const inv_descriptor> descs);
  [[nodiscard]] Result<std::uint64_t> submit(const inv_descriptor& d) { return submit({&d, 1}); }
  // The driver's resubmission of an aborted group (faults.hpp): `attempt` = how often it was
  // aborted before. Otherwise submit().
  [[nodiscard]] Result<std::uint64_t> resubmit(std::span<const inv_descriptor> descs,
                                               unsigned attempt);
  // AMD-Vi commands, translated (translate_amd); a block beyond max_am becomes a DSI.
  [[nodiscard]] Result<std::uint64_t> submit_amd(std::span<const amd_command> cmds);
  // Moves the hardware to the platform's now (the engine step a runtime actor may drive).
  void advance();
  // Moves the hardware to `now_ns` (<= platform now; lets a simulator drive time explicitly).
  void process(std::uint64_t now_ns);
  // True once the descriptor at `seq` finished; never for a descriptor an injected fault
  // aborted (faults.hpp). Lock-free unless the unit ever aborted one; does not advance.
  [[nodiscard]] bool done(std::uint64_t seq) const noexcept {
    // [iu-2] pairs with [iu-1]; an abort's record is written before [iu-1] moves past it.
    if (processed_.load(std::memory_order_acquire) <= seq) return false;
    return !any_abort_.load(std::memory_order_relaxed) || !aborted(seq);
  }
  // True when the descriptor at `seq` was aborted (faults.hpp): a wait that will never complete,
  // or an invalidation an IQE kept from taking effect.
  [[nodiscard]] bool aborted(std::uint64_t seq) const noexcept;
  // Groups aborted and not yet taken (a hint, lock-free).
  [[nodiscard]] bool has_aborted_groups() const noexcept {
    return untaken_.load(std::memory_order_acquire) != 0;
  }
  // The aborted groups not taken before, oldest first: each is handed out exactly once.
  [[nodiscard]] std::vector<aborted_group> take_aborted();
  // advance() then done(seq).
  [[nodiscard]] bool poll(std::uint64_t seq);
  [[nodiscard]] std::uint64_t processed() const noexcept {
    return processed_.load(std::memory_order_acquire);  // [iu-2] pairs with [iu-1]
  }
  [[nodiscard]] std::uint64_t submitted() const;
  // submitted() without the unit's lock (acquire): for checkers, which must not perturb the
  // platform-reported lock. A descriptor pushed after this read has a sequence >= its value.
  [[nodiscard]] std::uint64_t submitted_peek() const noexcept {
    return submitted_.load(std::memory_order_acquire);  // [iu-8] pairs with [iu-7]
  }
  // Reports every processed descriptor to `o` (nullptr: to nobody). system::set_inv_observer.
  void set_inv_observer(inv_observer* o) noexcept { observer_.store(o, std::memory_order_release); }
  [[nodiscard]] unsigned walks_in_flight() const;
  // The descriptors submitted and not yet processed, oldest first.
  [[nodiscard]] std::vector<inv_descriptor> queued() const;

  // --- introspection ---
  [[nodiscard]] unit_stats stats() const noexcept;
  [[nodiscard]] std::vector<iotlb_entry> iotlb_snapshot() const;
  [[nodiscard]] std::vector<std::pair<unsigned, psc_entry>> psc_snapshot() const;
  // Caches, queue and walk registry consistent.
  [[nodiscard]] Status check_invariants() const;
  // Tier-3 cache checker: every cached entry of `did` agrees with a fresh walk of `dom`'s
  // current tables (IOTLB: same page, size and permissions; PSC: the same table frame, live,
  // of the cached generation). Holds only when every change to the tables has been covered by
  // a completed invalidation; stale entries are legal in between.
  [[nodiscard]] Status check_coherence(const domain& dom, hw_domain_id did) const;

 private:
  void process_locked(std::uint64_t now_ns);
  Result<std::uint64_t> submit_attempt(std::span<const inv_descriptor> descs, unsigned attempt);
  // The head descriptor (at `seq`) is aborted: counted, and never done().
  void record_abort_locked(std::uint64_t seq);
  // The head wait (at `seq`) is aborted: records its group for the driver.
  void abort_group_locked(const inv_descriptor& wait, std::uint64_t seq, unsigned attempt,
                          queue_error e);
  [[nodiscard]] bool wait_blocked(std::uint64_t covers_through) const noexcept;
  void apply(const inv_descriptor& d) noexcept;
  void mark_devtlbs_owed_locked(const inv_descriptor& d);
  void finish(walk& w);
  void end_walk_locked(walk& w, bool fill);
  void mark_walks_locked(const inv_descriptor& d) noexcept;
  void read_step(walk& w);
  void check_kept_locked(walk& w, const iotlb_entry& e);
  void fill_caches_locked(const walk& w, std::uint8_t drop_psc, std::uint8_t drop_iotlb);
  bool check_frame(walk& w, mem::frame_id f, unsigned level, mem::frame_ident id);
  void record_violation(walk& w, violation_kind kind, mem::frame_id f, unsigned level,
                        mem::frame_ident id, std::uint64_t reserved = 0);
  [[nodiscard]] std::uint64_t latency(inv_type t) const noexcept;

  unsigned index_;
  unit_config config_;
  mem::frame_pool* pool_;
  platform* plat_;
  violation_log* log_;

  mutable spinlock lock_;
  std::vector<context_entry> contexts_;
  std::vector<device_id> ats_devices_;  // devices with a context entry naming a devtlb
  iotlb iotlb_;
  psc psc_;
  inv_queue queue_;
  std::uint64_t hw_free_ns_ = 0;    // when the queue engine finished its last descriptor
  bool head_wait_blocked_ = false;  // the head wait is stalled by a walk in flight
  std::uint64_t last_walk_end_ns_ = 0;
  std::uint64_t last_applied_inv_plus1_ = 0;  // 1 + sequence of the last invalidation applied
  // One registered walk: what its fills will be keyed on, and which of them invalidations that
  // took effect since its start cover (bit L of drop_psc: the level-L PSC fill; of drop_iotlb:
  // an IOTLB fill of a level-L page).
  struct walk_slot {
    std::uint64_t start = ~std::uint64_t{0};  // queue position at begin; ~0 = free
    iova_t iova = 0;
    hw_domain_id did = 0;
    pasid_t pasid = no_pasid;
    std::uint32_t pos = 0;  // index in active_
    std::uint8_t drop_psc = 0;
    std::uint8_t drop_iotlb = 0;
    // IOTLB fills a PSI overlapped with a mask too small for their page size: made, but marked
    // (bit L: a level-L page) with the part it asked for and its mask, as the cache marks them.
    std::uint8_t kept_iotlb = 0;
    std::uint8_t kept_am = 0;
    iova_t kept_first = ~iova_t{0};
    iova_t kept_last = 0;
    bool overlapped = false;
  };
  std::vector<walk_slot> slots_;
  std::vector<std::uint32_t> active_;  // slots in use, any order
  std::vector<std::uint32_t> free_slots_;
  std::atomic<std::uint64_t> processed_{0};
  std::atomic<std::uint64_t> submitted_{0};  // queue_.tail(), mirrored for submitted_peek()
  std::atomic<inv_observer*> observer_{nullptr};

  // Injected faults (faults.hpp). Under lock_: the group since the last wait (its invalidations,
  // applied or not) and whether an IQE aborts it; the aborted groups not yet taken.
  fault_schedule faults_;
  std::vector<inv_descriptor> group_;
  bool group_aborting_ = false;
  std::vector<aborted_group> aborted_groups_;
  std::atomic<std::size_t> untaken_{0};  // aborted_groups_.size(), for the lock-free hint
  // Every aborted descriptor's sequence, ascending, never trimmed (a caller may hold any of them).
  // Its own lock on the real platform: done() is a checker's read and must not be charged.
  mutable spinlock abort_mu_;
  std::vector<std::uint64_t> aborted_seqs_;
  std::atomic<bool> any_abort_{false};

  struct counters {
    std::atomic<std::uint64_t> translations{0}, iotlb_hits{0}, iotlb_misses{0}, walks{0},
        pte_reads{0}, faults{0}, waits_completed{0}, wait_stalls{0}, queue_full{0},
        fills_dropped{0}, walks_overlapped{0}, walks_busy{0}, violations{0}, ite_errors{0},
        iqe_errors{0}, descriptors_aborted{0}, stalls{0}, stall_ns{0}, slow_waits{0},
        slow_wait_ns{0};
    std::array<std::atomic<std::uint64_t>, limits::max_levels + 1> psc_hits{};
    std::array<std::atomic<std::uint64_t>, static_cast<std::size_t>(inv_type::count_)>
        descriptors{};
  };
  counters c_;
};

}  // namespace ptreclaim::iommu
