// AWQ's searches with a ggml type as the quantizer (GGUF output), against scalar oracles built
// from the type's plain round trip: the scaled candidate weights, and the clip search for a type
// whose blocks are the clip groups (Q4_0, Q8_0: every block of 32 has its own scale).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "awq/awq_search.h"
#include "awq/ggml_quantize.h"
#include "awq/gguf.h"
#include "test_util.h"

namespace awq {
namespace {

RoundTrip GgmlRoundTrip(GgmlType t) {
  return [t](float* w, int64_t rows, int64_t in) {
    const std::vector<float> copy(w, w + rows * in);
    RoundTripGgmlRows(t, copy.data(), rows, in, w);
  };
}

// One row through the type: quantize, then dequantize.
std::vector<float> RowRoundTrip(GgmlType t, const float* x, int64_t n) {
  std::vector<uint8_t> bytes(static_cast<size_t>(GgmlRowBytes(t, n)));
  QuantizeGgmlRow(t, x, n, bytes.data());
  std::vector<float> out(static_cast<size_t>(n));
  DequantizeRow(t, bytes.data(), out.data(), n);
  return out;
}

TEST(GgufSearch, ScaledCandidatesAreTheTypesRoundTripSeenThroughTheScales) {
  const int64_t rows = 6, in = 64;
  const std::vector<float> w = test::RandomNormal(rows * in, 3, 0.05f);
  std::vector<float> s(in);
  for (int64_t c = 0; c < in; ++c) s[c] = 0.5f + static_cast<float>(c % 7) * 0.25f;
  for (GgmlType t : {GgmlType::kQ4_0, GgmlType::kQ5_1, GgmlType::kQ8_0}) {
    std::vector<float> got(w.size());
    ScaleQuantizeUnscale(w.data(), got.data(), rows, in, s, GgmlRoundTrip(t));
    for (int64_t r = 0; r < rows; ++r) {
      std::vector<float> scaled(in);
      for (int64_t c = 0; c < in; ++c) scaled[c] = w[r * in + c] * s[c];
      const std::vector<float> q = RowRoundTrip(t, scaled.data(), in);
      for (int64_t c = 0; c < in; ++c) {
        EXPECT_EQ(got[r * in + c], q[c] / s[c]) << GgmlTypeName(t) << " " << r << "," << c;
      }
    }
  }
}

// The clip search's oracle for a type with one scale per 32-value block: for every row, block
// and shrink factor, clamp that block alone, round-trip the row, and score
// mean over tokens of (x_g . (q_g - w_g))^2 in double; the smallest wins, the earliest on ties.
std::vector<float> ClipOracle(GgmlType t, const std::vector<float>& w, int64_t out, int64_t in,
                              const std::vector<float>& x, int64_t tokens) {
  const int64_t gs = 32, ng = in / gs;
  std::vector<float> best(static_cast<size_t>(out * ng));
  for (int64_t o = 0; o < out; ++o) {
    for (int64_t g = 0; g < ng; ++g) {
      float amax = 0;
      for (int64_t k = g * gs; k < (g + 1) * gs; ++k)
        amax = std::max(amax, std::fabs(w[o * in + k]));
      double best_err = INFINITY;
      for (int i = 0; i < 10; ++i) {
        const float mv = amax * static_cast<float>(1.0 - i / 20.0);
        std::vector<float> row(w.begin() + o * in, w.begin() + (o + 1) * in);
        for (int64_t k = g * gs; k < (g + 1) * gs; ++k)
          row[k] = std::min(std::max(row[k], -mv), mv);
        const std::vector<float> q = RowRoundTrip(t, row.data(), in);
        double err = 0;
        for (int64_t tk = 0; tk < tokens; ++tk) {
          double dot = 0;
          for (int64_t k = g * gs; k < (g + 1) * gs; ++k) {
            dot += static_cast<double>(x[tk * in + k]) * (q[k] - w[o * in + k]);
          }
          err += dot * dot;
        }
        err /= static_cast<double>(tokens);
        if (err < best_err) {
          best_err = err;
          best[o * ng + g] = mv;
        }
      }
    }
  }
  return best;
}

TEST(GgufSearch, ClipSearchMatchesItsOracleForBlockScaledTypes) {
  const int64_t out = 8, in = 128, tokens = 64;
  std::vector<float> w = test::RandomNormal(out * in, 5, 0.05f);
  w[3] = 0.6f;  // outliers that clipping should tame
  w[in + 40] = -0.5f;
  const std::vector<float> x = test::RandomNormal(tokens * in, 9, 1.0f);
  for (GgmlType t : {GgmlType::kQ4_0, GgmlType::kQ4_1, GgmlType::kQ5_0}) {
    const std::vector<float> fast =
        SearchClip(w.data(), out, in, x.data(), tokens, 32, GgmlRoundTrip(t), 20, 0.5, tokens);
    const std::vector<float> oracle = ClipOracle(t, w, out, in, x, tokens);
    ASSERT_EQ(fast.size(), oracle.size());
    // The fast search sums in fp32 through the Gram matrix, the oracle in double per token: near
    // ties may go either way, so allow a few differing groups, each with an error close to the
    // oracle's choice.
    int differ = 0;
    for (size_t i = 0; i < fast.size(); ++i) differ += fast[i] != oracle[i];
    EXPECT_LE(differ, static_cast<int>(fast.size() / 16)) << GgmlTypeName(t);
  }
}

}  // namespace
}  // namespace awq
