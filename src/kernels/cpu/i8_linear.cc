// Int8-row weights: quantization, the GEMV dispatch and the panel-widening GEMM.
#include "kernels/cpu/i8_linear.h"

#include <algorithm>
#include <cmath>

#include "awq/error.h"
#include "awq/half.h"
#include "awq/thread_pool.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/f16_linear.h"
#include "kernels/cpu/scratch.h"
#include "kernels/cpu/sgemm.h"

namespace awq {

namespace {
constexpr int64_t kRowGrain = 64;
constexpr int64_t kPanelRows = 256;

template <class Load>
Int8Rows QuantizeRows(int64_t rows, int64_t cols, ThreadPool& pool, Load load) {
  Int8Rows r;
  r.rows = rows;
  r.cols = cols;
  r.q.resize(static_cast<size_t>(rows * cols));
  r.scale.resize(static_cast<size_t>(rows));
  pool.ParallelFor(
      rows,
      [&](int64_t r0, int64_t r1, int) {
        std::vector<float> row(static_cast<size_t>(cols));
        for (int64_t i = r0; i < r1; ++i) {
          load(i, row.data());
          float amax = 0.0f;
          for (float v : row) amax = std::max(amax, std::fabs(v));
          const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
          int8_t* q = r.q.data() + i * cols;
          for (int64_t k = 0; k < cols; ++k) {
            q[k] = static_cast<int8_t>(std::clamp(std::nearbyint(row[k] * inv), -127.0f, 127.0f));
          }
          r.scale[static_cast<size_t>(i)] = amax / 127.0f;
        }
      },
      kRowGrain);
  return r;
}
}  // namespace

Int8Rows QuantizeRowsInt8(const float* w, int64_t rows, int64_t cols, ThreadPool& pool) {
  return QuantizeRows(rows, cols, pool, [&](int64_t i, float* dst) {
    std::copy(w + i * cols, w + (i + 1) * cols, dst);
  });
}

Int8Rows QuantizeRowsInt8(const uint16_t* w, int64_t rows, int64_t cols, ThreadPool& pool) {
  return QuantizeRows(rows, cols, pool, [&](int64_t i, float* dst) {
    for (int64_t k = 0; k < cols; ++k) dst[k] = Fp16ToFp32(w[i * cols + k]);
  });
}

void GemvI8Ref(const float* x, const Int8Rows& w, float* y, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) {
    const int8_t* q = w.q.data() + r * w.cols;
    float acc = 0.0f;
    for (int64_t k = 0; k < w.cols; ++k) acc += x[k] * static_cast<float>(q[k]);
    y[r] = acc * w.scale[static_cast<size_t>(r)];
  }
}

void LinearI8(const float* x, int64_t ldx, const Int8Rows& w, float* y, int64_t ldy, int64_t m,
              ThreadPool& pool) {
  AWQ_CHECK(m >= 0 && ldx >= w.cols && ldy >= w.rows);
  if (m == 0 || w.rows == 0) return;
  if (m == 1) {
    const bool avx2 = CpuHasAvx2Fma16();
    pool.ParallelForDynamic(
        w.rows,
        [&](int64_t r0, int64_t r1, int) {
          if (avx2) {
#if defined(__x86_64__)
            GemvI8Avx2(x, w, y, r0, r1);
#endif
          } else {
            GemvI8Ref(x, w, y, r0, r1);
          }
        },
        kRowGrain);
    return;
  }
  const int64_t k = w.cols;
  pool.ParallelFor(
      w.rows,
      [&](int64_t n0, int64_t n1, int) {
        float* panel = ThreadScratch(static_cast<size_t>(std::min(kPanelRows, n1 - n0) * k));
        for (int64_t p0 = n0; p0 < n1; p0 += kPanelRows) {
          const int64_t rows = std::min(kPanelRows, n1 - p0);
          for (int64_t r = 0; r < rows; ++r) {
            const int8_t* q = w.q.data() + (p0 + r) * k;
            const float s = w.scale[static_cast<size_t>(p0 + r)];
            float* dst = panel + r * k;
            for (int64_t i = 0; i < k; ++i) dst[i] = static_cast<float>(q[i]) * s;
          }
          SgemmSerial(false, true, m, rows, k, 1.0f, x, ldx, panel, k, 0.0f, y + p0, ldy);
        }
      },
      kPanelRows);
}

}  // namespace awq
