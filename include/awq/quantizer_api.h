// The library-level quantizer: one object holding a QuantConfig that quantizes tensors (round to
// nearest, with AWQ's scale and clip search on calibration activations, or a batch in parallel),
// dequantizes them, measures the error and checks it against thresholds. docs/LIBRARY.md shows
// it in use.
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

// The result of an AWQ quantization of one linear, w [out, in], from its input activations x
// [n_tokens, in]. The codes are those of W diag(s) (clipped): to use them, divide the layer's
// input by s (x' = x / s, so that x' (W diag(s))^T = x W^T), or fold 1/s into the op that produces
// the input (an RMSNorm weight, the previous linear's output rows), exactly as AWQ checkpoints do.
// "Output MSE" below is the mean over [n_tokens, out] of (x W^T - x W_hat^T)^2, with W_hat the
// quantized weights seen from the unscaled input: Q(W diag(s)) diag(s)^-1, what
// Quantizer::Dequantize returns.
struct ScaledQuantization {
  QuantizedLinear linear;           // codes [out, in] of W diag(s), clipped when apply_clip
  std::vector<float> input_scales;  // s [in]; all ones when the identity won
  int best_index = -1;              // grid point i that won (ratio i / n_grid); -1: s = 1
  double ratio = 0;                 // best_index / n_grid; 0 when the identity won
  double search_loss = 0;       // the winner's output MSE as the scale search scored it (unclipped)
  double rtn_loss = 0;          // output MSE of s = 1, unclipped: plain round to nearest
  double loss = 0;              // output MSE of the returned codes and scales (after clipping);
                                // equals search_loss when apply_clip is off
  std::vector<double> losses;   // [n_grid + 1] the search's loss per grid point, then s = 1's
  std::vector<float> clip_max;  // [out, in / group size] the |w| bound of each group of
                                // W diag(s); empty when apply_clip is off
};

class Quantizer {
 public:
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

  // AWQ: x [n_tokens, in] are calibration activations of this linear's input (rows = tokens).
  // Runs the search `awq quantize` runs for a linear inspected at its own output
  // (SearchOwnOutputScales in awq_search.h) with this config's n_grid, duo_scaling and
  // q_group_size: candidates s from the activation and weight means, each scored by the output
  // MSE of Q(W diag(s)) diag(s)^-1 against x W^T, s = 1 included (so search_loss <= rtn_loss).
  // Then FoldScalesAndClip: W diag(s), and when apply_clip the clip search (n_grid, max_shrink,
  // n_sample_token) on the scaled weights and inputs x / s; then QuantizeLinear with params().
  // The clip search runs whatever the linear is (`awq quantize` skips it for query and key
  // projections: quantize those with a config whose apply_clip is false). Throws awq::Error for an
  // empty tensor or no tokens, a group size that does not divide `in`, or a non-finite weight or
  // activation (naming its position). Call from outside ThreadPool::Global()'s tasks.
  ScaledQuantization Quantize(const float* w, int64_t out, int64_t in, const float* x,
                              int64_t n_tokens) const;

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
