// Cost files: a [cost_ns] table with one key per cost_kind (nanoseconds; fractions are read and
// rounded to whole ns, see whole_ns), and an optional [kernel_ns] table of kernel dispatch costs,
// read straight into runtime::cost_model. The default cost model is the embedded
// scenarios/costs/default.toml.
#include <array>
#include <cmath>
#include <cstdio>
#include <string>

#include "ptreclaim/base/file.hpp"
#include "ptreclaim/scenario/scenario.hpp"
#include "scenario/reader.hpp"

namespace ptreclaim::sim {

namespace {
constexpr std::uint64_t max_kernel_ns = 1'000'000'000;

// Reads [cost_ns] of `toml_text` into `m`'s charges and [kernel_ns] into its dispatch costs (what
// the file leaves out keeps its value). With `every_kind`, a kind the file leaves out is an
// error (the embedded default file must give them all).
Status parse_cost_ns(std::string_view toml_text, const std::string& source_name, cost_model& m,
                     bool every_kind) {
  detail::read_context ctx(source_name);
  const toml::table root = detail::parse_toml(ctx, toml_text);
  if (ctx.failed()) return ctx.error();
  detail::table_reader top(ctx, root, "");
  if (const toml::table* t = top.table("cost_ns")) {
    detail::table_reader r(ctx, *t, "cost_ns");
    for (std::size_t i = 0; i < cost_kind_count; ++i) {
      const std::string_view key = cost_kind_name(static_cast<cost_kind>(i));
      double ns = std::nan("");
      r.real(key, ns, 0.0, 1e9);
      if (!std::isnan(ns)) {
        m.charge_ns[i] = whole_ns(ns);
      } else if (every_kind && !ctx.failed()) {
        ctx.fail_at({}, "[cost_ns] must give every cost kind; " + std::string(key) + " is missing");
      }
    }
    r.finish("[cost_ns]");
  } else if (!ctx.failed()) {
    ctx.fail_at({}, "a cost file needs a [cost_ns] table");
  }
  if (const toml::table* t = top.table("kernel_ns")) {
    detail::table_reader r(ctx, *t, "kernel_ns");
    r.uint("softirq_item", m.softirq_item_ns, 0, max_kernel_ns);
    r.uint("tasklet", m.tasklet_ns, 0, max_kernel_ns);
    r.uint("work_item", m.work_ns, 0, max_kernel_ns);
    r.uint("hotplug", m.hotplug_ns, 0, max_kernel_ns);
    r.finish("[kernel_ns]");
  }
  top.finish("the top level of a cost file");
  if (ctx.failed()) return ctx.error();
  return {};
}
}  // namespace

std::uint64_t whole_ns(double ns) noexcept {
  return ns <= 0.0 ? 0 : static_cast<std::uint64_t>(std::llround(ns));
}

const cost_model& default_cost_model() {
  // runtime::cost_model{}'s step and idle costs; every kind and [kernel_ns] from the file.
  static const cost_model parsed = [] {
    cost_model m;
    const Status st =
        parse_cost_ns(default_cost_file_text(), "scenarios/costs/default.toml", m, true);
    PTR_ASSERT_MSG(st.ok(),
                   "the embedded scenarios/costs/default.toml does not parse or "
                   "leaves out a cost kind");
    return m;
  }();
  return parsed;
}

Result<cost_model> parse_cost_model(std::string_view toml_text, const std::string& source_name) {
  return parse_cost_model(toml_text, source_name, default_cost_model());
}

Result<cost_model> parse_cost_model(std::string_view toml_text, const std::string& source_name,
                                    const cost_model& base) {
  cost_model model = base;
  PTR_TRY(parse_cost_ns(toml_text, source_name, model, false));
  return model;
}

Result<cost_model> load_cost_model(const std::string& path) {
  auto text = read_text_file(path);
  if (!text.ok()) return Status(errc::invalid_argument, "cost file " + text.status().message());
  return parse_cost_model(*text, path);
}

std::string cost_model_to_toml(const cost_model& model, std::string_view header,
                               std::span<const double> measured,
                               std::span<const std::string> notes) {
  PTR_ASSERT_MSG(measured.empty() || measured.size() == cost_kind_count,
                 "cost_model_to_toml: one measurement per cost kind, or none");
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
  for (const auto& n : notes)
    out += "# note: " + n + "\n";
  out +=
      "# Nanoseconds of virtual time the deterministic executor charges per step. It charges\n"
      "# whole nanoseconds, so each value is the measurement rounded to the nearest ns (the\n"
      "# measurement follows as a comment; under 0.5 ns is charged 0). Point a scenario at\n"
      "# this file with  [cost] file = \"<path>\"  or pass  --costs <path>.\n\n[cost_ns]\n";
  for (std::size_t i = 0; i < cost_kind_count; ++i) {
    const auto k = static_cast<cost_kind>(i);
    out += std::string(cost_kind_name(k)) + " = " + std::to_string(model.cost(k));
    if (!measured.empty()) {
      char buf[64];
      std::snprintf(buf, sizeof buf, "  # measured %.3f ns", measured[i]);
      out += buf;
    }
    out += "\n";
  }
  out +=
      "\n# Kernel dispatch costs, ns (not measured: a user-space loop cannot time a softirq, a\n"
      "# tasklet from the idle loop or a switch to a kworker; published figures). The threaded\n"
      "# executor runs these items inline and pays none of them.\n[kernel_ns]\n";
  out += "softirq_item = " + std::to_string(model.softirq_item_ns) + "\n";
  out += "tasklet = " + std::to_string(model.tasklet_ns) + "\n";
  out += "work_item = " + std::to_string(model.work_ns) + "\n";
  out += "hotplug = " + std::to_string(model.hotplug_ns) + "\n";
  return out;
}

}  // namespace ptreclaim::sim
