// AVX2 decode attention over an fp16 cache. Keys and values stream from memory once per kv head:
// scores are computed eight positions at a time for every query head of the group while those
// eight key rows sit in L1, and the value rows likewise.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/decode_attention.h"
#include "kernels/cpu/exp_avx2.h"

namespace awq {

namespace {

// Loops over fixed-size register arrays are unrolled so that the arrays stay in registers.
#define AWQ_UNROLL _Pragma("GCC unroll 8")

inline __m256 Widen(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

inline float HorizontalSum(__m256 v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));
}

inline float HorizontalMax(__m256 v) {
  const __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 t = _mm_max_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_max_ss(t, _mm_movehdup_ps(t)));
}

// Lane r = the sum of the lanes of a[r].
inline __m256 Sum8x8(const __m256* a) {
  const __m256 t0 = _mm256_hadd_ps(a[0], a[1]), t1 = _mm256_hadd_ps(a[2], a[3]);
  const __m256 t2 = _mm256_hadd_ps(a[4], a[5]), t3 = _mm256_hadd_ps(a[6], a[7]);
  const __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
  return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

// dst[i] = float(src[i]) for i < n (n a multiple of 8).
inline void WidenRows(const uint16_t* src, int64_t n, float* dst) {
  for (int64_t i = 0; i < n; i += 8) _mm256_storeu_ps(dst + i, Widen(src + i));
}

std::vector<float>& WidenBuffer(int64_t n) {
  thread_local std::vector<float> buffer;
  if (static_cast<int64_t>(buffer.size()) < n) buffer.resize(static_cast<size_t>(n));
  return buffer;
}

}  // namespace

namespace {

// kShared: the group has several query heads, which all read each block of eight key (value)
// rows, widened once into an L1 buffer; a single head (Llama-2-7B's multi-head attention) has
// nothing to share and reads them straight from the cache, the conversion folded into its loads.
template <bool kShared>
void Attend(const AttendArgs& a, float* scores, float* m, float* l, float* o) {
  const int64_t hd = a.hd, n = a.n, n8 = n - n % 8;
  const __m256 scale = _mm256_set1_ps(a.scale);
  // Eight key (then value) rows at a time are widened once into this L1 buffer and then read by
  // every query head of the group.
  float* kb = kShared ? WidenBuffer(8 * hd).data() : nullptr;
  // Scores, eight key rows at a time for every query head.
  for (int64_t j = 0; j < n8; j += 8) {
    if (kShared) WidenRows(a.k + j * hd, 8 * hd, kb);
    // Two streams instead of one: the keys 16 rows ahead, and the value rows that the second
    // pass reads, into L2. With Llama-2-7B's heads at 640 positions, attention's time relative
    // to the layer's GEMVs fell from 0.16 to 0.13-0.15 (32 rows ahead: 0.15-0.16).
    for (int64_t b = 0; b < 8 * hd * 2; b += 64) {
      _mm_prefetch(reinterpret_cast<const char*>(a.k + (j + 16) * hd) + b, _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(a.v + j * hd) + b, _MM_HINT_T1);
    }
    for (int i = 0; i < a.group; ++i) {
      const float* q = a.q + i * hd;
      __m256 acc[8];
      AWQ_UNROLL for (int r = 0; r < 8; ++r) acc[r] = _mm256_setzero_ps();
      for (int64_t c = 0; c < hd; c += 8) {
        const __m256 qc = _mm256_loadu_ps(q + c);
        AWQ_UNROLL for (int r = 0; r < 8; ++r) {
          const __m256 k =
              kShared ? _mm256_loadu_ps(kb + r * hd + c) : Widen(a.k + (j + r) * hd + c);
          acc[r] = _mm256_fmadd_ps(k, qc, acc[r]);
        }
      }
      _mm256_storeu_ps(scores + i * n + j, _mm256_mul_ps(Sum8x8(acc), scale));
    }
  }
  for (int64_t j = n8; j < n; ++j) {
    for (int i = 0; i < a.group; ++i) {
      __m256 acc = _mm256_setzero_ps();
      for (int64_t c = 0; c < hd; c += 8) {
        acc = _mm256_fmadd_ps(Widen(a.k + j * hd + c), _mm256_loadu_ps(a.q + i * hd + c), acc);
      }
      scores[i * n + j] = a.scale * HorizontalSum(acc);
    }
  }
  // Softmax numerators in place.
  for (int i = 0; i < a.group; ++i) {
    float* s = scores + i * n;
    __m256 vmax = _mm256_set1_ps(-INFINITY);
    for (int64_t j = 0; j < n8; j += 8) vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(s + j));
    float mx = HorizontalMax(vmax);
    for (int64_t j = n8; j < n; ++j) mx = std::max(mx, s[j]);
    const __m256 vm = _mm256_set1_ps(mx);
    __m256 vsum = _mm256_setzero_ps();
    for (int64_t j = 0; j < n8; j += 8) {
      const __m256 p = ExpAvx2(_mm256_sub_ps(_mm256_loadu_ps(s + j), vm));
      _mm256_storeu_ps(s + j, p);
      vsum = _mm256_add_ps(vsum, p);
    }
    float sum = HorizontalSum(vsum);
    for (int64_t j = n8; j < n; ++j) {
      s[j] = std::exp(s[j] - mx);
      sum += s[j];
    }
    m[i] = mx;
    l[i] = sum;
  }
  // o_i = sum_j p_ij v_j, 64 columns at a time, eight value rows at a time for every head.
  for (int i = 0; i < a.group; ++i) {
    for (int64_t c = 0; c < hd; ++c) o[i * hd + c] = 0.0f;
  }
  for (int64_t j0 = 0; j0 < n; j0 += 8) {
    const int64_t rows = j0 + 8 < n ? 8 : n - j0;
    if (kShared) WidenRows(a.v + j0 * hd, rows * hd, kb);
    // Row r of the block, from c on.
    const auto value = [&](int64_t r, int64_t c) {
      return kShared ? _mm256_loadu_ps(kb + r * hd + c) : Widen(a.v + (j0 + r) * hd + c);
    };
    for (int i = 0; i < a.group; ++i) {
      const float* p = scores + i * n + j0;
      int64_t c0 = 0;
      for (; c0 + 64 <= hd; c0 += 64) {
        float* oi = o + i * hd + c0;
        __m256 acc[8];
        AWQ_UNROLL for (int t = 0; t < 8; ++t) acc[t] = _mm256_loadu_ps(oi + 8 * t);
        for (int64_t r = 0; r < rows; ++r) {
          const __m256 pj = _mm256_set1_ps(p[r]);
          AWQ_UNROLL for (int t = 0; t < 8; ++t) {
            acc[t] = _mm256_fmadd_ps(pj, value(r, c0 + 8 * t), acc[t]);
          }
        }
        AWQ_UNROLL for (int t = 0; t < 8; ++t) _mm256_storeu_ps(oi + 8 * t, acc[t]);
      }
      for (; c0 < hd; c0 += 8) {  // head widths that are not a multiple of 64
        __m256 acc = _mm256_loadu_ps(o + i * hd + c0);
        for (int64_t r = 0; r < rows; ++r) {
          acc = _mm256_fmadd_ps(_mm256_set1_ps(p[r]), value(r, c0), acc);
        }
        _mm256_storeu_ps(o + i * hd + c0, acc);
      }
    }
  }
}

}  // namespace

void AttendPartialAvx2(const AttendArgs& a, float* scores, float* m, float* l, float* o) {
  if (a.group > 1) return Attend<true>(a, scores, m, l, o);
  Attend<false>(a, scores, m, l, o);
}

}  // namespace awq
