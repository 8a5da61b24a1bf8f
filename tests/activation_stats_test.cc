// Activation statistics: the collected statistics against a straightforward recomputation on the
// real model, the salience summary, the file round trip and its malformed-file errors; and the
// library Quantizer's AWQ call on activations captured from the block walk: the same codes as
// `awq quantize` (QuantizeModel) gives each down_proj, and better than RTN on the real model.
#include "awq/activation_stats.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <random>
#include <string>

#include "awq/calibration.h"
#include "awq/gguf.h"
#include "awq/model.h"
#include "awq/quantize.h"
#include "awq/quantizer_api.h"
#include "awq/safetensors.h"
#include "awq/tokenizer.h"
#include "test_util.h"

namespace awq {
namespace {

TEST(ActivationStats, MatchRecomputationOnRealModel) {
  const Model m = Model::Load(test::ModelPath());
  const Tokenizer tok = Tokenizer::FromGguf(GgufFile::Open(test::ModelPath()));
  CalibrationOptions co;
  co.max_samples = 16;
  co.seq_len = 128;
  const CalibrationBatch batch =
      BuildCalibrationBatch(LoadCalibrationTexts(test::TextPath("emma")), tok, co);
  ASSERT_GE(batch.n_blocks, 2);
  const ActivationStats stats = CollectActivationStats(m, batch);
  const ModelConfig& c = m.config();
  const int64_t d = c.hidden_size, n = batch.n_blocks * batch.seq_len;
  EXPECT_EQ(stats.n_tokens, n);
  ASSERT_EQ(stats.linears.size(), static_cast<size_t>(7 * c.num_hidden_layers));
  EXPECT_EQ(stats.linears[0].module, "model.layers.0.self_attn.q_proj");
  EXPECT_EQ(stats.linears[6].module, "model.layers.0.mlp.down_proj");
  // q, k, v share their input.
  EXPECT_EQ(stats.linears[0].mean_abs, stats.linears[2].mean_abs);
  EXPECT_EQ(stats.linears[4].max_abs, stats.linears[5].max_abs);

  // Layer 0's q_proj input recomputed with plain loops: RMSNorm of the embedding, in double.
  const float* embed = m.weights().embed.data<float>();
  const float* norm = m.weights().layers[0].attn_norm.data<float>();
  std::vector<double> sum(d, 0.0), mx(d, 0.0);
  for (int64_t t = 0; t < n; ++t) {
    const float* e = embed + static_cast<int64_t>(batch.tokens[t]) * d;
    double ss = 0;
    for (int64_t i = 0; i < d; ++i) ss += double{e[i]} * e[i];
    const double inv = 1.0 / std::sqrt(ss / d + c.rms_norm_eps);
    for (int64_t i = 0; i < d; ++i) {
      const double a = std::fabs(e[i] * inv * norm[i]);
      sum[i] += a;
      mx[i] = std::max(mx[i], a);
    }
  }
  const ChannelStats* q0 = stats.Find("model.layers.0.self_attn.q_proj");
  ASSERT_NE(q0, nullptr);
  for (int64_t i = 0; i < d; ++i) {
    // fp32 RMSNorm vs double: relative 1e-5 is ~100 ulps of slack.
    EXPECT_NEAR(q0->mean_abs[i], sum[i] / n, 1e-5 * (sum[i] / n) + 1e-7) << i;
    EXPECT_NEAR(q0->max_abs[i], mx[i], 1e-5 * mx[i] + 1e-7) << i;
  }

  // Layer 0's down_proj input with the whole batch in one call (the collector works in chunks).
  const LayerWeights& lw = m.weights().layers[0];
  const int64_t qd = c.num_attention_heads * c.head_dim, inter = c.intermediate_size;
  std::vector<float> x(n * d), normed(n * d), out(n * d), ctx(n * qd), act(n * inter);
  for (int64_t t = 0; t < n; ++t) {
    std::copy(embed + static_cast<int64_t>(batch.tokens[t]) * d,
              embed + static_cast<int64_t>(batch.tokens[t] + 1) * d, x.data() + t * d);
  }
  m.Norm(x.data(), lw.attn_norm.data<float>(), n, normed.data());
  m.AttentionBatch(0, lw.wqkv.data<float>(), lw.wo.data<float>(), normed.data(), batch.n_blocks,
                   batch.seq_len, ctx.data(), out.data());
  for (int64_t i = 0; i < n * d; ++i) x[i] += out[i];
  m.Norm(x.data(), lw.ffn_norm.data<float>(), n, normed.data());
  m.MlpBatch(0, lw.w_gate_up.data<float>(), lw.w_down.data<float>(), normed.data(), n, act.data(),
             out.data());
  const ChannelStats* down0 = stats.Find("model.layers.0.mlp.down_proj");
  ASSERT_NE(down0, nullptr);
  for (int64_t j = 0; j < inter; ++j) {
    double s = 0, mxj = 0;
    for (int64_t t = 0; t < n; ++t) {
      s += std::fabs(act[t * inter + j]);
      mxj = std::max(mxj, double{std::fabs(act[t * inter + j])});
    }
    EXPECT_NEAR(down0->mean_abs[j], s / n, 1e-4 * (s / n) + 1e-7) << j;
    EXPECT_NEAR(down0->max_abs[j], mxj, 1e-4 * mxj + 1e-7) << j;
  }
}

TEST(ActivationStats, SalienceSummary) {
  ChannelStats s;
  s.module = "m";
  s.mean_abs.assign(100, 1.0f);
  s.mean_abs[7] = 10.0f;
  s.mean_abs[42] = 20.0f;
  s.max_abs.assign(100, 3.0f);
  s.max_abs[42] = 99.0f;
  const SalienceSummary r = SummarizeSalience(s);
  EXPECT_EQ(r.channels, 100);
  EXPECT_DOUBLE_EQ(r.median_mean_abs, 1.0);
  EXPECT_DOUBLE_EQ(r.salient_share, 0.02);         // 10 and 20 exceed 5 x 1
  EXPECT_DOUBLE_EQ(r.top1pct_mass, 20.0 / 128.0);  // the top channel of 100
  EXPECT_EQ(r.top_channel, 42);
  EXPECT_DOUBLE_EQ(r.top_mean_abs, 20.0);
  EXPECT_DOUBLE_EQ(r.max_abs, 99.0);
  EXPECT_DOUBLE_EQ(SummarizeSalience(s, 15.0).salient_share, 0.01);
}

ActivationStats Synthetic() {
  ActivationStats st;
  st.n_tokens = 512;
  ModelConfig llama;
  llama.model_type = "llama";
  for (int64_t l = 0; l < 2; ++l) {
    for (const std::string& name : LinearNames(llama, l)) {
      ChannelStats c;
      c.module = name;
      for (int i = 0; i < 8; ++i) {
        c.mean_abs.push_back(0.5f * i + l);
        c.max_abs.push_back(3.0f * i + l + 1);
      }
      st.linears.push_back(std::move(c));
    }
  }
  return st;
}

TEST(ActivationStats, SaveLoadRoundTrip) {
  const std::string dir = test::MakeTempDir("awq-stats");
  const ActivationStats st = Synthetic();
  const std::string path = SaveActivationStats(st, dir);
  EXPECT_EQ(path, dir + "/activation_stats.safetensors");
  for (const std::string& p : {path, dir}) {
    const ActivationStats back = LoadActivationStats(p);
    EXPECT_EQ(back.n_tokens, 512);
    ASSERT_EQ(back.linears.size(), st.linears.size());
    for (size_t i = 0; i < st.linears.size(); ++i) {
      EXPECT_EQ(back.linears[i].module, st.linears[i].module);  // LinearNames order, not file order
      EXPECT_EQ(back.linears[i].mean_abs, st.linears[i].mean_abs);
      EXPECT_EQ(back.linears[i].max_abs, st.linears[i].max_abs);
    }
  }
}

Tensor Vec(std::vector<float> v) {
  Tensor t(DType::kF32, {static_cast<int64_t>(v.size())});
  std::copy(v.begin(), v.end(), t.data<float>());
  return t;
}

TEST(ActivationStats, MalformedFilesNameFileAndTensor) {
  const std::string dir = test::MakeTempDir("awq-stats-bad");
  const std::string f = dir + "/stats.safetensors";
  auto write = [&](const std::function<void(SafetensorsWriter&)>& fill, bool n_tokens = true) {
    SafetensorsWriter w;
    if (n_tokens) w.SetMetadata("n_tokens", "10");
    fill(w);
    w.WriteFile(f);
  };
  const std::string m = "model.layers.0.mlp.down_proj";
  write([&](SafetensorsWriter& w) { w.Add(m + ".input_mean_abs", Vec({1, 2})); }, false);
  test::ExpectError([&] { LoadActivationStats(f); }, {f, "n_tokens"});
  {
    SafetensorsWriter w;
    w.SetMetadata("n_tokens", "ten");
    w.WriteFile(f);
  }
  test::ExpectError([&] { LoadActivationStats(f); }, {f, "n_tokens", "ten"});
  write([&](SafetensorsWriter& w) { w.Add(m + ".input_mean_abs", Vec({1, 2})); });
  test::ExpectError([&] { LoadActivationStats(f); }, {f, m + ".input_max_abs", "missing"});
  write([&](SafetensorsWriter& w) {
    w.Add(m + ".input_mean_abs", Vec({1, 2}));
    w.Add(m + ".input_max_abs", Vec({1, 2, 3}));
  });
  test::ExpectError([&] { LoadActivationStats(f); }, {f, m + ".input_max_abs", "3", "2"});
  write([&](SafetensorsWriter& w) {
    w.Add(m + ".input_mean_abs", Tensor(DType::kI32, {2}));
    w.Add(m + ".input_max_abs", Vec({1, 2}));
  });
  test::ExpectError([&] { LoadActivationStats(f); }, {f, m + ".input_mean_abs", "I32"});
  write([&](SafetensorsWriter& w) {
    w.Add(m + ".input_mean_abs", Tensor(DType::kF32, {2, 2}));
    w.Add(m + ".input_max_abs", Vec({1, 2}));
  });
  test::ExpectError([&] { LoadActivationStats(f); }, {f, m + ".input_mean_abs", "[2, 2]"});
  write([&](SafetensorsWriter& w) { w.Add(m + ".weight", Vec({1})); });
  test::ExpectError([&] { LoadActivationStats(f); }, {f, m + ".weight"});
  write([&](SafetensorsWriter& w) {
    w.Add(m + ".input_mean_abs", Vec({1, -2}));
    w.Add(m + ".input_max_abs", Vec({1, 2}));
  });
  test::ExpectError([&] { LoadActivationStats(f); }, {f, m + ".input_mean_abs", "channel 1"});
  test::ExpectError([&] { LoadActivationStats(dir + "/none.safetensors"); }, {"none.safetensors"});
}

// The rows the walk of block `layer` sees at `point` ([n_blocks * seq_len, width]), the blocks
// before it run with the model's weights: what AWQ's pipeline captures from the original model.
std::vector<float> CaptureBlockPoint(const Model& m, const CalibrationBatch& b, int64_t layer,
                                     BlockPoint point, int64_t* width) {
  const int64_t n = b.n_blocks * b.seq_len, d = m.config().hidden_size;
  std::vector<float> x(static_cast<size_t>(n * d)), rows;
  m.EmbedTokens(b.tokens.data(), n, x.data());
  for (int64_t l = 0; l < layer; ++l)
    m.BlockForwardBatch(l, x.data(), b.n_blocks, b.seq_len, nullptr);
  const BlockObserver observe = [&](BlockPoint p, int64_t row0, const float* r, int64_t rn,
                                    int64_t w) {
    if (p != point) return;
    *width = w;
    rows.resize(static_cast<size_t>(n * w));
    std::copy(r, r + rn * w, rows.begin() + row0 * w);
  };
  m.BlockForwardBatch(layer, x.data(), b.n_blocks, b.seq_len, &observe);
  return rows;
}

// `awq quantize` scales and clips a down_proj on its own output; the library call on the same
// captured inputs and config must give the same scale search and the same codes.
TEST(LibraryQuantizer, SameCodesAsAwqQuantizeOnEveryDownProj) {
  // The first 40 kB of emma: plenty for 16 blocks of 32 tokens, quick to tokenize.
  const std::string calib = test::MakeTempDir("awq-lib-calib") + "/calib.txt";
  {
    std::ifstream in(test::TextPath("emma"));
    std::string text(40000, '\0');
    in.read(text.data(), static_cast<std::streamsize>(text.size()));
    text.resize(static_cast<size_t>(in.gcount()));
    std::ofstream(calib) << text;
  }
  for (const char* family : {"qwen3", "mistral", "phi3", "llama3_rope", "qwen2_yarn", "gemma3"}) {
    SCOPED_TRACE(family);
    const std::string src = test::DataPath(std::string("tiny/") + family);
    const Tokenizer tok =
        Tokenizer::FromHfJson(src + "/tokenizer.json", src + "/tokenizer_config.json");
    QuantizeOptions o;
    o.method = QuantMethod::kAwq;
    o.config.q_group_size = 16;  // divides every width of the tiny models
    o.config.max_calib_seq_len = 32;
    o.config.max_calib_samples = 16;
    o.calib_data = calib;
    Model quantized = Model::Load(src, LoadOptions{.int4 = false});
    const QuantizeResult res = QuantizeModel(quantized, tok, o);

    const Model m = Model::Load(src, LoadOptions{.int4 = false});
    CalibrationOptions co;
    co.max_samples = o.config.max_calib_samples;
    co.seq_len = o.config.max_calib_seq_len;
    const CalibrationBatch batch =
        BuildCalibrationBatch(LoadCalibrationTexts(o.calib_data), tok, co);
    const Quantizer qz(o.config);
    const ModelConfig& c = m.config();
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
      int64_t in = 0;
      const std::vector<float> x = CaptureBlockPoint(m, batch, l, BlockPoint::kMlpAct, &in);
      const int64_t n = batch.n_blocks * batch.seq_len;
      ASSERT_EQ(in, c.intermediate_size);
      const ScaledQuantization sq =
          qz.Quantize(m.weights().layers[l].w_down.data<float>(), c.hidden_size, in, x.data(), n);
      const BlockReport& rep = res.blocks[static_cast<size_t>(l)];
      const auto g = std::find_if(rep.groups.begin(), rep.groups.end(),
                                  [](const BlockReport::Group& gr) { return gr.name == "down"; });
      ASSERT_NE(g, rep.groups.end());
      EXPECT_EQ(sq.best_index, g->best_index) << "layer " << l;
      EXPECT_EQ(sq.search_loss, g->best_loss) << "layer " << l;
      EXPECT_EQ(sq.rtn_loss, g->identity_loss) << "layer " << l;
      const auto it = res.linears.find("model.layers." + std::to_string(l) + ".mlp.down_proj");
      ASSERT_NE(it, res.linears.end());
      EXPECT_EQ(sq.linear.q, it->second.q) << "layer " << l;
      EXPECT_EQ(sq.linear.scales, it->second.scales) << "layer " << l;
      EXPECT_EQ(sq.linear.zeros, it->second.zeros) << "layer " << l;
    }
  }
}

// SmolLM2-135M's down_proj on its captured inputs (emma, 8 blocks of 128 tokens), w4 g128:
// loss / rtn_loss measured 0.674 (layer 0), 0.670 (layer 15), 0.245 (layer 29). The bound sits
// about half way between the worst measured ratio and RTN's 1.
constexpr double kRealAwqOverRtnBound = 0.84;

TEST(LibraryQuantizer, BeatsRtnOnRealActivations) {
  const Model m = Model::Load(test::ModelPath());
  const Tokenizer tok = Tokenizer::FromGguf(GgufFile::Open(test::ModelPath()));
  CalibrationOptions co;
  co.max_samples = 8;
  co.seq_len = 128;
  const CalibrationBatch batch =
      BuildCalibrationBatch(LoadCalibrationTexts(test::TextPath("emma")), tok, co);
  const Quantizer qz = Quantizer::FromPreset("default");  // w4 g128
  const ModelConfig& c = m.config();
  for (int64_t l : {int64_t{0}, c.num_hidden_layers / 2, c.num_hidden_layers - 1}) {
    int64_t in = 0;
    const std::vector<float> x = CaptureBlockPoint(m, batch, l, BlockPoint::kMlpAct, &in);
    const float* w = m.weights().layers[l].w_down.data<float>();
    const ScaledQuantization sq =
        qz.Quantize(w, c.hidden_size, in, x.data(), batch.n_blocks * batch.seq_len);
    std::printf("layer %lld down_proj: best %d (ratio %.2f), loss %.4g, rtn %.4g, ratio %.3f\n",
                static_cast<long long>(l), sq.best_index, sq.ratio, sq.loss, sq.rtn_loss,
                sq.loss / sq.rtn_loss);
    EXPECT_LE(sq.search_loss, sq.rtn_loss);
    EXPECT_LT(sq.loss, kRealAwqOverRtnBound * sq.rtn_loss) << "layer " << l;
  }
}

TEST(LibraryQuantizer, BatchMatchesOneByOne) {
  const Quantizer qz = Quantizer::FromPreset("aggressive");  // w3 g128
  std::mt19937 rng(13);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const std::vector<std::pair<int64_t, int64_t>> shapes = {
      {8, 128}, {576, 256}, {16, 384}, {3, 128}};
  std::vector<std::vector<float>> ws;
  std::vector<WeightView> views;
  for (const auto& [o, i] : shapes) {
    ws.emplace_back(o * i);
    for (float& v : ws.back()) v = nd(rng);
  }
  for (size_t k = 0; k < shapes.size(); ++k)
    views.push_back({ws[k].data(), shapes[k].first, shapes[k].second});
  const std::vector<QuantizedLinear> batch = qz.QuantizeBatch(views);
  ASSERT_EQ(batch.size(), shapes.size());
  for (size_t k = 0; k < shapes.size(); ++k) {
    const QuantizedLinear one = qz.Quantize(views[k].w, views[k].out, views[k].in);
    EXPECT_EQ(batch[k].q, one.q) << k;
    EXPECT_EQ(batch[k].scales, one.scales) << k;
    EXPECT_EQ(batch[k].params.bits, 3);
  }
  views.push_back({ws[0].data(), 2, 100});  // 128-wide groups do not divide 100
  test::ExpectError([&] { qz.QuantizeBatch(views); }, {"tensor 4", "100"});
  test::ExpectError([] { Quantizer::FromPreset("tiny"); }, {"tiny"});
}

}  // namespace
}  // namespace awq
