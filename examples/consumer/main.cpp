// Links the installed ptreclaim package and exercises the frame pool's ledger.
#include <cstdio>

#include "ptreclaim/config.hpp"
#include "ptreclaim/mem/frame_pool.hpp"

int main() {
  using namespace ptreclaim;
  mem::frame_pool pool({.capacity_frames = 16});
  auto table = pool.alloc_table(/*domain=*/1, /*level=*/1);
  if (!table.ok()) return 1;
  if (!pool.mark_retired(*table).ok() || !pool.free(*table, "consumer").ok()) return 1;
  const bool caught = !pool.free(*table, "consumer-again").ok();  // a double free is refused
  std::printf("ptreclaim %.*s consumer: default policy %.*s, double free caught: %s, leaks: %zu\n",
              static_cast<int>(config::version.size()), config::version.data(),
              static_cast<int>(config::default_policy.size()), config::default_policy.data(),
              caught ? "yes" : "no", pool.leaks().size());
  return caught && pool.leaks().empty() ? 0 : 1;
}
