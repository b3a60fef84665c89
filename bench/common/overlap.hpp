// Overlap-gated timing for 2-thread benchmarks on a shared host.
//
// On a 2-vCPU machine that other jobs also load, the two threads of a benchmark often do not
// run at the same time: real-time items/s then measures the host's load, and per-thread CPU
// time hides any contention (there is none while one thread waits for a core). This probe
// splits each thread's loop into chunks of `chunk` iterations and times each chunk with the
// steady clock. A chunk during which the *other* thread finished one or two chunks of its own
// ran concurrently with it ("overlapped"); one during which the other made no progress ran
// alone; one during which the other finished more was preempted while the other ran, and is
// dropped. Medians over the chunks (robust to the chunks the host preempted without it showing)
// give ns per iteration when both threads run and when one runs alone. Thread 0 reports them as
// counters:
//   ns_overlap   median ns per iteration over overlapped chunks (2 threads; 0 if none)
//   ns_alone     median ns per iteration over chunks that ran alone (the only kind at 1 thread)
//   overlap      the share of (kept) chunks that overlapped
// 2 x ns_alone(1 thread) / ns_overlap(2 threads) is the speed-up two threads get while both
// run: what items/s at 2 threads would show on an idle host with two cores.
//
// Cost: one steady-clock read, a relaxed load of the other thread's counter and a relaxed store
// to this thread's (its own cache line) per chunk, i.e. per `chunk` iterations.
// Memory ordering: the chunk counters carry no data; relaxed is enough (a stale read only
// misclassifies one chunk).
#pragma once

#include <benchmark/benchmark.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

namespace ptreclaim::bench {

class overlap_meter {
  struct alignas(64) lane {
    std::atomic<std::uint64_t> chunks{0};   // chunks this thread completed
    std::vector<std::uint64_t> overlapped;  // chunk durations, ns
    std::vector<std::uint64_t> alone;
  };

 public:
  static constexpr int max_threads = 2;
  static constexpr std::uint64_t chunk = 256;  // iterations per timed chunk

  // Thread 0 calls it before its loop; the other threads touch the meter only inside theirs,
  // which Google Benchmark starts after every thread reached it.
  void reset() {
    for (lane& l : lanes_) {
      l.chunks.store(0, std::memory_order_relaxed);
      l.overlapped.clear();
      l.alone.clear();
    }
    finished_.store(0, std::memory_order_relaxed);
  }

  // One per benchmark thread, on its stack: tick() after every iteration, finish() after the loop.
  class probe {
   public:
    probe(overlap_meter& m, const benchmark::State& state)
        : m_(m),
          mine_(m.lanes_[static_cast<std::size_t>(state.thread_index()) % max_threads]),
          other_(m.lanes_[static_cast<std::size_t>(state.thread_index() + 1) % max_threads]) {}

    void tick() {
      if (++n_ % chunk != 0) return;
      const auto now = std::chrono::steady_clock::now();
      const std::uint64_t other = other_.chunks.load(std::memory_order_relaxed);
      if (started_) {
        const auto ns = static_cast<std::uint64_t>(
            std::chrono::duration_cast<std::chrono::nanoseconds>(now - start_).count());
        const std::uint64_t others = other - other_at_start_;
        if (others == 0) {
          mine_.alone.push_back(ns);
        } else if (others <= 2) {
          mine_.overlapped.push_back(ns);
        }
      }
      mine_.chunks.store(mine_.chunks.load(std::memory_order_relaxed) + 1,
                         std::memory_order_relaxed);  // only this thread writes its lane
      start_ = now;
      other_at_start_ = other;
      started_ = true;
    }

    // Every thread calls it after its loop; thread 0 then waits for the others (untimed:
    // Google Benchmark stopped the clock when the loop ended) and reports.
    void finish(benchmark::State& state) {
      m_.finished_.fetch_add(1, std::memory_order_acq_rel);  // (1) pairs with (2)
      if (state.thread_index() != 0) return;
      while (m_.finished_.load(std::memory_order_acquire) <  // (2): the lanes are complete
             static_cast<unsigned>(state.threads()))
        std::this_thread::yield();
      std::vector<std::uint64_t> over, alone;
      for (const lane& l : m_.lanes_) {
        over.insert(over.end(), l.overlapped.begin(), l.overlapped.end());
        alone.insert(alone.end(), l.alone.begin(), l.alone.end());
      }
      const double total = static_cast<double>(over.size() + alone.size());
      state.counters["ns_overlap"] = median(over) / chunk;
      state.counters["ns_alone"] = median(alone) / chunk;
      state.counters["overlap"] = total > 0 ? static_cast<double>(over.size()) / total : 0;
    }

   private:
    static double median(std::vector<std::uint64_t>& v) {
      if (v.empty()) return 0;
      const auto mid = v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2);
      std::nth_element(v.begin(), mid, v.end());
      return static_cast<double>(*mid);
    }

    overlap_meter& m_;
    lane& mine_;
    lane& other_;
    std::uint64_t n_ = 0;
    bool started_ = false;
    std::chrono::steady_clock::time_point start_{};
    std::uint64_t other_at_start_ = 0;
  };

 private:
  std::array<lane, max_threads> lanes_;
  alignas(64) std::atomic<unsigned> finished_{0};
};

}  // namespace ptreclaim::bench
