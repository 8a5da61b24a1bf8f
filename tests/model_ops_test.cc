// The forward pass's building blocks against plain scalar references: GEMM, causal GQA
// attention, RoPE tables (incl. Llama-3 scaling, checked against transformers), the GGUF q/k
// un-permutation, norms and sampling.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "awq/model_config.h"
#include "awq/sampling.h"
#include "awq/thread_pool.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/sgemm.h"
#include "model/attention.h"
#include "model/rope.h"
#include "model/weight_source.h"
#include "test_util.h"

namespace awq {
namespace {

// fp32 GEMM of length-k dot products in a different summation order than the reference: the
// error bound is a few ulps times sqrt(k) times the magnitude of the terms.
constexpr float kGemmTol = 1e-4f;

std::vector<float> Random(size_t n, uint64_t seed, float scale = 1.0f) {
  return test::RandomNormal(n, seed, scale);
}

TEST(LinearF32, MatchesScalarReferenceOnAwkwardShapes) {
  ThreadPool pool(2);
  for (int64_t m : {1, 3, 17, 118}) {
    for (int64_t n : {1, 7, 33, 200}) {
      for (int64_t k : {1, 5, 64, 129}) {
        const auto x = Random(static_cast<size_t>(m * k), 1),
                   w = Random(static_cast<size_t>(n * k), 2);
        auto y = Random(static_cast<size_t>(m * n), 3);
        const auto y0 = y;
        LinearF32(x.data(), k, w.data(), k, y.data(), n, m, n, k, /*accumulate=*/true, pool);
        for (int64_t i = 0; i < m; ++i) {
          for (int64_t j = 0; j < n; ++j) {
            double ref = y0[static_cast<size_t>(i * n + j)];
            for (int64_t p = 0; p < k; ++p)
              ref += double{x[static_cast<size_t>(i * k + p)]} * w[static_cast<size_t>(j * k + p)];
            ASSERT_NEAR(y[static_cast<size_t>(i * n + j)], ref, kGemmTol * std::sqrt(double(k)) * 4)
                << "m=" << m << " n=" << n << " k=" << k;
          }
        }
      }
    }
  }
}

// Naive causal GQA attention in double.
std::vector<float> NaiveAttention(const std::vector<float>& q, const std::vector<float>& keys,
                                  const std::vector<float>& values, int64_t n_rows, int64_t pos0,
                                  const AttentionShape& s) {
  const int64_t hd = s.head_dim, qd = s.n_heads * hd, kvd = s.n_kv_heads * hd;
  std::vector<float> out(static_cast<size_t>(n_rows * qd));
  for (int64_t t = 0; t < n_rows; ++t) {
    for (int64_t h = 0; h < s.n_heads; ++h) {
      const int64_t g = h / (s.n_heads / s.n_kv_heads);
      const int64_t visible = pos0 + t + 1;
      std::vector<double> sc(static_cast<size_t>(visible));
      double mx = -1e300;
      for (int64_t j = 0; j < visible; ++j) {
        double dot = 0;
        for (int64_t i = 0; i < hd; ++i)
          dot += double{q[static_cast<size_t>(t * qd + h * hd + i)]} *
                 keys[static_cast<size_t>(j * kvd + g * hd + i)];
        sc[static_cast<size_t>(j)] = dot / std::sqrt(double(hd));
        mx = std::max(mx, sc[static_cast<size_t>(j)]);
      }
      double sum = 0;
      for (double& v : sc) sum += (v = std::exp(v - mx));
      for (int64_t i = 0; i < hd; ++i) {
        double acc = 0;
        for (int64_t j = 0; j < visible; ++j)
          acc +=
              sc[static_cast<size_t>(j)] / sum * values[static_cast<size_t>(j * kvd + g * hd + i)];
        out[static_cast<size_t>(t * qd + h * hd + i)] = static_cast<float>(acc);
      }
    }
  }
  return out;
}

TEST(CausalAttention, MatchesNaiveReferenceWithCacheOffsetAndGroups) {
  ThreadPool pool(2);
  for (AttentionShape s :
       {AttentionShape{9, 3, 64}, AttentionShape{4, 4, 16}, AttentionShape{2, 1, 8}}) {
    for (int64_t n_rows : {1, 3, 70, 130}) {
      for (int64_t pos0 : {0, 5}) {
        const int64_t qd = s.n_heads * s.head_dim, kvd = s.n_kv_heads * s.head_dim;
        const int64_t total = pos0 + n_rows;
        const auto q = Random(static_cast<size_t>(n_rows * qd), 7);
        const auto k = Random(static_cast<size_t>(total * kvd), 8);
        const auto v = Random(static_cast<size_t>(total * kvd), 9);
        std::vector<float> out(static_cast<size_t>(n_rows * qd));
        CausalAttention(q.data(), qd, k.data(), v.data(), kvd, out.data(), qd, n_rows, pos0, s,
                        pool);
        const auto ref = NaiveAttention(q, k, v, n_rows, pos0, s);
        for (size_t i = 0; i < out.size(); ++i) {
          // Outputs are convex combinations of N(0,1) values: absolute error of a few 1e-6.
          ASSERT_NEAR(out[i], ref[i], 2e-5) << "rows=" << n_rows << " pos0=" << pos0 << " i=" << i;
        }
      }
    }
  }
}

TEST(Rope, Llama3ScalingMatchesTransformers) {
  ModelConfig c;
  c.hidden_size = 4096;
  c.num_attention_heads = 32;
  c.head_dim = 128;
  c.rope_theta = 500000.0;
  c.rope_scaling.type = RopeScalingType::kLlama3;
  c.rope_scaling.factor = 8.0;
  c.rope_scaling.low_freq_factor = 1.0;
  c.rope_scaling.high_freq_factor = 4.0;
  c.rope_scaling.original_max_position_embeddings = 8192;
  const std::vector<float> inv = RopeInverseFrequencies(c);
  // transformers 5.24, ROPE_INIT_FUNCTIONS["llama3"] for this config (fp32 values).
  const std::pair<int, double> kExpected[] = {{0, 1.0},
                                              {1, 0.8146172165870667},
                                              {20, 0.016560440883040428},
                                              {40, 3.428102354519069e-05},
                                              {45, 1.2297638932068367e-05},
                                              {50, 4.411534519022098e-06},
                                              {63, 3.068925877869333e-07}};
  for (const auto& [i, want] : kExpected) {
    EXPECT_NEAR(inv[static_cast<size_t>(i)], want, want * 2e-6) << "i=" << i;  // fp32 rounding
  }
}

TEST(Rope, RotationPreservesNormAndIsIdentityAtPositionZero) {
  ModelConfig c;
  c.head_dim = 8;
  c.rope_theta = 10000.0;
  const RopeTables t = BuildRopeTables(c, 16);
  auto x = Random(2 * 16, 11);
  const auto x0 = x;
  const int64_t pos[2] = {0, 9};
  ApplyRope(x.data(), 16, 2, 2, 8, pos, t.cos.data(), t.sin.data());
  for (int i = 0; i < 16; ++i)
    EXPECT_FLOAT_EQ(x[static_cast<size_t>(i)], x0[static_cast<size_t>(i)]);
  for (int h = 0; h < 2; ++h) {
    double n0 = 0, n1 = 0;
    for (int i = 0; i < 8; ++i) {
      n0 += std::pow(x0[static_cast<size_t>(16 + h * 8 + i)], 2);
      n1 += std::pow(x[static_cast<size_t>(16 + h * 8 + i)], 2);
    }
    EXPECT_NEAR(n0, n1, 1e-4);
  }
  // Element i pairs with i + hd/2 (rotate_half), rotated by angle pos * theta^(-2i/hd).
  const double ang = 9.0 * std::pow(10000.0, -2.0 * 1 / 8);
  EXPECT_NEAR(x[16 + 1], x0[16 + 1] * std::cos(ang) - x0[16 + 5] * std::sin(ang), 1e-5);
  EXPECT_NEAR(x[16 + 5], x0[16 + 5] * std::cos(ang) + x0[16 + 1] * std::sin(ang), 1e-5);
}

TEST(UnpermuteGgufQk, InvertsTheConverterPermutation) {
  // llama.cpp's convert_hf_to_gguf: w.reshape(n_head, 2, hd/2, cols).swapaxes(1, 2).
  const int64_t n_head = 3, hd = 8, cols = 5, rows = n_head * hd;
  Tensor hf(DType::kF32, {rows, cols});
  for (int64_t i = 0; i < rows * cols; ++i) hf.data<float>()[i] = static_cast<float>(i);
  Tensor gg(DType::kF32, {rows, cols});
  for (int64_t h = 0; h < n_head; ++h)
    for (int64_t t = 0; t < 2; ++t)
      for (int64_t j = 0; j < hd / 2; ++j)
        for (int64_t c = 0; c < cols; ++c)
          gg.data<float>()[((h * (hd / 2) + j) * 2 + t) * cols + c] =
              hf.data<float>()[((h * 2 + t) * (hd / 2) + j) * cols + c];
  const Tensor back = UnpermuteGgufQk(gg, n_head);
  for (int64_t i = 0; i < rows * cols; ++i) ASSERT_EQ(back.data<float>()[i], hf.data<float>()[i]);
}

TEST(RmsNorm, MatchesFormula) {
  const auto x = Random(2 * 5, 3), w = Random(5, 4);
  std::vector<float> y(10);
  RmsNormRows(x.data(), 5, w.data(), y.data(), 5, 2, 5, 1e-5f);
  for (int t = 0; t < 2; ++t) {
    double ss = 0;
    for (int i = 0; i < 5; ++i)
      ss += x[static_cast<size_t>(t * 5 + i)] * x[static_cast<size_t>(t * 5 + i)];
    const double inv = 1.0 / std::sqrt(ss / 5 + 1e-5);
    for (int i = 0; i < 5; ++i)
      EXPECT_NEAR(y[static_cast<size_t>(t * 5 + i)],
                  x[static_cast<size_t>(t * 5 + i)] * inv * w[static_cast<size_t>(i)], 1e-5);
  }
}

// The AVX2 softmax and SiLU (polynomial exp) against double-precision formulas: lengths around
// the 8-wide vector and its tail, inputs from deep underflow to float exp's overflow.
TEST(RowKernels, Avx2SoftmaxAndSiluMatchDoubleFormulas) {
  if (!CpuHasAvx2Fma()) GTEST_SKIP() << "no AVX2 + FMA";
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> u(-30.0f, 30.0f);
  for (int64_t n : {1, 7, 8, 9, 31, 100, 513}) {
    std::vector<float> x(static_cast<size_t>(n));
    for (auto& v : x) v = u(rng);
    x[0] = -200.0f;  // exp underflows to 0 after the max is subtracted
    if (n > 3) x[3] = 60.0f;
    std::vector<float> got = x;
    const double lse = SoftmaxRowAvx2(got.data(), n);
    double mx = -INFINITY, sum = 0;
    for (float v : x) mx = std::max(mx, double{v});
    for (float v : x) sum += std::exp(v - mx);
    EXPECT_NEAR(lse, std::log(sum) + mx, 1e-5) << n;
    for (int64_t i = 0; i < n; ++i) {
      const double want = std::exp(x[static_cast<size_t>(i)] - mx) / sum;
      EXPECT_NEAR(got[static_cast<size_t>(i)], want, 1e-6 * want + 1e-30) << n << " " << i;
    }
  }
  // SiLU(g) * up over [-100, 100]: large negative g (exp(-g) overflows to inf, result -0), large
  // positive g (sigmoid 1).
  for (int64_t d : {1, 8, 13, 576}) {
    std::vector<float> gu(static_cast<size_t>(2 * d)), got(static_cast<size_t>(d));
    std::uniform_real_distribution<float> wide(-100.0f, 100.0f);
    for (auto& v : gu) v = wide(rng);
    gu[0] = -95.0f;
    SiluMulRowsAvx2(gu.data(), 2 * d, got.data(), d, 1, d);
    for (int64_t j = 0; j < d; ++j) {
      const double g = gu[static_cast<size_t>(j)], up = gu[static_cast<size_t>(d + j)];
      const double want = g / (1.0 + std::exp(-g)) * up;
      EXPECT_NEAR(got[static_cast<size_t>(j)], want, 1e-6 * std::fabs(want) + 1e-30)
          << d << " " << j;
    }
  }
}

TEST(Sampler, GreedyTopKOneAndSeedsAreDeterministic) {
  const auto logits = Random(1000, 5, 3.0f);
  const int32_t best = Argmax(logits.data(), 1000);
  EXPECT_EQ(Sampler(SamplingParams{}).Sample(logits.data(), 1000), best);
  EXPECT_EQ(Sampler(SamplingParams{1.0f, 1, 1.0f, 42}).Sample(logits.data(), 1000), best);
  EXPECT_EQ(Sampler(SamplingParams{1.0f, 0, 1e-6f, 42}).Sample(logits.data(), 1000), best);
  Sampler a(SamplingParams{0.8f, 40, 0.95f, 7}), b(SamplingParams{0.8f, 40, 0.95f, 7});
  std::vector<int32_t> sa, sb;
  for (int i = 0; i < 50; ++i) {
    sa.push_back(a.Sample(logits.data(), 1000));
    sb.push_back(b.Sample(logits.data(), 1000));
  }
  EXPECT_EQ(sa, sb);
  // With top-k 40 every draw is among the 40 largest logits.
  std::vector<float> sorted = logits;
  std::sort(sorted.begin(), sorted.end(), std::greater<float>());
  for (int32_t id : sa) EXPECT_GE(logits[static_cast<size_t>(id)], sorted[39]);
  EXPECT_THROW(Sampler(SamplingParams{-1.0f, 0, 1.0f, 0}), Error);
  EXPECT_THROW(Sampler(SamplingParams{1.0f, 0, 0.0f, 0}), Error);
}

}  // namespace
}  // namespace awq
