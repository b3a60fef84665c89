// Device actors (DMA through the IOMMU model) and the pending-frames sampler.
//
// A device is attached behind one unit with its domain's did (= the domain number). Every
// domain also gets a context entry on each unit of its group that no real device of it sits
// behind (an idle function that does no DMA), so the domain's flush set is every unit its
// group names: an invalidation that skips a unit is then a bug the walks can expose.
//
// A device step performs translations_per_step whole translations (system::translate: IOTLB,
// then PSC, then a walk whose every PTE read the model checks against the ledger: S1), then
// sleeps step_interval_ns. Where it aims (scenario device_group::target):
//   window    a page of its window chosen by the pattern (random / sequential / hot-set);
//   live      a page of a range its domain mapped recently (a ring of the last 64 maps);
//   replaced  a page of a range whose tables were released recently (the last 64 gathers);
//   unmapped  (dma-storm) a buffer whose unmap returned recently (the last 64): a device that
//             keeps using a buffer after its unmap, which only a stale IOTLB entry lets through.
// For live/replaced the pattern picks the range (random: any of the ring, sequential: walk the
// newest range page by page, hot-set: the newest few) and an empty ring falls back to window.
#include <algorithm>

#include "sim/engine_internal.hpp"
#include "sim/recorder.hpp"

