// Scenario names, derived views, cross-field validation and the built-in registry.
#include "ptreclaim/scenario/scenario.hpp"

#include <algorithm>
#include <string>

#include "scenario/faults.hpp"

namespace ptreclaim::sim {

namespace detail {
// Defined in the build-generated scenario_builtins.cpp (src/scenario/embed_scenarios.cmake).
const std::vector<builtin_scenario>& generated_builtins();
}  // namespace detail

std::string_view workload_kind_name(workload_kind k) noexcept {
  switch (k) {
    case workload_kind::superpage_churn:
      return "superpage-churn";
    case workload_kind::sva_kernel:
      return "sva-kernel";
    case workload_kind::dma_storm:
      return "dma-storm";
  }
  return "?";
}

std::string_view access_pattern_name(access_pattern p) noexcept {
  switch (p) {
    case access_pattern::random:
      return "random";
    case access_pattern::sequential:
      return "sequential";
    case access_pattern::hot_set:
      return "hot-set";
  }
  return "?";
}

std::string_view access_target_name(access_target t) noexcept {
  switch (t) {
    case access_target::window:
      return "window";
    case access_target::live:
      return "live";
    case access_target::replaced:
      return "replaced";
    case access_target::unmapped:
      return "unmapped";
  }
  return "?";
}

std::string_view caller_flush_name(caller_flush f) noexcept {
  switch (f) {
    case caller_flush::each_op:
      return "each-op";
    case caller_flush::batched:
      return "batched";
    case caller_flush::none:
      return "none";
    case caller_flush::lazy:
      return "lazy";
  }
  return "?";
}

std::string_view caller_range_name(caller_range r) noexcept {
  switch (r) {
    case caller_range::gather:
      return "gather";
    case caller_range::request:
      return "request";
    case caller_range::xen:
      return "xen";
  }
  return "?";
}

std::string_view softirq_point_name(softirq_point p) noexcept {
  switch (p) {
    case softirq_point::none:
      return "none";
    case softirq_point::before_caller_flush:
      return "before-caller-flush";
    case softirq_point::after_caller_flush:
      return "after-caller-flush";
  }
  return "?";
}

unsigned scenario::domain_count() const noexcept {
  unsigned n = 0;
  for (const auto& d : domains)
    n += d.count;
  return n;
}

unsigned scenario::device_count() const noexcept {
  unsigned n = 0;
  for (const auto& d : devices)
    n += d.count;
  return n;
}

std::vector<unsigned> scenario::group_iommus(unsigned group) const {
  PTR_ASSERT_MSG(group < domains.size(), "group_iommus: no such domain group");
  if (!domains[group].iommus.empty()) return domains[group].iommus;
  std::vector<unsigned> all(iommu.count);
  for (unsigned i = 0; i < iommu.count; ++i)
    all[i] = i;
  return all;
}

namespace {

Status bad(const std::string& path, const std::string& reason) {
  return Status(errc::invalid_argument, path + ": " + reason);
}

std::string idx(std::string_view what, std::size_t i) {
  return std::string(what) + "[" + std::to_string(i) + "]";
}

bool is_pow2(std::uint64_t v) {
  return v != 0 && (v & (v - 1)) == 0;
}

Status validate_cache(const iommu::cache_config& c, const std::string& prefix) {
  if (c.entries == 0 || c.ways == 0 || c.ways > c.entries || c.entries % c.ways != 0) {
    return bad(prefix + "_ways", prefix + "_entries (" + std::to_string(c.entries) +
                                     ") must be a non-zero multiple of " + prefix + "_ways (" +
                                     std::to_string(c.ways) + ")");
  }
  return {};
}

Status validate_workload(const scenario& s) {
  switch (s.kind) {
    case workload_kind::superpage_churn: {
      const auto& p = s.superpage_churn;
      if (p.region_bytes % (2u << 20) != 0) {
        return bad("superpage-churn.region_bytes", "must be a multiple of 2 MiB");
      }
      const double sum = p.superpage_probability + p.gigabyte_probability + p.shatter_probability +
                         p.unmap_probability;
      if (sum > 1.0 + 1e-9) {
        return bad("superpage-churn.unmap_probability",
                   "superpage + gigabyte + shatter + unmap probabilities sum to " +
                       std::to_string(sum) + ", more than 1");
      }
      if (p.gigabyte_probability > 0 && p.region_bytes < (1ull << 30)) {
        return bad("superpage-churn.gigabyte_probability",
                   "1 GiB fills need region_bytes >= 1 GiB");
      }
      break;
    }
    case workload_kind::sva_kernel: {
      const auto& p = s.sva_kernel;
      if (s.domain_count() != 1) {
        return bad("domains",
                   "sva-kernel models one shared kernel address space: exactly 1 domain");
      }
      if (p.vmalloc_min_bytes % 4096 != 0 || p.vmalloc_max_bytes % 4096 != 0) {
        return bad("sva-kernel.vmalloc_min_bytes", "vmalloc sizes must be multiples of 4 KiB");
      }
      if (p.vmalloc_min_bytes > p.vmalloc_max_bytes) {
        return bad("sva-kernel.vmalloc_max_bytes", "must be >= vmalloc_min_bytes");
      }
      if (p.vmalloc_max_bytes > p.region_bytes) {
        return bad("sva-kernel.vmalloc_max_bytes", "must be <= region_bytes");
      }
      break;
    }
    case workload_kind::dma_storm: {
      const auto& p = s.dma_storm;
      if (p.buffer_bytes % 4096 != 0)
        return bad("dma-storm.buffer_bytes", "must be a multiple of 4 KiB");
      const std::uint64_t need = std::uint64_t{s.cpus} * p.buffers_per_cpu * p.buffer_bytes;
      if (need > p.iova_space_bytes) {
        return bad(
            "dma-storm.iova_space_bytes",
            "must hold cpus * buffers_per_cpu * buffer_bytes = " + std::to_string(need) + " bytes");
      }
      break;
    }
  }
  return {};
}

// The IOVA space one domain's workload spans.
std::uint64_t region_of(const scenario& s) {
  switch (s.kind) {
    case workload_kind::superpage_churn:
      return s.superpage_churn.region_bytes;
    case workload_kind::sva_kernel:
      return s.sva_kernel.region_bytes;
    case workload_kind::dma_storm:
      return s.dma_storm.iova_space_bytes;
  }
  return 0;
}

}  // namespace

Status validate(const scenario& s) {
  if (s.cpus < 1 || s.cpus > limits::max_cpus) {
    return bad("cpus", "must be 1 .. " + std::to_string(limits::max_cpus));
  }
  if (s.duration.ops_per_cpu == 0 && s.duration.time_limit_ns == 0) {
    return bad("duration.ops_per_cpu",
               "ops_per_cpu and time_limit_ns are both 0: the run would never stop");
  }
  if (s.iommu.count < 1 || s.iommu.count > limits::max_iommus) {
    return bad("iommu.count", "must be 1 .. " + std::to_string(limits::max_iommus));
  }
  // The parser insists on 4K too; this catches scenarios built in code (a unit without 4K
  // pages is a broken model, and every workload maps 4K pages).
  if ((s.iommu.unit.leaf_levels & 0b10) == 0)
    return bad("iommu.page_sizes", "must include \"4K\" (every workload maps 4K pages)");
  PTR_TRY(validate_cache(s.iommu.unit.iotlb, "iommu.iotlb"));
  PTR_TRY(validate_cache(s.iommu.unit.psc, "iommu.psc"));
  if (!is_pow2(s.iommu.unit.queue_entries) || s.iommu.unit.queue_entries < limits::inv_queue_min ||
      s.iommu.unit.queue_entries > limits::inv_queue_max) {
    return bad("iommu.queue_entries", "must be a power of two in " +
                                          std::to_string(limits::inv_queue_min) + " .. " +
                                          std::to_string(limits::inv_queue_max));
  }
  if (s.domains.empty()) return bad("domains", "at least one [[domains]] group is needed");
  if (s.devices.empty()) return bad("devices", "at least one [[devices]] group is needed");
  if (s.domain_count() > limits::max_domains) {
    return bad("domains", "more than " + std::to_string(limits::max_domains) + " domains in total");
  }
  if (s.device_count() > limits::max_devices) {
    return bad("devices", "more than " + std::to_string(limits::max_devices) + " devices in total");
  }
  const std::uint64_t region = region_of(s);
  for (std::size_t i = 0; i < s.domains.size(); ++i) {
    const auto& d = s.domains[i];
    if (d.count == 0) return bad(idx("domains", i) + ".count", "must be at least 1");
    if (d.coalesce && d.mode == pt::concurrency_mode::lock_free) {
      return bad(idx("domains", i) + ".coalesce", "coalescing needs mode = \"locked\"");
    }
    for (unsigned u : d.iommus) {
      if (u >= s.iommu.count) {
        return bad(idx("domains", i) + ".iommus",
                   "unit " + std::to_string(u) +
                       " does not exist (iommu.count = " + std::to_string(s.iommu.count) + ")");
      }
    }
    const unsigned va_bits = pt::describe(d.format).va_bits;
    if (va_bits < 64 && region > (std::uint64_t{1} << va_bits)) {
      return bad(idx("domains", i) + ".format",
                 "format '" + std::string(pt::format_kind_name(d.format)) + "' translates " +
                     std::to_string(va_bits) + "-bit IOVAs; the workload region (" +
                     std::to_string(region) + " bytes) does not fit");
    }
  }
  for (std::size_t i = 0; i < s.devices.size(); ++i) {
    const auto& d = s.devices[i];
    const std::string p = idx("devices", i);
    if (d.count == 0) return bad(p + ".count", "must be at least 1");
    if (d.domain_group >= s.domains.size()) {
      return bad(p + ".domain_group", "group " + std::to_string(d.domain_group) +
                                          " does not exist (" + std::to_string(s.domains.size()) +
                                          " [[domains]] groups)");
    }
    const auto units = s.group_iommus(d.domain_group);
    for (unsigned u : d.iommus) {
      if (std::find(units.begin(), units.end(), u) == units.end()) {
        return bad(p + ".iommus", "unit " + std::to_string(u) + " is not one domain group " +
                                      std::to_string(d.domain_group) + " is attached to");
      }
    }
    if (d.window_bytes % 4096 != 0) return bad(p + ".window_bytes", "must be a multiple of 4 KiB");
    if (d.window_bytes > region) {
      return bad(p + ".window_bytes",
                 "larger than the workload region (" + std::to_string(region) + " bytes)");
    }
  }
  if (s.reclaim.max_pending_frames > s.memory.frames) {
    return bad("reclaim.max_pending_frames",
               "exceeds memory.frames (" + std::to_string(s.memory.frames) + ")");
  }
  if (s.reclaim.watermark_frames > s.reclaim.max_pending_frames) {
    return bad("reclaim.watermark_frames", "exceeds max_pending_frames");
  }
  if (s.caller.flush == caller_flush::lazy && s.kind != workload_kind::dma_storm) {
    return bad("caller.flush",
               "\"lazy\" is lazy DMA: it needs an IOVA allocator (kind = "
               "\"dma-storm\")");
  }
  for (std::size_t i = 0; i < s.devices.size(); ++i) {
    if (s.devices[i].target == access_target::unmapped && s.kind != workload_kind::dma_storm)
      return bad(idx("devices", i) + ".target", "\"unmapped\" needs kind = \"dma-storm\"");
  }
  if (s.reclaim.fq_single_queue && s.duration.drain_timeout_ns <= 1'000'000'000) {
    return bad("reclaim.fq_queue",
               "\"single\" flushes on a 1 s timer: duration.drain_timeout_ns must exceed 1 s");
  }
  if (s.hotplug.min_online > s.cpus) {
    return bad("hotplug.min_online", "exceeds cpus (" + std::to_string(s.cpus) + ")");
  }
  if (s.hotplug.enabled && s.cpus < 2) {
    return bad("hotplug.enabled", "hotplug needs at least 2 CPUs");
  }
  PTR_TRY(detail::validate_faults(s));
  return validate_workload(s);
}

Result<scenario> with_overrides(const scenario& s, unsigned cpus, std::uint64_t ops_per_cpu) {
  scenario out = s;
  if (cpus != 0) {
    out.cpus = cpus;
    if (out.hotplug.min_online > cpus) out.hotplug.min_online = cpus;
    if (out.hotplug.enabled && cpus < 2) out.hotplug.enabled = false;
  }
  if (ops_per_cpu != 0) out.duration.ops_per_cpu = ops_per_cpu;
  if (Status v = validate(out); !v.ok()) {
    return Status(errc::invalid_argument, "scenario '" + s.name + "' with --cpus " +
                                              std::to_string(out.cpus) + ": " + v.message());
  }
  return out;
}

const std::vector<builtin_scenario>& builtin_scenarios() {
  return detail::generated_builtins();
}

const builtin_scenario* find_builtin(std::string_view name) noexcept {
  for (const auto& b : builtin_scenarios()) {
    if (b.name == name) return &b;
  }
  return nullptr;
}

}  // namespace ptreclaim::sim
