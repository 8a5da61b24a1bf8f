// AVX-512 VNNI GEMV with int8 activations: one 64-byte load holds two code slots (8 rows x 16
// inputs) and vpdpbusd multiplies the u4 codes with the s8 activations and adds groups of four
// products into int32 in one instruction, where AVX2 needs vpmaddubsw + vpaddw + vpmaddwd.
//
// The same source is compiled a second time against SIMDe's portable AVX-512 (AWQ_EMULATE_SIMD,
// into namespace awq::emulated) so the test suite checks it against the scalar oracle on CPUs
// without AVX-512 (tests/simd_emulated_test.cc).
#if defined(AWQ_EMULATE_SIMD)
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
#include <simde/x86/f16c.h>
#else
#include <immintrin.h>
#endif

#include "awq/thread_pool.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/int4_layout.h"

namespace awq {
#if defined(AWQ_EMULATE_SIMD)
namespace emulated {
#endif

namespace {

// Lane r of the 16: lanes 0-7 take `lo` and lanes 8-15 `hi`, each broadcast.
inline __m512i Pair(int32_t lo, int32_t hi) {
  // (From a full broadcast: a cast from 256 bits leaves the upper half undefined, which GCC 12
  // reports as a maybe-uninitialized use.)
  return _mm512_inserti64x4(_mm512_set1_epi32(lo), _mm256_set1_epi32(hi), 1);
}

// int32 -> fp32 for 16 lanes. SIMDe 0.7.4 has no _mm512_cvtepi32_ps, so the emulated build
// converts the two halves.
inline __m512 ToFloat(__m512i v) {
#if defined(AWQ_EMULATE_SIMD)
  const __m256 lo = _mm256_cvtepi32_ps(_mm512_castsi512_si256(v));
  const __m256 hi = _mm256_cvtepi32_ps(_mm512_extracti64x4_epi64(v, 1));
  return _mm512_castpd_ps(
      _mm512_insertf64x4(_mm512_castps_pd(_mm512_castps256_ps512(lo)), _mm256_castps_pd(hi), 1));
#else
  return _mm512_cvtepi32_ps(v);
#endif
}

// acc += codes (u4 in both nibbles of v) . activations: low nibbles with `even`, high with `odd`.
inline __m512i DotNibbles(__m512i acc, __m512i v, __m512i even, __m512i odd) {
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  acc = _mm512_dpbusd_epi32(acc, _mm512_and_si512(v, low4), even);
  return _mm512_dpbusd_epi32(acc, _mm512_and_si512(_mm512_srli_epi16(v, 4), low4), odd);
}

// Loops over the R row blocks must be unrolled so that the accumulators stay in registers.
#define AWQ_UNROLL _Pragma("GCC unroll 8")

// y[r] (8 rows each) for row blocks b, b + step, ..., b + (R - 1) * step: per activation block
// of bs inputs (any whole number of slots; a lone last slot fills the low half of the register),
// lanes r and r + 8 hold the two slots' partial dots of row r and are added once per group.
// Activations: interleaved words xw [in / 4], block scales xscale [in / bs], group sums
// gsums [n_groups].
template <int R>
void RowBlocks(const Int4Matrix& w, int64_t b, int64_t step, const int32_t* xw, const float* xscale,
               const float* gsums, int64_t bs, __m256* y) {
  const int64_t gs = w.group_size, ng = w.n_groups();
  const int64_t slots = bs / kInt4Inputs, blocks = gs / bs;
  const int64_t stride = w.slots_per_block() * step;  // between the R row blocks, in slots
  AWQ_UNROLL for (int r = 0; r < R; ++r) y[r] = _mm256_setzero_ps();
  const Int4Codes* hdr = w.group(b, 0);
  for (int64_t g = 0; g < ng; ++g, hdr += w.slots_per_group()) {
    const Int4Codes* codes = hdr + 1;
    __m512 dot[R];
    AWQ_UNROLL for (int r = 0; r < R; ++r) dot[r] = _mm512_setzero_ps();
    for (int64_t blk = 0; blk < blocks; ++blk) {
      __m512i acc[R];
      AWQ_UNROLL for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_si512();
      int64_t c = 0;
      for (; c + 2 <= slots; c += 2, xw += 4) {
        const __m512i even = Pair(xw[0], xw[2]), odd = Pair(xw[1], xw[3]);
        AWQ_UNROLL for (int r = 0; r < R; ++r) {
          const Int4Codes* p = codes + r * stride + c;
          _mm_prefetch(reinterpret_cast<const char*>(p) + 2048, _MM_HINT_T0);
          acc[r] = DotNibbles(acc[r], _mm512_loadu_si512(p), even, odd);
        }
      }
      if (c < slots) {
        const __m512i even = Pair(xw[0], 0), odd = Pair(xw[1], 0);
        xw += 2;
        AWQ_UNROLL for (int r = 0; r < R; ++r) {
          const __m256i v =
              _mm256_load_si256(reinterpret_cast<const __m256i*>(codes + r * stride + c));
          acc[r] = DotNibbles(acc[r], _mm512_inserti64x4(_mm512_setzero_si512(), v, 0), even, odd);
        }
      }
      codes += slots;
      const __m512 sc = _mm512_set1_ps(*xscale++);
      AWQ_UNROLL for (int r = 0; r < R; ++r) {
        dot[r] = _mm512_fmadd_ps(ToFloat(acc[r]), sc, dot[r]);
      }
    }
    const __m256 gsum = _mm256_set1_ps(gsums[g]);
    AWQ_UNROLL for (int r = 0; r < R; ++r) {
      const __m256 d =
          _mm256_add_ps(_mm512_castps512_ps256(dot[r]),
                        _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(dot[r]), 1)));
      const __m128i* h = reinterpret_cast<const __m128i*>(hdr + r * stride);
      const __m256 s = _mm256_cvtph_ps(_mm_load_si128(h));
      const __m256 z = _mm256_cvtph_ps(_mm_load_si128(h + 1));
      y[r] = _mm256_fmadd_ps(s, _mm256_fnmadd_ps(z, gsum, d), y[r]);
    }
  }
}

// Row blocks [b0, b1) with blocks of bs inputs, four streams per core.
void RangeOf(const Int4Matrix& w, int64_t b0, int64_t b1, const int32_t* xw, const float* xs,
             const float* group_sum, int64_t bs, float* y, bool accumulate) {
  ForRowBlocksInLockstep<4>(w, b0, b1, y, accumulate,
                            [&](auto rows, int64_t b, int64_t step, float(*out)[kInt4Rows]) {
                              __m256 r[rows];
                              RowBlocks<rows>(w, b, step, xw, xs, group_sum, bs, r);
                              for (int j = 0; j < rows; ++j) _mm256_store_ps(out[j], r[j]);
                            });
}

// For GemvInt8Rows (any block size).
void Range(const Int4Matrix& w, int64_t b0, int64_t b1, const int32_t* xw,
           const Int8Activations& xa, float* y, bool accumulate) {
  RangeOf(w, b0, b1, xw, xa.scale.data(), xa.group_sum.data(), xa.block, y, accumulate);
}

// For GemvInt8Block16 (blocks of 16).
void RangeBlock16(const Int4Matrix& w, int64_t b0, int64_t b1, const int32_t* xw, const float* xs,
                  const float* group_sum, float* y, bool accumulate) {
  RangeOf(w, b0, b1, xw, xs, group_sum, 16, y, accumulate);
}

}  // namespace

void Int4LinearInt8Avx512(const Int4Matrix& w, const float* x, int64_t ldx, int64_t m, float* y,
                          int64_t ldy, bool accumulate, ThreadPool& pool) {
#if defined(__x86_64__)
  // A decode step on blocks of 16 goes through the AVX2 GEMV's driver: the vectorized quantizer
  // into reused scratch, chunks sized by the matrix, the streams' first lines requested together
  // (the scalar quantizer with fresh vectors per call alone cost the AVX2 GEMV 1.3-1.4x on
  // SmolLM2's shapes). The SIMDe build, which the tests run on any CPU, takes this path too where
  // AVX2 runs.
  if (m == 1 && Int8BlockFor(w.group_size) == 16 && CpuHasAvx2Fma16()) {
    return GemvInt8Block16(w, x, y, accumulate, pool, RangeBlock16);
  }
#endif
  GemvInt8Rows(w, x, ldx, m, y, ldy, accumulate, pool, Range);
}

#if defined(AWQ_EMULATE_SIMD)
}  // namespace emulated
#endif
}  // namespace awq