namespace ptreclaim::sim::detail {

using runtime::step_result;

namespace {

// sva-kernel: PASID p (1 .. pasids) is bound to SVA device (p - 1) mod devices; the devices
// have device TLBs when ats is set. Device ids are the devices' ordinals here.
void bind_sva(iommu::device_config& dc, iommu::device_id id, unsigned devices,
              const sva_kernel_params& p) {
  for (unsigned pasid = 1; pasid <= p.pasids; ++pasid)
    if ((pasid - 1) % devices == id) dc.pasids.push_back(pasid);
  dc.ats = p.ats;
  dc.devtlb = {p.devtlb_entries, 8, iommu::replacement::lru, 3};
}

}  // namespace

Status machine::build_devices(prng& rng) {
  // Domains of each group, in order.
  std::vector<std::vector<domain_slot*>> by_group(sc.domains.size());
  for (auto& d : domains)
    by_group[d->group].push_back(d.get());

  iommu::device_id next_id = 0;
  unsigned sva_devices = 0;
  for (const device_group& grp : sc.devices)
    sva_devices += grp.count;
  std::vector<std::vector<bool>> attached(domains.size(), std::vector<bool>(sc.iommu.count, false));
  for (const device_group& grp : sc.devices) {
    const auto& doms = by_group[grp.domain_group];
    const std::vector<unsigned> units =
        grp.iommus.empty() ? sc.group_iommus(grp.domain_group) : grp.iommus;
    for (unsigned k = 0; k < grp.count; ++k) {
      auto dev = std::make_unique<device_state>();
      dev->id = next_id++;
      dev->dom = doms[k % doms.size()];
      dev->grp = &grp;
      // Spread a domain's devices over the units: device k of the group sits behind unit
      // (k + k / domains) mod units, so with as many devices as domains x units every domain
      // has a device behind every unit.
      const unsigned u = units[(k + k / static_cast<unsigned>(doms.size())) % units.size()];
      const std::uint64_t bytes = grp.window_bytes != 0 ? grp.window_bytes : wl_->region_bytes();
      iommu::device_config dc;
      dc.id = dev->id;
      dc.windows = {{0, std::max<std::uint64_t>(1, bytes / page_bytes) * page_bytes}};
      switch (grp.pattern) {
        case access_pattern::random:
          dc.pattern = iommu::access_pattern::uniform;
          break;
        case access_pattern::sequential:
          dc.pattern = iommu::access_pattern::sequential;
          break;
        case access_pattern::hot_set:
          dc.pattern = iommu::access_pattern::hot_set;
          break;
      }
      dc.stride = page_bytes;
      dc.hot_pages = static_cast<unsigned>(std::min<std::uint64_t>(grp.hot_set_pages, 1u << 30));
      dc.hot_percent = 90;
      dc.seed = rng.fork_seed(0x2000 + dev->id);
      if (grp.target != access_target::window) dc.source = dev.get();
      if (sc.kind == workload_kind::sva_kernel) bind_sva(dc, dev->id, sva_devices, sc.sva_kernel);
      dev->dev = std::make_unique<iommu::device>(*sys_, dc);
      PTR_TRY(sys_->attach(dev->id, u, *dev->dom->dom, dev->dom->id, dc.pasids, dev->dev->ats()));
      attached[dev->dom->id - 1][u] = true;
      device_state* raw = dev.get();
      const runtime::actor_id actor = ex_->add_actor(
          {"device" + std::to_string(dev->id), [this, raw] { return device_step(*raw); }, true});
      if (recorder_) recorder_->name_device(actor, dev->id, dev->dom->id, u);
      ++actors_total_;
      devices_.push_back(std::move(dev));
    }
  }
  // Idle functions: every domain on every unit of its group.
  for (auto& d : domains) {
    for (unsigned u : sc.group_iommus(d->group)) {
      if (attached[d->id - 1][u]) continue;
      if (next_id >= limits::max_devices) {
        notes_.push_back(
            "not every domain could be attached to every unit of its group (device ids exhausted)");
        return {};
      }
      PTR_TRY(sys_->attach(next_id++, u, *d->dom, d->id));
      attached[d->id - 1][u] = true;
    }
  }
  return {};
}

step_result machine::device_step(device_state& dev) {
  if (stop_actors_.load(std::memory_order_acquire) && !device_keeps_running()) {  // [en-4] ~ [en-3]
    if (!dev.acked) {
      dev.acked = true;
      actors_stopped_.fetch_add(1, std::memory_order_release);  // [en-5] pairs with [en-6]
    }
    return step_result::finished();
  }
  // Whole translations (not step-wise): a refused request (every walk slot busy, threaded
  // runs only) is retried by the device's next step.
  for (unsigned i = 0; i < dev.grp->translations_per_step; ++i) {
    const std::uint64_t start = iovas_ ? ex_->now_ns() : 0;
    if (dev.dev->step() && iovas_ && dev.dev->last().result == iommu::outcome::ok)
      iovas_->check(dev.dev->last_iova(), start, ex_->now_ns());  // exposure
  }
  return step_result::sleep_for(dev.grp->step_interval_ns);
}

// Target live/replaced: the pattern picks a range of the ring (random: any, sequential: walk the
// newest range page by page, hot-set: the newest few). An empty ring: the window.
bool machine::device_state::next(prng& rng, iommu::iova_t& iova) {
  const range_ring& ring = grp->target == access_target::live       ? dom->live
                           : grp->target == access_target::unmapped ? dom->unmapped
                                                                    : dom->replaced;
  const unsigned n = ring.filled();
  if (n == 0) return false;
  std::uint64_t first = 0, bytes = 0;
  unsigned entry = 0;
  switch (grp->pattern) {
    case access_pattern::random:
      entry = static_cast<unsigned>(rng.below(n));
      break;
    case access_pattern::hot_set:
      entry = static_cast<unsigned>(rng.below(std::min(n, 4u)));
      break;
    case access_pattern::sequential:
      entry = 0;
      break;
  }
  if (!ring.get(entry, first, bytes)) return false;
  const std::uint64_t pages = std::max<std::uint64_t>(1, bytes / page_bytes);
  if (grp->pattern == access_pattern::sequential) {
    if (first != seq_entry_first) {
      seq_entry_first = first;
      seq_page = 0;
    }
    iova = first + (seq_page++ % pages) * page_bytes;
    return true;
  }
  iova = first + rng.below(pages) * page_bytes;
  return true;
}

// The invalidation engine of one unit (deterministic runs): completes descriptors as virtual
// time passes. While work is queued it ticks at a quarter of the shortest descriptor latency;
// idle, at the shortest latency (a descriptor submitted meanwhile cannot finish sooner).
// It never stops: teardown still waits for invalidations.
step_result machine::engine_step(unsigned u) {
  iommu::unit& unit = sys_->get_unit(u);
  unit.advance();
  const iommu::latency_config& l = unit.config().latency;
  const std::uint64_t shortest = std::max<std::uint64_t>(
      4, std::min({l.inv_page_ns, l.inv_domain_ns, l.inv_global_ns, l.inv_wait_ns}));
  if (unit.processed() < unit.submitted())
    return step_result::sleep_for(std::max<std::uint64_t>(1, shortest / 4));
  return step_result::sleep_for(shortest);
}

step_result machine::sampler_step() {
  if (stop_actors_.load(std::memory_order_acquire)) {         // [en-4] pairs with [en-3]
    actors_stopped_.fetch_add(1, std::memory_order_release);  // [en-5] pairs with [en-6]
    return step_result::finished();
  }
  const std::uint64_t now = ex_->now_ns();
  constexpr std::size_t max_samples = 1u << 16;
  if (series_.size() >= max_samples) {
    // Keep every other sample and halve the rate: the series stays bounded on long runs.
    std::size_t j = 0;
    for (std::size_t i = 0; i < series_.size(); i += 2)
      series_[j++] = series_[i];
    series_.resize(j);
    sample_every_ns_ *= 2;
  }
  series_.push_back({now - std::min(now, run_start_ns_), rec_->pending()});
  return step_result::sleep_for(sample_every_ns_);
}

}  // namespace ptreclaim::sim::detail
