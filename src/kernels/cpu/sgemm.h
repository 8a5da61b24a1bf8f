// fp32 matrix products: the ordered sgemm (each output one chain of fused multiply-adds over k
// in ascending order, so the bytes do not depend on the CPU's vector width), split across the awq
// thread pool; oneDNN's sgemm on request.
#pragma once

#include <cstdint>

namespace awq {

class ThreadPool;

// y[m, n] = x[m, k] * w[n, k]^T (+ y when accumulate): the product of a linear layer with
// weights stored [out, in] as PyTorch does. Row strides are in elements (ldx >= k, ldw >= k,
// ldy >= n). The n dimension is split across the pool's threads and each thread computes its
// columns whole, so the result does not depend on the thread count either.
void LinearF32(const float* x, int64_t ldx, const float* w, int64_t ldw, float* y, int64_t ldy,
               int64_t m, int64_t n, int64_t k, bool accumulate, ThreadPool& pool);

// Single-threaded row-major sgemm: c = op(a) * op(b) * alpha + c * beta, on the path
// ActiveSgemmPath() names. On the ordered paths c[i][j] becomes
//   acc = 0; for p = 0 .. k-1: acc = fma(alpha * a[i][p], b[p][j], acc);
//   c[i][j] = (beta == 0 ? acc : fma(beta, c[i][j], acc))
// with every product and sum rounded as written, identical on every ordered path; the product
// does not depend on beta, so accumulating into c equals adding the product afterwards.
void SgemmSerial(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                 const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                 int64_t ldc);

enum class SgemmPath {
  kScalar,  // ordered, std::fma on 8 lanes: the reference, any CPU
  kAvx2,    // ordered, 6 x 16 tile of 256-bit FMAs
  kAvx512,  // ordered, 12 x 32 tile of 512-bit FMAs
  kOneDnn,  // oneDNN's sgemm: its own kernels and summation order per CPU (not ordered)
};

// The path SgemmSerial takes: AWQ_SGEMM (scalar, avx2, avx512, onednn) when set, read once;
// otherwise the widest ordered tile this CPU runs. A path the CPU cannot run is an error.
SgemmPath ActiveSgemmPath();
// Whether this CPU runs `path`; its name as AWQ_SGEMM spells it.
bool SgemmPathSupported(SgemmPath path);
const char* SgemmPathName(SgemmPath path);

// LinearF32 and SgemmSerial on a given path (tests and benchmarks compare paths in one process;
// benchmarks measure the machine's fp32 peak with oneDNN).
void LinearF32On(SgemmPath path, const float* x, int64_t ldx, const float* w, int64_t ldw, float* y,
                 int64_t ldy, int64_t m, int64_t n, int64_t k, bool accumulate, ThreadPool& pool);
void SgemmSerialOn(SgemmPath path, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                   float alpha, const float* a, int64_t lda, const float* b, int64_t ldb,
                   float beta, float* c, int64_t ldc);

}  // namespace awq
