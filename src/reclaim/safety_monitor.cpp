#include "ptreclaim/reclaim/safety_monitor.hpp"

#include <algorithm>
#include <mutex>

namespace ptreclaim::reclaim {

namespace {
// Logs longer than this are trimmed of what no unfreed frame can need any more.
constexpr std::size_t trim_at = 4096;

std::string hex(std::uint64_t v) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  do {
    out.insert(out.begin(), digits[v & 15]);
    v >>= 4;
  } while (v != 0);
  return "0x" + out;
}
}  // namespace

safety_monitor::safety_monitor(iommu::system& sys, invalidation_backend& inner,
                               std::uint64_t max_pending, std::size_t violations_kept)
    : sys_(sys), inner_(inner), max_pending_(max_pending), kept_(violations_kept) {
  sys_.set_inv_observer(this);
}

safety_monitor::~safety_monitor() {
  sys_.set_inv_observer(nullptr);
}

void safety_monitor::violation(std::uint64_t report::*counter, std::string what) {
  ++(rep_.*counter);
  if (rep_.first.size() < kept_) rep_.first.push_back(std::move(what));
}

Result<epoch_t> safety_monitor::invalidate(domain_number d, const invalidation_range& range) {
  Result<epoch_t> e = inner_.invalidate(d, range);
  if (e.ok()) {
    std::lock_guard g(mu_);
    ++rep_.invalidations;
  }
  return e;
}

Result<epoch_t> safety_monitor::invalidate_sync(domain_number d, const invalidation_range& range,
                                                std::uint64_t timeout_ns) {
  Result<epoch_t> e = inner_.invalidate_sync(d, range, timeout_ns);
  // A timed-out flush was submitted all the same (the invalidate() path counts it too).
  if (e.ok() || e.status().code() == errc::busy) {
    std::lock_guard g(mu_);
    ++rep_.invalidations;
  }
  return e;
}

void safety_monitor::on_unlinked(const pt::unlinked_table& t) noexcept {
  unlinked_frame r;
  r.unlinked = true;
  r.domain = t.domain;
  r.first = t.first;
  r.last = t.last;
  snapshot_units(t.domain, r.units, r.need);  // [mon-1]
  std::lock_guard g(mu_);
  ++rep_.unlinked;
  keep_tails(r.units, r.need);
  auto [it, fresh] = frames_.try_emplace(t.frame.value, r);
  if (!fresh) {
    // The ledger refuses to unlink a frame that was never freed, so this is a checker finding
    // about the page tables themselves.
    forget_tails(it->second.units, it->second.need);
    violation(&report::s2_violations, "S2: frame " + std::to_string(t.frame.value) +
                                          " unlinked twice without a free between");
    it->second = r;
  }
}

void safety_monitor::on_processed(unsigned unit, std::uint64_t seq,
                                  const iommu::inv_descriptor& d) noexcept {
  logged x;
  x.seq = seq;
  x.type = d.type;
  x.did = d.did;
  x.ih = d.ih;
  x.pasid = d.pasid;
  if (d.type == iommu::inv_type::page) {
    x.first = d.first();
    x.last = d.last();
  }
  std::lock_guard g(mu_);
  unit_log& log = logs_[unit];
  PTR_DASSERT(log.entries.empty() || log.entries.back().seq < seq);
  log.entries.push_back(x);
  if (log.entries.size() > trim_at) trim(log);
}

void safety_monitor::trim(unit_log& log) {
  const std::uint64_t keep_from = log.tails.empty() ? ~std::uint64_t{0} : log.tails.begin()->first;
  while (!log.entries.empty() && log.entries.front().seq < keep_from)
    log.entries.pop_front();
}

void safety_monitor::snapshot_units(domain_number d, unsigned& units, unit_needs& need) const {
  units = 0;
  const iommu::domain* dom = sys_.find_domain(d);
  if (dom == nullptr) return;
  // [mon-1] The unlink's (unmap's) stores are before this fence, so the tails read below are at
  // least those of every descriptor pushed before they were visible; a descriptor pushed after
  // the reads has a sequence >= the tail read ([iu-8], the acquire of the unit's tail, pairs
  // with its release [iu-7]).
  std::atomic_thread_fence(std::memory_order_seq_cst);
  for (unsigned u = 0; u < sys_.unit_count(); ++u) {
    const std::uint32_t did1 = dom->attached_did_plus1(u);
    if (did1 == 0) continue;
    need[units++] = {static_cast<std::uint8_t>(u), static_cast<iommu::hw_domain_id>(did1 - 1),
                     sys_.get_unit(u).submitted_peek(), dom->attached_pasids(u)};
  }
}

void safety_monitor::keep_tails(unsigned units, const unit_needs& need) {
  for (unsigned i = 0; i < units; ++i)
    ++logs_[need[i].unit].tails[need[i].tail];
}

