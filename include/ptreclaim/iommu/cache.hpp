// The translation caches of one IOMMU unit: the IOTLB (finished translations) and the
// per-level paging-structure caches (PSC). Both are bounded set-associative caches with LRU or
// seeded random replacement (cache_config).
//
// What each holds, and why the fields are there:
//   IOTLB entry  (did, PASID, level, IOVA page at that level's size) -> page base, permissions.
//   With
//                caching mode 1 an entry may be *negative*: "not present" cached for the range of
//                the level where the walk found nothing.
//   PSC entry    for level L >= 2: (did, PASID, IOVA >> level_shift(L)) -> the frame of the
//   level-(L-1)
//                table the level-L entry pointed to, the frame's generation as seen when cached
//                (the model's way to detect that the frame was freed and reused), and the
//                permissions accumulated down to that table. Hardware keeps it as long as the
//                entry it came from was valid, whatever software later writes to memory: only an
//                invalidation drops it.
// The PASID (0 for requests without one) is part of every key: first-stage (SVA) entries of
// one domain are cached, and must be invalidated, per PASID. A domain-selective or global
// invalidation drops every PASID's entries; a page-selective one only those of its PASID.
//
// Not thread-safe: the owning unit serialises access under its lock.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <vector>

#include "ptreclaim/base/prng.hpp"
#include "ptreclaim/base/status.hpp"
#include "ptreclaim/iommu/config.hpp"
#include "ptreclaim/mem/frame.hpp"
#include "ptreclaim/pt/format.hpp"

namespace ptreclaim::iommu {

namespace detail {

// A set-associative array of Entry (which has `bool valid`). The caller supplies a 64-bit
// hash that selects the set and a predicate that recognises the key inside the set.
template <class Entry>
class set_assoc {
 public:
  explicit set_assoc(const cache_config& c)
      : ways_(c.ways),
        sets_(c.entries / c.ways),
        policy_(c.policy),
        rng_(c.seed),
        entries_(c.entries),
        stamps_(c.entries, 0) {
    PTR_ASSERT_MSG(c.ways >= 1 && c.entries >= c.ways && c.entries % c.ways == 0,
                   "cache_config: entries must be a positive multiple of ways");
  }

  // The entry matching `same` in the set of `hash`, marked most recently used; nullptr on miss.
  template <class Same>
  Entry* find(std::uint64_t hash, Same&& same) noexcept {
    const std::size_t base = set_of(hash) * ways_;
    for (std::size_t i = base; i < base + ways_; ++i) {
      if (entries_[i].valid && same(entries_[i])) {
        stamps_[i] = ++clock_;
        return &entries_[i];
      }
    }
    return nullptr;
  }

  // Inserts `e`, replacing an entry with the same key, else an invalid way, else a victim.
  template <class Same>
  void insert(std::uint64_t hash, const Entry& e, Same&& same) noexcept {
    const std::size_t base = set_of(hash) * ways_;
    std::size_t slot = base + ways_;
    for (std::size_t i = base; i < base + ways_; ++i) {
      if (entries_[i].valid && same(entries_[i])) {
        slot = i;
        break;
      }
    }
    if (slot == base + ways_) {
      for (std::size_t i = base; i < base + ways_; ++i) {
        if (!entries_[i].valid) {
          slot = i;
          break;
        }
      }
    }
    if (slot == base + ways_) {
      ++evictions_;
      if (policy_ == replacement::random) {
        slot = base + static_cast<std::size_t>(rng_.below(ways_));
      } else {
        slot = base;
        for (std::size_t i = base + 1; i < base + ways_; ++i) {
          if (stamps_[i] < stamps_[slot]) slot = i;
        }
      }
    }
    entries_[slot] = e;
    entries_[slot].valid = true;
    stamps_[slot] = ++clock_;
  }

  // Drops every valid entry for which `pred` holds; returns how many.
  template <class Pred>
  unsigned drop_if(Pred&& pred) noexcept {
    unsigned n = 0;
    for (auto& e : entries_) {
      if (e.valid && pred(e)) {
        e.valid = false;
        ++n;
      }
    }
    return n;
  }

