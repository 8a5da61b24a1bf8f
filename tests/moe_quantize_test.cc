// Quantizing mixtures of experts (the tiny transformers models of Mixtral, Qwen3-MoE and
// Qwen2-MoE in tests/data/tiny): the experts' AWQ scales fold exactly (the router and the shared
// expert's gate included), experts below the token threshold are rounded to nearest, GPTQ runs
// per expert, and the streaming writer gives the in-memory writer's files in AutoAWQ's names.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "awq/awq_checkpoint.h"
#include "awq/model.h"
#include "awq/quantize.h"
#include "awq/quantizer.h"
#include "awq/safetensors.h"
#include "awq/tokenizer.h"
#include "test_util.h"

namespace awq {
namespace {

using test::TinyDir;

Tokenizer TinyTokenizer(const std::string& dir) {
  return Tokenizer::FromHfJson(dir + "/tokenizer.json", dir + "/tokenizer_config.json");
}

QuantizeOptions Options(const std::string& tmp, QuantMethod method) {
  QuantizeOptions o;
  o.method = method;
  o.config.w_bit = 4;
  o.config.q_group_size = 8;  // divides every width of the tiny mixtures (40, 56, 64, 72)
  o.config.max_calib_seq_len = 32;
  o.config.max_calib_samples = 48;
  o.calib_data = test::WriteTinyCalibration(tmp, 11);
  return o;
}

double MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(double(a[i]) - b[i]));
  return m;
}

class MoeQuantize : public ::testing::TestWithParam<const char*> {};

// With every linear left unconverted, each group's candidates tie and the search keeps its first
// ratio (a non-identity scale under duo scaling), which is then folded: norms divided, experts'
// gate/up columns multiplied, the router's and shared-expert gate's columns multiplied, each
// expert's up rows divided and its down columns multiplied. The model must compute what it did.
TEST_P(MoeQuantize, FoldedScalesLeaveTheModelUnchanged) {
  const std::string src = TinyDir(GetParam());
  Model m = Model::Load(src, LoadOptions{.int4 = false});
  const std::string tmp = test::MakeTempDir("moe_fold");
  QuantizeOptions o = Options(tmp, QuantMethod::kAwq);
  o.config.modules_to_not_convert = {"model.layers."};
  o.min_expert_tokens = 1;
  const std::vector<int32_t> ids = {5, 17, 99, 230, 41, 7, 300, 12, 64, 128, 3};
  const std::vector<float> before = test::PromptLogits(m, ids);
  const std::vector<float> router0(m.weights().layers[0].router.data<float>(),
                                   m.weights().layers[0].router.data<float>() + 8);
  const QuantizeResult r = QuantizeModel(m, TinyTokenizer(src), o);
  EXPECT_TRUE(r.linears.empty());
  // The search did fold scales: the router's columns moved.
  const float* router_after = m.weights().layers[0].router.data<float>();
  EXPECT_NE(std::vector<float>(router_after, router_after + 8), router0);
  // fp32 reassociation only (measured <= 1.9e-6); a router left unscaled (as AutoAWQ leaves it)
  // moves them by 0.05-0.7.
  const double diff = MaxAbsDiff(test::PromptLogits(m, ids), before);
  std::printf("%s: folded scales move the logits by at most %.3g\n", GetParam(), diff);
  EXPECT_LT(diff, 2e-4) << GetParam();
}

