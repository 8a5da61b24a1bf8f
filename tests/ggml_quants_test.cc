// Tests of ggml block dequantization: bit-exact agreement with gguf-py on every supported type
// (tests/data/gguf_quants_golden.gguf, made by tools/make_gguf_golden.py), hand-built blocks
// that pin down each layout, block sizes, and errors for unsupported types.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "awq/gguf.h"
#include "awq/half.h"
#include "test_util.h"

namespace awq {
namespace {

// Bitwise equality (so -0 and NaN payloads count) with a readable failure.
void ExpectSameFloats(const float* got, const float* want, int64_t n, const std::string& what) {
  int64_t mismatches = 0;
  for (int64_t i = 0; i < n; ++i) {
    uint32_t a, b;
    std::memcpy(&a, &got[i], 4);
    std::memcpy(&b, &want[i], 4);
    if (a != b && mismatches++ < 5) {
      ADD_FAILURE() << what << " element " << i << ": got " << got[i] << " want " << want[i];
    }
  }
  EXPECT_EQ(mismatches, 0) << what;
}

std::string Bytes(std::initializer_list<int> v) {
  std::string s;
  for (int b : v) s.push_back(static_cast<char>(b));
  return s;
}

void PutHalf(std::string* s, size_t at, float v) {
  const uint16_t h = Fp32ToFp16(v);
  std::memcpy(&(*s)[at], &h, 2);
}

TEST(GgmlQuants, LayoutsMatchGgml) {
  // (type, elements per block, bytes per block) from ggml's type traits.
  struct Row {
    GgmlType t;
    int64_t elems, bytes;
    const char* name;
  };
  const Row rows[] = {
      {GgmlType::kF32, 1, 4, "F32"},
      {GgmlType::kF16, 1, 2, "F16"},
      {GgmlType::kQ4_0, 32, 18, "Q4_0"},
      {GgmlType::kQ4_1, 32, 20, "Q4_1"},
      {GgmlType::kQ5_0, 32, 22, "Q5_0"},
      {GgmlType::kQ5_1, 32, 24, "Q5_1"},
      {GgmlType::kQ8_0, 32, 34, "Q8_0"},
      {GgmlType::kQ8_1, 32, 36, "Q8_1"},
      {GgmlType::kQ2_K, 256, 84, "Q2_K"},
      {GgmlType::kQ3_K, 256, 110, "Q3_K"},
      {GgmlType::kQ4_K, 256, 144, "Q4_K"},
      {GgmlType::kQ5_K, 256, 176, "Q5_K"},
      {GgmlType::kQ6_K, 256, 210, "Q6_K"},
      {GgmlType::kQ8_K, 256, 292, "Q8_K"},
      {GgmlType::kI8, 1, 1, "I8"},
      {GgmlType::kI16, 1, 2, "I16"},
      {GgmlType::kI32, 1, 4, "I32"},
      {GgmlType::kI64, 1, 8, "I64"},
      {GgmlType::kF64, 1, 8, "F64"},
      {GgmlType::kBF16, 1, 2, "BF16"},
      {static_cast<GgmlType>(16), 256, 66, "IQ2_XXS"},
      {static_cast<GgmlType>(39), 32, 17, "MXFP4"},
  };
  for (const Row& r : rows) {
    int64_t e = 0, b = 0;
    ASSERT_TRUE(GgmlTypeLayout(r.t, &e, &b)) << r.name;
    EXPECT_EQ(e, r.elems) << r.name;
    EXPECT_EQ(b, r.bytes) << r.name;
    EXPECT_EQ(GgmlTypeName(r.t), r.name);
  }
  int64_t e = 0, b = 0;
  EXPECT_FALSE(GgmlTypeLayout(static_cast<GgmlType>(4), &e, &b));  // removed Q4_2
  EXPECT_FALSE(GgmlTypeLayout(static_cast<GgmlType>(1000), &e, &b));
  EXPECT_EQ(GgmlTypeName(static_cast<GgmlType>(1000)), "type1000");
}

TEST(GgmlQuants, CanDequantizeExactlyTheSupportedTypes) {
  for (GgmlType t :
       {GgmlType::kF32, GgmlType::kF16, GgmlType::kBF16, GgmlType::kQ4_0, GgmlType::kQ4_1,
        GgmlType::kQ5_0, GgmlType::kQ5_1, GgmlType::kQ8_0, GgmlType::kQ2_K, GgmlType::kQ3_K,
        GgmlType::kQ4_K, GgmlType::kQ5_K, GgmlType::kQ6_K}) {
    EXPECT_TRUE(GgmlCanDequantize(t)) << GgmlTypeName(t);
  }
  for (GgmlType t : {GgmlType::kQ8_1, GgmlType::kQ8_K, GgmlType::kI32, static_cast<GgmlType>(16),
                     static_cast<GgmlType>(1000)}) {
    EXPECT_FALSE(GgmlCanDequantize(t)) << GgmlTypeName(t);
  }
}

TEST(GgmlQuants, UnsupportedTypeIsAnErrorNamingIt) {
  std::vector<uint8_t> src(66);
  std::vector<float> dst(256);
  try {
    DequantizeRow(static_cast<GgmlType>(16), src.data(), dst.data(), 256);
    FAIL() << "expected awq::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("IQ2_XXS"), std::string::npos) << e.what();
  }
}

// Every supported type against gguf.quants.dequantize() of the same bytes. The library computes
// with the same float operations in the same order as ggml (and the build does not contract
// a*b+c into fma), so the match must be exact, not merely close.
TEST(GgmlQuants, MatchesGgufPyGolden) {
  const GgufFile f = GgufFile::Open(test::DataPath("gguf_quants_golden.gguf"));
  const char* names[] = {"f32",  "f16",  "bf16", "q4_0", "q4_1", "q5_0", "q5_1",
                         "q8_0", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k"};
  for (const char* name : names) {
    SCOPED_TRACE(name);
    const GgufTensorInfo* raw = f.FindTensor(std::string(name) + ".raw");
    const GgufTensorInfo* want = f.FindTensor(std::string(name) + ".expected");
    ASSERT_NE(raw, nullptr);
    ASSERT_NE(want, nullptr);
    ASSERT_EQ(want->type, GgmlType::kF32);
    ASSERT_EQ(raw->ne, want->ne);
    const int64_t n = raw->ne[0] * raw->ne[1];
    std::vector<float> expected(n);
    std::memcpy(expected.data(), f.TensorData(*want), n * sizeof(float));

    std::vector<float> got(n, std::numeric_limits<float>::quiet_NaN());
    DequantizeRow(raw->type, f.TensorData(*raw), got.data(), n);
    ExpectSameFloats(got.data(), expected.data(), n, name);

    // Row by row from a deliberately misaligned copy gives the same values: blocks are read
    // with memcpy, not through casts that assume alignment.
    std::string shifted(raw->nbytes + 1, '\0');
    std::memcpy(&shifted[1], f.TensorData(*raw), raw->nbytes);
    const size_t row_bytes = raw->nbytes / raw->ne[1];
    std::vector<float> rows(n);
    for (int64_t r = 0; r < raw->ne[1]; ++r) {
      DequantizeRow(raw->type, shifted.data() + 1 + r * row_bytes, rows.data() + r * raw->ne[0],
                    raw->ne[0]);
    }
    ExpectSameFloats(rows.data(), expected.data(), n, std::string(name) + " misaligned rows");

    // Sanity of the fixture itself: values are finite and not all zero.
    double sum_sq = 0;
    for (float v : expected) {
      ASSERT_TRUE(std::isfinite(v));
      sum_sq += double{v} * v;
    }
    EXPECT_GT(sum_sq, 0.0);
  }
}

TEST(GgmlQuants, Q4_0HandBuiltBlock) {
  // d = 0.5; byte j holds q[j] = j in the low nibble and q[j+16] = 15 - j in the high nibble.
  std::string blk(18, '\0');
  PutHalf(&blk, 0, 0.5f);
  for (int j = 0; j < 16; ++j) blk[2 + j] = static_cast<char>(j | (15 - j) << 4);
  float y[32];
  DequantizeRow(GgmlType::kQ4_0, blk.data(), y, 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], (j - 8) * 0.5f) << j;
    EXPECT_EQ(y[j + 16], (7 - j) * 0.5f) << j;
  }
}

TEST(GgmlQuants, Q4_1AndQ5_1HandBuiltBlocks) {
  // Q4_1: d = 0.25, m = -1: x = 0.25 q - 1.
  std::string q41(20, '\0');
  PutHalf(&q41, 0, 0.25f);
  PutHalf(&q41, 2, -1.0f);
  for (int j = 0; j < 16; ++j) q41[4 + j] = static_cast<char>(j | (15 - j) << 4);
  float y[32];
  DequantizeRow(GgmlType::kQ4_1, q41.data(), y, 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], 0.25f * j - 1.0f);
    EXPECT_EQ(y[j + 16], 0.25f * (15 - j) - 1.0f);
  }
  // Q5_1: same nibbles, qh = 0xAAAA5555: bit j set adds 16 to q[j].
  std::string q51(24, '\0');
  PutHalf(&q51, 0, 0.25f);
  PutHalf(&q51, 2, -1.0f);
  const uint32_t qh = 0xAAAA5555u;
  std::memcpy(&q51[4], &qh, 4);
  for (int j = 0; j < 16; ++j) q51[8 + j] = static_cast<char>(j | (15 - j) << 4);
  DequantizeRow(GgmlType::kQ5_1, q51.data(), y, 32);
  for (int j = 0; j < 16; ++j) {
    const int hi0 = (qh >> j) & 1, hi1 = (qh >> (j + 16)) & 1;
    EXPECT_EQ(y[j], 0.25f * (j + 16 * hi0) - 1.0f) << j;
    EXPECT_EQ(y[j + 16], 0.25f * ((15 - j) + 16 * hi1) - 1.0f) << j;
  }
}

