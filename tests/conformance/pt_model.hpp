// A brute-force oracle for page tables, shared by the conformance suite (rapidcheck) and the
// libFuzzer harness: a plain interval map iova -> (phys, perms) that predicts every map/unmap,
// plus the checks run after each step (translations equal, check_invariants(), the frame
// ledger balances, the gather covers every translation that changed or vanished).
//
// The one thing the oracle cannot know from translations alone is where the table holds a leaf
// at or above a given level (coalescing may have turned 4K pages into a 2M leaf): a map of a
// 2M chunk over 4K pages replaces their table (overmap) but over a 2M leaf is address_in_use.
// The model asks the table's lookup() for the level of the first mapped page in the chunk;
// the invariant checker independently verifies that no coalescible table is left, so a wrong
// level cannot hide.
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "ptreclaim/base/bits.hpp"
#include "ptreclaim/mem/frame_pool.hpp"
#include "ptreclaim/pt/table.hpp"

namespace ptreclaim::pt::testing {

// Table frames reachable from t's root, counted by walking the entries with the format's own
// decoder: a count independent of the table's ledger (linked_tables() is derived from it).
// Only while no mutation runs.
inline std::uint64_t count_reachable_tables(const table& t, const mem::frame_pool& pool) {
  if (!t.root().valid()) return 0;
  const format_desc& d = t.format();
  std::uint64_t n = 0;
  const auto walk = [&](const auto& self, mem::frame_id f, unsigned level) -> void {
    ++n;
    const auto* w = pool.words(f);
    for (unsigned i = 0; i < limits::ptes_per_table; ++i) {
      const decoded_entry e = d.decode(w[i].load(std::memory_order_acquire), level);
      if (e.kind == entry_kind::table && level > 1)
        self(self, mem::frame_id::from_phys(e.addr), level - 1);
    }
  };
  walk(walk, t.root(), d.levels);
  return n;
}

struct op_spec {
  bool is_map = true;
  unsigned unit_lg2 = 12;        // 12, 21 or 30
  std::uint64_t index = 0;       // unit index inside the window (wrapped)
  unsigned count = 1;            // units
  bool contiguous_phys = true;   // phys = phys_base + (iova - base): coalescible
  std::uint64_t phys_index = 0;  // otherwise phys = phys_index units (wrapped to 40 bits)
  unsigned perm_sel = 0;         // index into the format's valid permission sets
};

inline std::string describe_op(const op_spec& o) {
  std::ostringstream s;
  s << (o.is_map ? "map" : "unmap") << " unit=2^" << o.unit_lg2 << " index=" << o.index
    << " count=" << o.count;
  if (o.is_map)
    s << " contig=" << o.contiguous_phys << " phys_index=" << o.phys_index
      << " perm=" << o.perm_sel;
  return s.str();
}

class pt_model {
 public:
  struct extent {
    std::uint64_t size;
    std::uint64_t phys;
    std::uint8_t perms;
  };

  pt_model(format_kind kind, domain_config cfg, iova_t base, unsigned window_lg2,
           std::uint32_t pool_frames = 1024)
      : pool_(mem::pool_config{.capacity_frames = pool_frames}),
        cfg_(cfg),
        base_(base),
        window_lg2_(window_lg2) {
    auto t = make_table(kind, cfg, pool_);
    PTR_ASSERT_MSG(t.ok(), "pt_model: make_table failed");
    table_ = std::move(*t);
    const format_desc& d = table_->format();
    leaf_levels_ = d.leaf_levels & cfg.leaf_levels;
    for (std::uint8_t p = 1; p < 8; ++p)
      if (d.decode(d.make_leaf(0, 1, p), 1).perms == p) perms_.push_back(p);
    phys_base_ = std::uint64_t{1} << 36;
  }

  [[nodiscard]] table& tbl() { return *table_; }
  [[nodiscard]] mem::frame_pool& pool() { return pool_; }
  [[nodiscard]] const std::map<iova_t, extent>& oracle() const { return oracle_; }

