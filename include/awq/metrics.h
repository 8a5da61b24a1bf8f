// Error and size metrics of quantization: original vs dequantized tensors, a linear's outputs on
// calibration inputs, checkpoint sizes on disk, and a reference vs a quantized model's next-token
// distributions; plus threshold checks for gating (docs/METRICS.md).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "awq/quantizer.h"
#include "awq/tensor.h"

namespace awq {

class Model;
struct CalibrationBatch;

// How far b (dequantized, quantized model) is from a (original, reference). All sums in double.
struct TensorMetrics {
  int64_t count = 0;
  double mse = 0;             // mean((a - b)^2)
  double relative_error = 0;  // ||a - b||_F / ||a||_F (0 when both are 0, +inf when only a is)
  double correlation = 1;     // Pearson r of (a, b); 1 when a == b, 0 when either is constant
  double max_abs_error = 0;   // max |a - b|
};

// Running form of TensorMetrics: Add() chunks in any sizes, Merge() partial results (Chan et
// al.'s pairwise update of the co-moments, so the correlation does not suffer from subtracting
// n * mean^2 from a large sum of squares). The result depends only on the order of the calls.
class TensorMetricsAccumulator {
 public:
  void Add(const float* a, const float* b, int64_t n);
  void Merge(const TensorMetricsAccumulator& other);
  TensorMetrics Result() const;

