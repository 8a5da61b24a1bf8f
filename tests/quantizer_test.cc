// Tests for the group quantizer: hand-computed cases (round half to even, zero clamping, constant
// groups, group -1, symmetric mode), a scalar oracle on random matrices, and FakeQuantize being
// bit-identical to QuantizeLinear + DequantizeLinear. Then the library Quantizer's AWQ call on
// synthetic activations with outlier channels: better than RTN, its losses recomputed from what
// it returns, the same search as SearchOwnOutputScales, and driven by the config.
#include "awq/quantizer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "awq/awq_search.h"
#include "awq/error.h"
#include "awq/half.h"
#include "awq/quantizer_api.h"
#include "test_util.h"

namespace awq {
namespace {

using test::ExpectError;

float F16(float x) { return Fp16ToFp32(Fp32ToFp16(x)); }

// The scalar oracle: AWQ.md section 4 written the obvious way, with libm's nearbyint (round half
// to even in the default mode) and the scale rounded to fp16 before use.
struct RefGroup {
  float scale;
  int zero;
  std::vector<int> q;
};
RefGroup RefQuantizeGroup(const float* w, int64_t n, int bits, bool zero_point) {
  RefGroup g;
  if (zero_point) {
    float mn = w[0], mx = w[0];
    for (int64_t i = 0; i < n; ++i) mn = std::min(mn, w[i]), mx = std::max(mx, w[i]);
    const int max_int = (1 << bits) - 1;
    g.scale = F16(std::max(mx - mn, 1e-5f) / static_cast<float>(max_int));
    g.zero = static_cast<int>(
        std::clamp(-std::nearbyint(mn / g.scale), 0.0f, static_cast<float>(max_int)));
    for (int64_t i = 0; i < n; ++i) {
      const float q = std::nearbyint(w[i] / g.scale) + static_cast<float>(g.zero);
      g.q.push_back(static_cast<int>(std::clamp(q, 0.0f, static_cast<float>(max_int))));
    }
  } else {
    float amax = 0;
    for (int64_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(w[i]));
    const int max_int = (1 << (bits - 1)) - 1;
    const int min_int = -(1 << (bits - 1));
    g.scale = F16(std::max(amax, 1e-5f) / static_cast<float>(max_int));
    g.zero = 1 << (bits - 1);
    for (int64_t i = 0; i < n; ++i) {
      const float c = std::clamp(std::nearbyint(w[i] / g.scale), static_cast<float>(min_int),
                                 static_cast<float>(max_int));
      g.q.push_back(static_cast<int>(c) + g.zero);
    }
  }
  return g;
}

std::vector<float> RandomWeights(int64_t n, uint32_t seed, float spread = 0.05f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, spread);
  std::vector<float> w(static_cast<size_t>(n));
  for (float& x : w) x = normal(rng);
  // A few outliers and exact ties, like real weights after scaling.
  for (size_t i = 0; i < w.size(); i += 97) w[i] *= 20.0f;
  for (size_t i = 5; i < w.size(); i += 131) w[i] = 0.0f;
  return w;
}

QuantParams P(int bits, int64_t group, bool zp = true) { return {bits, group, zp}; }

std::vector<float> Dequant(const QuantizedLinear& q) {
  std::vector<float> w(static_cast<size_t>(q.out * q.in));
  DequantizeLinear(q, w.data());
  return w;
}

TEST(QuantizerTest, ExactGridIsReproduced) {
  // Range 15 over 4 bits: scale exactly 1, zero 0, codes equal the values.
  const std::vector<float> w = {0, 1, 2, 15};
  const QuantizedLinear q = QuantizeLinear(w.data(), 1, 4, P(4, 4));
  EXPECT_EQ(q.scales, std::vector<float>({1.0f}));
  EXPECT_EQ(q.zeros, std::vector<uint8_t>({0}));
  EXPECT_EQ(q.q, std::vector<uint8_t>({0, 1, 2, 15}));
  EXPECT_EQ(Dequant(q), w);
}

TEST(QuantizerTest, RoundsHalfToEven) {
  // Scale 1, zero 0: x.5 goes to the even neighbour (torch.round), not away from zero.
  const std::vector<float> w = {0, 0.5f, 1.5f, 2.5f, 3.5f, 4.5f, 5.5f, 15};
  const QuantizedLinear q = QuantizeLinear(w.data(), 1, 8, P(4, 8));
  EXPECT_EQ(q.q, std::vector<uint8_t>({0, 0, 2, 2, 4, 4, 6, 15}));
  // The zero itself is rounded half to even too: min -2.5 with scale 1 -> zero rint(2.5) = 2.
  const std::vector<float> w2 = {-2.5f, 12.5f};
  const QuantizedLinear q2 = QuantizeLinear(w2.data(), 1, 2, P(4, 2));
  EXPECT_EQ(q2.scales[0], 1.0f);
  EXPECT_EQ(q2.zeros[0], 2);
  EXPECT_EQ(q2.q, std::vector<uint8_t>({0, 14}));  // rint(-2.5)+2 = 0, rint(12.5)+2 = 14
}

TEST(QuantizerTest, ZeroPointIsClampedLikeTheReference) {
  // All positive: -rint(min/scale) = -10 clamps to 0 and the top saturates at 15.
  const std::vector<float> pos = {10, 11, 12, 25};
  const QuantizedLinear qp = QuantizeLinear(pos.data(), 1, 4, P(4, 4));
  EXPECT_EQ(qp.zeros[0], 0);
  EXPECT_EQ(qp.q, std::vector<uint8_t>({10, 11, 12, 15}));
  EXPECT_EQ(Dequant(qp), std::vector<float>({10, 11, 12, 15}));
  // All negative: the zero 25 clamps to 15 and the bottom saturates at code 0.
  const std::vector<float> neg = {-25, -24, -20, -10};
  const QuantizedLinear qn = QuantizeLinear(neg.data(), 1, 4, P(4, 4));
  EXPECT_EQ(qn.zeros[0], 15);
  EXPECT_EQ(qn.q, std::vector<uint8_t>({0, 0, 0, 5}));
  EXPECT_EQ(Dequant(qn), std::vector<float>({-15, -15, -15, -10}));
}

TEST(QuantizerTest, ConstantGroups) {
  // A zero group stays exactly zero.
  const std::vector<float> zero(8, 0.0f);
  const QuantizedLinear qz = QuantizeLinear(zero.data(), 1, 8, P(4, 8));
  EXPECT_EQ(qz.scales[0], F16(1e-5f / 15));
  EXPECT_EQ(qz.zeros[0], 0);
  EXPECT_EQ(Dequant(qz), zero);
  // A constant non-zero group: range clamps to 1e-5, the zero to 0 and every code to 15, so it
  // dequantizes to 15 * scale ~ 1e-5. That is what the reference does (a known quirk; such
  // groups do not occur in trained weights), and the oracle agrees.
  const std::vector<float> c(8, 0.3f);
  const QuantizedLinear qc = QuantizeLinear(c.data(), 1, 8, P(4, 8));
  EXPECT_EQ(qc.zeros[0], 0);
  EXPECT_EQ(qc.q, std::vector<uint8_t>(8, 15));
  const RefGroup ref = RefQuantizeGroup(c.data(), 8, 4, true);
  EXPECT_EQ(qc.scales[0], ref.scale);
}

TEST(QuantizerTest, SymmetricCodesAreOffsetByHalfTheRange) {
  // amax 7 over 4 bits: scale 1; signed codes -7, rint(-3.5) = -4, rint(0.5) = 0, 7, stored +8.
  const std::vector<float> w = {-7, -3.5f, 0.5f, 7};
  const QuantizedLinear q = QuantizeLinear(w.data(), 1, 4, P(4, 4, false));
  EXPECT_TRUE(q.zeros.empty());
  EXPECT_EQ(q.ImplicitZero(), 8);
  EXPECT_EQ(q.scales[0], 1.0f);
  EXPECT_EQ(q.q, std::vector<uint8_t>({1, 4, 8, 15}));
  EXPECT_EQ(Dequant(q), std::vector<float>({-7, -4, 0, 7}));
  // The negative end has one more code: -8 is representable, -9 clamps to it.
  const std::vector<float> w2 = {-9, 7};  // amax 9 -> scale F16(9/7)
  const QuantizedLinear q2 = QuantizeLinear(w2.data(), 1, 2, P(4, 2, false));
  EXPECT_EQ(q2.q[0], 1);  // rint(-9 / 1.2857) = -7
  EXPECT_EQ(q2.scales[0], F16(9.0f / 7));
}

TEST(QuantizerTest, GroupMinusOneIsOneGroupPerRow) {
  const std::vector<float> w = RandomWeights(3 * 40, 1);
  const QuantizedLinear q = QuantizeLinear(w.data(), 3, 40, P(4, -1));
  EXPECT_EQ(q.n_groups(), 1);
  ASSERT_EQ(q.scales.size(), 3u);
  for (int r = 0; r < 3; ++r) {
    const RefGroup ref = RefQuantizeGroup(w.data() + r * 40, 40, 4, true);
    EXPECT_EQ(q.scales[r], ref.scale);
    EXPECT_EQ(q.zeros[r], ref.zero);
  }
}

TEST(QuantizerTest, MatchesScalarOracle) {
  struct Case {
    int64_t out, in, group;
  };
  for (const Case c : {Case{5, 256, 128}, Case{7, 96, 32}, Case{3, 192, 64}, Case{4, 72, -1},
                       Case{130, 512, 128}}) {
    for (int bits = 2; bits <= 8; ++bits) {
      for (bool zp : {true, false}) {
        const std::vector<float> w = RandomWeights(c.out * c.in, 7 * bits + c.in);
        const QuantizedLinear q = QuantizeLinear(w.data(), c.out, c.in, P(bits, c.group, zp));
        const int64_t gs = c.group == -1 ? c.in : c.group;
        const int64_t ng = c.in / gs;
        ASSERT_EQ(q.n_groups(), ng);
        for (int64_t r = 0; r < c.out; ++r) {
          for (int64_t g = 0; g < ng; ++g) {
            const RefGroup ref = RefQuantizeGroup(w.data() + r * c.in + g * gs, gs, bits, zp);
            ASSERT_EQ(q.scales[r * ng + g], ref.scale) << "bits " << bits << " row " << r;
            ASSERT_EQ(q.zero(r, g), ref.zero) << "bits " << bits << " row " << r;
            for (int64_t i = 0; i < gs; ++i) {
              ASSERT_EQ(q.q[r * c.in + g * gs + i], ref.q[i])
                  << "bits " << bits << " zp " << zp << " row " << r << " col " << g * gs + i;
            }
          }
        }
      }
    }
  }
}

TEST(QuantizerTest, ScalesAreFp16AndCodesInRange) {
  const std::vector<float> w = RandomWeights(64 * 256, 3, 3.0f);
  for (int bits : {2, 3, 4, 8}) {
    const QuantizedLinear q = QuantizeLinear(w.data(), 64, 256, P(bits, 64));
    for (float s : q.scales) {
      EXPECT_EQ(s, F16(s));
      EXPECT_GT(s, 0.0f);
    }
    for (uint8_t c : q.q) EXPECT_LT(c, 1 << bits);
    for (uint8_t z : q.zeros) EXPECT_LT(z, 1 << bits);
  }
}

TEST(QuantizerTest, DequantizeIsCodeMinusZeroTimesScale) {
  const std::vector<float> w = RandomWeights(6 * 64, 11);
  const QuantizedLinear q = QuantizeLinear(w.data(), 6, 64, P(3, 32));
  const std::vector<float> d = Dequant(q);
  for (int64_t r = 0; r < 6; ++r) {
    for (int64_t i = 0; i < 64; ++i) {
      const int64_t g = i / 32;
      EXPECT_EQ(d[r * 64 + i],
                static_cast<float>(q.q[r * 64 + i] - q.zeros[r * 2 + g]) * q.scales[r * 2 + g]);
    }
  }
  // Error bound: half a step per weight, except where the reference clamps (zero saturation).
  for (size_t i = 0; i < w.size(); ++i) {
    const float s = q.scales[(i / 64) * 2 + (i % 64) / 32];
    EXPECT_LE(std::fabs(d[i] - w[i]), 0.5f * s + 1e-6f);
  }
}

TEST(QuantizerTest, FakeQuantizeIsBitIdenticalToQuantizeDequantize) {
  struct Case {
    int64_t out, in, group;
  };
  // The last two are large enough to run on the thread pool.
  for (const Case c : {Case{3, 64, 32}, Case{9, 200, 8}, Case{1, 128, -1}, Case{256, 512, 128},
                       Case{300, 384, 64}}) {
    for (int bits = 2; bits <= 8; ++bits) {
      for (bool zp : {true, false}) {
        std::vector<float> w = RandomWeights(c.out * c.in, 100 + bits + c.out);
        const QuantizedLinear q = QuantizeLinear(w.data(), c.out, c.in, P(bits, c.group, zp));
        const std::vector<float> want = Dequant(q);
        FakeQuantize(w.data(), c.out, c.in, P(bits, c.group, zp));
        ASSERT_EQ(std::memcmp(w.data(), want.data(), w.size() * sizeof(float)), 0)
            << "out " << c.out << " in " << c.in << " bits " << bits << " zp " << zp;
      }
    }
  }
}

TEST(QuantizerTest, FakeQuantizeIsIdempotent) {
  // A fake-quantized group is on its own grid, so quantizing again changes nothing as long as
  // the scale re-derives to the same fp16 value (it does for these groups: min and max are codes).
  std::vector<float> w = RandomWeights(16 * 128, 5);
  FakeQuantize(w.data(), 16, 128, P(4, 128));
  std::vector<float> again = w;
  FakeQuantize(again.data(), 16, 128, P(4, 128));
  int differ = 0;
  for (size_t i = 0; i < w.size(); ++i) differ += w[i] != again[i];
  EXPECT_LT(differ, static_cast<int>(w.size() / 100));
}

TEST(QuantizerTest, NonFiniteWeights) {
  std::vector<float> w = RandomWeights(2 * 64, 9);
  w[64 + 10] = std::numeric_limits<float>::quiet_NaN();
  ExpectError([&] { QuantizeLinear(w.data(), 2, 64, P(4, 32)); }, {"row 1", "column 10", "nan"});
  // FakeQuantize poisons only the group holding it, so a search loss becomes NaN.
  FakeQuantize(w.data(), 2, 64, P(4, 32));
  for (int i = 0; i < 64; ++i) EXPECT_FALSE(std::isnan(w[i]));
  for (int i = 64; i < 96; ++i) EXPECT_TRUE(std::isnan(w[i]));
  for (int i = 96; i < 128; ++i) EXPECT_FALSE(std::isnan(w[i]));
  std::vector<float> inf(32, 1.0f);
  inf[3] = std::numeric_limits<float>::infinity();
  FakeQuantize(inf.data(), 1, 32, P(4, 32, false));
  EXPECT_TRUE(std::isnan(inf[0]));
}

TEST(QuantizerTest, Errors) {
  const std::vector<float> w(576, 0.1f);
  ExpectError([&] { QuantizeLinear(w.data(), 1, 576, P(4, 128)); },
              {"group size 128 does not divide input width 576"});
  ExpectError([&] { GroupSize(P(4, 0), 64); }, {"group size 0"});
  EXPECT_EQ(GroupSize(P(4, -1), 576), 576);
  EXPECT_EQ(GroupSize(P(4, 64), 576), 64);
  std::vector<float> v(64, 0.1f);
  ExpectError([&] { QuantizeLinear(v.data(), 1, 64, P(1, 32)); }, {"bits = 1"});
  ExpectError([&] { FakeQuantize(v.data(), 1, 64, P(9, 32)); }, {"bits = 9"});
  ExpectError([&] { FakeQuantize(v.data(), 1, 64, P(4, 48)); },
              {"group size 48 does not divide input width 64"});
}

TEST(QuantizerTest, HugeRangeSaturatesTheScaleInsteadOfOverflowing) {
  // A range beyond 65504 * 3 cannot have an fp16 scale at 2 bits; the scale saturates at the
  // largest fp16 and the codes clamp, rather than producing inf * 0 = NaN.
  std::vector<float> w = {-1e6f, 1e6f, 0.0f, 5.0f};
  const QuantizedLinear q = QuantizeLinear(w.data(), 1, 4, P(2, 4));
  EXPECT_EQ(q.scales[0], 65504.0f);
  for (float x : Dequant(q)) EXPECT_TRUE(std::isfinite(x));
}

// --- The library Quantizer's AWQ call -------------------------------------------------------

// A linear [kOut, kIn] of N(0, 0.05^2) weights and kTokens activations of N(0, 1) where four
// channels are kOutlierGain times larger, as LLM activations have a few salient channels.
constexpr int64_t kOut = 64, kIn = 256, kTokens = 256;
constexpr float kOutlierGain = 30.0f;
constexpr int64_t kOutliers[] = {3, 70, 150, 201};

struct AwqCase {
  std::vector<float> w, x;
};
AwqCase OutlierCase(uint64_t seed) {
  AwqCase c;
  c.w = test::RandomNormal(static_cast<size_t>(kOut * kIn), seed, 0.05f);
  c.x = test::RandomNormal(static_cast<size_t>(kTokens * kIn), seed + 1);
  for (int64_t t = 0; t < kTokens; ++t) {
    for (int64_t j : kOutliers) c.x[static_cast<size_t>(t * kIn + j)] *= kOutlierGain;
  }
  return c;
}

// mean over [n, out] of (x w^T - x w_hat^T)^2, in double.
double OutputMse(const std::vector<float>& x, const std::vector<float>& w,
                 const std::vector<float>& w_hat, int64_t n, int64_t out, int64_t in) {
  double s = 0;
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t o = 0; o < out; ++o) {
      double d = 0;
      for (int64_t j = 0; j < in; ++j) {
        d += double{x[t * in + j]} * (double{w[o * in + j]} - w_hat[o * in + j]);
      }
      s += d * d;
    }
  }
  return s / static_cast<double>(n * out);
}

