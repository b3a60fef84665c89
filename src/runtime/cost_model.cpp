#include "ptreclaim/runtime/cost_model.hpp"

#include <charconv>
#include <string>

namespace ptreclaim::runtime {
namespace {

struct runtime_field {
  std::string_view key;
  std::uint64_t cost_model::*field;
};
constexpr runtime_field runtime_fields[] = {
    {"step_ns", &cost_model::step_ns},
    {"step_jitter_ns", &cost_model::step_jitter_ns},
    {"softirq_item_ns", &cost_model::softirq_item_ns},
    {"tasklet_ns", &cost_model::tasklet_ns},
    {"work_ns", &cost_model::work_ns},
    {"idle_poll_ns", &cost_model::idle_poll_ns},
    {"hotplug_ns", &cost_model::hotplug_ns},
};

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

}  // namespace

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
  return "?";
}

Status cost_model::set(std::string_view key, std::uint64_t ns) {
  for (std::size_t i = 0; i < cost_kind_count; ++i) {
    if (cost_kind_name(static_cast<cost_kind>(i)) == key) {
      charge_ns[i] = ns;
      return {};
    }
  }
  for (const runtime_field& f : runtime_fields) {
    if (f.key == key) {
      this->*f.field = ns;
      return {};
    }
  }
  return Status(errc::invalid_argument, "unknown cost key '" + std::string(key) + "'");
}

std::string cost_model::to_string() const {
  std::string out;
  for (std::size_t i = 0; i < cost_kind_count; ++i)
    out += std::string(cost_kind_name(static_cast<cost_kind>(i))) + " = " +
           std::to_string(charge_ns[i]) + "\n";
  for (const runtime_field& f : runtime_fields)
    out += std::string(f.key) + " = " + std::to_string(this->*f.field) + "\n";
  return out;
}

Result<cost_model> parse_cost_model(std::string_view text, cost_model base) {
  unsigned line_no = 0;
  while (!text.empty()) {
    const std::size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    ++line_no;
    if (const std::size_t hash = line.find('#'); hash != std::string_view::npos)
      line = line.substr(0, hash);
    line = trim(line);
    if (line.empty()) continue;
    const std::size_t eq = line.find('=');
    const std::string where = "cost file line " + std::to_string(line_no) + ": ";
    if (eq == std::string_view::npos)
      return Status(errc::parse_error, where + "expected 'key = value'");
    const std::string_view key = trim(line.substr(0, eq));
    const std::string_view value = trim(line.substr(eq + 1));
    std::uint64_t ns = 0;
    const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), ns);
    if (ec != std::errc{} || end != value.data() + value.size())
      return Status(errc::parse_error,
                    where + "value of '" + std::string(key) + "' is not a non-negative integer");
    if (Status s = base.set(key, ns); !s.ok())
      return Status(errc::parse_error, where + s.message());
  }
  return base;
}

}  // namespace ptreclaim::runtime
