// AVX2 + FMA + F16C GEMV with fp16 weights: four rows at a time, 16 weights per row per step.
#include <immintrin.h>

#include "awq/half.h"
#include "kernels/cpu/f16_linear.h"

namespace awq {

namespace {
inline float HorizontalSum(__m256 v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));
}
inline __m256 Widen(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
}  // namespace

void GemvF16Avx2(const float* x, const uint16_t* w, int64_t ldw, float* y, int64_t n0, int64_t n1,
                 int64_t k, bool accumulate) {
  const int64_t k16 = k - k % 16;
  int64_t r = n0;
  for (; r + 4 <= n1; r += 4) {
    const uint16_t* w0 = w + r * ldw;
    const uint16_t* w1 = w0 + ldw;
    const uint16_t* w2 = w1 + ldw;
    const uint16_t* w3 = w2 + ldw;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    __m256 b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    for (int64_t i = 0; i < k16; i += 16) {
      const __m256 xa = _mm256_loadu_ps(x + i), xb = _mm256_loadu_ps(x + i + 8);
      a0 = _mm256_fmadd_ps(Widen(w0 + i), xa, a0);
      b0 = _mm256_fmadd_ps(Widen(w0 + i + 8), xb, b0);
      a1 = _mm256_fmadd_ps(Widen(w1 + i), xa, a1);
      b1 = _mm256_fmadd_ps(Widen(w1 + i + 8), xb, b1);
      a2 = _mm256_fmadd_ps(Widen(w2 + i), xa, a2);
      b2 = _mm256_fmadd_ps(Widen(w2 + i + 8), xb, b2);
      a3 = _mm256_fmadd_ps(Widen(w3 + i), xa, a3);
      b3 = _mm256_fmadd_ps(Widen(w3 + i + 8), xb, b3);
    }
    float s[4] = {HorizontalSum(_mm256_add_ps(a0, b0)), HorizontalSum(_mm256_add_ps(a1, b1)),
                  HorizontalSum(_mm256_add_ps(a2, b2)), HorizontalSum(_mm256_add_ps(a3, b3))};
    const uint16_t* rows[4] = {w0, w1, w2, w3};
    for (int j = 0; j < 4; ++j) {
      for (int64_t i = k16; i < k; ++i) s[j] += x[i] * Fp16ToFp32(rows[j][i]);
      y[r + j] = accumulate ? y[r + j] + s[j] : s[j];
    }
  }
  GemvF16Ref(x, w, ldw, y, r, n1, k, accumulate);
}

void WidenF16Avx2(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, Widen(src + i));
  for (; i < n; ++i) dst[i] = Fp16ToFp32(src[i]);
}

}  // namespace awq
