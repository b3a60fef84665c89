// Scenario files: every built-in parses and validates; bad input is rejected with file:line:reason;
// overlays, cost files and overrides behave as documented.
#include "ptreclaim/scenario/scenario.hpp"

#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <string>
#include <string_view>

namespace ptreclaim::sim {
namespace {

// A minimal valid scenario; tests append or replace lines to break it.
const char* const minimal = R"(name = "t"
kind = "superpage-churn"
cpus = 2
[iommu]
count = 2
[[domains]]
count = 1
format = "vtd-ss-4"
[[devices]]
count = 1
)";

std::string message_of(std::string_view text, const std::string& file = "t.toml") {
  auto r = parse_scenario(text, file);
  EXPECT_FALSE(r.ok()) << "expected a parse error for:\n" << text;
  if (r.ok()) return {};
  EXPECT_EQ(r.status().code(), errc::parse_error);
  return r.status().message();
}

class temp_dir {
 public:
  temp_dir() {
    path_ = std::filesystem::temp_directory_path() /
            ("ptreclaim_scenario_test_" + std::to_string(::getpid()) + "_" +
             std::to_string(counter_++));
    std::filesystem::create_directories(path_);
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string write(const std::string& name, std::string_view text) const {
    const auto p = path_ / name;
    std::ofstream(p) << text;
    return p.string();
  }

 private:
  static inline int counter_ = 0;
  std::filesystem::path path_;
};

TEST(Scenario, EveryBuiltinParsesAndValidates) {
  ASSERT_GE(builtin_scenarios().size(), 6u);
  for (const char* name : {"superpage-churn", "sva-kernel", "dma-storm", "hotplug-chaos",
                           "canary-immediate", "canary-softirq"}) {
    SCOPED_TRACE(name);
    const builtin_scenario* b = find_builtin(name);
    ASSERT_NE(b, nullptr);
    EXPECT_FALSE(b->summary.empty());
    auto s = load_scenario(name);
    ASSERT_TRUE(s.ok()) << s.status().to_string();
    EXPECT_EQ(s->name, name);
    EXPECT_EQ(s->source, std::string("builtin:") + name);
    EXPECT_TRUE(validate(*s).ok());
  }
  EXPECT_NE(find_builtin(default_scenario_name), nullptr);
}

TEST(Scenario, BuiltinsSayWhatTheIssueAsks) {
  auto sc = load_scenario("superpage-churn");
  ASSERT_TRUE(sc.ok());
  EXPECT_EQ(sc->kind, workload_kind::superpage_churn);
  EXPECT_GE(sc->iommu.count, 2u);
  EXPECT_EQ(sc->domains[0].format, pt::format_kind::vtd_ss_4);
  EXPECT_EQ(sc->domains[0].mode, pt::concurrency_mode::locked);
  EXPECT_GT(sc->domain_count(), 1u);
  EXPECT_FALSE(sc->hotplug.enabled);

  auto sva = load_scenario("sva-kernel");
  ASSERT_TRUE(sva.ok());
  EXPECT_EQ(sva->kind, workload_kind::sva_kernel);
  EXPECT_EQ(sva->domains[0].format, pt::format_kind::x86_64_4);
  EXPECT_EQ(sva->domains[0].mode, pt::concurrency_mode::lock_free);
  // Linux's vfree flushes only the CPU TLB: the policy's invalidation is the IOMMU's only one.
  EXPECT_EQ(sva->caller.flush, caller_flush::none);
  EXPECT_EQ(sva->caller.flush_range, caller_range::gather);
  EXPECT_EQ(sva->sva_kernel.pasids, 4u);
  EXPECT_TRUE(sva->sva_kernel.ats);
  EXPECT_EQ(sva->iommu.unit.latency.inv_devtlb_ns, 3000u);
  auto req = parse_scenario("base = \"superpage-churn\"\n[caller]\nflush_range = \"request\"\n",
                            "req.toml");
  ASSERT_TRUE(req.ok()) << req.status().to_string();
  EXPECT_EQ(req->caller.flush_range, caller_range::request);
  EXPECT_EQ(caller_range_name(caller_range::request), "request");
  EXPECT_EQ(caller_range_name(caller_range::xen), "xen");
  auto bad =
      parse_scenario("base = \"superpage-churn\"\n[caller]\nflush_range = \"pages\"\n", "bad.toml");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().to_string().find("flush_range"), std::string::npos)
      << bad.status().to_string();