void safety_monitor::forget_tails(unsigned units, const unit_needs& need) {
  for (unsigned i = 0; i < units; ++i) {
    auto& tails = logs_[need[i].unit].tails;
    auto t = tails.find(need[i].tail);
    PTR_DASSERT(t != tails.end());
    if (t != tails.end() && --t->second == 0) tails.erase(t);
  }
}

safety_monitor::coverage safety_monitor::scan(const unit_need& n, pt::iova_t first, pt::iova_t last,
                                              bool leaf_counts) const {
  const unit_log& log = logs_[n.unit];
  coverage c;
  c.pasids_left = n.pasids;
  for (auto it = std::lower_bound(log.entries.begin(), log.entries.end(), n.tail,
                                  [](const logged&e, std::uint64_t seq) { return e.seq < seq; });
       it != log.entries.end() && !c.waited; ++it) {
    ++c.after;
    const logged& e = *it;
    c.covered = c.pasids_left == 0;
    switch (e.type) {
      case iommu::inv_type::global:
        c.pasids_left = 0;
        break;
      case iommu::inv_type::domain:
        if (e.did == n.did) c.pasids_left = 0;
        break;
      case iommu::inv_type::page:
        if (e.did == n.did && (leaf_counts || !e.ih) && e.first <= first && last <= e.last)
          c.pasids_left &= ~(std::uint64_t{1} << e.pasid);
        break;
      case iommu::inv_type::wait:
        c.waited = c.covered;
        break;
      case iommu::inv_type::devtlb:
      case iommu::inv_type::count_:
        break;
    }
  }
  c.covered = c.pasids_left == 0;
  return c;
}

namespace {

// " (PASID 2 3 not covered)" when PASIDs are involved, else nothing.
std::string pasids_missing(std::uint64_t left) {
  if ((left & ~std::uint64_t{1}) == 0) return {};
  std::string out = " (PASID";
  for (unsigned p = 0; p < 64; ++p)
    if ((left >> p & 1) != 0) out += " " + std::to_string(p);
  return out + " not covered)";
}

}  // namespace

bool safety_monitor::covered_everywhere(const unlinked_frame& r, std::string* why) const {
  for (unsigned i = 0; i < r.units; ++i) {
    const unit_need& n = r.need[i];
    const coverage c = scan(n, r.first, r.last, /*leaf_counts=*/false);
    if (c.waited) continue;
    if (why != nullptr) {
      *why = "on IOMMU " + std::to_string(n.unit) + " (did " + std::to_string(n.did) + "), " +
             (c.covered ? "a covering invalidation was processed but no wait behind it completed"
                        : "no non-leaf invalidation covering [" + hex(r.first) + ", " +
                              hex(r.last) + "] submitted after the unlink was processed" +
                              pasids_missing(c.pasids_left)) +
             " (" + std::to_string(c.after) + " descriptors processed there since the unlink)";
    }
    return false;
  }
  return true;
}

void safety_monitor::on_retire(domain_number d, mem::frame_id f,
                               const invalidation_range& /*need*/) {
  std::lock_guard g(mu_);
  ++rep_.retired;
  ++rep_.pending;
  if (rep_.pending > rep_.peak_pending) rep_.peak_pending = rep_.pending;
  if (rep_.pending > max_pending_) {
    violation(&report::s5_violations, "S5: " + std::to_string(rep_.pending) +
                                          " frames pending, above the bound of " +
                                          std::to_string(max_pending_));
  }
  auto it = frames_.find(f.value);
  if (it == frames_.end()) {
    violation(&report::s2_violations, "S2: frame " + std::to_string(f.value) + " of domain " +
                                          std::to_string(d) +
                                          " retired, but the page tables never unlinked it");
    // Track it anyway, with nothing known to cover it: its free is then an S3 finding too.
    unlinked_frame r;
    r.domain = d;
    r.retired = true;
    frames_.emplace(f.value, r);
    return;
  }
  if (it->second.retired) {
    violation(&report::s2_violations,
              "S2: frame " + std::to_string(f.value) + " retired twice without a free between");
  }
  if (it->second.domain != d) {
    violation(&report::s2_violations,
              "S2: frame " + std::to_string(f.value) + " retired for domain " + std::to_string(d) +
                  " but unlinked from domain " + std::to_string(it->second.domain));
  }
  it->second.retired = true;
}

void safety_monitor::on_free(mem::frame_id f, const char* path) {
  std::lock_guard g(mu_);
  auto it = frames_.find(f.value);
  if (it == frames_.end() || !it->second.retired) {
    violation(&report::s2_violations, "S2: frame " + std::to_string(f.value) + " freed by " + path +
                                          " but not retired (double free?)");
    return;
  }
  const unlinked_frame r = it->second;
  frames_.erase(it);
  forget_tails(r.units, r.need);
  ++rep_.freed;
  --rep_.pending;
  std::string why = "the page tables never reported its unlink";
  if (r.unlinked && covered_everywhere(r, keeping() ? &why : nullptr)) return;
  // Past the kept ones a violation is only counted: its text is not built.
  violation(&report::s3_violations, keeping()
                                        ? "S3: frame " + std::to_string(f.value) + " of domain " +
                                              std::to_string(r.domain) + " freed by " + path +
                                              " before a covering invalidation completed: " + why
                                        : std::string());
}

