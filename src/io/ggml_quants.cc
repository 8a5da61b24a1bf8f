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
#include "io/ggml_blocks.h"
#include "io/ggml_iq4nl.h"

namespace awq {
namespace {

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
    {20, "IQ4_NL", kIq4NlBlockElems, kIq4NlBlockBytes, DequantizeIq4NlRow},
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
                "Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL)");
  }
  AWQ_CHECK(n >= 0 && n % tr->block_elems == 0);
  tr->dequant(static_cast<const uint8_t*>(src), dst, n);
}

}  // namespace awq