  // The concrete arguments an op_spec stands for in this model's window.
  struct resolved_op {
    iova_t iova = 0;
    std::uint64_t size = 0;
    std::uint64_t phys = 0;  // maps only
    std::uint8_t perms = perm_none;
  };
  [[nodiscard]] resolved_op resolve(const op_spec& o) const {
    const unsigned unit = std::min(o.unit_lg2, window_lg2_);
    const std::uint64_t units = std::uint64_t{1} << (window_lg2_ - unit);
    const std::uint64_t first_unit = o.index % units;
    const std::uint64_t count = std::min<std::uint64_t>(std::max(o.count, 1u), units - first_unit);
    resolved_op r;
    r.iova = base_ + (first_unit << unit);
    r.size = count << unit;
    r.phys = o.contiguous_phys ? phys_base_ + (r.iova - base_)
                               : ((o.phys_index << unit) & (bit_range(12, 39)));
    r.perms = perms_[o.perm_sel % perms_.size()];
    return r;
  }
  // Runs the resolved op on the table only (the oracle is not told).
  Status apply_to_table_only(const op_spec& o, gather& g) {
    const resolved_op r = resolve(o);
    return o.is_map ? table_->map(r.iova, r.phys, r.size, r.perms, g)
                    : table_->unmap(r.iova, r.size, g);
  }

  // The oracle as maximal runs (contiguous iova and phys, same perms), in IOVA order.
  [[nodiscard]] std::vector<mapping> oracle_runs() const {
    std::vector<mapping> v;
    for (const auto& [iova, e] : oracle_)
      v.push_back({iova, e.phys, e.size, e.perms});
    return normalize(v);
  }
  // The table's translations as maximal runs, in IOVA order (independent of page sizes).
  [[nodiscard]] static std::vector<mapping> table_runs(const table& t) {
    std::vector<mapping> v;
    t.for_each_mapping([&](const mapping& m) { v.push_back(m); });
    return normalize(v);
  }
  // Merges runs that continue each other (same perms, contiguous iova and phys); sorts first.
  [[nodiscard]] static std::vector<mapping> normalize(std::vector<mapping> v) {
    std::sort(v.begin(), v.end(),
              [](const mapping& a, const mapping& b) { return a.iova < b.iova; });
    std::vector<mapping> out;
    for (const mapping& m : v) {
      if (!out.empty()) {
        mapping& l = out.back();
        if (l.iova + l.size == m.iova && l.phys + l.size == m.phys && l.perms == m.perms) {
          l.size += m.size;
          continue;
        }
      }
      out.push_back(m);
    }
    return out;
  }
  // Runs v with [first, end) removed (runs cut at the edges).
  [[nodiscard]] static std::vector<mapping> carve(const std::vector<mapping>& v, iova_t first,
                                                  iova_t end) {
    std::vector<mapping> out;
    for (const mapping& m : v) {
      const iova_t m_end = m.iova + m.size;
      if (m_end <= first || m.iova >= end) {
        out.push_back(m);
        continue;
      }
      if (m.iova < first) out.push_back({m.iova, m.phys, first - m.iova, m.perms});
      if (m_end > end) out.push_back({end, m.phys + (end - m.iova), m_end - end, m.perms});
    }
    return out;
  }
  [[nodiscard]] static std::string show(const std::vector<mapping>& v) {
    std::string s;
    for (const mapping& m : v)
      s += "[0x" + hex(m.iova) + " +0x" + hex(m.size) + " -> 0x" + hex(m.phys) + " p" +
           std::to_string(m.perms) + "] ";
    return s.empty() ? "(none)" : s;
  }

