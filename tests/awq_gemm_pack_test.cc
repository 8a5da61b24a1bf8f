// Tests for the on-disk layouts of quantized linears: AutoAWQ's GEMM packing (the worked example,
// an independent port of AutoAWQ's unpack_awq + reverse_awq_order, random round trips) and our
// bit-stream layout for 2..8 bits, plus the errors for shapes the layouts cannot hold.
#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <initializer_list>
#include <random>
#include <string>
#include <vector>

#include "awq/awq_checkpoint.h"
#include "awq/error.h"
#include "awq/half.h"
#include "awq/quantizer.h"
#include "format/pack/awq_gemm.h"
#include "format/pack/awq_packed.h"
#include "test_util.h"

namespace awq {
namespace {

using test::ExpectError;

std::vector<float> RandomWeights(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.03f);
  std::vector<float> w(static_cast<size_t>(n));
  for (float& x : w) x = normal(rng);
  return w;
}

// A linear with out = 8 and in = 1 whose codes are given per output column.
QuantizedLinear Column(const std::vector<uint8_t>& codes, uint8_t zero = 0) {
  QuantizedLinear q;
  q.out = static_cast<int64_t>(codes.size());
  q.in = 1;
  q.params = {4, -1, true};
  q.q = codes;
  q.scales.assign(codes.size(), 1.0f);
  q.zeros.assign(codes.size(), zero);
  return q;
}

void ExpectSameLinear(const QuantizedLinear& a, const QuantizedLinear& b) {
  EXPECT_EQ(a.out, b.out);
  EXPECT_EQ(a.in, b.in);
  EXPECT_EQ(a.params.bits, b.params.bits);
  EXPECT_EQ(a.params.group_size, b.params.group_size);
  EXPECT_EQ(a.params.zero_point, b.params.zero_point);
  EXPECT_EQ(a.q, b.q);
  EXPECT_EQ(a.scales, b.scales);  // fp16-representable, so exact through the F16 tensor
  EXPECT_EQ(a.zeros, b.zeros);
}

// AutoAWQ's dequantize_gemm (awq/utils/packing_utils.py) transcribed: shift every word by
// 0, 4, ..., 28 to get 8 nibbles per word in nibble order, then permute each run of 8 columns
// with AWQ_REVERSE_ORDER, then (q - z) * s with scales and zeros repeated over the group.
// Independent of pack::UnpackGemmWord so that a shared mistake cannot pass.
std::vector<float> AutoAwqDequantize(const Tensor& qweight, const Tensor& qzeros,
                                     const Tensor& scales, int64_t group_size) {
  const int reverse[8] = {0, 4, 1, 5, 2, 6, 3, 7};
  const auto unpack = [&](const Tensor& t) {
    const int64_t rows = t.dim(0), words = t.dim(1);
    std::vector<int> nib(static_cast<size_t>(rows * words * 8));
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < words; ++c) {
        const uint32_t w = static_cast<uint32_t>(t.data<int32_t>()[r * words + c]);
        for (int s = 0; s < 8; ++s) nib[(r * words + c) * 8 + s] = (w >> (4 * s)) & 0xF;
      }
    }
    // iweights[:, reverse_order_tensor]: logical column 8c + j takes unpacked column
    // 8c + reverse[j].
    std::vector<int> out(nib.size());
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t col = 0; col < words * 8; ++col) {
        out[r * words * 8 + col] = nib[r * words * 8 + (col / 8) * 8 + reverse[col % 8]];
      }
    }
    return out;
  };
  const std::vector<int> iw = unpack(qweight), iz = unpack(qzeros);
  const Tensor s = scales.ToF32();
  const int64_t in = qweight.dim(0), out = qweight.dim(1) * 8;
  std::vector<float> w(static_cast<size_t>(in * out));  // [in, out], as AutoAWQ returns it
  for (int64_t i = 0; i < in; ++i) {
    const int64_t g = i / group_size;
    for (int64_t o = 0; o < out; ++o) {
      w[i * out + o] =
          static_cast<float>(iw[i * out + o] - iz[g * out + o]) * s.data<float>()[g * out + o];
    }
  }
  return w;
}

