// AutoAWQ's GEMM layout for 4-bit linears: how 8 logical output columns share one int32.
//
//   qweight [in, out/8] int32, word (i, c), bits drawn most significant first:
//
//     31   28 27   24 23   20 19   16 15   12 11    8 7     4 3     0
//    +-------+-------+-------+-------+-------+-------+-------+-------+
//    | col 7 | col 5 | col 3 | col 1 | col 6 | col 4 | col 2 | col 0 |   (col j = 8c + j)
//    +-------+-------+-------+-------+-------+-------+-------+-------+
//     nibble 7 ...                                          nibble 0
//
//   nibble n holds logical column 8c + kAwqOrder[n]; column j sits at nibble kAwqReverseOrder[j].
//   The interleave lets the CUDA kernel turn one word into 8 fp16 values with two shifts per pair.
//   Worked example: columns 0..7 holding 0..7 -> 0x75316420, bytes 20 64 31 75 on disk.
//   qzeros [in/g, out/8] int32 packs the zeros the same way; scales [in/g, out] fp16.
#pragma once

#include <cstdint>

namespace awq::pack {

inline constexpr int kAwqOrder[8] = {0, 2, 4, 6, 1, 3, 5, 7};
inline constexpr int kAwqReverseOrder[8] = {0, 4, 1, 5, 2, 6, 3, 7};

// codes[j] (4-bit, logical column 8c + j) -> the packed word.
inline uint32_t PackGemmWord(const uint8_t* codes) {
  uint32_t w = 0;
  for (int n = 0; n < 8; ++n) w |= static_cast<uint32_t>(codes[kAwqOrder[n]] & 0xF) << (4 * n);
  return w;
}

// The packed word -> codes[j] of logical column 8c + j.
inline void UnpackGemmWord(uint32_t w, uint8_t* codes) {
  for (int j = 0; j < 8; ++j)
    codes[j] = static_cast<uint8_t>((w >> (4 * kAwqReverseOrder[j])) & 0xF);
}

}  // namespace awq::pack
