// Using awq.cpp as a library (docs/LIBRARY.md): quantize a tensor with and without activation
// salience, dequantize, measure, validate, and quantize a batch. Built and run by CTest
// (LibraryExample); it checks its own results and returns 1 when one is wrong.
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "awq/error.h"
#include "awq/metrics.h"
#include "awq/quantizer_api.h"

namespace {

int failures = 0;

void Expect(bool ok, const char* what) {
  std::printf("%s  %s\n", ok ? "ok  " : "FAIL", what);
  if (!ok) ++failures;
}

}  // namespace

int main() {
  // A weight matrix [out, in] like a small linear layer, and per-input-channel salience (the
  // mean |x| of the layer's input, as awq::CollectActivationStats measures it) with a few
  // outlier channels, as real LLM activations have.
  const int64_t out = 256, in = 512;
  std::mt19937 rng(2024);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  std::vector<float> w(static_cast<size_t>(out * in));
  for (float& v : w) v = normal(rng);
  std::vector<float> salience(static_cast<size_t>(in), 0.5f);
  for (int64_t j : {5, 77, 300, 301, 450}) salience[static_cast<size_t>(j)] = 30.0f;

  // 1. A quantizer from a preset: "default" is 4-bit, groups of 128, zero point (AutoAWQ's
  //    setting); "conservative" w4 g64; "aggressive" w3 g128.
  const awq::Quantizer quantizer = awq::Quantizer::FromPreset("default");
  std::printf("preset default: %d bits, group size %lld\n", quantizer.params().bits,
              static_cast<long long>(quantizer.params().group_size));

  // 2. Plain round-to-nearest: codes, scales and zeros per group of 128 inputs.
  const awq::QuantizedLinear rtn = quantizer.Quantize(w.data(), out, in);
  const std::vector<float> w_rtn = quantizer.Dequantize(rtn);
  const awq::TensorMetrics m_rtn = quantizer.Metrics(w.data(), rtn);
  std::printf("rtn:  mse %.3g, relative error %.4f, correlation %.6f, max |error| %.4g\n",
              m_rtn.mse, m_rtn.relative_error, m_rtn.correlation, m_rtn.max_abs_error);
  Expect(w_rtn.size() == w.size(), "dequantized RTN has the original shape");
  Expect(m_rtn.relative_error < 0.15 && m_rtn.correlation > 0.99, "4-bit RTN is close");

  // 3. Salience-aware (AWQ-style): the quantizer searches s = salience^alpha and quantizes
  //    W diag(s). Use the codes with the layer's input divided by s (or fold 1/s into the op
  //    that produces that input); Dequantize() returns the weights in the original basis.
  const awq::ScaledQuantization awq_q = quantizer.Quantize(w.data(), out, in, salience);
  const awq::TensorMetrics m_awq = quantizer.Metrics(w.data(), awq_q);
  std::printf("awq:  alpha %.2f, salience-weighted error %.4g (RTN %.4g), relative error %.4f\n",
              awq_q.alpha, awq_q.weighted_error, awq_q.rtn_weighted_error, m_awq.relative_error);
  Expect(awq_q.weighted_error <= awq_q.rtn_weighted_error, "salience search never loses to RTN");
  Expect(awq_q.weighted_error < 0.9 * awq_q.rtn_weighted_error,
         "salience search protects the outlier channels");
  Expect(awq_q.input_scales.size() == static_cast<size_t>(in), "one input scale per channel");

  // What a layer computes with the scaled codes: y = (x / s) Q(W diag(s))^T ~= x W^T.
  std::vector<float> x(static_cast<size_t>(in)), x_scaled(x.size());
  for (int64_t j = 0; j < in; ++j) {
    x[static_cast<size_t>(j)] = salience[static_cast<size_t>(j)] * (j % 2 ? 1.0f : -1.0f);
    x_scaled[static_cast<size_t>(j)] =
        x[static_cast<size_t>(j)] / awq_q.input_scales[static_cast<size_t>(j)];
  }
  const std::vector<float> w_scaled = quantizer.Dequantize(awq_q.linear);  // Q(W diag(s))
  std::vector<float> y(static_cast<size_t>(out)), y_rtn(y.size()), y_awq(y.size());
  for (int64_t o = 0; o < out; ++o) {
    double a = 0, b = 0, c = 0;
    for (int64_t j = 0; j < in; ++j) {
      const size_t k = static_cast<size_t>(o * in + j);
      a += double{x[static_cast<size_t>(j)]} * w[k];
      b += double{x[static_cast<size_t>(j)]} * w_rtn[k];
      c += double{x_scaled[static_cast<size_t>(j)]} * w_scaled[k];
    }
    y[static_cast<size_t>(o)] = static_cast<float>(a);
    y_rtn[static_cast<size_t>(o)] = static_cast<float>(b);
    y_awq[static_cast<size_t>(o)] = static_cast<float>(c);
  }
  const awq::TensorMetrics out_rtn = awq::CompareTensors(y.data(), y_rtn.data(), out);
  const awq::TensorMetrics out_awq = awq::CompareTensors(y.data(), y_awq.data(), out);
  std::printf("output error on a salient input: rtn %.4f, awq %.4f (relative)\n",
              out_rtn.relative_error, out_awq.relative_error);
  Expect(out_awq.relative_error < out_rtn.relative_error, "scaled codes give a better output");

  // 4. Sizes: codes + fp16 scales + packed zeros as a checkpoint stores them.
  const awq::SizeMetrics size = awq::QuantizedSize(rtn);
  std::printf("size: fp16 %lld bytes, stored %lld bytes, ratio %.2fx, %.3f bits per weight\n",
              static_cast<long long>(size.fp16_bytes), static_cast<long long>(size.stored_bytes),
              size.ratio(), size.bits_per_weight());
  Expect(size.ratio() > 3.5 && size.ratio() < 4.0, "4-bit g128 is ~3.9x smaller than fp16");

  // 5. Validation against thresholds: pass/fail with one reason per failed threshold.
  awq::TensorThresholds loose;
  loose.max_relative_error = 0.2;
  loose.min_correlation = 0.98;
  const awq::ValidationReport ok = awq::Quantizer::Validate(m_rtn, loose);
  Expect(ok.passed, "loose thresholds pass");
  awq::TensorThresholds strict;
  strict.max_relative_error = 1e-6;
  const awq::ValidationReport bad = awq::Quantizer::Validate(m_rtn, strict);
  Expect(!bad.passed && bad.reasons.size() == 1, "an impossible threshold fails");
  if (!bad.reasons.empty()) std::printf("reason: %s\n", bad.reasons[0].c_str());

  // 6. A batch in parallel (e.g. every linear of a layer); results in input order.
  std::vector<std::vector<float>> layers;
  std::vector<awq::WeightView> views;
  for (int64_t rows : {64, 128, 256}) {
    layers.emplace_back(static_cast<size_t>(rows * in));
    for (float& v : layers.back()) v = normal(rng);
  }
  for (const auto& l : layers) {
    views.push_back({l.data(), static_cast<int64_t>(l.size()) / in, in});
  }
  const std::vector<awq::QuantizedLinear> batch = quantizer.QuantizeBatch(views);
  bool same = batch.size() == views.size();
  for (size_t i = 0; same && i < batch.size(); ++i) {
    same = batch[i].q == quantizer.Quantize(views[i].w, views[i].out, views[i].in).q;
  }
  Expect(same, "the batch equals quantizing one by one");

  // 7. User errors are awq::Error naming the problem.
  try {
    quantizer.Quantize(w.data(), out, 100);  // a group of 128 does not divide 100
    Expect(false, "a bad group size throws");
  } catch (const awq::Error& e) {
    std::printf("error: %s\n", e.what());
    Expect(true, "a bad group size throws");
  }

  std::printf("%s\n", failures == 0 ? "all checks passed" : "SOME CHECKS FAILED");
  return failures == 0 ? 0 : 1;
}
