// IQ4_NL (src/io/ggml_iq4nl.h): byte identity with llama.cpp's quantize_iq4_nl on a golden file
// written by ggml itself (tools/make_iq4nl_golden.sh), its dequantizer bit for bit, the
// partial-block error and the round-trip error on Gaussian rows.
#include "io/ggml_iq4nl.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "awq/gguf.h"
#include "test_util.h"

namespace awq {
namespace {

// tests/data/ggml_quant/IQ4_NL.bin, format in the header of tools/iq4nl_golden.c.
struct Golden {
  int rows = 0;
  int n = 0;
  int row_bytes = 0;
  std::vector<float> importance;   // [n]
  std::vector<float> x;            // [rows][n]
  std::vector<uint8_t> plain;      // [rows][row_bytes]  quantize_iq4_nl(x, NULL)
  std::vector<uint8_t> weighted;   // [rows][row_bytes]  quantize_iq4_nl(x, importance)
  std::vector<float> dequantized;  // [rows][n]          dequantize_row_iq4_nl(plain)
};

Golden LoadGolden() {
  const std::string path = test::DataPath("ggml_quant/IQ4_NL.bin");
  std::ifstream f(path, std::ios::binary);
  const std::vector<char> bytes((std::istreambuf_iterator<char>(f)),
                                std::istreambuf_iterator<char>());
  size_t pos = 0;
  auto read = [&](void* dst, size_t n) {
    if (pos + n > bytes.size()) throw std::runtime_error(path + ": truncated");
    std::memcpy(dst, bytes.data() + pos, n);
    pos += n;
  };
  auto u32 = [&] {
    uint32_t v;
    read(&v, 4);
    return static_cast<int>(v);
  };
  char magic[4];
  read(magic, 4);
  if (std::memcmp(magic, "IQ4G", 4) != 0 || u32() != 1) {
    throw std::runtime_error(path + ": not an IQ4_NL golden file of version 1");
  }
  Golden g;
  g.rows = u32();
  g.n = u32();
  g.row_bytes = u32();
  const size_t rn = static_cast<size_t>(g.rows) * g.n,
               rb = static_cast<size_t>(g.rows) * g.row_bytes;
  g.importance.resize(g.n);
  g.x.resize(rn);
  g.plain.resize(rb);
  g.weighted.resize(rb);
  g.dequantized.resize(rn);
  read(g.importance.data(), g.n * sizeof(float));
  read(g.x.data(), rn * sizeof(float));
  read(g.plain.data(), rb);
  read(g.weighted.data(), rb);
  read(g.dequantized.data(), rn * sizeof(float));
  if (pos != bytes.size()) throw std::runtime_error(path + ": trailing bytes");
  return g;
}

// The first block where two rows of IQ4_NL bytes differ, or -1.
int FirstDifferentBlock(const uint8_t* a, const uint8_t* b, int row_bytes) {
  for (int off = 0; off < row_bytes; off += kIq4NlBlockBytes) {
    if (std::memcmp(a + off, b + off, kIq4NlBlockBytes) != 0) return off / kIq4NlBlockBytes;
  }
  return -1;
}

TEST(Iq4NlGolden, FileIsWhatTheTestsExpect) {
  const Golden g = LoadGolden();
  EXPECT_EQ(g.rows, 8);
  EXPECT_EQ(g.n, 256);
  EXPECT_EQ(g.row_bytes, g.n / kIq4NlBlockElems * kIq4NlBlockBytes);
}

TEST(Iq4NlGolden, MatchesLlamaCppBytes) {
  const Golden g = LoadGolden();
  std::vector<uint8_t> got(g.row_bytes);
  for (int r = 0; r < g.rows; ++r) {
    QuantizeIq4NlRow(g.x.data() + static_cast<size_t>(r) * g.n, g.n, got.data());
    EXPECT_EQ(FirstDifferentBlock(got.data(), g.plain.data() + static_cast<size_t>(r) * g.row_bytes,
                                  g.row_bytes),
              -1)
        << "row " << r;
  }
}

TEST(Iq4NlGolden, WeightedMatchesLlamaCppBytes) {
  const Golden g = LoadGolden();
  std::vector<uint8_t> got(g.row_bytes);
  for (int r = 0; r < g.rows; ++r) {
    const float* x = g.x.data() + static_cast<size_t>(r) * g.n;
    QuantizeIq4NlRowWeighted(x, g.n, g.importance.data(), got.data());
    EXPECT_EQ(
        FirstDifferentBlock(got.data(), g.weighted.data() + static_cast<size_t>(r) * g.row_bytes,
                            g.row_bytes),
        -1)
        << "row " << r;
    // No importance vector: the plain bytes, as ggml_quantize_chunk(..., NULL).
    QuantizeIq4NlRowWeighted(x, g.n, nullptr, got.data());
    EXPECT_EQ(FirstDifferentBlock(got.data(), g.plain.data() + static_cast<size_t>(r) * g.row_bytes,
                                  g.row_bytes),
              -1)
        << "row " << r << " without importance";
  }
}

TEST(Iq4NlGolden, DequantizeMatchesLlamaCppFloats) {
  const Golden g = LoadGolden();
  ASSERT_TRUE(GgmlCanDequantize(GgmlType::kIQ4_NL));
  std::vector<float> got(g.n), via_table(g.n);
  for (int r = 0; r < g.rows; ++r) {
    const uint8_t* src = g.plain.data() + static_cast<size_t>(r) * g.row_bytes;
    const float* want = g.dequantized.data() + static_cast<size_t>(r) * g.n;
    DequantizeIq4NlRow(src, got.data(), g.n);
    DequantizeRow(GgmlType::kIQ4_NL, src, via_table.data(), g.n);
    // Bit patterns, so that inf (the fp16 scale of row 7's last block overflows) compares too.
    EXPECT_EQ(std::memcmp(got.data(), want, g.n * sizeof(float)), 0) << "row " << r;
    EXPECT_EQ(std::memcmp(via_table.data(), want, g.n * sizeof(float)), 0) << "row " << r;
  }
}

TEST(Iq4Nl, UnalignedBuffersGiveTheSameBytes) {
  const Golden g = LoadGolden();
  std::vector<uint8_t> buf(g.row_bytes + 1);
  std::vector<float> y(g.n);
  QuantizeIq4NlRow(g.x.data(), g.n, buf.data() + 1);
  EXPECT_EQ(std::memcmp(buf.data() + 1, g.plain.data(), g.row_bytes), 0);
  DequantizeIq4NlRow(buf.data() + 1, y.data(), g.n);
  EXPECT_EQ(std::memcmp(y.data(), g.dequantized.data(), g.n * sizeof(float)), 0);
}

TEST(Iq4Nl, PartialBlockIsAnError) {
  std::vector<float> x(64, 1.0f), w(64, 1.0f);
  std::vector<uint8_t> q(2 * kIq4NlBlockBytes);
  for (int64_t n : {1, 16, 31, 33, 48}) {
    const std::string ns = "n = " + std::to_string(n);
    test::ExpectError([&] { QuantizeIq4NlRow(x.data(), n, q.data()); },
                      {"QuantizeIq4NlRow", "IQ4_NL", "32", ns});
    test::ExpectError([&] { QuantizeIq4NlRowWeighted(x.data(), n, w.data(), q.data()); },
                      {"QuantizeIq4NlRowWeighted", ns});
    test::ExpectError([&] { DequantizeIq4NlRow(q.data(), x.data(), n); },
                      {"DequantizeIq4NlRow", ns});
  }
}

// Relative RMS error |rt(x) - x| / |x| over 64 rows of 4096 N(0, 1) values.
double RoundTripError(const float* importance) {
  constexpr int kRows = 64, kN = 4096;
  std::mt19937 rng(1234);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::vector<float> x(kN), y(kN);
  std::vector<uint8_t> q(kN / kIq4NlBlockElems * kIq4NlBlockBytes);
  double err = 0, norm = 0;
  for (int r = 0; r < kRows; ++r) {
    for (float& v : x) v = normal(rng);
    QuantizeIq4NlRowWeighted(x.data(), kN, importance, q.data());
    DequantizeIq4NlRow(q.data(), y.data(), kN);
    for (int i = 0; i < kN; ++i) {
      err += (static_cast<double>(y[i]) - x[i]) * (static_cast<double>(y[i]) - x[i]);
      norm += static_cast<double>(x[i]) * x[i];
    }
  }
  return std::sqrt(err / norm);
}

TEST(Iq4Nl, RoundTripErrorBound) {
  // Measured 0.0762 (plain) and 0.0749 (uniform importance); bounds are measured + 10%. Between
  // Q4_K (0.0717) and Q4_1 (0.0785) in docs/GGUF.md, with Q4_0's 4.5 bits per value: the levels
  // sit closer together near zero, where most of a bell-shaped block lies.
  constexpr double kPlainBound = 0.084;
  constexpr double kWeightedBound = 0.083;
  const double plain = RoundTripError(nullptr);
  const std::vector<float> ones(4096, 1.0f);
  const double weighted = RoundTripError(ones.data());
  std::printf("IQ4_NL round trip: plain %.4g, uniform importance %.4g\n", plain, weighted);
  EXPECT_LT(plain, kPlainBound);
  EXPECT_LT(weighted, kWeightedBound);
}

}  // namespace
}  // namespace awq
