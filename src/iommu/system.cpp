#include "ptreclaim/iommu/system.hpp"

#include <mutex>
#include <string>

#include "ptreclaim/base/bits.hpp"
#include "ptreclaim/base/cost.hpp"
#include "system_recovery.hpp"

namespace ptreclaim::iommu {

std::vector<attachment> domain::attachments() const {
  std::lock_guard<spinlock> g(lock_);
  return attachments_;
}

system::system(mem::frame_pool& pool, const system_config& config, platform& plat)
    : pool_(&pool), config_(config), plat_(&plat), log_(config.violations_kept), sva_lock_(plat) {
  sva_lock_.name("iommu_sva_lock (SVA flush mutex, held until the waits complete)");
  for (auto& d : by_id_)
    d.store(nullptr, std::memory_order_relaxed);
  for (auto& u : device_unit_)
    u.store(0, std::memory_order_relaxed);
}

system::~system() = default;

unsigned system::add_unit(const unit_config& config) {
  std::lock_guard<std::mutex> g(setup_mutex_);
  PTR_ASSERT_MSG(units_.size() < limits::max_iommus,
                 "add_unit: more than limits::max_iommus units");
  const auto index = static_cast<unsigned>(units_.size());
  units_.push_back(std::make_unique<unit>(index, config, *pool_, *plat_, log_));
  recovery_.push_back(std::make_unique<recovery_state>());
  qlocks_.push_back(std::make_unique<queue_lock>(*plat_));
  units_.back()->set_inv_observer(inv_observer_);
  return index;
}

void system::set_inv_observer(inv_observer* o) {
  std::lock_guard<std::mutex> g(setup_mutex_);
  inv_observer_ = o;
  for (auto& u : units_)
    u->set_inv_observer(o);
}

Result<domain*> system::create_domain(const domain_desc& desc) {
  if (desc.format == nullptr) return Status(errc::invalid_argument, "create_domain: no format");
  if (desc.id >= limits::max_domains)
    return Status(errc::invalid_argument, "create_domain: id beyond limits::max_domains");
  if (!pool_->contains(desc.root))
    return Status(errc::invalid_argument, "create_domain: root outside the pool");
  const mem::frame_ident root = pool_->ident(desc.root);
  if (root.state != mem::frame_state::page_table || root.domain != desc.id ||
      root.level != desc.format->levels)
    return Status(errc::invalid_argument,
                  "create_domain: root frame " + std::to_string(desc.root.value) +
                      " is not a live root table of domain " + std::to_string(desc.id));
  std::lock_guard<std::mutex> g(setup_mutex_);
  if (by_id_[desc.id].load(std::memory_order_relaxed) != nullptr)
    return Status(errc::invalid_argument,
                  "create_domain: id " + std::to_string(desc.id) + " taken");
  domains_.push_back(std::unique_ptr<domain>(new domain(desc, root.generation, *plat_)));
  domain* d = domains_.back().get();
  by_id_[desc.id].store(d, std::memory_order_release);  // [sys-1] pairs with [sys-2]
  return d;
}

domain* system::find_domain(std::uint16_t id) const noexcept {
  if (id >= limits::max_domains) return nullptr;
  return by_id_[id].load(std::memory_order_acquire);  // [sys-2]: a found domain is built
}

Status system::attach(device_id dev, unsigned u, domain& dom, hw_domain_id did,
                      std::span<const pasid_t> pasids, devtlb* ats) {
  if (u >= units_.size()) return {errc::invalid_argument, "attach: no such unit"};
  if (dev >= limits::max_devices)
    return {errc::invalid_argument, "attach: device id beyond limits"};
  std::uint64_t mask = pasids.empty() ? 1 : 0;
  for (pasid_t p : pasids) {
    if (p == no_pasid || p > max_pasid)
      return {errc::invalid_argument,
              "attach: PASID " + std::to_string(p) + " outside 1.." + std::to_string(max_pasid)};
    mask |= std::uint64_t{1} << p;
  }
  std::lock_guard<std::mutex> g(setup_mutex_);
  if (device_unit_[dev].load(std::memory_order_relaxed) != 0)
    return {errc::invalid_argument, "attach: device " + std::to_string(dev) + " already attached"};
  for (const auto& other : domains_) {
    if (other.get() == &dom) continue;
    for (const attachment& a : other->attachments()) {
      if (a.unit == u && a.did == did)
        return {errc::invalid_argument, "attach: did " + std::to_string(did) + " on unit " +
                                            std::to_string(u) + " belongs to domain " +
                                            std::to_string(other->id())};
    }
  }
  {
    std::lock_guard<spinlock> dg(dom.lock_);
    attachment* found = nullptr;
    for (attachment& a : dom.attachments_) {
      if (a.unit == u) found = &a;
    }
    if (found != nullptr && found->did != did)
      return {errc::invalid_argument, "attach: domain " + std::to_string(dom.id()) +
                                          " already uses did " + std::to_string(found->did) +
                                          " on unit " + std::to_string(u)};
    if (ats != nullptr && (found == nullptr ? 0 : found->ats_count) >= max_ats_per_unit)
      return {errc::invalid_argument, "attach: more than " + std::to_string(max_ats_per_unit) +
                                          " ATS devices of domain " + std::to_string(dom.id()) +
                                          " on unit " + std::to_string(u)};
    if (found == nullptr) {
      dom.attachments_.push_back({u, did, 0});
      found = &dom.attachments_.back();
    }
    found->pasids |= mask;
    if (ats != nullptr) found->ats[found->ats_count++] = dev;
    dom.pasids_[u].store(found->pasids, std::memory_order_release);
    if (!pasids.empty()) dom.sva_.store(true, std::memory_order_release);
    dom.did_plus1_[u].store(std::uint32_t{did} + 1, std::memory_order_release);  // [sys-5]
    ++found->devices;
    dom.leaf_levels_.fetch_and(units_[u]->config().leaf_levels, std::memory_order_relaxed);
  }
  units_[u]->set_context(dev, &dom, did, ats);
  device_unit_[dev].store(static_cast<int>(u) + 1, std::memory_order_release);  // [sys-3]
  return {};
}

Status system::detach(device_id dev) {
  if (dev >= limits::max_devices)
    return {errc::invalid_argument, "detach: device id beyond limits"};
  std::lock_guard<std::mutex> g(setup_mutex_);
  const int u1 = device_unit_[dev].load(std::memory_order_relaxed);
  if (u1 == 0) return {errc::not_mapped, "detach: device " + std::to_string(dev) + " not attached"};
  unit& u = *units_[static_cast<unsigned>(u1 - 1)];
  if (auto ctx = u.context(dev)) {
    std::lock_guard<spinlock> dg(ctx->dom->lock_);
    for (attachment& a : ctx->dom->attachments_) {
      if (a.unit == u.index() && a.devices > 0) --a.devices;
    }
  }
  u.clear_context(dev);
  device_unit_[dev].store(0, std::memory_order_release);
  return {};
}

unit* system::unit_of(device_id dev) const noexcept {
  if (dev >= limits::max_devices) return nullptr;
  const int u1 = device_unit_[dev].load(std::memory_order_acquire);  // [sys-4] pairs with [sys-3]
  return u1 == 0 ? nullptr : units_[static_cast<unsigned>(u1 - 1)].get();
}

translate_result system::translate(device_id dev, iova_t iova, std::uint8_t access) {
  unit* u = unit_of(dev);
  if (u == nullptr) return {};
  return u->translate(dev, iova, access);
}

Result<std::uint64_t> system::submit_retrying(unit& u, std::span<const inv_descriptor> descs) {
  Result<std::uint64_t> out = u.submit(descs);
  if (out.ok() || out.status().code() != errc::queue_full) return out;
  const bool ok = plat_->wait_until(
      [&] {
        u.advance();
        out = u.submit(descs);
        return out.ok() || out.status().code() != errc::queue_full;
      },
      config_.queue_full_timeout_ns);
  if (!ok)
    return Status(errc::queue_full, "invalidate: unit " + std::to_string(u.index()) +
                                        " queue stayed full for " +
                                        std::to_string(config_.queue_full_timeout_ns) + " ns");
  return out;
}

namespace {

// One unit's share of a flush (the file comment of system.hpp): appends its descriptors,
// wait excluded; returns whether they drop every cached entry of the domain there.
bool unit_flush(const attachment& a, const unit_config& uc, const inv_range& range,
                iova_t space_last, std::vector<inv_descriptor>& out) {
  const unsigned am = covering_block_lg2(range.first, range.last, 12);
  // AM = 52 (the whole space) is the one block with no lower address bits.
  const iova_t base = 12 + am >= 64 ? 0 : align_down(range.first, 12 + am);
  const bool ih = !range.nonleaf_changed;
  bool full = true;
  if ((a.pasids & 1) != 0) {
    if (am > uc.max_am) {
      out.push_back(inv_descriptor::domain(a.did));
    } else {
      out.push_back(inv_descriptor::page(a.did, base, am, ih));
      full = range.nonleaf_changed && out.back().first() == 0 && out.back().last() >= space_last;
    }
  }
  for (pasid_t p = 1; p <= max_pasid; ++p) {
    if ((a.pasids >> p & 1) == 0) continue;
    if (am > uc.max_am) {
      out.push_back(inv_descriptor::pasid_page(a.did, p, 0, 52, ih));
      full = full && range.nonleaf_changed;
    } else {
      out.push_back(inv_descriptor::pasid_page(a.did, p, base, am, ih));
      full = full && range.nonleaf_changed && out.back().first() == 0 &&
             out.back().last() >= space_last;
    }
  }
  for (unsigned i = 0; i < a.ats_count; ++i)
    out.push_back(inv_descriptor::devtlb(a.ats[i], base, am));
  return full;
}

}  // namespace

Result<ticket> system::invalidate(domain& dom, const inv_range& range) {
  return flush(dom, range, false, 0);
}

Result<std::uint64_t> system::flush_sync_epoch(domain& dom, const inv_range& range,
                                               std::uint64_t timeout_ns) {
  const std::uint64_t deadline = sat_add(plat_->now_ns(), timeout_ns);
  Result<ticket> t = flush(dom, range, true, deadline);
  if (!t.ok()) return t.status();
  // Unlocked-poll units (and a spin cut short by the deadline) are waited for here, lock-free;
  // then every earlier epoch of the domain too (numbered earlier, maybe submitted later by
  // another CPU), so flush_completed() >= the epoch returned, as invalidate-then-wait_epoch gave:
  // callers free what the epoch covers at once (invalidate_after_retire).
  PTR_TRY(wait(*t, sat_sub(deadline, plat_->now_ns())));
  PTR_TRY(wait_epoch(dom, t->epoch, sat_sub(deadline, plat_->now_ns())));
  return t->epoch;
}

Result<ticket> system::flush(domain& dom, const inv_range& range, bool sync,
                             std::uint64_t deadline_ns) {
  PTR_ASSERT_MSG(range.first <= range.last, "invalidate: first > last");
  if (!dom.sva()) return submit_flush(dom, range, sync, deadline_ns);
  // iommu_sva_invalidate_kva_range: the mutex is held across every unit's flush and its wait.
  std::lock_guard<spinlock> g(sva_lock_);
  const std::uint64_t sva_deadline = sat_add(plat_->now_ns(), config_.sva_wait_timeout_ns);
  Result<ticket> t = submit_flush(dom, range, true, sva_deadline);
  if (!t.ok()) return t;
  PTR_TRY(wait(*t, sat_sub(sva_deadline, plat_->now_ns())));
  return t;
}

void system::pass(std::uint64_t ns) {
  if (ns != 0) (void)plat_->wait_until([] { return false; }, ns);
}

bool system::spin_locked(unit& u, queue_lock& q, std::uint64_t seq, std::uint64_t deadline_ns) {
  const driver_config& drv = u.config().driver;
  auto done = [&] {
    if (u.poll(seq)) return true;
    recover(u.index());  // qi_check_fault: an aborted group is resubmitted under the lock
    return wait_done(u.index(), seq);
  };
  pass(drv.poll_ns);  // the status word and qi_check_fault's fault status read, locked
  if (done()) return true;
  if (plat_->now_ns() >= deadline_ns) return false;
  if (drv.relax_ns == 0)  // a driver that never drops the lock: nobody gets in meanwhile
    return plat_->wait_until(done, sat_sub(deadline_ns, plat_->now_ns()));
  // The rest of the loop in closed form (queue_lock.hpp): the waiter takes its turns among the
  // unit's spinners until the hardware completes its wait, notices on its next turn (half a
  // round later on average), and reads the status once more under the lock.
  q.unlock();
  const std::uint64_t token = q.begin_spin();
  const bool ok = plat_->wait_until(done, sat_sub(deadline_ns, plat_->now_ns()));
  if (ok) pass(spin_period_ns(std::max(1u, q.spinners_at(plat_->now_ns())), drv) / 2);
  q.end_spin(token, drv);
  q.lock(drv);
  pass(drv.poll_ns);
  return ok;
}

Result<ticket> system::submit_flush(domain& dom, const inv_range& range, bool sync,
                                    std::uint64_t deadline_ns) {
  const unsigned va_bits = dom.format().va_bits;
  const iova_t space_last = va_bits >= 64 ? ~iova_t{0} : bit(va_bits) - 1;
  ticket t;
  t.dom = &dom;
  std::vector<attachment> atts;
  {
    std::lock_guard<spinlock> g(dom.lock_);
    plat_->touch_line(&dom.started_, true);
    t.epoch = dom.started_.fetch_add(1, std::memory_order_seq_cst) + 1;  // [ep-2] pairs with [ep-1]
    atts = dom.attachments_;
    domain::pending p;
    p.epoch = t.epoch;
    dom.pending_.push_back(p);
  }
  if (config_.after_numbering) config_.after_numbering(dom.id(), t.epoch);
  auto my_pending = [&]() -> domain::pending& {
    PTR_ASSERT(!dom.pending_.empty() && dom.pending_.front().epoch <= t.epoch);
    return dom.pending_[t.epoch - dom.pending_.front().epoch];
  };

  bool full = true;
  std::vector<inv_descriptor> descs;
  for (const attachment& a : atts) {
    unit& u = *units_[a.unit];
    descs.clear();
    const bool unit_full = unit_flush(a, u.config(), range, space_last, descs);
    descs.push_back(inv_descriptor::wait());
    queue_lock& q = *qlocks_[a.unit];
    const driver_config& drv = u.config().driver;
    q.lock(drv);
    plat_->charge(cost_kind::inv_submit, descs.size());  // the descriptors are written, locked
    Result<std::uint64_t> r = submit_retrying(u, descs);
    if (r.ok() && sync && drv.kind == queue_driver::linux_vtd)
      (void)spin_locked(u, q, r.value() + descs.size() - 1, deadline_ns);  // else waited later
    q.unlock();
    if (!r.ok()) {
      {
        std::lock_guard<spinlock> g(dom.lock_);
        my_pending().failed = true;
      }
      update_epochs(dom);
      return r.status();
    }
    t.parts[t.count++] = {a.unit, r.value() + descs.size() - 1};
    full = full && unit_full;
  }
  t.full = full;
  {
    std::lock_guard<spinlock> g(dom.lock_);
    domain::pending& p = my_pending();
    p.full = full;
    p.count = t.count;
    for (unsigned i = 0; i < t.count; ++i)
      p.waits[i] = {t.parts[i].unit, t.parts[i].seq};
    p.submitted = true;
  }
  return t;
}

void system::update_epochs(domain& dom) {
  std::lock_guard<spinlock> g(dom.lock_);
  std::uint64_t full = dom.completed_full_.load(std::memory_order_relaxed);
  const std::uint64_t full_before = full;
  for (domain::pending& p : dom.pending_) {
    if (!p.submitted || p.done || p.failed) continue;
    bool all = true;
    for (unsigned i = 0; i < p.count && all; ++i)
      all = wait_done(p.waits[i].first, p.waits[i].second);
    if (!all) continue;
    p.done = true;
    if (p.full && p.epoch > full) full = p.epoch;
  }
  if (full != full_before) {
    plat_->touch_line(&dom.completed_full_, true);
    dom.completed_full_.store(full, std::memory_order_release);  // [ep-3]
  }
  std::uint64_t completed = 0;
  while (!dom.pending_.empty() && (dom.pending_.front().done || dom.pending_.front().failed)) {
    completed = dom.pending_.front().epoch;
    dom.pending_.pop_front();
  }
  if (completed != 0) {
    plat_->touch_line(&dom.completed_, true);
    dom.completed_.store(completed, std::memory_order_release);  // [ep-3] pairs with [ep-4]
  }
}

bool system::poll(const ticket& t) {
  PTR_ASSERT_MSG(t.dom != nullptr, "poll: empty ticket");
  bool all = true;
  for (unsigned i = 0; i < t.count; ++i) {
    const ticket::part& p = t.parts[i];
    bool done = units_[p.unit]->poll(p.seq);
    if (!done) {
      recover(p.unit);
      done = wait_done(p.unit, p.seq);
    }
    all = done && all;
  }
  update_epochs(*t.dom);
  return all;
}

Status system::wait(const ticket& t, std::uint64_t timeout_ns) {
  if (plat_->wait_until([&] { return poll(t); }, timeout_ns)) return {};
  return {errc::busy, "wait: invalidation epoch " + std::to_string(t.epoch) + " of domain " +
                          std::to_string(t.dom->id()) + " not complete after " +
                          std::to_string(timeout_ns) + " ns"};
}

std::uint64_t system::poll_domain(domain& dom) {
  for (const attachment& a : dom.attachments()) {
    units_[a.unit]->advance();
    recover(a.unit);
  }
  update_epochs(dom);
  return dom.flush_completed();
}

Status system::wait_epoch(domain& dom, std::uint64_t epoch, std::uint64_t timeout_ns) {
  if (plat_->wait_until([&] { return poll_domain(dom) >= epoch; }, timeout_ns)) return {};
  return {errc::busy, "wait_epoch: epoch " + std::to_string(epoch) + " of domain " +
                          std::to_string(dom.id()) + " not complete after " +
                          std::to_string(timeout_ns) + " ns"};
}

void system::advance() {
  for (unsigned u = 0; u < units_.size(); ++u) {
    units_[u]->advance();
    recover(u);
  }
  std::vector<domain*> doms;
  {
    std::lock_guard<std::mutex> g(setup_mutex_);
    for (auto& d : domains_)
      doms.push_back(d.get());
  }
  for (domain* d : doms)
    update_epochs(*d);
}

Status system::check_invariants() const {
  for (const auto& u : units_)
    PTR_TRY(u->check_invariants());
  std::lock_guard<std::mutex> g(setup_mutex_);
  for (const auto& d : domains_) {
    std::lock_guard<spinlock> dg(d->lock_);
    const std::uint64_t started = d->started_.load(std::memory_order_relaxed);
    const std::uint64_t completed = d->completed_.load(std::memory_order_relaxed);
    if (completed > started || d->completed_full_.load(std::memory_order_relaxed) > started)
      return {errc::invalid_argument,
              "domain " + std::to_string(d->id()) + ": completed beyond started"};
    std::uint64_t expect = completed + 1;
    for (const auto& p : d->pending_) {
      if (p.epoch != expect)
        return {errc::invalid_argument,
                "domain " + std::to_string(d->id()) + ": pending epochs not consecutive"};
      ++expect;
    }
    if (!d->pending_.empty() && d->pending_.back().epoch != started)
      return {errc::invalid_argument,
              "domain " + std::to_string(d->id()) + ": last pending is not the last started"};
  }
  return {};
}

}  // namespace ptreclaim::iommu
