// Checked, atomic output files (output.hpp).
#include "ptreclaim/report/output.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <type_traits>
#include <utility>

#include "ptreclaim/report/report.hpp"
#include "ptreclaim/sim/interrupt.hpp"

namespace ptreclaim::sim {
namespace {

namespace fs = std::filesystem;

std::string os_reason(int err) {
  return std::strerror(err);
}

Status io_error(std::string message) {
  return Status(errc::invalid_argument, std::move(message));
}

// The folder a file path lives in ("." for a bare name).
std::string folder_of(const std::string& path) {
  const fs::path p(path);
  return p.has_parent_path() ? p.parent_path().string() : std::string(".");
}

// A name for a temporary file beside `path`: hidden, and unique to this process and call.
std::string temp_name_for(const std::string& path) {
  static std::atomic<unsigned> counter{0};
  const fs::path p(path);
  const std::string name = "." + p.filename().string() + ".tmp-" + std::to_string(::getpid()) +
                           "-" + std::to_string(counter.fetch_add(1));
  return p.has_parent_path() ? (p.parent_path() / name).string() : name;
}

// Whether a file can be created in `folder` (which must exist and be a folder).
Status probe_folder(const std::string& folder) {
  struct stat st {};
  if (::stat(folder.c_str(), &st) != 0) {
    if (errno == ENOENT) return io_error("folder '" + folder + "' does not exist");
    return io_error("cannot use folder '" + folder + "': " + os_reason(errno));
  }
  if (!S_ISDIR(st.st_mode)) return io_error("'" + folder + "' is not a folder");
  const std::string probe = temp_name_for(folder + "/probe");
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0)
    return io_error("cannot create files in folder '" + folder + "': " + os_reason(errno));
  ::close(fd);
  ::unlink(probe.c_str());
  return {};
}

// Writes all of `text` to `fd`; 0 or the errno of the failure.
int write_all_fd(int fd, std::string_view text) {
  while (!text.empty()) {
    const ssize_t n = ::write(fd, text.data(), text.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    text.remove_prefix(static_cast<std::size_t>(n));
  }
  return 0;
}

// The injected failure (PTRECLAIM_FAULT_WRITE): true when `path` should fail.
bool fault_injected(const std::string& path) {
  const char* v = std::getenv("PTRECLAIM_FAULT_WRITE");  // NOLINT(concurrency-mt-unsafe)
  return v != nullptr && *v != '\0' && path.find(v) != std::string::npos;
}

}  // namespace

Status check_output_file(const std::string& path) {
  if (path.empty()) return io_error("an empty path");
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return io_error("'" + path + "' is a folder, not a file");
    if (!S_ISREG(st.st_mode)) {  // a device or FIFO is written in place
      if (::access(path.c_str(), W_OK) != 0)
        return io_error("cannot write '" + path + "': " + os_reason(errno));
      return {};
    }
  }
  Status folder = probe_folder(folder_of(path));
  if (!folder.ok()) return io_error("cannot write '" + path + "': " + folder.message());
  return {};
}

Status check_output_folder(const std::string& dir) {
  if (dir.empty()) return io_error("an empty folder name");
  struct stat st {};
  if (::stat(dir.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) return io_error("'" + dir + "' exists and is not a folder");
    return probe_folder(dir);
  }
  // Not there yet: it is created when written, in a folder that must exist. A trailing slash
  // ("out/") names the folder itself.
  fs::path p(dir);
  if (!p.has_filename()) p = p.parent_path();
  Status parent = probe_folder(p.has_parent_path() ? p.parent_path().string() : ".");
  if (!parent.ok()) return io_error("cannot create '" + dir + "': " + parent.message());
  return {};
}

Status write_file_atomic(const std::string& path, std::string_view text) {
  const auto failed = [&](int err) {
    return io_error("cannot write '" + path + "': " + os_reason(err));
  };
  struct stat st {};
  const bool exists = ::stat(path.c_str(), &st) == 0;
  if (exists && S_ISDIR(st.st_mode)) return io_error("cannot write '" + path + "': it is a folder");
  if (exists && !S_ISREG(st.st_mode)) {
    // A device or FIFO: there is nothing to rename over.
    const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) return failed(errno);
    const int err = write_all_fd(fd, text);
    if (::close(fd) != 0 && err == 0) return failed(errno);
    return err == 0 ? Status() : failed(err);
  }
  // Through a symbolic link to its target, so the link stays a link.
  std::string target = path;
  std::error_code ec;
  if (exists && fs::is_symlink(path, ec)) {
    const fs::path real = fs::canonical(path, ec);
    if (!ec) target = real.string();
  }
  const std::string temp = temp_name_for(target);
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  if (fd < 0) {
    return io_error("cannot write '" + path + "': cannot create a file in folder '" +
                    folder_of(target) + "': " + os_reason(errno));
  }
  detail::set_temp_file_in_progress(temp.c_str());
  int err = 0;
  if (exists && ::fchmod(fd, st.st_mode & 07777) != 0) err = errno;
  if (err == 0 && fault_injected(path)) {
    err = write_all_fd(fd, text.substr(0, text.size() / 2));
    if (err == 0) err = ENOSPC;
  }
  if (err == 0) err = write_all_fd(fd, text);
  // fsync before the rename: otherwise a crash can leave the new name on an empty file.
  if (err == 0 && ::fsync(fd) != 0) err = errno;
  if (::close(fd) != 0 && err == 0) err = errno;
  if (err == 0 && ::rename(temp.c_str(), target.c_str()) != 0) err = errno;
  detail::set_temp_file_in_progress(nullptr);
  if (err != 0) {
    ::unlink(temp.c_str());
    return failed(err);
  }
  return {};
}

