// The recurrent families (Mamba, RWKV) against transformers: tiny random-weight models
// (tools/make_tiny_models.py, docs/GOLDEN.md) give the same fp32 logits, token-by-token decode
// through the state gives the full-prompt logits, greedy generation gives transformers' tokens;
// AWQ's folds leave the function unchanged and a quantized checkpoint saves and reloads.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "awq/activation_stats.h"
#include "awq/calibration.h"
#include "awq/error.h"
#include "awq/eval.h"
#include "awq/metrics.h"
#include "awq/model.h"
#include "awq/quantize.h"
#include "awq/tokenizer.h"
#include "model/arch.h"
#include "model/recurrent.h"
#include "quant/quantize_recurrent.h"
#include "test_util.h"

namespace awq {
namespace {

// The fixtures' logits are rounded to 6 significant digits (|logit| < 20: <= 1e-5); fp32
// summation order differs from PyTorch's by ~1e-6. 1e-3 is the bound every family is held to.
constexpr float kLogitTol = 1e-3f;
// The state is fp32 (no fp16 cache as attention has): decode through it differs from the full
// prompt only by summation order, so it is held to the same bound.
constexpr float kDecodeTol = 1e-3f;
// Folding scales in [0.5, 2] changes products by fp32 rounding only: ~1e-6 relative per op
// through a few layers; 1e-4 of the logits' scale (~5) is far above that and far below what a
// wrong fold moves (> 0.1).
constexpr float kFoldTol = 5e-4f;

using test::GoldenPrompt;
using test::TinyDir;

class Recurrent : public ::testing::TestWithParam<const char*> {};

TEST_P(Recurrent, PromptLogitsMatchTransformers) {
  const Model m = Model::Load(TinyDir(GetParam()), LoadOptions{.int4 = false});
  EXPECT_NE(ArchitectureOf(m.config()).recurrent, nullptr);
  test::ExpectPromptLogitsMatchGolden(m, GetParam(), kLogitTol);
}

TEST_P(Recurrent, DecodeThroughTheStateMatches) {
  // 5 tokens as a prompt, then one at a time with a second prompt of 3 at position 20: the
  // convolution / shift rows and the scan / WKV sums carry over between calls.
  const Model m = Model::Load(TinyDir(GetParam()), LoadOptions{.int4 = false});
  const int64_t v = m.config().vocab_size, d = m.config().hidden_size;
  const GoldenPrompt p = test::ReadGoldenPrompts(GetParam()).back();
  const int64_t n = static_cast<int64_t>(p.ids.size());
  KvCache cache = m.NewCache(n);
  EXPECT_EQ(cache.state_floats(),
            RecurrentStateFloats(*ArchitectureOf(m.config()).recurrent, m.config()));
  test::ExpectChunkedDecodeMatchesGolden(m, p, cache, kDecodeTol, GetParam());
  EXPECT_EQ(cache.size(), n);

  // Clear() starts over, here one token at a time from position 0 (fewer tokens than Mamba's
  // convolution window: its state supplies the zeros and then the earlier inputs).
  cache.Clear();
  std::vector<float> hidden(static_cast<size_t>(d)), logits(static_cast<size_t>(v));
  for (int64_t t = 0; t < 8; ++t) {
    m.Forward(p.ids.data() + t, 1, cache, hidden.data());
    m.Logits(hidden.data(), 1, logits.data());
    for (int64_t j = 0; j < v; ++j) {
      ASSERT_NEAR(logits[j], p.logits[static_cast<size_t>(t)][static_cast<size_t>(j)], kDecodeTol)
          << GetParam() << " position " << t;
    }
  }
}

TEST_P(Recurrent, GreedyGenerationMatchesTransformers) {
  // The generate loop (prompt forward, then one token at a time through the state, greedy
  // Sampler) against transformers' argmax of full forwards.
  const Model m = Model::Load(TinyDir(GetParam()), LoadOptions{.int4 = false});
  test::ExpectGreedyMatchesGolden(m, GetParam());
}

TEST_P(Recurrent, PerplexityWindowsStartFromTheInitialState) {
  // Two windows of the same 40 ids: each is run from a cleared cache, so the second scores as
  // the first, and both as transformers' logits say.
  const Model m = Model::Load(TinyDir(GetParam()), LoadOptions{.int4 = false});
  const GoldenPrompt p = test::ReadGoldenPrompts(GetParam()).back();
  double nll = 0;
  for (size_t t = 0; t + 1 < p.ids.size(); ++t) {
    double mx = -INFINITY, sum = 0;
    for (float v : p.logits[t]) mx = std::max(mx, static_cast<double>(v));
    for (float v : p.logits[t]) sum += std::exp(v - mx);
    nll += mx + std::log(sum) - p.logits[t][static_cast<size_t>(p.ids[t + 1])];
  }
  std::vector<int32_t> tokens = p.ids;
  tokens.insert(tokens.end(), p.ids.begin(), p.ids.end());
  PerplexityOptions o;
  o.ctx = static_cast<int64_t>(p.ids.size());
  const PerplexityResult r = EvaluatePerplexity(m, tokens, o);
  EXPECT_EQ(r.n_windows, 2);
  // 78 scored tokens, each within ~1e-5 of the golden's rounding.
  EXPECT_NEAR(r.nll_sum, 2 * nll, 1e-3) << GetParam();
}

TEST_P(Recurrent, FoldedScalesKeepTheOutput) {
  // Random scales in [0.5, 2] folded into every norm that feeds linears (weights and LayerNorm
  // biases divided, the linears' columns multiplied) leave the logits as they were, before any
  // rounding: the token-shift mixes and the decode state see the same scaled rows.
  Model m = Model::Load(TinyDir(GetParam()), LoadOptions{.int4 = false});
  const RecurrentSpec& spec = *ArchitectureOf(m.config()).recurrent;
  const GoldenPrompt p = test::ReadGoldenPrompts(GetParam()).back();
  const std::vector<float> before = test::PromptLogits(m, p.ids);
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> log2s(-1.0f, 1.0f);
  int folds = 0;
  for (int64_t l = 0; l < m.config().num_hidden_layers; ++l) {
    std::vector<std::string> norms;
    for (const RecurrentLinear& lin : spec.linears) {
      if (*lin.scale_norm != '\0' &&
          std::find(norms.begin(), norms.end(), lin.scale_norm) == norms.end()) {
        norms.push_back(lin.scale_norm);
      }
    }
    for (const std::string& norm : norms) {
      std::vector<float> s(static_cast<size_t>(m.config().hidden_size));
      for (float& x : s) x = std::exp2(log2s(rng)) * 1.01f;  // not powers of two
      FoldRecurrentScale(spec, m.weights().layers[static_cast<size_t>(l)], norm, s);
      ++folds;
    }
  }
  EXPECT_EQ(folds, m.config().num_hidden_layers * (m.config().model_type == "rwkv" ? 2 : 1));
  const std::vector<float> after = test::PromptLogits(m, p.ids);
  const float worst = test::MaxAbsDiff(before, after);
  EXPECT_LE(worst, kFoldTol) << GetParam();
  std::printf("%s: largest |logit change| from folding = %.3g\n", GetParam(), worst);
}

// Short calibration paragraphs (each under the 32-token sample limit of the tiny tokenizer).
std::string WriteCalibration(const std::string& dir) {
  const std::string path = dir + "/calib.txt";
  std::ofstream f(path);
  const char* words[] = {"the",    "house", "was",    "quiet",   "and", "she",
                         "walked", "into",  "garden", "with",    "her", "sister",
                         "who",    "had",   "been",   "reading", "a",   "letter"};
  uint64_t s = 7;
  for (int line = 0; line < 200; ++line) {
    for (int w = 0; w < 6; ++w) {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      f << words[(s >> 33) % std::size(words)] << (w == 5 ? ".\n\n" : " ");
    }
  }
  return path;
}

QuantizeOptions TinyAwqOptions(const std::string& tmp) {
  QuantizeOptions o;
  o.method = QuantMethod::kAwq;
  o.config.w_bit = 4;
  o.config.q_group_size = 8;  // divides every quantized input width (48, 96; RWKV's 40, 72)
  o.config.max_calib_seq_len = 32;
  o.config.max_calib_samples = 48;
  o.calib_data = WriteCalibration(tmp);
  return o;
}

// sqrt(sum (a - b)^2 / sum a^2).
double RelativeError(const std::vector<float>& ref, const std::vector<float>& x) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    num += (x[i] - ref[i]) * (x[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return std::sqrt(num / den);
}

// The relative logit error of the 4-bit tiny models (group 8) against fp32, measured (see the
// test output): mamba awq 0.160, rtn 0.169 (in_proj alone: awq 0.128, rtn 0.137; the random
// tiny Mamba is sensitive: its dt goes through softplus and exp); rwkv awq 0.0386, rtn 0.0384.
// The bounds keep about 1.5x margin; a broken fold or a lost scale gives > 0.5.
double QuantizedRelTol(const std::string& family) { return family == "mamba" ? 0.25 : 0.06; }

TEST_P(Recurrent, AwqQuantizeSaveAndReload) {
  const std::string src = TinyDir(GetParam());
  Model m = Model::Load(src, LoadOptions{.int4 = false});
  const Tokenizer tok =
      Tokenizer::FromHfJson(src + "/tokenizer.json", src + "/tokenizer_config.json");
  const std::string tmp = test::MakeTempDir("recurrent");
  const QuantizeOptions o = TinyAwqOptions(tmp);
  const GoldenPrompt p = test::ReadGoldenPrompts(GetParam()).back();
  const std::vector<float> before = test::PromptLogits(m, p.ids);

  // RTN on a copy, for the comparison.
  Model rtn_model = Model::Load(src, LoadOptions{.int4 = false});
  QuantizeOptions ro = o;
  ro.method = QuantMethod::kRtn;
  QuantizeModel(rtn_model, tok, ro);
  const double rtn_err = RelativeError(before, test::PromptLogits(rtn_model, p.ids));

  const QuantizeResult r = QuantizeModel(m, tok, o);
  const bool mamba = m.config().model_type == "mamba";
  // Mamba: in_proj, x_proj, dt_proj (group 8 divides its width 8), out_proj; RWKV: all 7.
  EXPECT_EQ(r.linears.size(),
            static_cast<size_t>(m.config().num_hidden_layers) * (mamba ? 4u : 7u));
  ASSERT_EQ(r.blocks.size(), static_cast<size_t>(m.config().num_hidden_layers));
  EXPECT_EQ(r.blocks[0].groups.size(), mamba ? 1u : 2u);  // norm; ln1 and ln2
  const std::vector<float> quantized = test::PromptLogits(m, p.ids);
  const double awq_err = RelativeError(before, quantized);
  std::printf("%s: relative logit error of the 4-bit model: awq %.3g, rtn %.3g\n", GetParam(),
              awq_err, rtn_err);
  EXPECT_GT(awq_err, 0.0);
  EXPECT_LT(awq_err, QuantizedRelTol(GetParam()));
  EXPECT_LT(rtn_err, QuantizedRelTol(GetParam()));

  const std::string out = tmp + "/q";
  SaveQuantizedModel(m, r, o.config, &tok, out, 5000000000ull, false);
  for (bool int4 : {false, true}) {
    const Model back = Model::Load(out, LoadOptions{.int4 = int4});
    EXPECT_EQ(back.config().model_type, m.config().model_type);
    const std::vector<float> again = test::PromptLogits(back, p.ids);
    for (size_t i = 0; i < again.size(); ++i) {
      // The checkpoint stores fp16 scales and every other tensor in fp16 (norms, A_log,
      // time_decay, mixes, embeddings): the dequantized weights round-trip exactly, the rest
      // to fp16 rounding.
      ASSERT_NEAR(again[i], quantized[i], 2e-2f + 2e-3f * std::fabs(quantized[i]))
          << GetParam() << " int4=" << int4 << " logit " << i;
    }
  }
  // The streaming entry (what `awq quantize` calls) writes the same model.
  const std::string out2 = tmp + "/q2";
  QuantizeToFolder(src, tok, o, out2, 5000000000ull, false);
  const Model back2 = Model::Load(out2, LoadOptions{.int4 = false});
  EXPECT_LE(test::MaxAbsDiff(test::PromptLogits(back2, p.ids),
                             test::PromptLogits(Model::Load(out), p.ids)),
            0.0f);
}

// Mamba's dt_proj reads time_step_rank inputs (8 in the tiny model). A group size that does not
// divide it (16) leaves it in full precision in AutoAWQ's layout, listed for transformers, and
// gives it one group per row in ours; a dividing one (TinyAwqOptions' 8) quantizes it with the
// rest.
TEST(RecurrentMamba, DtProjFollowsTheGroupSize) {
  const std::string src = TinyDir("mamba");
  const Tokenizer tok =
      Tokenizer::FromHfJson(src + "/tokenizer.json", src + "/tokenizer_config.json");
  const std::string tmp = test::MakeTempDir("recurrent_dt");
  const std::string dt = "backbone.layers.1.mixer.dt_proj";
  for (const char* version : {kLayoutGemm, kLayoutPacked}) {
    SCOPED_TRACE(version);
    QuantizeOptions o = TinyAwqOptions(tmp);
    o.method = QuantMethod::kRtn;
    o.config.q_group_size = 16;
    o.config.version = version;
    Model m = Model::Load(src, LoadOptions{.int4 = false});
    const QuantizeResult r = QuantizeModel(m, tok, o);
    const bool packed = std::string(version) == kLayoutPacked;
    ASSERT_EQ(r.linears.count(dt), packed ? 1u : 0u);
    if (packed) {
      EXPECT_EQ(r.linears.at(dt).params.group_size, -1);
    }
    const std::string out = tmp + "/" + version;
    SaveQuantizedModel(m, r, o.config, &tok, out, 5000000000ull, false);
    std::ifstream cfg(out + "/config.json");
    const nlohmann::json skip =
        nlohmann::json::parse(cfg).at("quantization_config").at("modules_to_not_convert");
    EXPECT_EQ(std::find(skip.begin(), skip.end(), "mixer.dt_proj") != skip.end(), !packed)
        << skip.dump();
    const Model back = Model::Load(out, LoadOptions{.int4 = false});
    const GoldenPrompt p = test::ReadGoldenPrompts("mamba").back();
    EXPECT_LE(test::MaxAbsDiff(test::PromptLogits(back, p.ids), test::PromptLogits(m, p.ids)),
              2e-2f);
  }
}

TEST_P(Recurrent, GptqIsRefused) {
  Model m = Model::Load(TinyDir(GetParam()), LoadOptions{.int4 = false});
  const Tokenizer tok = Tokenizer::FromHfJson(TinyDir(GetParam()) + "/tokenizer.json",
                                              TinyDir(GetParam()) + "/tokenizer_config.json");
  QuantizeOptions o = TinyAwqOptions(test::MakeTempDir("recurrent_gptq"));
  o.method = QuantMethod::kGptq;
  test::ExpectError([&] { QuantizeModel(m, tok, o); }, {"gptq", GetParam(), "recurrent"});
}

TEST_P(Recurrent, BlockPointAnalysesAreRefused) {
  // Activation statistics and per-linear comparisons observe the attention blocks' points.
  const Model m = Model::Load(TinyDir(GetParam()), LoadOptions{.int4 = false});
  CalibrationBatch batch;
  batch.n_blocks = 1;
  batch.seq_len = 4;
  batch.tokens = {1, 2, 3, 4};
  test::ExpectError([&] { CollectActivationStats(m, batch); }, {GetParam(), "recurrent"});
  test::ExpectError([&] { CompareLinears(m, m, batch); }, {GetParam(), "recurrent"});
}

INSTANTIATE_TEST_SUITE_P(Families, Recurrent, ::testing::Values("mamba", "rwkv"),
                         [](const auto& info) { return std::string(info.param); });

TEST(RecurrentConfig, ErrorsNameFileKeyAndValue) {
  const LoadOptions fp32{.int4 = false};
  test::ExpectError([&] { Model::Load(test::EditedTinyCopy("mamba", "state_size", 0), fp32); },
                    {"config.json", "state_size", "0"});
  test::ExpectError(
      [&] { Model::Load(test::EditedTinyCopy("mamba", "time_step_rank", "big"), fp32); },
      {"config.json", "time_step_rank", "big"});
  test::ExpectError([&] { Model::Load(test::EditedTinyCopy("mamba", "hidden_act", "gelu"), fp32); },
                    {"config.json", "hidden_act", "gelu"});
  test::ExpectError([&] { Model::Load(test::EditedTinyCopy("mamba", "use_bias", 3), fp32); },
                    {"config.json", "use_bias", "3"});
  test::ExpectError(
      [&] { Model::Load(test::EditedTinyCopy("rwkv", "attention_hidden_size", -4), fp32); },
      {"config.json", "attention_hidden_size", "-4"});
  test::ExpectError(
      [&] { Model::Load(test::EditedTinyCopy("rwkv", "hidden_size", nullptr), fp32); },
      {"config.json", "hidden_size", "missing"});
  // A wider state than the checkpoint holds: the first tensor whose shape disagrees is named.
  test::ExpectError([&] { Model::Load(test::EditedTinyCopy("mamba", "state_size", 16), fp32); },
                    {"backbone.layers.0.mixer", "shape", "40"});
  test::ExpectError(
      [&] { Model::Load(test::EditedTinyCopy("rwkv", "intermediate_size", 80), fp32); },
      {"rwkv.blocks.0.feed_forward", "shape", "80"});
}

TEST(RecurrentConfig, ParameterCountAndLinearNames) {
  for (const char* name : {"mamba", "rwkv"}) {
    const Model m = Model::Load(TinyDir(name), LoadOptions{.int4 = false});
    EXPECT_EQ(m.ParameterCount(), ParameterCount(m.config())) << name;
    const std::vector<std::string> names = LinearNames(m.config(), 1);
    ASSERT_FALSE(names.empty());
    EXPECT_EQ(names[0], std::string(name) == "mamba" ? "backbone.layers.1.mixer.in_proj"
                                                     : "rwkv.blocks.1.attention.key");
  }
}

}  // namespace
}  // namespace awq
