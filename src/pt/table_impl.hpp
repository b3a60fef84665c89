// The generic I/O page table, written once and instantiated per format (one .cpp per format
// family instantiates it), so every per-level decode/encode inlines.
//
// Glossary: an *entry* is one 64-bit word of a *table* (one 4 KiB frame, 512 entries). The
// *hardware part* of an entry is the word with the software-marker bits cleared. A table at
// level L holds entries of level L (leaf size 2^level_shift(L)).
//
// Contiguity markers (locked mode only; the design, replacing Xen's per-entry run orders):
//   every table keeps two 10-bit counters in the hardware-ignored bits of its first four
//   entries, 5 bits per entry (so any format with >= 5 ignored bits works):
//     entries 0 (bits 4:0) and 1 (bits 9:5): `present`, entries whose hardware part decodes
//                                             as present (0..512);
//     entries 2 (bits 4:0) and 3 (bits 9:5): `pairs`, indices i in 0..510 such that entries i
//                                             and i+1 are leaves, i+1 encodes exactly the page
//                                             after i's (same attributes, address + size).
//   Writing one entry changes at most `present` and the two pairs it belongs to, so a map or
//   unmap updates the markers in O[pt-1] (two neighbour loads), instead of rescanning 512 entries.
//   A table is all-empty iff present == 0, and all-contiguous iff pairs == 511 (which implies
//   512 leaves); it then coalesces when entry 0's address is aligned to the parent entry's size
//   and the parent level may hold a leaf. Coalescing and freeing repeat upward.
//   In lock-free mode the markers stay zero: mutators of disjoint ranges would race on the
//   shared counter words, and lock-free mode never coalesces or frees tables on count.
//   Decoding never looks at marker bits (format decode() masks them).
//
// Memory ordering (what a lock-free walker and concurrent lock-free mutators observe):
//   [pt-1] every store that links a table into an entry (store or CAS) is a release, and every
//       store to an entry word is a release too (a marker update may rewrite a linking word);
//   [pt-2] every load of an entry by a walk or a mutator is an acquire and pairs with [pt-1], so a
//       walker that sees a table pointer sees the table's full initialisation (its entries are
//       written, relaxed, before the linking release store; the pool zeroed it before that);
//   [pt-3] a table is unlinked by one store (or exchange) before it is retired and reported in
//       the gather; its contents are left intact so a walk holding a stale pointer reads the
//       old, consistent entries until the reclamation layer frees it after invalidation;
//   every PTE write is a single atomic 64-bit store: a walker never sees a torn entry.
//   Lock-free mode: concurrent mutators touch disjoint IOVA ranges (the caller's promise). Two
//   of them may need the same missing intermediate table: each builds its own chain of fresh
//   tables privately and publishes it with one CAS [pt-4] acq_rel on the empty entry; the loser
//   reads the winner's table through the failed CAS (acquire half of [pt-4], pairing with the
//   winner's release half) and frees its own, never-linked chain with free_unlinked_table.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "ptreclaim/base/bits.hpp"
#include "ptreclaim/base/spinlock.hpp"
#include "ptreclaim/pt/table.hpp"

namespace ptreclaim::pt::detail {

inline constexpr unsigned marker_bits_per_entry = 5;
inline constexpr std::uint64_t marker_field_mask = (1u << marker_bits_per_entry) - 1;
inline constexpr unsigned counter_present = 0;  // entries 0, 1
inline constexpr unsigned counter_pairs = 1;    // entries 2, 3
inline constexpr unsigned max_pairs = limits::ptes_per_table - 1;
inline constexpr unsigned entries_per_line = 8;  // 64-byte cache lines of 8-byte entries
static_assert(2 * marker_bits_per_entry >= 10, "a counter must hold 0..512");

template <pt_format F>
class table_impl final : public table {
  static_assert(F::sw_bits >= marker_bits_per_entry, "the format needs 5 hardware-ignored bits");
  static_assert(F::levels >= 2 && F::levels <= limits::max_levels);

 public:
  static constexpr unsigned levels = F::levels;

  // Allocates the root; errc::no_memory from the pool, invalid_argument for a config without
  // 4 KiB leaves.
  static Result<std::unique_ptr<table>> create(const domain_config& cfg, mem::frame_pool& pool) {
    const std::uint32_t leaf_levels = cfg.leaf_levels & F::leaf_levels;
    if ((leaf_levels & 0b10) == 0)
      return Status(errc::invalid_argument, "domain_config::leaf_levels must allow 4 KiB pages");
    auto root = pool.alloc_table(cfg.domain, static_cast<std::uint8_t>(levels));
    if (!root.ok()) return root.status();
    mark_linked(pool, *root);  // the root is live from the start (a device context points at it)
    return std::unique_ptr<table>(new table_impl(cfg, pool, leaf_levels, *root));
  }