// W diag(s), [out, in].
std::vector<float> ScaleCols(const std::vector<float>& w, const std::vector<float>& s, int64_t in) {
  std::vector<float> r = w;
  for (size_t i = 0; i < r.size(); ++i) r[i] *= s[i % static_cast<size_t>(in)];
  return r;
}

// loss / rtn_loss measured over seeds 1..5 (w4 g128, duo scaling, clipping): 0.186 .. 0.280.
// The bound sits about half way between the worst measured ratio and RTN's 1.
constexpr double kAwqOverRtnBound = 0.64;
// The library's fp32 products against double sums here: measured <= 1.8e-7 relative.
constexpr double kLossRelTol = 1e-5;

TEST(LibraryAwq, BeatsRtnWithOutlierChannels) {
  const Quantizer qz = Quantizer::FromPreset("default");  // w4 g128, duo scaling, clipping
  for (uint64_t seed = 1; seed <= 5; ++seed) {
    const AwqCase c = OutlierCase(seed);
    const ScaledQuantization sq = qz.Quantize(c.w.data(), kOut, kIn, c.x.data(), kTokens);
    std::printf("seed %llu: best %d ratio %.2f loss %.4g search %.4g rtn %.4g (loss/rtn %.3f)\n",
                static_cast<unsigned long long>(seed), sq.best_index, sq.ratio, sq.loss,
                sq.search_loss, sq.rtn_loss, sq.loss / sq.rtn_loss);
    ASSERT_EQ(sq.losses.size(), 21u);  // n_grid = 20 points, then s = 1
    EXPECT_GE(sq.best_index, 0);
    EXPECT_DOUBLE_EQ(sq.ratio, sq.best_index / 20.0);
    EXPECT_EQ(sq.search_loss, *std::min_element(sq.losses.begin(), sq.losses.end()));
    EXPECT_EQ(sq.rtn_loss, sq.losses.back());
    EXPECT_LT(sq.loss, kAwqOverRtnBound * sq.rtn_loss);
    // The outlier channels are scaled up (their weights get finer steps).
    std::vector<float> sorted = sq.input_scales;
    std::sort(sorted.begin(), sorted.end());
    for (int64_t j : kOutliers) EXPECT_GT(sq.input_scales[j], sorted[kIn / 2]) << j;
  }
}

