// AVX-512 BF16 product with bf16 activations (Int4Kernel::kAvx512Bf16): the prefill candidate
// beside the VNNI int8 GEMM on CPUs with AVX512_BF16 (Zen 4, Intel from Cooper Lake).
//
// Each row of x is rounded to bf16 (to nearest, ties to even) once, into panels of kMt rows:
// words [in / 2][kMt], word = bf16(x_2j) | bf16(x_2j+1) << 16, and the group sums of the rounded
// values [n_groups][kMt]. The weights stay exact: a code q (0..15) is a bf16 integer, so every
// product q * bf16(x) is exact in fp32 and vdpbf16ps adds two of them per lane into fp32. Per
// group, y += s * (sum q * x_bf16 - z * sum x_bf16), the zero point folded in like the int8
// kernels'. The cost against the exact product is bf16's rounding of x (relative 2^-9 per input),
// not int8's (half a step of max|x| / 127 per block of 16, much more for the small inputs of a
// block with an outlier).
//
// Codes to bf16, per 16 weight rows (two row blocks, one per 256-bit half) and input pair (2p,
// 2p + 1) of a code slot: vpshufb puts byte p of each row's code word (nibbles 2p and 2p + 1) in
// both 16-bit halves of its lane, vpsrlvw shifts the high half right by 4, and vpermw looks each
// half up in a 32-entry table of bf16(i & 15), whose index is the low 5 bits: 3 instructions per
// 32 codes, then one vdpbf16ps per row of x with that row's word broadcast from memory. Per 8
// inputs and 16 rows: 12 conversion instructions shared by the panel's 8 rows of x, 4 vdpbf16ps
// per row (32 multiply-adds each, half of a vpdpbusd's 64).
//
// One row of x (decode) runs the same arithmetic in panels of one row. The speed of this kernel
// has not been measured: no host with AVX512_BF16 has run it (docs/KERNELS.md).
//
// The same source is compiled a second time against SIMDe's portable AVX-512 (AWQ_EMULATE_SIMD,
// into namespace awq::emulated) so the test suite checks it against the scalar oracle on CPUs
// without AVX-512 BF16 (tests/int4_kernels_test.cc).
#include "kernels/cpu/avx512_intrinsics.h"

#include <algorithm>
#include <cstring>

#include "awq/half.h"
#include "awq/thread_pool.h"
#include "kernels/cpu/int4_layout.h"
#include "kernels/cpu/scratch.h"

namespace awq {
#if defined(AWQ_EMULATE_SIMD)
namespace emulated {
#endif

namespace {

#include "kernels/cpu/int4_avx512_util.h"

// Loops over fixed-size register arrays are unrolled so that the arrays stay in registers.
#define AWQ_UNROLL _Pragma("GCC unroll 8")

// Rows of x per panel for prompts: 8 accumulators and 8 group dots are 16 of the 32 registers.
constexpr int kMt = 8;
// Panels a thread sweeps with each pair of row blocks before moving on (~256 KiB, kept in L2).
constexpr int64_t kPanelChunkBytes = 256 << 10;

inline __m512bh AsBf16(__m512i v) {
  __m512bh r;
  std::memcpy(&r, &v, sizeof(r));
  return r;
}

// A panel of kRows rows of x in bf16: words [in / 2][kRows], group sums [n_groups][kRows]. Rows
// past m are zero, which gives zero outputs.
template <int kRows>
struct Bf16Panel {
  uint32_t* words;
  float* group_sums;

