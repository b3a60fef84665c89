// The page-table operation-sequence harness, shared by the libFuzzer entry point and the replay
// test: decodes bytes into a format, a domain configuration, an address window and a sequence
// of map/unmap operations, runs them through the oracle model (conformance/pt_model.hpp) and
// returns "" or what went wrong.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace ptreclaim::pt::testing {

[[nodiscard]] std::string run_pt_ops(const std::uint8_t* data, std::size_t size);

}  // namespace ptreclaim::pt::testing
