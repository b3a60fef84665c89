// One IOMMU: queue processing, context table, introspection. The walker is in walker.cpp.
#include "ptreclaim/iommu/unit.hpp"

#include <algorithm>
#include <mutex>
#include <string>

#include "ptreclaim/base/bits.hpp"

namespace ptreclaim::iommu {

const char* outcome_name(outcome o) noexcept {
  switch (o) {
    case outcome::ok:
      return "ok";
    case outcome::fault_not_present:
      return "not present";
    case outcome::fault_permission:
      return "permission";
    case outcome::fault_no_context:
      return "no context";
    case outcome::fault_invalid:
      return "invalid";
    case outcome::busy:
      return "busy";
  }
  return "?";
}

unit::unit(unsigned index, const unit_config& config, mem::frame_pool& pool, platform& plat,
           violation_log& log)
    : index_(index),
      config_(config),
      pool_(&pool),
      plat_(&plat),
      log_(&log),
      lock_(plat),
      contexts_(limits::max_devices),
      iotlb_(config.iotlb),
      psc_(config.psc),
      queue_(config.queue_entries),
      slots_(config.max_walks_in_flight),
      faults_(config.faults, index) {
  PTR_ASSERT_MSG(config.max_walks_in_flight >= 1, "unit_config: max_walks_in_flight must be >= 1");
  lock_.name("IOMMU unit lock (invalidation queue, caches, walks)");
  abort_mu_.name("IOMMU unit abort lock");
  PTR_ASSERT_MSG(config.max_am <= 52, "unit_config: max_am beyond the 64-bit address space");
  PTR_ASSERT_MSG(config.host_address_width >= 32 && config.host_address_width <= 52,
                 "unit_config: host_address_width outside 32 .. 52");
  PTR_ASSERT_MSG((config.leaf_levels & 0b10) != 0, "unit_config: every unit supports 4 KiB pages");
  PTR_ASSERT_MSG(config.faults.ite_probability <= max_abort_probability &&
                     config.faults.iqe_probability <= max_abort_probability,
                 "fault_config: abort probabilities above max_abort_probability");
  PTR_ASSERT_MSG(config.faults.max_aborts_in_a_row >= 1, "fault_config: max_aborts_in_a_row < 1");
  free_slots_.reserve(config.max_walks_in_flight);
  active_.reserve(config.max_walks_in_flight);
  for (unsigned i = config.max_walks_in_flight; i-- > 0;)
    free_slots_.push_back(i);
}

void unit::set_context(device_id dev, domain* dom, hw_domain_id did, devtlb* ats) {
  PTR_ASSERT_MSG(dev < limits::max_devices, "device id beyond limits::max_devices");
  std::lock_guard<spinlock> g(lock_);
  std::erase(ats_devices_, dev);
  contexts_[dev] = {dom, did, ats};
  if (ats != nullptr) ats_devices_.push_back(dev);
}

void unit::clear_context(device_id dev) {
  PTR_ASSERT_MSG(dev < limits::max_devices, "device id beyond limits::max_devices");
  std::lock_guard<spinlock> g(lock_);
  std::erase(ats_devices_, dev);
  contexts_[dev] = {};
}

void unit::forget_devtlb(const devtlb* t) {
  std::lock_guard<spinlock> g(lock_);
  std::erase_if(ats_devices_, [&](device_id dev) { return contexts_[dev].ats == t; });
  for (context_entry& c : contexts_)
    if (c.ats == t) c.ats = nullptr;
}

std::optional<context_entry> unit::context(device_id dev) const {
  PTR_ASSERT_MSG(dev < limits::max_devices, "device id beyond limits::max_devices");
  std::lock_guard<spinlock> g(lock_);
  if (contexts_[dev].dom == nullptr) return std::nullopt;
  return contexts_[dev];
}

std::uint64_t unit::latency(inv_type t) const noexcept {
  switch (t) {
    case inv_type::global:
      return config_.latency.inv_global_ns;
    case inv_type::domain:
      return config_.latency.inv_domain_ns;
    case inv_type::page:
      return config_.latency.inv_page_ns;
    case inv_type::wait:
      return config_.latency.inv_wait_ns;
    case inv_type::devtlb:
      return config_.latency.inv_devtlb_ns;
    case inv_type::count_:
      break;
  }
  return 0;
}

bool unit::wait_blocked(std::uint64_t covers_through) const noexcept {
  if (config_.mutant_no_wait_rule) return false;
  // A walk that started at queue position s saw every descriptor < s applied; an invalidation
  // at position >= s took effect while it was in flight, so it may still use a dropped entry.
  return std::any_of(active_.begin(), active_.end(),
                     [&](std::uint32_t i) { return slots_[i].start < covers_through; });
}

void unit::mark_walks_locked(const inv_descriptor& d) noexcept {
  constexpr std::uint8_t all = 0xff;
  for (std::uint32_t i : active_) {
    walk_slot& w = slots_[i];
    w.overlapped = true;
    if (d.type == inv_type::global || (d.type == inv_type::domain && d.did == w.did)) {
      w.drop_psc = all;
      w.drop_iotlb = all;
      continue;
    }
    if (d.type != inv_type::page || d.did != w.did || d.pasid != w.pasid) continue;
    // The same overlap tests as iotlb/psc::invalidate_range, applied to the entries this walk
    // may fill: at level L, the region of 2^level_shift(L) bytes holding the IOVA.
    for (unsigned l = 1; l <= limits::max_levels; ++l) {
      const unsigned shift = pt::level_shift(l);
      const iova_t lo = align_down(w.iova, shift);
      const iova_t hi = lo + ((std::uint64_t{1} << shift) - 1);
      if (lo > d.last() || d.first() > hi) continue;
      if (d.am >= page_order(l)) {
        w.drop_iotlb = static_cast<std::uint8_t>(w.drop_iotlb | (1u << l));
      } else {
        // Too small a mask for a page of this size: its fill is made, marked as the cache
        // marks the entries the same invalidation left (iotlb::invalidate_page_selective).
        w.kept_iotlb = static_cast<std::uint8_t>(w.kept_iotlb | (1u << l));
        w.kept_first = std::min(w.kept_first, std::max(d.first(), lo));
        w.kept_last = std::max(w.kept_last, std::min(d.last(), hi));
        w.kept_am = d.am;
      }
      if (!d.ih && l >= 2) w.drop_psc = static_cast<std::uint8_t>(w.drop_psc | (1u << l));
    }
  }
}

void unit::apply(const inv_descriptor& d) noexcept {
  switch (d.type) {
    case inv_type::global:
      iotlb_.invalidate_all();
      psc_.invalidate_all();
      break;
    case inv_type::domain:
      iotlb_.invalidate_domain(d.did);
      psc_.invalidate_domain(d.did);
      break;
    case inv_type::page:
      iotlb_.invalidate_page_selective(d.did, d.first(), d.last(), d.am, d.pasid);
      if (!d.ih) psc_.invalidate_range(d.did, d.first(), d.last(), d.pasid);
      if (!d.pasid_selective()) mark_devtlbs_owed_locked(d);
      break;
    case inv_type::devtlb:
      if (devtlb* t = contexts_[d.sid].ats) t->invalidate(d.first(), d.last());
      return;
    case inv_type::wait:
    case inv_type::count_:
      break;
  }
}

// The IOMMU side of a page-selective flush is done: the devices' TLBs now owe theirs
// (devtlb.hpp). Only page-selective ones: a DSI, global or PASID-selective invalidation is often
// the hardware's widening of a smaller request, whose device-TLB invalidation rightly covers only
// what software asked for; entries outside it may legally stay stale until their own flush.
void unit::mark_devtlbs_owed_locked(const inv_descriptor& d) {
  for (device_id dev : ats_devices_) {
    const context_entry& c = contexts_[dev];
    if (c.did == d.did) c.ats->mark_owed(c.did, d.pasid, d.first(), d.last());
  }
}

void unit::record_abort_locked(std::uint64_t seq) {
  c_.descriptors_aborted.fetch_add(1, std::memory_order_relaxed);
  {
    std::lock_guard<spinlock> g(abort_mu_);
    aborted_seqs_.push_back(seq);  // processing order: ascending
  }
  any_abort_.store(true, std::memory_order_relaxed);  // published by [iu-1]
}

void unit::abort_group_locked(const inv_descriptor& wait, std::uint64_t seq, unsigned attempt,
                              queue_error e) {
  aborted_group g;
  g.error = e;
  g.wait_seq = seq;
  g.attempt = attempt;
  g.descs = std::move(group_);
  g.descs.push_back(wait);
  group_.clear();
  group_aborting_ = false;
  if (e == queue_error::ite)
    c_.ite_errors.fetch_add(1, std::memory_order_relaxed);  // IQE: counted at the refusal
  record_abort_locked(seq);
  aborted_groups_.push_back(std::move(g));
  untaken_.store(aborted_groups_.size(), std::memory_order_release);
}

void unit::process_locked(std::uint64_t now_ns) {
  const bool faulty = faults_.enabled();
  while (!queue_.empty()) {
    const inv_queue::slot& s = queue_.front();
    const inv_type t = s.desc.type;
    const fault_schedule::draw f =
        faulty ? faults_.at(queue_.head(), t, s.attempt) : fault_schedule::draw{};
    // A wait of an IQE'd group is aborted at its own latency; a timed-out one after the timeout.
    const bool abort_wait = t == inv_type::wait && (f.ite || group_aborting_);
    const std::uint64_t extra = f.stall_ns + (t != inv_type::wait ? 0
                                              : f.ite             ? config_.faults.ite_timeout_ns
                                              : abort_wait        ? 0
                                                                  : f.slow_ns);
    std::uint64_t done_at = std::max(s.submit_ns, hw_free_ns_) + latency(t) + extra;
    if (done_at > now_ns) break;
    if (abort_wait) {
      abort_group_locked(s.desc, queue_.head(), s.attempt,
                         group_aborting_ ? queue_error::iqe : queue_error::ite);
    } else if (t == inv_type::wait) {
      if (wait_blocked(s.covers_through)) {
        if (!head_wait_blocked_) {
          head_wait_blocked_ = true;
          c_.wait_stalls.fetch_add(1, std::memory_order_relaxed);
        }
        break;
      }
      if (head_wait_blocked_) {
        // It could complete only when the last blocking walk ended.
        done_at = std::max(done_at, std::min(last_walk_end_ns_, now_ns));
        head_wait_blocked_ = false;
      }
      if (inv_observer* o = observer_.load(std::memory_order_acquire))
        o->on_processed_at(index_, queue_.head(), s.desc, s.submit_ns, done_at);
      for (device_id dev : ats_devices_)
        contexts_[dev].ats->wait_completed();
      if (s.desc.status != nullptr)
        s.desc.status->store(s.desc.status_value, std::memory_order_release);  // [iu-3]
      c_.waits_completed.fetch_add(1, std::memory_order_relaxed);
      c_.descriptors[static_cast<std::size_t>(t)].fetch_add(1, std::memory_order_relaxed);
      if (f.slow_ns != 0) {
        c_.slow_waits.fetch_add(1, std::memory_order_relaxed);
        c_.slow_wait_ns.fetch_add(f.slow_ns, std::memory_order_relaxed);
      }
      group_.clear();
    } else if (group_aborting_ || f.iqe) {
      // Refused (IQE), or behind a refused one in its group: not applied, not reported.
      if (!group_aborting_) c_.iqe_errors.fetch_add(1, std::memory_order_relaxed);
      group_aborting_ = true;
      group_.push_back(s.desc);
      record_abort_locked(queue_.head());
    } else {
      apply(s.desc);
      mark_walks_locked(s.desc);
      last_applied_inv_plus1_ = queue_.head() + 1;
      if (inv_observer* o = observer_.load(std::memory_order_acquire))
        o->on_processed_at(index_, queue_.head(), s.desc, s.submit_ns, done_at);
      c_.descriptors[static_cast<std::size_t>(t)].fetch_add(1, std::memory_order_relaxed);
      if (faulty) group_.push_back(s.desc);  // resubmitted with its wait if that is aborted
    }
    if (f.stall_ns != 0) {
      c_.stalls.fetch_add(1, std::memory_order_relaxed);
      c_.stall_ns.fetch_add(f.stall_ns, std::memory_order_relaxed);
    }
    hw_free_ns_ = done_at;
    queue_.pop();
    processed_.store(queue_.head(), std::memory_order_release);  // [iu-1] pairs with [iu-2]
  }
}

Result<std::uint64_t> unit::submit(std::span<const inv_descriptor> descs) {
  return submit_attempt(descs, 0);
}

Result<std::uint64_t> unit::resubmit(std::span<const inv_descriptor> descs, unsigned attempt) {
  return submit_attempt(descs, attempt);
}

Result<std::uint64_t> unit::submit_attempt(std::span<const inv_descriptor> descs,
                                           unsigned attempt) {
  for (const auto& d : descs) {
    if (d.type == inv_type::count_)
      return Status(errc::invalid_argument, "submit: bad descriptor type");
    if (d.type == inv_type::devtlb) {
      if (d.am > 52 || !d.aligned())
        return Status(errc::invalid_argument, "submit: device-TLB invalidation block malformed");
      if (d.sid >= limits::max_devices)
        return Status(errc::invalid_argument, "submit: device-TLB invalidation of a bad device");
    }
    if (d.type == inv_type::page && d.pasid > max_pasid)
      return Status(errc::invalid_argument, "submit: P_IOTLB PASID beyond max_pasid");
    if (d.type == inv_type::page && !d.pasid_selective()) {
      if (d.am > config_.max_am)
        return Status(errc::invalid_argument, "submit: PSI address mask " + std::to_string(d.am) +
                                                  " beyond max_am " +
                                                  std::to_string(config_.max_am));
      if (!d.aligned())
        return Status(errc::invalid_argument, "submit: PSI address not aligned to 2^(12+AM)");
    }
  }
  std::lock_guard<spinlock> g(lock_);
  const std::uint64_t now = plat_->now_ns();
  process_locked(now);
  if (queue_.free_slots() < descs.size()) {
    c_.queue_full.fetch_add(1, std::memory_order_relaxed);
    return errc::queue_full;
  }
  const std::uint64_t first = queue_.tail();
  for (const auto& d : descs) {
    Result<std::uint64_t> r = queue_.push(d, now, attempt);
    PTR_ASSERT(r.ok());
  }
  submitted_.store(queue_.tail(), std::memory_order_release);  // [iu-7] pairs with [iu-8]
  process_locked(now);
  return first;
}

Result<std::uint64_t> unit::submit_amd(std::span<const amd_command> cmds) {
  std::vector<inv_descriptor> descs;
  descs.reserve(cmds.size());
  for (const auto& c : cmds) {
    inv_descriptor d = translate_amd(c);
    if (d.type == inv_type::page && d.am > config_.max_am) d = inv_descriptor::domain(d.did);
    descs.push_back(d);
  }
  return submit(std::span<const inv_descriptor>(descs));
}

void unit::advance() {
  std::lock_guard<spinlock> g(lock_);
  process_locked(plat_->now_ns());
}

void unit::process(std::uint64_t now_ns) {
  std::lock_guard<spinlock> g(lock_);
  process_locked(now_ns);
}

bool unit::poll(std::uint64_t seq) {
  if (done(seq)) return true;
  advance();
  return done(seq);
}

bool unit::aborted(std::uint64_t seq) const noexcept {
  if (!any_abort_.load(std::memory_order_acquire)) return false;
  std::lock_guard<spinlock> g(abort_mu_);
  return std::binary_search(aborted_seqs_.begin(), aborted_seqs_.end(), seq);
}

std::vector<aborted_group> unit::take_aborted() {
  std::lock_guard<spinlock> g(lock_);
  std::vector<aborted_group> out = std::move(aborted_groups_);
  aborted_groups_.clear();
  untaken_.store(0, std::memory_order_release);
  return out;
}

std::uint64_t unit::submitted() const {
  std::lock_guard<spinlock> g(lock_);
  return queue_.tail();
}

unsigned unit::walks_in_flight() const {
  std::lock_guard<spinlock> g(lock_);
  return static_cast<unsigned>(active_.size());
}

std::vector<inv_descriptor> unit::queued() const {
  std::lock_guard<spinlock> g(lock_);
  return queue_.pending();
}

unit_stats unit::stats() const noexcept {
  unit_stats s;
  auto ld = [](const std::atomic<std::uint64_t>& a) { return a.load(std::memory_order_relaxed); };
  s.translations = ld(c_.translations);
  s.iotlb_hits = ld(c_.iotlb_hits);
  s.iotlb_misses = ld(c_.iotlb_misses);
  for (std::size_t i = 0; i < s.psc_hits.size(); ++i)
    s.psc_hits[i] = ld(c_.psc_hits[i]);
  s.walks = ld(c_.walks);
  s.pte_reads = ld(c_.pte_reads);
  s.faults = ld(c_.faults);
  for (std::size_t i = 0; i < s.descriptors.size(); ++i)
    s.descriptors[i] = ld(c_.descriptors[i]);
  s.waits_completed = ld(c_.waits_completed);
  s.wait_stalls = ld(c_.wait_stalls);
  s.queue_full = ld(c_.queue_full);
  s.fills_dropped = ld(c_.fills_dropped);
  s.walks_overlapped = ld(c_.walks_overlapped);
  s.walks_busy = ld(c_.walks_busy);
  s.violations = ld(c_.violations);
  s.ite_errors = ld(c_.ite_errors);
  s.iqe_errors = ld(c_.iqe_errors);
  s.descriptors_aborted = ld(c_.descriptors_aborted);
  s.stalls = ld(c_.stalls);
  s.stall_ns = ld(c_.stall_ns);
  s.slow_waits = ld(c_.slow_waits);
  s.slow_wait_ns = ld(c_.slow_wait_ns);
  {
    std::lock_guard<spinlock> g(lock_);
    s.iotlb_evictions = iotlb_.evictions();
  }
  return s;
}

std::vector<iotlb_entry> unit::iotlb_snapshot() const {
  std::lock_guard<spinlock> g(lock_);
  std::vector<iotlb_entry> out;
  iotlb_.for_each([&](const iotlb_entry& e) { out.push_back(e); });
  return out;
}

std::vector<std::pair<unsigned, psc_entry>> unit::psc_snapshot() const {
  std::lock_guard<spinlock> g(lock_);
  std::vector<std::pair<unsigned, psc_entry>> out;
  psc_.for_each([&](unsigned level, const psc_entry& e) { out.emplace_back(level, e); });
  return out;
}

Status unit::check_invariants() const {
  std::lock_guard<spinlock> g(lock_);
  PTR_TRY(iotlb_.check_invariants());
  PTR_TRY(psc_.check_invariants());
  PTR_TRY(queue_.check_invariants());
  if (processed_.load(std::memory_order_relaxed) != queue_.head())
    return {errc::invalid_argument, "unit: processed count differs from the queue head"};
  if (last_applied_inv_plus1_ > queue_.head())
    return {errc::invalid_argument, "unit: an invalidation applied beyond the queue head"};
  unsigned used = 0;
  for (std::uint32_t i = 0; i < slots_.size(); ++i) {
    const walk_slot& w = slots_[i];
    if (w.start == ~std::uint64_t{0}) continue;
    ++used;
    if (w.start > queue_.head())
      return {errc::invalid_argument, "unit: a walk started beyond the queue head"};
    if (w.pos >= active_.size() || active_[w.pos] != i)
      return {errc::invalid_argument, "unit: a walk slot missing from the active list"};
    if (!w.overlapped && (w.drop_psc | w.drop_iotlb) != 0)
      return {errc::invalid_argument, "unit: fills dropped without an invalidation"};
  }
  if (used != active_.size() || used + free_slots_.size() != slots_.size())
    return {errc::invalid_argument, "unit: walk registry counts disagree"};
  if (head_wait_blocked_ && (queue_.empty() || queue_.front().desc.type != inv_type::wait))
    return {errc::invalid_argument, "unit: blocked flag without a wait at the head"};
  if (group_aborting_ && group_.empty())
    return {errc::invalid_argument, "unit: an IQE-aborted group without its refused descriptor"};
  bool bad = false;
  iotlb_.for_each([&](const iotlb_entry& e) {
    if (!e.negative && (config_.leaf_levels & (1u << e.level)) == 0) bad = true;
  });
  if (bad) return {errc::invalid_argument, "unit: IOTLB holds a page size the unit lacks"};
  return {};
}

}  // namespace ptreclaim::iommu
