// AVX2 versions of the row kernels whose cost is exp: the prompt attention's softmax and the MLP's
// SiLU (a tenth of SmolLM2's prefill with std::exp, one call per element).
#include <immintrin.h>

#include <cmath>

#include "kernels/cpu/exp_avx2.h"
#include "kernels/cpu/ops.h"

namespace awq {

namespace {
inline float HorizontalMax(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}
inline double HorizontalSum(__m256 v) {
  alignas(32) float t[8];
  _mm256_store_ps(t, v);
  double s = 0;
  for (float f : t) s += f;
  return s;
}
}  // namespace

double SoftmaxRowAvx2(float* x, int64_t n) {
  int64_t i = 0;
  __m256 vmax = _mm256_set1_ps(-INFINITY);
  for (; i + 8 <= n; i += 8) vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(x + i));
  float mx = HorizontalMax(vmax);
  for (; i < n; ++i) mx = x[i] > mx ? x[i] : mx;
  const __m256 vmx = _mm256_set1_ps(mx);
  __m256 vsum = _mm256_setzero_ps();
  for (i = 0; i + 8 <= n; i += 8) {
    const __m256 e = ExpAvx2(_mm256_sub_ps(_mm256_loadu_ps(x + i), vmx));
    _mm256_storeu_ps(x + i, e);
    vsum = _mm256_add_ps(vsum, e);
  }
  double sum = HorizontalSum(vsum);
  for (; i < n; ++i) {
    const float e = std::exp(x[i] - mx);
    x[i] = e;
    sum += e;
  }
  const float inv = static_cast<float>(1.0 / sum);
  const __m256 vinv = _mm256_set1_ps(inv);
  for (i = 0; i + 8 <= n; i += 8)
    _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), vinv));
  for (; i < n; ++i) x[i] *= inv;
  return std::log(sum) + mx;
}

void SiluMulRowsAvx2(const float* gate_up, int64_t ld, float* out, int64_t ldo, int64_t n_rows,
                     int64_t d) {
  const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
  for (int64_t t = 0; t < n_rows; ++t) {
    const float* g = gate_up + t * ld;
    const float* u = g + d;
    float* o = out + t * ldo;
    int64_t j = 0;
    for (; j + 8 <= d; j += 8) {
      const __m256 gv = _mm256_loadu_ps(g + j);
      const __m256 sig = _mm256_div_ps(one, _mm256_add_ps(one, ExpAvx2(_mm256_sub_ps(zero, gv))));
      _mm256_storeu_ps(o + j, _mm256_mul_ps(_mm256_mul_ps(gv, sig), _mm256_loadu_ps(u + j)));
    }
    for (; j < d; ++j) o[j] = g[j] / (1.0f + std::exp(-g[j])) * u[j];
  }
}

}  // namespace awq
