// ggml's quantized block layouts (ggml-common.h), shared by the dequantizers (ggml_quants.cc) and
// the quantizers (ggml_quantize.cc). Private to src/.
//
// Every multi-byte field is little-endian and blocks are packed back to back with no padding, so
// a row of n values of a type is n / block_elems blocks of sizeof(Block) bytes. Blocks inside a
// file or a caller's buffer may be unaligned: copy them in and out with memcpy.
#pragma once

#include <cstdint>

namespace awq {

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

}  // namespace awq