TEST(AwqGemmPackTest, WorkedExample) {
  // Logical columns 0..7 holding 0..7 pack to 0x75316420, bytes 20 64 31 75 on disk.
  const AwqGemmTensors t = PackAwqGemm(Column({0, 1, 2, 3, 4, 5, 6, 7}));
  ASSERT_EQ(t.qweight.shape(), Shape({1, 1}));
  EXPECT_EQ(static_cast<uint32_t>(t.qweight.data<int32_t>()[0]), 0x75316420u);
  const uint8_t want[4] = {0x20, 0x64, 0x31, 0x75};
  EXPECT_EQ(std::memcmp(t.qweight.raw(), want, 4), 0);
  EXPECT_EQ(t.qzeros.data<int32_t>()[0], 0);
  EXPECT_EQ(t.scales.dtype(), DType::kF16);
  EXPECT_EQ(t.scales.shape(), Shape({1, 8}));
  // And back.
  const QuantizedLinear back = UnpackAwqGemm(t.qweight, t.qzeros, t.scales, 4, -1, "x");
  EXPECT_EQ(back.q, std::vector<uint8_t>({0, 1, 2, 3, 4, 5, 6, 7}));
}

TEST(AwqGemmPackTest, WordHelpersInvertEachOther) {
  std::mt19937 rng(3);
  for (int trial = 0; trial < 1000; ++trial) {
    uint8_t codes[8], back[8];
    for (uint8_t& c : codes) c = static_cast<uint8_t>(rng() & 0xF);
    pack::UnpackGemmWord(pack::PackGemmWord(codes), back);
    ASSERT_EQ(std::memcmp(codes, back, 8), 0);
  }
  // A single column lands in its nibble: column 1 -> nibble 4 (bits 16..19).
  uint8_t one[8] = {0, 0xF, 0, 0, 0, 0, 0, 0};
  EXPECT_EQ(pack::PackGemmWord(one), 0x000F0000u);
}

TEST(AwqGemmPackTest, RandomRoundTrips) {
  for (int64_t group : {32, 64, 128, -1}) {
    for (bool zp : {true, false}) {
      const int64_t out = 48, in = 256;
      const std::vector<float> w = RandomWeights(out * in, static_cast<uint32_t>(group + 7));
      const QuantizedLinear q = QuantizeLinear(w.data(), out, in, {4, group, zp});
      const AwqGemmTensors t = PackAwqGemm(q);
      const int64_t ng = group == -1 ? 1 : in / group;
      EXPECT_EQ(t.qweight.shape(), Shape({in, out / 8}));
      EXPECT_EQ(t.qzeros.shape(), Shape({ng, out / 8}));
      EXPECT_EQ(t.scales.shape(), Shape({ng, out}));
      ExpectSameLinear(UnpackAwqGemm(t.qweight, t.qzeros, t.scales, 4, group, "m", zp), q);

      // AutoAWQ's unpacking yields the same weights as ours.
      std::vector<float> ours(static_cast<size_t>(out * in));
      DequantizeLinear(q, ours.data());
      const std::vector<float> theirs =
          AutoAwqDequantize(t.qweight, t.qzeros, t.scales, group == -1 ? in : group);
      for (int64_t o = 0; o < out; ++o) {
        for (int64_t i = 0; i < in; ++i) {
          ASSERT_EQ(ours[o * in + i], theirs[i * out + o]) << "group " << group << " zp " << zp;
        }
      }
    }
  }
}

TEST(AwqGemmPackTest, SymmetricStoresTheImplicitZero) {
  const std::vector<float> w = RandomWeights(8 * 64, 5);
  const QuantizedLinear q = QuantizeLinear(w.data(), 8, 64, {4, 32, false});
  const AwqGemmTensors t = PackAwqGemm(q);
  for (int64_t i = 0; i < t.qzeros.numel(); ++i) {
    EXPECT_EQ(static_cast<uint32_t>(t.qzeros.data<int32_t>()[i]), 0x88888888u);
  }
  // Read as zero-point weights, they dequantize the same.
  const QuantizedLinear as_zp = UnpackAwqGemm(t.qweight, t.qzeros, t.scales, 4, 32, "m", true);
  std::vector<float> a(8 * 64), b(8 * 64);
  DequantizeLinear(q, a.data());
  DequantizeLinear(as_zp, b.data());
  EXPECT_EQ(a, b);
  // A symmetric read of zero-point data is refused.
  const QuantizedLinear zp = QuantizeLinear(w.data(), 8, 64, {4, 32, true});
  const AwqGemmTensors tz = PackAwqGemm(zp);
  ExpectError([&] { UnpackAwqGemm(tz.qweight, tz.qzeros, tz.scales, 4, 32, "m.x", false); },
              {"m.x.qzeros", "zero_point is off"});
}

