// table_impl instantiated for x86-64 first-stage tables (4- and 5-level).
#include "ptreclaim/pt/fmt/x86_64.hpp"
#include "table_factory.hpp"
#include "table_impl.hpp"

namespace ptreclaim::pt::detail {

template class table_impl<fmt::x86_64_4>;
template class table_impl<fmt::x86_64_5>;

Result<std::unique_ptr<table>> make_x86_64_table(unsigned levels, const domain_config& cfg,
                                                 mem::frame_pool& pool) {
  PTR_ASSERT(levels == 4 || levels == 5);
  return levels == 4 ? table_impl<fmt::x86_64_4>::create(cfg, pool)
                     : table_impl<fmt::x86_64_5>::create(cfg, pool);
}

}  // namespace ptreclaim::pt::detail