TEST(GgmlQuants, Q8_0HandBuiltBlock) {
  std::string blk(34, '\0');
  PutHalf(&blk, 0, 2.0f);
  for (int j = 0; j < 32; ++j) blk[2 + j] = static_cast<char>(static_cast<int8_t>(j * 8 - 128));
  float y[32];
  DequantizeRow(GgmlType::kQ8_0, blk.data(), y, 32);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(y[j], 2.0f * (j * 8 - 128));
}

TEST(GgmlQuants, Q4_KHandBuiltBlock) {
  // d = 1, dmin = 0.5; group g has scale g + 1 and min 2g (6-bit fields packed as drawn in
  // ggml_quants.cc); every nibble is 3. So x = (g + 1) * 3 - 0.5 * 2g for group g.
  std::string blk(144, '\0');
  PutHalf(&blk, 0, 1.0f);
  PutHalf(&blk, 2, 0.5f);
  uint8_t* s = reinterpret_cast<uint8_t*>(&blk[4]);
  for (int g = 0; g < 8; ++g) {
    const int sc = g + 1, m = 2 * g;
    if (g < 4) {
      s[g] = static_cast<uint8_t>(sc);
      s[g + 4] = static_cast<uint8_t>(m);
    } else {
      s[g + 4] = static_cast<uint8_t>((sc & 15) | (m & 15) << 4);
      s[g - 4] |= static_cast<uint8_t>((sc >> 4) << 6);
      s[g] |= static_cast<uint8_t>((m >> 4) << 6);
    }
  }
  std::memset(&blk[16], 0x33, 128);
  float y[256];
  DequantizeRow(GgmlType::kQ4_K, blk.data(), y, 256);
  for (int i = 0; i < 256; ++i) {
    const int g = i / 32;
    EXPECT_EQ(y[i], (g + 1) * 3.0f - 0.5f * (2 * g)) << i;
  }
}

