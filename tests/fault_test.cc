// Faults during `awq quantize`, each run as a child process on a small random model: the disk
// filling up (a file-size limit), an output that would overwrite its input, a read-only output
// folder, two runs on one output, and kill -9 while an existing output is being replaced.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "awq/quantize.h"
#include "awq/tokenizer.h"
#include "cli_child.h"
#include "core/mapped_file.h"
#include "core/output_guard.h"
#include "random_model.h"
#include "test_util.h"

namespace awq {
namespace {

namespace fs = std::filesystem;
using test::ChildOptions;
using test::RunAwq;

// Names in `dir` that start with `prefix`.
std::vector<std::string> Siblings(const std::string& dir, const std::string& prefix) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(prefix, 0) == 0) names.push_back(name);
  }
  return names;
}

std::vector<std::string> Rtn(const std::string& model, const std::string& out) {
  return {"quantize", model, out, "--method", "rtn", "--q-group-size", "32", "-q"};
}

std::vector<std::string> Awq(const std::string& model, const std::string& out,
                             const std::string& calib) {
  return {"quantize", model,
          out,        "--method",
          "awq",      "--q-group-size",
          "32",       "--calib-data",
          calib,      "--max-calib-samples",
          "8",        "--max-calib-seq-len",
          "128",      "--shard-size",
          "2MB",      "-q"};
}

// The disk fills up while the output is assembled (the staged blocks still fit): a clear error,
// nothing under the final name nor its temporary folder; the same command with room again
// resumes and writes exactly the bytes of an unhindered run. With even less room the first
// staged file fails the same way.
TEST(Faults, DiskFullLeavesNothingUnderTheFinalName) {
  const std::string tmp = test::MakeTempDir("fault-disk");
  const std::string model = test::MakeRandomQwen3(tmp + "/model", 4, 64, 96);
  const std::string ref = tmp + "/ref";
  const test::ChildResult r0 = RunAwq(Rtn(model, ref), tmp);
  ASSERT_EQ(r0.status, 0) << r0.output;
  const uint64_t full = fs::file_size(ref + "/model.safetensors");
  // The largest staged file holds the 405 x 64 fp16 embedding (52 kB); the output is larger.
  const rlim_t limit = full * 3 / 4;
  ASSERT_GT(limit, 60000u) << "the output is too small for this test: " << full << " bytes";

  const std::string out = tmp + "/out";
  ChildOptions small;
  small.max_file_bytes = limit;
  const test::ChildResult r1 = RunAwq(Rtn(model, out), tmp, small);
  EXPECT_EQ(r1.status, 1) << r1.output;
  EXPECT_NE(r1.output.find("File too large"), std::string::npos) << r1.output;
  EXPECT_NE(r1.output.find(out), std::string::npos) << r1.output;
  EXPECT_FALSE(fs::exists(out));
  EXPECT_TRUE(Siblings(tmp, "out.tmp-").empty()) << "a temporary folder was left behind";
  EXPECT_TRUE(fs::exists(out + ".partial")) << "the staged blocks are kept for a resume";

  const test::ChildResult r2 = RunAwq(Rtn(model, out), tmp);
  ASSERT_EQ(r2.status, 0) << r2.output;
  EXPECT_TRUE(test::ReadTree(ref) == test::ReadTree(out)) << "the resumed output differs";
  EXPECT_FALSE(fs::exists(out + ".partial"));

  const std::string out2 = tmp + "/out2";
  ChildOptions tiny;
  tiny.max_file_bytes = 8192;
  const test::ChildResult r3 = RunAwq(Rtn(model, out2), tmp, tiny);
  EXPECT_EQ(r3.status, 1) << r3.output;
  EXPECT_NE(r3.output.find("File too large"), std::string::npos) << r3.output;
  EXPECT_FALSE(fs::exists(out2));
}

