// AVX2 GEMV with int8 activations: the 4-bit codes meet the int8 activations in vpmaddubsw, so
// one 32-byte code slot (8 rows x 8 inputs) costs a handful of integer instructions instead of
// eight conversions and eight FMAs. Decode on two cores is bound by this arithmetic, not by
// memory, with fp32 activations (docs/KERNELS.md).
#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "awq/thread_pool.h"
#include "kernels/cpu/int4_avx2_util.h"
#include "kernels/cpu/int4_layout.h"
#include "kernels/cpu/scratch.h"

namespace awq {

namespace {

// Lane r: the integer dot of row 8b + r with n_slots slots of activations (exact int32).
inline __m256i DotSlots(const __m256i* codes, const int32_t* xw, int64_t n_slots) {
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i acc = _mm256_setzero_si256();
  int64_t c = 0;
  // Two slots per step: four vpmaddubsw results (each int16 lane |.| <= 2 * 15 * 127 = 3810)
  // add without overflow or saturation before one widening vpmaddwd.
  for (; c + 2 <= n_slots; c += 2, xw += 4) {
    // The weights stream from DRAM once per token: ask for the line 2 KiB ahead (one prefetch
    // per 64-byte line, i.e. per two slots).
    _mm_prefetch(reinterpret_cast<const char*>(codes + c) + 2048, _MM_HINT_T0);
    const __m256i v0 = _mm256_load_si256(codes + c);
    const __m256i v1 = _mm256_load_si256(codes + c + 1);
    __m256i p = _mm256_maddubs_epi16(_mm256_and_si256(v0, low4), _mm256_set1_epi32(xw[0]));
    p = _mm256_add_epi16(p, _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(v0, 4), low4),
                                                 _mm256_set1_epi32(xw[1])));
    p = _mm256_add_epi16(
        p, _mm256_maddubs_epi16(_mm256_and_si256(v1, low4), _mm256_set1_epi32(xw[2])));
    p = _mm256_add_epi16(p, _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(v1, 4), low4),
                                                 _mm256_set1_epi32(xw[3])));
    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, ones));
  }
  if (c < n_slots) {
    const __m256i v0 = _mm256_load_si256(codes + c);
    __m256i p = _mm256_maddubs_epi16(_mm256_and_si256(v0, low4), _mm256_set1_epi32(xw[0]));
    p = _mm256_add_epi16(p, _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(v0, 4), low4),
                                                 _mm256_set1_epi32(xw[1])));
    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, ones));
  }
  return acc;
}

// y8[r] = sum over groups of s * (sum over blocks of x_scale * dot - z * group_sum).
__m256 GemvRowBlockInt8(const Int4Matrix& w, int64_t b, const int32_t* xw,
                        const Int8Activations& xa) {
  const int64_t gs = w.group_size, ng = w.n_groups(), bs = xa.block;
  const int64_t slots_per_block = bs / kInt4Inputs, blocks_per_group = gs / bs;
  __m256 y = _mm256_setzero_ps();
  const float* xscale = xa.scale.data();
  for (int64_t g = 0; g < ng; ++g) {
    const Int4Codes* hdr = w.group(b, g);
    const __m256i* codes = reinterpret_cast<const __m256i*>(hdr + 1);
    __m256 dot = _mm256_setzero_ps();
    for (int64_t blk = 0; blk < blocks_per_group; ++blk) {
      const __m256i d =
          DotSlots(codes + blk * slots_per_block, xw + (g * gs + blk * bs) / 4, slots_per_block);
      dot = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d), _mm256_set1_ps(*xscale++), dot);
    }
    const __m128i* h = reinterpret_cast<const __m128i*>(hdr);
    const __m256 s = _mm256_cvtph_ps(_mm_load_si128(h));
    const __m256 z = _mm256_cvtph_ps(_mm_load_si128(h + 1));
    y = _mm256_fmadd_ps(s, _mm256_fnmadd_ps(z, _mm256_set1_ps(xa.group_sum[g]), dot), y);
  }
  return y;
}

// Blocks of 16 inputs (two slots), the default: rows 8b..8b+15 of two row blocks at once. The
// activation broadcasts and block scales are shared by both, and each 16-input block is one
// straight-line step, so the loop spends its instructions on the codes (twice the throughput of
// the generic loop above, which is compute-bound on two cores).
inline __m256i Dot16(__m256i v0, __m256i v1, __m256i x0, __m256i x1, __m256i x2, __m256i x3) {
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  __m256i p = _mm256_maddubs_epi16(_mm256_and_si256(v0, low4), x0);
  p = _mm256_add_epi16(p,
                       _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(v0, 4), low4), x1));
  __m256i q = _mm256_maddubs_epi16(_mm256_and_si256(v1, low4), x2);
  q = _mm256_add_epi16(q,
                       _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(v1, 4), low4), x3));
  return _mm256_madd_epi16(_mm256_add_epi16(p, q), _mm256_set1_epi16(1));
}

// Loops over the R row blocks must be unrolled so that dot[] and y[] stay in registers (-O2 left
// them in memory: a store-to-load chain per step that halved the throughput).
#define AWQ_UNROLL _Pragma("GCC unroll 8")

