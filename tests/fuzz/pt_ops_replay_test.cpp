// Replays the checked-in corpus (tests/fuzz/corpus/pt_ops/) and seeded random inputs through
// the same function the libFuzzer harness calls, so the harness runs in every build.
// A failing random input prints its seed; replay it with PT_OPS_SEED=<seed>.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

#include "fuzz/pt_ops_fuzz.hpp"
#include "ptreclaim/base/prng.hpp"

namespace ptreclaim::pt::testing {
namespace {

TEST(PtOpsReplay, Corpus) {
  namespace fs = std::filesystem;
  const fs::path dir = PT_OPS_CORPUS_DIR;
  ASSERT_TRUE(fs::is_directory(dir)) << dir;
  unsigned n = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    std::ifstream in(entry.path(), std::ios::binary);
    const std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                                          std::istreambuf_iterator<char>());
    EXPECT_EQ(run_pt_ops(bytes.data(), bytes.size()), "") << entry.path();
    ++n;
  }
  EXPECT_GT(n, 0u) << "empty corpus";
}

TEST(PtOpsReplay, SeededRandomInputs) {
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
  const std::uint64_t count = 20;
#else
  const std::uint64_t count = 40;
#endif
  std::uint64_t first = 1;
  std::uint64_t last = count;
  if (const char* s = std::getenv("PT_OPS_SEED")) first = last = std::strtoull(s, nullptr, 0);
  for (std::uint64_t seed = first; seed <= last; ++seed) {
    prng rng(seed);
    std::vector<std::uint8_t> bytes(2 + 8 * rng.between(1, 48));
    for (auto& b : bytes)
      b = static_cast<std::uint8_t>(rng.next());
    ASSERT_EQ(run_pt_ops(bytes.data(), bytes.size()), "")
        << "seed " << seed << "; replay with PT_OPS_SEED=" << seed << " ./pt_ops_replay_test";
  }
}

}  // namespace
}  // namespace ptreclaim::pt::testing
