// The verdict (exit status and its one-line reason) and the terminal progress line.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <string>

#include "ptreclaim/report/report.hpp"
#include "report/report_format.hpp"

namespace ptreclaim::sim {
namespace {

std::string failed_list(const run_result& r, bool exclude_caught) {
  std::string out;
  for (std::size_t i = 0; i < invariant_count; ++i) {
    const auto inv = static_cast<invariant>(i);
    const auto& v = r.invariants[i];
    if (!v.checked || v.held) continue;
    if (exclude_caught && (inv == invariant::s1 || inv == invariant::s3 || inv == invariant::s6))
      continue;
    if (!out.empty()) out += "; ";
    out += std::string(invariant_name(inv)) + " failed";
    if (!v.reason.empty()) out += ": " + v.reason;
  }
  return out;
}

// What a canary is built to trip: a stale walk (S1), an early free (S3) or an early IOVA reuse
// (S6).
bool caught(const run_result& r) {
  for (invariant i : {invariant::s1, invariant::s3, invariant::s6}) {
    const auto& v = r.at(i);
    if (v.checked && !v.held) return true;
  }
  return false;
}

std::string first_line(std::string s) {
  const auto nl = s.find('\n');
  if (nl != std::string::npos) s.resize(nl);
  return s;
}

std::string who(const run_result& r) {
  return r.policy + " on " + r.scenario + " (seed " + std::to_string(r.seed) + ")";
}

}  // namespace

verdict judge(const run_result& r, bool expect_violation) {
  if (!expect_violation && !r.contract_broken.empty() && r.policy_safe && !r.all_held()) {
    std::string reason = "unsafe here by contract: " + who(r) + " " + r.contract_broken + ": " +
                         first_line(failed_list(r, false));
    if (!r.violations.replay_command.empty())
      reason += " (" + detail::replay_text(r.violations) + ")";
    return {exit_unsafe, reason};
  }
  if (!expect_violation) {
    if (r.all_held()) return {exit_ok, "ok: every checked invariant held for " + who(r)};
    std::string reason = "unsafe: " + who(r) + ": " + first_line(failed_list(r, false));
    if (!r.violations.replay_command.empty())
      reason += " (" + detail::replay_text(r.violations) + ")";
    return {exit_unsafe, reason};
  }
  if (!caught(r)) {
    return {exit_unsafe, "expected a violation but none was caught for " + who(r) +
                             ": the scenario or the checker may be broken"};
  }
  if (const std::string other = failed_list(r, true); !other.empty()) {
    return {exit_unsafe,
            "the expected violation was caught for " + who(r) + ", but also " + first_line(other)};
  }
  return {exit_ok, "ok: the expected violation was caught for " + who(r) + " (" +
                       std::to_string(r.violations.count) + " violations)"};
}

namespace {
template <class Runs>
verdict judge_all(const Runs& runs, bool expect_violation) {
  std::size_t safe = 0;
  std::size_t canaries = 0;
  std::string contract;
  for (const auto& r : runs) {
    if (r.policy_safe && !r.contract_broken.empty()) {
      // Not a bug of the policy: named in the verdict, never judged as a safety failure.
      if (contract.find(r.policy) == std::string::npos)
        contract += "; " + r.policy + " is unsafe here by contract (it " + r.contract_broken + ")";
      continue;
    }
    if (r.policy_safe) {
      verdict v = judge(r, false);
      if (v.code != exit_ok) return v;
      ++safe;
    } else {
      if (expect_violation) {
        verdict v = judge(r, true);
        if (v.code != exit_ok) return v;
      }
      ++canaries;
    }
  }
  std::string reason =
      "ok: every safe policy held every checked invariant (" + std::to_string(safe) + " runs)";
  if (canaries > 0) {
    reason += expect_violation ? "; every canary caught its violation"
                               : "; " + std::to_string(canaries) + " canary runs not judged";
  }
  return {exit_ok, reason + contract};
}
}  // namespace

verdict judge(const compare_result& r, bool expect_violation) {
  return judge_all(r.runs, expect_violation);
}
verdict judge(const scale_result& r, bool expect_violation) {
  return judge_all(r.runs, expect_violation);
}

progress_line::progress_line(std::FILE* out, bool enabled, std::chrono::milliseconds delay)
    : out_(out),
      enabled_(enabled && out != nullptr),
      delay_(delay),
      start_(std::chrono::steady_clock::now()) {}

progress_line::~progress_line() {
  finish();
}

void progress_line::set_label(std::string label) {
  label_ = std::move(label);
}

void progress_line::update(double fraction) {
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  if (now - start_ < delay_) return;
  if (drawn_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  if (fraction < 0) fraction = 0;
  if (fraction > 1) fraction = 1;
  const double secs = std::chrono::duration<double>(now - start_).count();
  std::fprintf(out_, "\r\033[K%s  %3d%%  %.1f s%s", label_.c_str(),
               static_cast<int>(fraction * 100.0), secs, eta_text(fraction, secs).c_str());
  std::fflush(out_);
  drawn_ = true;
}

void progress_line::finish() {
  if (!drawn_) return;
  std::fprintf(out_, "\r\033[K");
  std::fflush(out_);
  drawn_ = false;
}

std::string progress_line::eta_text(double fraction, double elapsed_s) {
  // Too early to tell: under 2 % done or half a second in.
  if (fraction < 0.02 || fraction >= 1.0 || elapsed_s < 0.5) return {};
  const double left = elapsed_s * (1.0 - fraction) / fraction;
  char buf[48];
  if (left < 60)
    std::snprintf(buf, sizeof buf, ", about %.0f s left", std::max(1.0, left));
  else if (left < 3600)
    std::snprintf(buf, sizeof buf, ", about %.0f min left", left / 60.0);
  else
    std::snprintf(buf, sizeof buf, ", about %.1f h left", left / 3600.0);
  return buf;
}

bool progress_line::stderr_wants_progress(bool quiet) noexcept {
  return !quiet && ::isatty(STDERR_FILENO) == 1;
}

}  // namespace ptreclaim::sim