// Row blocks b, b + step, ..., b + (R - 1) * step at once (R = 1, 2 or 4).
template <int R>
void GemvRowBlocksInt8Block16(const Int4Matrix& w, int64_t b, int64_t step, const __m256i* xb,
                              const __m256* sb, const Int8Activations& xa, __m256* y) {
  const int64_t gs = w.group_size, ng = w.n_groups(), steps = gs / 16;
  const int64_t block_stride = w.slots_per_block() * step;
  AWQ_UNROLL for (int r = 0; r < R; ++r) y[r] = _mm256_setzero_ps();
  const Int4Codes* hdr = w.group(b, 0);
  for (int64_t g = 0; g < ng; ++g, hdr += w.slots_per_group()) {
    const __m256i* codes = reinterpret_cast<const __m256i*>(hdr + 1);
    __m256 dot[R];
    AWQ_UNROLL for (int r = 0; r < R; ++r) dot[r] = _mm256_setzero_ps();
    for (int64_t k = 0; k < steps; ++k, xb += 4, ++sb, codes += 2) {
      _mm_prefetch(reinterpret_cast<const char*>(codes) + 2048, _MM_HINT_T0);
      AWQ_UNROLL for (int r = 1; r < R; ++r) {
        _mm_prefetch(reinterpret_cast<const char*>(codes + r * block_stride) + 2048, _MM_HINT_T0);
      }
      AWQ_UNROLL for (int r = 0; r < R; ++r) {
        const __m256i* c = codes + r * block_stride;
        const __m256i d =
            Dot16(_mm256_load_si256(c), _mm256_load_si256(c + 1), _mm256_load_si256(xb),
                  _mm256_load_si256(xb + 1), _mm256_load_si256(xb + 2), _mm256_load_si256(xb + 3));
        dot[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d),
                                 _mm256_load_ps(reinterpret_cast<const float*>(sb)), dot[r]);
      }
    }
    const __m256 gsum = _mm256_set1_ps(xa.group_sum[g]);
    AWQ_UNROLL for (int r = 0; r < R; ++r) {
      const __m128i* h = reinterpret_cast<const __m128i*>(hdr + r * block_stride);
      const __m256 s = _mm256_cvtph_ps(_mm_load_si128(h));
      const __m256 z = _mm256_cvtph_ps(_mm_load_si128(h + 1));
      y[r] = _mm256_fmadd_ps(s, _mm256_fnmadd_ps(z, gsum, dot[r]), y[r]);
    }
  }
}

void GemvRangeInt8(const Int4Matrix& w, int64_t b0, int64_t b1, const int32_t* xw,
                   const __m256i* xb, const __m256* sb, const Int8Activations& xa, float* y,
                   bool accumulate) {
  if (xa.block != 16) {
    for (int64_t b = b0; b < b1; ++b) {
      StoreRowBlock(GemvRowBlockInt8(w, b, xw, xa), y, b, w.out, accumulate);
    }
    return;
  }
  ForRowBlocksInLockstep<4>(w, b0, b1, y, accumulate,
                            [&](auto rows, int64_t b, int64_t step, float(*out)[kInt4Rows]) {
                              __m256 r[rows];
                              GemvRowBlocksInt8Block16<rows>(w, b, step, xb, sb, xa, r);
                              for (int j = 0; j < rows; ++j) _mm256_store_ps(out[j], r[j]);
                            });
}

}  // namespace

void Int4LinearInt8Avx2(const Int4Matrix& w, const float* x, int64_t ldx, int64_t m, float* y,
                        int64_t ldy, bool accumulate, ThreadPool& pool) {
  Int8Activations xa;
  std::vector<int32_t> xw;
  for (int64_t i = 0; i < m; ++i) {
    QuantizeActivationsInt8(x + i * ldx, w.in, w.group_size, &xa);
    InterleaveForSlots(xa, &xw);
    // Each activation word and block scale broadcast to a vector in memory, which the kernel
    // reads as operands: held in registers, the 4 words and the scale of a step left too few
    // for 4 row blocks, and GCC spilled and reloaded them on every step.
    const int64_t n_words = static_cast<int64_t>(xw.size()), n_blocks = w.in / xa.block;
    float* buf = ThreadScratch<2>(static_cast<size_t>(8 * (n_words + n_blocks)));
    __m256i* xb = reinterpret_cast<__m256i*>(buf);
    __m256* sb = reinterpret_cast<__m256*>(buf + 8 * n_words);
    for (int64_t j = 0; j < n_words; ++j) _mm256_store_si256(xb + j, _mm256_set1_epi32(xw[j]));
    for (int64_t j = 0; j < n_blocks; ++j)
      _mm256_store_ps(reinterpret_cast<float*>(sb + j), _mm256_set1_ps(xa.scale[j]));
    float* yi = y + i * ldy;
    pool.ParallelForDynamic(
        w.row_blocks(),
        [&](int64_t b0, int64_t b1, int) {
          GemvRangeInt8(w, b0, b1, xw.data(), xb, sb, xa, yi, accumulate);
        },
        2);
  }
}

}  // namespace awq
