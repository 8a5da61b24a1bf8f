// LinearF16 (the fp16 LM head of 4-bit checkpoints) against the scalar reference and against
// LinearF32 on the widened weights: GEMV and GEMM, odd shapes, strides and accumulation.
#include "kernels/cpu/f16_linear.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "awq/half.h"
#include "awq/thread_pool.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/sgemm.h"

namespace awq {
namespace {

struct Case {
  int64_t m, n, k;
};

TEST(LinearF16, MatchesFp32OnWidenedWeights) {
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (const Case c : {Case{1, 1, 1}, Case{1, 5, 17}, Case{1, 67, 576}, Case{1, 300, 33},
                       Case{3, 67, 576}, Case{17, 513, 40}, Case{118, 260, 64}}) {
    const int64_t ldx = c.k + 3, ldw = c.k + 5, ldy = c.n + 2;
    std::vector<float> x(static_cast<size_t>(c.m * ldx)), wf(static_cast<size_t>(c.n * ldw));
    std::vector<uint16_t> w(wf.size());
    for (float& v : x) v = nd(rng);
    for (size_t i = 0; i < w.size(); ++i) {
      w[i] = Fp32ToFp16(nd(rng) * 0.1f);
      wf[i] = Fp16ToFp32(w[i]);
    }
    for (const bool acc : {false, true}) {
      std::vector<float> ref(static_cast<size_t>(c.m * ldy), 0.5f), got(ref);
      LinearF32(x.data(), ldx, wf.data(), ldw, ref.data(), ldy, c.m, c.n, c.k, acc,
                ThreadPool::Global());
      LinearF16(x.data(), ldx, w.data(), ldw, got.data(), ldy, c.m, c.n, c.k, acc,
                ThreadPool::Global());
      for (int64_t i = 0; i < c.m; ++i) {
        for (int64_t j = 0; j < ldy; ++j) {
          const size_t at = static_cast<size_t>(i * ldy + j);
          if (j >= c.n) {
            ASSERT_EQ(got[at], 0.5f) << "wrote past n";  // padding untouched
            continue;
          }
          ASSERT_NEAR(got[at], ref[at], 1e-4f * (1.0f + std::sqrt(static_cast<float>(c.k))))
              << c.m << "x" << c.n << "x" << c.k << " at " << i << "," << j;
        }
      }
    }
  }
}

TEST(LinearF16, Avx2GemvEqualsReferenceRowByRow) {
  if (!CpuHasAvx2Fma16()) GTEST_SKIP() << "no AVX2/FMA/F16C on this CPU";
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const int64_t n = 13, k = 45;
  std::vector<float> x(k);
  std::vector<uint16_t> w(static_cast<size_t>(n * k));
  for (float& v : x) v = nd(rng);
  for (uint16_t& v : w) v = Fp32ToFp16(nd(rng));
  std::vector<float> ref(n), got(n);
  GemvF16Ref(x.data(), w.data(), k, ref.data(), 0, n, k, false);
  GemvF16Avx2(x.data(), w.data(), k, got.data(), 0, n, k, false);
  for (int64_t i = 0; i < n; ++i) EXPECT_NEAR(got[i], ref[i], 1e-4f) << i;
  std::vector<float> wide(static_cast<size_t>(k)), wide_ref(wide.size());
  WidenF16Avx2(w.data(), wide.data(), k);
  for (int64_t i = 0; i < k; ++i) EXPECT_EQ(wide[i], Fp16ToFp32(w[i])) << i;
}

// The KV cache's F16C narrowing equals the scalar Fp32ToFp16 on every non-NaN input: ties to
// even, the subnormal range and its rounding, the overflow threshold, infinities, signed zeros.
TEST(LinearF16, NarrowingEqualsTheScalarConversion) {
  if (!CpuHasAvx2Fma16()) GTEST_SKIP() << "no AVX2/FMA/F16C on this CPU";
  std::vector<float> v = {0.0f,
                          -0.0f,
                          1.0f,
                          1.0f + 1.0f / 2048,
                          1.0f + 3.0f / 2048,
                          65504.0f,
                          65519.0f,
                          65520.0f,
                          1e9f,
                          -1e9f,
                          6.1e-5f,
                          3.0e-8f,
                          2.98023224e-8f,
                          1e-10f,
                          -5.96e-8f,
                          INFINITY,
                          -INFINITY,
                          1e-40f};
  std::mt19937 rng(11);
  std::uniform_int_distribution<uint32_t> bits;
  while (v.size() < 20000) {
    const uint32_t b = bits(rng);
    float f;
    std::memcpy(&f, &b, 4);
    if (!std::isnan(f)) v.push_back(f);
  }
  std::vector<uint16_t> got(v.size());
  NarrowF16Avx2(v.data(), got.data(), static_cast<int64_t>(v.size()));
  for (size_t i = 0; i < v.size(); ++i) {
    ASSERT_EQ(got[i], Fp32ToFp16(v[i])) << "at " << i << ": " << v[i];
  }
}

}  // namespace
}  // namespace awq
