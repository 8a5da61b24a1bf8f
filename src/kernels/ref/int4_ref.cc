// Scalar oracle for Int4Linear (also the fallback on CPUs without AVX2): dequantize one output
// row to fp32 as (q - z) * s, then plain sequential fp32 dot products with every input row.
#include <vector>

#include "awq/half.h"
#include "awq/thread_pool.h"
#include "kernels/cpu/int4_layout.h"

namespace awq {

void Int4LinearRef(const Int4Matrix& w, const float* x, int64_t ldx, int64_t m, float* y,
                   int64_t ldy, bool accumulate, ThreadPool& pool) {
  const int64_t gs = w.group_size, ng = w.n_groups();
  pool.ParallelFor(
      w.out,
      [&](int64_t o0, int64_t o1, int) {
        std::vector<float> row(static_cast<size_t>(w.in));
        for (int64_t o = o0; o < o1; ++o) {
          const int64_t b = o / kInt4Rows;
          const int r = static_cast<int>(o % kInt4Rows);
          for (int64_t g = 0; g < ng; ++g) {
            const Int4GroupHeader h = w.Header(b, g);
            const float s = Fp16ToFp32(h.scale[r]);
            const int z = static_cast<int>(Fp16ToFp32(h.zero[r]));
            for (int64_t k = g * gs; k < (g + 1) * gs; ++k) {
              row[k] = static_cast<float>(Int4Code(w, b, r, k) - z) * s;  // exact in fp32
            }
          }
          for (int64_t i = 0; i < m; ++i) {
            const float* xi = x + i * ldx;
            float acc = 0.0f;
            for (int64_t k = 0; k < w.in; ++k) acc += xi[k] * row[k];
            y[i * ldy + o] = accumulate ? y[i * ldy + o] + acc : acc;
          }
        }
      },
      kInt4Rows);
}

}  // namespace awq