// Experts below min_expert_tokens get no searches of their own: their down_proj (identity scale,
// no clipping) is exactly RTN of the original weights, and the report names them.
TEST_P(MoeQuantize, ExpertsBelowTheThresholdAreRoundedToNearest) {
  const std::string src = TinyDir(GetParam());
  Model m = Model::Load(src, LoadOptions{.int4 = false});
  const Model original = Model::Load(src, LoadOptions{.int4 = false});
  const std::string tmp = test::MakeTempDir("moe_rtn");
  QuantizeOptions o = Options(tmp, QuantMethod::kAwq);
  // Between the smallest and largest count of layer 0, so some experts are searched and some not.
  QuantizeOptions probe = o;
  probe.min_expert_tokens = 0;
  Model m2 = Model::Load(src, LoadOptions{.int4 = false});
  const std::vector<int64_t> counts =
      QuantizeModel(m2, TinyTokenizer(src), probe).blocks[0].expert_tokens;
  ASSERT_FALSE(counts.empty());
  const auto [lo, hi] = std::minmax_element(counts.begin(), counts.end());
  ASSERT_LT(*lo, *hi) << "the tiny router sends every expert the same count";
  o.min_expert_tokens = *hi;  // every expert but the busiest falls back
  const QuantizeResult r = QuantizeModel(m, TinyTokenizer(src), o);
  const BlockReport& b = r.blocks[0];
  EXPECT_EQ(b.expert_tokens, counts);
  const ModelConfig& c = m.config();
  const std::string experts = std::string(GetParam()) == "mixtral"
                                  ? "model.layers.0.block_sparse_moe.experts."
                                  : "model.layers.0.mlp.experts.";
  const char* down = std::string(GetParam()) == "mixtral" ? ".w2" : ".down_proj";
  const QuantParams params = *o.config.ParamsFor(experts + "0" + down);
  for (int64_t e = 0; e < c.num_experts; ++e) {
    const bool rtn = counts[static_cast<size_t>(e)] < *hi;
    EXPECT_EQ(std::count(b.rtn_experts.begin(), b.rtn_experts.end(), e), rtn ? 1 : 0) << e;
    const QuantizedLinear& q = r.linears.at(experts + std::to_string(e) + down);
    const int64_t d = c.hidden_size, ie = c.moe_intermediate_size;
    const QuantizedLinear plain = QuantizeLinear(
        original.weights().layers[0].experts_down.data<float>() + e * d * ie, d, ie, params);
    bool searched = false;
    for (const BlockReport::Group& g : b.groups) {
      searched |= g.name == "experts." + std::to_string(e) + ".down";
    }
    EXPECT_EQ(searched, !rtn) << "expert " << e;
    if (rtn) {
      EXPECT_EQ(q.q, plain.q) << "expert " << e;
      EXPECT_EQ(q.scales, plain.scales) << "expert " << e;
    }
  }
}

// GPTQ and AWQ+GPTQ quantize every expert (per-expert Hessians from the routed tokens) and report
// the same token counts as AWQ; the 4-bit model stays close to the fp32 one.
TEST_P(MoeQuantize, GptqQuantizesEveryExpert) {
  const std::string src = TinyDir(GetParam());
  const std::string tmp = test::MakeTempDir("moe_gptq");
  const std::vector<int32_t> ids = {5, 17, 99, 230, 41, 7, 300, 12, 64, 128, 3};
  for (QuantMethod method : {QuantMethod::kAwq, QuantMethod::kGptq, QuantMethod::kAwqGptq}) {
    Model m = Model::Load(src, LoadOptions{.int4 = false});
    const std::vector<float> before = test::PromptLogits(m, ids);
    QuantizeOptions o = Options(tmp, method);
    o.min_expert_tokens = 1;
    const QuantizeResult r = QuantizeModel(m, TinyTokenizer(src), o);
    // Every calibration token goes to k experts (GPTQ routes the output of its quantized
    // attention, so its counts differ a little from AWQ's).
    int64_t routed = 0;
    for (int64_t t : r.blocks[0].expert_tokens) routed += t;
    EXPECT_EQ(routed, r.calib_tokens * m.config().num_experts_per_tok) << QuantMethodName(method);
    EXPECT_TRUE(r.blocks[0].rtn_experts.empty());
    size_t experts = 0;
    for (const auto& [name, q] : r.linears) experts += name.find(".experts.") != std::string::npos;
    size_t sparse = 0;
    for (int64_t l = 0; l < m.config().num_hidden_layers; ++l) sparse += m.config().IsMoeLayer(l);
    EXPECT_EQ(experts, static_cast<size_t>(m.config().num_experts) * 3 * sparse);
    const std::vector<float> after = test::PromptLogits(m, ids);
    double num = 0, den = 0;
    for (size_t i = 0; i < before.size(); ++i) {
      num += (after[i] - before[i]) * (after[i] - before[i]);
      den += before[i] * before[i];
    }
    EXPECT_GT(num, 0.0);
    EXPECT_LT(std::sqrt(num / den), 0.5) << QuantMethodName(method);
  }
}

