// One factory per format family, defined in the .cpp that instantiates table_impl for it, so
// make_table() (table.cpp) does not instantiate every format in one translation unit.
#pragma once

#include <memory>

#include "ptreclaim/pt/table.hpp"

namespace ptreclaim::pt::detail {

Result<std::unique_ptr<table>> make_vtd_ss_table(unsigned levels, const domain_config& cfg,
                                                 mem::frame_pool& pool);
Result<std::unique_ptr<table>> make_x86_64_table(unsigned levels, const domain_config& cfg,
                                                 mem::frame_pool& pool);
Result<std::unique_ptr<table>> make_amd_v1_table(const domain_config& cfg, mem::frame_pool& pool);

}  // namespace ptreclaim::pt::detail
