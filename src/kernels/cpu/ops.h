// Element-wise and row-wise fp32 kernels of the transformer forward pass. Kernels see pointers,
// sizes and strides only; the model code composes them.
#pragma once

#include <cstdint>

namespace awq {

// y[t, :] = x[t, :] / sqrt(mean(x[t, :]^2) + eps) * w, for t < n_rows; rows of length d with
// row strides ldx / ldy. The mean is accumulated in double so long rows do not lose bits.
void RmsNormRows(const float* x, int64_t ldx, const float* w, float* y, int64_t ldy, int64_t n_rows,
                 int64_t d, float eps);

// Rotary embedding, Hugging Face "rotate_half" convention: within each head of width hd, element
// i pairs with i + hd/2. x is [n_rows, n_heads * hd] with row stride ldx; row t has position
// positions[t]; cos/sin tables are [max_pos, hd/2].
void ApplyRope(float* x, int64_t ldx, int64_t n_rows, int64_t n_heads, int64_t hd,
               const int64_t* positions, const float* cos_table, const float* sin_table);

// out[t, j] = silu(gate[t, j]) * up[t, j]; gate and up are columns [0, d) and [d, 2d) of a fused
// [n_rows, 2d] buffer (row stride ld); out is [n_rows, d] with stride ldo.
void SiluMulRows(const float* gate_up, int64_t ld, float* out, int64_t ldo, int64_t n_rows,
                 int64_t d);

// out[t, j] = gelu_tanh(gate[t, j]) * up[t, j] (GELU's tanh approximation, PyTorch's
// gelu(approximate="tanh"), Gemma's MLP); same layout as SiluMulRows.
void GeluTanhMulRows(const float* gate_up, int64_t ld, float* out, int64_t ldo, int64_t n_rows,
                     int64_t d);

// In-place softmax of a row of length n; returns log(sum(exp(x - max))) + max (the logsumexp).
double SoftmaxRow(float* x, int64_t n);

// log(sum(exp(x))) of a row, in double.
double LogSumExpRow(const float* x, int64_t n);

// The AVX2 + FMA versions that SiluMulRows and SoftmaxRow dispatch to (a polynomial exp,
// relative error about 2e-7; ops_avx2.cc). Exposed for the tests.
void SiluMulRowsAvx2(const float* gate_up, int64_t ld, float* out, int64_t ldo, int64_t n_rows,
                     int64_t d);
double SoftmaxRowAvx2(float* x, int64_t n);

// x[i] += y[i].
void AddInPlace(float* x, const float* y, int64_t n);

}  // namespace awq
