// ggml tensor types: names, block sizes, and scalar dequantization of the block formats to fp32.
//
// The block layouts follow ggml (ggml-common.h); every multi-byte field is little-endian and the
// blocks are packed back to back with no padding. Each dequantizer walks whole blocks and writes
// the elements in ggml's order, computing with the same float operations in the same order as
// ggml's dequantize_row_* reference code, so results are bit-identical to llama.cpp and gguf-py.
#include <cstring>
#include <string>

#include "awq/error.h"
#include "awq/gguf.h"
#include "awq/half.h"

namespace awq {
namespace {

constexpr int kQK = 32;    // elements per block of the "legacy" formats (Q4_0 ... Q8_1)
constexpr int kQKK = 256;  // elements per super-block of the K formats
constexpr int kKScaleSize = 12;

// Q4_0: 32 weights, x = d * (q - 8), q in [0, 15].
//   d      fp16
//   qs[16] byte j = q[j] (low nibble) | q[j + 16] << 4 (high nibble)
struct BlockQ4_0 {
  uint16_t d;
  uint8_t qs[kQK / 2];
};
static_assert(sizeof(BlockQ4_0) == 18, "Q4_0 block must be 18 bytes");

// Q4_1: 32 weights, x = d * q + m, q in [0, 15]; qs nibbles as in Q4_0.
struct BlockQ4_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qs[kQK / 2];
};
static_assert(sizeof(BlockQ4_1) == 20, "Q4_1 block must be 20 bytes");

// Q5_0: 32 weights, x = d * (q - 16), q in [0, 31].
//   d      fp16
//   qh[4]  little-endian uint32, bit j = bit 4 of q[j]
//   qs[16] low 4 bits, nibbles as in Q4_0
struct BlockQ5_0 {
  uint16_t d;
  uint8_t qh[4];
  uint8_t qs[kQK / 2];
};
static_assert(sizeof(BlockQ5_0) == 22, "Q5_0 block must be 22 bytes");

// Q5_1: 32 weights, x = d * q + m, q in [0, 31]; qh and qs as in Q5_0.
struct BlockQ5_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qh[4];
  uint8_t qs[kQK / 2];
};
static_assert(sizeof(BlockQ5_1) == 24, "Q5_1 block must be 24 bytes");

// Q8_0: 32 weights, x = d * q, q int8.
struct BlockQ8_0 {
  uint16_t d;
  int8_t qs[kQK];
};
static_assert(sizeof(BlockQ8_0) == 34, "Q8_0 block must be 34 bytes");

// Q2_K: 256 weights in 16 groups of 16, x = d * sc[g] * q - dmin * m[g], q in [0, 3].
//   scales[16] byte g = sc[g] (low nibble) | m[g] << 4
//   qs[64]     two halves of 32 bytes, each covering 128 weights: bits 2s..2s+1 of byte l of
//              half h hold weight 128h + 32s + l
//   d, dmin    fp16 super-block scales
struct BlockQ2K {
  uint8_t scales[kQKK / 16];
  uint8_t qs[kQKK / 4];
  uint16_t d;
  uint16_t dmin;
};
static_assert(sizeof(BlockQ2K) == 84, "Q2_K block must be 84 bytes");

// Q3_K: 256 weights in 16 groups of 16, x = d * (sc[g] - 32) * (q - 4 * !hbit), q in [0, 3].
//   hmask[32]  bit s of byte l = high bit of weight 32s + l (set means "no -4 offset")
//   qs[64]     low 2 bits, laid out as Q2_K's qs
//   scales[12] sixteen 6-bit scales: bytes 0..7 hold the low nibbles (group g < 8 in the low
//              nibble of byte g, group g >= 8 in the high nibble of byte g - 8); bytes 8..11
//              hold the high 2 bits (group g in bits 2*(g/4) of byte 8 + g%4)
//   d          fp16
struct BlockQ3K {
  uint8_t hmask[kQKK / 8];
  uint8_t qs[kQKK / 4];
  uint8_t scales[kKScaleSize];
  uint16_t d;
};
static_assert(sizeof(BlockQ3K) == 110, "Q3_K block must be 110 bytes");

