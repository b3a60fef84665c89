// Cost files: a [cost_ns] table with one key per cost_kind (nanoseconds; fractions are read but
// a run charges them rounded to whole ns, see cost_model::charged_ns), and an optional
// [kernel_ns] table of kernel dispatch costs. The default cost model is the embedded
// scenarios/costs/default.toml.
#include <array>
#include <cmath>
#include <cstdio>
#include <string>

#include "ptreclaim/sim/scenario.hpp"
#include "sim/scenario_reader.hpp"

namespace ptreclaim::sim {

std::string_view cost_kind_name(cost_kind k) noexcept {
  switch (k) {
    case cost_kind::pte_write:
      return "pte_write";
    case cost_kind::pte_read:
      return "pte_read";
    case cost_kind::frame_alloc:
      return "frame_alloc";
    case cost_kind::frame_free:
      return "frame_free";
    case cost_kind::enqueue:
      return "enqueue";
    case cost_kind::dequeue:
      return "dequeue";
    case cost_kind::inv_submit:
      return "inv_submit";
    case cost_kind::inv_poll:
      return "inv_poll";
    case cost_kind::cache_line_transfer:
      return "cache_line_transfer";
    case cost_kind::lock_uncontended:
      return "lock_uncontended";
    case cost_kind::op_overhead:
      return "op_overhead";
    case cost_kind::count_:
      break;
  }
  PTR_ASSERT_MSG(false, "cost_kind_name: not a cost kind");
  return "?";
}

namespace {
constexpr std::uint64_t max_kernel_ns = 1'000'000'000;

// Reads [cost_ns] of `toml_text` into `ns` and [kernel_ns] into `k` (what the file leaves out
// keeps its value).
Status parse_cost_ns(std::string_view toml_text, const std::string& source_name,
                     std::array<double, cost_kind_count>& ns, cost_model::kernel_costs& k) {
  detail::read_context ctx(source_name);
  const toml::table root = detail::parse_toml(ctx, toml_text);
  if (ctx.failed()) return ctx.error();
  detail::table_reader top(ctx, root, "");
  if (const toml::table* t = top.table("cost_ns")) {
    detail::table_reader r(ctx, *t, "cost_ns");
    for (std::size_t i = 0; i < cost_kind_count; ++i) {
      r.real(cost_kind_name(static_cast<cost_kind>(i)), ns[i], 0.0, 1e9);
    }
    r.finish("[cost_ns]");
  } else if (!ctx.failed()) {
    ctx.fail_at({}, "a cost file needs a [cost_ns] table");
  }
  if (const toml::table* t = top.table("kernel_ns")) {
    detail::table_reader r(ctx, *t, "kernel_ns");
    r.uint("softirq_item", k.softirq_item_ns, 0, max_kernel_ns);
    r.uint("tasklet", k.tasklet_ns, 0, max_kernel_ns);
    r.uint("work_item", k.work_ns, 0, max_kernel_ns);
    r.uint("hotplug", k.hotplug_ns, 0, max_kernel_ns);
    r.finish("[kernel_ns]");
  }
  top.finish("the top level of a cost file");
  if (ctx.failed()) return ctx.error();
  return {};
}

// The embedded default file, parsed once. Not a cost_model: its initialisers call default_ns().
struct default_costs {
  std::array<double, cost_kind_count> ns;
  cost_model::kernel_costs kernel;
};
const default_costs& embedded_defaults() {
  // NaN marks a kind the file left out: the default file must give every kind.
  static const default_costs parsed = [] {
    default_costs d{};
    d.ns.fill(std::nan(""));
    const Status st =
        parse_cost_ns(default_cost_file_text(), "scenarios/costs/default.toml", d.ns, d.kernel);
    PTR_ASSERT_MSG(st.ok(), "the embedded scenarios/costs/default.toml does not parse");
    for (double v : d.ns)
      PTR_ASSERT_MSG(!std::isnan(v), "scenarios/costs/default.toml must give every cost kind");
    return d;
  }();
  return parsed;
}
}  // namespace

const std::array<double, cost_kind_count>& cost_model::default_ns() {
  return embedded_defaults().ns;
}

const cost_model::kernel_costs& cost_model::default_kernel() {
  return embedded_defaults().kernel;
}

std::uint64_t cost_model::charged_ns(cost_kind k) const noexcept {
  const double v = ns[static_cast<std::size_t>(k)];
  return v <= 0.0 ? 0 : static_cast<std::uint64_t>(std::llround(v));
}

Result<cost_model> parse_cost_model(std::string_view toml_text, const std::string& source_name) {
  cost_model model;
  model.source = source_name;
  // Kinds and kernel costs the file leaves out keep the default file's.
  PTR_TRY(parse_cost_ns(toml_text, source_name, model.ns, model.kernel));
  return model;
}

Result<cost_model> load_cost_model(const std::string& path) {
  auto text = detail::read_file(path);
  if (!text.ok()) return Status(errc::invalid_argument, "cost file " + text.status().message());
  return parse_cost_model(*text, path);
}

std::string cost_model_to_toml(const cost_model& model, std::string_view header) {
  std::string out;
  std::size_t start = 0;
  while (start < header.size()) {
    auto end = header.find('\n', start);
    if (end == std::string_view::npos) end = header.size();
    out += "# ";
    out += header.substr(start, end - start);
    out += '\n';
    start = end + 1;
  }
  for (const auto& n : model.notes)
    out += "# note: " + n + "\n";
  out +=
      "# Nanoseconds of virtual time the deterministic executor charges per step. It charges\n"
      "# whole nanoseconds, so each value is the measurement rounded to the nearest ns (the\n"
      "# measurement follows as a comment; under 0.5 ns is charged 0). Point a scenario at\n"
      "# this file with  [cost] file = \"<path>\"  or pass  --costs <path>.\n\n[cost_ns]\n";
  for (std::size_t i = 0; i < cost_kind_count; ++i) {
    const auto k = static_cast<cost_kind>(i);
    char buf[96];
    std::snprintf(buf, sizeof buf, "%llu  # measured %.3f ns",
                  static_cast<unsigned long long>(model.charged_ns(k)), model.ns[i]);
    out += std::string(cost_kind_name(k)) + " = " + buf + "\n";
  }
  out +=
      "\n# Kernel dispatch costs, ns (not measured: a user-space loop cannot time a softirq, a\n"
      "# tasklet from the idle loop or a switch to a kworker; published figures). The threaded\n"
      "# executor runs these items inline and pays none of them.\n[kernel_ns]\n";
  out += "softirq_item = " + std::to_string(model.kernel.softirq_item_ns) + "\n";
  out += "tasklet = " + std::to_string(model.kernel.tasklet_ns) + "\n";
  out += "work_item = " + std::to_string(model.kernel.work_ns) + "\n";
  out += "hotplug = " + std::to_string(model.kernel.hotplug_ns) + "\n";
  return out;
}

}  // namespace ptreclaim::sim
