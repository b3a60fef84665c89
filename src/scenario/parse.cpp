// Scenario files: TOML -> scenario, strictly (unknown keys, wrong types and out-of-range values
// are errors with file:line:column), with `base = ...` overlays.
#include <sys/stat.h>

#include <string>

#include "ptreclaim/base/file.hpp"
#include "ptreclaim/scenario/scenario.hpp"
#include "scenario/faults.hpp"
#include "scenario/reader.hpp"

namespace ptreclaim::sim {
namespace {

using detail::read_context;
using detail::table_reader;

constexpr int max_base_depth = 4;  // base chains deeper than this are surely a cycle
constexpr std::uint64_t tera = 1'000'000'000'000ull;  // 1e12 ns: about 17 minutes
constexpr std::uint64_t tib = 1ull << 40;

Result<scenario> parse_at_depth(std::string_view text, const std::string& source_name, int depth);

void read_duration(table_reader t, duration_params& d) {
  t.uint("ops_per_cpu", d.ops_per_cpu, 0, 1'000'000'000'000ull);
  t.uint("time_limit_ns", d.time_limit_ns, 0, tera * 1000);
  t.uint("drain_timeout_ns", d.drain_timeout_ns, 1, tera);
  t.uint("sample_interval_ns", d.sample_interval_ns, 1000, tera);
  t.uint("watchdog_steps", d.watchdog_steps, 1000, tera);
  t.uint("watchdog_real_ns", d.watchdog_real_ns, 1'000'000, tera * 10);
  t.finish("[duration]");
}

void read_memory(table_reader t, memory_params& m) {
  t.uint_as("frames", m.frames, 64, limits::max_frames);
  t.uint_as("cache_frames", m.cache_frames, 2, limits::pool_cache_frames);
  t.boolean("poison", m.poison);
  t.finish("[memory]");
}

void read_cache(table_reader& t, std::string_view prefix, iommu::cache_config& c) {
  const std::string p(prefix);
  t.uint_as(p + "_entries", c.entries, 1, 1u << 20);
  t.uint_as(p + "_ways", c.ways, 1, 1u << 20);
  const int r = t.choice(p + "_replacement", {"lru", "random"});
  if (r >= 0) c.policy = r == 0 ? iommu::replacement::lru : iommu::replacement::random;
}

void read_latency(table_reader t, iommu::latency_config& l) {
  t.uint("iotlb_hit_ns", l.iotlb_hit_ns, 0, tera);
  t.uint("iotlb_miss_ns", l.iotlb_miss_ns, 0, tera);
  t.uint("pte_read_ns", l.pte_read_ns, 0, tera);
  t.uint("inv_page_ns", l.inv_page_ns, 0, tera);
  t.uint("inv_devtlb_ns", l.inv_devtlb_ns, 0, tera);
  t.uint("inv_domain_ns", l.inv_domain_ns, 0, tera);
  t.uint("inv_global_ns", l.inv_global_ns, 0, tera);
  t.uint("inv_wait_ns", l.inv_wait_ns, 0, tera);
  t.finish("[iommu.latency]");
}

void read_page_sizes(read_context& ctx, table_reader& t, std::uint32_t& levels) {
  const toml::node* n = t.node("page_sizes");
  if (n == nullptr) return;
  const auto* a = n->as_array();
  if (a == nullptr || a->empty()) {
    ctx.fail(n->source(),
             "'iommu.page_sizes' must be a non-empty array such as [\"4K\", \"2M\", \"1G\"]");
    return;
  }
  std::uint32_t mask = 0;
  for (const toml::node& e : *a) {
    const auto* s = e.as_string();
    unsigned level = 0;
    if (s != nullptr) {
      if (s->get() == "4K") level = 1;
      if (s->get() == "2M") level = 2;
      if (s->get() == "1G") level = 3;
    }
    if (level == 0) {
      ctx.fail(e.source(), "'iommu.page_sizes' entries must be \"4K\", \"2M\" or \"1G\"");
      return;
    }
    mask |= 1u << level;
  }
  if ((mask & 0b10u) == 0) {
    ctx.fail(n->source(), "'iommu.page_sizes' must include \"4K\"");
    return;
  }
  levels = mask;
}

void read_iommu(read_context& ctx, table_reader t, iommu_params& io) {
  t.uint_as("count", io.count, 1, limits::max_iommus);
  read_cache(t, "iotlb", io.unit.iotlb);
  read_cache(t, "psc", io.unit.psc);
  read_page_sizes(ctx, t, io.unit.leaf_levels);
  t.uint_as("max_address_mask", io.unit.max_am, 0, 52);
  if (const toml::node* n = t.node("queue_entries")) {
    std::uint64_t q = io.unit.queue_entries;
    t.uint("queue_entries", q, limits::inv_queue_min, limits::inv_queue_max);
    if (!ctx.failed() && (q & (q - 1)) != 0) {
      ctx.fail(n->source(),
               "'iommu.queue_entries' = " + std::to_string(q) + " must be a power of two");
    }
    io.unit.queue_entries = static_cast<unsigned>(q);
  }
  t.boolean("caching_mode", io.unit.caching_mode);
  t.uint_as("max_walks_in_flight", io.unit.max_walks_in_flight, 1, limits::max_devices);
  if (const toml::table* lat = t.table("latency")) {
    read_latency(table_reader(ctx, *lat, "iommu.latency"), io.unit.latency);
  }
  if (const toml::table* drv = t.table("driver")) {
    table_reader d(ctx, *drv, "iommu.driver");
    const int k = d.choice("kind", {"linux-vtd", "unlocked-poll"});
    if (k >= 0) io.unit.driver.kind = static_cast<iommu::queue_driver>(k);
    d.uint("poll_ns", io.unit.driver.poll_ns, 0, iommu::max_driver_spin_ns);
    d.uint("relax_ns", io.unit.driver.relax_ns, 0, iommu::max_driver_spin_ns);
    d.finish("[iommu.driver]");
  }
  t.finish("[iommu]");
}

// Reads an array of tables `key` with `read_one` for each element; replaces `out` when present.
template <class T, class F>
void read_groups(read_context& ctx, table_reader& top, std::string_view key, std::vector<T>& out,
                 F read_one) {
  const toml::node* n = top.node(key);
  if (n == nullptr) return;
  const auto* a = n->as_array();
  if (a == nullptr || !a->is_array_of_tables() || a->empty()) {
    ctx.fail(n->source(),
             "'" + std::string(key) + "' must be one or more [[" + std::string(key) + "]] tables");
    return;
  }
  std::vector<T> groups;
  std::size_t i = 0;
  for (const toml::node& e : *a) {
    T g{};
    read_one(table_reader(ctx, *e.as_table(), std::string(key) + "[" + std::to_string(i) + "]"), g);
    groups.push_back(std::move(g));
    ++i;
  }
  out = std::move(groups);
}

void read_domain(read_context& ctx, table_reader t, domain_group& d) {
  t.uint_as("count", d.count, 1, limits::max_domains);
  if (const toml::node* n = t.node("format"); n != nullptr) {
    if (const auto* s = n->as_string()) {
      auto k = pt::parse_format_kind(s->get());
      if (k.ok()) {
        d.format = *k;
      } else {
        ctx.fail(n->source(), "'" + t.key_path("format") + "': " + k.status().message());
      }
    } else {
      ctx.fail(n->source(), "'" + t.key_path("format") + "' must be a string, not " +
                                std::string(detail::toml_type_name(*n)));
    }
  }
  const int m = t.choice("mode", {"locked", "lock-free"});
  if (m >= 0) d.mode = m == 0 ? pt::concurrency_mode::locked : pt::concurrency_mode::lock_free;
  // Coalescing exists in locked mode only, so its default follows the mode.
  d.coalesce = d.mode == pt::concurrency_mode::locked;
  t.boolean("coalesce", d.coalesce);
  if (d.coalesce && d.mode == pt::concurrency_mode::lock_free && !ctx.failed()) {
    ctx.fail(t.node("coalesce")->source(),
             "'" + t.key_path("coalesce") +
                 "' = true needs mode = \"locked\" (lock-free tables never coalesce)");
  }
  t.uint_list_or_all("iommus", d.iommus, 0, limits::max_iommus - 1);
  t.finish("[[domains]]");
}

void read_device(table_reader t, device_group& d) {
  t.uint_as("count", d.count, 1, limits::max_devices);
  t.uint_as("domain_group", d.domain_group, 0, limits::max_domains - 1);
  t.uint_list_or_all("iommus", d.iommus, 0, limits::max_iommus - 1);
  const int p = t.choice("pattern", {"random", "sequential", "hot-set"});
  if (p >= 0) d.pattern = static_cast<access_pattern>(p);
  const int g = t.choice("target", {"window", "live", "replaced", "unmapped"});
  if (g >= 0) d.target = static_cast<access_target>(g);
  t.uint("window_bytes", d.window_bytes, 0, tib);
  t.uint("hot_set_pages", d.hot_set_pages, 1, 1u << 20);
  t.uint_as("translations_per_step", d.translations_per_step, 1, 4096);
  t.uint("step_interval_ns", d.step_interval_ns, 1, 1'000'000'000);
  t.finish("[[devices]]");
}

void read_caller(table_reader t, caller_params& c) {
  const int f = t.choice("flush", {"each-op", "batched", "none", "lazy"});
  if (f >= 0) c.flush = static_cast<caller_flush>(f);
  t.uint_as("flush_batch", c.flush_batch, 1, 65536);
  const int r = t.choice("flush_range", {"gather", "request", "xen"});
  if (r >= 0) c.flush_range = static_cast<caller_range>(r);
  const int s = t.choice("softirq_point", {"none", "before-caller-flush", "after-caller-flush"});
  if (s >= 0) c.softirq = static_cast<softirq_point>(s);
  t.finish("[caller]");
}

void read_superpage_churn(table_reader t, superpage_churn_params& p) {
  t.uint("region_bytes", p.region_bytes, 2u << 20, tib);
  t.real("superpage_probability", p.superpage_probability, 0, 1);
  t.real("gigabyte_probability", p.gigabyte_probability, 0, 1);
  t.real("shatter_probability", p.shatter_probability, 0, 1);
  t.real("unmap_probability", p.unmap_probability, 0, 1);
  t.uint("partial_unmap_pages", p.partial_unmap_pages, 1, 511);
  t.finish("[superpage-churn]");
}

void read_sva_kernel(table_reader t, sva_kernel_params& p) {
  t.uint("region_bytes", p.region_bytes, 2u << 20, tib);
  t.uint("vmalloc_min_bytes", p.vmalloc_min_bytes, 4096, tib);
  t.uint("vmalloc_max_bytes", p.vmalloc_max_bytes, 4096, tib);
  t.uint_as("live_per_cpu", p.live_per_cpu, 1, 65536);
  t.real("free_probability", p.free_probability, 0, 1);
  t.uint_as("pasids", p.pasids, 1, iommu::max_pasid);
  t.boolean("ats", p.ats);
  t.uint_as("devtlb_entries", p.devtlb_entries, 8, 4096);
  if (p.devtlb_entries % 8 != 0)
    t.reject("devtlb_entries",
             "'sva-kernel.devtlb_entries' must be a multiple of 8 (the device TLB is 8-way)");
  t.finish("[sva-kernel]");
}

void read_dma_storm(table_reader t, dma_storm_params& p) {
  t.uint_as("buffers_per_cpu", p.buffers_per_cpu, 1, 65536);
  t.uint("buffer_bytes", p.buffer_bytes, 4096, 2u << 20);
  t.uint("iova_space_bytes", p.iova_space_bytes, 1u << 20, tib * 256);
  t.uint_as("packets_per_op", p.packets_per_op, 1, 1024);
  t.finish("[dma-storm]");
}

void read_reclaim(table_reader t, reclaim_params& r) {
  t.uint("max_pending_frames", r.max_pending_frames, 1, limits::max_frames);
  t.uint("flush_age_ns", r.flush_age_ns, 0, tera);
  t.uint("watermark_frames", r.watermark_frames, 0, limits::max_frames);
  t.uint("poll_spacing_ns", r.poll_spacing_ns, 0, tera);
  const int q = t.choice("fq_queue", {"per-cpu", "single"});
  if (q >= 0) r.fq_single_queue = q == 1;
  t.finish("[reclaim]");
}

void read_hotplug(table_reader t, hotplug_params& h) {
  t.boolean("enabled", h.enabled);
  t.uint("mean_interval_ns", h.mean_interval_ns, 1000, tera);
  t.uint("offline_ns", h.offline_ns, 0, tera);
  t.real("fail_probability", h.fail_probability, 0, 1);
  t.uint_as("min_online", h.min_online, 1, limits::max_cpus);
  t.finish("[hotplug]");
}

std::string join_path(const std::string& dir, const std::string& rel) {
  if (rel.empty() || rel.front() == '/' || dir.empty()) return rel;
  return dir + "/" + rel;
}

// Loads `base` (a built-in name, or a path relative to the including file).
Result<scenario> load_base(const std::string& base, const std::string& including, int depth) {
  if (depth >= max_base_depth) {
    return Status(errc::parse_error, "'base' chain deeper than " + std::to_string(max_base_depth) +
                                         " (a cycle?) at '" + base + "'");
  }
  if (const builtin_scenario* b = find_builtin(base)) {
    return parse_at_depth(b->toml, std::string(b->name) + ".toml", depth + 1);
  }
  const std::string path = join_path(detail::dir_of(including), base);
  auto text = read_text_file(path);
  if (!text.ok()) return Status(errc::parse_error, "base scenario: " + text.status().message());
  return parse_at_depth(*text, path, depth + 1);
}

Result<scenario> parse_at_depth(std::string_view text, const std::string& source_name, int depth) {
  read_context ctx(source_name);
  const toml::table root = detail::parse_toml(ctx, text);
  if (ctx.failed()) return ctx.error();
  table_reader top(ctx, root, "");

  scenario s;
  std::string base;
  top.string("base", base);
  if (ctx.failed()) return ctx.error();
  if (!base.empty()) {
    auto b = load_base(base, source_name, depth);
    if (!b.ok()) {
      return Status(errc::parse_error, ctx.located(ctx.where("base"), b.status().message()));
    }
    s = std::move(*b);
  }
  s.name = detail::file_stem(source_name);
  top.string("name", s.name);
  top.string("description", s.description);
  const int k = top.choice("kind", {"superpage-churn", "sva-kernel", "dma-storm"});
  if (k >= 0) s.kind = static_cast<workload_kind>(k);
  top.uint_as("cpus", s.cpus, 1, limits::max_cpus);
  if (top.has("seed")) {
    std::uint64_t seed = 0;
    top.uint("seed", seed, 0, ~std::uint64_t{0});
    s.seed = seed;
  }

  if (const auto* t = top.table("duration"))
    read_duration(table_reader(ctx, *t, "duration"), s.duration);
  if (const auto* t = top.table("memory")) read_memory(table_reader(ctx, *t, "memory"), s.memory);
  if (const auto* t = top.table("iommu")) read_iommu(ctx, table_reader(ctx, *t, "iommu"), s.iommu);
  read_groups(ctx, top, "domains", s.domains,
              [&ctx](table_reader t, domain_group& d) { read_domain(ctx, std::move(t), d); });
  read_groups(ctx, top, "devices", s.devices,
              [](table_reader t, device_group& d) { read_device(std::move(t), d); });
  if (const auto* t = top.table("caller")) read_caller(table_reader(ctx, *t, "caller"), s.caller);

  // Exactly the workload section of this scenario's kind may appear.
  const std::string kind_name(workload_kind_name(s.kind));
  for (std::string_view section : {"superpage-churn", "sva-kernel", "dma-storm"}) {
    if (section == kind_name) continue;
    top.reject(section, "section [" + std::string(section) + "] does not apply to kind = \"" +
                            kind_name + "\"");
  }
  if (const auto* t = top.table(kind_name)) {
    table_reader r(ctx, *t, kind_name);
    switch (s.kind) {
      case workload_kind::superpage_churn:
        read_superpage_churn(std::move(r), s.superpage_churn);
        break;
      case workload_kind::sva_kernel:
        read_sva_kernel(std::move(r), s.sva_kernel);
        break;
      case workload_kind::dma_storm:
        read_dma_storm(std::move(r), s.dma_storm);
        break;
    }
  }
  if (const auto* t = top.table("reclaim"))
    read_reclaim(table_reader(ctx, *t, "reclaim"), s.reclaim);
  if (const auto* t = top.table("hotplug"))
    read_hotplug(table_reader(ctx, *t, "hotplug"), s.hotplug);
  if (const auto* t = top.table("faults"))
    detail::read_faults(table_reader(ctx, *t, "faults"), s.faults);
  if (const auto* t = top.table("cost")) {
    table_reader c(ctx, *t, "cost");
    std::string file;
    c.string("file", file);
    c.finish("[cost]");
    if (!ctx.failed() && !file.empty()) {
      const std::string path = join_path(detail::dir_of(source_name), file);
      auto model = load_cost_model(path);
      if (!model.ok()) {
        return Status(errc::parse_error,
                      ctx.located(ctx.where("cost.file"), model.status().message()));
      }
      s.cost_file = path;
      s.costs = std::move(*model);
    }
  }
  top.finish("the top level");
  if (ctx.failed()) return ctx.error();

  if (Status v = validate(s); !v.ok()) {
    // validate() names a key path first ("devices[0].iommus: ..."); point at its line.
    const std::string& msg = v.message();
    const auto colon = msg.find(": ");
    const std::string path = colon == std::string::npos ? std::string() : msg.substr(0, colon);
    return Status(errc::parse_error, ctx.located(ctx.where(path), msg));
  }
  return s;
}

bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

}  // namespace

Result<scenario> parse_scenario(std::string_view toml_text, const std::string& source_name) {
  auto s = parse_at_depth(toml_text, source_name, 0);
  if (s.ok() && s->source.empty()) s->source = source_name;
  return s;
}

Result<scenario> load_scenario_file(const std::string& path) {
  auto text = read_text_file(path);
  if (!text.ok()) return Status(errc::invalid_argument, "scenario file " + text.status().message());
  return parse_scenario(*text, path);
}

Result<scenario> load_scenario(const std::string& name_or_path) {
  const bool looks_like_path =
      name_or_path.find('/') != std::string::npos ||
      (name_or_path.size() > 5 && name_or_path.compare(name_or_path.size() - 5, 5, ".toml") == 0);
  if (!looks_like_path) {
    if (const builtin_scenario* b = find_builtin(name_or_path)) {
      auto s = parse_scenario(b->toml, std::string(b->name) + ".toml");
      if (s.ok()) s->source = "builtin:" + std::string(b->name);
      return s;
    }
    if (!file_exists(name_or_path)) {
      std::string names;
      for (const auto& b : builtin_scenarios()) {
        if (!names.empty()) names += ", ";
        names += b.name;
      }
      return Status(errc::invalid_argument, "unknown scenario '" + name_or_path + "' (built-in: " +
                                                names + "; or give a .toml file)");
    }
  }
  return load_scenario_file(name_or_path);
}

Result<scenario> load_scenario(const std::string& name_or_path, const std::string& cost_file) {
  auto s = load_scenario(name_or_path);
  if (!s.ok() || cost_file.empty()) return s;
  auto m = load_cost_model(cost_file);
  if (!m.ok()) return Status(m.status().code(), "--costs: " + m.status().message());
  s->costs = std::move(*m);
  s->cost_file = cost_file;
  return s;
}

}  // namespace ptreclaim::sim
