// Reading a whole text file, with the error every layer reports the same way: "cannot read
// 'PATH': REASON" (invalid_argument: a path the user gave), "error reading 'PATH'".
#pragma once

#include <string>

#include "ptreclaim/base/status.hpp"

namespace ptreclaim {

[[nodiscard]] Result<std::string> read_text_file(const std::string& path);

}  // namespace ptreclaim