// ---- result_writer -----------------------------------------------------------------------

result_writer::result_writer(output_paths paths, std::chrono::milliseconds checkpoint_every)
    : paths_(std::move(paths)), every_(checkpoint_every) {}

Status result_writer::check() const {
  const auto file = [](const char* option, const std::string& path) -> Status {
    if (path.empty() || path == "-") return {};
    Status st = check_output_file(path);
    if (!st.ok()) return io_error(std::string(option) + ": " + st.message());
    return {};
  };
  PTR_TRY(file("--json", paths_.json));
  PTR_TRY(file("--csv", paths_.csv));
  PTR_TRY(file("--trace", paths_.trace));
  if (!paths_.report.empty()) {
    Status st = check_output_folder(paths_.report);
    if (!st.ok()) return io_error("--report: " + st.message());
  }
  if (paths_.json == "-" && paths_.csv == "-")
    return io_error("--json - and --csv - cannot both write to standard output");
  if (!paths_.json.empty() && paths_.json != "-" && paths_.json == paths_.csv)
    return io_error("--json and --csv name the same file '" + paths_.json + "'");
  if (!paths_.trace.empty() && (paths_.trace == paths_.json || paths_.trace == paths_.csv))
    return io_error("--trace names the same file as --json or --csv: '" + paths_.trace + "'");
  if (paths_.trace == "-") return io_error("--trace needs a file name, not '-'");
  return {};
}

void result_writer::save_checkpoint(const std::string& json) {
  const auto now = std::chrono::steady_clock::now();
  if (checkpointed_ && now - last_ < every_) return;
  checkpointed_ = true;
  last_ = now;
  Status st = write_file_atomic(paths_.json, json);
  if (!st.ok()) notes_.push_back("could not save the runs so far: " + st.message());
}

void result_writer::checkpoint(const compare_result& so_far) {
  if (!paths_.json.empty() && paths_.json != "-") save_checkpoint(to_json(so_far));
}
void result_writer::checkpoint(const scale_result& so_far) {
  if (!paths_.json.empty() && paths_.json != "-") save_checkpoint(to_json(so_far));
}
void result_writer::checkpoint(const campaign_result& so_far) {
  if (!paths_.json.empty() && paths_.json != "-") save_checkpoint(to_json(so_far));
}

Status result_writer::write_text(const std::string& option, const std::string& path,
                                 const std::string& text) {
  if (path.empty()) return {};
  if (path == "-") {
    std::fputs(text.c_str(), stdout);
    if (std::fflush(stdout) != 0 || std::ferror(stdout))
      return io_error(option + ": cannot write to standard output: " + os_reason(errno));
    return {};
  }
  Status st = write_file_atomic(path, text);
  if (!st.ok()) return io_error(option + ": " + st.message());
  return {};
}

template <class R>
Status result_writer::write_all(const R& r, const std::string& title) {
  Status first;
  const auto keep = [&first](Status st) {
    if (first.ok() && !st.ok()) first = std::move(st);
  };
  keep(write_text("--json", paths_.json, paths_.json.empty() ? std::string() : to_json(r)));
  keep(write_text("--csv", paths_.csv, paths_.csv.empty() ? std::string() : to_csv(r)));
  if (!paths_.report.empty()) {
    report_input in;
    in.title = title;
    in.command = paths_.command;
    if constexpr (std::is_same_v<R, run_result>) in.run = r;
    if constexpr (std::is_same_v<R, compare_result>) in.compare = r;
    if constexpr (std::is_same_v<R, scale_result>) in.scale = r;
    auto out = write_html_report(paths_.report, in);
    if (out.ok()) {
      notes_.push_back("report: " + out->html_path);
      if (!out->plotted) notes_.push_back("report: " + out->plot_message);
    } else {
      keep(io_error("--report: " + out.status().message()));
    }
  }
  return first;
}

Status result_writer::write(const run_result& r, const std::string& title) {
  return write_all(r, title);
}
Status result_writer::write(const compare_result& r, const std::string& title) {
  return write_all(r, title);
}
Status result_writer::write(const scale_result& r, const std::string& title) {
  return write_all(r, title);
}
Status result_writer::write(const campaign_result& r) {
  return write_text("--json", paths_.json, paths_.json.empty() ? std::string() : to_json(r));
}

Status result_writer::write(const tour_result& r) {
  return write_text("--json", paths_.json, paths_.json.empty() ? std::string() : to_json(r));
}

std::vector<std::string> result_writer::take_notes() {
  return std::exchange(notes_, {});
}

}  // namespace ptreclaim::sim