// Q4_K: 256 weights in 8 groups of 32, x = d * sc[g] * q - dmin * m[g], q in [0, 15].
//   d, dmin    fp16
//   scales[12] eight 6-bit scales and eight 6-bit mins (see ScaleMinK4):
//                0..3  EEAAAAAA  sc[0..3] in bits 0-5, bits 4-5 of sc[4..7] in bits 6-7
//                4..7  eeaaaaaa  m[0..3] in bits 0-5, bits 4-5 of m[4..7] in bits 6-7
//                8..11 eeeeEEEE  low nibble: bits 0-3 of sc[4..7]; high: bits 0-3 of m[4..7]
//   qs[128]    four chunks of 32 bytes; chunk c holds group 2c in low nibbles, 2c+1 in high
struct BlockQ4K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[kKScaleSize];
  uint8_t qs[kQKK / 2];
};
static_assert(sizeof(BlockQ4K) == 144, "Q4_K block must be 144 bytes");

// Q5_K: as Q4_K plus a fifth bit: q in [0, 31].
//   qh[32]  bit b of byte l = bit 4 of weight 32b + l
struct BlockQ5K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[kKScaleSize];
  uint8_t qh[kQKK / 8];
  uint8_t qs[kQKK / 2];
};
static_assert(sizeof(BlockQ5K) == 176, "Q5_K block must be 176 bytes");

// Q6_K: 256 weights in 16 groups of 16, x = d * sc[g] * (q - 32), q in [0, 63].
//   ql[128]    low 4 bits: two halves of 64 bytes, each covering 128 weights; byte l of a half
//              holds weight l (low nibble) and l + 64 (high nibble), l in [0, 64)
//   qh[64]     high 2 bits: two halves of 32 bytes; bits 2s..2s+1 of byte l hold weight 32s + l
//   scales[16] int8 group scales
//   d          fp16
struct BlockQ6K {
  uint8_t ql[kQKK / 2];
  uint8_t qh[kQKK / 4];
  int8_t scales[kQKK / 16];
  uint16_t d;
};
static_assert(sizeof(BlockQ6K) == 210, "Q6_K block must be 210 bytes");

// Blocks are read with memcpy: tensor data inside a file is only guaranteed to be aligned to
// the file's alignment, and unaligned struct access would be undefined behaviour.
template <class Block>
Block LoadBlock(const uint8_t* p) {
  Block b;
  std::memcpy(&b, p, sizeof(Block));
  return b;
}

void DequantF32(const uint8_t* src, float* y, int64_t n) {
  std::memcpy(y, src, static_cast<size_t>(n) * sizeof(float));
}

void DequantF16(const uint8_t* src, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, src + 2 * i, 2);
    y[i] = Fp16ToFp32(h);
  }
}

void DequantBF16(const uint8_t* src, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, src + 2 * i, 2);
    y[i] = Bf16ToFp32(h);
  }
}

void DequantQ4_0(const uint8_t* src, float* y, int64_t n) {
  for (int64_t b = 0; b < n / kQK; ++b, y += kQK) {
    const auto x = LoadBlock<BlockQ4_0>(src + b * sizeof(BlockQ4_0));
    const float d = Fp16ToFp32(x.d);
    for (int j = 0; j < kQK / 2; ++j) {
      y[j] = static_cast<float>((x.qs[j] & 0x0f) - 8) * d;
      y[j + kQK / 2] = static_cast<float>((x.qs[j] >> 4) - 8) * d;
    }
  }
}

void DequantQ4_1(const uint8_t* src, float* y, int64_t n) {
  for (int64_t b = 0; b < n / kQK; ++b, y += kQK) {
    const auto x = LoadBlock<BlockQ4_1>(src + b * sizeof(BlockQ4_1));
    const float d = Fp16ToFp32(x.d);
    const float m = Fp16ToFp32(x.m);
    for (int j = 0; j < kQK / 2; ++j) {
      y[j] = static_cast<float>(x.qs[j] & 0x0f) * d + m;
      y[j + kQK / 2] = static_cast<float>(x.qs[j] >> 4) * d + m;
    }
  }
}