// An output that is the input, inside it, or a folder holding it (directly or through a
// symlink) is refused before anything is written, even with --overwrite.
TEST(Faults, OutputOverlappingTheInputIsRefused) {
  const std::string tmp = test::MakeTempDir("fault-overlap");
  const std::string model = test::MakeRandomQwen3(tmp + "/model", 1, 64, 96);
  const auto before = test::ReadTree(model);
  fs::create_symlink(model, tmp + "/link");
  struct Case {
    std::string out;
    const char* why;
  };
  for (const Case& c : {Case{model, "is the input model"}, Case{model + "/", "is the input model"},
                        Case{tmp + "/link", "is the input model"},
                        Case{model + "/q", "inside the input model folder"},
                        Case{tmp, "contains the input model"}}) {
    SCOPED_TRACE(c.out);
    std::vector<std::string> args = Rtn(model, c.out);
    args.push_back("--overwrite");
    const test::ChildResult r = RunAwq(args, tmp);
    EXPECT_EQ(r.status, 1) << r.output;
    EXPECT_NE(r.output.find(c.why), std::string::npos) << r.output;
  }
  EXPECT_TRUE(test::ReadTree(model) == before) << "the input changed";
  EXPECT_FALSE(fs::exists(model + "/q"));
  EXPECT_TRUE(Siblings(model, "q").empty());

  // The library refuses the same.
  const Tokenizer tok =
      Tokenizer::FromHfJson(model + "/tokenizer.json", model + "/tokenizer_config.json");
  QuantizeOptions o;
  o.method = QuantMethod::kRtn;
  o.config.q_group_size = 32;
  test::ExpectError([&] { QuantizeToFolder(model, tok, o, model + "/sub", 1 << 30, true); },
                    {"inside the input model folder"});
}

// A folder the run may not write: a clear error naming the path and the OS's reason. Run as
// user nobody when the tests run as root (root ignores folder permissions).
TEST(Faults, ReadOnlyOutputFolderIsAClearError) {
  const std::string tmp = test::MakeTempDir("fault-readonly");
  fs::permissions(tmp, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                           fs::perms::others_read | fs::perms::others_exec);
  const std::string model = test::MakeRandomQwen3(tmp + "/model", 1, 64, 96);
  const std::string ro = tmp + "/ro";
  fs::create_directory(ro);
  fs::permissions(ro, fs::perms::owner_read | fs::perms::owner_exec | fs::perms::group_read |
                          fs::perms::group_exec | fs::perms::others_read | fs::perms::others_exec);
  ChildOptions o;
  o.as_nobody = ::geteuid() == 0;
  const test::ChildResult r = RunAwq(Rtn(model, ro + "/out"), tmp, o);
  if (r.status == 124 || r.status == 127) {
    GTEST_SKIP() << "cannot run the CLI as another user here (status " << r.status << ")";
  }
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find(ro + "/out"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("Permission denied"), std::string::npos) << r.output;
  EXPECT_TRUE(fs::is_empty(ro));
}

