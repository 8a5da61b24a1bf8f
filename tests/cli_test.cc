// Runs the built `awq` binary: inspect (table and --json totals), validate (exit 0 / 2) and the
// error policy (exit 1 naming the file or option).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "awq/safetensors.h"
#include "core/mapped_file.h"
#include "test_util.h"

namespace awq {
namespace {

struct CliRun {
  int rc = -1;
  std::string out;  // stdout and stderr together
};

// Runs `awq ARGS` through the shell, stderr folded into stdout unless `stdout_only`.
CliRun Awq(const std::string& args, bool stdout_only = false) {
  const std::string cmd =
      std::string(AWQ_CLI_PATH) + " " + args + (stdout_only ? " 2>/dev/null" : " 2>&1");
  CliRun r;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) {
    ADD_FAILURE() << "popen failed: " << cmd;
    return r;
  }
  std::array<char, 4096> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  const int status = ::pclose(p);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// RTN is a few seconds: each test process quantizes its own folder.
std::string QuantizedFolder() {
  const std::string out = test::MakeTempDir("awq-cli") + "/rtn-w4g64";
  const CliRun r =
      Awq("quantize " + test::ModelPath() + " " + out + " --method rtn --q-group-size 64 -q");
  EXPECT_EQ(r.rc, 0) << r.out;
  return out;
}

TEST(CliInspect, TableAndJsonTotals) {
  const std::string dir = QuantizedFolder();
  const CliRun text = Awq("inspect " + dir, true);
  ASSERT_EQ(text.rc, 0) << text.out;
  EXPECT_NE(text.out.find("quant_method awq, w_bit 4, group size 64"), std::string::npos)
      << text.out;
  EXPECT_NE(text.out.find("model.layers.0.self_attn.q_proj"), std::string::npos);
  EXPECT_NE(text.out.find("model.layers.29.mlp.down_proj"), std::string::npos);
  EXPECT_NE(text.out.find("quantized linears"), std::string::npos);
  EXPECT_NE(text.out.find("compression ratio"), std::string::npos);

  const CliRun js = Awq("inspect " + dir + " --json", true);
  ASSERT_EQ(js.rc, 0) << js.out;
  const nlohmann::json j = nlohmann::json::parse(js.out);
  EXPECT_TRUE(j["quantized"].get<bool>());
  EXPECT_EQ(j["quant_config"]["w_bit"], 4);
  EXPECT_EQ(j["quant_config"]["q_group_size"], 64);
  ASSERT_EQ(j["layers"].size(), 30u * 7u);
  int64_t linear_bytes = 0;
  for (const auto& l : j["layers"]) {
    EXPECT_EQ(l["bits"], 4);
    EXPECT_EQ(l["group_size"], 64);
    const int64_t out = l["shape"][0], in = l["shape"][1];
    // qweight in*out/8 words, qzeros and scales per group of 64: out*in/2 + in/64*out/2 +
    // in/64*out*2.
    EXPECT_EQ(l["size"]["stored_bytes"].get<int64_t>(),
              out * in / 2 + in / 64 * (out / 2 + 2 * out))
        << l["module"];
    linear_bytes += l["size"]["stored_bytes"].get<int64_t>();
  }
  // The totals are the bytes of every tensor in the safetensors files.
  const SafetensorsCheckpoint ckpt = SafetensorsCheckpoint::Open(dir);
  int64_t all = 0;
  for (const std::string& name : ckpt.names())
    all += static_cast<int64_t>(ckpt.Info(name).nbytes());
  EXPECT_EQ(j["totals"]["quantized_linears"]["stored_bytes"].get<int64_t>(), linear_bytes);
  EXPECT_EQ(j["totals"]["total"]["stored_bytes"].get<int64_t>(), all);
  // SmolLM2-135M: 134,515,008 parameters (embeddings tied).
  EXPECT_EQ(j["totals"]["total"]["parameters"].get<int64_t>(), 134515008);
  EXPECT_EQ(j["totals"]["total"]["fp16_bytes"].get<int64_t>(), 2 * 134515008);
}

TEST(CliInspect, ReferenceMetricsOnRtn) {
  const std::string dir = QuantizedFolder();
  const CliRun js = Awq("inspect " + dir + " --reference " + test::ModelPath() + " --calib-data " +
                            test::TextPath("emma") + " --max-calib-samples 16 --json",
                        true);
  ASSERT_EQ(js.rc, 0) << js.out;
  const nlohmann::json j = nlohmann::json::parse(js.out);
  ASSERT_EQ(j["layers"].size(), 210u);
  for (const auto& l : j["layers"]) {
    // 4-bit g64 RTN: ~10% relative weight error; nothing folded, so recovered scales are ~1
    // (the norms differ only by their fp16 rounding).
    EXPECT_LT(l["weight"]["relative_error"].get<double>(), 0.3) << l["module"];
    EXPECT_GT(l["output"]["correlation"].get<double>(), 0.9) << l["module"];
    // Norm ratios are exact up to the fp16 rounding of the stored norm (2^-11 relative); the
    // least-squares fit of down_proj's scales absorbs some rounding noise (a few percent).
    const double tol = l["unfold"]["method"] == "fit" ? 0.1 : 1e-3;
    EXPECT_GT(l["unfold"]["scale_min"].get<double>(), 1 - tol) << l["module"];
    EXPECT_LT(l["unfold"]["scale_max"].get<double>(), 1 + tol) << l["module"];
    EXPECT_TRUE(l.contains("salience")) << l["module"];
  }
}

TEST(CliValidate, PassesLooseAndFailsImpossibleThreshold) {
  const std::string dir = QuantizedFolder();
  const std::string common = "validate " + test::ModelPath() + " " + dir + " --text " +
                             test::TextPath("prideprejudice") + " --max-tokens 256 --ctx 128 -q";
  const std::string loose =
      " --max-relative-error 5 --min-correlation 0.5 --max-kl 5 --max-ppl-ratio 5";
  const CliRun pass = Awq(common + loose + " --min-top1 0.1");
  EXPECT_EQ(pass.rc, 0) << pass.out;
  EXPECT_NE(pass.out.find("PASS"), std::string::npos) << pass.out;
  EXPECT_EQ(pass.out.find("FAIL"), std::string::npos) << pass.out;

  const CliRun fail = Awq(common + loose + " --min-top1 1.01 --json", true);
  EXPECT_EQ(fail.rc, 2) << fail.out;
  const nlohmann::json j = nlohmann::json::parse(fail.out);
  EXPECT_FALSE(j["passed"].get<bool>());
  EXPECT_FALSE(j["metrics"]["top1"]["passed"].get<bool>());
  ASSERT_EQ(j["failures"].size(), 1u);
  EXPECT_NE(j["failures"][0].get<std::string>().find("top1"), std::string::npos);
}

TEST(CliErrors, MissingFilesAndBadOptionsExit1) {
  const CliRun missing = Awq("validate " + test::ModelPath() + " /nonexistent/quantized-model");
  EXPECT_EQ(missing.rc, 1) << missing.out;
  EXPECT_NE(missing.out.find("/nonexistent/quantized-model"), std::string::npos) << missing.out;

  const CliRun missing_text =
      Awq("validate " + test::ModelPath() + " " + test::ModelPath() + " --text /nonexistent.txt");
  EXPECT_EQ(missing_text.rc, 1) << missing_text.out;
  EXPECT_NE(missing_text.out.find("--text /nonexistent.txt"), std::string::npos)
      << missing_text.out;

  const CliRun bad_option = Awq("inspect " + test::ModelPath() + " --bogus-option");
  EXPECT_EQ(bad_option.rc, 1) << bad_option.out;
  EXPECT_NE(bad_option.out.find("--bogus-option"), std::string::npos) << bad_option.out;

  const CliRun bad_value =
      Awq("validate " + test::ModelPath() + " " + test::ModelPath() + " --ctx 1 -q");
  EXPECT_EQ(bad_value.rc, 1) << bad_value.out;
  EXPECT_NE(bad_value.out.find("--ctx"), std::string::npos) << bad_value.out;

  const CliRun not_a_number = Awq("validate a b --max-kl lots");
  EXPECT_EQ(not_a_number.rc, 1) << not_a_number.out;
  EXPECT_NE(not_a_number.out.find("--max-kl"), std::string::npos) << not_a_number.out;

  const CliRun missing_ckpt = Awq("inspect /nonexistent/ckpt");
  EXPECT_EQ(missing_ckpt.rc, 1) << missing_ckpt.out;
  EXPECT_NE(missing_ckpt.out.find("/nonexistent/ckpt"), std::string::npos) << missing_ckpt.out;
}

TEST(CliInspect, GgufIsNotQuantized) {
  const CliRun r = Awq("inspect " + test::ModelPath(), true);
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("not an AWQ-quantized checkpoint"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("token_embd.weight"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace awq

namespace awq {
namespace {

TEST(CliCompare, FpAndRtnTableAndJson) {
  // The smallest real comparison: fp and RTN on 1024 tokens. RTN must lose perplexity against fp,
  // agree on most top-1 predictions, and be about 2x smaller than fp16 (embeddings stay fp16).
  const std::string md = test::MakeTempDir("awq-cli-compare") + "/table.md";
  const CliRun r = Awq("compare " + test::ModelPath() +
                           " --methods fp,rtn --q-group-size 64 --max-tokens 1024 --ctx 512 -q "
                           "--json --markdown " +
                           md,
                       true);
  ASSERT_EQ(r.rc, 0) << r.out;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["methods"].size(), 2u);
  const nlohmann::json& fp = j["methods"][0];
  const nlohmann::json& rtn = j["methods"][1];
  EXPECT_EQ(fp["method"], "fp");
  EXPECT_DOUBLE_EQ(fp["mean_kl"].get<double>(), 0.0);
  EXPECT_DOUBLE_EQ(fp["top1_agreement"].get<double>(), 1.0);
  EXPECT_GT(rtn["perplexity"].get<double>(), fp["perplexity"].get<double>());
  EXPECT_GT(rtn["mean_kl"].get<double>(), 0.01);
  EXPECT_GT(rtn["top1_agreement"].get<double>(), 0.5);
  const double ratio = fp["size_bytes"].get<double>() / rtn["size_bytes"].get<double>();
  EXPECT_GT(ratio, 2.0);
  EXPECT_LT(ratio, 2.6);
  EXPECT_GT(rtn["peak_rss_bytes"].get<int64_t>(), 0);
  const std::string table = ReadFileToString(md);
  EXPECT_NE(table.find("| rtn |"), std::string::npos) << table;
  EXPECT_NE(table.find("| fp |"), std::string::npos) << table;

  const CliRun bad = Awq("compare " + test::ModelPath() + " --methods fp,magic");
  EXPECT_EQ(bad.rc, 1) << bad.out;
  EXPECT_NE(bad.out.find("magic"), std::string::npos) << bad.out;
}

TEST(CliBench, ReportsThroughputAndBandwidthShare) {
  const CliRun r = Awq(
      "bench " + test::ModelPath() + " --prompt-tokens 16 --gen-tokens 4 --reps 1 --json", true);
  ASSERT_EQ(r.rc, 0) << r.out;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_GT(j["memory"]["triad_gb_per_s"].get<double>(), 0.1);
  ASSERT_EQ(j["results"].size(), 1u);
  const nlohmann::json& res = j["results"][0];
  EXPECT_GT(res["prefill_tokens_per_s"].get<double>(), 0);
  EXPECT_GT(res["decode_tokens_per_s"].get<double>(), 0);
  // The GGUF is dequantized to fp32: 134.5 M parameters, 4 bytes each, minus the embedding row.
  EXPECT_GT(res["weight_bytes_per_token"].get<int64_t>(), 500'000'000);
  // The share pairs the run with the bandwidth measured around it (one run here).
  ASSERT_EQ(res["triad_gb_per_s_runs"].size(), 1u);
  EXPECT_NEAR(
      res["decode_share_of_triad"].get<double>(),
      res["decode_weight_gb_per_s"].get<double>() / res["triad_gb_per_s_runs"][0].get<double>(),
      1e-9);
  EXPECT_GT(res["decode_share_of_triad"].get<double>(), 0);

  const CliRun synth =
      Awq("bench --synthetic llama2-7b --layers 1 --prompt-tokens 8 "
          "--gen-tokens 2 --reps 1 --no-memory --json",
          true);
  ASSERT_EQ(synth.rc, 0) << synth.out;
  const nlohmann::json s = nlohmann::json::parse(synth.out);
  // One 7B layer at 4 bits with g128 fp16 scales/zeros (~4.25 bits/weight, ~107 MB), plus the
  // fp16 LM head (32000 x 4096 x 2 = 262 MB).
  const int64_t bytes = s["results"][0]["weight_bytes_per_token"].get<int64_t>();
  EXPECT_GT(bytes, 360'000'000);
  EXPECT_LT(bytes, 380'000'000);
  EXPECT_EQ(s["results"][0]["name"].get<std::string>().rfind("int4", 0), 0u);
  // Prompts run as awq generate runs them: int8 activations (--fp32-prompt: as awq eval).
  EXPECT_NE(s["results"][0]["name"].get<std::string>().find("int8 act."), std::string::npos);

  // --token-paired-read: a read pass over each decode step's weight bytes right after it. On a
  // quiet Zen 3 the 7B-shaped steps ran at 97-99% of their passes; any working kernel lands far
  // from the bounds here, which catch a pass over the wrong byte count (a factor of 4 or more).
  const CliRun paired =
      Awq("bench --synthetic llama2-7b --layers 1 --prompt-tokens 8 --gen-tokens 3 --reps 2 "
          "--token-paired-read --json",
          true);
  ASSERT_EQ(paired.rc, 0) << paired.out;
  const nlohmann::json p = nlohmann::json::parse(paired.out)["results"][0];
  EXPECT_EQ(p["decode_token_pairs"].get<int64_t>(), 6);
  EXPECT_GT(p["decode_token_share_of_read"].get<double>(), 0.1);
  EXPECT_LT(p["decode_token_share_of_read"].get<double>(), 4.0);
  EXPECT_GT(p["decode_token_share_of_read_with_kv"].get<double>(),
            p["decode_token_share_of_read"].get<double>());
  const CliRun no_memory = Awq("bench --synthetic llama2-7b --token-paired-read --no-memory");
  EXPECT_EQ(no_memory.rc, 1) << no_memory.out;
  EXPECT_NE(no_memory.out.find("--no-memory"), std::string::npos) << no_memory.out;

  const CliRun bad = Awq("bench --synthetic llama9");
  EXPECT_EQ(bad.rc, 1) << bad.out;
  EXPECT_NE(bad.out.find("llama9"), std::string::npos) << bad.out;
}

}  // namespace
}  // namespace awq

namespace awq {
namespace {

TEST(CliQuantize, SavedActivationStatsAreReusedByInspect) {
  // --save-activation-stats writes the original model's input statistics next to the checkpoint;
  // inspect then reports salience from that file without a reference model or calibration run.
  const std::string out = test::MakeTempDir("awq-cli-stats") + "/rtn";
  const CliRun q = Awq("quantize " + test::ModelPath() + " " + out +
                       " --method rtn --q-group-size 64 --max-calib-samples 16 "
                       "--save-activation-stats -q");
  ASSERT_EQ(q.rc, 0) << q.out;
  ASSERT_TRUE(std::filesystem::exists(out + "/activation_stats.safetensors"));
  const CliRun r = Awq("inspect " + out + " --json", true);
  ASSERT_EQ(r.rc, 0) << r.out;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  ASSERT_TRUE(j.contains("salience")) << r.out.substr(0, 2000);
  EXPECT_NE(j["salience"]["source"].get<std::string>().find("activation_stats.safetensors"),
            std::string::npos);
  EXPECT_GT(j["salience"]["n_tokens"].get<int64_t>(), 0);
}

}  // namespace
}  // namespace awq
