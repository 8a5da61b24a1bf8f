// Internal view of the Int4Matrix layout shared by the packer, the scalar oracle and the SIMD
// kernels, and the per-ISA entry points that int4_dispatch.cc chooses between.
#pragma once

#include <cstdint>

#include "awq/int4_kernels.h"

namespace awq {

// Code of row 8b + r at input k (k relative to the row's start) of matrix w.
inline int Int4Code(const Int4Matrix& w, int64_t b, int r, int64_t k) {
  const int64_t g = k / w.group_size, c = (k % w.group_size) / kInt4Inputs;
  const Int4Codes& slot = w.group(b, g)[1 + c];
  return static_cast<int>((slot.row[r] >> (4 * (k % kInt4Inputs))) & 0xF);
}

// The implementations; arguments already checked by Int4Linear.
void Int4LinearRef(const Int4Matrix& w, const float* x, int64_t ldx, int64_t m, float* y,
                   int64_t ldy, bool accumulate, ThreadPool& pool);
void Int4LinearAvx2(const Int4Matrix& w, const float* x, int64_t ldx, int64_t m, float* y,
                    int64_t ldy, bool accumulate, ThreadPool& pool);

}  // namespace awq