// A second run on an output another one is writing refuses at once and names the holder's pid;
// the first run finishes unharmed and removes its lock file.
TEST(Faults, SecondRunOnTheSameOutputNamesTheLockHolder) {
  const std::string tmp = test::MakeTempDir("fault-lock");
  const std::string model = test::MakeRandomQwen3(tmp + "/model", 6, 128, 256);
  const std::string calib = test::WriteCalibrationIds(tmp, 8, 128);
  const std::string out = tmp + "/out";

  // This process holds the lock (as a library user would): the CLI refuses.
  {
    const OutputLock held(out);
    const test::ChildResult r = RunAwq(Rtn(model, out), tmp);
    EXPECT_EQ(r.status, 1) << r.output;
    EXPECT_NE(r.output.find("another awq run (pid " + std::to_string(::getpid()) + ")"),
              std::string::npos)
        << r.output;
    EXPECT_FALSE(fs::exists(out));
  }
  EXPECT_FALSE(fs::exists(OutputLock::LockPath(out)));

  // Two commands: the second starts while the first holds the lock.
  const pid_t first = test::SpawnAwq(Awq(model, out, calib));
  const std::string lock = OutputLock::LockPath(out);
  const std::string want = std::to_string(first) + "\n";
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  bool seen = false;
  while (!seen && std::chrono::steady_clock::now() < deadline) {
    std::error_code ec;
    seen = fs::exists(lock, ec) && ReadFileToString(lock) == want;
    if (!seen) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  if (seen) {
    const test::ChildResult r = RunAwq(Awq(model, out, calib), tmp);
    EXPECT_EQ(r.status, 1) << r.output;
    EXPECT_NE(r.output.find("another awq run (pid " + std::to_string(first) + ")"),
              std::string::npos)
        << r.output;
  }
  EXPECT_EQ(test::WaitChild(first), 0);
  ASSERT_TRUE(seen) << "the first run never showed its lock";
  EXPECT_TRUE(fs::exists(out + "/model.safetensors"));
  EXPECT_FALSE(fs::exists(lock));
}

// kill -9 while --overwrite replaces an existing output, at random moments and right after the
// new output's temporary folder appears: the old output stays whole (or, past the final rename,
// the new one is whole, even when the kill lands during the clean-up after it); the stale lock
// file and leftovers are taken over by the next run, which completes. Tries go on until one run
// has been killed, since a loaded machine can finish a run before its drawn moment.
TEST(Faults, KillDuringOverwriteKeepsTheOldOutput) {
  const std::string tmp = test::MakeTempDir("fault-kill");
  const std::string model = test::MakeRandomQwen3(tmp + "/model", 6, 128, 256);
  const std::string calib = test::WriteCalibrationIds(tmp, 8, 128);
  const std::string out = tmp + "/out", fresh = tmp + "/fresh";
  ASSERT_EQ(RunAwq(Rtn(model, out), tmp).status, 0);
  const auto old_tree = test::ReadTree(out);
  const auto t0 = std::chrono::steady_clock::now();
  const test::ChildResult r_ref = RunAwq(Awq(model, fresh, calib), tmp);
  ASSERT_EQ(r_ref.status, 0) << r_ref.output;
  const double ref_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const auto new_tree = test::ReadTree(fresh);

  std::vector<std::string> args = Awq(model, out, calib);
  args.push_back("--overwrite");
  std::mt19937 rng(static_cast<unsigned>(::getpid()));
  std::uniform_real_distribution<double> when(0.05, 0.8);
  // A run that ends before its kill replaced the output whole; the old output is put back and the
  // loop goes on, so at least one run is killed however the machine's load moves run times.
  const std::string old_copy = tmp + "/old-copy";
  fs::copy(out, old_copy, fs::copy_options::recursive);
  int killed = 0;
  std::string statuses;
  for (int k = 0; k < 8 && (k < 4 || killed == 0); ++k) {
    const pid_t pid = test::SpawnAwq(args);
    if (k % 2 == 0) {
      std::this_thread::sleep_for(std::chrono::duration<double>(when(rng) * ref_s));
    } else {
      // Wait for the assembly: the new output's temporary folder beside the old one.
      const std::string tmp_name = "out.tmp-" + std::to_string(pid);
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
      while (!fs::exists(tmp + "/" + tmp_name) && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::microseconds(200));
      }
    }
    ::kill(pid, SIGKILL);
    const int status = test::WaitChild(pid);
    killed += status == -SIGKILL;
    statuses += " " + std::to_string(status);
    SCOPED_TRACE("kill " + std::to_string(k) + ", status " + std::to_string(status));
    if (status == 0) {
      EXPECT_TRUE(test::ReadTree(out) == new_tree);
      fs::remove_all(out);  // replaced before the kill: start the next try from the old output
      fs::copy(old_copy, out, fs::copy_options::recursive);
      continue;
    }
    if (fs::exists(out)) {
      // Killed after the new folder was renamed in (while the old one or the staged blocks were
      // being removed): the new output is whole, and the old one is no longer promised.
      const auto tree = test::ReadTree(out);
      if (tree == new_tree) {  // its stale lock and leftovers are left for the next run
        fs::remove_all(out);
        fs::copy(old_copy, out, fs::copy_options::recursive);
        continue;
      }
      EXPECT_TRUE(tree == old_tree) << "the old output changed";
    } else {
      // Killed between moving the old folder aside and renaming the new one in: the old output
      // is whole under its aside name.
      const std::string aside = out + ".old-" + std::to_string(pid);
      ASSERT_TRUE(fs::exists(aside)) << "neither the output nor its old copy exists";
      EXPECT_TRUE(test::ReadTree(aside) == old_tree);
      fs::rename(aside, out);
    }
  }
  EXPECT_GE(killed, 1) << "no run was killed (" << ref_s << " s each; exit statuses" << statuses
                       << ")";
  const test::ChildResult r = RunAwq(args, tmp);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(test::ReadTree(out) == new_tree)
      << "the completed run differs from an unhindered one";
  EXPECT_FALSE(fs::exists(OutputLock::LockPath(out)));
  EXPECT_TRUE(Siblings(tmp, "out.tmp-").empty());
  EXPECT_TRUE(Siblings(tmp, "out.old-").empty());
}

}  // namespace
}  // namespace awq
