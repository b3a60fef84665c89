// The recorder (recorder.hpp): a Chrome trace of the run and the story of one frame.
#include "sim/recorder.hpp"

#include <algorithm>
#include <cstdio>
#include <string_view>
#include <utility>

namespace ptreclaim::sim::detail {
namespace {

// Track groups of the trace: one "process" each, so a viewer shows them as labelled groups.
constexpr int pid_cpus = 1;
constexpr int pid_devices = 2;
constexpr int pid_iommu0 = 10;  // IOMMU u is pid_iommu0 + u

std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (const char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

// Microseconds with nanosecond precision, as the trace format counts time.
std::string us(std::uint64_t ns) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%llu.%03llu", static_cast<unsigned long long>(ns / 1000),
                static_cast<unsigned long long>(ns % 1000));
  return buf;
}

std::string hex(std::uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

// "12.345 us" for the story's sentences.
std::string at(std::uint64_t ns) {
  return us(ns) + " us";
}

std::string span_text(std::uint64_t first, std::uint64_t last) {
  return "[" + hex(first) + ", " + hex(last) + "]";
}

// A JSON object of arguments, built one field at a time.
class args {
 public:
  args& num(const char* k, std::uint64_t v) { return raw(k, std::to_string(v)); }
  args& str(const char* k, std::string_view v) { return raw(k, json_string(v)); }
  args& flag(const char* k, bool v) { return raw(k, v ? "true" : "false"); }
  [[nodiscard]] std::string done() const { return "{" + s_ + "}"; }

 private:
  args& raw(const char* k, const std::string& v) {
    if (!s_.empty()) s_ += ",";
    s_ += json_string(k) + ":" + v;
    return *this;
  }
  std::string s_;
};

// The short name of a descriptor on the queue's track.
std::string descriptor_name(const iommu::inv_descriptor& d) {
  switch (d.type) {
    case iommu::inv_type::global:
      return "global";
    case iommu::inv_type::domain:
      return "DSI did " + std::to_string(d.did);
    case iommu::inv_type::page:
      return (d.pasid != iommu::no_pasid ? "P_IOTLB pasid " + std::to_string(d.pasid) + " did "
                                         : "PSI did ") +
             std::to_string(d.did) + " am " + std::to_string(d.am) + (d.ih ? " ih" : "");
    case iommu::inv_type::devtlb:
      return "devTLB device " + std::to_string(d.sid) + " am " + std::to_string(d.am);
    case iommu::inv_type::wait:
    case iommu::inv_type::count_:
      break;
  }
  return "wait";
}

const char* context_name(runtime::exec_context c) {
  switch (c) {
    case runtime::exec_context::process:
      return "";
    case runtime::exec_context::softirq:
      return " (in softirq: a timer or softirq tasklet)";
    case runtime::exec_context::tasklet:
      return " (in a tasklet)";
    case runtime::exec_context::work:
      return " (in a work item)";
    case runtime::exec_context::notifier:
      return " (in a CPU hotplug notifier)";
    case runtime::exec_context::actor:
    case runtime::exec_context::none:
      break;
  }
  return "";
}

std::string ident_text(mem::frame_ident id) {
  if (id.state == mem::frame_state::data) return "a data page (a DMA buffer)";
  return "a level-" + std::to_string(id.level) + " table of domain " + std::to_string(id.domain);
}

}  // namespace

recorder::recorder(recording& want, context c) : want_(want), ctx_(std::move(c)) {
  trace_ = want.chrome_trace;
  story_ = want.frame.has_value();
  frame_ = want.frame.value_or(0);
  cpu_.resize(ctx_.cpus);
}

void recorder::attach(runtime::executor& ex, mem::frame_pool& pool, iommu::system& sys,
                      label_fn labels) {
  ex_ = &ex;
  pool_ = &pool;
  sys_ = &sys;
  labels_ = std::move(labels);
  units_ = sys.unit_count();
  unit_.resize(units_);
}

void recorder::name_device(unsigned actor, unsigned device, unsigned /*domain*/,
                           unsigned /*unit*/) {
  if (actors_.size() <= actor) actors_.resize(actor + 1);
  actors_[actor].known = true;
  actors_[actor].device = device;
}

// ---- Chrome trace ---------------------------------------------------------------------------

void recorder::emit(std::string event) {
  // The bound is checked again, exactly, when the document is assembled (finish()); here it
  // only keeps memory bounded.
  if (body_.size() + event.size() + 2 > want_.trace_limit_bytes) {
    ++dropped_;
    return;
  }
  if (!body_.empty()) body_ += ",\n";
  body_ += event;
  ++events_;
}

void recorder::slice(int pid, int tid, std::uint64_t start, std::uint64_t end,
                     const std::string& name, const char* cat, const std::string& a) {
  emit("{\"ph\":\"X\",\"pid\":" + std::to_string(pid) + ",\"tid\":" + std::to_string(tid) +
       ",\"ts\":" + us(start) + ",\"dur\":" + us(end > start ? end - start : 0) +
       ",\"name\":" + json_string(name) + ",\"cat\":\"" + cat + "\",\"args\":" + a + "}");
}

void recorder::instant(int pid, int tid, std::uint64_t t, const std::string& name, const char* cat,
                       const std::string& a, char scope) {
  emit("{\"ph\":\"i\",\"s\":\"" + std::string(1, scope) + "\",\"pid\":" + std::to_string(pid) +
       ",\"tid\":" + std::to_string(tid) + ",\"ts\":" + us(t) + ",\"name\":" + json_string(name) +
       ",\"cat\":\"" + cat + "\",\"args\":" + a + "}");
}

void recorder::close_device(device_track& d) {
  if (!d.open) return;
  slice(pid_devices, static_cast<int>(d.device), d.start, d.end, "DMA", "device",
        args().num("steps", d.steps).done());
  d.open = false;
}

void recorder::op_begin(unsigned cpu) {
  if (cpu >= cpu_.size()) return;
  cpu_state& c = cpu_[cpu];
  c.op_open = true;
  c.op_started = false;
  c.op_closing = false;
  ++c.ops;
}

void recorder::op_end(unsigned cpu) {
  if (cpu >= cpu_.size()) return;
  cpu_[cpu].op_closing = true;
}

void recorder::set_context(unsigned cpu, std::string what) {
  if (cpu < cpu_.size()) cpu_[cpu].context = std::move(what);
}

void recorder::on_step(const runtime::trace_event& ev) {
  using what = runtime::trace_event::what;
  if (ev.is_actor) {
    if (story_) check_walks();
    if (!trace_ || ev.entity >= actors_.size() || !actors_[ev.entity].known) return;
    device_track& d = actors_[ev.entity];
    // Steps closer than 20 us of virtual time join one DMA burst, at most 50 us long.
    if (d.open && ev.start_ns <= d.end + 20'000 && ev.end_ns <= d.start + 50'000) {
      d.end = std::max(d.end, ev.end_ns);
      ++d.steps;
      return;
    }
    close_device(d);
    d.open = true;
    d.start = ev.start_ns;
    d.end = ev.end_ns;
    d.steps = 1;
    return;
  }
  if (ev.entity >= cpu_.size()) return;
  cpu_state& c = cpu_[ev.entity];
  const int tid = static_cast<int>(ev.entity);
  const char* name = nullptr;
  switch (ev.kind) {
    case what::program_step:
      if (c.op_open && !c.op_started) {
        c.op_started = true;
        c.op_start = ev.start_ns;
      }
      if (c.op_closing && c.op_open) {
        if (trace_) {
          std::pair<std::string, std::string> label{"operation", ""};
          if (labels_) label = labels_(ev.entity);
          slice(pid_cpus, tid, c.op_start, ev.end_ns, label.first, "op",
                args().num("op", c.ops).str("where", label.second).done());
        }
        c.op_open = c.op_closing = c.op_started = false;
      }
      return;
    case what::timer:
      name = "timer";
      break;
    case what::softirq_tasklet:
      name = "softirq tasklet";
      break;
    case what::tasklet:
      name = "tasklet";
      break;
    case what::work:
      name = "work item";
      break;
    case what::hotplug:
      name = "hotplug";
      break;
    case what::actor:
    case what::idle:
      return;
  }
  if (trace_)
    slice(pid_cpus, tid, ev.start_ns, ev.end_ns, name, "deferred",
          args().str("policy", ctx_.policy).done());
}

std::string recorder::metadata() const {
  std::string m;
  const auto meta = [&m](int pid, int tid, const char* kind, const std::string& key,
                         const std::string& value) {
    m += "{\"ph\":\"M\",\"pid\":" + std::to_string(pid) + ",\"tid\":" + std::to_string(tid) +
         ",\"name\":\"" + kind + "\",\"args\":{" + json_string(key) + ":" + value + "}},\n";
  };
  meta(pid_cpus, 0, "process_name", "name", json_string("CPUs (" + ctx_.policy + ")"));
  meta(pid_cpus, 0, "process_sort_index", "sort_index", "0");
  for (unsigned c = 0; c < cpu_.size(); ++c) {
    meta(pid_cpus, static_cast<int>(c), "thread_name", "name",
         json_string("CPU " + std::to_string(c)));
    meta(pid_cpus, static_cast<int>(c), "thread_sort_index", "sort_index", std::to_string(c));
  }
  for (unsigned u = 0; u < units_; ++u) {
    const int pid = pid_iommu0 + static_cast<int>(u);
    meta(pid, 0, "process_name", "name",
         json_string("IOMMU " + std::to_string(u) + " invalidation queue"));
    meta(pid, 0, "process_sort_index", "sort_index", std::to_string(1 + u));
    meta(pid, 0, "thread_name", "name", json_string("descriptors as processed"));
  }
  meta(pid_devices, 0, "process_name", "name", json_string("devices"));
  meta(pid_devices, 0, "process_sort_index", "sort_index", std::to_string(1 + units_));
  for (const device_track& d : actors_) {
    if (!d.known) continue;
    meta(pid_devices, static_cast<int>(d.device), "thread_name", "name",
         json_string("device " + std::to_string(d.device)));
  }
  return m;
}

// ---- hooks shared by the trace and the story ---------------------------------------------------

int recorder::cpu_here() const {
  return ex_ != nullptr && ex_->on_cpu() ? static_cast<int>(ex_->current_cpu()) : -1;
}

std::string recorder::doing(unsigned cpu) const {
  if (cpu >= cpu_.size()) return "";
  const cpu_state& c = cpu_[cpu];
  if (!c.op_open) return c.context.empty() ? std::string() : c.context;
  std::string out = "operation #" + std::to_string(c.ops);
  if (labels_) {
    const auto label = labels_(cpu);
    out += " (" + label.first + (label.second.empty() ? "" : ": " + label.second) + ")";
  }
  return out;
}

std::string recorder::queue_of(unsigned cpu) const {
  const std::string& p = ctx_.policy;
  const std::string c = std::to_string(cpu);
  if (p == "immediate") return "no queue: immediate frees at once";
  if (p == "sync") return "no queue: sync invalidates, waits and frees inline";
  if (p == "xen-tasklet") return "CPU " + c + "'s per-CPU list, freed by its tasklet";
  if (p == "xen-softirq-tasklet") return "CPU " + c + "'s per-CPU list, freed by a softirq tasklet";
  if (p == "linux-global-work") return "the global list, freed by the one work item";
  if (p == "flush-epoch") return "CPU " + c + "'s per-CPU queue, tagged with the flush epoch";
  return p + "'s queue on CPU " + c;
}

void recorder::on_retire(reclaim::domain_number d, mem::frame_id f,
                         const reclaim::invalidation_range& need) {
  const int cpu = cpu_here();
  const std::uint64_t t = ex_ != nullptr ? ex_->now_ns() : 0;
  if (trace_ && cpu >= 0) {
    instant(pid_cpus, cpu, t, "retire", "reclaim",
            args().num("frame", f.value).num("domain", d).done());
  }
  if (watched(f) && !lives_.empty()) {
    std::string owed = need.domain_wide() ? "the whole domain" : span_text(need.first, need.last);
    add(t, "retired",
        "retired into " + queue_of(cpu < 0 ? 0 : static_cast<unsigned>(cpu)) +
            "; the policy is told to invalidate " + owed + (need.nonleaf ? " (non-leaf)" : ""),
        cpu);
  }
}

void recorder::on_unlinked(const pt::unlinked_table& t) noexcept {
  if (!watched(t.frame) || lives_.empty()) return;
  lifetime& l = lives_.back();
  const int cpu = cpu_here();
  l.unlinked = true;
  l.unlink_ns = ex_->now_ns();
  l.domain = t.domain;
  l.level = t.level;
  l.first = t.first;
  l.last = t.last;
  std::string where;
  if (const iommu::domain* dom = sys_->find_domain(t.domain)) {
    for (unsigned u = 0; u < units_ && u < limits::max_iommus; ++u) {
      l.did_plus1[u] = dom->attached_did_plus1(u);
      l.tail[u] = sys_->get_unit(u).submitted_peek();
      if (l.did_plus1[u] != 0) {
        where += std::string(where.empty() ? "" : ", ") + "IOMMU " + std::to_string(u) + " (did " +
                 std::to_string(l.did_plus1[u] - 1) + ")";
      }
    }
  }
  std::string by;
  if (cpu >= 0) {
    const std::string what = doing(static_cast<unsigned>(cpu));
    by = " by CPU " + std::to_string(cpu) + (what.empty() ? "" : "'s " + what);
  }
  add(l.unlink_ns, "unlinked",
      "unlinked from domain " + std::to_string(t.domain) + "'s tables" + by +
          "; a cached entry can still reach it through " + span_text(t.first, t.last) +
          (where.empty() ? "" : ", cached by " + where),
      cpu);
}

void recorder::settle_group(lifetime& l, unsigned unit, std::uint64_t wait_done) {
  for (pending_inv& p : l.group[unit]) {
    if (p.covers && l.covered_at[unit] == 0) l.covered_at[unit] = wait_done;
    if (l.shown[unit] >= max_shown_per_unit) {
      ++l.hidden[unit];
      continue;
    }
    ++l.shown[unit];
    std::string text = p.what + ", took effect at " + at(p.done) + ", its wait completed at " +
                       at(wait_done) + ": " +
                       (p.covers ? "covers the frame (" : "does not cover it (") + p.why + ")";
    if (l.freed) text += "; after the free";
    add(p.submit, "invalidation", std::move(text), -1, static_cast<int>(unit));
    if (!told_.empty()) told_.back().covers = p.covers;
  }
  l.group[unit].clear();
}

void recorder::on_processed_at(unsigned unit, std::uint64_t seq, const iommu::inv_descriptor& d,
                               std::uint64_t submit_ns, std::uint64_t done_ns) noexcept {
  if (unit >= unit_.size()) return;
  if (trace_) {
    unit_track& u = unit_[unit];
    const int pid = pid_iommu0 + static_cast<int>(unit);
    const std::uint64_t start = std::max(submit_ns, u.last_done);
    args a;
    a.num("seq", seq).num("submitted_ns", submit_ns);
    if (d.type == iommu::inv_type::page)
      a.str("addr", hex(d.addr)).num("am", d.am).flag("ih", d.ih);
    slice(pid, 0, std::min(start, done_ns), done_ns, descriptor_name(d), "iommu", a.done());
    u.last_done = std::max(u.last_done, done_ns);
    if (d.type != iommu::inv_type::wait) {
      if (!u.group_open) {
        u.group_open = true;
        u.group_submit = submit_ns;
        u.group_first_seq = seq;
        u.group_size = 0;
        u.group_name = descriptor_name(d);
      }
      ++u.group_size;
    } else {
      // A flush: its invalidations and the wait behind them, from submission to completion.
      const std::uint64_t from = u.group_open ? u.group_submit : submit_ns;
      const std::string name =
          u.group_open ? (u.group_size == 1 ? u.group_name
                                            : std::to_string(u.group_size) + " invalidations") +
                             " + wait"
                       : std::string("wait");
      const std::string id = hex(++async_ids_);
      const std::string common = ",\"pid\":" + std::to_string(pid) +
                                 ",\"tid\":0,\"cat\":\"flush\",\"name\":" + json_string(name) +
                                 ",\"id\":\"" + id + "\"";
      emit("{\"ph\":\"b\"" + common + ",\"ts\":" + us(from) + ",\"args\":" +
           args().num("latency_ns", done_ns > from ? done_ns - from : 0).done() + "}");
      emit("{\"ph\":\"e\"" + common + ",\"ts\":" + us(std::max(from, done_ns)) + "}");
      u.group_open = false;
    }
  }
  if (!story_ || lives_.empty() || unit >= limits::max_iommus) return;
  lifetime& l = lives_.back();
  if (!l.unlinked || l.did_plus1[unit] == 0) return;
  if (d.type == iommu::inv_type::wait) {
    settle_group(l, unit, done_ns);
    return;
  }
  // A device TLB holds no table pointers: nothing a freed table's story needs.
  if (d.type == iommu::inv_type::devtlb) return;
  const std::uint32_t did = l.did_plus1[unit] - 1;
  if (d.type != iommu::inv_type::global && d.did != did) return;  // another domain's
  if (l.freed) {
    // After the free only the first covering one matters (it came too late).
    if (l.covered_at[unit] != 0 || !l.group[unit].empty()) return;
  }
  l.any_relevant[unit] = true;
  pending_inv p;
  p.seq = seq;
  p.submit = submit_ns;
  p.done = done_ns;
  switch (d.type) {
    case iommu::inv_type::global:
      p.what = "a global invalidation";
      p.covers = true;
      p.why = "it drops every cached entry";
      break;
    case iommu::inv_type::domain:
      p.what = "a domain-selective invalidation (DSI) of did " + std::to_string(d.did);
      p.covers = true;
      p.why = "it drops every cached entry of the domain";
      break;
    case iommu::inv_type::page:
      p.what =
          (d.pasid != iommu::no_pasid ? "a PASID-based invalidation (P_IOTLB) of PASID " +
                                            std::to_string(d.pasid) + " over "
                                      : std::string("a page-selective invalidation (PSI) of ")) +
          span_text(d.first(), d.last()) + (d.ih ? " with IH=1" : "");
      if (d.ih) {
        p.why = "IH=1 drops leaf entries only; the paging-structure caches keep their pointers";
      } else if (d.first() <= l.first && l.last <= d.last()) {
        p.covers = true;
        p.why = "IH=0 and its block holds the span " + span_text(l.first, l.last);
      } else {
        p.why = "its block misses part of the span " + span_text(l.first, l.last);
      }
      break;
    case iommu::inv_type::devtlb:
    case iommu::inv_type::wait:
    case iommu::inv_type::count_:
      return;
  }
  if (seq < l.tail[unit]) {
    p.covers = false;
    p.why = "it was submitted before the unlink";
  }
  l.group[unit].push_back(std::move(p));
}

void recorder::on_alloc(mem::frame_id f, mem::frame_ident now) noexcept {
  if (!watched(f)) return;
  ++allocations_;
  const int cpu = cpu_here();
  const std::uint64_t t = ex_ != nullptr ? ex_->now_ns() : 0;
  std::string by;
  if (cpu >= 0) {
    const std::string what = doing(static_cast<unsigned>(cpu));
    by = " by CPU " + std::to_string(cpu) + (what.empty() ? "" : "'s " + what);
  }
  if (!lives_.empty() && lives_.back().freed) {
    add(t, "reused",
        "allocated again, as " + ident_text(now) + " (generation " +
            std::to_string(now.generation) + ")" + by,
        cpu);
  }
  if (lives_.size() >= max_lifetimes) return;
  lifetime& l = lives_.emplace_back();
  l.alloc_ns = t;
  l.first_event = told_.size();
  l.was_table = now.state == mem::frame_state::page_table;
  l.domain = now.domain;
  l.level = now.level;
  add(t, "allocated",
      "allocated as " + ident_text(now) + " (generation " + std::to_string(now.generation) + ")" +
          by,
      cpu);
}

void recorder::on_linked(mem::frame_id f) noexcept {
  if (!watched(f) || lives_.empty()) return;
  lifetime& l = lives_.back();
  l.linked = true;
  add(ex_->now_ns(), "linked",
      "linked into domain " + std::to_string(l.domain) + "'s tables as a level-" +
          std::to_string(l.level) + " table",
      cpu_here());
}

void recorder::on_freed(mem::frame_id f, mem::frame_ident before, const char* path) noexcept {
  const int cpu = cpu_here();
  const std::uint64_t t = ex_ != nullptr ? ex_->now_ns() : 0;
  const std::uint64_t retired = pool_->meta(f).retired_ns.load(std::memory_order_relaxed);
  if (trace_ && before.state == mem::frame_state::retired) {
    instant(pid_cpus, cpu < 0 ? 0 : cpu, t, "free", "reclaim",
            args()
                .num("frame", f.value)
                .str("by", path != nullptr ? path : "?")
                .num("retire_to_free_ns", t > retired ? t - retired : 0)
                .done());
  }
  if (!watched(f) || lives_.empty()) return;
  lifetime& l = lives_.back();
  l.freed = true;
  l.free_ns = t;
  l.free_path = path != nullptr ? path : "?";
  std::string text = "freed by " + l.free_path;
  if (cpu >= 0) {
    text += " on CPU " + std::to_string(cpu) + context_name(ex_->context());
  }
  if (before.state == mem::frame_state::retired && retired != 0 && t >= retired)
    text += ", " + at(t - retired) + " after its retire";
  if (before.state == mem::frame_state::page_table) text += " (it was never linked)";
  if (l.unlinked) {
    std::string cover;
    for (unsigned u = 0; u < units_ && u < limits::max_iommus; ++u) {
      if (l.did_plus1[u] == 0) continue;
      cover += std::string(cover.empty() ? "" : "; ") + "IOMMU " + std::to_string(u) + ": " +
               (l.covered_at[u] != 0 ? "covered since " + at(l.covered_at[u])
                                     : std::string("NOT covered"));
    }
    if (!cover.empty()) text += "; " + cover;
  }
  l.free_event = told_.size();
  add(t, "freed", std::move(text), cpu);
}

void recorder::add(std::uint64_t t, const char* kind, std::string text, int cpu, int iommu,
                   int device) {
  if (told_.size() >= max_told || lives_.empty()) return;
  frame_event& e = told_.emplace_back();
  e.time_ns = t;
  e.kind = kind;
  e.cpu = cpu;
  e.iommu = iommu;
  e.device = device;
  e.text = std::move(text);
  told_life_.push_back(lives_.size() - 1);
}

void recorder::check_walks() {
  const iommu::violation_log& log = sys_->violations();
  const std::uint64_t n = log.count();
  if (n == violations_seen_ || violations_seen_ >= violations_kept) return;
  const std::vector<iommu::violation> kept = log.first();
  for (std::size_t i = violations_seen_; i < kept.size(); ++i) {
    const iommu::violation& w = kept[i];
    if (!w.frame.valid() || w.frame.value != frame_) continue;
    add(w.at_ns, "walk",
        "device " + std::to_string(w.device) + "'s walk on IOMMU " + std::to_string(w.unit) +
            " (iova " + hex(w.iova) + ") read it as a level-" + std::to_string(w.level) + " table" +
            (w.via_psc ? ", through a paging-structure-cache entry" : "") + ": " +
            iommu::violation_kind_name(w.kind) + " (S1)",
        -1, static_cast<int>(w.unit), static_cast<int>(w.device));
  }
  violations_seen_ = n;
}

// ---- the end of the run ------------------------------------------------------------------------

void recorder::build_story(run_result& out) {
  frame_story s;
  s.frame = frame_;
  s.lifetimes = allocations_;
  // The first walk that read the frame unsafely, in the order things happened.
  std::size_t walk = told_.size();
  for (std::size_t i = 0; i < told_.size(); ++i) {
    if (told_[i].kind == "walk") {
      walk = i;
      break;
    }
  }
  const bool first_violation = out.violations.first_frame && *out.violations.first_frame == frame_;
  s.focus = first_violation       ? "the first violation"
            : walk < told_.size() ? "--frame, read unsafely by a device"
                                  : "--frame";
  // Units of the lifetime's domain covered (or not) when it was freed.
  const auto units_text = [this](const lifetime& l, bool covered_before_free) {
    std::string list;
    for (unsigned u = 0; u < units_ && u < limits::max_iommus; ++u) {
      if (l.did_plus1[u] == 0) continue;
      const bool ok = l.covered_at[u] != 0 && (!l.freed || l.covered_at[u] <= l.free_ns);
      if (ok != covered_before_free) continue;
      list += std::string(list.empty() ? "" : ", ") + "IOMMU " + std::to_string(u);
    }
    return list;
  };
  const auto why_not = [](const lifetime& l, unsigned u) -> std::string {
    if (l.covered_at[u] != 0)
      return "the covering invalidation's wait completed only at " + at(l.covered_at[u]) +
             ", after the free";
    if (!l.any_relevant[u])
      return "no invalidation of the domain was processed there after the unlink";
    return "the invalidations processed there after the unlink did not cover it";
  };
  const auto range = [this, &s](std::size_t from, std::size_t to) {
    for (std::size_t i = from; i < to && i < told_.size(); ++i)
      s.events.push_back(told_[i]);
  };
  const auto end_of = [this](std::size_t life) {
    return life + 1 < lives_.size() ? lives_[life + 1].first_event : told_.size();
  };

  if (lives_.empty()) {
    s.conclusion = "frame " + std::to_string(frame_) +
                   " was never allocated during this run: nothing to tell (the frames a run uses "
                   "are named in its violations and in its trace's retire and free events)";
    out.story = std::move(s);
    return;
  }

  std::uint64_t shown = 0;
  if (walk < told_.size()) {
    const frame_event& w = told_[walk];
    // The lifetime freed before the walk: the walk's own, or, when the frame was allocated
    // again before the walk, the one before it.
    std::size_t focus = told_life_[walk];
    const auto freed_before = [&](std::size_t life) {
      return lives_[life].freed && lives_[life].free_event < walk;
    };
    if (!freed_before(focus) && focus > 0 && freed_before(focus - 1)) --focus;
    const lifetime& l = lives_[focus];
    // From its allocation to the walk, then what followed in that lifetime (late invalidations,
    // the reuse), at most a dozen events.
    range(l.first_event, walk + 1);
    std::size_t extra = 0;
    for (std::size_t i = walk + 1; i < end_of(focus) && extra < 12; ++i, ++extra)
      s.events.push_back(told_[i]);
    shown = 1;
    const std::string walk_phrase = w.text.substr(0, w.text.find(" (S1)"));
    if (freed_before(focus) && l.unlinked) {
      const std::string bad = units_text(l, false);
      if (!bad.empty()) {
        std::string reasons;
        for (unsigned u = 0; u < units_ && u < limits::max_iommus; ++u) {
          if (l.did_plus1[u] == 0) continue;
          if (l.covered_at[u] != 0 && l.covered_at[u] <= l.free_ns) continue;
          reasons += std::string(reasons.empty() ? "" : "; ") + "on IOMMU " + std::to_string(u) +
                     " " + why_not(l, u);
        }
        s.conclusion = "frame " + std::to_string(frame_) + " (a level-" + std::to_string(l.level) +
                       " table of domain " + std::to_string(l.domain) + ") was freed by " +
                       l.free_path + " at " + at(l.free_ns) + ", " +
                       at(l.free_ns >= l.unlink_ns ? l.free_ns - l.unlink_ns : 0) +
                       " after its unlink, before a covering invalidation had completed on " + bad +
                       " (" + reasons + "), so a cached pointer still led to it: " + walk_phrase +
                       ".";
      } else {
        s.conclusion = "every IOMMU of domain " + std::to_string(l.domain) +
                       " had completed a covering invalidation before frame " +
                       std::to_string(frame_) + " was freed, yet " + walk_phrase +
                       ": the walk did not come through an entry cached before the unlink.";
      }
    } else if (freed_before(focus)) {
      s.conclusion = "frame " + std::to_string(frame_) + " was freed by " + l.free_path +
                     " without an unlink the tables reported; then " + walk_phrase + ".";
    } else {
      s.conclusion = "frame " + std::to_string(frame_) +
                     " was not freed before the walk: " + walk_phrase + ".";
    }
  } else {
    // No unsafe read: the lifetimes that went through a free, the uncovered ones first.
    std::uint64_t freed = 0, uncovered = 0;
    std::vector<std::size_t> pick;
    for (std::size_t i = 0; i < lives_.size(); ++i) {
      const lifetime& l = lives_[i];
      if (!l.freed || !l.unlinked) continue;
      ++freed;
      if (!units_text(l, false).empty()) {
        ++uncovered;
        if (pick.size() < 3) pick.push_back(i);
      }
    }
    for (std::size_t i = 0; i < lives_.size() && pick.size() < 3; ++i) {
      const lifetime& l = lives_[i];
      if (l.freed && l.unlinked && units_text(l, false).empty()) pick.push_back(i);
    }
    if (pick.empty()) pick.push_back(0);
    std::sort(pick.begin(), pick.end());
    for (std::size_t k = 0; k < pick.size(); ++k) {
      std::size_t end = end_of(pick[k]);
      // The next lifetime shown begins with its own allocation: its "reused" would repeat it.
      if (k + 1 < pick.size() && pick[k + 1] == pick[k] + 1 && end > 0 &&
          told_[end - 1].kind == "reused")
        --end;
      range(lives_[pick[k]].first_event, end);
    }
    shown = pick.size();
    const std::string n = std::to_string(allocations_);
    const std::string times = allocations_ == 1 ? " time" : " times";
    if (freed == 0) {
      s.conclusion = "frame " + std::to_string(frame_) + " was allocated " + n + times +
                     " and never unlinked and freed during the workload (teardown frees it).";
    } else if (uncovered == 0) {
      s.conclusion = "frame " + std::to_string(frame_) + " was allocated " + n + times +
                     "; each of its " + std::to_string(freed) +
                     " frees after an unlink came after every IOMMU of its domain had completed "
                     "a covering invalidation, and no device read it unsafely.";
    } else {
      s.conclusion = "frame " + std::to_string(frame_) + " was allocated " + n + times + "; " +
                     std::to_string(uncovered) + " of its " + std::to_string(freed) +
                     " frees came before a covering invalidation had completed on every IOMMU "
                     "of its domain (S3), though no device is seen reading it (only the first " +
                     std::to_string(violations_kept) + " violations of a run are kept in full).";
    }
  }
  s.lifetimes_shown = shown;
  for (const lifetime& l : lives_) {
    for (unsigned u = 0; u < units_ && u < limits::max_iommus; ++u) {
      if (l.hidden[u] == 0) continue;
      const bool in = std::any_of(s.events.begin(), s.events.end(), [&](const frame_event& e) {
        return e.kind == "allocated" && e.time_ns == l.alloc_ns;
      });
      if (!in) continue;
      frame_event& e = s.events.emplace_back();
      e.time_ns = l.free_ns != 0 ? l.free_ns : l.alloc_ns;
      e.kind = "note";
      e.iommu = static_cast<int>(u);
      e.text = std::to_string(l.hidden[u]) + " more invalidations of the domain on IOMMU " +
               std::to_string(u) + " in the lifetime allocated at " + at(l.alloc_ns) +
               " are not listed";
    }
  }
  out.story = std::move(s);
}

void recorder::finish(const std::vector<iommu::violation>& kept, run_result& out) {
  if (story_) build_story(out);
  if (!trace_) return;
  for (device_track& d : actors_)
    close_device(d);
  for (const pending_sample& p : out.reclaim.pending_series) {
    emit("{\"ph\":\"C\",\"pid\":" + std::to_string(pid_cpus) +
         ",\"tid\":0,\"ts\":" + us(p.time_ns) +
         ",\"name\":\"frames pending\",\"args\":{\"frames\":" + std::to_string(p.frames) + "}}");
  }
  bool first = true;
  for (const iommu::violation& v : kept) {
    const std::string a = args()
                              .num("frame", v.frame.valid() ? v.frame.value : 0)
                              .str("kind", iommu::violation_kind_name(v.kind))
                              .num("iommu", v.unit)
                              .str("iova", hex(v.iova))
                              .str("text", v.describe())
                              .done();
    instant(pid_devices, static_cast<int>(v.device), v.at_ns, "violation (S1)", "violation", a);
    if (first) instant(pid_devices, 0, v.at_ns, "first violation", "violation", a, 'g');
    first = false;
  }
  // The document: metadata first (never dropped), then the events while they fit the bound.
  const std::string head = "{\"displayTimeUnit\":\"ns\",\"otherData\":" +
                           args()
                               .str("generator", "ptreclaim")
                               .str("command", want_.command)
                               .str("scenario", ctx_.scenario)
                               .str("policy", ctx_.policy)
                               .num("seed", ctx_.seed)
                               .str("time", "virtual: 1 us here is 1 us of simulated time")
                               .num("violations", out.violations.count)
                               .done();
  const std::string meta = metadata();
  // Filled in below, once the dropped count is known; room for it is kept.
  const std::size_t tail_room = 160;
  std::size_t budget = want_.trace_limit_bytes;
  budget = budget > head.size() + meta.size() + tail_room
               ? budget - head.size() - meta.size() - tail_room
               : 0;
  std::uint64_t kept_events = events_;
  if (body_.size() > budget) {
    // Cut at an event boundary.
    std::size_t cut = budget;
    while (cut > 0 && body_.compare(cut, 2, ",\n") != 0)
      --cut;
    std::uint64_t removed = 1;
    for (std::size_t i = cut; i + 1 < body_.size(); ++i)
      if (body_[i] == ',' && body_[i + 1] == '\n') ++removed;
    if (cut == 0) removed = events_;
    body_.resize(cut);
    kept_events = events_ - std::min(events_, removed);
    dropped_ += events_ - kept_events;
  }
  std::string doc;
  doc.reserve(head.size() + meta.size() + body_.size() + tail_room);
  doc += head;
  doc.pop_back();  // reopen otherData for the counts
  doc += ",\"events\":" + std::to_string(kept_events) +
         ",\"dropped_events\":" + std::to_string(dropped_) + "},\n\"traceEvents\":[\n";
  doc += meta;
  doc += body_.empty() ? std::string(
                             "{\"ph\":\"M\",\"pid\":1,\"tid\":0,\"name\":\"thread_name\","
                             "\"args\":{\"name\":\"CPU 0\"}}")
                       : body_;
  doc += "\n]}\n";
  want_.trace_json = std::move(doc);
  want_.trace_events = kept_events;
  want_.trace_dropped = dropped_;
  body_.clear();
  body_.shrink_to_fit();
}

}  // namespace ptreclaim::sim::detail
