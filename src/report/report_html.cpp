// The HTML report folder: index.html (tables + gnuplot plots inlined as SVG), results.json, and
// plots/ with the gnuplot script and data so a reader can re-plot. gnuplot runs as a subprocess
// (posix_spawn, output to plots/gnuplot.log, killed after a timeout so a report never hangs).
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "ptreclaim/base/file.hpp"
#include "ptreclaim/report/report.hpp"
#include "report/report_format.hpp"

extern char** environ;

namespace ptreclaim::sim {
namespace {

namespace fs = std::filesystem;

constexpr auto gnuplot_timeout = std::chrono::seconds(60);

std::string html_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// A gnuplot string literal in single quotes (a quote is doubled).
std::string gp_quote(std::string_view s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'')
      out += "''";
    else if (c != '\n')
      out += c;
  }
  return out + "'";
}

std::string html_table(const std::vector<std::string>& header,
                       const std::vector<std::vector<std::string>>& rows) {
  std::string out = "<table>\n<tr>";
  for (const auto& h : header)
    out += "<th>" + html_escape(h) + "</th>";
  out += "</tr>\n";
  for (const auto& row : rows) {
    out += "<tr>";
    for (std::size_t c = 0; c < row.size(); ++c) {
      const bool bad = row[c].rfind("FAIL", 0) == 0 || row[c] == "NO";
      out += std::string(bad ? "<td class=\"bad\">" : "<td>") + html_escape(row[c]) + "</td>";
    }
    out += "</tr>\n";
  }
  return out + "</table>\n";
}

