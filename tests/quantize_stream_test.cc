// Streaming quantization (QuantizeToFolder, `awq quantize`): the same bytes as the in-memory
// pipeline, results independent of the activation chunking, and runs killed with SIGKILL at
// random moments that resume to a byte-identical checkpoint.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "awq/model.h"
#include "awq/quantize.h"
#include "awq/safetensors.h"
#include "awq/tokenizer.h"
#include "core/mapped_file.h"
#include "random_model.h"
#include "test_util.h"

namespace awq {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

TEST(QuantizeStream, SameBytesAsInMemoryPipeline) {
  const std::string tmp = test::MakeTempDir("stream-same");
  const std::string model_dir = test::MakeRandomQwen3(tmp + "/model", 3, 64, 128);
  const std::string calib = test::WriteCalibrationIds(tmp, 8, 64);
  const Tokenizer tok =
      Tokenizer::FromHfJson(model_dir + "/tokenizer.json", model_dir + "/tokenizer_config.json");
  for (QuantMethod m : {QuantMethod::kAwq, QuantMethod::kGptq, QuantMethod::kRtn}) {
    SCOPED_TRACE(QuantMethodName(m));
    QuantizeOptions o = test::RandomModelAwqOptions(calib);
    o.method = m;
    Model model = Model::Load(model_dir, LoadOptions{.int4 = false});
    const QuantizeResult r = QuantizeModel(model, tok, o);
    const std::string a = tmp + "/mem-" + QuantMethodName(m);
    SaveQuantizedModel(model, r, o.config, &tok, a, uint64_t{1} << 20, false);
    const std::string b = tmp + "/stream-" + QuantMethodName(m);
    const QuantizeResult s = QuantizeToFolder(model_dir, tok, o, b, uint64_t{1} << 20, false);
    test::ExpectSameTree(a, b);
    EXPECT_FALSE(fs::exists(b + ".partial"));
    ASSERT_EQ(s.blocks.size(), r.blocks.size());
    for (size_t l = 0; l < r.blocks.size(); ++l) {
      ASSERT_EQ(s.blocks[l].groups.size(), r.blocks[l].groups.size());
      for (size_t g = 0; g < r.blocks[l].groups.size(); ++g) {
        EXPECT_EQ(s.blocks[l].groups[g].best_index, r.blocks[l].groups[g].best_index);
        EXPECT_EQ(s.blocks[l].groups[g].best_loss, r.blocks[l].groups[g].best_loss);
      }
    }
  }
}

// The activation budget only decides how many sequences a walk holds: one sequence per chunk
// gives the same checkpoint as the whole batch at once.
TEST(QuantizeStream, ChunkingChangesNothing) {
  const std::string tmp = test::MakeTempDir("stream-chunks");
  const std::string model_dir = test::MakeRandomQwen3(tmp + "/model", 2, 64, 128);
  const std::string calib = test::WriteCalibrationIds(tmp, 8, 64);
  const Tokenizer tok =
      Tokenizer::FromHfJson(model_dir + "/tokenizer.json", model_dir + "/tokenizer_config.json");
  // awq with search_samples: the chunked run scores 3 of 8 samples and takes the next block's
  // input from the statistics walk. Variants 3 and 4: the coarse-to-fine grid, whose second
  // pass walks the chunks again.
  for (int variant = 0; variant < 5; ++variant) {
    const QuantMethod m = variant == 1 ? QuantMethod::kGptq : QuantMethod::kAwq;
    const std::string tag = std::string(QuantMethodName(m)) + std::to_string(variant);
    SCOPED_TRACE(tag);
    QuantizeOptions o = test::RandomModelAwqOptions(calib);
    o.method = m;
    if (variant == 2 || variant == 4) o.search_samples = 3;
    if (variant >= 3) o.grid_step = 4;
    const std::string whole = tmp + "/whole-" + tag;
    QuantizeToFolder(model_dir, tok, o, whole, uint64_t{5} << 30, false);
    o.activation_budget_bytes = 1;  // one sequence per chunk
    const std::string chunked = tmp + "/chunked-" + tag;
    QuantizeToFolder(model_dir, tok, o, chunked, uint64_t{5} << 30, false);
    test::ExpectSameTree(whole, chunked);
  }
}

// The coarse-to-fine grid scores a subset of the exhaustive search's candidates with the same
// arithmetic: its best loss is never below the exhaustive one and equals it whenever both pick
// the same ratio; the identity's loss is the same; the search does about half the work.
TEST(QuantizeStream, CoarseToFineGridScoresASubsetOfTheCandidates) {
  const std::string tmp = test::MakeTempDir("stream-grid");
  const std::string model_dir = test::MakeRandomQwen3(tmp + "/model", 3, 64, 128);
  const std::string calib = test::WriteCalibrationIds(tmp, 4, 64);
  const Tokenizer tok =
      Tokenizer::FromHfJson(model_dir + "/tokenizer.json", model_dir + "/tokenizer_config.json");
  QuantizeOptions o = test::RandomModelAwqOptions(calib);
  Model exact_model = Model::Load(model_dir);
  const QuantizeResult exact = QuantizeModel(exact_model, tok, o);
  o.grid_step = 4;
  Model coarse_model = Model::Load(model_dir);
  const QuantizeResult coarse = QuantizeModel(coarse_model, tok, o);
  ASSERT_EQ(exact.blocks.size(), coarse.blocks.size());
  int same = 0, total = 0;
  for (size_t b = 0; b < exact.blocks.size(); ++b) {
    // Block 0 sees the same inputs in both runs; later blocks see the outputs of the same
    // original blocks too (AWQ hands on the unquantized block's output).
    ASSERT_EQ(exact.blocks[b].groups.size(), coarse.blocks[b].groups.size());
    for (size_t g = 0; g < exact.blocks[b].groups.size(); ++g) {
      const BlockReport::Group& e = exact.blocks[b].groups[g];
      const BlockReport::Group& k = coarse.blocks[b].groups[g];
      SCOPED_TRACE("block " + std::to_string(b) + " " + e.name);
      EXPECT_EQ(k.identity_loss, e.identity_loss);
      EXPECT_GE(k.best_loss, e.best_loss);
      if (k.best_index == e.best_index) {
        EXPECT_EQ(k.best_loss, e.best_loss);
        ++same;
      }
      ++total;
    }
  }
  std::printf("coarse-to-fine picked the exhaustive search's ratio in %d of %d groups\n", same,
              total);
  // Step 4 over 20 ratios: 5 + 1 in the first pass, at most 6 in the second, against 21.
  EXPECT_LT(coarse.search_flops, 0.65 * exact.search_flops);
  EXPECT_GT(coarse.search_flops, 0.25 * exact.search_flops);
}

struct Child {
  pid_t pid = -1;
};

Child Spawn(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  std::string bin = AWQ_CLI_PATH;
  argv.push_back(bin.data());
  std::vector<std::string> copy = args;
  for (std::string& a : copy) argv.push_back(a.data());
  argv.push_back(nullptr);
  Child c;
  c.pid = ::fork();
  if (c.pid == 0) {
    const int devnull = ::open("/dev/null", O_WRONLY);
    ::dup2(devnull, 1);
    ::dup2(devnull, 2);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  return c;
}

int Wait(const Child& c) {
  int status = 0;
  ::waitpid(c.pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
}

// kill -9 at random moments of a run and right after it has written its state (three tries, or
// more until one lands midway), each followed by the same command: the checkpoint is byte-identical
// to an uninterrupted run's, and a restart with other options refuses to mix.
TEST(QuantizeStream, KilledRunsResumeToTheSameBytes) {
  const std::string tmp = test::MakeTempDir("stream-kill");
  const std::string model_dir = test::MakeRandomQwen3(tmp + "/model", 8, 128, 256);
  const std::string calib = test::WriteCalibrationIds(tmp, 8, 128);
  const auto args = [&](const std::string& out) {
    return std::vector<std::string>{"quantize", model_dir,
                                    out,        "--method",
                                    "awq",      "--q-group-size",
                                    "32",       "--calib-data",
                                    calib,      "--max-calib-samples",
                                    "8",        "--max-calib-seq-len",
                                    "128",      "--shard-size",
                                    "2MB",      "-q"};
  };
  const std::string ref = tmp + "/ref";
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(Wait(Spawn(args(ref))), 0);
  const double ref_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  const std::string out = tmp + "/out";
  std::mt19937 rng(static_cast<unsigned>(::getpid()));
  std::uniform_real_distribution<double> when(0.05, 0.8);
  int killed_midway = 0;
  // Tries go on until one run has been killed midway: a loaded machine can finish a run before
  // its drawn moment, and such a run's whole output is checked and removed for the next try.
  for (int k = 0; k < 8 && (k < 3 || killed_midway == 0); ++k) {
    if (fs::exists(out) && !fs::exists(out + ".partial")) {  // finished before a kill
      test::ExpectSameTree(ref, out);
      fs::remove_all(out);
    }
    const Child c = Spawn(args(out));
    if (k % 2 == 0) {
      std::this_thread::sleep_for(std::chrono::duration<double>(when(rng) * ref_s));
    } else {
      // Right after the run has written its state: the earliest moment it can resume from.
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
      while (!fs::exists(out + ".partial/run.json") && !fs::exists(out) &&
             std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::microseconds(200));
      }
    }
    ::kill(c.pid, SIGKILL);
    const int rc = Wait(c);
    if (rc == -SIGKILL) ++killed_midway;
    // Nothing under the final name until the run is complete (a kill after the final rename
    // leaves the whole checkpoint).
    if (fs::exists(out)) test::ExpectSameTree(ref, out);
    if (k == 0 && rc == -SIGKILL && fs::exists(out + ".partial/run.json")) {
      // Other options on the same output: refused, naming what differs.
      std::vector<std::string> other = args(out);
      other.push_back("--w-bit");
      other.push_back("3");
      other.push_back("--version");
      other.push_back("awqcpp_packed");
      const std::string cmd = std::string(AWQ_CLI_PATH) + " " + [&] {
        std::string s;
        for (const std::string& a : other) s += a + " ";
        return s;
      }() + "2>&1";
      FILE* p = ::popen(cmd.c_str(), "r");
      std::string text;
      char buf[4096];
      size_t n;
      while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) text.append(buf, n);
      EXPECT_NE(WEXITSTATUS(::pclose(p)), 0);
      EXPECT_NE(text.find("w_bit: 4 then, 3 now"), std::string::npos) << text;
    }
  }
  EXPECT_GE(killed_midway, 1) << "every run ended before its kill (" << ref_s << " s each)";
  if (!fs::exists(out) || fs::exists(out + ".partial")) {
    ASSERT_EQ(Wait(Spawn(args(out))), 0);
  }
  test::ExpectSameTree(ref, out);
  EXPECT_FALSE(fs::exists(out + ".partial"));
}

}  // namespace
}  // namespace awq
