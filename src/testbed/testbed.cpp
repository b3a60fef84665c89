#include "ptreclaim/testbed/testbed.hpp"

#include "ptreclaim/runtime/deterministic_executor.hpp"
#include "ptreclaim/runtime/threaded_executor.hpp"

namespace ptreclaim::testbed {

std::unique_ptr<runtime::executor> make_executor(executor_kind kind,
                                                 const runtime::run_config& rc) {
  if (kind == executor_kind::deterministic)
    return std::make_unique<runtime::deterministic_executor>(rc);
  return std::make_unique<runtime::threaded_executor>(rc);
}

// ---- observer --------------------------------------------------------------------------------

observer::observer(reclaim::safety_monitor& mon, runtime::executor& ex, mem::frame_pool& pool)
    : mon_(mon), ex_(ex), pool_(pool), lat_(ex.cpu_count()) {}

void observer::on_retire(reclaim::domain_number d, mem::frame_id f,
                         const reclaim::invalidation_range& need) {
  mon_.on_retire(d, f, need);
  if (extra_ != nullptr) extra_->on_retire(d, f, need);
}

void observer::on_free(mem::frame_id f, const char* path) {
  const std::uint64_t retired = pool_.meta(f).retired_ns.load(std::memory_order_relaxed);
  const std::uint64_t now = ex_.now_ns();
  // Frees run in CPU context; the slot is the freeing CPU's (one user at a time).
  lat_[ex_.current_cpu()].h.record(now >= retired ? now - retired : 0);
  mon_.on_free(f, path);
  if (extra_ != nullptr) extra_->on_free(f, path);
}

void observer::on_invariant_violation(const std::string& what) {
  mon_.on_invariant_violation(what);
  if (extra_ != nullptr) extra_->on_invariant_violation(what);
}

log_histogram observer::merged() const {
  log_histogram h;
  for (unsigned c = 0; c < lat_.size(); ++c)
    h.merge(lat_[c].h);
  return h;
}

// ---- tap -------------------------------------------------------------------------------------

// The tables' unlink observer and the units' descriptor observer when a config tap is given:
// the monitor hears each first (it is the checker), then the tap.
class testbed::tap final : public pt::unlink_observer, public iommu::inv_observer {
 public:
  tap(reclaim::safety_monitor& mon, pt::unlink_observer* unlink, iommu::inv_observer* inv)
      : mon_(mon), unlink_(unlink), inv_(inv) {}
  void on_unlinked(const pt::unlinked_table& t) noexcept override {
    mon_.on_unlinked(t);
    if (unlink_ != nullptr) unlink_->on_unlinked(t);
  }
  void on_processed(unsigned unit, std::uint64_t seq,
                    const iommu::inv_descriptor& d) noexcept override {
    mon_.on_processed(unit, seq, d);
    if (inv_ != nullptr) inv_->on_processed(unit, seq, d);
  }
  void on_processed_at(unsigned unit, std::uint64_t seq, const iommu::inv_descriptor& d,
                       std::uint64_t submit_ns, std::uint64_t done_ns) noexcept override {
    mon_.on_processed_at(unit, seq, d, submit_ns, done_ns);
    if (inv_ != nullptr) inv_->on_processed_at(unit, seq, d, submit_ns, done_ns);
  }

 private:
  reclaim::safety_monitor& mon_;
  pt::unlink_observer* unlink_;
  iommu::inv_observer* inv_;
};

// ---- testbed ---------------------------------------------------------------------------------

Result<std::unique_ptr<testbed>> testbed::create(const config& c) {
  if (c.units.empty()) return Status(errc::invalid_argument, "testbed: no IOMMU unit");
  if (c.units.size() > limits::max_iommus)
    return Status(errc::invalid_argument,
                  "testbed: more than " + std::to_string(limits::max_iommus) + " IOMMU units");
  std::unique_ptr<testbed> tb(new testbed());
  tb->ex_ = make_executor(c.executor, c.run);
  tb->pool_ = std::make_unique<mem::frame_pool>(c.pool, *tb->ex_);
  tb->sys_ = std::make_unique<iommu::system>(*tb->pool_, c.system, *tb->ex_);
  for (const iommu::unit_config& u : c.units)
    tb->sys_->add_unit(u);
  tb->backend_ = std::make_unique<reclaim::iommu_backend>(*tb->sys_);
  tb->monitor_ = std::make_unique<reclaim::safety_monitor>(*tb->sys_, *tb->backend_, c.max_pending);
  tb->observer_ = std::make_unique<observer>(*tb->monitor_, *tb->ex_, *tb->pool_);
  if (c.unlink_tap != nullptr || c.inv_tap != nullptr) {
    tb->tap_ = std::make_unique<tap>(*tb->monitor_, c.unlink_tap, c.inv_tap);
    if (c.inv_tap != nullptr) tb->sys_->set_inv_observer(tb->tap_.get());
  }
  return tb;
}

testbed::~testbed() {
  // Queued tasklets, timers and work may name the policy: dropped before it goes. Tables
  // report unlinks to the monitor, so they go before it; the executor goes before the pool
  // whose platform it is, after everything that charges it.
  if (ex_) ex_->discard_pending();
  policy_.reset();
  domains_.clear();
  observer_.reset();
  monitor_.reset();  // unregisters the descriptor observer (the monitor or the tap)
  backend_.reset();
  sys_.reset();
  tap_.reset();
  ex_.reset();
  pool_.reset();
}

Result<domain*> testbed::add_domain(const domain_spec& spec) {
  pt::domain_config dc;
  dc.domain = spec.id;
  dc.mode = spec.mode;
  dc.coalesce = spec.coalesce;
  dc.leaf_levels = spec.leaf_levels & pt::describe(spec.format).leaf_levels;
  dc.on_unlink = tap_ != nullptr ? static_cast<pt::unlink_observer*>(tap_.get()) : monitor_.get();
  auto t = pt::make_table(spec.format, dc, *pool_);
  if (!t.ok()) return t.status();
  auto d = std::make_unique<domain>();
  d->id = spec.id;
  d->table = std::move(*t);
  iommu::domain_desc dd;
  dd.id = spec.id;
  dd.format = &d->table->format();
  dd.root = d->table->root();
  dd.leaf_levels = dc.leaf_levels;
  auto m = sys_->create_domain(dd);
  if (!m.ok()) return m.status();
  d->dom = *m;
  domains_.push_back(std::move(d));
  return domains_.back().get();
}

Status testbed::install_policy(reclaim::policy_kind kind, const reclaim::reclaim_config& rc) {
  PTR_ASSERT_MSG(policy_ == nullptr, "testbed: install_policy twice");
  reclaim::reclaim_env env{*ex_, *monitor_, *pool_, observer_.get(), monitor_.get()};
  auto r = reclaim::make_reclaimer(kind, env, rc);
  if (!r.ok()) return r.status();
  policy_ = std::move(*r);
  return {};
}

}  // namespace ptreclaim::testbed