  auto dma = load_scenario("dma-storm");
  ASSERT_TRUE(dma.ok());
  EXPECT_EQ(dma->kind, workload_kind::dma_storm);
  EXPECT_EQ(dma->domain_count(), 1u);
  EXPECT_EQ(dma->dma_storm.buffer_bytes, 4096u);

  // hotplug-chaos is superpage-churn plus [hotplug].
  auto chaos = load_scenario("hotplug-chaos");
  ASSERT_TRUE(chaos.ok());
  EXPECT_TRUE(chaos->hotplug.enabled);
  EXPECT_EQ(chaos->kind, sc->kind);
  EXPECT_EQ(chaos->domain_count(), sc->domain_count());
  EXPECT_EQ(chaos->superpage_churn.region_bytes, sc->superpage_churn.region_bytes);

  auto canary = load_scenario("canary-softirq");
  ASSERT_TRUE(canary.ok());
  EXPECT_EQ(canary->caller.softirq, softirq_point::before_caller_flush);
  EXPECT_EQ(canary->devices[0].target, access_target::replaced);
  auto imm = load_scenario("canary-immediate");
  ASSERT_TRUE(imm.ok());
  EXPECT_EQ(imm->devices[0].target, access_target::replaced);
}

TEST(Scenario, MinimalTakesDefaults) {
  auto s = parse_scenario(minimal, "t.toml");
  ASSERT_TRUE(s.ok()) << s.status().to_string();
  EXPECT_EQ(s->cpus, 2u);
  EXPECT_EQ(s->iommu.count, 2u);
  EXPECT_EQ(s->group_iommus(0).size(), 2u);
  EXPECT_FALSE(s->seed.has_value());
  EXPECT_EQ(s->duration.ops_per_cpu, duration_params{}.ops_per_cpu);
  EXPECT_EQ(s->cost_source(), default_cost_source);
  EXPECT_EQ(s->costs, default_cost_model());
}

TEST(Scenario, UnknownKeyNamesFileLineAndKnownKeys) {
  const std::string msg = message_of(std::string(minimal) + "colour = 3\n");
  EXPECT_NE(msg.find("t.toml:11:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("unknown key 'colour'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("known:"), std::string::npos) << msg;
}

TEST(Scenario, UnknownKeyInsideASection) {
  const std::string msg = message_of(std::string(minimal) + "[memory]\nframez = 10\n");
  EXPECT_NE(msg.find("t.toml:12:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("unknown key 'framez' in [memory]"), std::string::npos) << msg;
}

TEST(Scenario, UnknownSection) {
  const std::string msg = message_of(std::string(minimal) + "[turbo]\nenabled = true\n");
  EXPECT_NE(msg.find("t.toml:11:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("unknown section [turbo]"), std::string::npos) << msg;
}

TEST(Scenario, SectionOfAnotherKindIsRejected) {
  const std::string msg = message_of(std::string(minimal) + "[dma-storm]\nbuffers_per_cpu = 4\n");
  EXPECT_NE(msg.find("t.toml:11:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("does not apply to kind = \"superpage-churn\""), std::string::npos) << msg;
}

TEST(Scenario, WrongType) {
  std::string text = minimal;
  text.replace(text.find("cpus = 2"), 8, "cpus = \"two\"");
  const std::string msg = message_of(text);
  EXPECT_NE(msg.find("t.toml:3:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'cpus' must be an integer, not a string"), std::string::npos) << msg;
}

TEST(Scenario, CpusOutOfRange) {
  for (const char* bad : {"cpus = 0", "cpus = 300", "cpus = -1"}) {
    SCOPED_TRACE(bad);
    std::string text = minimal;
    text.replace(text.find("cpus = 2"), 8, bad);
    const std::string msg = message_of(text);
    EXPECT_NE(msg.find("t.toml:3:"), std::string::npos) << msg;
    EXPECT_NE(msg.find("is out of range (1 .. 256)"), std::string::npos) << msg;
  }
}

TEST(Scenario, NegativeLatency) {
  const std::string msg = message_of(std::string(minimal) + "[iommu.latency]\ninv_wait_ns = -5\n");
  EXPECT_NE(msg.find("t.toml:12:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'iommu.latency.inv_wait_ns' = -5 is out of range"), std::string::npos) << msg;
}

TEST(Scenario, SvaPasidAndDeviceTlbBoundsAreChecked) {
  const std::string sva = "base = \"sva-kernel\"\n";
  std::string msg = message_of(sva + "[sva-kernel]\npasids = 0\n");
  EXPECT_NE(msg.find("'sva-kernel.pasids' = 0 is out of range (1 .. 63)"), std::string::npos)
      << msg;
  msg = message_of(sva + "[sva-kernel]\npasids = 64\n");
  EXPECT_NE(msg.find("out of range (1 .. 63)"), std::string::npos) << msg;
  msg = message_of(sva + "[sva-kernel]\ndevtlb_entries = 12\n");
  EXPECT_NE(msg.find("'sva-kernel.devtlb_entries' must be a multiple of 8"), std::string::npos)
      << msg;
  msg = message_of(sva + "[iommu.latency]\ninv_devtlb_ns = -1\n");
  EXPECT_NE(msg.find("'iommu.latency.inv_devtlb_ns' = -1 is out of range"), std::string::npos)
      << msg;
  auto ok = parse_scenario(sva + "[sva-kernel]\npasids = 63\nats = false\n", "ok.toml");
  ASSERT_TRUE(ok.ok()) << ok.status().to_string();
  EXPECT_EQ(ok->sva_kernel.pasids, 63u);
  EXPECT_FALSE(ok->sva_kernel.ats);
}

TEST(Scenario, UnknownFormat) {
  std::string text = minimal;
  text.replace(text.find("\"vtd-ss-4\""), 10, "\"arm-smmu\"");
  const std::string msg = message_of(text);
  EXPECT_NE(msg.find("t.toml:8:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("unknown page-table format 'arm-smmu'"), std::string::npos) << msg;
}

TEST(Scenario, BadEnumValueListsChoices) {
  const std::string msg = message_of(std::string(minimal) + "[caller]\nflush = \"sometimes\"\n");
  EXPECT_NE(msg.find("t.toml:12:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("\"each-op\", \"batched\", \"none\""), std::string::npos) << msg;
}

// [iommu.driver]: the queue lock's shape (docs/iommu-model.md, "The queue lock").
TEST(Scenario, IommuDriverIsReadAndBadValuesAreNamed) {
  auto s =
      parse_scenario(std::string(minimal) +
                         "[iommu.driver]\nkind = \"unlocked-poll\"\npoll_ns = 300\nrelax_ns = 0\n",
                     "t.toml");
  ASSERT_TRUE(s.ok()) << s.status().to_string();
  EXPECT_EQ(s->iommu.unit.driver.kind, iommu::queue_driver::unlocked_poll);
  EXPECT_EQ(s->iommu.unit.driver.poll_ns, 300u);
  EXPECT_EQ(s->iommu.unit.driver.relax_ns, 0u);
  const std::string kind = message_of(std::string(minimal) + "[iommu.driver]\nkind = \"arm\"\n");
  EXPECT_NE(kind.find("\"linux-vtd\", \"unlocked-poll\""), std::string::npos) << kind;
  const std::string poll = message_of(std::string(minimal) + "[iommu.driver]\npoll_ns = 2000000\n");
  EXPECT_NE(poll.find("'iommu.driver.poll_ns' = 2000000 is out of range"), std::string::npos)
      << poll;
}

TEST(Scenario, SyntaxErrorHasLine) {
  const std::string msg = message_of("name = \"t\"\ncpus = = 4\n");
  EXPECT_NE(msg.find("t.toml:2:"), std::string::npos) << msg;
}

TEST(Scenario, CrossFieldErrorsPointAtTheirLine) {
  // A device behind unit 3 when the domain group only has units 0 and 1.
  const std::string msg = message_of(std::string(minimal) + "iommus = [3]\n");
  EXPECT_NE(msg.find("t.toml:11:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("devices[0].iommus"), std::string::npos) << msg;
  EXPECT_NE(msg.find("unit 3"), std::string::npos) << msg;

  const std::string bound = message_of(
      std::string(minimal) + "[memory]\nframes = 100\n[reclaim]\nmax_pending_frames = 200\n");
  EXPECT_NE(bound.find("t.toml:14:"), std::string::npos) << bound;
  EXPECT_NE(bound.find("exceeds memory.frames"), std::string::npos) << bound;

  const std::string prob =
      message_of(std::string(minimal) +
                 "[superpage-churn]\nshatter_probability = 0.8\nunmap_probability = 0.8\n");
  EXPECT_NE(prob.find("more than 1"), std::string::npos) << prob;
}

TEST(Scenario, LockFreeCannotCoalesce) {
  std::string text = minimal;
  text.replace(text.find("format = \"vtd-ss-4\""), 19,
               "format = \"vtd-ss-4\"\nmode = \"lock-free\"\ncoalesce = true");
  const std::string msg = message_of(text);
  EXPECT_NE(msg.find("t.toml:10:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("needs mode = \"locked\""), std::string::npos) << msg;
  // Without an explicit coalesce, lock-free defaults to false and is fine.
  text = minimal;
  text.replace(text.find("format = \"vtd-ss-4\""), 19,
               "format = \"vtd-ss-4\"\nmode = \"lock-free\"");
  auto ok = parse_scenario(text, "t.toml");
  ASSERT_TRUE(ok.ok()) << ok.status().to_string();
  EXPECT_FALSE(ok->domains[0].coalesce);
}

TEST(Scenario, LazyDmaNeedsDmaStormAndTheSingleQueueALongDrain) {
  const std::string lazy = message_of(std::string(minimal) + "[caller]\nflush = \"lazy\"\n");
  EXPECT_NE(lazy.find("caller.flush"), std::string::npos) << lazy;
  EXPECT_NE(lazy.find("dma-storm"), std::string::npos) << lazy;
  const std::string target = message_of(std::string(minimal) + "target = \"unmapped\"\n");
  EXPECT_NE(target.find("devices[0].target"), std::string::npos) << target;
  const std::string single =
      message_of(std::string(minimal) + "[reclaim]\nfq_queue = \"single\"\n");
  EXPECT_NE(single.find("drain_timeout_ns"), std::string::npos) << single;
  auto ok = parse_scenario(std::string(minimal) +
                               "[duration]\ndrain_timeout_ns = 3000000000\n"
                               "[reclaim]\nfq_queue = \"single\"\n",
                           "t.toml");
  ASSERT_TRUE(ok.ok()) << ok.status().to_string();
  EXPECT_TRUE(ok->reclaim.fq_single_queue);
  auto lazy_storm = load_scenario("dma-storm-lazy");
  ASSERT_TRUE(lazy_storm.ok()) << lazy_storm.status().to_string();
  EXPECT_EQ(lazy_storm->caller.flush, caller_flush::lazy);
  EXPECT_EQ(lazy_storm->devices.back().target, access_target::unmapped);
  EXPECT_EQ(caller_flush_name(caller_flush::lazy), "lazy");
  EXPECT_EQ(access_target_name(access_target::unmapped), "unmapped");
}

TEST(Scenario, MissingFileIsAClearError) {
  auto s = load_scenario("/nonexistent/dir/x.toml");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("cannot read '/nonexistent/dir/x.toml'"), std::string::npos)
      << s.status().message();
  auto u = load_scenario("no-such-builtin");
  ASSERT_FALSE(u.ok());
  EXPECT_NE(u.status().message().find("built-in: "), std::string::npos) << u.status().message();
}

TEST(Scenario, OverlayFileOnABuiltinAndOnAFile) {
  temp_dir dir;
  const std::string overlay =
      dir.write("storm-hp.toml", "base = \"dma-storm\"\n[hotplug]\nenabled = true\n");
  auto s = load_scenario(overlay);
  ASSERT_TRUE(s.ok()) << s.status().to_string();
  EXPECT_EQ(s->name, "storm-hp");
  EXPECT_EQ(s->kind, workload_kind::dma_storm);
  EXPECT_TRUE(s->hotplug.enabled);
  EXPECT_EQ(s->source, overlay);

  // A base given as a path relative to the overlay; the overlay replaces [[devices]] wholesale.
  dir.write("mine.toml", minimal);
  const std::string two =
      dir.write("two.toml", "base = \"mine.toml\"\ncpus = 3\n[[devices]]\ncount = 5\n");
  auto t = load_scenario(two);
  ASSERT_TRUE(t.ok()) << t.status().to_string();
  EXPECT_EQ(t->cpus, 3u);
  EXPECT_EQ(t->iommu.count, 2u);
  ASSERT_EQ(t->devices.size(), 1u);
  EXPECT_EQ(t->devices[0].count, 5u);

  // Errors inside a base name the base file's line.
  dir.write("broken.toml", "cpus = 999\n");
  const std::string over = dir.write("over.toml", "base = \"broken.toml\"\n");
  auto b = load_scenario(over);
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.status().message().find("over.toml:1:"), std::string::npos) << b.status().message();
  EXPECT_NE(b.status().message().find("broken.toml:1:"), std::string::npos) << b.status().message();

  // A cycle is caught, not followed forever.
  const std::string loop = dir.write("loop.toml", "base = \"loop.toml\"\n");
  auto l = load_scenario(loop);
  ASSERT_FALSE(l.ok());
  EXPECT_NE(l.status().message().find("cycle"), std::string::npos) << l.status().message();
}

TEST(Scenario, CostFileIsLoadedRelativeToTheScenario) {
  temp_dir dir;
  cost_model m = default_cost_model();
  m.set_cost(cost_kind::pte_write, 3);
  dir.write("costs.toml", cost_model_to_toml(m, "test"));
  const std::string path =
      dir.write("s.toml", std::string(minimal) + "[cost]\nfile = \"costs.toml\"\n");
  auto s = load_scenario(path);
  ASSERT_TRUE(s.ok()) << s.status().to_string();
  EXPECT_EQ(s->costs.cost(cost_kind::pte_write), 3u);
  EXPECT_EQ(s->costs, m);
  ASSERT_TRUE(s->cost_file.has_value());
  EXPECT_EQ(s->cost_source(), *s->cost_file);

  const std::string bad =
      dir.write("bad.toml", std::string(minimal) + "[cost]\nfile = \"nope.toml\"\n");
  auto e = load_scenario(bad);
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.status().message().find("bad.toml:12:"), std::string::npos) << e.status().message();
}

// Parses `text` as the cost file c.toml: it must be refused with every needle in the message.
void expect_cost_file_refused(const std::string& text,
                              std::initializer_list<std::string_view> needles) {
  auto r = parse_cost_model(text, "c.toml");
  ASSERT_FALSE(r.ok()) << text;
  for (std::string_view n : needles)
    EXPECT_NE(r.status().message().find(n), std::string::npos) << r.status().message();
}

TEST(CostModel, RoundTripsAndRejectsUnknownKinds) {
  cost_model m = default_cost_model();
  std::array<double, cost_kind_count> measured{};
  for (std::size_t i = 0; i < cost_kind_count; ++i) {
    measured[i] = 1.25 * static_cast<double>(i + 1);
    m.charge_ns[i] = whole_ns(measured[i]);
  }
  const std::string text = cost_model_to_toml(m, "line one\nline two", measured);
  auto back = parse_cost_model(text, "c.toml");
  ASSERT_TRUE(back.ok()) << back.status().to_string();
  // The file holds what a run charges (whole ns) and keeps the measurement as a comment.
  for (std::size_t i = 0; i < cost_kind_count; ++i)
    EXPECT_EQ(back->charge_ns[i], static_cast<std::uint64_t>(std::llround(measured[i]))) << i;
  EXPECT_EQ(*back, m);
  EXPECT_NE(text.find("# line one\n# line two\n"), std::string::npos) << text;
  EXPECT_NE(text.find("pte_write = 1  # measured 1.250 ns"), std::string::npos) << text;

  expect_cost_file_refused("[cost_ns]\npte_wrte = 1.0\n", {"c.toml:2:"});
  expect_cost_file_refused("[cost_ns]\npte_write = -1.0\n", {"out of range"});
  expect_cost_file_refused("x = 1\n", {});
}

TEST(CostModel, KernelDispatchCostsAreReadWrittenAndChecked) {
  cost_model m = default_cost_model();
  m.work_ns = 2500;
  m.tasklet_ns = 0;
  const std::string text = cost_model_to_toml(m, "kernel");
  EXPECT_NE(text.find("[kernel_ns]\nsoftirq_item = 100\ntasklet = 0\nwork_item = 2500\n"),
            std::string::npos)
      << text;
  auto back = parse_cost_model(text, "c.toml");
  ASSERT_TRUE(back.ok()) << back.status().to_string();
  EXPECT_EQ(back->work_ns, 2500u);
  EXPECT_EQ(back->tasklet_ns, 0u);
  EXPECT_EQ(back->hotplug_ns, m.hotplug_ns);
  // Keys the file leaves out keep the default file's; a file without the table keeps them all.
  auto partial = parse_cost_model("[cost_ns]\n[kernel_ns]\nwork_item = 7\n", "c.toml");
  ASSERT_TRUE(partial.ok()) << partial.status().to_string();
  EXPECT_EQ(partial->work_ns, 7u);
  EXPECT_EQ(partial->tasklet_ns, default_cost_model().tasklet_ns);
  auto absent = parse_cost_model("[cost_ns]\n", "c.toml");
  ASSERT_TRUE(absent.ok());
  EXPECT_EQ(*absent, default_cost_model());
  // Unknown keys, wrong types and values out of range name the file, line and reason.
  expect_cost_file_refused("[cost_ns]\n[kernel_ns]\nwork = 1\n",
                           {"c.toml:3:", "unknown key 'work'"});
  expect_cost_file_refused("[cost_ns]\n[kernel_ns]\ntasklet = \"fast\"\n", {"c.toml:3:"});
  expect_cost_file_refused("[cost_ns]\n[kernel_ns]\nhotplug = -1\n", {"out of range"});
}

TEST(CostModel, FractionsAreChargedRoundedToWholeNanoseconds) {
  // The executor charges integers: 0.4 is charged 0, 0.5 and 1.49 are charged 1. docs/scenarios.md
  // says so; this pins it.
  auto m =
      parse_cost_model("[cost_ns]\npte_write = 0.4\npte_read = 0.5\nenqueue = 1.49\n", "c.toml");
  ASSERT_TRUE(m.ok()) << m.status().to_string();
  EXPECT_EQ(m->cost(cost_kind::pte_write), 0u);
  EXPECT_EQ(m->cost(cost_kind::pte_read), 1u);
  EXPECT_EQ(m->cost(cost_kind::enqueue), 1u);
  EXPECT_EQ(whole_ns(-3.0), 0u);
  EXPECT_EQ(whole_ns(2.5), 3u);
}

TEST(CostModel, DefaultsAreTheEmbeddedCalibratedFile) {
  // The default model is scenarios/costs/default.toml, a calibrate run: every kind is given
  // there, and the header names the command that wrote it.
  const std::string_view text = default_cost_file_text();
  EXPECT_NE(text.find("ptreclaim calibrate"), std::string_view::npos);
  EXPECT_NE(text.find("\n[kernel_ns]\n"), std::string_view::npos);
  auto parsed = parse_cost_model(text, "default.toml");
  ASSERT_TRUE(parsed.ok()) << parsed.status().to_string();
  const cost_model& d = default_cost_model();
  EXPECT_EQ(*parsed, d);
  for (std::size_t i = 0; i < cost_kind_count; ++i) {
    const std::string key = std::string(cost_kind_name(static_cast<cost_kind>(i)));
    EXPECT_NE(text.find("\n" + key + " = "), std::string_view::npos) << key;
  }
  // Kinds come from the file; what a cost file cannot say keeps runtime::cost_model{}'s.
  EXPECT_EQ(d.step_ns, cost_model{}.step_ns);
  EXPECT_EQ(d.step_jitter_ns, cost_model{}.step_jitter_ns);
  EXPECT_EQ(d.idle_poll_ns, cost_model{}.idle_poll_ns);
  // Built-in scenarios name no cost file, so they run on these figures.
  auto s = load_scenario("dma-storm");
  ASSERT_TRUE(s.ok());
  EXPECT_FALSE(s->cost_file.has_value());
  EXPECT_EQ(s->costs, d);
}

TEST(Scenario, OverridesRevalidate) {
  auto s = load_scenario("dma-storm");
  ASSERT_TRUE(s.ok());
  auto t = with_overrides(*s, 16, 10);
  ASSERT_TRUE(t.ok()) << t.status().to_string();
  EXPECT_EQ(t->cpus, 16u);
  EXPECT_EQ(t->duration.ops_per_cpu, 10u);
  // 256 CPUs x 64 buffers x 4 KiB fits the 4 GiB space; a tiny space does not.
  scenario small = *s;
  small.dma_storm.iova_space_bytes = 1u << 20;
  auto u = with_overrides(small, 256, 0);
  ASSERT_FALSE(u.ok());
  EXPECT_NE(u.status().message().find("iova_space_bytes"), std::string::npos)
      << u.status().message();
  auto chaos = load_scenario("hotplug-chaos");
  ASSERT_TRUE(chaos.ok());
  auto one = with_overrides(*chaos, 1, 0);
  ASSERT_TRUE(one.ok()) << one.status().to_string();
  EXPECT_FALSE(one->hotplug.enabled);
}

TEST(Scenario, NamesRoundTrip) {
  EXPECT_EQ(workload_kind_name(workload_kind::sva_kernel), "sva-kernel");
  EXPECT_EQ(access_pattern_name(access_pattern::hot_set), "hot-set");
  EXPECT_EQ(access_target_name(access_target::replaced), "replaced");
  EXPECT_EQ(caller_flush_name(caller_flush::each_op), "each-op");
  EXPECT_EQ(softirq_point_name(softirq_point::before_caller_flush), "before-caller-flush");
  EXPECT_EQ(cost_kind_name(cost_kind::cache_line_transfer), "cache_line_transfer");
}

}  // namespace
}  // namespace ptreclaim::sim
