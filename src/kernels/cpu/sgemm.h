// fp32 matrix products through oneDNN's sgemm, split across the awq thread pool.
#pragma once

#include <cstdint>

namespace awq {

class ThreadPool;

// y[m, n] = x[m, k] * w[n, k]^T (+ y when accumulate): the product of a linear layer with
// weights stored [out, in] as PyTorch does. Row strides are in elements (ldx >= k, ldw >= k,
// ldy >= n). The n dimension is split across the pool's threads and each thread calls a
// single-threaded oneDNN sgemm, so one pool owns every core (mixing our pool with OpenMP
// threads that spin on the same two cores costs more than it saves).
void LinearF32(const float* x, int64_t ldx, const float* w, int64_t ldw, float* y, int64_t ldy,
               int64_t m, int64_t n, int64_t k, bool accumulate, ThreadPool& pool);

// Plain single-threaded row-major sgemm: c = alpha * op(a) * op(b) + beta * c.
void SgemmSerial(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                 const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                 int64_t ldc);

}  // namespace awq
