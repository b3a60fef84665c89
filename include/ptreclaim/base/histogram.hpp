// A log-linear latency histogram (HdrHistogram's layout with 16 sub-buckets per power of two):
// any recorded value is known to within 1/16 (6.25 %); fixed size, exact count, sum, min and max.
// Recording is O(1) and never allocates. Not thread-safe: keep one per CPU and merge().
#pragma once

#include <array>
#include <bit>
#include <cstdint>

namespace ptreclaim {

class log_histogram {
 public:
  static constexpr unsigned sub_bits = 4;  // 16 linear sub-buckets per octave
  static constexpr unsigned sub_count = 1u << sub_bits;
  static constexpr unsigned bucket_count = (64 - sub_bits + 1) * sub_count;

  // Bucket of a value: values below 16 have a bucket each; above, octave e (2^e <= v < 2^(e+1))
  // is split into 16 equal sub-buckets.
  [[nodiscard]] static constexpr unsigned bucket_of(std::uint64_t v) noexcept {
    if (v < sub_count) return static_cast<unsigned>(v);
    const unsigned e = 63u - static_cast<unsigned>(std::countl_zero(v));
    const unsigned sub = static_cast<unsigned>((v >> (e - sub_bits)) & (sub_count - 1));
    return (e - sub_bits + 1) * sub_count + sub;
  }
  // Smallest value that falls in bucket b.
  [[nodiscard]] static constexpr std::uint64_t bucket_lower(unsigned b) noexcept {
    if (b < sub_count) return b;
    const unsigned e = b / sub_count + sub_bits - 1;
    const std::uint64_t sub = b % sub_count;
    return (std::uint64_t{1} << e) + (sub << (e - sub_bits));
  }
  // Largest value that falls in bucket b.
  [[nodiscard]] static constexpr std::uint64_t bucket_upper(unsigned b) noexcept {
    return b + 1 == bucket_count ? ~std::uint64_t{0} : bucket_lower(b + 1) - 1;
  }

  void record(std::uint64_t v, std::uint64_t times = 1) noexcept {
    if (times == 0) return;
    counts_[bucket_of(v)] += times;
    count_ += times;
    sum_ += v * times;
    if (v < min_) min_ = v;
    if (v > max_) max_ = v;
  }
  void merge(const log_histogram& other) noexcept {
    for (unsigned b = 0; b < bucket_count; ++b)
      counts_[b] += other.counts_[b];
    count_ += other.count_;
    sum_ += other.sum_;
    if (other.min_ < min_) min_ = other.min_;
    if (other.max_ > max_) max_ = other.max_;
  }

  [[nodiscard]] std::uint64_t count() const noexcept { return count_; }
  [[nodiscard]] std::uint64_t sum() const noexcept { return sum_; }
  [[nodiscard]] std::uint64_t min() const noexcept { return count_ ? min_ : 0; }
  [[nodiscard]] std::uint64_t max() const noexcept { return max_; }
  [[nodiscard]] double mean() const noexcept {
    return count_ ? static_cast<double>(sum_) / static_cast<double>(count_) : 0.0;
  }
  [[nodiscard]] std::uint64_t bucket(unsigned b) const noexcept { return counts_[b]; }

  // The value at quantile q in [0, 1]: the upper bound of the bucket holding the ceil(q*count)-th
  // smallest value, clamped to [min, max] (so p100 is the exact max and p0 the exact min).
  // 0 for an empty histogram.
  [[nodiscard]] std::uint64_t percentile(double q) const noexcept {
    if (count_ == 0) return 0;
    if (q <= 0.0) return min();
    if (q >= 1.0) return max_;
    auto rank = static_cast<std::uint64_t>(q * static_cast<double>(count_));
    if (static_cast<double>(rank) < q * static_cast<double>(count_)) ++rank;
    if (rank == 0) rank = 1;
    std::uint64_t seen = 0;
    for (unsigned b = 0; b < bucket_count; ++b) {
      seen += counts_[b];
      if (seen >= rank) {
        const std::uint64_t up = bucket_upper(b);
        return up > max_ ? max_ : (up < min() ? min() : up);
      }
    }
    return max_;
  }

 private:
  std::array<std::uint64_t, bucket_count> counts_{};
  std::uint64_t count_ = 0;
  std::uint64_t sum_ = 0;
  std::uint64_t min_ = ~std::uint64_t{0};
  std::uint64_t max_ = 0;
};

}  // namespace ptreclaim