  Status map(iova_t iova, std::uint64_t phys, std::uint64_t size, std::uint8_t perms,
             gather& g) override {
    PTR_ASSERT_MSG(root_.valid(), "map on a destroyed table");
    if (size == 0 || !is_aligned(iova | phys | size, limits::page_size_lg2) ||
        !F::valid_perms(perms))
      return Status(errc::invalid_argument, "map: unaligned or empty range, or bad permissions");
    if (!in_space(iova, size) || phys > phys_limit || size > phys_limit - phys)
      return Status(errc::out_of_range, "map: range outside the format's address space");
    op_lock guard(*this);
    g.add_request(iova, iova + size - 1);
    g.add_mapped(iova, iova + size - 1);
    while (size != 0) {
      const unsigned level = pick_level(iova, phys, size);
      PTR_TRY(map_one(iova, phys, level, perms, g));
      const std::uint64_t step = bit(level_shift(level));
      iova += step;
      phys += step;
      size -= step;
    }
    return {};
  }

  Status unmap(iova_t iova, std::uint64_t size, gather& g) override {
    PTR_ASSERT_MSG(root_.valid(), "unmap on a destroyed table");
    if (size == 0 || !is_aligned(iova | size, limits::page_size_lg2))
      return Status(errc::invalid_argument, "unmap: unaligned or empty range");
    if (!in_space(iova, size))
      return Status(errc::out_of_range, "unmap: range outside the address space");
    op_lock guard(*this);
    g.add_request(iova, iova + size - 1);
    return unmap_in(root_, levels, iova, iova + size - 1, g);
  }

  std::optional<translation> lookup(iova_t iova) const override {
    if (!root_.valid() || (va_bits_ < 64 && (iova >> F::va_bits) != 0)) return std::nullopt;
    mem::frame_id t = root_;
    for (unsigned level = levels;; --level) {
      const std::uint64_t v =
          pool_.words(t)[level_index(iova, level)].load(std::memory_order_acquire);  // [pt-2]
      const decoded_entry d = F::decode(v, level);
      if (d.kind == entry_kind::none) return std::nullopt;
      if (d.kind == entry_kind::leaf)
        return translation{d.addr + (iova & (bit(level_shift(level)) - 1)), level, d.perms};
      if (level == 1) return std::nullopt;  // unreachable for a well-formed format
      t = mem::frame_id::from_phys(d.addr);
    }
  }

  void for_each_mapping(const std::function<void(const mapping&)>& visit) const override {
    if (!root_.valid()) return;
    op_lock guard(*this);
    visit_in(root_, levels, 0, visit);
  }

  void destroy(gather& g) override {
    if (!root_.valid()) return;
    op_lock guard(*this);
    release_subtree(root_, levels, 0, va_last(), g);
    g.add_range(0, va_last());
    g.set_nonleaf_changed();
    root_ = mem::no_frame;
  }

  mem::frame_id root() const noexcept override { return root_; }
  const format_desc& format() const noexcept override { return F::desc(); }
  const domain_config& config() const noexcept override { return cfg_; }
  table_stats stats() const noexcept override {
    constexpr auto r = std::memory_order_relaxed;
    return {allocated_.load(r), released_.load(r), freed_unlinked_.load(r),
            coalesced_.load(r), split_.load(r),    races_lost_.load(r)};
  }
  std::uint64_t linked_tables() const override {
    constexpr auto r = std::memory_order_relaxed;
    return allocated_.load(r) - released_.load(r) - freed_unlinked_.load(r);
  }
  Status check_invariants() const override;

 private:
  using word = std::atomic<std::uint64_t>;
  static constexpr std::uint64_t phys_limit = bit(52);
  static constexpr unsigned va_bits_ = F::va_bits;

  table_impl(const domain_config& cfg, mem::frame_pool& pool, std::uint32_t leaf_levels,
             mem::frame_id root)
      : pool_(pool),
        cfg_(cfg),
        leaf_levels_(leaf_levels),
        locked_(cfg.mode == concurrency_mode::locked),
        coalesce_(locked_ && cfg.coalesce),
        touch_lines_(pool.plat().tracks_table_lines()),
        lock_(pool.plat()),
        root_(root) {
    allocated_.store(1, std::memory_order_relaxed);
    lock_.name("page table: a locked domain's lock (Xen)");
  }

  // Takes the mapping lock in locked mode; nothing in lock-free mode.
  class op_lock {
   public:
    explicit op_lock(const table_impl& t) : t_(t) {
      if (t_.locked_) t_.lock_.lock();
    }
    ~op_lock() {
      if (t_.locked_) t_.lock_.unlock();
    }
    op_lock(const op_lock&) = delete;
    op_lock& operator=(const op_lock&) = delete;

