// Metrics: exact values on known vectors, streaming/threaded agreement, sizes, threshold checks,
// folding-invariant linear comparison, and a model compared with itself (KL 0, top-1 1).
#include "awq/metrics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "awq/calibration.h"
#include "awq/gguf.h"
#include "awq/model.h"
#include "awq/quantizer_api.h"
#include "awq/tokenizer.h"
#include "test_util.h"

namespace awq {
namespace {

std::vector<float> Random(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

TEST(Metrics, KnownVectors) {
  const float a[] = {1, 2, 3, 4}, b[] = {1, 2, 3, 5};
  const TensorMetrics m = CompareTensors(a, b, 4);
  EXPECT_EQ(m.count, 4);
  EXPECT_DOUBLE_EQ(m.mse, 0.25);
  EXPECT_DOUBLE_EQ(m.relative_error, 1.0 / std::sqrt(30.0));
  EXPECT_DOUBLE_EQ(m.max_abs_error, 1.0);
  // Deviations (-1.5, -0.5, 0.5, 1.5) and (-1.75, -0.75, 0.25, 2.25): 6.5 / sqrt(5 * 8.75).
  EXPECT_NEAR(m.correlation, 6.5 / std::sqrt(5.0 * 8.75), 1e-15);
  const float c[] = {4, 3, 2, 1};
  EXPECT_NEAR(CompareTensors(a, c, 4).correlation, -1.0, 1e-15);
}

TEST(Metrics, IdenticalAndDegenerate) {
  const std::vector<float> a = Random(1000, 1);
  const TensorMetrics m = CompareTensors(a.data(), a.data(), 1000);
  EXPECT_EQ(m.mse, 0.0);
  EXPECT_EQ(m.relative_error, 0.0);
  EXPECT_EQ(m.max_abs_error, 0.0);
  EXPECT_DOUBLE_EQ(m.correlation, 1.0);
  const float k[] = {2, 2, 2}, z[] = {0, 0, 0}, v[] = {1, 2, 3};
  EXPECT_EQ(CompareTensors(k, k, 3).correlation, 1.0);  // constant but identical
  EXPECT_EQ(CompareTensors(k, v, 3).correlation, 0.0);  // undefined: reported as 0
  EXPECT_TRUE(std::isinf(CompareTensors(z, v, 3).relative_error));
  const float nan[] = {1, NAN, 3};
  EXPECT_TRUE(std::isnan(CompareTensors(v, nan, 3).mse));
  EXPECT_TRUE(std::isnan(CompareTensors(v, nan, 3).correlation));
}

TEST(Metrics, ThreadedChunksAgreeWithOneAccumulator) {
  // 1e6 elements with a large common offset: the pairwise merge keeps the correlation accurate.
  const size_t n = 1000003;
  std::vector<float> a = Random(n, 2), b = Random(n, 3, 0.1f);
  for (size_t i = 0; i < n; ++i) {
    a[i] += 1000.0f;
    b[i] += a[i];
  }
  const TensorMetrics threaded = CompareTensors(a.data(), b.data(), static_cast<int64_t>(n));
  TensorMetricsAccumulator acc;
  for (size_t i = 0; i < n; i += 999) {
    acc.Add(a.data() + i, b.data() + i, static_cast<int64_t>(std::min<size_t>(999, n - i)));
  }
  const TensorMetrics serial = acc.Result();
  // Plain double-precision sums as the oracle.
  double sa = 0, sb = 0;
  for (size_t i = 0; i < n; ++i) sa += a[i], sb += b[i];
  const double ma = sa / n, mb = sb / n;
  double caa = 0, cbb = 0, cab = 0, sse = 0;
  for (size_t i = 0; i < n; ++i) {
    caa += (a[i] - ma) * (a[i] - ma);
    cbb += (b[i] - mb) * (b[i] - mb);
    cab += (a[i] - ma) * (b[i] - mb);
    sse += (double{a[i]} - b[i]) * (double{a[i]} - b[i]);
  }
  const double r = cab / std::sqrt(caa * cbb);
  for (const TensorMetrics& m : {threaded, serial}) {
    EXPECT_EQ(m.count, static_cast<int64_t>(n));
    EXPECT_NEAR(m.mse, sse / n, 1e-12 * sse / n);
    EXPECT_NEAR(m.correlation, r, 1e-12);
  }
  EXPECT_EQ(threaded.max_abs_error, serial.max_abs_error);
}

TEST(Metrics, LinearOutputsMatchDirectProducts) {
  const int64_t n = 300, out = 24, in = 40;  // 300 tokens: more than one block of 256
  const std::vector<float> x = Random(n * in, 4), w = Random(out * in, 5), wq = Random(out * in, 6);
  std::vector<float> y(n * out), yq(n * out);
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t o = 0; o < out; ++o) {
      double s = 0, sq = 0;
      for (int64_t i = 0; i < in; ++i) {
        s += double{x[t * in + i]} * w[o * in + i];
        sq += double{x[t * in + i]} * wq[o * in + i];
      }
      y[t * out + o] = static_cast<float>(s);
      yq[t * out + o] = static_cast<float>(sq);
    }
  }
  const TensorMetrics expect = CompareTensors(y.data(), yq.data(), n * out);
  const TensorMetrics got = CompareLinearOutputs(x.data(), n, w.data(), wq.data(), out, in);
  EXPECT_NEAR(got.relative_error, expect.relative_error, 1e-5);
  EXPECT_NEAR(got.correlation, expect.correlation, 1e-5);
  EXPECT_NEAR(got.mse, expect.mse, 1e-5 * expect.mse);
}

TEST(Metrics, QuantizedSizeCountsStoredBytes) {
  const std::vector<float> w = Random(64 * 128, 7);
  const QuantizedLinear q4 = QuantizeLinear(w.data(), 64, 128, {4, 64, true});
  const SizeMetrics s = QuantizedSize(q4);
  // qweight [128, 64*4/32 = 8] I32, qzeros [2, 8] I32, scales [2, 64] F16.
  EXPECT_EQ(s.stored_bytes, 128 * 8 * 4 + 2 * 8 * 4 + 2 * 64 * 2);
  EXPECT_EQ(s.fp16_bytes, 64 * 128 * 2);
  EXPECT_EQ(s.fp32_bytes, 64 * 128 * 4);
  EXPECT_DOUBLE_EQ(s.ratio(), 16384.0 / 4416.0);
  EXPECT_EQ(s.saved_bytes(), 16384 - 4416);
  const SizeMetrics f32 = TensorSize(Tensor(DType::kF32, {64, 128}));
  EXPECT_EQ(f32.stored_bytes, 64 * 128 * 4);
  EXPECT_DOUBLE_EQ(f32.ratio(), 0.5);  // fp32 is twice the fp16 baseline
  // 3 bits: rows of ceil(64 * 3 / 32) = 6 words.
  const QuantizedLinear q3 = QuantizeLinear(w.data(), 64, 128, {3, 64, true});
  EXPECT_EQ(QuantizedSize(q3).stored_bytes, 128 * 6 * 4 + 2 * 6 * 4 + 2 * 64 * 2);
}

TEST(Metrics, ThresholdsPassFailAndName) {
  TensorMetrics m;
  m.mse = 0.1;
  m.relative_error = 0.2;
  m.correlation = 0.95;
  TensorThresholds t;
  EXPECT_TRUE(ValidateMetrics(m, t).passed);  // nothing to check
  t.max_mse = 0.1;                            // equal passes
  t.min_correlation = 0.99;
  const ValidationReport r = ValidateMetrics(m, t);
  EXPECT_FALSE(r.passed);
  ASSERT_EQ(r.checks.size(), 2u);
  EXPECT_TRUE(r.checks[0].passed);
  ASSERT_EQ(r.reasons.size(), 1u);
  EXPECT_EQ(r.reasons[0], "correlation 0.95 < min 0.99");
  m.mse = NAN;
  TensorThresholds huge;
  huge.max_mse = 1e9;
  EXPECT_FALSE(ValidateMetrics(m, huge).passed);
}

TEST(Metrics, GgufSizesCountEveryTensor) {
  const CheckpointSizes s = MeasureCheckpointSizes(test::ModelPath());
  EXPECT_EQ(s.format, "gguf");
  EXPECT_EQ(s.quantized.parameters, 0);
  EXPECT_EQ(s.total.parameters, 134515008);
  EXPECT_LT(s.total.stored_bytes, s.total.fp16_bytes);  // Q4_1 blocks
  test::ExpectError([] { MeasureCheckpointSizes("/nonexistent/model"); }, {"/nonexistent/model"});
}

// Two separately loaded copies of the model (tensors share storage when copied).
struct Models {
  Model a = Model::Load(test::ModelPath());
  Model b = Model::Load(test::ModelPath());
};

CalibrationBatch SmallBatch(const Tokenizer& tok, int64_t seq_len) {
  CalibrationOptions co;
  co.max_samples = 8;
  co.seq_len = seq_len;
  return BuildCalibrationBatch(LoadCalibrationTexts(test::TextPath("emma")), tok, co);
}

TEST(Metrics, CompareLinearsIsFoldingInvariant) {
  Models m;
  const Tokenizer tok = Tokenizer::FromGguf(GgufFile::Open(test::ModelPath()));
  const CalibrationBatch batch = SmallBatch(tok, 64);
  // Fold AWQ-style scales into layer 0 of the copy: input_layernorm / s, q/k/v columns * s;
  // post_attention_layernorm / t, gate/up columns * t; up rows / u, down columns * u.
  const ModelConfig& c = m.b.config();
  const int64_t d = c.hidden_size, inter = c.intermediate_size;
  LayerWeights& lw = m.b.weights().layers[0];
  const int64_t qkv_rows = lw.wqkv.dim(0);
  std::mt19937 rng(9);
  std::uniform_real_distribution<float> dist(0.5f, 2.0f);
  std::vector<float> s(d), t(d), u(inter);
  for (float& v : s) v = dist(rng);
  for (float& v : t) v = dist(rng);
  for (float& v : u) v = dist(rng);
  for (int64_t j = 0; j < d; ++j) {
    lw.attn_norm.data<float>()[j] /= s[j];
    lw.ffn_norm.data<float>()[j] /= t[j];
  }
  for (int64_t r = 0; r < qkv_rows; ++r) {
    for (int64_t j = 0; j < d; ++j) lw.wqkv.data<float>()[r * d + j] *= s[j];
  }
  for (int64_t r = 0; r < 2 * inter; ++r) {
    for (int64_t j = 0; j < d; ++j) lw.w_gate_up.data<float>()[r * d + j] *= t[j];
  }
  for (int64_t r = 0; r < inter; ++r) {
    for (int64_t j = 0; j < d; ++j) lw.w_gate_up.data<float>()[(inter + r) * d + j] /= u[r];
  }
  for (int64_t r = 0; r < d; ++r) {
    for (int64_t j = 0; j < inter; ++j) lw.w_down.data<float>()[r * inter + j] *= u[j];
  }
  const std::vector<LinearComparison> cmp = CompareLinears(m.a, m.b, batch);
  ASSERT_EQ(cmp.size(), static_cast<size_t>(7 * c.num_hidden_layers));
  for (const LinearComparison& l : cmp) {
    // Folding changed nothing the model computes: only float rounding of the scaled weights
    // (a few ulps, relative 1e-6) separates the unfolded weights and outputs.
    EXPECT_LT(l.weight.relative_error, 1e-5) << l.module;
    EXPECT_LT(l.output.relative_error, 1e-5) << l.module;
    EXPECT_GT(l.output.correlation, 1 - 1e-9) << l.module;
  }
  // The raw weights do differ: comparing them directly would report a large error.
  EXPECT_GT(CompareTensors(m.a.weights().layers[0].wqkv.data<float>(), lw.wqkv.data<float>(),
                           lw.wqkv.numel())
                .relative_error,
            0.2);
  EXPECT_EQ(cmp[0].unfold, "norm");
  EXPECT_EQ(cmp[6].unfold, "fit");
  EXPECT_NEAR(cmp[0].scale_min, *std::min_element(s.begin(), s.end()), 1e-5);
}

TEST(Metrics, ModelAgainstItselfHasZeroKlAndFullAgreement) {
  const Model m = Model::Load(test::ModelPath());
  const Tokenizer tok = Tokenizer::FromGguf(GgufFile::Open(test::ModelPath()));
  const std::vector<int32_t> ids = tok.Encode(
      "It is a truth universally acknowledged, that a single man in possession of a "
      "good fortune, must be in want of a wife. However little known the feelings or "
      "views of such a man may be on his first entering a neighbourhood, this truth is "
      "so well fixed in the minds of the surrounding families.",
      true, false);
  OutputComparisonOptions opt;
  opt.ctx = 24;
  const OutputComparison c = CompareModelOutputs(m, m, ids, opt);
  EXPECT_EQ(c.n_windows, static_cast<int64_t>(ids.size()) / 24);
  EXPECT_EQ(c.n_positions, c.n_windows * 23);
  EXPECT_EQ(c.mean_kl, 0.0);
  EXPECT_EQ(c.top1_agreement, 1.0);
  EXPECT_EQ(c.ppl_reference, c.ppl_quantized);
  EXPECT_EQ(c.logits.mse, 0.0);
  EXPECT_DOUBLE_EQ(c.logits.correlation, 1.0);
  EXPECT_GT(c.ppl_reference, 1.0);
  opt.ctx = 100000;
  test::ExpectError([&] { CompareModelOutputs(m, m, ids, opt); }, {"100000", "tokens"});
}

}  // namespace
}  // namespace awq
