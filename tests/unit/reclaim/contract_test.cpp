// The retire contract, for every safe policy on both executors: exactly-once free (S2), never
// before a covering completed invalidation (S3), no device walk reads a freed table (S1), the
// bound respected with back-pressure (S5, max_pending = 8), every frame freed once the machine
// went quiet without drain() (L1), and the pool whole at teardown.
#include <gtest/gtest.h>

#include <algorithm>
#include <tuple>

#include "reclaim_harness.hpp"

namespace ptreclaim::reclaim::test {
namespace {

struct contract_param {
  policy_kind policy;
  exec_kind exec;
  bool caller_flush;
  std::uint32_t batch_frames = 1;  // flush-epoch: retires per stamped batch
};

std::string param_name(const testing::TestParamInfo<contract_param>& i) {
  return ident(policy_name(i.param.policy)) + "_" + exec_name(i.param.exec) +
         (i.param.caller_flush ? "_flush" : "_noflush") +
         (i.param.batch_frames > 1 ? "_batch" + std::to_string(i.param.batch_frames) : "");
}

std::vector<contract_param> all_params() {
  std::vector<contract_param> out;
  for (policy_kind k : safe_policies) {
    for (exec_kind e : {exec_kind::deterministic, exec_kind::threaded}) {
      out.push_back({k, e, true});
      // xen-tasklet depends on the caller's flush (its documented contract); the others
      // invalidate on their own and must be safe without it.
      if (k != policy_kind::xen_tasklet) out.push_back({k, e, false});
      if (k == policy_kind::flush_epoch) {  // open batches that take several retires
        out.push_back({k, e, true, 8});
        out.push_back({k, e, false, 8});
      }
    }
  }
  return out;
}

class Contract : public testing::TestWithParam<contract_param> {};

// Random churn on every CPU's region of two domains; devices walk meanwhile.
void run_churn(harness& h, bool caller_flush, unsigned ops_per_cpu, std::uint64_t seed) {
  const unsigned cpus = h.config().cpus;
  const unsigned domains = h.config().domains;
  struct cpu_state {
    prng rng{1};
    unsigned done = 0;
    unsigned cleared = 0;
  };
  auto st = std::make_shared<std::vector<cpu_state>>(cpus);
  for (unsigned c = 0; c < cpus; ++c)
    (*st)[c].rng = prng(seed).fork(c + 1);
  for (unsigned c = 0; c < cpus; ++c) {
    h.ex().set_program(c, [&h, st, caller_flush, ops_per_cpu, domains](unsigned cpu) {
      cpu_state& s = (*st)[cpu];
      harness::step_options o;
      o.caller_flush = caller_flush;
      if (s.done < ops_per_cpu) {
        ++s.done;
        const auto di = static_cast<unsigned>(s.rng.below(domains));
        mutation m = h.releasing(cpu, di);
        const region_state rs = h.state(cpu, di);
        if (rs == region_state::coalesced) {
          const std::uint64_t r = s.rng.below(10);
          m = r < 6 ? mutation::churn : r < 8 ? mutation::split : mutation::clear;
        } else if (rs == region_state::split && s.rng.chance(1, 5)) {
          m = mutation::clear;
        }
        // A softirq point between retire and flush is legal for every safe policy.
        o.softirq_point = s.rng.chance(1, 8);
        h.mutate(cpu, di, m, static_cast<unsigned>(s.rng.below(512)), o);
        return s.rng.chance(1, 2) ? runtime::step_result::yield() : runtime::step_result::busy();
      }
      if (s.cleared < domains) {  // tear the regions down (may release level-2 tables)
        h.mutate(cpu, s.cleared++, mutation::clear, 0, o);
        return runtime::step_result::yield();
      }
      return runtime::step_result::finished();
    });
  }
}

TEST_P(Contract, ExactlyOnceCoveredBoundedAndEventual) {
  const contract_param p = GetParam();
  const bool threaded = p.exec == exec_kind::threaded;
  const unsigned seeds = threaded ? 2 : (under_sanitizer ? 2 : 4);
  const unsigned ops = threaded ? (under_sanitizer ? 12 : 40) : (under_sanitizer ? 25 : 60);
  for (unsigned seed = 1; seed <= seeds; ++seed) {
    harness_config c;
    c.policy = p.policy;
    c.exec = p.exec;
    c.cpus = threaded ? 2 : 3;
    c.domains = 2;
    c.seed = seed;
    c.device_gap_ns = threaded ? 20'000 : 300;
    c.reclaim.batch_frames = p.batch_frames;
    harness h(c);
    run_churn(h, p.caller_flush, ops, seed);
    h.run();
    const std::string ctx = std::string(policy_name(p.policy)) + " " + exec_name(p.exec) +
                            " seed " + std::to_string(seed) + " (replay: this test, same seed)";
    h.expect_contract(ctx);
    const reclaim_stats st = h.policy().stats();
    if (p.policy == policy_kind::xen_tasklet && !threaded) {
      // Half the steps return busy (no scheduler point, so no tasklet): a per-CPU budget of
      // 8/3 frames must have been hit.
      EXPECT_GT(st.backpressure, 0u) << ctx << ": max_pending = 8 never forced back-pressure";
    }
    EXPECT_TRUE(h.policy().drain().ok());
    EXPECT_EQ(h.policy().pending(), 0u);
    h.teardown_and_expect_whole();
    if (HasFailure()) break;
  }
}

INSTANTIATE_TEST_SUITE_P(Safe, Contract, testing::ValuesIn(all_params()), param_name);

// flush-epoch with its default configuration and no caller flush (Linux's kernel tables): one
// CPU retires single-frame gathers well within flush_age_ns. The policy must ask for its own
// asynchronous invalidation before its ring of 256 batch descriptors fills; the watermark of
// 512 *frames* alone never fires first when every batch holds one frame, so the producer fell
// into synchronous back-pressure (invalidate and wait on the retire path) every 256 retires.
TEST(FlushEpoch, AsksForItsOwnFlushAtTheWatermark) {
  harness_config c;
  c.policy = policy_kind::flush_epoch;
  c.devices = false;
  c.reclaim = reclaim_config{};        // the defaults under test, except:
  c.reclaim.flush_age_ns = 2'000'000;  // the timer stays out of the way until the end
  harness h(c);
  auto n = std::make_shared<unsigned>(0);
  h.ex().set_program(0, [&h, n](unsigned cpu) {
    if (*n == 300) return runtime::step_result::finished();
    h.mutate(cpu, 0, h.releasing(cpu, 0), 5 + *n, {.caller_flush = false});
    ++*n;
    return runtime::step_result::busy();
  });
  h.ex().set_program(1, [](unsigned) { return runtime::step_result::finished(); });
  h.run();
  h.expect_contract("flush-epoch defaults, no caller flush");
  const reclaim_stats st = h.policy().stats();
  EXPECT_EQ(st.backpressure, 0u) << "the ring filled: the producer invalidated and waited";
  EXPECT_GT(st.invalidations, 0u);
  // Asked at the watermark; a few more frames arrive while the invalidation is processed.
  EXPECT_LE(st.peak_pending, 2u * c.reclaim.watermark);
  h.teardown_and_expect_whole();
}

// With the caller flushing after every retire (Xen's contract), every batch rides on the
// caller's invalidation: the policy closes its open batch before the caller submits
// (before_caller_invalidation), so the caller's epoch follows the batch's stamp.
TEST(FlushEpoch, RidesOnEveryCallerFlush) {
  harness_config c;
  c.policy = policy_kind::flush_epoch;
  c.devices = false;
  c.reclaim = reclaim_config{};
  c.reclaim.flush_age_ns = 2'000'000;  // the timer stays out of the way until the end
  c.reclaim.batch_frames = 64;         // open batches: the hook must close them before the flush
  harness h(c);
  auto n = std::make_shared<unsigned>(0);
  h.ex().set_program(0, [&h, n](unsigned cpu) {
    if (*n == 200) return runtime::step_result::finished();
    h.mutate(cpu, 0, h.releasing(cpu, 0), 5 + *n, {.caller_flush = true});
    ++*n;
    return runtime::step_result::busy();
  });
  h.ex().set_program(1, [](unsigned) { return runtime::step_result::finished(); });
  h.run();
  h.expect_contract("flush-epoch defaults, caller flush");
  const reclaim_stats st = h.policy().stats();
  EXPECT_EQ(st.invalidations, 0u) << "the policy asked for flushes of its own";
  EXPECT_EQ(st.backpressure, 0u);
  EXPECT_GT(st.rides, 0u);
  EXPECT_EQ(st.pending, 0u);
  h.teardown_and_expect_whole();
}

// Without caller flushes, retires of one domain share a batch (one stamp) until the watermark
// asks for a flush: invalidations are about one per watermark's worth of frames, not per retire.
TEST(FlushEpoch, BatchesRetiresUntilTheWatermark) {
  harness_config c;
  c.policy = policy_kind::flush_epoch;
  c.devices = false;
  c.reclaim = reclaim_config{};
  c.reclaim.flush_age_ns = 2'000'000;
  c.reclaim.watermark = 16;
  c.reclaim.batch_frames = 64;
  harness h(c);
  auto n = std::make_shared<unsigned>(0);
  h.ex().set_program(0, [&h, n](unsigned cpu) {
    if (*n == 400) return runtime::step_result::finished();
    h.mutate(cpu, 0, h.releasing(cpu, 0), 5 + *n, {.caller_flush = false});
    ++*n;
    return runtime::step_result::busy();
  });
  h.ex().set_program(1, [](unsigned) { return runtime::step_result::finished(); });
  h.run();
  h.expect_contract("flush-epoch, watermark 16, no caller flush");
  const reclaim_stats st = h.policy().stats();
  ASSERT_GT(st.retired, 16u);
  EXPECT_GT(st.invalidations, 0u);
  EXPECT_LE(st.invalidations, st.retired / 16 + 2) << st.retired << " frames retired";
  EXPECT_LE(st.peak_pending, 2u * c.reclaim.watermark);
  h.teardown_and_expect_whole();
}

// drain() runs on one CPU while the other CPUs' timers fire (threaded: concurrently): each ring
// is emptied with its timer killed first, so drain and a timer never touch a ring together
// (under TSan a race here is a failure), and nothing is lost or freed early.
class DrainWhileTimersRun : public testing::TestWithParam<exec_kind> {};

TEST_P(DrainWhileTimersRun, FlushEpochDrainsEveryRingSafely) {
  harness_config c;
  c.policy = policy_kind::flush_epoch;
  c.exec = GetParam();
  c.cpus = 4;
  c.devices = false;
  c.reclaim = reclaim_config{};
  c.reclaim.flush_age_ns = 20'000;  // timers fire all the time
  c.reclaim.poll_ns = 1'000;
  c.reclaim.watermark = 1000;
  harness h(c);
  auto done = std::make_shared<std::atomic<unsigned>>(0);
  for (unsigned cpu = 1; cpu < c.cpus; ++cpu) {
    auto n = std::make_shared<unsigned>(0);
    h.ex().set_program(cpu, [&h, n, done](unsigned me) {
      if (*n == 40) {
        done->fetch_add(1);
        return runtime::step_result::finished();
      }
      h.mutate(me, 0, h.releasing(me, 0), 3 + *n, {.caller_flush = false});
      ++*n;
      return runtime::step_result::busy();
    });
  }
  h.ex().set_program(0, [&h, done, cpus = c.cpus](unsigned) {
    if (done->load() < cpus - 1) return runtime::step_result::yield();
    if (Status s = h.policy().drain(); !s.ok()) h.record_failure(s.to_string());
    if (h.policy().pending() != 0) h.record_failure("drain() left frames pending");
    return runtime::step_result::finished();
  });
  h.run();
  h.expect_contract(std::string("drain while timers run, ") + exec_name(c.exec));
  h.teardown_and_expect_whole();
}

INSTANTIATE_TEST_SUITE_P(Executors, DrainWhileTimersRun,
                         testing::Values(exec_kind::deterministic, exec_kind::threaded),
                         [](const testing::TestParamInfo<exec_kind>& i) {
                           return std::string(exec_name(i.param));
                         });

// make_reclaimer refuses bounds of zero with an error naming the field, for every policy.
TEST(ReclaimConfig, ZeroBoundsAreErrors) {
  runtime::deterministic_executor ex(runtime::run_config{.cpus = 2});
  mem::frame_pool pool(mem::pool_config{.capacity_frames = 64}, ex);
  iommu::system sys(pool, {}, ex);
  iommu_backend b(sys);
  for (policy_kind k : all_policies) {
    reclaim_config c;
    c.max_pending = 0;
    auto r = make_reclaimer(k, reclaim_env{ex, b, pool, nullptr}, c);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().to_string().find("max_pending"), std::string::npos);
    c = reclaim_config{};
    c.batches_per_cpu = 0;
    EXPECT_FALSE(make_reclaimer(k, reclaim_env{ex, b, pool, nullptr}, c).ok());
    c = reclaim_config{};
    c.flush_age_ns = 0;  // never: accepted
    EXPECT_TRUE(make_reclaimer(k, reclaim_env{ex, b, pool, nullptr}, c).ok());
    c = reclaim_config{};
    c.batch_frames = 0;
    auto bf = make_reclaimer(k, reclaim_env{ex, b, pool, nullptr}, c);
    ASSERT_FALSE(bf.ok());
    EXPECT_NE(bf.status().to_string().find("batch_frames"), std::string::npos);
    c = reclaim_config{};
    auto ok = make_reclaimer(k, reclaim_env{ex, b, pool, nullptr}, c);
    ASSERT_TRUE(ok.ok());
    EXPECT_EQ((*ok)->kind(), k);
    EXPECT_EQ((*ok)->name(), policy_name(k));
  }
}

// The build's default (PTRECLAIM_DEFAULT_POLICY) is a real policy: known at compile time, named
// as configured, and buildable.
TEST(ReclaimConfig, BuildDefaultIsARealPolicy) {
  static_assert(policy_name(build_default_policy) == config::default_policy);
  EXPECT_NE(std::find(all_policies.begin(), all_policies.end(), default_policy()),
            all_policies.end());
  auto parsed = parse_policy(config::default_policy);
  ASSERT_TRUE(parsed.ok()) << parsed.status().to_string();
  EXPECT_EQ(*parsed, default_policy());
  runtime::deterministic_executor ex(runtime::run_config{.cpus = 2});
  mem::frame_pool pool(mem::pool_config{.capacity_frames = 64}, ex);
  iommu::system sys(pool, {}, ex);
  iommu_backend b(sys);
  auto r = make_reclaimer(default_policy(), reclaim_env{ex, b, pool, nullptr});
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ((*r)->name(), config::default_policy);
}

TEST(ReclaimConfig, PolicyNamesRoundTrip) {
  for (policy_kind k : all_policies) {
    auto r = parse_policy(policy_name(k));
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(*r, k);
  }
  auto bad = parse_policy("xen");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().to_string().find("flush-epoch"), std::string::npos);
}

}  // namespace
}  // namespace ptreclaim::reclaim::test