void safety_monitor::on_invariant_violation(const std::string& what) {
  std::lock_guard g(mu_);
  violation(&report::s4_violations, "S4: " + what);
}

safety_monitor::report safety_monitor::result() const {
  std::lock_guard g(mu_);
  return rep_;
}

std::uint64_t safety_monitor::progress() const {
  std::lock_guard g(mu_);
  return rep_.unlinked + rep_.retired + rep_.freed;
}

std::uint64_t safety_monitor::pending() const {
  std::lock_guard g(mu_);
  return rep_.pending;
}

// ---- lazy DMA (S6) ---------------------------------------------------------------------------

// S3's rule with two differences: a leaf-only (IH=1) page-selective invalidation drops the
// IOTLB entries that could still translate the IOVA, so it counts; what must be covered is the
// IOVA's own range.
std::string safety_monitor::iova_uncovered(const unmapped_iova& r) const {
  for (unsigned i = 0; i < r.units; ++i) {
    const unit_need& n = r.need[i];
    const coverage c = scan(n, r.first, r.last, /*leaf_counts=*/true);
    if (c.waited) continue;
    return "on IOMMU " + std::to_string(n.unit) + " (did " + std::to_string(n.did) + "), " +
           (c.covered ? "an invalidation covering it was processed but no wait behind it completed"
                      : "no invalidation covering [" + hex(r.first) + ", " + hex(r.last) +
                            "] submitted after the unmap was processed");
  }
  return {};
}

void safety_monitor::on_iova_unmapped(domain_number d, const iova_range& r) noexcept {
  if (r.empty()) return;
  unmapped_iova x;
  x.domain = d;
  x.first = r.first;
  x.last = r.last;
  snapshot_units(d, x.units, x.need);
  std::lock_guard g(mu_);
  ++rep_.iovas_unmapped;
  ++rep_.deferred_iovas;
  rep_.peak_deferred_iovas = std::max(rep_.peak_deferred_iovas, rep_.deferred_iovas);
  keep_tails(x.units, x.need);
  auto [it, fresh] = iovas_.try_emplace(iova_key(d, r.first), x);
  if (!fresh) {
    // Allocated again (on_iova_allocated erased it) before this unmap: the caller's own bug.
    forget_tails(it->second.units, it->second.need);
    violation(&report::s6_violations, "S6: IOVA " + hex(r.first) + " of domain " +
                                          std::to_string(d) +
                                          " unmapped twice without an allocation between");
    it->second = x;
  }
}

void safety_monitor::iova_free(domain_number d, const iova_range& r) noexcept {
  if (r.empty()) return;
  {
    std::lock_guard g(mu_);
    auto it = iovas_.find(iova_key(d, r.first));
    if (it == iovas_.end() || it->second.returned) {
      violation(&report::s6_violations, "S6: IOVA " + hex(r.first) + " of domain " +
                                            std::to_string(d) +
                                            " given back but not unmapped (given back twice?)");
    } else {
      ++rep_.iovas_returned;
      --rep_.deferred_iovas;
      if (iova_uncovered(it->second).empty()) {
        forget_tails(it->second.units, it->second.need);
        iovas_.erase(it);
      } else {
        ++rep_.iovas_returned_early;  // legal until it is allocated again
        it->second.returned = true;
      }
    }
  }
  if (iova_inner_ != nullptr) iova_inner_->iova_free(d, r);
}

void safety_monitor::on_iova_allocated(domain_number d, const iova_range& r) noexcept {
  if (r.empty()) return;
  std::lock_guard g(mu_);
  auto it = iovas_.find(iova_key(d, r.first));
  if (it == iovas_.end()) return;  // never unmapped, or given back after a covering flush
  const unmapped_iova x = it->second;
  iovas_.erase(it);
  forget_tails(x.units, x.need);
  if (!x.returned) {
    violation(&report::s6_violations, "S6: IOVA " + hex(r.first) + " of domain " +
                                          std::to_string(d) +
                                          " allocated again while the policy still held it");
    return;
  }
  const std::string why = iova_uncovered(x);
  if (why.empty()) return;
  violation(&report::s6_violations, "S6: IOVA [" + hex(x.first) + ", " + hex(x.last) +
                                        "] of domain " + std::to_string(d) +
                                        " allocated again before a translation of its previous "
                                        "mapping was surely gone: " +
                                        why);
}

std::uint64_t safety_monitor::deferred_iovas() const {
  std::lock_guard g(mu_);
  return rep_.deferred_iovas;
}

}  // namespace ptreclaim::reclaim
