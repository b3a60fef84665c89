// Recovery from queue errors (ITE, IQE): resubmit what a unit aborted, and follow each aborted
// wait to the wait that replaced it.
#include "system_recovery.hpp"

#include <mutex>

namespace ptreclaim::iommu {

void system::recover(unsigned u) {
  recovery_state& r = *recovery_[u];
  unit& x = *units_[u];
  // Lock-free checks first: without faults this costs two loads and no virtual time.
  if (!x.has_aborted_groups() && !r.any_retry.load(std::memory_order_acquire)) return;
  std::vector<aborted_group> todo;
  {
    std::lock_guard<spinlock> g(r.mu);
    todo = std::move(r.retry);
    r.retry.clear();
    r.any_retry.store(false, std::memory_order_release);
  }
  for (aborted_group& a : x.take_aborted())
    todo.push_back(std::move(a));
  std::size_t i = 0;
  for (; i < todo.size(); ++i) {
    const aborted_group& a = todo[i];
    plat_->charge(cost_kind::inv_submit);  // the driver writes the group into the queue again
    Result<std::uint64_t> first = x.resubmit(a.descs, a.attempt + 1);
    if (!first.ok()) break;  // queue full: the next look tries again (a poll never blocks)
    std::lock_guard<spinlock> g(r.mu);
    r.next[a.wait_seq] = first.value() + a.descs.size() - 1;
    r.any_next.store(true, std::memory_order_release);
    resubmissions_.fetch_add(1, std::memory_order_relaxed);
  }
  if (i < todo.size()) {
    std::lock_guard<spinlock> g(r.mu);
    for (std::size_t k = i; k < todo.size(); ++k)
      r.retry.push_back(std::move(todo[k]));
    r.any_retry.store(true, std::memory_order_release);
  }
}

bool system::wait_done(unsigned u, std::uint64_t seq) const {
  const unit& x = *units_[u];
  const recovery_state& r = *recovery_[u];
  for (;;) {
    if (x.done(seq)) return true;
    if (!r.any_next.load(std::memory_order_acquire) || !x.aborted(seq)) return false;
    std::lock_guard<spinlock> g(r.mu);
    const auto it = r.next.find(seq);
    if (it == r.next.end()) return false;  // aborted, not resubmitted yet
    seq = it->second;
  }
}

}  // namespace ptreclaim::iommu
