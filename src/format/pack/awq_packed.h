// Our packed layout for linears of 2..8 bits ("version": "awqcpp_packed"): per input row, the
// codes of all output columns as one little-endian bit stream of int32 words.
//
//   qweight [in, W] int32, W = ceil(out * bits / 32). Row i is the bit stream
//   b_0 b_1 b_2 ... where word k holds stream bits 32k..32k+31 (bit 0 = least significant) and
//   the code of output column o occupies stream bits [o*bits, (o+1)*bits), least significant
//   bit first. Codes may straddle two words (bits 3, 5, 6, 7); the tail of the last word is 0.
//   Example, bits = 3, codes of columns 0..10 = 1 2 3 4 5 6 7 0 1 2 3:
//
//     word 0: bit 31..30 = low 2 bits of col 10 (3 -> 11), bits 29..27 = col 9 (010),
//             ..., bits 5..3 = col 1 (010), bits 2..0 = col 0 (001)
//     word 1: bit 0 = high bit of col 10 (0), bits 31..1 = 0
//
//   With bits = 4 this is sequential nibbles: column 8c + n in nibble n of word c (no GEMM
//   interleave). qzeros [in/g, W] int32 packs the zeros the same way; scales [in/g, out] fp16,
//   exactly as in the GEMM layout.
#pragma once

#include <cstdint>

namespace awq::pack {

// Words per packed row of `out` codes of `bits` bits.
inline int64_t PackedWords(int64_t out, int bits) { return (out * bits + 31) / 32; }

// Writes `code` (< 2^bits) at column o of a zeroed row of words.
inline void PutCode(uint32_t* row, int64_t o, int bits, uint32_t code) {
  const int64_t bit = o * bits;
  const int64_t word = bit / 32;
  const int off = static_cast<int>(bit % 32);
  row[word] |= code << off;
  if (off + bits > 32) row[word + 1] |= code >> (32 - off);
}

inline uint32_t GetCode(const uint32_t* row, int64_t o, int bits) {
  const int64_t bit = o * bits;
  const int64_t word = bit / 32;
  const int off = static_cast<int>(bit % 32);
  uint32_t v = row[word] >> off;
  if (off + bits > 32) v |= row[word + 1] << (32 - off);
  return v & ((1u << bits) - 1);
}

}  // namespace awq::pack