 private:
  int64_t n_ = 0;
  double mean_a_ = 0, mean_b_ = 0;
  double m2_a_ = 0, m2_b_ = 0, c_ab_ = 0;  // sums of squared deviations and of co-deviations
  double sse_ = 0, sum_a2_ = 0;            // sum (a-b)^2, sum a^2
  double max_abs_ = 0;
};

// Metrics of a[0, n) vs b[0, n). Tensors of 2^16 elements or more are split into fixed chunks
// over ThreadPool::Global() (call from outside its tasks); the chunking does not depend on the
// number of threads, so neither does the result.
TensorMetrics CompareTensors(const float* a, const float* b, int64_t n);

// A linear's outputs on its inputs: x [n_tokens, in] through w [out, in] (original) and
// w_hat [out, in] (dequantized): metrics of x w^T vs x w_hat^T. Computed 256 tokens at a time.
TensorMetrics CompareLinearOutputs(const float* x, int64_t n_tokens, const float* w,
                                   const float* w_hat, int64_t out, int64_t in);
// The same when each side has its own input (a folded checkpoint sees x / s): x_ref w^T vs
// x_hat w_hat^T.
TensorMetrics CompareLinearOutputs(const float* x_ref, const float* x_hat, int64_t n_tokens,
                                   const float* w, const float* w_hat, int64_t out, int64_t in);

// Sizes in bytes. The original is counted at 2 bytes a weight (fp16, what Hugging Face
// checkpoints store) and at 4 (fp32, what awq.cpp computes in); the compression ratio and the
// bytes saved are against fp16.
struct SizeMetrics {
  int64_t parameters = 0;
  int64_t fp16_bytes = 0;
  int64_t fp32_bytes = 0;
  int64_t stored_bytes = 0;  // as stored: codes + scales + zeros, or the tensor's own bytes
  double ratio() const {
    return stored_bytes > 0 ? static_cast<double>(fp16_bytes) / stored_bytes : 0.0;
  }
  int64_t saved_bytes() const { return fp16_bytes - stored_bytes; }
  // Stored bits per parameter (4-bit g128 codes with fp16 scales and packed zeros: 4.156).
  double bits_per_weight() const {
    return parameters > 0 ? 8.0 * static_cast<double>(stored_bytes) / parameters : 0.0;
  }
  SizeMetrics& operator+=(const SizeMetrics& o);
};

// The bytes a quantized linear takes in a checkpoint: qweight [in, ceil(out*bits/32)] I32,
// qzeros [n_groups, ceil(out*bits/32)] I32, scales [n_groups, out] F16 (both layouts, see
// awq_checkpoint.h; for 4 bits this is the GEMM layout exactly).
SizeMetrics QuantizedSize(const QuantizedLinear& q);

// The size of a tensor stored as it is (its own dtype: F16, F32, I32, ...).
SizeMetrics TensorSize(const Tensor& t);

// One linear or tensor of a checkpoint on disk.
struct CheckpointEntry {
  std::string name;  // module name for a quantized linear, tensor name otherwise
  bool quantized = false;
  int bits = 0;            // quantized only: the code width
  int64_t group_size = 0;  // quantized only (-1: one group per row)
  std::string dtype;  // "awq" for quantized linears, else the stored dtype ("F16", "Q4_1", ...)
  Shape shape;        // [out, in] for linears
  SizeMetrics size;
};

struct CheckpointSizes {
  std::string path;
  std::string format;                    // "safetensors" or "gguf"
  std::vector<CheckpointEntry> entries;  // quantized linears first, in name order, then the rest
  SizeMetrics quantized;                 // the quantized linears
  SizeMetrics other;                     // everything else (embeddings, norms, unconverted linears)
  SizeMetrics total;
};

// Sizes of every tensor of a Hugging Face folder (AWQ-quantized or not) or a GGUF file, as
// stored on disk. Quantized linears (<m>.qweight/.qzeros/.scales) count as one entry each with
// the bits and group size of ReadAwqQuantConfig. Throws awq::Error naming the path.
CheckpointSizes MeasureCheckpointSizes(const std::string& path);

// One decoder linear of a quantized model against the same linear of its reference, made
// invariant to AWQ's scale folding (docs/METRICS.md). The checkpoint stores W diag(s) with 1/s
// folded into the op before it; s is recovered as
//  - "norm": q/k/v and gate/up: s = reference norm weight / quantized norm weight, exact up to
//    the fp16 rounding of the stored norm;
//  - "fit": o_proj and down_proj (1/s sits in v_proj's / up_proj's rows, themselves quantized):
//    per input column the least-squares s_j = <W_hat[:,j], W[:,j]> / ||W[:,j]||^2, over all
//    output rows, so rounding errors average out (to a few percent on columns with little
//    weight; the fit also absorbs the error component along W[:,j], about 1/out of it);
//  - "none": o_proj under grouped-query attention, which AWQ never scales: s = 1.
// The rows of up_proj (and v_proj when o_proj is fitted) carry 1/s of the next linear and are
// multiplied back. For an RTN checkpoint (nothing folded) every s is ~1.
struct LinearComparison {
  std::string module;
  std::string unfold;                   // "norm", "fit" or "none"
  double scale_min = 1, scale_max = 1;  // range of the recovered s
  // W vs W_hat diag(1/s).
  TensorMetrics weight;
  // x W^T vs x_hat W_hat^T on calibration inputs: x is the reference's input to the linear
  // (the reference hidden state through the reference norm / previous ops); x_hat is the same
  // hidden state through the quantized model's own norm ("norm" linears) or x / s ("fit").
  TensorMetrics output;
};

// Runs the reference in fp32 over the calibration batch block by block (the reference hidden
// state feeds both models' linears, so errors do not compound across blocks) and compares
// every decoder linear. The models must have the same shapes (else awq::Error naming the field).
// Call from outside ThreadPool::Global()'s tasks.
std::vector<LinearComparison> CompareLinears(const Model& reference, const Model& quantized,
                                             const CalibrationBatch& batch);

// A reference and a quantized model run over the same tokens.
struct OutputComparisonOptions {
  int64_t ctx = 512;        // window length; each window starts from a fresh cache
  int64_t max_tokens = -1;  // use only this prefix of the tokens (-1: all)
  // Called after every window with (tokens done, tokens total).
  std::function<void(int64_t, int64_t)> progress;
};

struct OutputComparison {
  int64_t n_windows = 0;
  int64_t n_positions = 0;  // predicting positions: ctx - 1 per window
  double ppl_reference = 0;
  double ppl_quantized = 0;
  double mean_kl = 0;         // mean over positions of KL(p_ref || p_quant), natural log
  double max_kl = 0;          // the largest single-position KL
  double top1_agreement = 0;  // share of positions whose argmax agree
  TensorMetrics logits;       // over every logit of every predicting position
  double seconds = 0;
};

// Runs both models over the same windows of ctx tokens, streaming 256 positions at a time, and
// compares the next-token distributions. The models must share the vocabulary size (else
// awq::Error naming both). Fewer than ctx tokens is an awq::Error.
OutputComparison CompareModelOutputs(const Model& reference, const Model& quantized,
                                     const std::vector<int32_t>& tokens,
                                     const OutputComparisonOptions& options);

// One threshold check: value <= threshold (is_max) or value >= threshold. NaN always fails.
struct ThresholdCheck {
  std::string metric;  // "mse", "relative_error", "correlation", "kl", "top1", "ppl_ratio"
  double value = 0;
  double threshold = 0;
  bool is_max = true;
  bool passed = false;
};

struct ValidationReport {
  bool passed = true;  // every check passed (true when there are none)
  std::vector<ThresholdCheck> checks;
  // One sentence per failed check: "correlation 0.91 < min 0.99".
  std::vector<std::string> reasons;
  void Add(const std::string& metric, double value, double threshold, bool is_max);
};

// Thresholds on TensorMetrics; unset ones are not checked.
struct TensorThresholds {
  std::optional<double> max_mse;
  std::optional<double> max_relative_error;
  std::optional<double> min_correlation;
  std::optional<double> max_abs_error;
};
ValidationReport ValidateMetrics(const TensorMetrics& m, const TensorThresholds& t);

// Thresholds on a model comparison (logit metrics, KL, top-1, perplexity ratio quant / ref).
struct OutputThresholds {
  TensorThresholds logits;
  std::optional<double> max_kl;
  std::optional<double> min_top1;
  std::optional<double> max_ppl_ratio;
};
ValidationReport ValidateOutputs(const OutputComparison& c, const OutputThresholds& t);

}  // namespace awq
