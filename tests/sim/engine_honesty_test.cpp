// Honesty of the model: on 1 and 2 CPUs, the deterministic executor (virtual time, cost model)
// must rank the policies' throughput as the threaded executor (real threads, real time) does,
// and each policy's throughput ratio to `immediate` must agree within 1.5x between the two.
// Several runs per policy: the deterministic figure is their median (the seeds differ); the
// threaded figure is the fastest run, the one least disturbed by the host, as calibrate keeps
// its fastest batch. (Medians were not enough: on this VM a slow spell of a few seconds takes
// every policy's threaded runs down by ~35 % at once, and when it covers three of a policy's
// five runs its median moves by that much.) Pairs of policies closer than 25 % (in either
// executor) are not ranked, since the threaded executor's noise on a small host is larger.
// Like is compared with like: the threaded executor runs softirq items, tasklets and work items
// inline on the CPU's thread and pays no kernel dispatch cost for them (a kworker hand-off
// between user-space threads costs ~20 us on a VM, not a kernel's 1-2 us), so the
// deterministic side runs with the cost file's [kernel_ns] dispatch costs at 0. What is
// checked is everything else the model charges: steps, PTE and frame costs, locks and shared
// lines, invalidation latencies. The PTE write cost is what the page-table code pays per entry
// (calibrated through its map and unmap paths, ~18 ns here); when it was timed as a bare store
// and charged 0, page-table work was free in virtual time only, and sync came out at 0.58 of
// immediate on sva-kernel deterministically against ~0.89 threaded. (With the default kworker
// switch of 1.5 us, linux-global-work on sva-kernel at 1 CPU is at 0.62 of immediate deterministic
// against ~0.8 threaded: that gap is the modelled switch, which only a kernel can time.) This
// compares measurements, so it is labelled `honesty` and kept out of the sanitizer runs; it prints
// every figure it compared. It runs only with PTRECLAIM_HONESTY=1 (`ctest --preset honesty`).
// Scaling too: each policy's ops/s at 2 CPUs over its ops/s at 1 CPU must agree within 1.3x
// between the executors, on every scenario here. Before page-table lines were charged
// (platform::touch_table_line) deterministic sva-kernel doubled from 1 to 2 CPUs while threaded
// runs did not. Until a split was charged one table_fill instead of 512 pte_write, deterministic
// superpage-churn scaled 1.56x against ~1.0x threaded: its operations were twice too long in
// virtual time, nearly all of it under the domain's mapping lock. Another CPU's holds slip into
// the few ns between a superpage fill's 512 holds of that lock; since a hold that overlaps others
// waits for them (busy_intervals::busy_within) it still scales ~1.58x deterministic, ~1.1x
// threaded.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "ptreclaim/calibrate/calibrate.hpp"
#include "sim/engine_test_support.hpp"