// The streaming writer (one block in memory) gives the in-memory writer's tensors, with the
// experts under AutoAWQ's names and the router in full precision and listed in
// modules_to_not_convert, as transformers and vLLM read it.
TEST_P(MoeQuantize, StreamingAndInMemoryCheckpointsAgree) {
  const std::string src = TinyDir(GetParam());
  const std::string tmp = test::MakeTempDir("moe_stream");
  const QuantizeOptions o = Options(tmp, QuantMethod::kAwq);
  const Tokenizer tok = TinyTokenizer(src);
  Model m = Model::Load(src, LoadOptions{.int4 = false});
  const QuantizeResult r = QuantizeModel(m, tok, o);
  SaveQuantizedModel(m, r, o.config, &tok, tmp + "/mem", 5000000000ull, false);
  QuantizeToFolder(src, tok, o, tmp + "/stream", 5000000000ull, false);
  test::ExpectSameTree(tmp + "/mem", tmp + "/stream");

  const SafetensorsCheckpoint ck = SafetensorsCheckpoint::Open(tmp + "/mem");
  const bool mixtral = std::string(GetParam()) == "mixtral";
  const std::string moe = mixtral ? "model.layers.0.block_sparse_moe." : "model.layers.0.mlp.";
  EXPECT_TRUE(ck.Has(moe + "gate.weight"));
  EXPECT_TRUE(ck.Has(moe + "experts.3." + (mixtral ? "w2" : "down_proj") + ".qweight"));
  EXPECT_FALSE(ck.Has(moe + "experts.3." + (mixtral ? "w2" : "down_proj") + ".weight"));
  std::ifstream f(tmp + "/mem/config.json");
  const nlohmann::json cfg = nlohmann::json::parse(f);
  const auto& skip = cfg.at("quantization_config").at("modules_to_not_convert");
  // Qwen2-MoE's dense layer 1 has an mlp.gate_proj, so its routers are named in full there.
  const std::string router = std::string(GetParam()) == "qwen2_moe" ? "model.layers.0.mlp.gate"
                             : mixtral                              ? "gate"
                                                                    : "mlp.gate";
  EXPECT_NE(std::find(skip.begin(), skip.end(), router), skip.end()) << skip.dump();

  // The checkpoint reads back as the quantized model, its experts packed for the int4 kernels
  // (no fp32 copies), decode reading the top-k share of them.
  const Model back = Model::Load(tmp + "/mem");
  ASSERT_TRUE(back.uses_int4());
  const LayerWeights& l0 = back.weights().layers[0];
  EXPECT_EQ(l0.experts_gate_up4.size(), static_cast<size_t>(m.config().num_experts));
  EXPECT_EQ(l0.experts_down4.size(), static_cast<size_t>(m.config().num_experts));
  EXPECT_TRUE(l0.experts_gate_up.empty());
  EXPECT_EQ(l0.shared_gate_up4 != nullptr, m.config().shared_expert_intermediate_size > 0);
  EXPECT_LT(back.DecodeWeightBytes(), m.DecodeWeightBytes() / 2);
  const std::vector<int32_t> ids = {5, 17, 99, 230, 41, 7, 300, 12, 64, 128, 3};
  const std::vector<float> want = test::PromptLogits(m, ids);
  const std::vector<float> got = test::PromptLogits(back, ids);
  for (size_t i = 0; i < got.size(); ++i) {
    // fp16 norms, router and scales in the file.
    ASSERT_NEAR(got[i], want[i], 2e-2f + 2e-3f * std::fabs(want[i])) << GetParam() << " " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Families, MoeQuantize,
                         ::testing::Values("mixtral", "qwen3_moe", "qwen2_moe"),
                         [](const auto& info) { return std::string(info.param); });

}  // namespace
}  // namespace awq
