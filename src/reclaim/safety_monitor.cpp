#include "ptreclaim/reclaim/safety_monitor.hpp"

#include <thread>

namespace ptreclaim::reclaim {

safety_monitor::safety_monitor(invalidation_backend& inner, std::uint64_t max_pending,
                               std::size_t violations_kept)
    : inner_(inner), max_pending_(max_pending), kept_(violations_kept) {}

void safety_monitor::violation(std::uint64_t report::*counter, std::string what) {
  ++(rep_.*counter);
  if (rep_.first.size() < kept_) rep_.first.push_back(std::move(what));
}

Result<epoch_t> safety_monitor::invalidate(domain_number d, const invalidation_range& range) {
  // The number is assigned inside inner_.invalidate(); recording it under the mutex afterwards
  // is fine because a frame retired meanwhile records a `started_before` that is at most this
  // number, and only numbers above it count for that frame.
  submitting_.fetch_add(1, std::memory_order_acq_rel);
  Result<epoch_t> e = inner_.invalidate(d, range);
  if (e.ok()) {
    std::lock_guard g(mu_);
    invs_[d][*e] = {range};
    ++rep_.invalidations;
  }
  submitting_.fetch_sub(1, std::memory_order_acq_rel);
  return e;
}

void safety_monitor::on_retire(domain_number d, mem::frame_id f, const invalidation_range& need) {
  // Read the domain's newest submitted number from the backend itself: an invalidation
  // submitted by another CPU may not be recorded here yet.
  const epoch_t before = inner_.stamp(d);
  std::lock_guard g(mu_);
  auto [it, fresh] = retired_.try_emplace(f.value, retired_frame{d, need, before});
  if (!fresh) {
    violation(&report::s2_violations,
              "S2: frame " + std::to_string(f.value) + " retired twice without a free between");
    it->second = retired_frame{d, need, before};
  }
  ++rep_.retired;
  ++rep_.pending;
  if (rep_.pending > rep_.peak_pending) rep_.peak_pending = rep_.pending;
  if (rep_.pending > max_pending_) {
    violation(&report::s5_violations, "S5: " + std::to_string(rep_.pending) +
                                          " frames pending, above the bound of " +
                                          std::to_string(max_pending_));
  }
}

std::vector<epoch_t> safety_monitor::covering(const retired_frame& r) const {
  std::vector<epoch_t> out;
  if (auto d = invs_.find(r.domain); d != invs_.end()) {
    for (auto i = d->second.upper_bound(r.started_before); i != d->second.end(); ++i) {
      const invalidation_range& x = i->second.range;
      if (x.nonleaf && x.first <= r.need.first && r.need.last <= x.last) out.push_back(i->first);
    }
  }
  return out;
}

void safety_monitor::on_free(mem::frame_id f, const char* path) {
  std::unique_lock g(mu_);
  auto it = retired_.find(f.value);
  if (it == retired_.end()) {
    violation(&report::s2_violations, "S2: frame " + std::to_string(f.value) + " freed by " + path +
                                          " but not retired (double free?)");
    return;
  }
  const retired_frame r = it->second;
  retired_.erase(it);
  ++rep_.freed;
  --rep_.pending;
  // Candidate invalidations: numbered after the retire, non-leaf, covering the range.
  std::vector<epoch_t> candidates = covering(r);
  g.unlock();
  // Completion is asked of the backend outside the mutex (it polls the hardware).
  epoch_t done = inner_.completed(r.domain);
  for (epoch_t e : candidates)
    if (e <= done) return;
  // Another CPU may have had its invalidation numbered and completed but not yet recorded
  // here (threaded runs): wait for submissions in progress to be recorded, then look again.
  for (unsigned spins = 0; submitting_.load(std::memory_order_acquire) != 0 && spins < 1000000;
       ++spins)
    std::this_thread::yield();
  g.lock();
  candidates = covering(r);
  g.unlock();
  done = inner_.completed(r.domain);
  for (epoch_t e : candidates)
    if (e <= done) return;
  g.lock();
  violation(&report::s3_violations,
            "S3: frame " + std::to_string(f.value) + " of domain " + std::to_string(r.domain) +
                " freed by " + path + " before a covering invalidation completed (" +
                std::to_string(candidates.size()) + " covering submitted after its retire, " +
                "domain completed up to epoch " + std::to_string(done) + ")");
}

void safety_monitor::on_invariant_violation(const std::string& what) {
  std::lock_guard g(mu_);
  violation(&report::s4_violations, "S4: " + what);
}

safety_monitor::report safety_monitor::result() const {
  std::lock_guard g(mu_);
  return rep_;
}

std::uint64_t safety_monitor::pending() const {
  std::lock_guard g(mu_);
  return rep_.pending;
}

}  // namespace ptreclaim::reclaim
