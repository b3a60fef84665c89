#include "ptreclaim/base/status.hpp"

namespace ptreclaim {

std::string_view errc_name(errc code) noexcept {
  switch (code) {
    case errc::ok:
      return "ok";
    case errc::invalid_argument:
      return "invalid_argument";
    case errc::out_of_range:
      return "out_of_range";
    case errc::address_in_use:
      return "address_in_use";
    case errc::not_mapped:
      return "not_mapped";
    case errc::no_memory:
      return "no_memory";
    case errc::queue_full:
      return "queue_full";
    case errc::busy:
      return "busy";
    case errc::not_supported:
      return "not_supported";
    case errc::ledger_violation:
      return "ledger_violation";
    case errc::parse_error:
      return "parse_error";
  }
  return "unknown";
}

std::string Status::to_string() const {
  std::string s(errc_name(code_));
  if (!message_.empty()) {
    s += ": ";
    s += message_;
  }
  return s;
}

}  // namespace ptreclaim
