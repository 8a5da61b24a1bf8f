// AVX-512 VNNI GEMV and GEMM with int8 activations. GEMV: one 64-byte load holds two code slots
// (8 rows x 16 inputs) and vpdpbusd multiplies the u4 codes with the s8 activations and adds
// groups of four products into int32 in one instruction, where AVX2 needs vpmaddubsw + vpaddw +
// vpmaddwd. GEMM (prompts): below, at its code.
//
// The same source is compiled a second time against SIMDe's portable AVX-512 (AWQ_EMULATE_SIMD,
// into namespace awq::emulated) so the test suite checks it against the scalar oracle on CPUs
// without AVX-512 (tests/simd_emulated_test.cc).
#include "kernels/cpu/avx512_intrinsics.h"

#include <algorithm>

#include "awq/thread_pool.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/int4_layout.h"
#include "kernels/cpu/int8_gemm.h"

namespace awq {
#if defined(AWQ_EMULATE_SIMD)
namespace emulated {
#endif

namespace {

#include "kernels/cpu/int4_avx512_util.h"

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
// lanes r and r + 8 hold the two slots' partial dots of row r. They are added in int32 before the
// block's conversion, so each row sees the AVX2 GEMV's arithmetic (the block's exact dot, then
// fp32 FMAs in the same order) and both give the same bits.
// Activations: interleaved words xw [in / 4], block scales xscale [in / bs], group sums
// gsums [n_groups]. Each row block's codes are prefetched `prefetch` bytes ahead.
template <int R>
void RowBlocks(const Int4Matrix& w, int64_t b, int64_t step, const int32_t* xw, const float* xscale,
               const float* gsums, int64_t bs, int64_t prefetch, __m256* y) {
  const int64_t gs = w.group_size, ng = w.n_groups();
  const int64_t slots = bs / kInt4Inputs, blocks = gs / bs;
  const int64_t stride = w.slots_per_block() * step;  // between the R row blocks, in slots
  AWQ_UNROLL for (int r = 0; r < R; ++r) y[r] = _mm256_setzero_ps();
  const Int4Codes* hdr = w.group(b, 0);
  for (int64_t g = 0; g < ng; ++g, hdr += w.slots_per_group()) {
    const Int4Codes* codes = hdr + 1;
    __m256 dot[R];
    AWQ_UNROLL for (int r = 0; r < R; ++r) dot[r] = _mm256_setzero_ps();
    for (int64_t blk = 0; blk < blocks; ++blk) {
      __m512i acc[R];
      AWQ_UNROLL for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_si512();
      int64_t c = 0;
      for (; c + 2 <= slots; c += 2, xw += 4) {
        const __m512i even = Pair(xw[0], xw[2]), odd = Pair(xw[1], xw[3]);
        AWQ_UNROLL for (int r = 0; r < R; ++r) {
          const Int4Codes* p = codes + r * stride + c;
          _mm_prefetch(reinterpret_cast<const char*>(p) + prefetch, _MM_HINT_T0);
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
      const __m256 sc = _mm256_set1_ps(*xscale++);
      AWQ_UNROLL for (int r = 0; r < R; ++r) {
        const __m256i d =
            _mm256_add_epi32(_mm512_castsi512_si256(acc[r]), _mm512_extracti64x4_epi64(acc[r], 1));
        dot[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d), sc, dot[r]);
      }
    }
    const __m256 gsum = _mm256_set1_ps(gsums[g]);
    AWQ_UNROLL for (int r = 0; r < R; ++r) {
      const __m128i* h = reinterpret_cast<const __m128i*>(hdr + r * stride);
      const __m256 s = _mm256_cvtph_ps(_mm_load_si128(h));
      const __m256 z = _mm256_cvtph_ps(_mm_load_si128(h + 1));
      y[r] = _mm256_fmadd_ps(s, _mm256_fnmadd_ps(z, gsum, dot[r]), y[r]);
    }
  }
}

// Row blocks [b0, b1) with blocks of bs inputs, t.streams streams per core.
void RangeOf(const Int4Matrix& w, int64_t b0, int64_t b1, const int32_t* xw, const float* xs,
             const float* group_sum, int64_t bs, float* y, bool accumulate, GemvTuning t) {
  ForRowBlocksInStreams(t.streams, w, b0, b1, y, accumulate,
                        [&](auto rows, int64_t b, int64_t step, float(*out)[kInt4Rows]) {
                          __m256 r[rows];
                          RowBlocks<rows>(w, b, step, xw, xs, group_sum, bs, t.prefetch_bytes, r);
                          for (int j = 0; j < rows; ++j) _mm256_store_ps(out[j], r[j]);
                        });
}

// For GemvInt8Rows (any block size).
void Range(const Int4Matrix& w, int64_t b0, int64_t b1, const int32_t* xw,
           const Int8Activations& xa, float* y, bool accumulate) {
  RangeOf(w, b0, b1, xw, xa.scale.data(), xa.group_sum.data(), xa.block, y, accumulate,
          GemvTuning{});
}

// For GemvInt8Block16 (blocks of 16).
void RangeBlock16(const Int4Matrix& w, int64_t b0, int64_t b1, const int32_t* xw, const float* xs,
                  const float* group_sum, float* y, bool accumulate, GemvTuning t) {
  RangeOf(w, b0, b1, xw, xs, group_sum, 16, y, accumulate, t);
}

// ---- GEMM: many rows of x (prompts) ----------------------------------------------------------
//
// Two row blocks (16 weight rows) per register: the low half holds a code slot of row block b,
// the high half the same slot of row block b + 1, so every lane of a vpdpbusd meets the same
// four activations and their word is one embedded broadcast from memory ({1to16}). Per 16-input
// block and row of x: 4 vpdpbusd, 1 convert, 1 multiply and 1 FMA for 16 weight rows, where the
// AVX2 GEMM spends 4 vpmaddubsw, 3 vpaddw, 1 vpmaddwd, 1 convert, 1 multiply and 1 FMA on 8.
// The arithmetic per lane is the AVX2 GEMM's (exact int32 dot, then (s * xs) * dot + acc and
// acc - (z * s) * group_sum in the same order), so both give the same bits.

// Rows of x per micro-kernel call: eight accumulators, the four nibble vectors and the group
// scale take 14 of the 32 registers.
constexpr int kMt = 8;

// Lanes 0-7 of out[t]: rows 8b..8b+7 of W times row t of the panel; lanes 8-15: rows of row block
// b + 1 (kPair), or zero codes with unused results (the last, odd row block).
template <bool kPair>
void KernelPanel(const Int4Matrix& w, int64_t b, const Int8Panel<kMt>& p, __m512* out) {
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  __m512 acc[kMt];
  AWQ_UNROLL for (int t = 0; t < kMt; ++t) acc[t] = _mm512_setzero_ps();
  const int32_t* xw = p.words;
  const float* xs = p.scales;
  const Int4Codes* ha = w.group(b, 0);
  const Int4Codes* hb = kPair ? w.group(b + 1, 0) : ha;
  const int64_t blocks_per_group = w.group_size / 16;
  const auto half = [](const Int4Codes* c) {
    return _mm256_load_si256(reinterpret_cast<const __m256i*>(c));
  };
  const auto scales = [](const Int4Codes* h, int i) {
    return _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(h) + i));
  };
  for (int64_t g = 0; g < w.n_groups(); ++g, ha += w.slots_per_group(), hb += w.slots_per_group()) {
    const __m512 s = Join(scales(ha, 0), kPair ? scales(hb, 0) : _mm256_setzero_ps());
    const Int4Codes* ca = ha + 1;
    const Int4Codes* cb = hb + 1;
    for (int64_t j = 0; j < blocks_per_group; ++j, ca += 2, cb += 2, xw += 4 * kMt, xs += kMt) {
      const __m512i v0 = Join(half(ca), kPair ? half(cb) : _mm256_setzero_si256());
      const __m512i v1 = Join(half(ca + 1), kPair ? half(cb + 1) : _mm256_setzero_si256());
      const __m512i n0 = _mm512_and_si512(v0, low4);
      const __m512i n1 = _mm512_and_si512(_mm512_srli_epi16(v0, 4), low4);
      const __m512i n2 = _mm512_and_si512(v1, low4);
      const __m512i n3 = _mm512_and_si512(_mm512_srli_epi16(v1, 4), low4);
      AWQ_UNROLL for (int t = 0; t < kMt; ++t) {
        __m512i d = _mm512_dpbusd_epi32(_mm512_setzero_si512(), n0, _mm512_set1_epi32(xw[t]));
        d = _mm512_dpbusd_epi32(d, n1, _mm512_set1_epi32(xw[kMt + t]));
        d = _mm512_dpbusd_epi32(d, n2, _mm512_set1_epi32(xw[2 * kMt + t]));
        d = _mm512_dpbusd_epi32(d, n3, _mm512_set1_epi32(xw[3 * kMt + t]));
        acc[t] = _mm512_fmadd_ps(ToFloat(d), _mm512_mul_ps(s, _mm512_set1_ps(xs[t])), acc[t]);
      }
    }
    const __m512 zs =
        _mm512_mul_ps(Join(scales(ha, 1), kPair ? scales(hb, 1) : _mm256_setzero_ps()), s);
    AWQ_UNROLL for (int t = 0; t < kMt; ++t) {
      acc[t] = _mm512_fnmadd_ps(zs, _mm512_set1_ps(p.group_sums[g * kMt + t]), acc[t]);
    }
  }
  AWQ_UNROLL for (int t = 0; t < kMt; ++t) out[t] = acc[t];
}

// One unit of the shared driver is a pair of row blocks (the last one alone when their number is
// odd).
void GemmInt8(const Int4Matrix& w, const float* x, int64_t ldx, int64_t m, float* y, int64_t ldy,
              bool accumulate, ThreadPool& pool) {
  GemmInt8Panels<kMt, 7>(w, x, ldx, m, (w.row_blocks() + 1) / 2, pool,
                         [&](int64_t u, int64_t row0, int rows, const Int8Panel<kMt>& panel) {
                           const int64_t b = 2 * u;
                           __m512 out[kMt];
                           if (b + 1 < w.row_blocks()) {
                             KernelPanel<true>(w, b, panel, out);
                           } else {
                             KernelPanel<false>(w, b, panel, out);
                           }
                           for (int t = 0; t < rows; ++t) {
                             StoreRowBlocks(out[t], y + (row0 + t) * ldy, b, w.out, accumulate);
                           }
                         });
}

}  // namespace

void Int4LinearInt8Avx512Tuned(const Int4Matrix& w, const float* x, int64_t ldx, int64_t m,
                               float* y, int64_t ldy, bool accumulate, ThreadPool& pool,
                               GemvTuning t) {
  // Two or more rows on blocks of 16: the GEMM reads each pair of weight row blocks once per
  // panel chunk instead of once per row of x.
  if (m >= 2 && Int8BlockFor(w.group_size) == 16) {
    return GemmInt8(w, x, ldx, m, y, ldy, accumulate, pool);
  }
#if defined(__x86_64__)
  // A decode step on blocks of 16 goes through the AVX2 GEMV's driver: the vectorized quantizer
  // into reused scratch, chunks sized by the matrix, the streams' first lines requested together
  // (the scalar quantizer with fresh vectors per call alone cost the AVX2 GEMV 1.3-1.4x on
  // SmolLM2's shapes). The SIMDe build, which the tests run on any CPU, takes this path too where
  // AVX2 runs.
  if (m == 1 && Int8BlockFor(w.group_size) == 16 && CpuHasAvx2Fma16()) {
    return GemvInt8Block16(w, x, y, accumulate, pool, RangeBlock16, t);
  }
#endif
  GemvInt8Rows(w, x, ldx, m, y, ldy, accumulate, pool, Range);
}

void Int4LinearInt8Avx512(const Int4Matrix& w, const float* x, int64_t ldx, int64_t m, float* y,
                          int64_t ldy, bool accumulate, ThreadPool& pool) {
  // Parenthesized: no argument-dependent lookup, which in the SIMDe build would also find the
  // native awq::Int4LinearInt8Avx512Tuned.
  (Int4LinearInt8Avx512Tuned)(w, x, ldx, m, y, ldy, accumulate, pool, GemvTuning{});
}

#if defined(AWQ_EMULATE_SIMD)
}  // namespace emulated
#endif
}  // namespace awq