TEST(GgmlQuants, Q6_KHandBuiltBlock) {
  // d = 0.5, scale of group g is g - 8, every 6-bit q is 33 (so q - 32 = 1): x = 0.5 (g - 8).
  std::string blk(210, '\0');
  std::memset(&blk[0], 0x11, 128);   // low nibbles 1
  std::memset(&blk[128], 0xaa, 64);  // high 2-bit pairs 2 -> q = 1 | 2 << 4 = 33
  for (int g = 0; g < 16; ++g) blk[192 + g] = static_cast<char>(g - 8);
  PutHalf(&blk, 208, 0.5f);
  float y[256];
  DequantizeRow(GgmlType::kQ6_K, blk.data(), y, 256);
  for (int i = 0; i < 256; ++i) EXPECT_EQ(y[i], 0.5f * (i / 16 - 8)) << i;
}

TEST(GgmlQuants, HalfFloatSpecialValues) {
  // F16: +inf, -0, smallest subnormal, largest finite, a NaN; BF16: 1.0, -2.5, inf.
  const std::string f16 = Bytes({0x00, 0x7c, 0x00, 0x80, 0x01, 0x00, 0xff, 0x7b, 0x01, 0x7e});
  float y[5];
  DequantizeRow(GgmlType::kF16, f16.data(), y, 5);
  EXPECT_EQ(y[0], std::numeric_limits<float>::infinity());
  EXPECT_TRUE(y[1] == 0.0f && std::signbit(y[1]));
  EXPECT_EQ(y[2], std::ldexp(1.0f, -24));
  EXPECT_EQ(y[3], 65504.0f);
  EXPECT_TRUE(std::isnan(y[4]));
  const std::string bf16 = Bytes({0x80, 0x3f, 0x20, 0xc0, 0x80, 0x7f});
  DequantizeRow(GgmlType::kBF16, bf16.data(), y, 3);
  EXPECT_EQ(y[0], 1.0f);
  EXPECT_EQ(y[1], -2.5f);
  EXPECT_EQ(y[2], std::numeric_limits<float>::infinity());
}

}  // namespace
}  // namespace awq
