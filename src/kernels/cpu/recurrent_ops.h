// Row and channel kernels of the recurrent families (Mamba's causal convolution and selective
// scan, RWKV's LayerNorm, token shift and WKV recurrence), fp32, in the order of operations of
// transformers' plain torch paths so that results agree to fp32 rounding. Kernels see pointers,
// sizes and strides only; src/model/recurrent.cc composes them.
#pragma once

#include <cstdint>

namespace awq {

// y[t, :] = (x[t, :] - mean) / sqrt(var + eps) * w + b (torch.nn.LayerNorm: biased variance);
// mean and variance accumulated in double. y may equal x.
void LayerNormRows(const float* x, const float* w, const float* b, float* y, int64_t n_rows,
                   int64_t d, float eps);

// Mamba's causal depthwise convolution and SiLU over n tokens of `channels` channels:
//   u[t, c] = silu(bias[c] + sum_k w[c, k] * in(t - (K-1) + k, c)),  k = 0 .. K-1,
// where in(s, c) = x[s * ldx + c] for s >= 0 and, for s < 0, the previous inputs kept in
// state [K-1, channels] (row K-1+s: position s relative to this call). bias may be null.
// state is then updated to the last K-1 inputs. w is [channels, K] (the checkpoint's
// [channels, 1, K]); u is [n, channels].
void CausalConvSilu(const float* x, int64_t ldx, int64_t n, int64_t channels, const float* w,
                    const float* bias, int64_t k, float* state, float* u);

// Mamba's selective scan for channels [c0, c1) of n tokens, continuing from h [channels, N]:
//   dA = exp(dt[t, c] * A[c, s]), h[c, s] = dA * h[c, s] + (dt[t, c] * B[t, s]) * u[t, c],
//   y[t, c] = (sum_s h[c, s] * C[t, s] + u[t, c] * D[c]) * silu(z[t, c]).
// dt [n, channels] (after the bias and softplus), u [n, channels], B and C rows of stride ldbc,
// z with stride ldz, A = -exp(A_log) [channels, N], y [n, channels].
void SelectiveScan(const float* u, const float* dt, const float* a, const float* b,
                   const float* c_mat, int64_t ldbc, const float* d, const float* z, int64_t ldz,
                   int64_t n, int64_t channels, int64_t n_state, int64_t c0, int64_t c1, float* h,
                   float* y);

// RWKV-4's WKV for channels [c0, c1) of n tokens with w = -exp(time_decay), u = time_first,
// continuing from the state num, den, max [channels] (initially 0, 0, -1e38):
//   out[t] = (e1 num + e2 v) / (e1 den + e2),  p = max(max, u + k), e1 = exp(max - p),
//            e2 = exp(u + k - p);
//   then p' = max(max + w, k): num = exp(max + w - p') num + exp(k - p') v, den likewise,
//   max = p'.
// k, v, out are [n, channels].
void WkvScan(const float* k, const float* v, const float* w, const float* u, int64_t n,
             int64_t channels, int64_t c0, int64_t c1, float* num, float* den, float* max,
             float* out);

// RWKV's token shift: out[t, :] = x[t, :] * mix + prev(t) * (1 - mix), prev(0) = shift (the
// last row of the previous call, zeros at the start), prev(t) = x[t - 1, :].
void TokenShiftMix(const float* x, const float* shift, const float* mix, int64_t n, int64_t d,
                   float* out);

}  // namespace awq
