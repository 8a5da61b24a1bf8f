// The AWQ searches on plain fp32 buffers: activation/weight statistics, the per-channel scale
// search (AWQ.md section 2) and the per-group clipping search (section 3).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

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

// out[rows, in] = FakeQuantize(w * s[col]) / s[col]: the weight a candidate scale produces, seen
// from the unscaled input. `out` may equal `w`.
void ScaleQuantizeUnscale(const float* w, float* out, int64_t rows, int64_t in,
                          const std::vector<float>& s, const QuantParams& p);

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