// Runs `program script` in `dir`, output to log; false with a reason on failure or timeout.
bool run_gnuplot(const std::string& program, const std::string& dir, const std::string& script,
                 std::string& why) {
  const std::string log = dir + "/gnuplot.log";
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  std::vector<std::string> args{program, script};
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (auto& a : args)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  // gnuplot resolves the script's relative output names against its working directory; the
  // script therefore names absolute paths, and the child keeps ours.
  const int rc = posix_spawnp(&pid, program.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    why = "could not start '" + program + "': " + std::generic_category().message(rc);
    return false;
  }
  const auto deadline = std::chrono::steady_clock::now() + gnuplot_timeout;
  int status = 0;
  for (;;) {
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (r < 0) {
      why = std::string("waitpid: ") + std::generic_category().message(errno);
      return false;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      why = "gnuplot did not finish within 60 s (killed)";
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    auto text = read_text_file(log);
    why = "gnuplot failed (see " + log + ")";
    if (text.ok() && !text->empty()) why += ": " + text->substr(0, 400);
    return false;
  }
  return true;
}

// The SVG body without its XML prolog, ready to inline.
std::string inline_svg(const std::string& path) {
  auto text = read_text_file(path);
  if (!text.ok()) return {};
  const auto start = text->find("<svg");
  return start == std::string::npos ? std::string() : text->substr(start);
}

struct plot {
  std::string name;      // file stem
  std::string title;     // gnuplot's title: what the plot is
  std::string caption;   // the page's: what to look at
  std::string commands;  // gnuplot commands after the common header
  unsigned height = 380;
  bool multiplot = false;  // the commands set their own layout and title
};

struct series_source {
  std::string label;
  const run_result* run;
};

std::vector<series_source> all_runs(const report_input& in) {
  std::vector<series_source> out;
  if (in.compare) {
    for (const auto& r : in.compare->runs)
      out.push_back({r.policy, &r});
  } else if (in.run) {
    out.push_back({in.run->policy, &*in.run});
  } else if (in.scale && !in.scale->cpu_counts.empty()) {
    // The largest CPU count of each policy.
    const std::size_t c = in.scale->cpu_counts.size() - 1;
    for (std::size_t p = 0; p < in.scale->policies.size(); ++p) {
      if (const run_result* r = in.scale->at(p, c)) {
        out.push_back({r->policy + " @" + std::to_string(r->cpus), r});
      }
    }
  }
  return out;
}

// The colour of each policy's panel or line, in report order: canaries in reds, the others in
// distinct darker colours.
std::vector<std::string> colours(const std::vector<const run_result*>& runs) {
  static constexpr const char* safe[] = {"#1b7837", "#2166ac", "#762a83", "#e08214",
                                         "#35978f", "#8c510a", "#5aae61", "#4393c3"};
  static constexpr const char* canary[] = {"#d6604d", "#f4a582", "#b2182b"};
  std::vector<std::string> out;
  std::size_t s = 0, c = 0;
  for (const run_result* r : runs) {
    if (r != nullptr && !r->policy_safe)
      out.emplace_back(canary[c++ % (sizeof canary / sizeof canary[0])]);
    else
      out.emplace_back(safe[s++ % (sizeof safe / sizeof safe[0])]);
  }
  return out;
}

Status write_plots(const std::string& pdir, const report_input& in, std::vector<plot>& plots) {
  const auto runs = all_runs(in);
  std::vector<const run_result*> run_ptrs;
  for (const auto& r : runs)
    run_ptrs.push_back(r.run);
  const std::vector<std::string> colour = colours(run_ptrs);
  // Throughput per policy.
  if (!runs.empty()) {
    std::string dat;
    for (std::size_t i = 0; i < runs.size(); ++i) {
      dat += std::to_string(i) + " \"" + runs[i].label + "\" " +
             detail::fixed(runs[i].run->ops_per_s(), 1) + " " +
             (runs[i].run->policy_safe ? "0x1b7837" : "0xd6604d") + "\n";
    }
    PTR_TRY(write_text_file(pdir + "/throughput.dat", dat));
    plots.push_back(
        {"throughput", "Throughput per policy",
         "Throughput per policy: taller is faster. Red bars are the canaries, unsafe on purpose; "
         "a safe bar close to immediate's costs little for its safety.",
         "set style fill solid 0.8 border -1\nset boxwidth 0.6\nset yrange [0:*]\n"
         "set ylabel 'operations / s'\nset format y '%.1s%c'\nset xtics rotate by -30 noenhanced\n"
         "set grid ytics\n"
         "plot " +
             gp_quote(pdir + "/throughput.dat") +
             " using 1:3:4:xtic(2) with boxes lc rgb variable notitle\n"});
  }
  // Frames pending over time: one panel per policy, shared axes.
  {
    std::vector<std::size_t> with;
    std::uint64_t xmax = 0, ymax = 0;
    for (std::size_t i = 0; i < runs.size(); ++i) {
      const auto& series = runs[i].run->reclaim.pending_series;
      if (series.empty()) continue;
      with.push_back(i);
      std::string dat;
      for (const auto& smp : series) {
        dat += detail::fixed(static_cast<double>(smp.time_ns) / 1e6, 6) + " " +
               std::to_string(smp.frames) + "\n";
        xmax = std::max(xmax, smp.time_ns);
        ymax = std::max(ymax, smp.frames);
      }
      PTR_TRY(write_text_file(pdir + "/pending_" + std::to_string(i) + ".dat", dat));
    }
    if (!with.empty()) {
      const std::size_t cols = std::min<std::size_t>(3, with.size());
      const std::size_t rows = (with.size() + cols - 1) / cols;
      const double height = 60.0 + 200.0 * static_cast<double>(rows);
      // Whole frames on the y axis: at most about five ticks.
      const std::uint64_t ystep = std::max<std::uint64_t>(1, (ymax + 4) / 5);
      std::string cmd =
          "set multiplot layout " + std::to_string(rows) + "," + std::to_string(cols) +
          " margins 0.09,0.98," + detail::fixed(50.0 / height, 3) + "," +
          detail::fixed(1.0 - 40.0 / height, 3) + " spacing 0.07," +
          detail::fixed(75.0 / height, 3) + "\nset ytics 0," + std::to_string(ystep) +
          "\nset xrange [0:" +
          detail::fixed(static_cast<double>(std::max<std::uint64_t>(xmax, 1)) / 1e6, 6) +
          "]\nset yrange [0:" + std::to_string(std::max<std::uint64_t>(ymax, 1) + ymax / 10 + 1) +
          "]\nset grid\nset xlabel 'time (ms, " + runs.front().run->time_base +
          ")' offset 0,0.5\nset ylabel 'retired, not freed' offset 1.5,0\n"
          "set format x '%g'\n";
      for (std::size_t i : with) {
        cmd += "set title " + gp_quote(runs[i].label) + " noenhanced\nplot " +
               gp_quote(pdir + "/pending_" + std::to_string(i) + ".dat") +
               " using 1:2 with steps lw 1.5 lc rgb '" + colour[i] + "' notitle\n";
      }
      cmd += "unset multiplot\n";
      plot p;
      p.name = "pending";
      p.title = "Frames pending over time";
      p.caption =
          "Frames pending over time, one panel per policy on shared axes: the higher and the "
          "longer a panel's curve stays up, the more retired page-table frames its policy holds "
          "before it frees them (memory a device could still reach through a stale cache).";
      p.commands = std::move(cmd);
      p.height = static_cast<unsigned>(60 + 200 * rows);
      p.multiplot = true;
      plots.push_back(std::move(p));
    }
  }
  // Retire-to-free latency distribution as a CDF.
  std::string latency_cmd;
  for (std::size_t i = 0; i < runs.size(); ++i) {
    const auto& h = runs[i].run->reclaim.retire_to_free_ns;
    if (h.count() == 0) continue;
    std::string dat;
    std::uint64_t seen = 0;
    for (unsigned b = 0; b < log_histogram::bucket_count; ++b) {
      if (h.bucket(b) == 0) continue;
      seen += h.bucket(b);
      std::uint64_t x = log_histogram::bucket_upper(b);
      if (x > h.max()) x = h.max();
      if (x == 0) x = 1;  // log axis
      dat += std::to_string(x) + " " +
             detail::fixed(static_cast<double>(seen) / static_cast<double>(h.count()), 6) + "\n";
    }
    const std::string file = pdir + "/latency_" + std::to_string(i) + ".dat";
    PTR_TRY(write_text_file(file, dat));
    latency_cmd += std::string(latency_cmd.empty() ? "plot " : ", \\\n     ") + gp_quote(file) +
                   " using 1:2 with steps lw 1.5 lc rgb '" + colour[i] + "' title " +
                   gp_quote(runs[i].label);
  }
  if (!latency_cmd.empty()) {
    plots.push_back(
        {"latency", "Retire-to-free latency (cumulative)",
         "Retire-to-free latency, cumulative: the further left a curve rises to 1, the sooner its "
         "policy frees a retired frame (the canaries are left of every safe policy: they free "
         "before the invalidation completed).",
         "set logscale x 10\nset format x '10^{%L}'\nset xlabel 'retire -> free (ns)'\n"
         "set ylabel 'fraction of frees'\nset yrange [0:1.02]\nset key outside right noenhanced\n"
         "set grid\n" +
             latency_cmd + "\n"});
  }
  // Throughput vs CPUs, with linear scaling from the best policy at the first count.
  if (in.scale && !in.scale->cpu_counts.empty()) {
    std::vector<const run_result*> firsts;
    for (std::size_t p = 0; p < in.scale->policies.size(); ++p)
      firsts.push_back(in.scale->at(p, 0));
    const std::vector<std::string> scale_colour = colours(firsts);
    std::string cmd;
    double y0 = 0;
    unsigned x0 = in.scale->cpu_counts.front();
    std::string from;
    for (std::size_t p = 0; p < in.scale->policies.size(); ++p) {
      std::string dat;
      const run_result* first = nullptr;
      for (std::size_t c = 0; c < in.scale->cpu_counts.size(); ++c) {
        if (const run_result* r = in.scale->at(p, c)) {
          dat += std::to_string(r->cpus) + " " + detail::fixed(r->ops_per_s(), 1) + "\n";
          if (first == nullptr) first = r;
        }
      }
      // The reference starts from the best safe policy (a canary's speed is not a goal).
      if (first != nullptr && first->judged_safe() && first->ops_per_s() > y0) {
        y0 = first->ops_per_s();
        x0 = first->cpus;
        from = in.scale->policies[p];
      }
      const std::string file = pdir + "/scale_" + std::to_string(p) + ".dat";
      PTR_TRY(write_text_file(file, dat));
      cmd += std::string(cmd.empty() ? "" : ", \\\n     ") + gp_quote(file) +
             " using 1:2 with linespoints lw 1.5 pt 7 lc rgb '" + scale_colour[p] + "' title " +
             gp_quote(in.scale->policies[p]);
    }
    const unsigned xmax = in.scale->cpu_counts.back();
    std::string ref = "plot [" + std::to_string(std::max(1u, in.scale->cpu_counts.front())) + ":" +
                      std::to_string(std::max(xmax, in.scale->cpu_counts.front() + 1)) + "] ";
    if (y0 > 0) {
      ref += detail::fixed(y0, 1) + " * x / " + std::to_string(x0) +
             " with lines dt 2 lw 1.5 lc rgb '#777777' title 'linear scaling', \\\n     ";
    }
    plots.push_back(
        {"scale", "Throughput vs simulated CPUs",
         "Throughput vs simulated CPUs (log-log): the dashed line is linear scaling from the best "
         "safe policy at " +
             std::to_string(x0) + (x0 == 1 ? " CPU" : " CPUs") +
             (from.empty() ? "" : " (" + from + ")") +
             "; the further a policy falls below it as CPUs are added, the worse it scales.",
         "set logscale x 2\nset logscale y 10\nset xlabel 'simulated CPUs'\n"
         "set ylabel 'operations / s'\nset format y '%.1s%c'\nset key outside right noenhanced\n"
         "set grid\n" +
             ref + cmd + "\n"});
  }
  return {};
}

}  // namespace

