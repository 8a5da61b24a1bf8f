// GPTQ (Frantar et al. 2022, "fasterquant"): rounds one linear's weights column by column onto
// the same group grid as RTN, pushing each column's rounding error onto the columns not yet
// quantized through the inverse Hessian of the linear's calibration inputs (docs/GPTQ.md).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "awq/quant_config.h"
#include "awq/quantizer.h"

namespace awq {

// Threads: HessianAccumulator::Add, PrepareGptqHessian and GptqQuantize use
// ThreadPool::Global(); call them from outside that pool's tasks.

struct GptqOptions {
  // Dampening: H += damp_percent * mean(diag H) * I before inverting. 0 is allowed (and fails
  // on a singular H); the CLI asks for 0 < x < 1.
  double damp_percent = 0.01;
  // Columns per lazy batch update; results do not depend on it beyond fp32 rounding.
  int64_t block_size = 128;
  // Quantize columns in order of descending diag(H). Groups stay contiguous in the original
  // column order ("static groups": each group's grid is fitted up front from the original
  // weights), so the result is stored in the ordinary group layouts.
  bool act_order = false;

  // Throws awq::Error naming the option and value: damp_percent outside [0, 1) or not finite,
  // block_size <= 0.
  void Validate() const;
};

// Sums x x^T over calibration tokens, batch by batch, for H = (2 / n) * sum_t x_t x_t^T.
class HessianAccumulator {
 public:
  explicit HessianAccumulator(int64_t in);
  // Adds the n rows of x [n, in] (one token each). Products run in fp32 sgemm over chunks of
  // tokens; chunk sums are accumulated in double.
  void Add(const float* x, int64_t n);
  int64_t in() const { return in_; }
  int64_t n_tokens() const { return n_; }
  // H [in, in] = (2 / n_tokens) * sum x x^T, row-major. Throws awq::Error when nothing was added.
  std::vector<double> Hessian() const;
  // sum x x^T [in, in] over the rows added, row-major.
  const std::vector<double>& Sum() const { return sum_; }

 private:
  int64_t in_ = 0;
  int64_t n_ = 0;
  std::vector<double> sum_;  // [in, in]
};

// What GPTQ sweeps with, prepared once per input and shared by the linears that read it
// (q/k/v, gate/up).
struct GptqFactor {
  int64_t in = 0;
  std::vector<int64_t> perm;  // [in] processing order: perm[j] = original column of step j
  std::vector<uint8_t> dead;  // [in] 1 where H_ii was 0 (the column is zeroed)
  // [in, in] upper Cholesky factor U of H^-1 (U^T U = H^-1, H dampened), rows and columns in
  // processing order, fp32 as the sweep uses it.
  std::vector<float> hinv;
};

// Dead inputs (H_ii == 0) get H_ii = 1, then H += damp_percent * mean(diag H) * I, the columns
// are permuted when act_order, and U is computed in double. `name` names the layer(s) in errors:
// an H that is not positive definite after dampening is an awq::Error that suggests a larger
// damp_percent; a size mismatch or non-finite entry is an awq::Error too.
GptqFactor PrepareGptqHessian(std::vector<double> h, int64_t in, const GptqOptions& o,
                              const std::string& name);

struct GptqResult {
  QuantizedLinear q;  // same grid and layout as QuantizeLinear's
  // GPTQ's reported error: sum over weights of (w - w_hat)^2 / U_ii^2 / 2, where w is the
  // error-updated weight at the moment its column is rounded. It equals the increase of the
  // proxy loss tr((W - Q) H (W - Q)^T) / 2 that the sweep causes.
  double loss = 0;
};

// Quantizes w [out, in] (row-major fp32, not modified) with GPTQ on `factor`'s Hessian. Without
// act_order a group's grid is fitted when the sweep reaches the group's first column, from the
// weights as updated so far (independent of block_size); with act_order every grid is fitted up
// front from w (dead columns zeroed). Rows are split over ThreadPool::Global() in fixed tiles, so
// results do not depend on the thread count. Throws awq::Error (prefixed with `name`) for bad
// bits, group size, options, a non-finite weight or a factor of another width.
GptqResult GptqQuantize(const float* w, int64_t out, int64_t in, const GptqFactor& factor,
                        const QuantParams& p, const GptqOptions& o, const std::string& name);

}  // namespace awq
