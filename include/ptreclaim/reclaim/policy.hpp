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
  immediate,            // frees at once: unsafe on purpose, the cost floor and a canary
  sync,                 // invalidates, waits, frees inline: safe and slow
  xen_tasklet,          // Xen 4.17: per-CPU list + plain tasklet; the caller flushes first
  xen_softirq_tasklet,  // the variant Xen rejected: a softirq tasklet may free too early
  linux_global_work,    // Linux 6.19: global list + spinlock + one work item that invalidates
  flush_epoch,          // ours: per-CPU, lock-free, tagged with the flush epoch that frees it
};

inline constexpr std::array<policy_kind, 6> all_policies = {
    policy_kind::immediate,         policy_kind::sync,
    policy_kind::xen_tasklet,       policy_kind::xen_softirq_tasklet,
    policy_kind::linux_global_work, policy_kind::flush_epoch};

[[nodiscard]] constexpr std::string_view policy_name(policy_kind k) noexcept {
  switch (k) {
    case policy_kind::immediate:
      return "immediate";
    case policy_kind::sync:
      return "sync";
    case policy_kind::xen_tasklet:
      return "xen-tasklet";
    case policy_kind::xen_softirq_tasklet:
      return "xen-softirq-tasklet";
    case policy_kind::linux_global_work:
      return "linux-global-work";
    case policy_kind::flush_epoch:
      return "flush-epoch";
  }
  return "?";
}

// Safe policies free a frame only after a covering invalidation completed, provided the caller
// keeps the policy's documented contract (xen-tasklet: the caller's flush comes before the next
// scheduler point). The unsafe ones are canaries: scenarios are built to catch them.
[[nodiscard]] constexpr bool policy_is_safe(policy_kind k) noexcept {
  return k != policy_kind::immediate && k != policy_kind::xen_softirq_tasklet;
}

// Policies that are safe only if the caller invalidates after each retire, before its CPU's
// next scheduler point (Xen's iommu_iotlb_flush after the map/unmap): they never invalidate
// on their own. A workload without caller flushes breaks their contract.
[[nodiscard]] constexpr bool policy_needs_caller_flush(policy_kind k) noexcept {
  return k == policy_kind::xen_tasklet || k == policy_kind::xen_softirq_tasklet;
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
              "PTRECLAIM_DEFAULT_POLICY names no policy (valid: immediate sync xen-tasklet "
              "xen-softirq-tasklet linux-global-work flush-epoch)");
inline constexpr policy_kind build_default_policy = *find_policy(config::default_policy);

[[nodiscard]] constexpr policy_kind default_policy() noexcept {
  return build_default_policy;
}

}  // namespace ptreclaim::reclaim
