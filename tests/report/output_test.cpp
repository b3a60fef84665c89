// Outputs that are never lost silently (output.hpp) and the stop flag and its signals
// (interrupt.hpp): paths checked before the work, atomic writes, an injected write failure,
// checkpoints, and what SIGINT / SIGTERM do, once and twice.
#include "ptreclaim/report/output.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "ptreclaim/sim/interrupt.hpp"

namespace ptreclaim::sim {
namespace {

namespace fs = std::filesystem;

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream o;
  o << in.rdbuf();
  return o.str();
}

void spill(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}

// Names in `dir` that an atomic write leaves only while it runs.
std::size_t temp_files(const std::string& dir) {
  std::size_t n = 0;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().find(".tmp-") != std::string::npos) ++n;
  return n;
}

class output_dir : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (fs::temp_directory_path() /
            ("ptreclaim_output_test_" + std::to_string(::getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name()))
               .string();
    fs::create_directories(dir_);
  }
  void TearDown() override {
    ::unsetenv("PTRECLAIM_FAULT_WRITE");
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string dir_;
};

TEST_F(output_dir, FilePathsAreCheckedBeforeAnyWork) {
  EXPECT_TRUE(check_output_file(dir_ + "/new.json").ok());
  Status missing = check_output_file(dir_ + "/no-such-folder/x.json");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.message(), "cannot write '" + dir_ + "/no-such-folder/x.json': folder '" +
                                   dir_ + "/no-such-folder' does not exist");
  Status folder = check_output_file(dir_);
  ASSERT_FALSE(folder.ok());
  EXPECT_EQ(folder.message(), "'" + dir_ + "' is a folder, not a file");
  spill(dir_ + "/plain", "x");
  Status under_file = check_output_file(dir_ + "/plain/x.json");
  ASSERT_FALSE(under_file.ok());
  EXPECT_NE(under_file.message().find("is not a folder"), std::string::npos);
  EXPECT_TRUE(check_output_file("/dev/null").ok());  // written in place, not replaced
  EXPECT_EQ(temp_files(dir_), 0u);                   // the probes are gone
}

TEST_F(output_dir, UnwritableFolderIsRefusedEvenForRoot) {
  // /sys refuses new files whatever the permissions say.
  if (!fs::is_directory("/sys")) GTEST_SKIP() << "no /sys here";
  Status st = check_output_file("/sys/ptreclaim-output-test.json");
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("cannot create files in folder '/sys': "), std::string::npos)
      << st.message();
  EXPECT_FALSE(check_output_folder("/sys/ptreclaim-report").ok());
}

TEST_F(output_dir, ReportFolders) {
  EXPECT_TRUE(check_output_folder(dir_).ok());
  EXPECT_TRUE(check_output_folder(dir_ + "/new-report").ok());
  EXPECT_TRUE(check_output_folder(dir_ + "/new-report/").ok());
  EXPECT_FALSE(check_output_folder(dir_ + "/a/b/c").ok());
  spill(dir_ + "/file", "x");
  Status st = check_output_folder(dir_ + "/file");
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.message(), "'" + dir_ + "/file' exists and is not a folder");
}

TEST_F(output_dir, AtomicWriteReplacesKeepsModeAndFollowsLinks) {
  const std::string path = dir_ + "/r.json";
  ASSERT_TRUE(write_file_atomic(path, "first").ok());
  EXPECT_EQ(slurp(path), "first");
  ASSERT_EQ(::chmod(path.c_str(), 0640), 0);
  ASSERT_TRUE(write_file_atomic(path, "second").ok());
  EXPECT_EQ(slurp(path), "second");
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640u);
  fs::create_symlink(path, dir_ + "/link.json");
  ASSERT_TRUE(write_file_atomic(dir_ + "/link.json", "third").ok());
  EXPECT_TRUE(fs::is_symlink(dir_ + "/link.json"));
  EXPECT_EQ(slurp(path), "third");
  EXPECT_TRUE(write_file_atomic("/dev/null", "discarded").ok());
  EXPECT_FALSE(write_file_atomic(dir_, "x").ok());
  EXPECT_EQ(temp_files(dir_), 0u);
}

TEST_F(output_dir, InjectedWriteFailureLeavesTheOldFileAndNoTemporary) {
  const std::string path = dir_ + "/kept.json";
  spill(path, "previous");
  ::setenv("PTRECLAIM_FAULT_WRITE", "kept.json", 1);
  Status st = write_file_atomic(path, std::string(10000, 'x'));
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.message(), "cannot write '" + path + "': No space left on device");
  EXPECT_EQ(slurp(path), "previous");
  EXPECT_EQ(temp_files(dir_), 0u);
  // Other paths are not affected.
  EXPECT_TRUE(write_file_atomic(dir_ + "/other.json", "fine").ok());
}