void DequantQ5_0(const uint8_t* src, float* y, int64_t n) {
  for (int64_t b = 0; b < n / kQK; ++b, y += kQK) {
    const auto x = LoadBlock<BlockQ5_0>(src + b * sizeof(BlockQ5_0));
    const float d = Fp16ToFp32(x.d);
    const uint32_t qh = uint32_t{x.qh[0]} | uint32_t{x.qh[1]} << 8 | uint32_t{x.qh[2]} << 16 |
                        uint32_t{x.qh[3]} << 24;
    for (int j = 0; j < kQK / 2; ++j) {
      const int h0 = static_cast<int>((qh >> j) << 4 & 0x10);
      const int h1 = static_cast<int>(qh >> (j + 12) & 0x10);
      y[j] = static_cast<float>(((x.qs[j] & 0x0f) | h0) - 16) * d;
      y[j + kQK / 2] = static_cast<float>(((x.qs[j] >> 4) | h1) - 16) * d;
    }
  }
}

void DequantQ5_1(const uint8_t* src, float* y, int64_t n) {
  for (int64_t b = 0; b < n / kQK; ++b, y += kQK) {
    const auto x = LoadBlock<BlockQ5_1>(src + b * sizeof(BlockQ5_1));
    const float d = Fp16ToFp32(x.d);
    const float m = Fp16ToFp32(x.m);
    const uint32_t qh = uint32_t{x.qh[0]} | uint32_t{x.qh[1]} << 8 | uint32_t{x.qh[2]} << 16 |
                        uint32_t{x.qh[3]} << 24;
    for (int j = 0; j < kQK / 2; ++j) {
      const int h0 = static_cast<int>((qh >> j) << 4 & 0x10);
      const int h1 = static_cast<int>(qh >> (j + 12) & 0x10);
      y[j] = static_cast<float>((x.qs[j] & 0x0f) | h0) * d + m;
      y[j + kQK / 2] = static_cast<float>((x.qs[j] >> 4) | h1) * d + m;
    }
  }
}

void DequantQ8_0(const uint8_t* src, float* y, int64_t n) {
  for (int64_t b = 0; b < n / kQK; ++b, y += kQK) {
    const auto x = LoadBlock<BlockQ8_0>(src + b * sizeof(BlockQ8_0));
    const float d = Fp16ToFp32(x.d);
    for (int j = 0; j < kQK; ++j) y[j] = static_cast<float>(x.qs[j]) * d;
  }
}

void DequantQ2K(const uint8_t* src, float* y, int64_t n) {
  for (int64_t b = 0; b < n / kQKK; ++b) {
    const auto x = LoadBlock<BlockQ2K>(src + b * sizeof(BlockQ2K));
    const float d = Fp16ToFp32(x.d);
    const float dmin = Fp16ToFp32(x.dmin);
    const uint8_t* q = x.qs;
    int g = 0;
    for (int half = 0; half < 2; ++half, q += 32) {
      for (int shift = 0; shift < 8; shift += 2) {
        // Two groups of 16 share each 2-bit plane of the 32 bytes.
        for (int part = 0; part < 2; ++part, ++g) {
          const float dl = d * static_cast<float>(x.scales[g] & 0x0f);
          const float ml = dmin * static_cast<float>(x.scales[g] >> 4);
          for (int l = 0; l < 16; ++l) {
            *y++ = dl * static_cast<float>((q[16 * part + l] >> shift) & 3) - ml;
          }
        }
      }
    }
  }
}

// The 6-bit scale of Q3_K group g in [0, 16), before the -32 offset.
inline int ScaleQ3K(const uint8_t* s, int g) {
  const int low = g < 8 ? (s[g] & 0x0f) : (s[g - 8] >> 4);
  const int high = (s[8 + g % 4] >> (2 * (g / 4))) & 3;
  return low | high << 4;
}

void DequantQ3K(const uint8_t* src, float* y, int64_t n) {
  for (int64_t b = 0; b < n / kQKK; ++b) {
    const auto x = LoadBlock<BlockQ3K>(src + b * sizeof(BlockQ3K));
    const float d_all = Fp16ToFp32(x.d);
    const uint8_t* q = x.qs;
    uint8_t hbit = 1;
    int g = 0;
    for (int half = 0; half < 2; ++half, q += 32) {
      for (int shift = 0; shift < 8; shift += 2, hbit <<= 1) {
        for (int part = 0; part < 2; ++part, ++g) {
          const float dl = d_all * static_cast<float>(ScaleQ3K(x.scales, g) - 32);
          for (int l = 16 * part; l < 16 * part + 16; ++l) {
            const int v = ((q[l] >> shift) & 3) - ((x.hmask[l] & hbit) ? 0 : 4);
            *y++ = dl * static_cast<float>(v);
          }
        }
      }
    }
  }
}