  static int64_t Floats(int64_t in, int64_t n_groups) { return (in / 2 + n_groups) * kRows; }
  static Bf16Panel At(float* base, int64_t in) {
    return {reinterpret_cast<uint32_t*>(base), base + in / 2 * kRows};
  }
  void Row(const float* x, int64_t in, int64_t group_size, int t) const {
    for (int64_t g = 0; g < in / group_size; ++g) {
      float sum = 0.0f;
      for (int64_t k = g * group_size; k < (g + 1) * group_size; k += 2) {
        const uint16_t lo = Fp32ToBf16(x[k]), hi = Fp32ToBf16(x[k + 1]);
        words[k / 2 * kRows + t] = static_cast<uint32_t>(lo) | static_cast<uint32_t>(hi) << 16;
        sum += Bf16ToFp32(lo);
        sum += Bf16ToFp32(hi);
      }
      group_sums[g * kRows + t] = sum;
    }
  }
};

// out[t] (16 lanes: rows 8b..8b+7, then 8(b+1)..8(b+1)+7 when kPair, else unused) = W rows times
// row t of the panel.
template <bool kPair, int kRows>
void KernelPanel(const Int4Matrix& w, int64_t b, const Bf16Panel<kRows>& p, __m512* out) {
  // Byte p of every 32-bit lane into both of its 16-bit halves (the other bytes zero).
  alignas(64) static const int8_t kPick[4][16] = {
      {0, -1, 0, -1, 4, -1, 4, -1, 8, -1, 8, -1, 12, -1, 12, -1},
      {1, -1, 1, -1, 5, -1, 5, -1, 9, -1, 9, -1, 13, -1, 13, -1},
      {2, -1, 2, -1, 6, -1, 6, -1, 10, -1, 10, -1, 14, -1, 14, -1},
      {3, -1, 3, -1, 7, -1, 7, -1, 11, -1, 11, -1, 15, -1, 15, -1}};
  __m512i pick[4];
  for (int j = 0; j < 4; ++j) {
    pick[j] = _mm512_broadcast_i32x4(_mm_load_si128(reinterpret_cast<const __m128i*>(kPick[j])));
  }
  // The high half of each lane moves down by 4 bits (its nibble 2p + 1).
  const __m512i shift = _mm512_set1_epi32(4 << 16);
  // bf16(i & 15) for the 32 indices vpermw reads (the low 5 bits of each half): the bf16 bits of
  // a small integer n > 0 are its fp32 bits' upper half, 0x3F80 for 1 up to 0x4170 for 15.
  struct Table {
    alignas(64) uint16_t v[32];
    Table() {
      for (int i = 0; i < 32; ++i) v[i] = Fp32ToBf16(static_cast<float>(i & 15));
    }
  };
  static const Table table;
  const __m512i lut = _mm512_load_si512(table.v);

  __m512 acc[kRows];
  AWQ_UNROLL for (int t = 0; t < kRows; ++t) acc[t] = _mm512_setzero_ps();
  const uint32_t* xw = p.words;
  const Int4Codes* ha = w.group(b, 0);
  const Int4Codes* hb = kPair ? w.group(b + 1, 0) : ha;
  const int64_t slots = w.group_size / kInt4Inputs;
  const auto half = [](const Int4Codes* c) {
    return _mm256_load_si256(reinterpret_cast<const __m256i*>(c));
  };
  const auto header = [](const Int4Codes* h, int i) {
    return _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(h) + i));
  };
  for (int64_t g = 0; g < w.n_groups(); ++g, ha += w.slots_per_group(), hb += w.slots_per_group()) {
    __m512 dot[kRows];
    AWQ_UNROLL for (int t = 0; t < kRows; ++t) dot[t] = _mm512_setzero_ps();
    const Int4Codes* ca = ha + 1;
    const Int4Codes* cb = hb + 1;
    for (int64_t c = 0; c < slots; ++c, ++ca, ++cb) {
      const __m512i v = Join(half(ca), kPair ? half(cb) : _mm256_setzero_si256());
      for (int j = 0; j < 4; ++j, xw += kRows) {
        const __m512i n = _mm512_srlv_epi16(_mm512_shuffle_epi8(v, pick[j]), shift);
        const __m512bh q = AsBf16(_mm512_permutexvar_epi16(n, lut));
        AWQ_UNROLL for (int t = 0; t < kRows; ++t) {
          dot[t] = _mm512_dpbf16_ps(dot[t], q, AsBf16(_mm512_set1_epi32(static_cast<int>(xw[t]))));
        }
      }
    }
    const __m512 s = Join(header(ha, 0), kPair ? header(hb, 0) : _mm256_setzero_ps());
    const __m512 z = Join(header(ha, 1), kPair ? header(hb, 1) : _mm256_setzero_ps());
    AWQ_UNROLL for (int t = 0; t < kRows; ++t) {
      const __m512 gsum = _mm512_set1_ps(p.group_sums[g * kRows + t]);
      acc[t] = _mm512_fmadd_ps(s, _mm512_fnmadd_ps(z, gsum, dot[t]), acc[t]);
    }
  }
  AWQ_UNROLL for (int t = 0; t < kRows; ++t) out[t] = acc[t];
}

// x rounded once into panels of kRows (the calling thread's scratch), then the pairs of row
// blocks split over the pool in equal shares; each thread sweeps ~256 KiB of panels with each of
// its pairs, then the next panels.
template <int kRows>
void Gemm(const Int4Matrix& w, const float* x, int64_t ldx, int64_t m, float* y, int64_t ldy,
          bool accumulate, ThreadPool& pool) {
  const int64_t in = w.in, panels = (m + kRows - 1) / kRows;
  const int64_t per_panel = Bf16Panel<kRows>::Floats(in, w.n_groups());
  float* buf = ThreadScratch<9>(static_cast<size_t>(panels * per_panel));
  const auto fill = [&](int64_t p0, int64_t p1, int) {
    for (int64_t p = p0; p < p1; ++p) {
      const int rows = static_cast<int>(std::min<int64_t>(kRows, m - p * kRows));
      float* base = buf + p * per_panel;
      if (rows < kRows) std::fill(base, base + per_panel, 0.0f);  // all-zero bits: 0 and 0.0f
      const auto panel = Bf16Panel<kRows>::At(base, in);
      for (int t = 0; t < rows; ++t) panel.Row(x + (p * kRows + t) * ldx, in, w.group_size, t);
    }
  };
  if (panels == 1) {
    fill(0, 1, 0);
  } else {
    pool.ParallelFor(panels, fill);
  }
  const int64_t chunk =
      std::max<int64_t>(1, kPanelChunkBytes / (per_panel * static_cast<int64_t>(sizeof(float))));
  pool.ParallelFor((w.row_blocks() + 1) / 2, [&](int64_t u0, int64_t u1, int) {
    for (int64_t c0 = 0; c0 < panels; c0 += chunk) {
      const int64_t c1 = std::min(panels, c0 + chunk);
      for (int64_t u = u0; u < u1; ++u) {
        const int64_t b = 2 * u;
        for (int64_t p = c0; p < c1; ++p) {
          const int rows = static_cast<int>(std::min<int64_t>(kRows, m - p * kRows));
          const auto panel = Bf16Panel<kRows>::At(buf + p * per_panel, in);
          __m512 out[kRows];
          if (b + 1 < w.row_blocks()) {
            KernelPanel<true, kRows>(w, b, panel, out);
          } else {
            KernelPanel<false, kRows>(w, b, panel, out);
          }
          for (int t = 0; t < rows; ++t) {
            StoreRowBlocks(out[t], y + (p * kRows + t) * ldy, b, w.out, accumulate);
          }
        }
      }
    }
  });
}

}  // namespace

void Int4LinearBf16Avx512(const Int4Matrix& w, const float* x, int64_t ldx, int64_t m, float* y,
                          int64_t ldy, bool accumulate, ThreadPool& pool) {
  if (m == 1) return Gemm<1>(w, x, ldx, m, y, ldy, accumulate, pool);
  Gemm<kMt>(w, x, ldx, m, y, ldy, accumulate, pool);
}

#if defined(AWQ_EMULATE_SIMD)
}  // namespace emulated
#endif
}  // namespace awq
