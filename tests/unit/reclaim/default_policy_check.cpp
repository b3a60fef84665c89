// Compiled (syntax only) by CTest against a config header generated with a chosen
// PTRECLAIM_DEFAULT_POLICY (tests/unit/reclaim/CMakeLists.txt): a name that is no policy must
// fail in policy.hpp's static_assert; a valid one must compile and resolve to EXPECTED_POLICY.
#include "ptreclaim/reclaim/policy.hpp"

static_assert(ptreclaim::reclaim::default_policy() ==
              ptreclaim::reclaim::policy_kind::EXPECTED_POLICY);

int main() {
  return 0;
}
