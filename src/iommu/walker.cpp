// The hardware walker of one unit: begin (caches, registration), step (one PTE read, with the
// ledger check), finish (cache fills, unregistration). See unit.hpp for the model.
#include <algorithm>
#include <mutex>
#include <string>
#include <vector>

#include "ptreclaim/base/bits.hpp"
#include "ptreclaim/iommu/unit.hpp"

namespace ptreclaim::iommu {
namespace {

constexpr std::uint64_t no_walk = ~std::uint64_t{0};

std::uint64_t low_bits(unsigned n) noexcept {
  return (std::uint64_t{1} << n) - 1;
}

std::uint64_t level_mask(unsigned level) noexcept {
  return low_bits(pt::level_shift(level));
}

}  // namespace

bool unit::begin(walk& w, device_id dev, iova_t iova, std::uint8_t access, pasid_t pasid) {
  PTR_ASSERT_MSG(w.phase_ != walk_phase::walking, "begin: this walk is already in flight");
  PTR_ASSERT_MSG(dev < limits::max_devices, "device id beyond limits::max_devices");
  w = walk{};
  w.device_ = dev;
  w.iova_ = iova;
  w.access_ = access;
  w.pasid_ = pasid;
  c_.translations.fetch_add(1, std::memory_order_relaxed);
  translate_result& r = w.result_;

  std::lock_guard<spinlock> g(lock_);
  process_locked(plat_->now_ns());
  const context_entry ctx = contexts_[dev];
  if (ctx.dom == nullptr) {
    r.result = outcome::fault_no_context;
    c_.faults.fetch_add(1, std::memory_order_relaxed);
    w.phase_ = walk_phase::done;
    return true;
  }
  const pt::format_desc& fmt = ctx.dom->format();
  w.domain_ = ctx.dom;
  w.did_ = ctx.did;
  if (fmt.va_bits < 64 && (iova >> fmt.va_bits) != 0) {
    r.result = outcome::fault_invalid;
    c_.faults.fetch_add(1, std::memory_order_relaxed);
    w.phase_ = walk_phase::done;
    return true;
  }

  std::uint32_t levels = fmt.leaf_levels & config_.leaf_levels;
  if (config_.caching_mode) levels |= ((1u << (fmt.levels + 1)) - 1) & ~1u;
  if (auto hit = iotlb_.lookup(ctx.did, iova, levels, pasid)) {
    c_.iotlb_hits.fetch_add(1, std::memory_order_relaxed);
    r.from = source::iotlb;
    r.cost_ns = config_.latency.iotlb_hit_ns;
    r.level = hit->level;
    if (hit->negative) {
      r.result = outcome::fault_not_present;
    } else {
      r.perms = hit->perms;
      r.phys = hit->phys_base + (iova & level_mask(hit->level));
      r.result = (access & ~hit->perms) != 0 ? outcome::fault_permission : outcome::ok;
      if (hit->kept_first <= iova && iova <= hit->kept_last) check_kept_locked(w, *hit);
    }
    if (r.result != outcome::ok) c_.faults.fetch_add(1, std::memory_order_relaxed);
    w.phase_ = walk_phase::done;
    return true;
  }
  c_.iotlb_misses.fetch_add(1, std::memory_order_relaxed);
  r.cost_ns = config_.latency.iotlb_miss_ns;

  if (free_slots_.empty()) {
    // An ordinary condition (more walking devices than slots): the request is not started and
    // the device retries it, as hardware stalls a request it cannot take.
    c_.walks_busy.fetch_add(1, std::memory_order_relaxed);
    r.result = outcome::busy;
    w.phase_ = walk_phase::done;
    return true;
  }
  w.slot_ = free_slots_.back();
  free_slots_.pop_back();
  w.start_seq_ = queue_.head();
  walk_slot& slot = slots_[w.slot_];
  slot = walk_slot{};
  slot.start = w.start_seq_;
  slot.iova = iova;
  slot.did = ctx.did;
  slot.pasid = pasid;
  slot.pos = static_cast<std::uint32_t>(active_.size());
  active_.push_back(w.slot_);
  c_.walks.fetch_add(1, std::memory_order_relaxed);

  if (auto hit = psc_.lookup_deepest(ctx.did, iova, fmt.levels, pasid)) {
    c_.psc_hits[hit->level].fetch_add(1, std::memory_order_relaxed);
    r.from = source::psc;
    r.psc_level = hit->level;
    w.table_ = hit->entry.next;
    w.level_ = hit->level - 1;
    w.expect_valid_ = true;
    w.expect_generation_ = hit->entry.next_generation;
    w.via_psc_ = true;
    w.perms_ = hit->entry.perms;
  } else {
    r.from = source::walk;
    w.table_ = ctx.dom->root();
    w.level_ = fmt.levels;
    w.expect_valid_ = true;
    w.expect_generation_ = ctx.dom->root_generation();
    w.perms_ = pt::perm_read | pt::perm_write | pt::perm_exec;
  }
  w.walked_top_ = w.level_;
  w.phase_ = walk_phase::walking;
  // [ep-6] A walk starts behind a full fence: with the stamp's fence [ep-1] and the numbering RMW
  // [ep-2] it makes every unlink stamped before an invalidation that took effect visible to the
  // PTE reads of this walk (domain.hpp, "Memory ordering").
  std::atomic_thread_fence(std::memory_order_seq_cst);
  return false;
}

// A hit on a superpage entry inside the part a too-small PSI asked to invalidate: software
// believes that part is gone from the IOTLB. If the page table no longer translates the address
// as the entry does, the device just used a stale translation: a stale_superpage violation.
// (Where it still does, the mask was too small but harmless: nothing changed there.)
void unit::check_kept_locked(walk& w, const iotlb_entry& e) {
  const reference_result ref = reference_walk(*pool_, *w.domain_, w.iova_);
  if (ref.result == outcome::ok && ref.perms == e.perms &&
      ref.phys == e.phys_base + (w.iova_ & level_mask(e.level)))
    return;
  violation v;
  v.kind = violation_kind::stale_superpage;
  v.unit = index_;
  v.device = w.device_;
  v.domain = w.domain_->id();
  v.did = w.did_;
  v.iova = w.iova_;
  v.level = e.level;
  v.psi_am = e.kept_am;
  v.at_ns = plat_->now_ns();
  log_->record(v);
  c_.violations.fetch_add(1, std::memory_order_relaxed);
  ++w.result_.violations;
}

bool unit::step(walk& w) {
  PTR_ASSERT_MSG(w.phase_ == walk_phase::walking, "step: no walk in flight");
  const bool finished = [&] {
    read_step(w);
    return w.phase_ == walk_phase::done;
  }();
  if (finished) finish(w);
  return finished;
}

void unit::read_step(walk& w) {
  translate_result& r = w.result_;
  const mem::frame_id f = w.table_;
  const unsigned l = w.level_;
  const pt::format_desc& fmt = w.domain_->format();

  const mem::frame_ident before = pool_->ident(f);
  const std::uint64_t pte =
      pool_->words(f)[pt::level_index(w.iova_, l)].load(std::memory_order_acquire);  // [iu-5]
  const mem::frame_ident after = pool_->ident(f);
  c_.pte_reads.fetch_add(1, std::memory_order_relaxed);
  ++r.pte_reads;
  r.cost_ns += config_.latency.pte_read_ns;
  // The read is checked against the ledger both before and after, so a free that races with
  // the read is seen either way.
  const bool frame_ok =
      check_frame(w, f, l, before) && (after == before || check_frame(w, f, l, after));
  if (l < w.walked_top_) {
    w.gen_[l + 1] = before.generation;
    w.gen_known_[l + 1] = true;
  }

  const pt::decoded_entry e = fmt.decode(pte, l);
  // Reserved bits are judged only in a frame that is what the walk expects (poison in a freed
  // frame was reported above and is not a second finding).
  if (e.kind != pt::entry_kind::none && frame_ok) {
    const std::uint64_t beyond_width =
        pte & fmt.width_limited_mask & ~low_bits(config_.host_address_width);
    if (const std::uint64_t bad = fmt.reserved_bits(pte, l) | beyond_width; bad != 0) {
      record_violation(w, violation_kind::reserved_bits, f, l, before, bad);
      r.result = outcome::fault_invalid;
      r.level = l;
      w.phase_ = walk_phase::done;
      return;
    }
  }
  switch (e.kind) {
    case pt::entry_kind::none:
      r.result = outcome::fault_not_present;
      r.level = l;
      w.phase_ = walk_phase::done;
      return;
    case pt::entry_kind::leaf: {
      r.level = l;
      if ((config_.leaf_levels & (1u << l)) == 0) {
        r.result = outcome::fault_invalid;  // a page size this unit lacks: a reserved bit
        w.phase_ = walk_phase::done;
        return;
      }
      const auto perms = static_cast<std::uint8_t>(w.perms_ & e.perms);
      r.perms = perms;
      r.phys = align_down(e.addr, pt::level_shift(l)) + (w.iova_ & level_mask(l));
      r.result = (w.access_ & ~perms) != 0 ? outcome::fault_permission : outcome::ok;
      w.phase_ = walk_phase::done;
      return;
    }
    case pt::entry_kind::table: {
      const mem::frame_id next = mem::frame_id::from_phys(e.addr);
      if (l == 1 || !pool_->contains(next)) {
        record_violation(w, violation_kind::wild_frame, next, l - 1, mem::frame_ident{});
        r.result = outcome::fault_invalid;
        r.level = l;
        w.phase_ = walk_phase::done;
        return;
      }
      w.perms_ = static_cast<std::uint8_t>(w.perms_ & e.perms);
      w.next_[l] = next;
      w.perm_[l] = w.perms_;
      w.table_ = next;
      w.level_ = l - 1;
      w.expect_valid_ = false;
      w.via_psc_ = false;
      return;
    }
  }
}

bool unit::check_frame(walk& w, mem::frame_id f, unsigned level, mem::frame_ident id) {
  violation_kind kind;
  if (id.state == mem::frame_state::free) {
    kind = violation_kind::free_frame;
  } else if (id.state == mem::frame_state::data) {
    kind = violation_kind::data_frame;
  } else if (id.domain != w.domain_->id()) {
    kind = violation_kind::other_domain;
  } else if (id.level != level) {
    kind = violation_kind::wrong_level;
  } else if (w.expect_valid_ && id.generation != w.expect_generation_) {
    kind = violation_kind::generation_changed;
  } else if (id.state == mem::frame_state::page_table && w.stale_) {
    kind = violation_kind::reused_via_stale;
  } else {
    // A retired table of this domain, level and generation is the deferred-free window at
    // work: the memory still holds the old table. Not a violation.
    if (id.state == mem::frame_state::retired) w.stale_ = true;
    return true;
  }
  record_violation(w, kind, f, level, id);
  return false;
}

void unit::record_violation(walk& w, violation_kind kind, mem::frame_id f, unsigned level,
                            mem::frame_ident id, std::uint64_t reserved) {
  violation v;
  v.kind = kind;
  v.reserved = reserved;
  v.unit = index_;
  v.device = w.device_;
  v.domain = w.domain_->id();
  v.did = w.did_;
  v.iova = w.iova_;
  v.frame = f;
  v.level = level;
  v.via_psc = w.via_psc_;
  v.has_expected_generation = w.expect_valid_;
  v.expected_generation = w.expect_generation_;
  v.now = id;
  v.at_ns = plat_->now_ns();
  if (pool_->contains(f)) {
    const mem::frame_meta& m = pool_->meta(f);
    v.retired_ns = m.retired_ns.load(std::memory_order_relaxed);
    v.freed_ns = m.freed_ns.load(std::memory_order_relaxed);
    v.freed_by = m.freed_by.load(std::memory_order_relaxed);
    v.last_domain = m.last_domain.load(std::memory_order_relaxed);
  }
  log_->record(v);
  c_.violations.fetch_add(1, std::memory_order_relaxed);
  ++w.result_.violations;
}

void unit::finish(walk& w) {
  std::lock_guard<spinlock> g(lock_);
  end_walk_locked(w, true);
  process_locked(plat_->now_ns());  // a wait may have been waiting for this walk
  if (w.result_.result != outcome::ok) c_.faults.fetch_add(1, std::memory_order_relaxed);
  w.phase_ = walk_phase::done;
}

void unit::cancel(walk& w) {
  if (w.phase_ != walk_phase::walking) return;
  std::lock_guard<spinlock> g(lock_);
  end_walk_locked(w, false);
  process_locked(plat_->now_ns());
  w.phase_ = walk_phase::idle;
}

void unit::end_walk_locked(walk& w, bool fill) {
  PTR_ASSERT(w.slot_ < slots_.size() && slots_[w.slot_].start == w.start_seq_);
  const walk_slot slot = slots_[w.slot_];
  // Swap-remove from the active list.
  const std::uint32_t moved = active_.back();
  active_[slot.pos] = moved;
  slots_[moved].pos = slot.pos;
  active_.pop_back();
  slots_[w.slot_].start = no_walk;
  free_slots_.push_back(w.slot_);
  w.slot_ = ~0u;
  last_walk_end_ns_ = plat_->now_ns();
  if (slot.overlapped) c_.walks_overlapped.fetch_add(1, std::memory_order_relaxed);
  if (!fill) return;
  fill_caches_locked(w, slot.drop_psc, slot.drop_iotlb);
  const unsigned level = w.result_.level;
  if (level >= 2 && level <= limits::max_levels && (slot.kept_iotlb & (1u << level)) != 0) {
    // A too-small PSI took effect during the walk: the fill stands, marked as the cache marks
    // the entries such a PSI leaves (iotlb::invalidate_page_selective).
    if (auto e = iotlb_.lookup(w.did_, w.iova_, 1u << level, w.pasid_); e && !e->negative) {
      e->kept_first = std::min(e->kept_first, std::max(slot.kept_first, e->first()));
      e->kept_last = std::max(e->kept_last, std::min(slot.kept_last, e->last()));
      e->kept_am = slot.kept_am;
      iotlb_.insert(*e);
    }
  }
}

// An invalidation that took effect while the walk was in flight may have dropped exactly what
// the walk read; filling such an entry now would outlive it, so the fills it covers (the drop
// masks, see mark_walks_locked) are skipped. The others are kept, as hardware may keep them.
void unit::fill_caches_locked(const walk& w, std::uint8_t drop_psc, std::uint8_t drop_iotlb) {
  const translate_result& r = w.result_;
  bool dropped = false;
  // Paging-structure entries read from memory whose target table was read too (so its
  // generation is known). Hardware caches only present entries.
  for (unsigned l = 2; l <= w.walked_top_; ++l) {
    if (!w.next_[l].valid() || !w.gen_known_[l]) continue;
    if ((drop_psc & (1u << l)) != 0) {
      dropped = true;
      continue;
    }
    psc_entry e;
    e.did = w.did_;
    e.pasid = w.pasid_;
    e.prefix = w.iova_ >> pt::level_shift(l);
    e.next = w.next_[l];
    e.next_generation = w.gen_[l];
    e.perms = w.perm_[l];
    psc_.insert(l, e);
  }
  iotlb_entry t;
  t.did = w.did_;
  t.pasid = w.pasid_;
  t.level = static_cast<std::uint8_t>(r.level);
  t.vpn = w.iova_ >> pt::level_shift(r.level);
  bool insert = false;
  if (r.result == outcome::ok || r.result == outcome::fault_permission) {
    t.perms = r.perms;
    t.phys_base = align_down(r.phys, pt::level_shift(r.level));
    insert = (t.perms & pt::perm_rw) != 0;
  } else if (r.result == outcome::fault_not_present && config_.caching_mode) {
    t.negative = true;
    insert = true;
  }
  if (insert && (drop_iotlb & (1u << r.level)) != 0) {
    insert = false;
    dropped = true;
  }
  if (insert) iotlb_.insert(t);
  if (dropped) c_.fills_dropped.fetch_add(1, std::memory_order_relaxed);
}

reference_result reference_walk(const mem::frame_pool& pool, const domain& dom, iova_t iova) {
  reference_result r;
  const pt::format_desc& fmt = dom.format();
  if (fmt.va_bits < 64 && (iova >> fmt.va_bits) != 0) {
    r.result = outcome::fault_invalid;
    return r;
  }
  mem::frame_id table = dom.root();
  auto perms = static_cast<std::uint8_t>(pt::perm_read | pt::perm_write | pt::perm_exec);
  for (unsigned l = fmt.levels; l >= 1; --l) {
    r.tables[l] = table;
    const std::uint64_t pte =
        pool.words(table)[pt::level_index(iova, l)].load(std::memory_order_acquire);
    const pt::decoded_entry e = fmt.decode(pte, l);
    r.level = l;
    if (e.kind == pt::entry_kind::none) {
      r.result = outcome::fault_not_present;
      return r;
    }
    perms = static_cast<std::uint8_t>(perms & e.perms);
    if (e.kind == pt::entry_kind::leaf) {
      r.result = outcome::ok;
      r.perms = perms;
      r.phys = align_down(e.addr, pt::level_shift(l)) + (iova & level_mask(l));
      return r;
    }
    table = mem::frame_id::from_phys(e.addr);
    if (l == 1 || !pool.contains(table)) {
      r.result = outcome::fault_invalid;
      return r;
    }
  }
  return r;
}

Status unit::check_coherence(const domain& dom, hw_domain_id did) const {
  std::vector<iotlb_entry> tlb;
  std::vector<std::pair<unsigned, psc_entry>> pscs;
  {
    std::lock_guard<spinlock> g(lock_);
    iotlb_.for_each([&](const iotlb_entry& e) {
      if (e.did == did) tlb.push_back(e);
    });
    psc_.for_each([&](unsigned l, const psc_entry& e) {
      if (e.did == did) pscs.emplace_back(l, e);
    });
  }
  for (const iotlb_entry& e : tlb) {
    const reference_result ref = reference_walk(*pool_, dom, e.first());
    if (e.negative ? ref.result == outcome::ok
                   : (ref.result != outcome::ok || ref.level != e.level ||
                      align_down(ref.phys, pt::level_shift(e.level)) != e.phys_base ||
                      ref.perms != e.perms))
      return {errc::invalid_argument,
              "unit " + std::to_string(index_) + ": stale IOTLB entry for iova " +
                  std::to_string(e.first()) + " level " + std::to_string(e.level)};
  }
  for (const auto& [l, e] : pscs) {
    const iova_t iova = e.prefix << pt::level_shift(l);
    const reference_result ref = reference_walk(*pool_, dom, iova);
    const mem::frame_ident id = pool_->ident(e.next);
    if (ref.tables[l - 1] != e.next || id.state != mem::frame_state::page_table ||
        id.generation != e.next_generation)
      return {errc::invalid_argument, "unit " + std::to_string(index_) +
                                          ": stale PSC entry at level " + std::to_string(l) +
                                          " for iova " + std::to_string(iova)};
  }
  return {};
}

translate_result unit::translate(device_id dev, iova_t iova, std::uint8_t access, pasid_t pasid) {
  walk w;
  if (!begin(w, dev, iova, access, pasid)) {
    while (!step(w)) {
    }
  }
  return w.result();
}

}  // namespace ptreclaim::iommu
