// Products with int8 weights (one fp32 scale per row) and fp32 activations: the optional int8
// LM head (LoadOptions::int8_lm_head), a quarter of fp32's bytes per decoded token.
#pragma once

#include <cstdint>
#include <vector>

namespace awq {

class ThreadPool;

// Rows of int8 weights, w[r, k] ~= q[r, k] * scale[r], symmetric: scale = max |w[r, :]| / 127.
struct Int8Rows {
  int64_t rows = 0, cols = 0;
  std::vector<int8_t> q;     // [rows, cols]
  std::vector<float> scale;  // [rows]
};

// Quantizes w [rows, cols] (fp32 or fp16 bits) row by row; rint, ties to even.
Int8Rows QuantizeRowsInt8(const float* w, int64_t rows, int64_t cols, ThreadPool& pool);
Int8Rows QuantizeRowsInt8(const uint16_t* w_f16, int64_t rows, int64_t cols, ThreadPool& pool);

// y[m, rows] = x[m, cols] * (q * scale)^T. m == 1 streams q once (AVX2 when available); m > 1
// widens panels to fp32 for the serial sgemm. Call from outside the pool's tasks.
void LinearI8(const float* x, int64_t ldx, const Int8Rows& w, float* y, int64_t ldy, int64_t m,
              ThreadPool& pool);

// Rows [r0, r1) of y[0, :] for m == 1: the scalar reference and the AVX2 kernel.
void GemvI8Ref(const float* x, const Int8Rows& w, float* y, int64_t r0, int64_t r1);
void GemvI8Avx2(const float* x, const Int8Rows& w, float* y, int64_t r0, int64_t r1);

}  // namespace awq
