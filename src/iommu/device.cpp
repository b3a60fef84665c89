#include "ptreclaim/iommu/device.hpp"

#include <algorithm>

#include "ptreclaim/base/bits.hpp"

namespace ptreclaim::iommu {

device::device(system& sys, device_config config)
    : sys_(&sys), config_(std::move(config)), rng_(config_.seed) {
  PTR_ASSERT_MSG(!config_.windows.empty(), "device_config: no IOVA window");
  for (const auto& w : config_.windows) {
    PTR_ASSERT_MSG(w.size > 0 && is_aligned(w.base, 12) && is_aligned(w.size, 12),
                   "device_config: windows must be non-empty and 4 KiB aligned");
    total_pages_ += w.size >> 12;
  }
  if (config_.ats) tlb_ = std::make_unique<devtlb>(config_.devtlb);
  PTR_ASSERT_MSG(config_.stride > 0 && config_.hot_percent <= 100 && config_.write_percent <= 100,
                 "device_config: bad stride or percentage");
  if (config_.pattern == access_pattern::hot_set) {
    const std::uint64_t n = std::min<std::uint64_t>(config_.hot_pages, total_pages_);
    for (std::uint64_t i = 0; i < n; ++i) {
      std::uint64_t page = rng_.below(total_pages_);
      for (const auto& w : config_.windows) {
        if (page < (w.size >> 12)) {
          hot_.push_back(w.base + (page << 12));
          break;
        }
        page -= w.size >> 12;
      }
    }
  }
}

device::~device() {
  cancel();
  if (tlb_ == nullptr) return;
  // Device-TLB invalidations must not reach a TLB that is gone.
  for (unsigned u = 0; u < sys_->unit_count(); ++u)
    sys_->get_unit(u).forget_devtlb(tlb_.get());
}

iova_t device::next_iova() {
  iova_t aimed = 0;
  if (config_.source != nullptr && config_.source->next(rng_, aimed)) return aimed;
  // Page granular: a translation does not depend on the offset within the page.
  auto uniform = [&] {
    std::uint64_t page = rng_.below(total_pages_);
    for (const auto& w : config_.windows) {
      if (page < (w.size >> 12)) return w.base + (page << 12);
      page -= w.size >> 12;
    }
    return config_.windows.front().base;
  };
  switch (config_.pattern) {
    case access_pattern::uniform:
      return uniform();
    case access_pattern::sequential: {
      const iova_window& w = config_.windows[seq_window_];
      const iova_t v = w.base + seq_offset_;
      seq_offset_ += config_.stride;
      if (seq_offset_ >= w.size) {
        seq_offset_ = 0;
        seq_window_ = (seq_window_ + 1) % config_.windows.size();
      }
      return v;
    }
    case access_pattern::hot_set:
      if (!hot_.empty() && rng_.below(100) >= 100 - config_.hot_percent)
        return hot_[rng_.below(hot_.size())];
      return uniform();
  }
  return uniform();
}

bool device::step() {
  if (walk_.phase() != walk_phase::walking) {
    if (!retry_) {
      last_iova_ = next_iova();
      access_ = config_.write_percent != 0 && rng_.below(100) < config_.write_percent
                    ? pt::perm_write
                    : pt::perm_read;
      if (!config_.pasids.empty()) {
        pasid_ = config_.pasids[next_pasid_];
        next_pasid_ = (next_pasid_ + 1) % config_.pasids.size();
      }
      if (tlb_ != nullptr) {
        if (devtlb_hit()) return true;
        tlb_generation_ = tlb_->generation();
      }
    }
    retry_ = false;
    walk_unit_ = sys_->unit_of(config_.id);
    if (walk_unit_ == nullptr) {
      last_ = translate_result{};
      account(last_);
      return true;
    }
    if (walk_unit_->begin(walk_, config_.id, last_iova_, access_, pasid_)) {
      if (walk_.result().result == outcome::busy) {
        c_.busy.fetch_add(1, std::memory_order_relaxed);
        retry_ = true;
        return false;
      }
      last_ = walk_.result();
      account(last_);
      devtlb_fill(last_);
      return true;
    }
    if (config_.stepwise) return false;
  }
  if (config_.stepwise) {
    if (!walk_unit_->step(walk_)) return false;
  } else {
    while (!walk_unit_->step(walk_)) {
    }
  }
  last_ = walk_.result();
  account(last_);
  devtlb_fill(last_);
  return true;
}

bool device::devtlb_hit() {
  const std::optional<devtlb_entry> e = tlb_->lookup(pasid_, last_iova_, 0b1110);
  if (!e) return false;
  translate_result r;
  r.from = source::devtlb;
  r.level = e->level;
  r.perms = e->perms;
  r.phys = e->phys_base + (last_iova_ & ((std::uint64_t{1} << pt::level_shift(e->level)) - 1));
  r.result = (access_ & ~e->perms) != 0 ? outcome::fault_permission : outcome::ok;
  if (e->orphaned) {
    // The flush of this entry completed without reaching the device: used stale, a violation.
    unit* u = sys_->unit_of(config_.id);
    const std::optional<context_entry> ctx = u != nullptr ? u->context(config_.id) : std::nullopt;
    if (ctx) {
      const reference_result ref = reference_walk(sys_->pool(), *ctx->dom, last_iova_);
      if (ref.result != outcome::ok || ref.perms != e->perms || ref.phys != r.phys) {
        violation v;
        v.kind = violation_kind::stale_devtlb;
        v.unit = u->index();
        v.device = config_.id;
        v.domain = ctx->dom->id();
        v.did = ctx->did;
        v.pasid = pasid_;
        v.iova = last_iova_;
        v.level = e->level;
        v.at_ns = sys_->plat().now_ns();
        sys_->violations().record(v);
        r.violations = 1;
      }
    }
  }
  last_ = r;
  account(last_);
  return true;
}

void device::devtlb_fill(const translate_result& r) {
  if (tlb_ == nullptr || r.result != outcome::ok) return;
  devtlb_entry e;
  e.did = walk_.did();
  e.pasid = pasid_;
  e.level = static_cast<std::uint8_t>(r.level);
  e.perms = r.perms;
  e.vpn = last_iova_ >> pt::level_shift(r.level);
  e.phys_base = r.phys & ~((std::uint64_t{1} << pt::level_shift(r.level)) - 1);
  tlb_->fill(e, tlb_generation_);
}

void device::cancel() {
  if (walk_.phase() == walk_phase::walking && walk_unit_ != nullptr) walk_unit_->cancel(walk_);
}

void device::account(const translate_result& r) {
  auto add = [](std::atomic<std::uint64_t>& a, std::uint64_t n) {
    a.fetch_add(n, std::memory_order_relaxed);
  };
  add(c_.translations, 1);
  add(r.result == outcome::ok ? c_.ok : c_.faults, 1);
  if (r.from == source::iotlb) add(c_.iotlb_hits, 1);
  if (r.from == source::psc) add(c_.psc_hits, 1);
  if (r.from == source::devtlb) add(c_.devtlb_hits, 1);
  if (r.from == source::walk) add(c_.walks, 1);
  add(c_.pte_reads, r.pte_reads);
  add(c_.violations, r.violations);
  add(c_.cost_ns, r.cost_ns);
}

device_stats device::stats() const noexcept {
  auto ld = [](const std::atomic<std::uint64_t>& a) { return a.load(std::memory_order_relaxed); };
  device_stats s;
  s.translations = ld(c_.translations);
  s.busy = ld(c_.busy);
  s.ok = ld(c_.ok);
  s.faults = ld(c_.faults);
  s.iotlb_hits = ld(c_.iotlb_hits);
  s.psc_hits = ld(c_.psc_hits);
  s.devtlb_hits = ld(c_.devtlb_hits);
  s.walks = ld(c_.walks);
  s.pte_reads = ld(c_.pte_reads);
  s.violations = ld(c_.violations);
  s.cost_ns = ld(c_.cost_ns);
  return s;
}

}  // namespace ptreclaim::iommu