namespace ptreclaim::sim {
namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

double fastest(const std::vector<double>& v) {
  return v.empty() ? 0.0 : *std::max_element(v.begin(), v.end());
}

struct figures {
  std::map<std::string, double> det, thr;  // policy -> ops/s (median; fastest)
};

// The built-in scenario with its devices slowed to one step per 2 ms and the pending-frames
// sampler to one sample per 10 ms: they still run throughout, but their threads sleep almost
// always, so a threaded run's busy threads are its CPUs and a 2-core host can time 1 and 2 CPUs.
// (At one device step per 200 us and a sample per 100 us, the actors' wakeups preempted the CPU
// threads ~10,000 times a second, 2,800 context switches in a 2-CPU sva-kernel run against 700
// now, and took 1-to-2-CPU scaling of threaded flush-epoch there from ~1.5x to ~1.3x.)
// The deterministic side is charged `costs`, measured on this host (calibrate): the committed
// default was measured on another machine, and what a cache-line transfer costs differs between
// hosts by more than 2x (51 ns on the host of the default, 121 ns on a later one), which moves
// the modelled 1-to-2-CPU scaling by ~10 %.
scenario honesty_scenario(const std::string& name, const cost_model& costs) {
  scenario s = testing::builtin(name);
  s.costs = costs;
  for (auto& d : s.devices)
    d.step_interval_ns = 2'000'000;
  s.duration.sample_interval_ns = 10'000'000;
  s.costs.softirq_item_ns = 0;  // what the threaded executor does not pay either
  s.costs.tasklet_ns = 0;
  s.costs.work_ns = 0;
  return s;
}

// Repetitions interleave the policies (k outer), so a slow spell of the host is spread over
// every policy instead of landing on one of them.
figures measure(const scenario& s, unsigned cpus, unsigned reps, std::uint64_t ops) {
  std::map<std::string, std::vector<double>> det, thr;
  for (unsigned k = 0; k < reps; ++k) {
    for (const auto& policy : policy_names()) {
      for (executor_kind ex : {executor_kind::deterministic, executor_kind::threaded}) {
        auto r = run(s, testing::options(policy, 100 + k, ops, ex, cpus));
        EXPECT_TRUE(r.ok()) << r.status().to_string();
        if (r.ok())
          (ex == executor_kind::deterministic ? det : thr)[policy].push_back(r->ops_per_s());
      }
    }
  }
  figures f;
  for (const auto& policy : policy_names()) {
    f.det[policy] = median(det[policy]);
    f.thr[policy] = fastest(thr[policy]);
  }
  return f;
}

// Each policy's 1-to-2-CPU scaling, deterministic against threaded, within 1.3x.
void check_scaling(const std::string& name, const figures& one, const figures& two,
                   std::uint64_t ops) {
  std::printf("honesty %s, scaling 1 -> 2 cpus: policy, deterministic, threaded\n", name.c_str());
  for (const auto& p : policy_names()) {
    const double d = two.det.at(p) / one.det.at(p), t = two.thr.at(p) / one.thr.at(p);
    std::printf("  %-20s %6.2fx  %6.2fx\n", p.c_str(), d, t);
    EXPECT_LE(std::max(d, t) / std::min(d, t), 1.3)
        << name << ": " << p << " scales " << d << "x from 1 to 2 CPUs deterministic, " << t
        << "x threaded (figures above; the test's devices are slowed and its kernel dispatch "
           "costs are 0, so the CLI's nearest replay is)\n  ptreclaim scale --scenario "
        << name << " --policy " << p << " --cpus 1,2 --ops " << ops
        << " --seed 100 --executor deterministic   (and --executor threaded)";
  }
}

void check(const std::string& name, unsigned cpus, const figures& f) {
  const double di = f.det.at("immediate"), ti = f.thr.at("immediate");
  std::printf(
      "honesty %s, %u cpu(s): policy, deterministic ops/s (ratio), threaded ops/s (ratio)\n",
      name.c_str(), cpus);
  for (const auto& p : policy_names()) {
    const double dr = f.det.at(p) / di, tr = f.thr.at(p) / ti;
    std::printf("  %-20s %12.0f (%.2f)  %10.0f (%.2f)\n", p.c_str(), f.det.at(p), dr, f.thr.at(p),
                tr);
    EXPECT_LE(std::max(dr, tr) / std::min(dr, tr), 1.5)
        << name << " @" << cpus << ": " << p << " ratio to immediate " << dr
        << " (deterministic) vs " << tr << " (threaded)";
  }
  for (const auto& a : policy_names()) {
    for (const auto& b : policy_names()) {
      if (a >= b) continue;
      const double d = f.det.at(a) / f.det.at(b), t = f.thr.at(a) / f.thr.at(b);
      const bool d_clear = d > 1.25 || d<1 / 1.25, t_clear = t> 1.25 || t < 1 / 1.25;
      if (!d_clear || !t_clear) continue;
      EXPECT_EQ(d > 1, t > 1) << name << " @" << cpus << ": " << a << " vs " << b
                              << " ranked differently: deterministic " << d << ", threaded " << t;
    }
  }
}

TEST(engine_honesty, deterministic_and_threaded_rank_policies_alike) {
  // It times real threads, so it must have the host to itself: a plain `ctest -j2` running it
  // beside other tests failed it. It runs only when asked (the `honesty` test preset sets
  // PTRECLAIM_HONESTY=1), and every other run reports it skipped.
  const char* asked = std::getenv("PTRECLAIM_HONESTY");
  if (asked == nullptr || std::string(asked) != "1") {
    GTEST_SKIP() << "the honesty check times real threads and runs alone, only when asked: "
                    "ctest --preset honesty (release build), or PTRECLAIM_HONESTY=1 ctest -L "
                    "honesty";
  }
  if (testing::sanitized) GTEST_SKIP() << "timing comparisons are meaningless under sanitizers";
  // A threaded run is one host thread per simulated CPU and per actor (devices, sampler) plus
  // the controller. With busy devices and fewer host cores than threads, it measures the host's
  // scheduler (on a 2-core host the same policy varied 0.24x..3.2x between two runs), not the
  // policies; with the devices mostly asleep (honesty_scenario) the CPUs need a core each.
  const unsigned host = std::thread::hardware_concurrency();
  // Long enough that a threaded run is not dominated by starting its threads (at 1,000 ops a
  // run took ~10 ms and `sync` came out faster than `immediate`).
  constexpr std::uint64_t ops_per_cpu = 20'000;
  calibrate_options copt;
  copt.budget_ms = 4000;
  const Result<calibration> cal = calibrate(copt);
  ASSERT_TRUE(cal.ok()) << cal.status().to_string();
  std::printf(
      "honesty: costs measured here: pte_write %.1f ns, frame_alloc %.1f ns, "
      "cache_line_transfer %.1f ns\n",
      cal->measured_ns[static_cast<std::size_t>(cost_kind::pte_write)],
      cal->measured_ns[static_cast<std::size_t>(cost_kind::frame_alloc)],
      cal->measured_ns[static_cast<std::size_t>(cost_kind::cache_line_transfer)]);
  unsigned compared = 0;
  for (const std::string name : {"superpage-churn", "sva-kernel"}) {
    const scenario s = honesty_scenario(name, cal->costs);
    std::map<unsigned, figures> at;
    for (unsigned cpus : {1u, 2u}) {
      const unsigned needed = cpus;
      if (host < needed) {
        std::printf("honesty %s @%u: skipped, %u host threads < %u needed\n", name.c_str(), cpus,
                    host, needed);
        continue;
      }
      at[cpus] = measure(s, cpus, 5, ops_per_cpu);
      check(name, cpus, at[cpus]);
      ++compared;
    }
    if (at.size() == 2) check_scaling(name, at[1], at[2], ops_per_cpu);
  }
  if (compared == 0)
    GTEST_SKIP() << "this host has too few cores for threaded timings (" << host << ")";
}

}  // namespace
}  // namespace ptreclaim::sim