// Scale and min of Q4_K/Q5_K group j in [0, 8), both 6-bit (layout drawn at BlockQ4K).
inline void ScaleMinK4(const uint8_t* s, int j, int* sc, int* m) {
  if (j < 4) {
    *sc = s[j] & 63;
    *m = s[j + 4] & 63;
  } else {
    *sc = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
    *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

void DequantQ4K(const uint8_t* src, float* y, int64_t n) {
  for (int64_t b = 0; b < n / kQKK; ++b) {
    const auto x = LoadBlock<BlockQ4K>(src + b * sizeof(BlockQ4K));
    const float d = Fp16ToFp32(x.d);
    const float dmin = Fp16ToFp32(x.dmin);
    const uint8_t* q = x.qs;
    for (int g = 0; g < 8; g += 2, q += 32) {
      int sc, m;
      ScaleMinK4(x.scales, g, &sc, &m);
      const float d1 = d * static_cast<float>(sc);
      const float m1 = dmin * static_cast<float>(m);
      ScaleMinK4(x.scales, g + 1, &sc, &m);
      const float d2 = d * static_cast<float>(sc);
      const float m2 = dmin * static_cast<float>(m);
      for (int l = 0; l < 32; ++l) *y++ = d1 * static_cast<float>(q[l] & 0x0f) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * static_cast<float>(q[l] >> 4) - m2;
    }
  }
}

void DequantQ5K(const uint8_t* src, float* y, int64_t n) {
  for (int64_t b = 0; b < n / kQKK; ++b) {
    const auto x = LoadBlock<BlockQ5K>(src + b * sizeof(BlockQ5K));
    const float d = Fp16ToFp32(x.d);
    const float dmin = Fp16ToFp32(x.dmin);
    const uint8_t* ql = x.qs;
    uint8_t u1 = 1, u2 = 2;  // the qh bits of the two groups in this 64-weight chunk
    for (int g = 0; g < 8; g += 2, ql += 32, u1 <<= 2, u2 <<= 2) {
      int sc, m;
      ScaleMinK4(x.scales, g, &sc, &m);
      const float d1 = d * static_cast<float>(sc);
      const float m1 = dmin * static_cast<float>(m);
      ScaleMinK4(x.scales, g + 1, &sc, &m);
      const float d2 = d * static_cast<float>(sc);
      const float m2 = dmin * static_cast<float>(m);
      for (int l = 0; l < 32; ++l) {
        *y++ = d1 * static_cast<float>((ql[l] & 0x0f) + ((x.qh[l] & u1) ? 16 : 0)) - m1;
      }
      for (int l = 0; l < 32; ++l) {
        *y++ = d2 * static_cast<float>((ql[l] >> 4) + ((x.qh[l] & u2) ? 16 : 0)) - m2;
      }
    }
  }
}

void DequantQ6K(const uint8_t* src, float* y, int64_t n) {
  for (int64_t b = 0; b < n / kQKK; ++b) {
    const auto x = LoadBlock<BlockQ6K>(src + b * sizeof(BlockQ6K));
    const float d = Fp16ToFp32(x.d);
    const uint8_t* ql = x.ql;
    const uint8_t* qh = x.qh;
    const int8_t* sc = x.scales;
    for (int half = 0; half < 2; ++half, y += 128, ql += 64, qh += 32, sc += 8) {
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = ((ql[l] & 0x0f) | ((qh[l] >> 0) & 3) << 4) - 32;
        const int q2 = ((ql[l + 32] & 0x0f) | ((qh[l] >> 2) & 3) << 4) - 32;
        const int q3 = ((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32;
        const int q4 = ((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32;
        y[l + 0] = d * static_cast<float>(sc[is + 0]) * static_cast<float>(q1);
        y[l + 32] = d * static_cast<float>(sc[is + 2]) * static_cast<float>(q2);
        y[l + 64] = d * static_cast<float>(sc[is + 4]) * static_cast<float>(q3);
        y[l + 96] = d * static_cast<float>(sc[is + 6]) * static_cast<float>(q4);
      }
    }
  }
}

using DequantFn = void (*)(const uint8_t* src, float* y, int64_t n);

struct TypeTraits {
  uint32_t id;
  const char* name;
  int64_t block_elems;
  int64_t block_bytes;
  DequantFn dequant;  // null when awq.cpp cannot dequantize the type
};

// Every type ggml defines (so that files holding them still load and their bounds are
// checked); only some can be dequantized. Numbers 4, 5 and 31..33 were removed from ggml.
constexpr TypeTraits kTraits[] = {
    {0, "F32", 1, 4, DequantF32},
    {1, "F16", 1, 2, DequantF16},
    {2, "Q4_0", kQK, sizeof(BlockQ4_0), DequantQ4_0},
    {3, "Q4_1", kQK, sizeof(BlockQ4_1), DequantQ4_1},
    {6, "Q5_0", kQK, sizeof(BlockQ5_0), DequantQ5_0},
    {7, "Q5_1", kQK, sizeof(BlockQ5_1), DequantQ5_1},
    {8, "Q8_0", kQK, sizeof(BlockQ8_0), DequantQ8_0},
    {9, "Q8_1", kQK, 36, nullptr},
    {10, "Q2_K", kQKK, sizeof(BlockQ2K), DequantQ2K},
    {11, "Q3_K", kQKK, sizeof(BlockQ3K), DequantQ3K},
    {12, "Q4_K", kQKK, sizeof(BlockQ4K), DequantQ4K},
    {13, "Q5_K", kQKK, sizeof(BlockQ5K), DequantQ5K},
    {14, "Q6_K", kQKK, sizeof(BlockQ6K), DequantQ6K},
    {15, "Q8_K", kQKK, 292, nullptr},
    {16, "IQ2_XXS", kQKK, 66, nullptr},
    {17, "IQ2_XS", kQKK, 74, nullptr},
    {18, "IQ3_XXS", kQKK, 98, nullptr},
    {19, "IQ1_S", kQKK, 50, nullptr},
    {20, "IQ4_NL", kQK, 18, nullptr},
    {21, "IQ3_S", kQKK, 110, nullptr},
    {22, "IQ2_S", kQKK, 82, nullptr},
    {23, "IQ4_XS", kQKK, 136, nullptr},
    {24, "I8", 1, 1, nullptr},
    {25, "I16", 1, 2, nullptr},
    {26, "I32", 1, 4, nullptr},
    {27, "I64", 1, 8, nullptr},
    {28, "F64", 1, 8, nullptr},
    {29, "IQ1_M", kQKK, 56, nullptr},
    {30, "BF16", 1, 2, DequantBF16},
    {34, "TQ1_0", kQKK, 54, nullptr},
    {35, "TQ2_0", kQKK, 66, nullptr},
    {39, "MXFP4", kQK, 17, nullptr},
};

const TypeTraits* FindTraits(GgmlType t) {
  const auto id = static_cast<uint32_t>(t);
  for (const auto& tr : kTraits) {
    if (tr.id == id) return &tr;
  }
  return nullptr;
}

}  // namespace

std::string GgmlTypeName(GgmlType t) {
  if (const TypeTraits* tr = FindTraits(t)) return tr->name;
  return "type" + std::to_string(static_cast<uint32_t>(t));
}

bool GgmlTypeLayout(GgmlType t, int64_t* block_elems, int64_t* block_bytes) {
  const TypeTraits* tr = FindTraits(t);
  if (tr == nullptr) return false;
  *block_elems = tr->block_elems;
  *block_bytes = tr->block_bytes;
  return true;
}

bool GgmlCanDequantize(GgmlType t) {
  const TypeTraits* tr = FindTraits(t);
  return tr != nullptr && tr->dequant != nullptr;
}

void DequantizeRow(GgmlType t, const void* src, float* dst, int64_t n) {
  const TypeTraits* tr = FindTraits(t);
  if (tr == nullptr || tr->dequant == nullptr) {
    throw Error("DequantizeRow: ggml type " + GgmlTypeName(t) +
                " cannot be dequantized by awq.cpp (supported: F32, F16, BF16, Q4_0, Q4_1, "
                "Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K)");
  }
  AWQ_CHECK(n >= 0 && n % tr->block_elems == 0);
  tr->dequant(static_cast<const uint8_t*>(src), dst, n);
}

}  // namespace awq