TEST(LibraryAwq, LossesAreThoseOfTheReturnedCodes) {
  const AwqCase c = OutlierCase(7);
  const Quantizer qz = Quantizer::FromPreset("default");
  const ScaledQuantization sq = qz.Quantize(c.w.data(), kOut, kIn, c.x.data(), kTokens);
  const double loss = OutputMse(c.x, c.w, qz.Dequantize(sq), kTokens, kOut, kIn);
  EXPECT_NEAR(sq.loss, loss, kLossRelTol * loss);
  const double rtn =
      OutputMse(c.x, c.w, qz.Dequantize(qz.Quantize(c.w.data(), kOut, kIn)), kTokens, kOut, kIn);
  EXPECT_NEAR(sq.rtn_loss, rtn, kLossRelTol * rtn);
  // At run time the layer sees x / s and the scaled codes: the same output.
  std::vector<float> xs = c.x;
  for (size_t i = 0; i < xs.size(); ++i) xs[i] /= sq.input_scales[i % kIn];
  std::vector<float> w_scaled(static_cast<size_t>(kOut * kIn));
  DequantizeLinear(sq.linear, w_scaled.data());
  double run = 0;
  for (int64_t t = 0; t < kTokens; ++t) {
    for (int64_t o = 0; o < kOut; ++o) {
      double y = 0, y_hat = 0;
      for (int64_t j = 0; j < kIn; ++j) {
        y += double{c.x[t * kIn + j]} * c.w[o * kIn + j];
        y_hat += double{xs[t * kIn + j]} * w_scaled[o * kIn + j];
      }
      run += (y - y_hat) * (y - y_hat);
    }
  }
  EXPECT_NEAR(run / (kTokens * kOut), loss, kLossRelTol * loss);
  // Metrics in the original basis still work.
  const TensorMetrics m = qz.Metrics(c.w.data(), sq);
  EXPECT_GT(m.correlation, 0.9);
}