bool program_available(const std::string& program) {
  if (program.empty()) return false;
  if (program.find('/') != std::string::npos) return ::access(program.c_str(), X_OK) == 0;
  const char* path = std::getenv("PATH");  // NOLINT(concurrency-mt-unsafe): nothing sets it
  std::string_view rest = path != nullptr ? path : "/usr/bin:/bin";
  while (true) {
    const auto colon = rest.find(':');
    std::string dir(rest.substr(0, colon));
    if (dir.empty()) dir = ".";
    dir += '/';
    dir += program;
    if (::access(dir.c_str(), X_OK) == 0) return true;
    if (colon == std::string_view::npos) break;
    rest.remove_prefix(colon + 1);
  }
  return false;
}

Result<report_outcome> write_html_report(const std::string& dir, const report_input& in,
                                         const report_options& options) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec)
    return Status(errc::invalid_argument,
                  "cannot create report folder '" + dir + "': " + ec.message());
  const std::string abs_dir = fs::absolute(dir, ec).string();
  const std::string pdir = abs_dir + "/plots";

  report_outcome outcome;
  outcome.html_path = abs_dir + "/index.html";
  outcome.json_path = abs_dir + "/results.json";

  // results.json: every result present, under its kind.
  std::string json = "{\n";
  bool first = true;
  auto add = [&](const char* key, const std::string& body) {
    json += std::string(first ? "" : ",\n") + "\"" + key + "\": " + body;
    first = false;
  };
  if (in.run) add("run", to_json(*in.run, 1));
  if (in.compare) add("compare", to_json(*in.compare, 1));
  if (in.scale) add("scale", to_json(*in.scale, 1));
  json += "\n}\n";
  PTR_TRY(write_text_file(outcome.json_path, json));

  // Plots.
  std::vector<plot> plots;
  PTR_TRY(write_plots(pdir, in, plots));
  std::vector<std::string> svgs(plots.size());
  if (plots.empty()) {
    outcome.plot_message = "no data to plot";
  } else if (!program_available(options.gnuplot)) {
    outcome.plot_message = "gnuplot was not found ('" + options.gnuplot +
                           "' is not on PATH): plots are missing. Install gnuplot-nox "
                           "(scripts/setup.sh does) and run again; the tables below are complete.";
  } else {
    std::string script =
        "# gnuplot script written by ptreclaim; re-run with: gnuplot " + pdir + "/plots.gp\n";
    for (const auto& p : plots) {
      script += "\nreset\nset terminal svg size 760," + std::to_string(p.height) +
                " dynamic enhanced font 'sans,11' background rgb 'white'\n"
                "set output " +
                gp_quote(pdir + "/" + p.name + ".svg") + "\n" +
                (p.multiplot ? std::string() : "set title " + gp_quote(p.title) + "\n") +
                p.commands + "unset output\n";
    }
    PTR_TRY(write_text_file(pdir + "/plots.gp", script));
    std::string why;
    if (run_gnuplot(options.gnuplot, pdir, pdir + "/plots.gp", why)) {
      outcome.plotted = true;
      for (std::size_t i = 0; i < plots.size(); ++i) {
        svgs[i] = inline_svg(pdir + "/" + plots[i].name + ".svg");
        if (svgs[i].empty()) {
          outcome.plotted = false;
          outcome.plot_message = "gnuplot ran but " + plots[i].name + ".svg is missing or empty";
        }
      }
    } else {
      outcome.plot_message = why;
    }
  }

  std::string html =
      "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>" +
      html_escape(in.title) +
      "</title>\n<style>\n"
      "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}\n"
      "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:.3em .6em;"
      "text-align:right}td:first-child,th:first-child{text-align:left}th{background:#eee}\n"
      "td.bad{background:#fdd;font-weight:bold}.warn{border:2px solid #c60;background:#fff4e5;"
      "padding:.8em;margin:1em 0}pre{background:#f6f6f6;padding:.8em;overflow-x:auto}\n"
      "figure{margin:1.5em 0}figcaption{font-weight:bold}\n</style>\n</head>\n<body>\n<h1>" +
      html_escape(in.title) + "</h1>\n";
  if (!in.command.empty()) html += "<p>Command: <code>" + html_escape(in.command) + "</code></p>\n";
  html +=
      "<p>Data: <a href=\"results.json\">results.json</a> (every metric, histograms and time "
      "series).</p>\n";
  const std::string stopped = in.compare && !in.compare->complete ? in.compare->interrupted_by
                              : in.scale && !in.scale->complete   ? in.scale->interrupted_by
                              : in.run && !in.run->complete       ? in.run->interrupted_by
                                                                  : std::string();
  if (!stopped.empty()) {
    html += "<div class=\"warn\"><b>Incomplete.</b> Stopped early by " + html_escape(stopped) +
            ": what is shown is what finished.</div>\n";
  }
  if (!outcome.plotted) {
    html += "<div class=\"warn\"><b>Plots are missing.</b> " + html_escape(outcome.plot_message) +
            "</div>\n";
  }
  if (in.compare) {
    const run_result* baseline = in.compare->find("immediate");
    std::vector<std::vector<std::string>> rows;
    for (const auto& r : in.compare->runs)
      rows.push_back(detail::row_cells(r, baseline));
    html += "<h2>Comparison: " + html_escape(in.compare->scenario) + "</h2>\n<p>executor " +
            html_escape(in.compare->executor) + ", " + std::to_string(in.compare->cpus) +
            " CPUs, seed " + std::to_string(in.compare->seed) + "</p>\n" +
            html_table(detail::column_names(), rows);
  }
  if (in.scale) {
    html += "<h2>Scaling: " + html_escape(in.scale->scenario) + "</h2>\n<pre>" +
            html_escape(format_scale_table(*in.scale)) + "</pre>\n";
  }
  for (std::size_t i = 0; i < plots.size(); ++i) {
    if (svgs[i].empty()) continue;
    html += "<figure id=\"" + plots[i].name + "\">\n<figcaption>" + html_escape(plots[i].caption) +
            "</figcaption>\n" + svgs[i] + "\n</figure>\n";
  }
  if (in.run) html += "<h2>Run</h2>\n<pre>" + html_escape(format_run(*in.run)) + "</pre>\n";
  if (in.compare) {
    html += "<h2>Runs in detail</h2>\n";
    for (const auto& r : in.compare->runs)
      html += "<pre>" + html_escape(format_run(r)) + "</pre>\n";
  }
  html += "</body>\n</html>\n";
  PTR_TRY(write_text_file(outcome.html_path, html));
  if (!options.keep_plot_sources && outcome.plotted) fs::remove_all(pdir, ec);
  return outcome;
}

}  // namespace ptreclaim::sim
