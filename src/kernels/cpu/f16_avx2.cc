// AVX2 + FMA + F16C GEMV with fp16 weights: one row at a time, 32 weights per step.
#include <immintrin.h>

#include "awq/half.h"
#include "kernels/cpu/f16_linear.h"

namespace awq {

namespace {
// Software prefetch distance: measured 14.6 GB/s at 1 KiB, 15.2 at 256 B, 14.1 at 4 KiB (49152 x
// 576, two threads, Zen 3 host).
constexpr int64_t kPrefetchBytes = 256;

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
  // One row at a time, front to back: the weights are one sequential stream, which the hardware
  // prefetcher follows best (four interleaved rows ran at half the bandwidth).
  const int64_t k32 = k - k % 32;
  for (int64_t r = n0; r < n1; ++r) {
    const uint16_t* wr = w + r * ldw;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i < k32; i += 32) {
      _mm_prefetch(reinterpret_cast<const char*>(wr + i) + kPrefetchBytes, _MM_HINT_T0);
      a0 = _mm256_fmadd_ps(Widen(wr + i), _mm256_loadu_ps(x + i), a0);
      a1 = _mm256_fmadd_ps(Widen(wr + i + 8), _mm256_loadu_ps(x + i + 8), a1);
      a2 = _mm256_fmadd_ps(Widen(wr + i + 16), _mm256_loadu_ps(x + i + 16), a2);
      a3 = _mm256_fmadd_ps(Widen(wr + i + 24), _mm256_loadu_ps(x + i + 24), a3);
    }
    float s = HorizontalSum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < k; ++i) s += x[i] * Fp16ToFp32(wr[i]);
    y[r] = accumulate ? y[r] + s : s;
  }
}

void WidenF16Avx2(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, Widen(src + i));
  for (; i < n; ++i) dst[i] = Fp16ToFp32(src[i]);
}

}  // namespace awq
