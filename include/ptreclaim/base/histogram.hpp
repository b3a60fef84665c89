// A log-linear latency histogram (HdrHistogram-like, fixed memory): values in [0, 2^63) fall
// into 64 power-of-two ranges, each split into 16 linear sub-buckets, so any recorded value is
// reported within 1/16 (6.25%) of itself. Recording is O(1) and never allocates. Not
// thread-safe: keep one per CPU and merge().
#pragma once

#include <array>
#include <bit>
#include <cstdint>

namespace ptreclaim {

class log_histogram {
 public:
  static constexpr unsigned sub_bits = 4;
  static constexpr unsigned subs = 1u << sub_bits;
  static constexpr unsigned buckets = 64 * subs;

  void record(std::uint64_t v, std::uint64_t count = 1) noexcept {
    counts_[index(v)] += count;
    total_ += count;
    if (v > max_) max_ = v;
    if (v < min_) min_ = v;
    sum_ += v * count;
  }
  void merge(const log_histogram& o) noexcept {
    for (unsigned i = 0; i < buckets; ++i) counts_[i] += o.counts_[i];
    total_ += o.total_;
    sum_ += o.sum_;
    if (o.max_ > max_) max_ = o.max_;
    if (o.min_ < min_) min_ = o.min_;
  }
  [[nodiscard]] std::uint64_t count() const noexcept { return total_; }
  [[nodiscard]] std::uint64_t max() const noexcept { return max_; }
  [[nodiscard]] std::uint64_t min() const noexcept { return total_ == 0 ? 0 : min_; }
  [[nodiscard]] double mean() const noexcept {
    return total_ == 0 ? 0.0 : static_cast<double>(sum_) / static_cast<double>(total_);
  }
  // The value at quantile q in [0, 1] (upper edge of its bucket, capped at max()).
  [[nodiscard]] std::uint64_t percentile(double q) const noexcept {
    if (total_ == 0) return 0;
    const auto rank = static_cast<std::uint64_t>(q * static_cast<double>(total_ - 1)) + 1;
    std::uint64_t seen = 0;
    for (unsigned i = 0; i < buckets; ++i) {
      seen += counts_[i];
      if (seen >= rank) {
        const std::uint64_t hi = upper_edge(i);
        return hi < max_ ? hi : max_;
      }
    }
    return max_;
  }
  // Bucket access for plots: [lower_edge(i), upper_edge(i)] holds bucket_count(i) values.
  [[nodiscard]] std::uint64_t bucket_count(unsigned i) const noexcept { return counts_[i]; }
  [[nodiscard]] static std::uint64_t lower_edge(unsigned i) noexcept {
    const unsigned exp = i / subs, sub = i % subs;
    if (exp == 0) return sub;
    return (std::uint64_t{subs + sub}) << (exp - 1);
  }
  [[nodiscard]] static std::uint64_t upper_edge(unsigned i) noexcept {
    return i + 1 < buckets ? lower_edge(i + 1) - 1 : ~std::uint64_t{0};
  }
  void reset() noexcept { *this = log_histogram{}; }

 private:
  [[nodiscard]] static unsigned index(std::uint64_t v) noexcept {
    if (v < subs) return static_cast<unsigned>(v);
    const unsigned msb = 63u - static_cast<unsigned>(std::countl_zero(v));  // >= sub_bits
    const unsigned exp = msb - sub_bits + 1;
    const auto sub = static_cast<unsigned>((v >> (msb - sub_bits)) & (subs - 1));
    return exp * subs + sub;
  }

  std::array<std::uint64_t, buckets> counts_{};
  std::uint64_t total_ = 0;
  std::uint64_t sum_ = 0;
  std::uint64_t max_ = 0;
  std::uint64_t min_ = ~std::uint64_t{0};
};

}  // namespace ptreclaim