TEST_F(output_dir, WriterChecksEveryOptionAndReportsWriteFailures) {
  EXPECT_TRUE(
      result_writer({dir_ + "/a.json", dir_ + "/a.csv", dir_ + "/rep", "", ""}).check().ok());
  Status st = result_writer({"", dir_, "", "", ""}).check();
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.message(), "--csv: '" + dir_ + "' is a folder, not a file");
  EXPECT_FALSE(result_writer({"-", "-", "", "", ""}).check().ok());
  EXPECT_FALSE(result_writer({dir_ + "/x", dir_ + "/x", "", "", ""}).check().ok());
  st = result_writer({"", "", dir_ + "/missing/rep", "", ""}).check();
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.message().rfind("--report: cannot create '", 0), 0u) << st.message();

  ::setenv("PTRECLAIM_FAULT_WRITE", "r.json", 1);
  result_writer w({dir_ + "/r.json", dir_ + "/r.csv", "", "", ""});
  run_result r;
  r.policy = "sync";
  st = w.write(r, "t");
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.message(), "--json: cannot write '" + dir_ + "/r.json': No space left on device");
  EXPECT_TRUE(fs::exists(dir_ + "/r.csv"));  // the other output is still written
  EXPECT_FALSE(fs::exists(dir_ + "/r.json"));
}

TEST_F(output_dir, CheckpointsSaveTheRunsSoFar) {
  const std::string path = dir_ + "/s.json";
  result_writer w({path, "", "", "", ""}, std::chrono::hours(1));
  scale_result s;
  s.scenario = "dma-storm";
  s.policies = {"sync"};
  s.cpu_counts = {1, 2};
  s.complete = false;
  s.runs.resize(1);
  w.checkpoint(s);  // the first is written at once
  auto j = nlohmann::json::parse(slurp(path));
  EXPECT_EQ(j["complete"], false);
  EXPECT_EQ(j["runs"].size(), 1u);
  s.runs.resize(2);
  w.checkpoint(s);  // within the interval: not rewritten
  EXPECT_EQ(nlohmann::json::parse(slurp(path))["runs"].size(), 1u);
  s.complete = true;
  ASSERT_TRUE(w.write(s, "t").ok());  // the final write always is
  j = nlohmann::json::parse(slurp(path));
  EXPECT_EQ(j["complete"], true);
  EXPECT_EQ(j["runs"].size(), 2u);
  // A failed checkpoint is noted, not fatal.
  result_writer bad({dir_ + "/gone/s.json", "", "", "", ""});
  bad.checkpoint(s);
  ASSERT_EQ(bad.take_notes().size(), 1u);
}

TEST(stop_flag, KeepsTheFirstRequest) {
  stop_flag f;
  EXPECT_FALSE(f.requested());
  f.request(SIGTERM);
  f.request(SIGINT);
  EXPECT_TRUE(f.requested());
  EXPECT_EQ(f.signal_number(), SIGTERM);
  EXPECT_EQ(signal_label(f.signal_number()), "SIGTERM");
  EXPECT_EQ(exit_status_for_signal(SIGINT), 130);
  EXPECT_EQ(exit_status_for_signal(SIGTERM), 143);
  f.clear();
  EXPECT_FALSE(f.requested());
  f.request();
  EXPECT_EQ(signal_label(f.signal_number()), "a stop request");
}

// The handlers are process-wide, so each case runs in a child process (a death test).
TEST(stop_signals, FirstSignalRequestsAStop) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        install_stop_signals();
        std::raise(SIGINT);
        std::_Exit(process_stop_flag().signal_number() == SIGINT ? 7 : 8);
      },
      ::testing::ExitedWithCode(7), "stopping at the next safe point");
}

TEST(stop_signals, SecondSignalExitsAtOnceWithTheConventionalStatus) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  for (const int sig : {SIGINT, SIGTERM}) {
    EXPECT_EXIT(
        {
          install_stop_signals();
          std::raise(sig);
          std::raise(sig);
          std::_Exit(0);
        },
        ::testing::ExitedWithCode(sig == SIGINT ? 130 : 143), "stopped at once");
  }
}

TEST_F(output_dir, ExitAtOnceRemovesTheTemporaryFileOfAWriteInProgress) {
  // "fast" (fork only): the child must see this test's folder, which a re-executed child would
  // name after its own process id. No other thread runs here.
  GTEST_FLAG_SET(death_test_style, "fast");
  const std::string temp = dir_ + "/.r.json.tmp-1-0";
  spill(temp, "half a JSON");
  EXPECT_EXIT(
      {
        install_stop_signals();
        detail::set_temp_file_in_progress(temp.c_str());
        std::raise(SIGINT);
        std::raise(SIGINT);
        std::_Exit(0);
      },
      ::testing::ExitedWithCode(130), "");
  EXPECT_FALSE(fs::exists(temp));
}

}  // namespace
}  // namespace ptreclaim::sim
