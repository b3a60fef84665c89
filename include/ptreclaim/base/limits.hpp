// Every bound of the project in one place, with the relations between them asserted
// (TigerBeetle's constants.zig). Run-time configuration may lower these, never exceed them.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ptreclaim::limits {

inline constexpr unsigned page_size_lg2 = 12;  // 4 KiB frames everywhere
inline constexpr std::size_t page_size = std::size_t{1} << page_size_lg2;
inline constexpr unsigned ptes_per_table_lg2 = 9;  // 512 eight-byte entries per table
inline constexpr unsigned ptes_per_table = 1u << ptes_per_table_lg2;
inline constexpr unsigned max_levels = 5;              // 5-level VT-d / LA57
inline constexpr unsigned max_cpus = 256;              // simulated CPUs
inline constexpr unsigned max_iommus = 16;             // IOMMUs in one system
inline constexpr unsigned max_domains = 4096;          // domains in one system
inline constexpr unsigned max_devices = 4096;          // device ids (source ids)
inline constexpr std::uint32_t max_frames = 1u << 24;  // 64 GiB of simulated memory
inline constexpr unsigned max_pool_caches = max_cpus;  // one free-frame cache per CPU
inline constexpr unsigned pool_cache_frames = 64;      // frames one per-CPU cache holds
inline constexpr unsigned inv_queue_min = 256;         // VT-d queue sizes (entries)
inline constexpr unsigned inv_queue_max = 32768;
inline constexpr unsigned xen_free_batch = 512;  // Xen yields every 512 frees

static_assert(std::size_t{ptes_per_table} * 8 == page_size,
              "a table is one frame of 8-byte entries");
static_assert(max_levels * ptes_per_table_lg2 + page_size_lg2 <= 64, "IOVA fits 64 bits");
static_assert(max_pool_caches >= max_cpus, "every CPU may own a frame cache");
static_assert(pool_cache_frames >= 2 && pool_cache_frames <= 4096);
static_assert((inv_queue_min & (inv_queue_min - 1)) == 0 &&
              (inv_queue_max & (inv_queue_max - 1)) == 0);
static_assert(max_domains <= 65536, "VT-d domain ids are 16 bits");

}  // namespace ptreclaim::limits
