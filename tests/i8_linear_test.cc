// The int8 LM head: row quantization (max |w| -> 127, rint), LinearI8 GEMV/GEMM against the
// scalar reference and against LinearF32 on the dequantized rows.
#include "kernels/cpu/i8_linear.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "awq/half.h"
#include "awq/thread_pool.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/f16_linear.h"
#include "kernels/cpu/sgemm.h"

namespace awq {
namespace {

TEST(LinearI8, QuantizesRowsSymmetrically) {
  const std::vector<float> w = {0.5f, -1.0f, 0.25f, 0.0f, 0.0f, 0.0f};
  const Int8Rows r = QuantizeRowsInt8(w.data(), 2, 3, ThreadPool::Global());
  EXPECT_FLOAT_EQ(r.scale[0], 1.0f / 127);
  EXPECT_EQ(r.q[0], 64);  // 63.5 rounds half to even
  EXPECT_EQ(r.q[1], -127);
  EXPECT_EQ(r.q[2], 32);  // 31.75
  EXPECT_EQ(r.scale[1], 0.0f);
  EXPECT_EQ(r.q[3], 0);
  std::vector<uint16_t> h(w.size());
  for (size_t i = 0; i < w.size(); ++i) h[i] = Fp32ToFp16(w[i]);
  const Int8Rows r16 = QuantizeRowsInt8(h.data(), 2, 3, ThreadPool::Global());
  EXPECT_EQ(r16.q, r.q);
  EXPECT_EQ(r16.scale, r.scale);
}

TEST(LinearI8, MatchesFp32OnDequantizedRows) {
  std::mt19937 rng(11);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (const int64_t m : {1, 3, 40}) {
    for (const auto& [rows, cols] : {std::pair<int64_t, int64_t>{1, 1}, {67, 576}, {300, 45}}) {
      std::vector<float> w(static_cast<size_t>(rows * cols)), x(static_cast<size_t>(m * cols));
      for (float& v : w) v = nd(rng) * 0.1f;
      for (float& v : x) v = nd(rng);
      const Int8Rows q = QuantizeRowsInt8(w.data(), rows, cols, ThreadPool::Global());
      std::vector<float> deq(w.size());
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t k = 0; k < cols; ++k) {
          deq[static_cast<size_t>(r * cols + k)] =
              static_cast<float>(q.q[static_cast<size_t>(r * cols + k)]) * q.scale[r];
        }
      }
      const int64_t ldy = rows + 1;
      std::vector<float> ref(static_cast<size_t>(m * ldy), 7.0f), got(ref);
      LinearF32(x.data(), cols, deq.data(), cols, ref.data(), ldy, m, rows, cols, false,
                ThreadPool::Global());
      LinearI8(x.data(), cols, q, got.data(), ldy, m, ThreadPool::Global());
      for (int64_t i = 0; i < m; ++i) {
        for (int64_t r = 0; r < ldy; ++r) {
          const size_t at = static_cast<size_t>(i * ldy + r);
          if (r == rows) {
            ASSERT_EQ(got[at], 7.0f);
            continue;
          }
          ASSERT_NEAR(got[at], ref[at], 1e-4f * (1.0f + std::sqrt(static_cast<float>(cols))))
              << m << " " << rows << "x" << cols << " at " << i << "," << r;
        }
      }
      if (m == 1 && CpuHasAvx2Fma16()) {
        std::vector<float> a(static_cast<size_t>(rows)), b(a);
        GemvI8Ref(x.data(), q, a.data(), 0, rows);
        GemvI8Avx2(x.data(), q, b.data(), 0, rows);
        for (int64_t r = 0; r < rows; ++r) EXPECT_NEAR(a[r], b[r], 1e-4f) << r;
      }
    }
  }
}

}  // namespace
}  // namespace awq
