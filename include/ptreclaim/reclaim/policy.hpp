// The reclamation policies by name. The build-time default comes from CMake
// (PTRECLAIM_DEFAULT_POLICY → ptreclaim::config::default_policy, checked at compile time), the
// run-time choice from the caller: the Linux thread's Kconfig switch, done in C++.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string_view>

#include "ptreclaim/base/status.hpp"
#include "ptreclaim/config.hpp"

namespace ptreclaim::reclaim {

enum class policy_kind : std::uint8_t {
#define PTRECLAIM_POLICY(id, name, safe, needs_caller_flush, summary) id,
#include "ptreclaim/reclaim/policies.def"
#undef PTRECLAIM_POLICY
};

// What the registry (policies.def) says of one policy.
struct policy_info {
  policy_kind kind;
  std::string_view name;
  // Safe policies free a frame only after a covering invalidation completed, provided the
  // caller keeps the policy's documented contract. The unsafe ones are canaries: scenarios are
  // built to catch them.
  bool safe;
  // Safe only if the caller invalidates after each retire, before its CPU's next scheduler
  // point (Xen's iommu_iotlb_flush after the map/unmap): the policy never invalidates on its
  // own, so a workload without caller flushes breaks its contract.
  bool needs_caller_flush;
  std::string_view summary;
};

inline constexpr std::array policy_registry = {
#define PTRECLAIM_POLICY(id, name, safe, needs_caller_flush, summary) \
  policy_info{policy_kind::id, name, safe, needs_caller_flush, summary},
#include "ptreclaim/reclaim/policies.def"
#undef PTRECLAIM_POLICY
};

inline constexpr auto all_policies = [] {
  std::array<policy_kind, policy_registry.size()> out{};
  for (std::size_t i = 0; i < out.size(); ++i)
    out[i] = policy_registry[i].kind;
  return out;
}();

[[nodiscard]] constexpr const policy_info& policy_of(policy_kind k) noexcept {
  return policy_registry[static_cast<std::size_t>(k)];
}
[[nodiscard]] constexpr std::string_view policy_name(policy_kind k) noexcept {
  return policy_of(k).name;
}
[[nodiscard]] constexpr bool policy_is_safe(policy_kind k) noexcept {
  return policy_of(k).safe;
}
[[nodiscard]] constexpr bool policy_needs_caller_flush(policy_kind k) noexcept {
  return policy_of(k).needs_caller_flush;
}

// "xen-tasklet" → policy_kind::xen_tasklet; nullopt for a name that is no policy. constexpr,
// so the build-time default is checked by the compiler.
[[nodiscard]] constexpr std::optional<policy_kind> find_policy(std::string_view name) noexcept {
  for (policy_kind k : all_policies)
    if (policy_name(k) == name) return k;
  return std::nullopt;
}

// "xen-tasklet" → policy_kind::xen_tasklet; invalid_argument naming the valid names otherwise.
[[nodiscard]] inline Result<policy_kind> parse_policy(std::string_view name) {
  if (std::optional<policy_kind> k = find_policy(name)) return *k;
  std::string msg = "unknown policy '" + std::string(name) + "' (valid:";
  for (policy_kind k : all_policies)
    msg += " " + std::string(policy_name(k));
  return Status(errc::invalid_argument, msg + ")");
}

// A build configured with -DPTRECLAIM_DEFAULT_POLICY=<no policy> fails here (and at configure
// time, in src/reclaim/CMakeLists.txt), not at run time.
static_assert(find_policy(config::default_policy).has_value(),
              "PTRECLAIM_DEFAULT_POLICY names no policy (valid: the names in "
              "ptreclaim/reclaim/policies.def)");
inline constexpr policy_kind build_default_policy = *find_policy(config::default_policy);

[[nodiscard]] constexpr policy_kind default_policy() noexcept {
  return build_default_policy;
}

}  // namespace ptreclaim::reclaim
