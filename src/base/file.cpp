#include "ptreclaim/base/file.hpp"

#include <cerrno>
#include <fstream>
#include <sstream>
#include <system_error>

namespace ptreclaim {

Result<std::string> read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return Status(errc::invalid_argument,
                  "cannot read '" + path + "': " + std::generic_category().message(errno));
  }
  std::ostringstream o;
  o << in.rdbuf();
  if (in.bad()) return Status(errc::invalid_argument, "error reading '" + path + "'");
  return o.str();
}

}  // namespace ptreclaim
