// Run-time names and descriptors of the built-in formats.
#include <array>
#include <string>

#include "ptreclaim/pt/fmt/amd_v1.hpp"
#include "ptreclaim/pt/fmt/vtd_ss.hpp"
#include "ptreclaim/pt/fmt/x86_64.hpp"
#include "ptreclaim/pt/table.hpp"

namespace ptreclaim::pt {
namespace {

struct kind_entry {
  format_kind kind;
  const format_desc& (*desc)() noexcept;
};

const std::array<kind_entry, 5> kinds{{
    {format_kind::vtd_ss_4, &fmt::vtd_ss_4::desc},
    {format_kind::vtd_ss_5, &fmt::vtd_ss_5::desc},
    {format_kind::x86_64_4, &fmt::x86_64_4::desc},
    {format_kind::x86_64_5, &fmt::x86_64_5::desc},
    {format_kind::amd_v1_4, &fmt::amd_v1_4::desc},
}};

}  // namespace

const format_desc& describe(format_kind k) noexcept {
  const auto i = static_cast<std::size_t>(k);
  PTR_ASSERT_MSG(i < kinds.size() && kinds[i].kind == k, "describe: unknown format_kind");
  return kinds[i].desc();
}

std::string_view format_kind_name(format_kind k) noexcept {
  return describe(k).name;
}

Result<format_kind> parse_format_kind(std::string_view name) {
  std::string known;
  for (const auto& e : kinds) {
    if (name == e.desc().name) return e.kind;
    if (!known.empty()) known += ", ";
    known += e.desc().name;
  }
  return Status(errc::invalid_argument,
                "unknown page-table format '" + std::string(name) + "' (known: " + known + ")");
}

}  // namespace ptreclaim::pt
