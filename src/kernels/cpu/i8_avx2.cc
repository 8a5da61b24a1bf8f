// AVX2 GEMV with int8 weights (per-row scale): one row at a time, 32 weights per step.
#include <immintrin.h>

#include "kernels/cpu/i8_linear.h"

namespace awq {

namespace {
inline float HorizontalSum(__m256 v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));
}
inline __m256 Widen8(const int8_t* p) {
  return _mm256_cvtepi32_ps(
      _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}
}  // namespace

void GemvI8Avx2(const float* x, const Int8Rows& w, float* y, int64_t r0, int64_t r1) {
  const int64_t k = w.cols, k32 = k - k % 32;
  for (int64_t r = r0; r < r1; ++r) {
    const int8_t* q = w.q.data() + r * k;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i < k32; i += 32) {
      _mm_prefetch(reinterpret_cast<const char*>(q + i) + 512, _MM_HINT_T0);
      a0 = _mm256_fmadd_ps(Widen8(q + i), _mm256_loadu_ps(x + i), a0);
      a1 = _mm256_fmadd_ps(Widen8(q + i + 8), _mm256_loadu_ps(x + i + 8), a1);
      a2 = _mm256_fmadd_ps(Widen8(q + i + 16), _mm256_loadu_ps(x + i + 16), a2);
      a3 = _mm256_fmadd_ps(Widen8(q + i + 24), _mm256_loadu_ps(x + i + 24), a3);
    }
    float s = HorizontalSum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < k; ++i) s += x[i] * static_cast<float>(q[i]);
    y[r] = s * w.scale[static_cast<size_t>(r)];
  }
}

}  // namespace awq
