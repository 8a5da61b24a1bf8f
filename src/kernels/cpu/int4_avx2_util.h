// Helpers shared by the AVX2 int4 kernels; include only from *_avx2.cc files (built with -mavx2).
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "kernels/cpu/int4_layout.h"

namespace awq {

// Writes (or adds) the 8 results of row block b to y, the last block clipped to `out` rows.
inline void StoreRowBlock(__m256 r, float* y, int64_t b, int64_t out, bool accumulate) {
  float* yb = y + b * kInt4Rows;
  const int64_t valid = out - b * kInt4Rows < kInt4Rows ? out - b * kInt4Rows : kInt4Rows;
  if (valid == kInt4Rows) {
    _mm256_storeu_ps(yb, accumulate ? _mm256_add_ps(_mm256_loadu_ps(yb), r) : r);
    return;
  }
  alignas(32) float tmp[8];
  _mm256_store_ps(tmp, r);
  for (int64_t i = 0; i < valid; ++i) yb[i] = accumulate ? yb[i] + tmp[i] : tmp[i];
}

}  // namespace awq
