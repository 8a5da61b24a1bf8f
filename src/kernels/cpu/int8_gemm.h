// The driver shared by the int8-activation GEMMs (AVX2 and AVX-512 VNNI; prompts of m >= 2 rows
// on weight groups that are multiples of 16): x quantized once into panels, then each unit of
// weight rows swept over the panels that fit in L2. Include from the kernel sources only.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "awq/thread_pool.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/int4_layout.h"
#include "kernels/cpu/scratch.h"

namespace awq {

// A panel of kRows rows of x, quantized (blocks of 16 inputs): words [in / 4][kRows], block scales
// [in / 16][kRows], group sums [n_groups][kRows], so a micro-kernel reads each as one sequential
// stream. Rows past m are zero (their scales and sums too), which gives zero outputs.
template <int kRows>
struct Int8Panel {
  int32_t* words;
  float* scales;
  float* group_sums;

  static int64_t Floats(int64_t in, int64_t n_groups) {
    return (in / 4 + in / 16 + n_groups) * kRows;
  }
  static Int8Panel At(float* base, int64_t in) {
    float* scales = base + in / 4 * kRows;
    return {reinterpret_cast<int32_t*>(base), scales, scales + in / 16 * kRows};
  }

  // Row t from one row of x: the AVX2 quantizer where the CPU runs AVX2, else the scalar one it
  // equals bit for bit (the SIMDe builds of the tests on other CPUs).
  void QuantizeRow(const float* x, int64_t in, int64_t group_size, int t) const {
    const int64_t n_words = in / 4, n_blocks = in / 16, ng = in / group_size;
    float* row = ThreadScratch<8>(static_cast<size_t>(n_words + n_blocks + ng));
    int32_t* w = reinterpret_cast<int32_t*>(row);
    float* s = row + n_words;
    float* gsum = s + n_blocks;
#if defined(__x86_64__)
    if (CpuHasAvx2Fma16()) {
      QuantizeInt8Block16Avx2(x, in, group_size, w, s, gsum);
    } else
#endif
    {
      Int8Activations a;
      QuantizeActivationsInt8(x, in, group_size, &a);
      std::vector<int32_t> interleaved;
      InterleaveForSlots(a, &interleaved);
      std::copy(interleaved.begin(), interleaved.end(), w);
      std::copy(a.scale.begin(), a.scale.end(), s);
      std::copy(a.group_sum.begin(), a.group_sum.end(), gsum);
    }
    for (int64_t j = 0; j < n_words; ++j) words[j * kRows + t] = w[j];
    for (int64_t j = 0; j < n_blocks; ++j) scales[j * kRows + t] = s[j];
    for (int64_t g = 0; g < ng; ++g) group_sums[g * kRows + t] = gsum[g];
  }
};

// Panels a thread sweeps with each unit of weight rows before moving on: about 256 KiB, so they
// stay in L2 while the units stream past.
inline constexpr int64_t kInt8PanelChunkBytes = 256 << 10;

// Quantizes the m rows of x into panels of kRows (in the calling thread's scratch slot kSlot),
// then splits [0, units) over the pool in equal shares; each thread calls
// unit(u, row0, rows, panel) for each of its units and each panel of a chunk, then the next chunk.
// unit computes rows [row0, row0 + rows) of y for its weight rows.
template <int kRows, int kSlot, class Unit>
void GemmInt8Panels(const Int4Matrix& w, const float* x, int64_t ldx, int64_t m, int64_t units,
                    ThreadPool& pool, Unit unit) {
  const int64_t in = w.in, panels = (m + kRows - 1) / kRows;
  const int64_t per_panel = Int8Panel<kRows>::Floats(in, w.n_groups());
  float* buf = ThreadScratch<kSlot>(static_cast<size_t>(panels * per_panel));
  pool.ParallelFor(panels, [&](int64_t p0, int64_t p1, int) {
    for (int64_t p = p0; p < p1; ++p) {
      const int rows = static_cast<int>(std::min<int64_t>(kRows, m - p * kRows));
      float* base = buf + p * per_panel;
      if (rows < kRows) std::fill(base, base + per_panel, 0.0f);  // all-zero bits: 0 and 0.0f
      const auto panel = Int8Panel<kRows>::At(base, in);
      for (int t = 0; t < rows; ++t)
        panel.QuantizeRow(x + (p * kRows + t) * ldx, in, w.group_size, t);
    }
  });
  const int64_t chunk = std::max<int64_t>(
      1, kInt8PanelChunkBytes / (per_panel * static_cast<int64_t>(sizeof(float))));
  pool.ParallelFor(units, [&](int64_t u0, int64_t u1, int) {
    for (int64_t c0 = 0; c0 < panels; c0 += chunk) {
      const int64_t c1 = std::min(panels, c0 + chunk);
      for (int64_t u = u0; u < u1; ++u) {
        for (int64_t p = c0; p < c1; ++p) {
          const int rows = static_cast<int>(std::min<int64_t>(kRows, m - p * kRows));
          unit(u, p * kRows, rows, Int8Panel<kRows>::At(buf + p * per_panel, in));
        }
      }
    }
  });
}

}  // namespace awq