  // Applies one operation to the table and the oracle; "" or what went wrong.
  std::string apply(const op_spec& o) {
    const resolved_op r = resolve(o);
    const iova_t iova = r.iova;
    const std::uint64_t size = r.size;
    const std::string what = describe_op(o) + " -> [0x" + hex(iova) + ", +0x" + hex(size) + ")";
    std::vector<std::pair<iova_t, iova_t>> removed;  // ranges whose translation went away
    gather g;
    if (o.is_map) {
      const std::uint64_t phys = r.phys;
      const std::uint8_t perms = r.perms;
      errc expected = errc::ok;
      predict_map(iova, phys, size, perms, expected, removed);
      const Status s = table_->map(iova, phys, size, perms, g);
      if (s.code() != expected)
        return what + ": map returned " + s.to_string() + ", oracle expected " +
               std::string(errc_name(expected));
    } else {
      erase(iova, iova + size, removed);
      const Status s = table_->unmap(iova, size, g);
      if (!s.ok()) return what + ": unmap failed: " + s.to_string();
    }
    for (auto [a, b] : removed) {
      if (g.empty() || a < g.first() || b > g.last())
        return what + ": gather range does not cover a changed translation [0x" + hex(a) + ", 0x" +
               hex(b) + "]";
    }
    if (!g.released().empty() && !g.nonleaf_changed())
      return what + ": tables released but nonleaf_changed unset";
    if (std::string e = drain(g); !e.empty()) return what + ": " + e;
    if (std::string e = check(); !e.empty()) return what + ": " + e;
    return {};
  }

  // Full comparison of the table with the oracle, invariants and the ledger.
  std::string check() {
    const std::vector<mapping> got = table_runs(*table_);
    const std::vector<mapping> want = oracle_runs();
    if (got.size() != want.size())
      return "translations differ: table has " + std::to_string(got.size()) + " runs, oracle " +
             std::to_string(want.size()) + first_diff(got, want);
    for (std::size_t i = 0; i < got.size(); ++i)
      if (got[i].iova != want[i].iova || got[i].phys != want[i].phys ||
          got[i].size != want[i].size || got[i].perms != want[i].perms)
        return "translations differ" + first_diff(got, want);
    for (const auto& [iova, e] : oracle_) {  // the walker path too, including the last byte
      for (iova_t at : {iova, iova + e.size - 1}) {
        auto t = table_->lookup(at);
        if (!t || t->phys != e.phys + (at - iova) || t->perms != e.perms)
          return "lookup(0x" + hex(at) + ") wrong";
      }
    }
    if (Status s = table_->check_invariants(); !s.ok()) return s.to_string();
    // The table's counters against an independent walk, and the pool's own count (every
    // released frame was drained, so the pool holds exactly the reachable tables).
    const table_stats st = table_->stats();
    const std::uint64_t reachable = count_reachable_tables(*table_, pool_);
    if (st.tables_allocated - st.tables_released - st.tables_freed_unlinked != reachable)
      return "ledger: allocated " + std::to_string(st.tables_allocated) + " - released " +
             std::to_string(st.tables_released) + " - freed unlinked " +
             std::to_string(st.tables_freed_unlinked) + " != " + std::to_string(reachable) +
             " tables reachable from the root";
    if (pool_.stats().in_use != reachable)
      return "ledger: pool holds " + std::to_string(pool_.stats().in_use) + " frames, " +
             std::to_string(reachable) + " tables reachable from the root";
    if (pool_.ledger_violation_count() != 0)
      return "pool ledger violation: " + pool_.ledger_reports()[0].what;
    return {};
  }

  // Destroys the table, frees everything, checks the pool is whole.
  std::string finish() {
    gather g;
    table_->destroy(g);
    if (std::string e = drain(g); !e.empty()) return e;
    if (std::string r = pool_.leak_report(); !r.empty()) return "leak: " + r;
    if (!pool_.leaks().empty()) return "leaks() not empty";
    return {};
  }

  // Frees the frames a gather released (what reclamation does after the invalidation).
  std::string drain(gather& g) {
    for (mem::frame_id f : g.released()) {
      if (pool_.ident(f).state != mem::frame_state::retired) return "released frame not retired";
      if (Status s = pool_.free(f, "test"); !s.ok())
        return "free of released frame: " + s.to_string();
    }
    g.clear();
    return {};
  }