  template <class Visit>
  void for_each(Visit&& visit) const {
    for (const auto& e : entries_) {
      if (e.valid) visit(e);
    }
  }

  // Every valid entry sits in the set its hash selects, no key appears twice, LRU stamps are
  // distinct among valid entries of a set and not in the future.
  template <class Hash, class SameKey>
  [[nodiscard]] Status check(Hash&& hash, SameKey&& same_key, const char* what) const {
    for (std::size_t s = 0; s < sets_; ++s) {
      for (std::size_t i = s * ways_; i < (s + 1) * ways_; ++i) {
        const Entry& a = entries_[i];
        if (!a.valid) continue;
        if (set_of(hash(a)) != s)
          return {errc::invalid_argument, std::string(what) + ": entry in the wrong set"};
        if (stamps_[i] > clock_)
          return {errc::invalid_argument, std::string(what) + ": LRU stamp in the future"};
        for (std::size_t j = i + 1; j < (s + 1) * ways_; ++j) {
          const Entry& b = entries_[j];
          if (!b.valid) continue;
          if (same_key(a, b))
            return {errc::invalid_argument, std::string(what) + ": duplicate key in a set"};
          if (stamps_[i] == stamps_[j])
            return {errc::invalid_argument, std::string(what) + ": equal LRU stamps"};
        }
      }
    }
    return {};
  }

  [[nodiscard]] std::size_t size() const noexcept {
    std::size_t n = 0;
    for (const auto& e : entries_)
      n += e.valid ? 1 : 0;
    return n;
  }
  [[nodiscard]] std::size_t capacity() const noexcept { return entries_.size(); }
  [[nodiscard]] std::uint64_t evictions() const noexcept { return evictions_; }

 private:
  [[nodiscard]] std::size_t set_of(std::uint64_t hash) const noexcept {
    std::uint64_t x = hash;
    return static_cast<std::size_t>(prng::splitmix64(x) % sets_);
  }

  std::size_t ways_;
  std::size_t sets_;
  replacement policy_;
  prng rng_;
  std::vector<Entry> entries_;
  std::vector<std::uint64_t> stamps_;
  std::uint64_t clock_ = 0;
  std::uint64_t evictions_ = 0;
};

}  // namespace detail

struct iotlb_entry {
  bool valid = false;
  bool negative = false;   // caching mode 1: "not present" cached for the level's range
  std::uint8_t level = 1;  // page size: 1 = 4K, 2 = 2M, 3 = 1G (negative: any level)
  std::uint8_t perms = pt::perm_none;
  hw_domain_id did = 0;
  std::uint64_t vpn = 0;        // iova >> level_shift(level)
  std::uint64_t phys_base = 0;  // page base (negative: 0)
  // Page-selective invalidations of part of this superpage whose address mask was below the
  // page's order left it in place (VT-d §6.5.2.3: "when invalidating mapping for a 2MB page,
  // software must specify an address mask value of at least 9", 18 for 1 GiB). What they asked
  // for, [kept_first, kept_last] (empty while kept_first > kept_last), and the last such mask:
  // the walker checks a hit in it against the page table (a stale_superpage violation).
  iova_t kept_first = ~iova_t{0};
  iova_t kept_last = 0;
  std::uint8_t kept_am = 0;
  pasid_t pasid = no_pasid;  // last: brace-initialised entries keep their meaning

  [[nodiscard]] iova_t first() const noexcept { return vpn << pt::level_shift(level); }
  [[nodiscard]] iova_t last() const noexcept {
    return first() + ((std::uint64_t{1} << pt::level_shift(level)) - 1);
  }
};

// The page order of a level-L leaf: log2 of its 4 KiB pages (0, 9, 18). A PSI drops an IOTLB
// entry of that level only with an address mask at least this large.
[[nodiscard]] constexpr unsigned page_order(unsigned level) noexcept {
  return pt::level_shift(level) - 12;
}

class iotlb {
 public:
  explicit iotlb(const cache_config& c) : cache_(c) {}

