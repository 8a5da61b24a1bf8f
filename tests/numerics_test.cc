// Numerical faults in the input: NaN or infinite weights are refused with the tensor's name, and
// activations beyond fp16's range (a few outlier channels, as in Gemma and Qwen2-72B) leave the
// AWQ search, the chosen scales and the quantized model finite.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "awq/activation_stats.h"
#include "awq/calibration.h"
#include "awq/half.h"
#include "awq/model.h"
#include "awq/quantize.h"
#include "awq/tokenizer.h"
#include "model/weight_source.h"
#include "random_model.h"
#include "test_util.h"

namespace awq {
namespace {

namespace fs = std::filesystem;

// The largest finite fp16 value: activations above it are what fp16 tools overflow on.
constexpr float kFp16Max = 65504.0f;

Tokenizer TinyTokenizer() {
  const std::string src = test::DataPath("tiny/qwen3");
  return Tokenizer::FromHfJson(src + "/tokenizer.json", src + "/tokenizer_config.json");
}

TEST(Numerics, NanWeightIsAnErrorNamingTheTensorAndElement) {
  const std::string tmp = test::MakeTempDir("numerics-nan");
  const std::string dir =
      test::MakeRandomQwen3(tmp + "/model", 2, 64, 96, [](const std::string& name, Tensor& t) {
        if (name == "model.layers.1.mlp.up_proj.weight") {
          t.data<float>()[5 * 64 + 7] = std::numeric_limits<float>::quiet_NaN();
        }
      });
  test::ExpectError(
      [&] { Model::Load(dir, LoadOptions{.int4 = false}); },
      {"model.safetensors", "model.layers.1.mlp.up_proj.weight", "NaN", "row 5, column 7"});
  // The streaming quantizer reads the block only when it gets there, and stops there with the
  // same message; nothing appears under the output name.
  QuantizeOptions o;
  o.method = QuantMethod::kRtn;
  o.config.q_group_size = 32;
  const std::string out = tmp + "/out";
  test::ExpectError([&] { QuantizeToFolder(dir, TinyTokenizer(), o, out, 1 << 30, false); },
                    {"model.layers.1.mlp.up_proj.weight", "NaN"});
  EXPECT_FALSE(fs::exists(out));
}

TEST(Numerics, InfiniteEmbeddingIsRefusedWhenOpened) {
  const std::string tmp = test::MakeTempDir("numerics-inf");
  const std::string dir =
      test::MakeRandomQwen3(tmp + "/model", 1, 64, 96, [](const std::string& name, Tensor& t) {
        if (name == "model.embed_tokens.weight") {
          t.data<float>()[3 * 64] = -std::numeric_limits<float>::infinity();
        }
      });
  // The embedding is a view of the file here, checked as stored.
  test::ExpectError([&] { Model::OpenStreaming(dir); },
                    {"model.embed_tokens.weight", "-inf", "row 3, column 0"});
}

TEST(Numerics, HalfPrecisionNonFiniteValuesAreFound) {
  // fp16 and bf16 infinities and NaNs are told apart by their own exponent fields.
  struct Case {
    DType dtype;
    uint16_t bits;
    const char* what;
  };
  for (const Case& c : {Case{DType::kF16, 0x7c00, "+inf"}, Case{DType::kF16, 0xfe00, "NaN"},
                        Case{DType::kBF16, 0xff80, "-inf"}, Case{DType::kBF16, 0x7fc1, "NaN"}}) {
    Tensor t(c.dtype, {4, 8});
    uint16_t* p = t.data<uint16_t>();
    for (int i = 0; i < 32; ++i) {
      p[i] = c.dtype == DType::kF16 ? Fp32ToFp16(65504.0f) : Fp32ToBf16(3e38f);  // finite maxima
    }
    CheckFiniteWeights("f", "w", t);  // the largest finite values pass
    p[2 * 8 + 3] = c.bits;
    test::ExpectError([&] { CheckFiniteWeights("f", "w", t); },
                      {"f: tensor w", c.what, "row 2, column 3"});
  }
}

// Four channels of both norms of block 0 scaled to 3e5: the inputs of q/k/v and gate/up exceed
// fp16's range on those channels, and the down_proj input (gate x up) by far more. fp32
// arithmetic must carry the search through: finite losses, finite scales, the chosen scales no
// worse than the identity, and a quantized model whose logits are finite.
TEST(Numerics, Fp16OverflowingActivationsKeepTheAwqSearchFinite) {
  const std::string tmp = test::MakeTempDir("numerics-fp16");
  const std::string dir =
      test::MakeRandomQwen3(tmp + "/model", 2, 64, 96, [](const std::string& name, Tensor& t) {
        if (name == "model.layers.0.input_layernorm.weight" ||
            name == "model.layers.0.post_attention_layernorm.weight") {
          for (int c = 0; c < 4; ++c) t.data<float>()[c] = 3e5f;
        }
      });
  const QuantizeOptions o = test::RandomModelAwqOptions(test::WriteCalibrationIds(tmp, 8, 64));
  const Tokenizer tok = TinyTokenizer();
  Model m = Model::Load(dir, LoadOptions{.int4 = false});

  // The premise: the activations really leave fp16's range.
  CalibrationOptions co;
  co.max_samples = o.config.max_calib_samples;
  co.seq_len = o.config.max_calib_seq_len;
  const ActivationStats stats =
      CollectActivationStats(m, LoadCalibrationBatch(o.calib_data, tok, co));
  for (const char* module : {"model.layers.0.self_attn.q_proj", "model.layers.0.mlp.up_proj",
                             "model.layers.0.mlp.down_proj"}) {
    const ChannelStats* s = stats.Find(module);
    ASSERT_NE(s, nullptr) << module;
    EXPECT_GT(SummarizeSalience(*s).max_abs, kFp16Max) << module;
  }

  const QuantizeResult r = QuantizeModel(m, tok, o);
  ASSERT_EQ(r.blocks.size(), 2u);
  for (const BlockReport& b : r.blocks) {
    for (const BlockReport::Group& g : b.groups) {
      SCOPED_TRACE("layer " + std::to_string(b.layer) + " group " + g.name);
      EXPECT_TRUE(std::isfinite(g.best_loss)) << g.best_loss;
      EXPECT_TRUE(std::isfinite(g.identity_loss)) << g.identity_loss;
      EXPECT_LE(g.best_loss, g.identity_loss);
    }
  }
  ASSERT_EQ(r.linears.size(), 14u);
  for (const auto& [name, q] : r.linears) {
    for (float s : q.scales) {
      ASSERT_TRUE(std::isfinite(s) && s > 0) << name << " has scale " << s;
    }
  }
  // The folded norms and the dequantized linears, then the logits of a short prompt.
  const ModelWeights& w = m.weights();
  for (size_t l = 0; l < w.layers.size(); ++l) {
    const LayerWeights& lw = w.layers[l];
    for (const Tensor* t :
         {&lw.attn_norm, &lw.ffn_norm, &lw.wqkv, &lw.wo, &lw.w_gate_up, &lw.w_down}) {
      CheckFiniteWeights("quantized model", "layer " + std::to_string(l), *t);
    }
  }
  const std::vector<int32_t> prompt = {1, 17, 200, 42, 399, 5, 64, 128};
  const int64_t n = static_cast<int64_t>(prompt.size());
  KvCache cache = m.NewCache(n);
  std::vector<float> hidden(static_cast<size_t>(n * m.config().hidden_size));
  std::vector<float> logits(static_cast<size_t>(n * m.config().vocab_size));
  m.Forward(prompt.data(), n, cache, hidden.data());
  m.Logits(hidden.data(), n, logits.data());
  for (float v : logits) ASSERT_TRUE(std::isfinite(v)) << v;
}

}  // namespace
}  // namespace awq