TEST(LibraryAwq, IsTheSearchOfTheWholeModelPipeline) {
  const AwqCase c = OutlierCase(8);
  const Quantizer qz = Quantizer::FromPreset("conservative");  // w4 g64
  const ScaledQuantization sq = qz.Quantize(c.w.data(), kOut, kIn, c.x.data(), kTokens);
  std::vector<float> w = c.w;
  const ScaleSearchResult r = SearchOwnOutputScales({{w.data(), kOut, qz.params(), "down_proj"}},
                                                    kIn, c.x.data(), kTokens, qz.config());
  EXPECT_EQ(sq.losses, r.losses);
  EXPECT_EQ(sq.best_index, r.best_index);
  EXPECT_EQ(sq.input_scales, r.scales);
  EXPECT_EQ(w, c.w);  // the search leaves the weights alone
}

TEST(LibraryAwq, ConfigDrivesGridDuoScalingAndClipping) {
  const AwqCase c = OutlierCase(9);
  QuantConfig cfg = QuantPreset("default");
  const ScaledQuantization base =
      Quantizer(cfg).Quantize(c.w.data(), kOut, kIn, c.x.data(), kTokens);

  // n_grid: ratio i/10 is ratio 2i/20 exactly in fp32, so those candidates score the same.
  cfg.n_grid = 10;
  const ScaledQuantization g10 =
      Quantizer(cfg).Quantize(c.w.data(), kOut, kIn, c.x.data(), kTokens);
  ASSERT_EQ(g10.losses.size(), 11u);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(g10.losses[i], base.losses[2 * i]) << i;
  EXPECT_DOUBLE_EQ(g10.ratio, g10.best_index / 10.0);
  cfg.n_grid = 20;

  // duo_scaling off: s = x_mean^r, so ratio 0 is s = 1 and scores as RTN; on, it is not.
  cfg.duo_scaling = false;
  const ScaledQuantization solo =
      Quantizer(cfg).Quantize(c.w.data(), kOut, kIn, c.x.data(), kTokens);
  EXPECT_EQ(solo.losses[0], solo.rtn_loss);
  EXPECT_NE(base.losses[0], base.rtn_loss);
  EXPECT_NE(solo.losses[10], base.losses[10]);
  cfg.duo_scaling = true;

  // apply_clip off: the codes are those of W diag(s) itself and the loss is the search's.
  cfg.apply_clip = false;
  const ScaledQuantization noclip =
      Quantizer(cfg).Quantize(c.w.data(), kOut, kIn, c.x.data(), kTokens);
  EXPECT_TRUE(noclip.clip_max.empty());
  EXPECT_EQ(noclip.loss, noclip.search_loss);
  EXPECT_EQ(noclip.losses, base.losses);  // clipping comes after the scale search
  const std::vector<float> scaled = ScaleCols(c.w, noclip.input_scales, kIn);
  EXPECT_EQ(noclip.linear.q, QuantizeLinear(scaled.data(), kOut, kIn, cfg.DefaultParams()).q);

  // apply_clip on: the codes are those of W diag(s) clamped to clip_max, which binds somewhere.
  ASSERT_EQ(base.clip_max.size(), static_cast<size_t>(kOut * (kIn / 128)));
  std::vector<float> clipped = ScaleCols(c.w, base.input_scales, kIn);
  int shrunk = 0;
  for (int64_t g = 0; g < kOut * (kIn / 128); ++g) {
    float amax = 0;
    for (int64_t k = 0; k < 128; ++k) amax = std::max(amax, std::fabs(clipped[g * 128 + k]));
    EXPECT_LE(base.clip_max[g], amax);
    shrunk += base.clip_max[g] < amax;
  }
  EXPECT_GT(shrunk, 0);
  ApplyClip(clipped.data(), kOut, kIn, base.clip_max, 128);
  EXPECT_EQ(base.linear.q, QuantizeLinear(clipped.data(), kOut, kIn, cfg.DefaultParams()).q);
  EXPECT_NE(base.linear.q, noclip.linear.q);
  std::printf("clip: %d of %lld groups shrunk; loss %.4g with clipping, %.4g without\n", shrunk,
              static_cast<long long>(kOut * (kIn / 128)), base.loss, noclip.loss);
}

TEST(LibraryAwq, Errors) {
  const Quantizer qz = Quantizer::FromPreset("default");
  AwqCase c = OutlierCase(10);
  ExpectError([&] { qz.Quantize(c.w.data(), kOut, kIn, c.x.data(), 0); }, {"0 tokens"});
  ExpectError([&] { qz.Quantize(c.w.data(), 2, 100, c.x.data(), 2); },
              {"group size 128 does not divide input width 100"});
  c.x[5 * kIn + 9] = std::numeric_limits<float>::infinity();
  ExpectError([&] { qz.Quantize(c.w.data(), kOut, kIn, c.x.data(), kTokens); },
              {"activation", "[5, 9]", "inf"});
  c.w[kIn + 3] = std::numeric_limits<float>::quiet_NaN();
  ExpectError([&] { qz.Quantize(c.w.data(), kOut, kIn, c.x.data(), kTokens); },
              {"weight", "[1, 3]", "nan"});
}

}  // namespace
}  // namespace awq
