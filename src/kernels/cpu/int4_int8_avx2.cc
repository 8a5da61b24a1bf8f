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

namespace awq {

namespace {

// Activations rearranged for the slots: for the 8 inputs k0..k0+7 of slot c, word 2c holds the
// int8 values of inputs k0, k0+2, k0+4, k0+6 (bytes 0..3) and word 2c+1 those of k0+1, k0+3,
// k0+5, k0+7: the inputs that the low and the high nibble of each code byte hold.
void InterleaveForSlots(const Int8Activations& xa, std::vector<int32_t>* words) {
  const int64_t in = static_cast<int64_t>(xa.q.size());
  words->resize(static_cast<size_t>(in / 4));
  auto* bytes = reinterpret_cast<int8_t*>(words->data());
  for (int64_t k0 = 0; k0 < in; k0 += kInt4Inputs) {
    for (int i = 0; i < 4; ++i) {
      bytes[k0 + i] = xa.q[static_cast<size_t>(k0 + 2 * i)];
      bytes[k0 + 4 + i] = xa.q[static_cast<size_t>(k0 + 2 * i + 1)];
    }
  }
}

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

}  // namespace

void Int4LinearInt8Avx2(const Int4Matrix& w, const float* x, int64_t ldx, int64_t m, float* y,
                        int64_t ldy, bool accumulate, ThreadPool& pool) {
  Int8Activations xa;
  std::vector<int32_t> xw;
  for (int64_t i = 0; i < m; ++i) {
    QuantizeActivationsInt8(x + i * ldx, w.in, w.group_size, &xa);
    InterleaveForSlots(xa, &xw);
    float* yi = y + i * ldy;
    pool.ParallelFor(
        w.row_blocks(),
        [&](int64_t b0, int64_t b1, int) {
          for (int64_t b = b0; b < b1; ++b) {
            StoreRowBlock(GemvRowBlockInt8(w, b, xw.data(), xa), yi, b, w.out, accumulate);
          }
        },
        2);
  }
}

}  // namespace awq
