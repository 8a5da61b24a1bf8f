// The same inputs and options give a byte-identical checkpoint whatever the thread count
// (AWQ_NUM_THREADS 1, 2, 3) and whatever the sgemm's instruction set (AWQ_SGEMM scalar, avx2 and,
// where the CPU has it, avx512: the ordered sgemm's fixed summation order): `awq quantize` runs as
// a child process for each setting. tests/sgemm_test.cc pins the AVX-512 tile's bytes on every CPU
// through SIMDe.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "cli_child.h"
#include "core/mapped_file.h"
#include "kernels/cpu/sgemm.h"
#include "random_model.h"
#include "test_util.h"

namespace awq {
namespace {

namespace fs = std::filesystem;

struct Setting {
  std::string name;
  std::vector<std::string> env;
};

// Widths that split unevenly over 2 and 3 threads (GEMM column blocks, attention tasks) and a
// calibration batch of several chunks (--activation-memory) so the chunked sums are exercised.
void ExpectSameCheckpoint(const std::string& method, const std::vector<Setting>& settings) {
  const std::string tmp = test::MakeTempDir("determinism-" + method);
  const std::string model = test::MakeRandomQwen3(tmp + "/model", 3, 192, 352);
  const std::string calib = test::WriteCalibrationIds(tmp, 12, 96);
  std::string first;
  for (const Setting& s : settings) {
    SCOPED_TRACE(s.name);
    const std::string out = tmp + "/out-" + s.name;
    test::ChildOptions o;
    o.env = s.env;
    const test::ChildResult r =
        test::RunAwq({"quantize", model, out, "--method", method, "--q-group-size", "32",
                      "--calib-data", calib, "--max-calib-samples", "12", "--max-calib-seq-len",
                      "96", "--activation-memory", "1MB", "-q"},
                     tmp, o);
    ASSERT_EQ(r.status, 0) << r.output;
    if (first.empty()) {
      first = out;
    } else {
      test::ExpectSameTree(first, out);
    }
  }
}

const std::vector<Setting> kThreadCounts = {
    {"t1", {"AWQ_NUM_THREADS=1"}}, {"t2", {"AWQ_NUM_THREADS=2"}}, {"t3", {"AWQ_NUM_THREADS=3"}}};

TEST(Determinism, AwqCheckpointIsTheSameOnOneTwoAndThreeThreads) {
  ExpectSameCheckpoint("awq", kThreadCounts);
}

TEST(Determinism, GptqCheckpointIsTheSameOnOneTwoAndThreeThreads) {
  ExpectSameCheckpoint("gptq", kThreadCounts);
}

std::vector<Setting> SgemmPaths() {
  std::vector<Setting> paths = {{"default", {}}};
  for (SgemmPath p : {SgemmPath::kScalar, SgemmPath::kAvx2, SgemmPath::kAvx512}) {
    if (SgemmPathSupported(p)) {
      paths.push_back({SgemmPathName(p), {std::string("AWQ_SGEMM=") + SgemmPathName(p)}});
    }
  }
  return paths;
}

TEST(Determinism, AwqCheckpointIsTheSameOnEverySgemmPath) {
  ExpectSameCheckpoint("awq", SgemmPaths());
}

TEST(Determinism, GptqCheckpointIsTheSameOnEverySgemmPath) {
  ExpectSameCheckpoint("gptq", SgemmPaths());
}

TEST(Determinism, UnknownSgemmPathIsAnError) {
  const std::string tmp = test::MakeTempDir("determinism-badpath");
  const std::string model = test::MakeRandomQwen3(tmp + "/model", 1, 64, 128);
  test::ChildOptions o;
  o.env = {"AWQ_SGEMM=avx1024"};
  const test::ChildResult r = test::RunAwq({"quantize", model, tmp + "/out"}, tmp, o);
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("AWQ_SGEMM=avx1024: unknown sgemm path"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(tmp + "/out"));
}

}  // namespace
}  // namespace awq
