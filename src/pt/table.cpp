// make_table(): the run-time entry point that picks the format's instantiation.
#include "ptreclaim/pt/table.hpp"

#include "table_factory.hpp"

namespace ptreclaim::pt {

Result<std::unique_ptr<table>> make_table(format_kind kind, const domain_config& cfg,
                                          mem::frame_pool& pool) {
  switch (kind) {
    case format_kind::vtd_ss_4:
      return detail::make_vtd_ss_table(4, cfg, pool);
    case format_kind::vtd_ss_5:
      return detail::make_vtd_ss_table(5, cfg, pool);
    case format_kind::x86_64_4:
      return detail::make_x86_64_table(4, cfg, pool);
    case format_kind::x86_64_5:
      return detail::make_x86_64_table(5, cfg, pool);
    case format_kind::amd_v1_4:
      return detail::make_amd_v1_table(cfg, pool);
  }
  return Status(errc::invalid_argument, "make_table: unknown format_kind");
}

}  // namespace ptreclaim::pt
