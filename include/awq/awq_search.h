// The AWQ searches on plain fp32 buffers: activation/weight statistics, the per-channel scale
// search (AWQ.md section 2) and the per-group clipping search (section 3).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "awq/quant_config.h"
#include "awq/quantizer.h"

namespace awq {

// x_mean[c] = mean over the rows t of |x[t, c]|, x [n_rows, d] row-major. Accumulated in double
// (the reference sums in fp32) and split over columns, so the result does not depend on the
// number of threads.
std::vector<float> ChannelMeanAbs(const float* x, int64_t n_rows, int64_t d);

// AWQ.md section 2's w_mean over a group of linears that share their input: weights[i] is
// [rows[i], in] row-major. Every run of group_size weights along `in` (-1: the whole row) is
// divided by its max |w| (+1e-6 so an all-zero group gives 0, not 0/0); the result is the mean
// over all stacked output rows, one value per input channel. group_size must divide `in`.
std::vector<float> WeightMeanNormalized(const std::vector<const float*>& weights,
                                        const std::vector<int64_t>& rows, int64_t in,
                                        int64_t group_size);

// The candidate scales for ratio r, computed in fp32 as the reference does:
//   duo_scaling:  s = max(x_mean^r / (w_mean^(1-r) + 1e-4), 1e-4)
//   otherwise:    s = max(x_mean^r, 1e-4)
// then s /= sqrt(max(s) * min(s)) and every non-finite entry becomes 1. A NaN anywhere makes
// max/min NaN and so every entry 1, as torch's max/min propagate NaN.
std::vector<float> CandidateScales(const std::vector<float>& x_mean,
                                   const std::vector<float>& w_mean, double ratio,
                                   bool duo_scaling);

struct ScaleSearchResult {
  std::vector<float> scales;  // [in] the winning candidate (all ones when the identity won)
  int best_index = -1;        // grid index i (ratio i/n_grid); -1 when the identity won
  double best_loss = 0;
  std::vector<double> losses;  // one per grid point, then the identity's if it was tried
};

// For i = 0..n_grid-1 the candidate CandidateScales(x_mean, w_mean, i / n_grid, duo_scaling),
// then (include_identity) s = 1, each scored by loss_fn(s); the strictly smallest loss wins (the
// earliest on ties; NaN never wins). loss_fn belongs to the caller: it runs the module with
// W' = ScaleQuantizeUnscale(W, s) for every linear of the group and returns the fp32 MSE against
// the original output. No finite loss is an awq::Error listing the losses.
ScaleSearchResult SearchScales(const std::vector<float>& x_mean, const std::vector<float>& w_mean,
                               int n_grid, bool duo_scaling, bool include_identity,
                               const std::function<double(const std::vector<float>&)>& loss_fn);

// One linear of a group whose members read the same input: w [rows, in] row-major fp32, not
// owned (FoldScalesAndClip writes it; the search only reads it).
struct GroupLinear {
  float* w = nullptr;
  int64_t rows = 0;
  std::optional<QuantParams> params;  // nullopt: stays in full precision (its candidate is W)
  std::string name;  // module name; ClipSkipped(name) exempts it from clipping. May be empty.
};

// mean((a - b)^2) over all entries, accumulated in double: the scale search's loss. The sizes
// must match.
double MeanSquaredError(const std::vector<float>& a, const std::vector<float>& b);

// The loss of a group inspected at its own output through the Gram matrix of its inputs, exact
// in arithmetic and cheaper when there are more tokens than input channels: with G = sum over
// tokens of x x^T ([in, in]), the summed squared output error of candidate weights c against w
// ([rows, in]) is sum_r (c_r - w_r) G (c_r - w_r)^T. Rows are summed in order in double, so the
// result does not depend on the number of threads.
double GramSquaredError(const float* w, const float* cand, int64_t rows, int64_t in,
                        const std::vector<float>& gram);
// Whether scoring n_cand candidates of a [rows, in] group over n_tokens costs fewer flops
// through the Gram matrix (n in^2 once, then rows in^2 per candidate) than directly (n rows in
// per candidate).
bool GramIsCheaper(int64_t rows, int64_t in, int64_t n_tokens, int64_t n_cand);

// AWQ's scale search (AWQ.md section 2) for a group of linears that share their input x
// [n_tokens, in] and whose inspected output is their own product, the whole-model pipeline's
// "o" and "down" groups (Inspect::kOwnOutput), on the ORIGINAL weights:
//   x_mean = ChannelMeanAbs(x), w_mean = WeightMeanNormalized(group, config.q_group_size),
//   reference = x W^T for W the group's rows stacked in order (fp32, LinearF32),
//   loss(s) = MeanSquaredError(reference, x W'(s)^T), W'(s) = ScaleQuantizeUnscale(W, s) with
//             each linear's params (W itself for a linear without params),
// searched by SearchScales(x_mean, w_mean, config.n_grid, config.duo_scaling,
// include_identity=true, loss), so losses.back() is plain round-to-nearest's (s = 1). Every
// linear needs `in` columns; a group size that does not divide `in` is an awq::Error. Call it from
// outside ThreadPool::Global()'s tasks.
ScaleSearchResult SearchOwnOutputScales(const std::vector<GroupLinear>& group, int64_t in,
                                        const float* x, int64_t n_tokens,
                                        const QuantConfig& config);

// The steps after the search, as the whole-model pipeline runs them for a group: every linear's
// columns W <- W diag(s), the inputs x [n_tokens, in] <- x / s in place, then, when
// config.apply_clip, for every linear with params whose name ClipSkipped does not exempt,
// SearchClip on the scaled weights and scaled inputs (config.n_grid, max_shrink,
// n_sample_token) and ApplyClip. Returns one max_val [rows, in / group size] per linear, empty
// where nothing was clipped. The op that produces x must absorb 1/s (the caller's job). Call it
// from outside ThreadPool::Global()'s tasks.
std::vector<std::vector<float>> FoldScalesAndClip(const std::vector<GroupLinear>& group, int64_t in,
                                                  float* x, int64_t n_tokens,
                                                  const std::vector<float>& s,
                                                  const QuantConfig& config);

// out[rows, in] = FakeQuantize(w * s[col]) / s[col]: the weight a candidate scale produces, seen
// from the unscaled input. `out` may equal `w`.
void ScaleQuantizeUnscale(const float* w, float* out, int64_t rows, int64_t in,
                          const std::vector<float>& s, const QuantParams& p);

// A weight quantizer's round trip, in place over a [rows, in] matrix: what the stored weights
// will be. FakeQuantize for awq.cpp's group-wise integers; a ggml type's quantize-dequantize for
// GGUF files (docs/GGUF.md). Called from outside ThreadPool::Global()'s tasks; it may spread over
// the pool itself.
using RoundTrip = std::function<void(float* w, int64_t rows, int64_t in)>;
// The round trip of QuantParams p (FakeQuantize).
RoundTrip RoundTripOf(const QuantParams& p);
// ScaleQuantizeUnscale with any quantizer.
void ScaleQuantizeUnscale(const float* w, float* out, int64_t rows, int64_t in,
                          const std::vector<float>& s, const RoundTrip& rt);

// AWQ.md section 3. w [out, in], x [n_tokens, in]: this linear's inputs (already divided by the
// scales applied to it). Call it from outside a ThreadPool::ParallelFor body: it (and FakeQuantize)
// spreads work over ThreadPool::Global(), which is not re-entrant. Rows 0, step, 2*step, ... of x
// are used, step = max(1, n_tokens / n_sample_token). For every output channel o and group g
// (GroupSize(p, in) wide) the candidates are max_val = org_max * (1 - i/n_grid), i = 0 ..
// int(n_grid * max_shrink) - 1, with org_max the group's max |w|; each is scored by
//   err = mean over the tokens of (x_g . (Q(clamp(w_g, -max_val, max_val)) - w_g))^2
// and the strictly smallest wins (the earliest on ties). Returns max_val [out, n_groups].
//
// Cost. The reference forms both dot products per token: n_cand * out * T * in multiply-adds for
// T tokens. With d = Q(w_c) - w the error is d^T H_g d, H_g = X_g^T X_g / T the group's [gs, gs]
// Gram matrix, so after in * gs * T multiply-adds for H the search costs n_cand * out * in * gs:
// T / gs times less (8x for T = 512, gs = 64), and without the cancellation of subtracting two
// nearly equal outputs. When gs > T (few tokens or one group per row) the direct form
// mean((X_g d)^2) is cheaper and is used instead. Both run as sgemm over batches of (channel,
// candidate) rows, split over ThreadPool::Global(); the fake quantization adds n_cand * out * in
// element operations. Memory: H takes in * gs floats, each thread a few MiB of scratch.
std::vector<float> SearchClip(const float* w, int64_t out, int64_t in, const float* x,
                              int64_t n_tokens, const QuantParams& p, int n_grid = 20,
                              double max_shrink = 0.5, int64_t n_sample_token = 512);
// The same search with any quantizer: groups of `group` inputs are clamped and the whole matrix
// goes through `rt`. For a quantizer whose blocks are the clip groups (ggml's Q4_0 blocks of 32)
// each group's error depends on its own clamp only, as with QuantParams; for one whose blocks
// share a scale over several groups (the k-quants' 256-value super-blocks), each group is scored
// with every group of the row clamped alike, an approximation the output loss measures.
std::vector<float> SearchClip(const float* w, int64_t out, int64_t in, const float* x,
                              int64_t n_tokens, int64_t group, const RoundTrip& rt, int n_grid,
                              double max_shrink, int64_t n_sample_token);

// The scalar oracle of SearchClip: the reference's direct formula (cur_out - org_out per token),
// one group at a time, accumulated in double. Slow; for tests.
std::vector<float> SearchClipReference(const float* w, int64_t out, int64_t in, const float* x,
                                       int64_t n_tokens, const QuantParams& p, int n_grid = 20,
                                       double max_shrink = 0.5, int64_t n_sample_token = 512);

// Clamps every group of w [out, in] (group_size wide, -1: the whole row) to
// [-max_val[o, g], max_val[o, g]], max_val [out, in / group_size] as SearchClip returns it.
void ApplyClip(float* w, int64_t out, int64_t in, const std::vector<float>& max_val,
               int64_t group_size);

// Whether the clip search leaves this linear alone: its name contains "q_", "k_", "query", "key"
// or "Wqkv" (AutoAWQ's test: errors in queries and keys pass through the q.k product, which the
// per-linear output error does not see). Only the last dotted component is tested; AutoAWQ tests
// the whole name, so "block_sparse_moe" (which contains "k_") makes it skip every Mixtral expert,
// a quirk not copied. For Llama-family names the two tests agree.
bool ClipSkipped(const std::string& module_name);

}  // namespace awq