 private:
  static std::string hex(std::uint64_t v) {
    std::ostringstream s;
    s << std::hex << v;
    return s.str();
  }
  static std::string first_diff(const std::vector<mapping>& a, const std::vector<mapping>& b) {
    const auto show = [](const mapping& m) {
      return "[0x" + hex(m.iova) + " +0x" + hex(m.size) + " -> 0x" + hex(m.phys) + " p" +
             std::to_string(m.perms) + "]";
    };
    for (std::size_t i = 0; i < std::max(a.size(), b.size()); ++i) {
      const bool same = i < a.size() && i < b.size() && a[i].iova == b[i].iova &&
                        a[i].size == b[i].size && a[i].phys == b[i].phys &&
                        a[i].perms == b[i].perms;
      if (!same)
        return " (first difference at run " + std::to_string(i) + ": table " +
               (i < a.size() ? show(a[i]) : "-") + ", oracle " + (i < b.size() ? show(b[i]) : "-") +
               ")";
    }
    return {};
  }

  unsigned pick_level(iova_t iova, std::uint64_t phys, std::uint64_t size) const {
    for (unsigned level = 3; level >= 2; --level) {
      const unsigned shift = level_shift(level);
      if ((leaf_levels_ & (1u << level)) && is_aligned(iova | phys, shift) && size >= bit(shift))
        return level;
    }
    return 1;
  }

  // The first oracle extent overlapping [first, end), or oracle_.end().
  std::map<iova_t, extent>::iterator first_overlap(iova_t first, iova_t end) {
    auto it = oracle_.upper_bound(first);
    if (it != oracle_.begin()) {
      auto prev = std::prev(it);
      if (prev->first + prev->second.size > first) return prev;
    }
    return (it != oracle_.end() && it->first < end) ? it : oracle_.end();
  }

  // Removes [first, end) from the oracle, splitting extents; records what was removed.
  void erase(iova_t first, iova_t end, std::vector<std::pair<iova_t, iova_t>>& removed) {
    for (auto it = first_overlap(first, end); it != oracle_.end() && it->first < end;) {
      const iova_t a = it->first;
      const extent e = it->second;
      it = oracle_.erase(it);
      if (a < first) oracle_[a] = extent{first - a, e.phys, e.perms};
      if (a + e.size > end) oracle_[end] = extent{a + e.size - end, e.phys + (end - a), e.perms};
      removed.emplace_back(std::max(a, first), std::min(a + e.size, end) - 1);
    }
  }

  // Mirrors table::map chunk by chunk (same page-size choice); stops at the first refusal.
  void predict_map(iova_t iova, std::uint64_t phys, std::uint64_t size, std::uint8_t perms,
                   errc& result, std::vector<std::pair<iova_t, iova_t>>& removed) {
    while (size != 0) {
      const unsigned level = pick_level(iova, phys, size);
      const std::uint64_t step = bit(level_shift(level));
      auto it = first_overlap(iova, iova + step);
      if (it != oracle_.end()) {
        const iova_t probe = std::max(iova, it->first);
        auto t = table_->lookup(probe);
        PTR_ASSERT_MSG(t.has_value(), "oracle and table disagree before the step");
        if (t->level >= level || cfg_.refuse_overmap) {
          result = errc::address_in_use;
          return;
        }
        erase(iova, iova + step, removed);  // overmap: the table below is replaced
      }
      oracle_[iova] = extent{step, phys, perms};
      iova += step;
      phys += step;
      size -= step;
    }
  }

  mem::frame_pool pool_;
  domain_config cfg_;
  std::unique_ptr<table> table_;
  iova_t base_;
  unsigned window_lg2_;
  std::uint32_t leaf_levels_ = 0;
  std::vector<std::uint8_t> perms_;
  std::uint64_t phys_base_ = 0;
  std::map<iova_t, extent> oracle_;
};

}  // namespace ptreclaim::pt::testing
