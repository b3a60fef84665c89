// Member definitions of table_impl (table_impl.hpp): the map and unmap walks, splitting,
// coalescing/freeing (settle), iteration and the invariant validator. Included only by
// table_impl.hpp; see there for the marker design and the memory-ordering numbering.
#pragma once

#include <algorithm>
#include <cstdio>
#include <string>

#include "table_impl.hpp"

namespace ptreclaim::pt::detail {

// Walks from the root to the table at `leaf_level`, installing missing tables, then writes the
// leaf. Locked mode: coalesces upward afterwards.
template <pt_format F>
Status table_impl<F>::map_one(iova_t iova, std::uint64_t phys, unsigned leaf_level,
                              std::uint8_t perms, gather& g) {
  std::array<mem::frame_id, limits::max_levels + 1> path{};
  path[levels] = root_;
  for (unsigned level = levels; level > leaf_level; --level) {
    auto next = descend_or_install(path[level], level, iova, leaf_level);
    if (!next.ok()) return next.status();
    path[level - 1] = *next;
  }
  const mem::frame_id t = path[leaf_level];
  const unsigned idx = level_index(iova, leaf_level);
  touch(pool_.words(t), idx, false);
  const std::uint64_t old = pool_.words(t)[idx].load(std::memory_order_acquire);  // [pt-2]
  const decoded_entry d = F::decode(old, leaf_level);
  if (d.kind == entry_kind::leaf) return Status(errc::address_in_use, "map: page already mapped");
  const std::uint64_t leaf = F::make_leaf(phys, leaf_level, perms);
  if (d.kind == entry_kind::table) {
    if (cfg_.refuse_overmap)
      return Status(errc::address_in_use, "map: a table is present where the superpage goes");
    // One store replaces the table pointer [pt-3]; the subtree is then retired, children first.
    write_entry(t, idx, leaf_level, leaf);
    const iova_t base = align_down(iova, level_shift(leaf_level));
    release_subtree(mem::frame_id::from_phys(d.addr), leaf_level - 1, base,
                    base + entry_size(leaf_level) - 1, g);
    g.add_range(base, base + entry_size(leaf_level) - 1);
    g.set_nonleaf_changed();
  } else {
    // A not-present entry is never cached by the IOMMU: filling it needs no invalidation.
    write_entry(t, idx, leaf_level, leaf);
  }
  if (coalesce_) {
    for (unsigned level = leaf_level; level < levels; ++level)
      if (!settle(path[level + 1], level_index(iova, level + 1), level + 1, iova, g)) break;
  }
  return {};
}

// Returns the table that entry t[iova] (t at `level`) points to, installing a fresh chain of
// tables down to `leaf_level` when the entry is empty. The chain is built privately and
// published with one store (locked) or CAS (lock-free), so an allocation failure links nothing.
template <pt_format F>
Result<mem::frame_id> table_impl<F>::descend_or_install(mem::frame_id t, unsigned level,
                                                        iova_t iova, unsigned leaf_level) {
  word& e = pool_.words(t)[level_index(iova, level)];
  touch(pool_.words(t), level_index(iova, level), false);
  std::uint64_t v = e.load(std::memory_order_acquire);  // [pt-2]
  for (;;) {
    const decoded_entry d = F::decode(v, level);
    if (d.kind == entry_kind::table) return mem::frame_id::from_phys(d.addr);
    if (d.kind == entry_kind::leaf)
      return Status(errc::address_in_use, "map: inside a mapped superpage");
    std::array<mem::frame_id, limits::max_levels> chain{};
    const unsigned n = level - leaf_level;  // tables at levels level-1 .. leaf_level
    for (unsigned j = 0; j < n; ++j) {
      auto r = alloc_table(level - 1 - j);
      if (!r.ok()) {
        for (unsigned k = 0; k < j; ++k)
          free_unlinked(chain[k]);
        return r.status();
      }
      chain[j] = *r;
    }
    for (unsigned j = n - 1; j >= 1; --j) {  // chain[j-1] sits at level - j
      write_entry(chain[j - 1], level_index(iova, level - j), level - j,
                  F::make_table(chain[j].phys(), level - j));
    }
    const std::uint64_t linked = F::make_table(chain[0].phys(), level);
    if (locked_) {
      write_entry(t, level_index(iova, level), level, linked);  // [pt-1]
    } else {
      pool_.plat().charge(cost_kind::pte_write);
      touch(pool_.words(t), level_index(iova, level), true);
      if (!e.compare_exchange_strong(v, linked, std::memory_order_acq_rel,  // [pt-4] pairs with a
                                     std::memory_order_acquire)) {          // racing [pt-4], [pt-2]
        // Lost the race: `v` is the winner's entry; our chain was never visible to anyone.
        for (unsigned j = 0; j < n; ++j)
          free_unlinked(chain[j]);
        races_lost_.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
    }
    // Published: the ledger now refuses a free of these frames that skips retire.
    for (unsigned j = 0; j < n; ++j)
      mark_linked(pool_, chain[j]);
    return chain[0];
  }
}

// Unmaps [first, last] (inclusive, inside t's range) from table t at `level`.
template <pt_format F>
Status table_impl<F>::unmap_in(mem::frame_id t, unsigned level, iova_t first, iova_t last,
                               gather& g) {
  const unsigned shift = level_shift(level);
  const std::uint64_t size = bit(shift);
  word* w = pool_.words(t);
  const unsigned i_last = level_index(last, level);
  iova_t base = align_down(first, shift);
  for (unsigned idx = level_index(first, level); idx <= i_last; ++idx, base += size) {
    touch(w, idx, false);  // a line the caller already holds costs nothing again
    const std::uint64_t v = w[idx].load(std::memory_order_acquire);  // [pt-2]
    const decoded_entry d = F::decode(v, level);
    if (d.kind == entry_kind::none) continue;
    const iova_t e_last = base + size - 1;
    if (first <= base && e_last <= last) {
      write_entry(t, idx, level, 0);  // [pt-3] unlink before retiring
      if (d.kind == entry_kind::table) {
        release_subtree(mem::frame_id::from_phys(d.addr), level - 1, base, e_last, g);
        g.set_nonleaf_changed();
      }
      g.add_range(base, e_last);
      continue;
    }
    PTR_ASSERT_MSG(level > 1, "a 4 KiB entry cannot be partly inside a page-aligned range");
    mem::frame_id child;
    if (d.kind == entry_kind::leaf) {
      auto r = split(t, idx, level, v, base, g);
      if (!r.ok()) return r.status();
      child = *r;
    } else {
      child = mem::frame_id::from_phys(d.addr);
    }
    const Status st = unmap_in(child, level - 1, std::max(first, base), std::min(last, e_last), g);
    if (locked_) settle(t, idx, level, base, g);  // also on failure: never leave it empty/whole
    if (!st.ok()) return st;
  }
  return {};
}

// Replaces the superpage `old` at t[idx] by a table of 512 leaves of the next size down.
template <pt_format F>
Result<mem::frame_id> table_impl<F>::split(mem::frame_id t, unsigned idx, unsigned level,
                                           std::uint64_t old, iova_t base, gather& g) {
  const decoded_entry d = F::decode(old, level);
  auto r = alloc_table(level - 1);
  if (!r.ok()) return r.status();
  const mem::frame_id child = *r;
  word* cw = pool_.words(child);
  const std::uint64_t csize = entry_size(level - 1);
  for (unsigned i = 0; i < limits::ptes_per_table; ++i)
    cw[i].store(F::make_leaf(d.addr + i * csize, level - 1, d.perms), std::memory_order_relaxed);
  // One loop of plain stores, at store speed: not 512 times what a map call costs per entry
  // (pte_write), which made a split cost ~10 us of virtual time against ~0.6 us real.
  pool_.plat().charge(cost_kind::table_fill);
  touch_table(cw);
  if (locked_) {
    write_counter(cw, counter_present, limits::ptes_per_table);
    write_counter(cw, counter_pairs, max_pairs);
  }
  const std::uint64_t linked = F::make_table(child.phys(), level);
  if (locked_) {
    write_entry(t, idx, level, linked);  // [pt-1]
  } else {
    touch(pool_.words(t), idx, true);
    std::uint64_t expected = old;
    const bool won = pool_.words(t)[idx].compare_exchange_strong(  // [pt-4]
        expected, linked, std::memory_order_acq_rel, std::memory_order_acquire);
    PTR_ASSERT_MSG(won, "lock-free split lost a race: callers mutated overlapping ranges");
  }
  mark_linked(pool_, child);
  split_.fetch_add(1, std::memory_order_relaxed);
  // The superpage translation may be cached whole; the new non-leaf entry must not be
  // covered by a leaf-only hint either.
  g.add_range(base, base + entry_size(level) - 1);
  g.set_nonleaf_changed();
  return child;
}

// Locked mode: if the table under parent[pidx] is empty, unlink and retire it; if it is
// all-contiguous and may become a superpage, replace it by one and retire it. Returns whether
// the parent changed (the caller then settles the parent's own parent).
template <pt_format F>
bool table_impl<F>::settle(mem::frame_id parent, unsigned pidx, unsigned plevel, iova_t iova,
                           gather& g) {
  PTR_DASSERT(locked_);
  touch(pool_.words(parent), pidx, false);
  const std::uint64_t pv = pool_.words(parent)[pidx].load(std::memory_order_relaxed);
  const decoded_entry pe = F::decode(pv, plevel);
  if (pe.kind != entry_kind::table) return false;
  const mem::frame_id child = mem::frame_id::from_phys(pe.addr);
  const word* w = pool_.words(child);
  touch(w, 0, false);  // its counters
  const iova_t base = align_down(iova, level_shift(plevel));
  const iova_t last = base + entry_size(plevel) - 1;
  if (read_counter(w, counter_present) == 0) {
    write_entry(parent, pidx, plevel, 0);  // [pt-3]
    retire(child, plevel - 1, base, last, g);
  } else if (coalesce_ && (leaf_levels_ & bit(plevel)) &&
             read_counter(w, counter_pairs) == max_pairs) {
    const decoded_entry d0 = F::decode(hw(w[0].load(std::memory_order_relaxed)), plevel - 1);
    if (!is_aligned(d0.addr, level_shift(plevel))) return false;
    write_entry(parent, pidx, plevel, F::make_leaf(d0.addr, plevel, d0.perms));  // [pt-3]
    retire(child, plevel - 1, base, last, g);
    coalesced_.fetch_add(1, std::memory_order_relaxed);
  } else {
    return false;
  }
  g.add_range(base, last);
  g.set_nonleaf_changed();
  return true;
}

template <pt_format F>
void table_impl<F>::visit_in(mem::frame_id t, unsigned level, iova_t base,
                             const std::function<void(const mapping&)>& visit) const {
  const word* w = pool_.words(t);
  const std::uint64_t size = entry_size(level);
  for (unsigned i = 0; i < limits::ptes_per_table; ++i) {
    const decoded_entry d = F::decode(w[i].load(std::memory_order_acquire), level);  // [pt-2]
    const iova_t at = base + i * size;
    if (d.kind == entry_kind::leaf) visit(mapping{at, d.addr, size, d.perms});
    if (d.kind == entry_kind::table)
      visit_in(mem::frame_id::from_phys(d.addr), level - 1, at, visit);
  }
}

template <pt_format F>
Status table_impl<F>::check_invariants() const {
  op_lock guard(*this);
  if (!root_.valid()) {
    if (linked_tables() != 0)
      return Status(errc::ledger_violation, "pt: destroyed table still counts linked frames");
    return {};
  }
  std::vector<bool> seen(pool_.capacity(), false);
  std::uint64_t linked = 0;
  PTR_TRY(check_table(root_, levels, 0, seen, linked));
  if (linked != linked_tables()) {
    return Status(errc::ledger_violation, "pt: " + std::to_string(linked) +
                                              " tables linked but the ledger says " +
                                              std::to_string(linked_tables()));
  }
  return {};
}

template <pt_format F>
Status table_impl<F>::check_table(mem::frame_id t, unsigned level, iova_t base,
                                  std::vector<bool>& seen, std::uint64_t& linked) const {
  const auto fail = [&](const std::string& what) {
    return Status(
        errc::ledger_violation,
        std::string("pt invariant (") + F::name + ", table frame " + std::to_string(t.value) +
            " level " + std::to_string(level) + " at iova 0x" +
            [&] {
              char buf[24];
              std::snprintf(buf, sizeof buf, "%llx", static_cast<unsigned long long>(base));
              return std::string(buf);
            }() +
            "): " + what);
  };
  if (!pool_.contains(t)) return fail("frame outside the pool");
  if (seen[t.value]) return fail("frame linked twice");
  seen[t.value] = true;
  ++linked;
  const mem::frame_ident id = pool_.ident(t);
  if (id.state != mem::frame_state::page_table || id.domain != cfg_.domain || id.level != level)
    return fail(std::string("frame owned as ") + mem::frame_state_name(id.state) + " of domain " +
                std::to_string(id.domain) + " level " + std::to_string(id.level));
  if (!pool_.meta(t).linked.load(std::memory_order_relaxed))
    return fail("reachable table not marked linked in the pool");
  const word* w = pool_.words(t);
  const std::uint64_t size = entry_size(level);
  unsigned present_count = 0;
  unsigned pairs = 0;
  std::uint64_t prev = 0;
  for (unsigned i = 0; i < limits::ptes_per_table; ++i) {
    const std::uint64_t v = w[i].load(std::memory_order_acquire);  // [pt-2]
    const decoded_entry d = F::decode(v, level);
    if (!locked_ && F::sw_get(v) != 0) return fail("marker bits set in lock-free mode");
    if (locked_ && i >= 4 && F::sw_get(v) != 0) return fail("marker bits outside entries 0..3");
    if (i > 0 && contiguous(hw(prev), hw(v), level)) ++pairs;
    prev = v;
    if (d.kind == entry_kind::none) continue;
    ++present_count;
    if (d.kind == entry_kind::leaf) {
      if ((leaf_levels_ & bit(level)) == 0)
        return fail("leaf at a level the domain does not allow");
      if (!is_aligned(d.addr, level_shift(level)))
        return fail("leaf address not aligned to its size");
    } else {
      if (level == 1) return fail("table entry in a leaf table");
      PTR_TRY(
          check_table(mem::frame_id::from_phys(d.addr), level - 1, base + i * size, seen, linked));
    }
  }
  if (locked_) {
    if (read_counter(w, counter_present) != present_count)
      return fail("present marker " + std::to_string(read_counter(w, counter_present)) +
                  " != " + std::to_string(present_count));
    if (read_counter(w, counter_pairs) != pairs)
      return fail("contiguity marker " + std::to_string(read_counter(w, counter_pairs)) +
                  " != " + std::to_string(pairs));
    if (t != root_ && present_count == 0) return fail("empty table left linked");
    if (coalesce_ && t != root_ && pairs == max_pairs && (leaf_levels_ & bit(level + 1)) &&
        is_aligned(F::decode(hw(w[0].load(std::memory_order_relaxed)), level).addr,
                   level_shift(level + 1)))
      return fail("all-contiguous table left uncoalesced");
  }
  return {};
}

}  // namespace ptreclaim::pt::detail
