// The library-level quantizer: one object holding a QuantConfig that quantizes tensors (alone,
// with an activation-salience scale search, or a batch in parallel), dequantizes them, measures
// the error and checks it against thresholds. docs/LIBRARY.md shows it in use.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "awq/metrics.h"
#include "awq/quant_config.h"
#include "awq/quantizer.h"

namespace awq {

// A weight matrix to quantize: w [out, in] row-major fp32, not owned.
struct WeightView {
  const float* w = nullptr;
  int64_t out = 0;
  int64_t in = 0;
};

// The result of a salience-aware quantization. The codes are those of W diag(s): to use them,
// divide the layer's input by s (x' = x / s, so that x' (W diag(s))^T = x W^T), or fold 1/s into
// the op that produces the input (an RMSNorm weight, the previous linear's output rows), exactly
// as AWQ checkpoints do.
struct ScaledQuantization {
  QuantizedLinear linear;           // codes of W diag(s)
  std::vector<float> input_scales;  // s [in]
  double alpha = 0;                 // the winning exponent: s = salience^alpha, normalized
  double weighted_error = 0;        // sum_j salience_j^2 ||W[:,j] - W_hat[:,j]||^2 at alpha
  double rtn_weighted_error = 0;    // the same for plain RTN (alpha = 0, s = 1)
};

class Quantizer {
 public:
  // Points of the alpha grid: alpha = i / kAlphaGrid, i = 0 .. kAlphaGrid - 1 (AWQ's n_grid).
  static constexpr int kAlphaGrid = 20;

  // Validates the config (awq::Error naming the option otherwise).
  explicit Quantizer(QuantConfig config);
  // "default", "conservative" or "aggressive" (QuantPreset).
  static Quantizer FromPreset(const std::string& name);

  const QuantConfig& config() const { return config_; }
  // The bits / group size / zero point every tensor is quantized with.
  QuantParams params() const { return config_.DefaultParams(); }

  // Round-to-nearest, group-wise (QuantizeLinear). Throws awq::Error for a group size that does
  // not divide `in` or a non-finite weight.
  QuantizedLinear Quantize(const float* w, int64_t out, int64_t in) const;

  // AWQ-style: salience [in] is the mean |x| of each input channel (ActivationStats'
  // mean_abs). For alpha = i/20, i = 0..19, s = salience^alpha (salience floored at 1e-8 of its
  // maximum, then s /= sqrt(max(s) min(s)) as AWQ normalizes), scored by the salience-weighted
  // error
  //   E(s) = sum_j salience_j^2 * ||W[:,j] - Q(W diag(s))[:,j] / s_j||^2,
  // the diagonal part of the output error E||x (W - W_hat)^T||^2. The strictly smallest wins;
  // alpha = 0 is s = 1, plain RTN, so the result is never worse than RTN on E. Throws awq::Error
  // when salience has the wrong length or a negative or non-finite entry.
  ScaledQuantization Quantize(const float* w, int64_t out, int64_t in,
                              const std::vector<float>& salience) const;

  // Quantizes every tensor with Quantize(w, out, in). Tensors under 65536 weights run in
  // parallel, one per thread; larger ones one after another, each split over the pool. Results
  // in input order. Call from outside ThreadPool::Global()'s tasks.
  std::vector<QuantizedLinear> QuantizeBatch(const std::vector<WeightView>& tensors) const;

  // The dequantized weights [out, in].
  std::vector<float> Dequantize(const QuantizedLinear& q) const;
  // Back in W's basis: Q(W diag(s))[:, j] / s_j.
  std::vector<float> Dequantize(const ScaledQuantization& q) const;

  // Error metrics of the dequantized weights against the original w [q.out, q.in].
  TensorMetrics Metrics(const float* original, const QuantizedLinear& q) const;
  TensorMetrics Metrics(const float* original, const ScaledQuantization& q) const;

  // Checks metrics against thresholds; `passed` and one reason per failed threshold.
  static ValidationReport Validate(const TensorMetrics& m, const TensorThresholds& t);

 private:
  QuantConfig config_;
};

}  // namespace awq
