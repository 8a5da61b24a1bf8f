// The same inputs and options give a byte-identical checkpoint whatever the thread count
// (AWQ_NUM_THREADS 1, 2, 3): `awq quantize` runs as a child process for each setting. The
// instruction set is another matter: oneDNN's sgemm sums in a different order per ISA, and
// ONEDNN_MAX_CPU_ISA=SSE41 changes the checkpoint's bytes against AVX2 (docs/FAULTS.md).
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "cli_child.h"
#include "core/mapped_file.h"
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

}  // namespace
}  // namespace awq
