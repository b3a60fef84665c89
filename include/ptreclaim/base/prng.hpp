// The one PRNG of the project: xoshiro256** seeded through splitmix64. Everything random takes
// a seed and derives child generators with fork(), so one --seed reproduces a whole run.
#pragma once

#include <cstdint>

namespace ptreclaim {

class prng {
 public:
  using result_type = std::uint64_t;
  explicit prng(std::uint64_t seed) noexcept { reseed(seed); }

  void reseed(std::uint64_t seed) noexcept {
    std::uint64_t x = seed;
    for (auto& word : s_)
      word = splitmix64(x);
  }

  std::uint64_t next() noexcept {
    const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const std::uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }
  std::uint64_t operator()() noexcept { return next(); }
  static constexpr std::uint64_t min() noexcept { return 0; }
  static constexpr std::uint64_t max() noexcept { return ~std::uint64_t{0}; }

  // Uniform in [0, bound); bound > 0. Lemire's multiply-shift (bias below 2^-64 * bound).
  std::uint64_t below(std::uint64_t bound) noexcept {
    __extension__ using u128 = unsigned __int128;
    return static_cast<std::uint64_t>((static_cast<u128>(next()) * bound) >> 64);
  }
  // Uniform in [lo, hi] inclusive.
  std::uint64_t between(std::uint64_t lo, std::uint64_t hi) noexcept {
    return lo + below(hi - lo + 1);
  }
  // True with probability num/den.
  bool chance(std::uint64_t num, std::uint64_t den) noexcept { return below(den) < num; }

  // An independent child stream; `salt` names the purpose so adding a consumer does not shift
  // the streams of the others.
  [[nodiscard]] prng fork(std::uint64_t salt) const noexcept { return prng(fork_seed(salt)); }
  // The seed of fork(salt), for components that take a seed rather than a generator.
  [[nodiscard]] std::uint64_t fork_seed(std::uint64_t salt) const noexcept {
    std::uint64_t x = s_[0] ^ (salt * 0x9e3779b97f4a7c15ULL) ^ s_[3];
    return splitmix64(x);
  }

  static std::uint64_t splitmix64(std::uint64_t& x) noexcept {
    std::uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }

 private:
  static constexpr std::uint64_t rotl(std::uint64_t x, int k) noexcept {
    return (x << k) | (x >> (64 - k));
  }
  std::uint64_t s_[4]{};
};

}  // namespace ptreclaim
