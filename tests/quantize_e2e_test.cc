// End to end on the real model with a shortened calibration: RTN and AWQ quantize SmolLM2-135M,
// AWQ beats RTN in perplexity, its searches never lose to the identity scales, the checkpoint
// written in the AutoAWQ layout loads back to the same model, GPTQ and AWQ+GPTQ beat RTN too,
// and bad options fail clearly.
#include <gtest/gtest.h>

#include <cmath>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "awq/eval.h"
#include "awq/gguf.h"
#include "awq/model.h"
#include "awq/quantize.h"
#include "awq/tokenizer.h"
#include "core/mapped_file.h"
#include "test_util.h"

namespace awq {
namespace {

// Checkpoints store embeddings and norms as F16 (as AutoAWQ does) while the in-memory model
// keeps fp32, so the reloaded model's perplexity moves by fp16 rounding of those tensors:
// ~1e-4 relative measured; 2e-3 leaves margin without hiding a layout error (which costs >10%).
constexpr double kReloadRelTol = 2e-3;
// The share of RTN's perplexity loss that AWQ wins back with this one-block calibration:
// measured 0.65 (fp32 20.8319, RTN 25.3431, AWQ 22.3915 on 2048 tokens, ctx 512). 0 would be no
// better than RTN; the bound sits about halfway between that and the measured value, so a change
// that loses half of AWQ's gain fails (full calibrations recover ~54%: docs/RESULTS.md).
constexpr double kMinAwqRecovery = 0.33;

struct Fixture {
  Tokenizer tok = Tokenizer::FromGguf(GgufFile::Open(test::ModelPath()));
  std::vector<int32_t> ids =
      tok.Encode(ReadFileToString(test::TextPath("prideprejudice")), true, false);
  double Ppl(const Model& m) const {
    PerplexityOptions o;
    o.ctx = 512;
    o.max_tokens = 2048;
    return EvaluatePerplexity(m, ids, o).perplexity;
  }
};

QuantizeOptions Options(QuantMethod method) {
  QuantizeOptions o;
  o.method = method;
  o.config.q_group_size = 64;
  // Emma's paragraphs average ~60 tokens, so 16 samples make one 512-token block: the short
  // calibration that keeps this test at a couple of minutes on two cores.
  o.config.max_calib_samples = 16;
  o.calib_data = test::TextPath("emma");
  return o;
}

TEST(QuantizeE2E, AwqBeatsRtnAndTheCheckpointLoadsBack) {
  Fixture f;
  const double ppl_fp = f.Ppl(Model::Load(test::ModelPath()));

  Model rtn = Model::Load(test::ModelPath());
  const QuantizeResult rr = QuantizeModel(rtn, f.tok, Options(QuantMethod::kRtn));
  EXPECT_EQ(rr.linears.size(), 30u * 7u);
  const double ppl_rtn = f.Ppl(rtn);

  Model awq = Model::Load(test::ModelPath());
  const QuantizeResult ar = QuantizeModel(awq, f.tok, Options(QuantMethod::kAwq));
  EXPECT_EQ(ar.calib_blocks, 1);
  EXPECT_EQ(ar.calib_tokens, 512);
  ASSERT_EQ(ar.blocks.size(), 30u);
  for (const BlockReport& b : ar.blocks) {
    // GQA (3 kv heads for 9 heads): no v->o group, so qkv, gate_up, down.
    ASSERT_EQ(b.groups.size(), 3u);
    for (const auto& g : b.groups) {
      EXPECT_LE(g.best_loss, g.identity_loss) << "layer " << b.layer << " " << g.name;
    }
  }
  EXPECT_GT(ar.peak_rss_bytes, 0);
  const double ppl_awq = f.Ppl(awq);
  std::printf("ppl (2048 tokens, ctx 512): fp32 %.4f, rtn %.4f, awq %.4f, recovery %.2f\n", ppl_fp,
              ppl_rtn, ppl_awq, (ppl_rtn - ppl_awq) / (ppl_rtn - ppl_fp));
  EXPECT_LT(ppl_fp, ppl_rtn);
  EXPECT_LT(ppl_awq, ppl_rtn);
  // Even one calibration block recovers a good part of what RTN loses.
  EXPECT_GE((ppl_rtn - ppl_awq) / (ppl_rtn - ppl_fp), kMinAwqRecovery);

  const std::string dir = test::MakeTempDir("awq-e2e") + "/smol-awq";
  SaveQuantizedModel(awq, ar, Options(QuantMethod::kAwq).config, &f.tok, dir, 5000000000ull, false);
  const double ppl_reload = f.Ppl(Model::Load(dir));
  EXPECT_NEAR(ppl_reload, ppl_awq, ppl_awq * kReloadRelTol);
  // An existing folder is never replaced without overwrite.
  EXPECT_THROW(SaveQuantizedModel(awq, ar, Options(QuantMethod::kAwq).config, &f.tok, dir,
                                  5000000000ull, false),
               Error);
}

TEST(QuantizeE2E, GptqAndAwqGptqBeatRtn) {
  Fixture f;
  Model rtn = Model::Load(test::ModelPath());
  QuantizeModel(rtn, f.tok, Options(QuantMethod::kRtn));
  const double ppl_rtn = f.Ppl(rtn);

  // GPTQ needs more than the AWQ test's single 512-token block: with fewer tokens than
  // down_proj's 1536 inputs its Hessian is singular before dampening and GPTQ overfits the block
  // (measured: one block 25.47 vs RTN 25.34 at damp 0.01, 25.62 at damp 0.1; four blocks 24.42).
  // 32 samples give four blocks.
  QuantizeOptions go = Options(QuantMethod::kGptq);
  go.config.max_calib_samples = 32;
  Model gptq = Model::Load(test::ModelPath());
  const QuantizeResult gr = QuantizeModel(gptq, f.tok, go);
  EXPECT_EQ(gr.method, QuantMethod::kGptq);
  EXPECT_EQ(gr.linears.size(), 30u * 7u);
  EXPECT_EQ(gr.calib_blocks, 4);
  ASSERT_EQ(gr.blocks.size(), 30u);
  for (const BlockReport& b : gr.blocks) {
    ASSERT_EQ(b.gptq.size(), 7u);
    for (const auto& g : b.gptq) EXPECT_TRUE(std::isfinite(g.loss) && g.loss >= 0) << g.name;
  }
  EXPECT_GT(gr.seconds.gptq, 0);
  const double ppl_gptq = f.Ppl(gptq);

  // The folder is the ordinary AutoAWQ GEMM layout (quant_method "awq") and records the method
  // in quant_config.json; it loads back to the same model.
  const std::string dir = test::MakeTempDir("gptq-e2e") + "/smol-gptq";
  SaveQuantizedModel(gptq, gr, Options(QuantMethod::kGptq).config, &f.tok, dir, 5000000000ull,
                     false);
  const auto legacy = nlohmann::json::parse(ReadFileToString(dir + "/quant_config.json"));
  EXPECT_EQ(legacy.at("awqcpp_method"), "gptq");
  const auto cfg = nlohmann::json::parse(ReadFileToString(dir + "/config.json"));
  EXPECT_EQ(cfg.at("quantization_config").at("quant_method"), "awq");
  EXPECT_NEAR(f.Ppl(Model::Load(dir)), ppl_gptq, ppl_gptq * kReloadRelTol);

  Model both = Model::Load(test::ModelPath());
  const QuantizeResult br = QuantizeModel(both, f.tok, Options(QuantMethod::kAwqGptq));
  EXPECT_EQ(br.linears.size(), 30u * 7u);
  ASSERT_EQ(br.blocks.size(), 30u);
  EXPECT_EQ(br.blocks[0].groups.size(), 3u);  // the AWQ searches ran
  EXPECT_EQ(br.blocks[0].gptq.size(), 7u);    // and GPTQ rounded every linear
  const double ppl_both = f.Ppl(both);
  std::printf("ppl (2048 tokens, ctx 512): rtn %.4f, gptq %.4f, awq+gptq %.4f\n", ppl_rtn, ppl_gptq,
              ppl_both);
  EXPECT_LT(ppl_gptq, ppl_rtn);
  EXPECT_LT(ppl_both, ppl_rtn);
}

TEST(QuantizeE2E, GroupSizeThatDoesNotDivideTheWidthNamesTheLayer) {
  Fixture f;
  Model m = Model::Load(test::ModelPath());
  QuantizeOptions o = Options(QuantMethod::kRtn);
  o.config.q_group_size = 128;  // 576 = 4.5 x 128
  try {
    QuantizeModel(m, f.tok, o);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("model.layers.0.self_attn.q_proj"), std::string::npos) << msg;
    EXPECT_NE(msg.find("576"), std::string::npos) << msg;
    EXPECT_NE(msg.find("128"), std::string::npos) << msg;
  }
}

TEST(QuantizeE2E, UnknownMethodIsAnError) {
  EXPECT_EQ(ParseQuantMethod("awq"), QuantMethod::kAwq);
  EXPECT_EQ(ParseQuantMethod("rtn"), QuantMethod::kRtn);
  EXPECT_EQ(ParseQuantMethod("gptq"), QuantMethod::kGptq);
  EXPECT_EQ(ParseQuantMethod("awq+gptq"), QuantMethod::kAwqGptq);
  for (int i = 0; i < static_cast<int>(QuantMethod::kCount); ++i) {
    const auto m = static_cast<QuantMethod>(i);
    EXPECT_EQ(ParseQuantMethod(QuantMethodName(m)), m);
  }
  test::ExpectError([] { ParseQuantMethod("gptq-ish"); },
                    {"gptq-ish", "rtn", "awq", "gptq", "awq+gptq"});
}

TEST(QuantizeE2E, BadGptqOptionsAreErrors) {
  Fixture f;
  Model m = Model::Load(test::ModelPath());
  QuantizeOptions o = Options(QuantMethod::kGptq);
  o.gptq.block_size = 0;
  test::ExpectError([&] { QuantizeModel(m, f.tok, o); }, {"block_size", "0"});
  o = Options(QuantMethod::kGptq);
  o.gptq.damp_percent = 1.5;
  test::ExpectError([&] { QuantizeModel(m, f.tok, o); }, {"damp_percent", "1.5"});
  o = Options(QuantMethod::kGptq);
  o.calib_data.clear();
  test::ExpectError([&] { QuantizeModel(m, f.tok, o); }, {"gptq", "calib"});
}

}  // namespace
}  // namespace awq
