// Activation statistics: the collected statistics against a straightforward recomputation on the
// real model, the salience summary, the file round trip and its malformed-file errors; and the
// library Quantizer's salience search.
#include "awq/activation_stats.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

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
  m.AttentionBatch(0, lw.wqkv.data<float>(), lw.wo.data<float>(), normed.data(),
                   batch.n_blocks, batch.seq_len, ctx.data(), out.data());
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

// The salience-weighted error the Quantizer minimizes, recomputed here.
double WeightedError(const std::vector<float>& w, const std::vector<float>& w_hat, int64_t out,
                     int64_t in, const std::vector<float>& sal) {
  double e = 0;
  for (int64_t o = 0; o < out; ++o) {
    for (int64_t j = 0; j < in; ++j) {
      const double d = double{w[o * in + j]} - w_hat[o * in + j];
      e += double{sal[j]} * sal[j] * d * d;
    }
  }
  return e;
}

TEST(LibraryQuantizer, SalienceSearchNeverWorseThanRtn) {
  const Quantizer qz = Quantizer::FromPreset("conservative");  // w4 g64
  std::mt19937 rng(11);
  std::normal_distribution<float> nd(0.0f, 0.05f);
  std::lognormal_distribution<float> ld(0.0f, 1.0f);
  for (int trial = 0; trial < 4; ++trial) {
    const int64_t out = 32, in = 128;
    std::vector<float> w(out * in), sal(in);
    for (float& v : w) v = nd(rng);
    for (float& v : sal) v = ld(rng);
    const ScaledQuantization sq = qz.Quantize(w.data(), out, in, sal);
    const std::vector<float> rtn = qz.Dequantize(qz.Quantize(w.data(), out, in));
    const double rtn_err = WeightedError(w, rtn, out, in, sal);
    EXPECT_NEAR(sq.rtn_weighted_error, rtn_err, 1e-9 * rtn_err);
    EXPECT_LE(sq.weighted_error, sq.rtn_weighted_error);
    // The stored codes reproduce the error the search reported.
    const std::vector<float> back = qz.Dequantize(sq);
    EXPECT_NEAR(WeightedError(w, back, out, in, sal), sq.weighted_error, 1e-6 * sq.weighted_error);
    ASSERT_EQ(sq.input_scales.size(), static_cast<size_t>(in));
  }
}

TEST(LibraryQuantizer, SalienceSearchHelpsWithFewSalientChannels) {
  const Quantizer qz = Quantizer::FromPreset("default");  // w4 g128
  const int64_t out = 64, in = 256;
  std::mt19937 rng(12);
  std::normal_distribution<float> nd(0.0f, 0.05f);
  std::vector<float> w(out * in), sal(in, 1.0f);
  for (float& v : w) v = nd(rng);
  for (int64_t j : {3, 70, 150, 201}) sal[j] = 50.0f;  // four outlier channels
  const ScaledQuantization sq = qz.Quantize(w.data(), out, in, sal);
  EXPECT_GT(sq.alpha, 0.0);
  EXPECT_LT(sq.weighted_error, 0.8 * sq.rtn_weighted_error);
  // Folding: x W^T == (x / s)(W diag(s))^T, so the scaled codes serve the scaled input.
  EXPECT_GT(sq.input_scales[3], sq.input_scales[4]);
  // Bad salience is a user error.
  test::ExpectError([&] { qz.Quantize(w.data(), out, in, std::vector<float>(3, 1.0f)); },
                    {"salience", "3", "256"});
  std::vector<float> bad = sal;
  bad[5] = -1;
  test::ExpectError([&] { qz.Quantize(w.data(), out, in, bad); }, {"salience[5]"});
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
