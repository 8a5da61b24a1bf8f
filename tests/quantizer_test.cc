// Tests for the group quantizer: hand-computed cases (round half to even, zero clamping, constant
// groups, group -1, symmetric mode), a scalar oracle on random matrices, and FakeQuantize being
// bit-identical to QuantizeLinear + DequantizeLinear.
#include "awq/quantizer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "awq/error.h"
#include "awq/half.h"
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

}  // namespace
}  // namespace awq
