// Tests of the ggml quantizers: byte identity with llama.cpp's own quantizers on the rows of
// tests/data/ggml_quant/ (written by ggml itself, tools/make_ggml_quant_golden.sh), with and
// without an importance matrix; round trips equal to dequantizing the bytes; round-trip error
// bounds per type on Gaussian rows; the parallel row functions against the one-row one; errors.
#include "awq/ggml_quantize.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <string>
#include <vector>

#include "awq/error.h"
#include "awq/gguf.h"
#include "awq/half.h"
#include "test_util.h"

namespace awq {
namespace {

// ---- golden files (format: tools/ggml_quant_golden.c) ----

std::vector<uint8_t> ReadAll(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  EXPECT_TRUE(f.good()) << "cannot open " << path;
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

// A bounds-checked little-endian reader over a golden file.
class Reader {
 public:
  Reader(const std::vector<uint8_t>& b, std::string name) : b_(b), name_(std::move(name)) {}
  void Bytes(void* dst, size_t n) {
    if (pos_ + n > b_.size()) throw Error(name_ + ": truncated at byte " + std::to_string(pos_));
    std::memcpy(dst, b_.data() + pos_, n);
    pos_ += n;
  }
  uint32_t U32() {
    uint32_t v;
    Bytes(&v, 4);
    return v;
  }
  uint64_t U64() {
    uint64_t v;
    Bytes(&v, 8);
    return v;
  }
  std::string Magic() {
    char m[4];
    Bytes(m, 4);
    return std::string(m, 4);
  }
  bool AtEnd() const { return pos_ == b_.size(); }

 private:
  const std::vector<uint8_t>& b_;
  std::string name_;
  size_t pos_ = 0;
};

struct InputSet {
  int64_t rows = 0, n = 0;
  std::vector<float> importance;  // [n]
  std::vector<float> x;           // [rows * n]
};

uint64_t Fnv1a(const std::vector<uint8_t>& b) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (uint8_t c : b) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

std::string GoldenPath(const std::string& name) { return test::DataPath("ggml_quant/" + name); }

struct Inputs {
  std::vector<InputSet> sets;
  uint64_t hash = 0;
};

const Inputs& LoadInputs() {
  static const Inputs inputs = [] {
    Inputs in;
    const std::vector<uint8_t> bytes = ReadAll(GoldenPath("inputs.bin"));
    in.hash = Fnv1a(bytes);
    Reader r(bytes, "inputs.bin");
    EXPECT_EQ(r.Magic(), "GGQI");
    EXPECT_EQ(r.U32(), 1u);
    const uint32_t n_sets = r.U32();
    for (uint32_t k = 0; k < n_sets; ++k) {
      InputSet s;
      s.rows = r.U32();
      s.n = r.U32();
      s.importance.resize(s.n);
      s.x.resize(s.rows * s.n);
      r.Bytes(s.importance.data(), s.importance.size() * 4);
      r.Bytes(s.x.data(), s.x.size() * 4);
      in.sets.push_back(std::move(s));
    }
    EXPECT_TRUE(r.AtEnd());
    return in;
  }();
  return inputs;
}

struct GoldenEntry {
  uint32_t set = 0;
  int64_t rows = 0, n = 0, row_bytes = 0;
  std::vector<uint8_t> plain;     // ggml_quantize_chunk(..., imatrix = NULL)
  std::vector<uint8_t> weighted;  // with the set's importance; empty when not stored
};

std::vector<GoldenEntry> LoadGolden(GgmlType t) {
  const std::string name = GgmlTypeName(t) + ".bin";
  const std::vector<uint8_t> bytes = ReadAll(GoldenPath(name));
  Reader r(bytes, name);
  EXPECT_EQ(r.Magic(), "GGQO");
  EXPECT_EQ(r.U32(), 1u);
  EXPECT_EQ(r.U32(), static_cast<uint32_t>(t));
  const uint32_t n_entries = r.U32();
  EXPECT_EQ(r.U64(), LoadInputs().hash) << name << " was made from another inputs.bin";
  std::vector<GoldenEntry> out;
  for (uint32_t e = 0; e < n_entries; ++e) {
    GoldenEntry g;
    g.set = r.U32();
    g.rows = r.U32();
    g.n = r.U32();
    g.row_bytes = r.U32();
    const bool has_weighted = r.U32() != 0;
    g.plain.resize(g.rows * g.row_bytes);
    r.Bytes(g.plain.data(), g.plain.size());
    if (has_weighted) {
      g.weighted.resize(g.rows * g.row_bytes);
      r.Bytes(g.weighted.data(), g.weighted.size());
    }
    out.push_back(std::move(g));
  }
  EXPECT_TRUE(r.AtEnd());
  return out;
}

// Compares one row's bytes and reports the first differing block.
void ExpectSameRow(const uint8_t* got, const uint8_t* want, int64_t row_bytes, GgmlType t,
                   const std::string& what) {
  if (std::memcmp(got, want, row_bytes) == 0) return;
  int64_t elems = 0, block_bytes = 0;
  ASSERT_TRUE(GgmlTypeLayout(t, &elems, &block_bytes));
  int64_t first = 0;
  while (got[first] == want[first]) ++first;
  int64_t differing = 0;
  for (int64_t i = 0; i < row_bytes; ++i) differing += got[i] != want[i];
  ADD_FAILURE() << GgmlTypeName(t) << " " << what << ": " << differing << " of " << row_bytes
                << " bytes differ, first at byte " << first << " (block " << first / block_bytes
                << ", byte " << first % block_bytes << " in it): got "
                << static_cast<int>(got[first]) << " want " << static_cast<int>(want[first]);
}

class GgmlQuantizeGolden : public ::testing::TestWithParam<GgmlType> {};

// QuantizeGgmlRow gives ggml_quantize_chunk's bytes for every row of every set.
TEST_P(GgmlQuantizeGolden, MatchesLlamaCppBytes) {
  const GgmlType t = GetParam();
  const Inputs& in = LoadInputs();
  const std::vector<GoldenEntry> golden = LoadGolden(t);
  ASSERT_FALSE(golden.empty());
  for (const GoldenEntry& g : golden) {
    ASSERT_LT(g.set, in.sets.size());
    const InputSet& s = in.sets[g.set];
    ASSERT_EQ(s.rows, g.rows);
    ASSERT_EQ(s.n, g.n);
    ASSERT_EQ(GgmlRowBytes(t, s.n), g.row_bytes);
    std::vector<uint8_t> got(g.row_bytes);
    for (int64_t r = 0; r < s.rows; ++r) {
      QuantizeGgmlRow(t, s.x.data() + r * s.n, s.n, got.data());
      ExpectSameRow(got.data(), g.plain.data() + r * g.row_bytes, g.row_bytes, t,
                    "set " + std::to_string(g.set) + " row " + std::to_string(r));
    }
  }
}

// The importance-matrix path: QuantizeGgmlRowWeighted gives ggml_quantize_chunk's bytes with
// the same imatrix; types llama.cpp quantizes without weights give the plain bytes.
TEST_P(GgmlQuantizeGolden, WeightedMatchesLlamaCppBytes) {
  const GgmlType t = GetParam();
  const Inputs& in = LoadInputs();
  for (const GoldenEntry& g : LoadGolden(t)) {
    const InputSet& s = in.sets[g.set];
    const std::vector<uint8_t>& want = g.weighted.empty() ? g.plain : g.weighted;
    std::vector<uint8_t> got(g.row_bytes);
    for (int64_t r = 0; r < s.rows; ++r) {
      QuantizeGgmlRowWeighted(t, s.x.data() + r * s.n, s.n, s.importance.data(), got.data());
      ExpectSameRow(got.data(), want.data() + r * g.row_bytes, g.row_bytes, t,
                    "weighted, set " + std::to_string(g.set) + " row " + std::to_string(r));
    }
    // All rows at once, in parallel.
    std::vector<uint8_t> all(s.rows * g.row_bytes);
    QuantizeGgmlRowsWeighted(t, s.x.data(), s.rows, s.n, s.importance.data(), all.data());
    EXPECT_EQ(all, want) << GgmlTypeName(t) << " QuantizeGgmlRowsWeighted, set " << g.set;
    // No importance: the plain quantizer, as ggml_quantize_chunk with a null imatrix.
    QuantizeGgmlRowsWeighted(t, s.x.data(), s.rows, s.n, nullptr, all.data());
    EXPECT_EQ(all, g.plain) << GgmlTypeName(t) << " no importance, set " << g.set;
  }
}

// The round trip is the dequantized bytes, bit for bit, and the parallel quantizer gives the
// one-row bytes.
TEST_P(GgmlQuantizeGolden, RoundTripIsDequantizedBytes) {
  const GgmlType t = GetParam();
  const Inputs& in = LoadInputs();
  for (const GoldenEntry& g : LoadGolden(t)) {
    const InputSet& s = in.sets[g.set];
    std::vector<uint8_t> all(s.rows * g.row_bytes);
    QuantizeGgmlRows(t, s.x.data(), s.rows, s.n, all.data());
    EXPECT_EQ(all, g.plain) << GgmlTypeName(t) << " QuantizeGgmlRows, set " << g.set;
    std::vector<float> want(s.rows * s.n), got(s.rows * s.n);
    for (int64_t r = 0; r < s.rows; ++r) {
      DequantizeRow(t, g.plain.data() + r * g.row_bytes, want.data() + r * s.n, s.n);
    }
    RoundTripGgmlRows(t, s.x.data(), s.rows, s.n, got.data());
    EXPECT_EQ(0, std::memcmp(got.data(), want.data(), got.size() * 4))
        << GgmlTypeName(t) << " round trip differs from DequantizeRow, set " << g.set;
  }
}

const GgmlType kGoldenTypes[] = {GgmlType::kF16,  GgmlType::kBF16, GgmlType::kQ4_0,
                                 GgmlType::kQ4_1, GgmlType::kQ5_0, GgmlType::kQ5_1,
                                 GgmlType::kQ8_0, GgmlType::kQ2_K, GgmlType::kQ3_K,
                                 GgmlType::kQ4_K, GgmlType::kQ5_K, GgmlType::kQ6_K};

INSTANTIATE_TEST_SUITE_P(AllTypes, GgmlQuantizeGolden, ::testing::ValuesIn(kGoldenTypes),
                         [](const ::testing::TestParamInfo<GgmlType>& info) {
                           return GgmlTypeName(info.param);
                         });

// ---- properties that need no golden file ----

TEST(GgmlQuantize, SupportedTypes) {
  for (GgmlType t : kGoldenTypes) EXPECT_TRUE(GgmlCanQuantize(t)) << GgmlTypeName(t);
  EXPECT_TRUE(GgmlCanQuantize(GgmlType::kF32));
  EXPECT_TRUE(GgmlCanQuantize(GgmlType::kIQ4_NL));
  for (GgmlType t : {GgmlType::kQ8_1, GgmlType::kQ8_K, GgmlType::kI8, GgmlType::kF64,
                     static_cast<GgmlType>(16), static_cast<GgmlType>(99)}) {
    EXPECT_FALSE(GgmlCanQuantize(t)) << GgmlTypeName(t);
  }
  std::vector<float> x(256, 1.0f);
  std::vector<uint8_t> dst(1024);
  test::ExpectError([&] { QuantizeGgmlRow(GgmlType::kQ8_K, x.data(), 256, dst.data()); },
                    {"QuantizeGgmlRow", "Q8_K", "cannot quantize"});
}

TEST(GgmlQuantize, RowBytes) {
  EXPECT_EQ(GgmlRowBytes(GgmlType::kF32, 7), 28);
  EXPECT_EQ(GgmlRowBytes(GgmlType::kF16, 7), 14);
  EXPECT_EQ(GgmlRowBytes(GgmlType::kBF16, 3), 6);
  EXPECT_EQ(GgmlRowBytes(GgmlType::kQ4_0, 4096), 128 * 18);
  EXPECT_EQ(GgmlRowBytes(GgmlType::kQ8_0, 64), 68);
  EXPECT_EQ(GgmlRowBytes(GgmlType::kQ4_K, 4096), 16 * 144);
  EXPECT_EQ(GgmlRowBytes(GgmlType::kQ6_K, 512), 420);
  EXPECT_EQ(GgmlRowBytes(GgmlType::kQ2_K, 0), 0);
  test::ExpectError([] { GgmlRowBytes(GgmlType::kQ4_K, 100); }, {"Q4_K", "256", "n = 100"});
  test::ExpectError([] { GgmlRowBytes(static_cast<GgmlType>(99), 32); }, {"type99"});
}

// n that does not fill whole blocks is a user error naming the type and n, in every entry point.
TEST(GgmlQuantize, PartialBlockIsAnError) {
  std::vector<float> x(1024, 0.5f), out(1024);
  std::vector<uint8_t> dst(4096);
  test::ExpectError([&] { QuantizeGgmlRow(GgmlType::kQ4_0, x.data(), 48, dst.data()); },
                    {"Q4_0", "32", "n = 48"});
  test::ExpectError([&] { QuantizeGgmlRow(GgmlType::kQ6_K, x.data(), 128, dst.data()); },
                    {"Q6_K", "256", "n = 128"});
  test::ExpectError([&] { QuantizeGgmlRows(GgmlType::kQ4_K, x.data(), 2, 300, dst.data()); },
                    {"Q4_K", "n = 300"});
  test::ExpectError([&] { RoundTripGgmlRows(GgmlType::kQ5_1, x.data(), 3, 40, out.data()); },
                    {"Q5_1", "n = 40"});
  test::ExpectError(
      [&] { QuantizeGgmlRowWeighted(GgmlType::kQ3_K, x.data(), 200, x.data(), dst.data()); },
      {"Q3_K", "n = 200"});
  test::ExpectError([&] { QuantizeGgmlRow(GgmlType::kQ8_0, x.data(), -32, dst.data()); },
                    {"Q8_0", "n = -32"});
}

// F32 is a copy; F16 and BF16 match the scalar conversions of awq/half.h.
TEST(GgmlQuantize, FloatTypes) {
  const std::vector<float> x = test::RandomNormal(96, 5, 3.0f);
  std::vector<uint8_t> dst(96 * 4);
  QuantizeGgmlRow(GgmlType::kF32, x.data(), 96, dst.data());
  EXPECT_EQ(0, std::memcmp(dst.data(), x.data(), 96 * 4));
  std::vector<float> rt(96);
  RoundTripGgmlRows(GgmlType::kF32, x.data(), 1, 96, rt.data());
  EXPECT_EQ(rt, x);
  RoundTripGgmlRows(GgmlType::kF16, x.data(), 1, 96, rt.data());
  for (int i = 0; i < 96; ++i) EXPECT_EQ(rt[i], Fp16ToFp32(Fp32ToFp16(x[i])));
  RoundTripGgmlRows(GgmlType::kBF16, x.data(), 1, 96, rt.data());
  for (int i = 0; i < 96; ++i) EXPECT_EQ(rt[i], Bf16ToFp32(Fp32ToBf16(x[i])));
}

// ---- round-trip error on Gaussian rows ----

// Relative RMS error ||rt(x) - x|| / ||x|| over 64 rows of 4096 N(0, 1) values. Each bound is
// the value measured here (x86-64, GCC 12, libstdc++'s normal_distribution) plus 10%, rounded
// up: over 262144 values the statistic moves by well under 1% with another random stream (another
// standard library), so a failure means the quantizer changed. Measured: F16 2.07e-4, BF16
// 1.66e-3, Q8_0 5.36e-3, Q6_K 1.78e-2, Q5_K 3.63e-2, Q5_1 3.79e-2, Q5_0 4.28e-2, Q4_K 7.17e-2,
// Q4_1 7.85e-2, Q4_0 8.61e-2, Q3_K 0.151, Q2_K 0.298. Q8_0 is the uniform-noise figure d / sqrt(12)
// with d = amax / 127 (amax of 32 Gaussians ~ 2.1): 5.4e-3, and F16's is its 11-bit mantissa's.
struct ErrorBound {
  GgmlType t;
  double max_rel_rms;
};

const ErrorBound kErrorBounds[] = {
    {GgmlType::kF32, 0.0},     {GgmlType::kF16, 2.3e-4},  {GgmlType::kBF16, 1.9e-3},
    {GgmlType::kQ8_0, 6.0e-3}, {GgmlType::kQ6_K, 2.0e-2}, {GgmlType::kQ5_K, 4.0e-2},
    {GgmlType::kQ5_1, 4.2e-2}, {GgmlType::kQ5_0, 4.8e-2}, {GgmlType::kQ4_K, 7.9e-2},
    {GgmlType::kQ4_1, 8.7e-2}, {GgmlType::kQ4_0, 9.5e-2}, {GgmlType::kQ3_K, 0.167},
    {GgmlType::kQ2_K, 0.33},
};

TEST(GgmlQuantize, RoundTripErrorBounds) {
  constexpr int64_t kRows = 64, kN = 4096;
  const std::vector<float> x = test::RandomNormal(kRows * kN, 42);
  std::vector<float> rt(x.size());
  for (const ErrorBound& b : kErrorBounds) {
    RoundTripGgmlRows(b.t, x.data(), kRows, kN, rt.data());
    double err2 = 0, ref2 = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      const double e = double{rt[i]} - double{x[i]};
      err2 += e * e;
      ref2 += double{x[i]} * double{x[i]};
    }
    const double rel = std::sqrt(err2 / ref2);
    std::printf("  %-5s relative RMS error %.4g (bound %.3g)\n", GgmlTypeName(b.t).c_str(), rel,
                b.max_rel_rms);
    EXPECT_LE(rel, b.max_rel_rms) << GgmlTypeName(b.t);
  }
}

// More bits, less error: the ordering within each family holds on any reasonable data.
TEST(GgmlQuantize, MoreBitsLessError) {
  const std::vector<float> x = test::RandomNormal(16 * 1024, 7, 0.02f);
  auto err = [&](GgmlType t) {
    std::vector<float> rt(x.size());
    RoundTripGgmlRows(t, x.data(), 16, 1024, rt.data());
    double e2 = 0;
    for (size_t i = 0; i < x.size(); ++i) e2 += (rt[i] - x[i]) * double{rt[i] - x[i]};
    return e2;
  };
  EXPECT_LT(err(GgmlType::kQ3_K), err(GgmlType::kQ2_K));
  EXPECT_LT(err(GgmlType::kQ4_K), err(GgmlType::kQ3_K));
  EXPECT_LT(err(GgmlType::kQ5_K), err(GgmlType::kQ4_K));
  EXPECT_LT(err(GgmlType::kQ6_K), err(GgmlType::kQ5_K));
  EXPECT_LT(err(GgmlType::kQ8_0), err(GgmlType::kQ6_K));
  EXPECT_LT(err(GgmlType::kQ5_0), err(GgmlType::kQ4_0));
  EXPECT_LT(err(GgmlType::kQ5_1), err(GgmlType::kQ4_1));
}

// ---- the parallel functions against the one-row one, on odd shapes ----

TEST(GgmlQuantize, RowsEqualRowByRowOnOddShapes) {
  for (GgmlType t : kGoldenTypes) {
    int64_t block = 0, block_bytes = 0;
    ASSERT_TRUE(GgmlTypeLayout(t, &block, &block_bytes));
    const int64_t blk = std::max<int64_t>(block, 32);
    for (int64_t rows : {1, 3, 7, 33}) {
      const int64_t n = blk * (rows % 4 + 1);  // 1, 2 or 4 blocks; 9 rows of 2 blocks ...
      const std::vector<float> x = test::RandomNormal(rows * n, 100 + rows);
      const int64_t rb = GgmlRowBytes(t, n);
      // Unaligned destination: one byte into the buffer.
      std::vector<uint8_t> all(rows * rb + 1), one(rb);
      QuantizeGgmlRows(t, x.data(), rows, n, all.data() + 1);
      std::vector<float> rt(rows * n), deq(n);
      RoundTripGgmlRows(t, x.data(), rows, n, rt.data());
      for (int64_t r = 0; r < rows; ++r) {
        QuantizeGgmlRow(t, x.data() + r * n, n, one.data());
        ASSERT_EQ(0, std::memcmp(one.data(), all.data() + 1 + r * rb, rb))
            << GgmlTypeName(t) << " rows " << rows << " row " << r;
        DequantizeRow(t, one.data(), deq.data(), n);
        ASSERT_EQ(0, std::memcmp(deq.data(), rt.data() + r * n, n * 4))
            << GgmlTypeName(t) << " round trip, rows " << rows << " row " << r;
      }
    }
  }
}

// Zero rows are allowed and write nothing; a long row (more than the round trip's stack chunk)
// goes through in pieces with the same result.
TEST(GgmlQuantize, ZeroRowsAndLongRows) {
  QuantizeGgmlRows(GgmlType::kQ4_K, nullptr, 0, 256, nullptr);
  RoundTripGgmlRows(GgmlType::kQ4_K, nullptr, 0, 256, nullptr);
  constexpr int64_t kN = 256 * 37;  // 9472: four full 2048-value chunks and a partial one
  const std::vector<float> x = test::RandomNormal(2 * kN, 9);
  for (GgmlType t : {GgmlType::kQ4_K, GgmlType::kQ8_0, GgmlType::kF32}) {
    std::vector<uint8_t> q(2 * GgmlRowBytes(t, kN));
    QuantizeGgmlRows(t, x.data(), 2, kN, q.data());
    std::vector<float> want(2 * kN), got(2 * kN);
    DequantizeRow(t, q.data(), want.data(), 2 * kN);
    RoundTripGgmlRows(t, x.data(), 2, kN, got.data());
    EXPECT_EQ(0, std::memcmp(got.data(), want.data(), got.size() * 4)) << GgmlTypeName(t);
  }
}

}  // namespace
}  // namespace awq
