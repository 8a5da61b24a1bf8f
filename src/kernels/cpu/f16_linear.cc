// LinearF16: the GEMV dispatch, the panel-widening GEMM and the scalar reference.
#include "kernels/cpu/f16_linear.h"

#include "kernels/cpu/cpu_features.h"

#include <algorithm>
#include <vector>

#include "awq/error.h"
#include "awq/half.h"
#include "awq/thread_pool.h"
#include "kernels/cpu/scratch.h"
#include "kernels/cpu/sgemm.h"

namespace awq {

namespace {
constexpr int64_t kGemvRowGrain = 64;  // rows per chunk: whole cache lines of y
constexpr int64_t kPanelRows = 256;    // rows widened at a time by the GEMM: 256 x k fp32

void WidenRow(const uint16_t* src, float* dst, int64_t n) {
#if defined(__x86_64__)
  if (CpuHasAvx2Fma16()) return WidenF16Avx2(src, dst, n);
#endif
  for (int64_t i = 0; i < n; ++i) dst[i] = Fp16ToFp32(src[i]);
}
}  // namespace

void GemvF16Ref(const float* x, const uint16_t* w, int64_t ldw, float* y, int64_t n0, int64_t n1,
                int64_t k, bool accumulate) {
  for (int64_t r = n0; r < n1; ++r) {
    const uint16_t* wr = w + r * ldw;
    float acc = 0.0f;
    for (int64_t i = 0; i < k; ++i) acc += x[i] * Fp16ToFp32(wr[i]);
    y[r] = accumulate ? y[r] + acc : acc;
  }
}

void LinearF16(const float* x, int64_t ldx, const uint16_t* w, int64_t ldw, float* y, int64_t ldy,
               int64_t m, int64_t n, int64_t k, bool accumulate, ThreadPool& pool) {
  AWQ_CHECK(m >= 0 && n >= 0 && k >= 0 && ldx >= k && ldw >= k && ldy >= n);
  if (m == 0 || n == 0) return;
  if (m == 1) {
    const bool avx2 = CpuHasAvx2Fma16();
    pool.ParallelForDynamic(
        n,
        [&](int64_t n0, int64_t n1, int) {
          if (avx2) {
#if defined(__x86_64__)
            GemvF16Avx2(x, w, ldw, y, n0, n1, k, accumulate);
#endif
          } else {
            GemvF16Ref(x, w, ldw, y, n0, n1, k, accumulate);
          }
        },
        kGemvRowGrain);
    return;
  }
  pool.ParallelFor(
      n,
      [&](int64_t n0, int64_t n1, int) {
        float* panel = ThreadScratch(static_cast<size_t>(std::min(kPanelRows, n1 - n0) * k));
        for (int64_t p0 = n0; p0 < n1; p0 += kPanelRows) {
          const int64_t rows = std::min(kPanelRows, n1 - p0);
          for (int64_t r = 0; r < rows; ++r) {
            WidenRow(w + (p0 + r) * ldw, panel + r * k, k);
          }
          SgemmSerial(false, true, m, rows, k, 1.0f, x, ldx, panel, k, accumulate ? 1.0f : 0.0f,
                      y + p0, ldy);
        }
      },
      kPanelRows);
}

}  // namespace awq
