// oneDNN sgemm wrappers. Each calling thread pins oneDNN's OpenMP team to one thread.
#include "kernels/cpu/sgemm.h"

#include <dnnl.h>

#include <algorithm>

#include "awq/error.h"
#include "awq/thread_pool.h"

extern "C" void omp_set_num_threads(int);  // libgomp, already a dependency of libdnnl

namespace awq {

namespace {
// oneDNN reads the calling thread's OpenMP team size; one per thread keeps its workers idle.
void PinOpenMpToOneThread() {
  static thread_local bool pinned = [] {
    omp_set_num_threads(1);
    return true;
  }();
  (void)pinned;
}
// Columns per thread chunk are kept a multiple of this so every thread gets whole SIMD tiles.
constexpr int64_t kColumnGrain = 16;
}  // namespace

void SgemmSerial(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                 const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                 int64_t ldc) {
  if (m == 0 || n == 0) return;
  PinOpenMpToOneThread();
  const dnnl_status_t st = dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, alpha, a,
                                      lda, b, ldb, beta, c, ldc);
  AWQ_CHECK(st == dnnl_success);
}

void LinearF32(const float* x, int64_t ldx, const float* w, int64_t ldw, float* y, int64_t ldy,
               int64_t m, int64_t n, int64_t k, bool accumulate, ThreadPool& pool) {
  pool.ParallelFor(
      n,
      [&](int64_t n0, int64_t n1, int) {
        SgemmSerial(false, true, m, n1 - n0, k, 1.0f, x, ldx, w + n0 * ldw, ldw,
                    accumulate ? 1.0f : 0.0f, y + n0, ldy);
      },
      kColumnGrain);
}

}  // namespace awq