  // The entry translating `iova` for `did`, trying each level whose bit is set in `levels`
  // (smallest first). Copies, so the caller may drop the unit lock.
  [[nodiscard]] std::optional<iotlb_entry> lookup(hw_domain_id did, iova_t iova,
                                                  std::uint32_t levels,
                                                  pasid_t pasid = no_pasid) noexcept;
  void insert(const iotlb_entry& e) noexcept;
  unsigned invalidate_all() noexcept;
  unsigned invalidate_domain(hw_domain_id did) noexcept;
  // Drops every entry of `did` whose range overlaps [first, last] (a superpage entry is dropped
  // by an invalidation of any of its pages; what software may assume only of a wide enough mask).
  unsigned invalidate_range(hw_domain_id did, iova_t first, iova_t last,
                            pasid_t pasid = no_pasid) noexcept;
  // A page-selective invalidation of the 2^am-page block [first, last], as the specification
  // guarantees it: drops every entry of `did` overlapping it whose page order (0 for 4K, 9 for
  // 2M, 18 for 1G) is at most `am`, and negative entries; a larger page survives, marked with
  // the part software asked for (kept_first/kept_last/kept_am).
  unsigned invalidate_page_selective(hw_domain_id did, iova_t first, iova_t last, unsigned am,
                                     pasid_t pasid = no_pasid) noexcept;

  template <class Visit>
  void for_each(Visit&& visit) const {
    cache_.for_each(visit);
  }
  [[nodiscard]] std::size_t size() const noexcept { return cache_.size(); }
  [[nodiscard]] std::size_t capacity() const noexcept { return cache_.capacity(); }
  [[nodiscard]] std::uint64_t evictions() const noexcept { return cache_.evictions(); }
  [[nodiscard]] Status check_invariants() const;

 private:
  detail::set_assoc<iotlb_entry> cache_;
};

struct psc_entry {
  bool valid = false;
  std::uint8_t perms = pt::perm_none;  // accumulated down to (and including) the level-L entry
  hw_domain_id did = 0;
  std::uint64_t prefix = 0;            // iova >> level_shift(L)
  mem::frame_id next = mem::no_frame;  // the level-(L-1) table
  std::uint32_t next_generation = 0;   // its generation when the entry was cached
  pasid_t pasid = no_pasid;
};

// One paging-structure cache per level 2..limits::max_levels.
class psc {
 public:
  explicit psc(const cache_config& c);

  struct hit {
    unsigned level = 0;  // the level-L entry was cached: the walk resumes at table level L-1
    psc_entry entry;
  };
  // The deepest (lowest-level) cached entry for `iova`, considering levels 2..root_level.
  [[nodiscard]] std::optional<hit> lookup_deepest(hw_domain_id did, iova_t iova,
                                                  unsigned root_level,
                                                  pasid_t pasid = no_pasid) noexcept;
  void insert(unsigned level, const psc_entry& e) noexcept;
  unsigned invalidate_all() noexcept;
  unsigned invalidate_domain(hw_domain_id did) noexcept;
  // Drops every entry of (`did`, `pasid`) that could be used to translate an address in
  // [first, last].
  unsigned invalidate_range(hw_domain_id did, iova_t first, iova_t last,
                            pasid_t pasid = no_pasid) noexcept;

  template <class Visit>  // visit(level, entry)
  void for_each(Visit&& visit) const {
    for (unsigned l = 2; l <= limits::max_levels; ++l)
      levels_[l].for_each([&](const psc_entry& e) { visit(l, e); });
  }
  [[nodiscard]] std::size_t size() const noexcept;
  [[nodiscard]] std::size_t size(unsigned level) const noexcept { return levels_[level].size(); }
  [[nodiscard]] Status check_invariants() const;

 private:
  std::array<detail::set_assoc<psc_entry>, limits::max_levels + 1> levels_;
};

}  // namespace ptreclaim::iommu