TEST(AwqGemmPackTest, Errors) {
  const std::vector<float> w = RandomWeights(12 * 64, 1);
  ExpectError(
      [&] {
        PackAwqGemm(QuantizeLinear(w.data(), 12, 64, {4, 32, true}));
      },
      {"output width 12 is not a multiple of 8"});
  ExpectError([&] { PackAwqGemm(QuantizeLinear(w.data(), 8, 64, {3, 32, true})); }, {"bits = 3"});
  const AwqGemmTensors t = PackAwqGemm(QuantizeLinear(w.data(), 8, 64, {4, 32, true}));
  ExpectError([&] { UnpackAwqGemm(t.qweight, t.qzeros, t.scales, 4, 64, "layer.q"); },
              {"layer.q.scales", "2 groups", "group size 64"});
  ExpectError([&] { UnpackAwqGemm(t.qweight, t.qzeros, t.scales, 4, 48, "layer.q"); },
              {"group size 48 does not divide input width 64"});
  ExpectError([&] { UnpackAwqGemm(t.qweight, t.qzeros, t.scales, 8, 32, "layer.q"); },
              {"layer.q", "bits = 8"});
  ExpectError([&] { UnpackAwqGemm(t.qweight, t.qweight, t.scales, 4, 32, "layer.q"); },
              {"layer.q.qzeros", "[64, 1]", "expected [2, 1]"});
  ExpectError([&] { UnpackAwqGemm(t.scales, t.qzeros, t.scales, 4, 32, "layer.q"); },
              {"layer.q.qweight", "I32", "F16"});
  ExpectError([&] { UnpackAwqGemm(t.qweight, t.qzeros, t.qzeros, 4, 32, "layer.q"); },
              {"layer.q.scales", "I32"});
}

TEST(AwqPackedTest, BitStreamExample) {
  // bits 3, codes 1 2 3 4 5 6 7 0 1 2 3 (docs/LAYOUTS.md): column 10 straddles the two words.
  QuantizedLinear q;
  q.out = 11;
  q.in = 1;
  q.params = {3, -1, true};
  q.q = {1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3};
  q.scales.assign(11, 0.5f);
  q.zeros.assign(11, 4);
  const AwqPackedTensors t = PackAwqPacked(q);
  ASSERT_EQ(t.qweight.shape(), Shape({1, 2}));
  uint32_t want0 = 0;
  for (int o = 0; o < 11; ++o) want0 |= static_cast<uint32_t>(q.q[o]) << (3 * o);  // drops bit
  EXPECT_EQ(static_cast<uint32_t>(t.qweight.data<int32_t>()[0]), want0);
  EXPECT_EQ(static_cast<uint32_t>(t.qweight.data<int32_t>()[0]) >> 30, 3u);  // col 10, low bits
  EXPECT_EQ(t.qweight.data<int32_t>()[1], 0);  // col 10's high bit is 0
  ExpectSameLinear(UnpackAwqPacked(t.qweight, t.qzeros, t.scales, 3, -1, "m"), q);
  // With 4 bits the stream is plain sequential nibbles: 0..7 -> 0x76543210.
  const AwqPackedTensors t4 = PackAwqPacked(Column({0, 1, 2, 3, 4, 5, 6, 7}));
  EXPECT_EQ(static_cast<uint32_t>(t4.qweight.data<int32_t>()[0]), 0x76543210u);
}

TEST(AwqPackedTest, RandomRoundTripsEveryWidth) {
  for (int bits = 2; bits <= 8; ++bits) {
    for (int64_t out : {1, 11, 13, 40}) {
      for (int64_t group : {32, -1}) {
        for (bool zp : {true, false}) {
          const std::vector<float> w = RandomWeights(out * 96, bits * 100 + out);
          const QuantizedLinear q = QuantizeLinear(w.data(), out, 96, {bits, group, zp});
          const AwqPackedTensors t = PackAwqPacked(q);
          EXPECT_EQ(t.qweight.shape(), Shape({96, (out * bits + 31) / 32}));
          ExpectSameLinear(UnpackAwqPacked(t.qweight, t.qzeros, t.scales, bits, group, "m", zp), q);
        }
      }
    }
  }
}

TEST(AwqPackedTest, Errors) {
  const std::vector<float> w = RandomWeights(8 * 64, 2);
  const AwqPackedTensors t = PackAwqPacked(QuantizeLinear(w.data(), 8, 64, {3, 32, true}));
  // (Bits 3 and 4 both fit 8 columns into one word: the config, not the shape, says which.)
  ExpectError([&] { UnpackAwqPacked(t.qweight, t.qzeros, t.scales, 5, 32, "p"); },
              {"p.qweight", "expected [64, 2]"});
  ExpectError([&] { UnpackAwqPacked(t.qweight, t.qzeros, t.scales, 9, 32, "p"); }, {"bits = 9"});
  ExpectError([&] { UnpackAwqPacked(t.qweight, t.qweight, t.scales, 3, 32, "p"); },
              {"p.qzeros", "expected [2, 1]"});
}

}  // namespace
}  // namespace awq