   private:
    const table_impl& t_;
  };

  [[nodiscard]] static constexpr std::uint64_t hw(std::uint64_t pte) noexcept {
    return F::sw_set(pte, 0);
  }
  [[nodiscard]] static constexpr std::uint64_t entry_size(unsigned level) noexcept {
    return bit(level_shift(level));
  }
  [[nodiscard]] static constexpr iova_t va_last() noexcept {
    return va_bits_ >= 64 ? ~iova_t{0} : bit(va_bits_) - 1;
  }
  [[nodiscard]] static constexpr bool in_space(iova_t iova, std::uint64_t size) noexcept {
    return iova <= va_last() && size - 1 <= va_last() - iova;
  }
  [[nodiscard]] unsigned pick_level(iova_t iova, std::uint64_t phys,
                                    std::uint64_t size) const noexcept {
    for (unsigned level = 3; level >= 2; --level) {
      const unsigned shift = level_shift(level);
      if ((leaf_levels_ & bit(level)) && is_aligned(iova | phys, shift) && size >= bit(shift))
        return level;
    }
    return 1;
  }

  // --- markers (locked mode) ---
  [[nodiscard]] static unsigned read_counter(const word* w, unsigned k) noexcept {
    const auto lo = F::sw_get(w[2 * k].load(std::memory_order_relaxed)) & marker_field_mask;
    const auto hi = F::sw_get(w[2 * k + 1].load(std::memory_order_relaxed)) & marker_field_mask;
    return static_cast<unsigned>(lo | (hi << marker_bits_per_entry));
  }
  static void write_counter(word* w, unsigned k, unsigned value) noexcept {
    PTR_DASSERT(value <= limits::ptes_per_table);
    for (unsigned j = 0; j < 2; ++j) {
      const std::uint64_t old = w[2 * k + j].load(std::memory_order_relaxed);
      const std::uint64_t field = (value >> (marker_bits_per_entry * j)) & marker_field_mask;
      const std::uint64_t sw = (F::sw_get(old) & ~marker_field_mask) | field;
      w[2 * k + j].store(F::sw_set(old, sw), std::memory_order_release);  // [pt-1]
    }
  }
  [[nodiscard]] static bool present(std::uint64_t hw_pte, unsigned level) noexcept {
    return F::decode(hw_pte, level).kind != entry_kind::none;
  }
  // Entry b (hardware part) maps exactly the page after entry a's, with the same attributes.
  [[nodiscard]] static bool contiguous(std::uint64_t a, std::uint64_t b, unsigned level) noexcept {
    const decoded_entry da = F::decode(a, level);
    if (da.kind != entry_kind::leaf) return false;
    const std::uint64_t next = da.addr + entry_size(level);
    return next < phys_limit && b == F::make_leaf(next, level, da.perms);
  }

  // Reports the cache line of entry w[idx] to the platform: the deterministic executor charges
  // a transfer when another CPU wrote it last (or, for a write, read it since); a no-op on the
  // real platform, whose hardware pays it.
  void touch(const word* w, unsigned idx, bool write) const noexcept {
    if (touch_lines_) pool_.plat().touch_table_line(&w[idx], write);
  }
  // Reports every line of table t as written in one loop (a table filled whole, by split).
  void touch_table(const word* w) const noexcept {
    if (touch_lines_) pool_.plat().touch_table_lines(w, limits::ptes_per_table / entries_per_line);
  }

  // Writes the hardware part `v` into t[idx] (a table at `level`), keeping the entry's marker
  // bits and, in locked mode, updating t's counters. Lock-free mode: a plain release store.
  void write_entry(mem::frame_id t, unsigned idx, unsigned level, std::uint64_t v) noexcept {
    // Virtual time for the deterministic executor (a no-op on the real platform).
    pool_.plat().charge(cost_kind::pte_write);
    word* w = pool_.words(t);
    touch(w, idx, true);
    if (!locked_) {
      w[idx].store(v, std::memory_order_release);  // [pt-1]
      return;
    }
    const std::uint64_t old = w[idx].load(std::memory_order_relaxed);
    const std::uint64_t old_hw = hw(old);
    if (old_hw == v) return;
    const int dpresent = int{present(v, level)} - int{present(old_hw, level)};
    int dpairs = 0;
    if (idx > 0) {
      const std::uint64_t left = hw(w[idx - 1].load(std::memory_order_relaxed));
      dpairs += int{contiguous(left, v, level)} - int{contiguous(left, old_hw, level)};
    }
    if (idx + 1 < limits::ptes_per_table) {
      const std::uint64_t right = hw(w[idx + 1].load(std::memory_order_relaxed));
      dpairs += int{contiguous(v, right, level)} - int{contiguous(old_hw, right, level)};
    }
    w[idx].store(F::sw_set(v, F::sw_get(old)), std::memory_order_release);  // [pt-1]
    if (dpresent != 0 || dpairs != 0) touch(w, 0, true);  // the counters live in entries 0..3
    if (dpresent != 0)
      write_counter(w, counter_present,
                    static_cast<unsigned>(int(read_counter(w, counter_present)) + dpresent));
    if (dpairs != 0)
      write_counter(w, counter_pairs,
                    static_cast<unsigned>(int(read_counter(w, counter_pairs)) + dpairs));
  }

