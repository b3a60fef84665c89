// table_impl instantiated for AMD-Vi v1 host tables (4-level).
#include "ptreclaim/pt/fmt/amd_v1.hpp"
#include "table_factory.hpp"
#include "table_impl.hpp"

namespace ptreclaim::pt::detail {

template class table_impl<fmt::amd_v1_4>;

Result<std::unique_ptr<table>> make_amd_v1_table(const domain_config& cfg, mem::frame_pool& pool) {
  return table_impl<fmt::amd_v1_4>::create(cfg, pool);
}

}  // namespace ptreclaim::pt::detail