  // --- frames ---
  Result<mem::frame_id> alloc_table(unsigned level) {
    auto r = pool_.alloc_table(cfg_.domain, static_cast<std::uint8_t>(level));
    if (r.ok()) allocated_.fetch_add(1, std::memory_order_relaxed);
    return r;
  }
  // t was just published (linked into its parent, or is the root): from now on the pool
  // refuses to free it except through retire.
  static void mark_linked(mem::frame_pool& pool, mem::frame_id t) {
    const Status s = pool.mark_linked(t);
    PTR_ASSERT_MSG(s.ok(), "linking a table was refused by the ledger");
  }
  void free_unlinked(mem::frame_id t) {
    const Status s = pool_.free_unlinked_table(t, "pt: never-linked table");
    PTR_ASSERT_MSG(s.ok(), "freeing a never-linked table was refused by the ledger");
    freed_unlinked_.fetch_add(1, std::memory_order_relaxed);
  }
  // t (at `level`) was unlinked [pt-3] by the change of the entry spanning [first, last]: hand it
  // to the gather. Never frees.
  void retire(mem::frame_id t, unsigned level, iova_t first, iova_t last, gather& g) {
    const Status s = pool_.mark_retired(t);
    PTR_ASSERT_MSG(s.ok(), "retiring an unlinked table was refused by the ledger");
    if (cfg_.on_unlink != nullptr)
      cfg_.on_unlink->on_unlinked({cfg_.domain, t, level, first, last});
    g.add_released(t);
    released_.fetch_add(1, std::memory_order_relaxed);
  }
  // Retires table t at `level` and every table below it, children before parents; [first,
  // last] is the span of the entry whose change unlinked t.
  void release_subtree(mem::frame_id t, unsigned level, iova_t first, iova_t last, gather& g) {
    if (level > 1) {
      const word* w = pool_.words(t);
      for (unsigned i = 0; i < limits::ptes_per_table; ++i) {
        if (i % entries_per_line == 0) touch(w, i, false);
        const decoded_entry d = F::decode(w[i].load(std::memory_order_acquire), level);  // [pt-2]
        if (d.kind == entry_kind::table)
          release_subtree(mem::frame_id::from_phys(d.addr), level - 1, first, last, g);
      }
    }
    retire(t, level, first, last, g);
  }

  Status map_one(iova_t iova, std::uint64_t phys, unsigned leaf_level, std::uint8_t perms,
                 gather& g);
  Result<mem::frame_id> descend_or_install(mem::frame_id t, unsigned level, iova_t iova,
                                           unsigned leaf_level);
  Status unmap_in(mem::frame_id t, unsigned level, iova_t first, iova_t last, gather& g);
  Result<mem::frame_id> split(mem::frame_id t, unsigned idx, unsigned level, std::uint64_t old,
                              iova_t base, gather& g);
  bool settle(mem::frame_id parent, unsigned pidx, unsigned plevel, iova_t iova, gather& g);
  void visit_in(mem::frame_id t, unsigned level, iova_t base,
                const std::function<void(const mapping&)>& visit) const;
  Status check_table(mem::frame_id t, unsigned level, iova_t base, std::vector<bool>& seen,
                     std::uint64_t& linked) const;

  mem::frame_pool& pool_;
  const domain_config cfg_;
  const std::uint32_t leaf_levels_;
  const bool locked_;
  const bool coalesce_;
  const bool touch_lines_;  // the platform tracks page-table lines (touch())
  mutable spinlock lock_;
  mem::frame_id root_;
  std::atomic<std::uint64_t> allocated_{0};
  std::atomic<std::uint64_t> released_{0};
  std::atomic<std::uint64_t> freed_unlinked_{0};
  std::atomic<std::uint64_t> coalesced_{0};
  std::atomic<std::uint64_t> split_{0};
  std::atomic<std::uint64_t> races_lost_{0};
};

}  // namespace ptreclaim::pt::detail

#include "table_impl_ops.hpp"  // IWYU pragma: keep (member definitions, split by role)
