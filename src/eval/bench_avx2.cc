// AVX2 inner loops of MeasureMemoryBandwidth: the compiler's SSE2 code for the portable loops
// issues too few loads per cycle to saturate DRAM on two cores (measured 14.7 GB/s triad against
// 26 GB/s that oneDNN's sgemv streams), which would understate the bandwidth every decode figure
// is divided by.
#include <immintrin.h>

#include <cstdint>

#include "eval/bench_loops.h"

namespace awq {

void TriadAvx2(float* a, const float* b, const float* c, float s, int64_t n) {
  const __m256 vs = _mm256_set1_ps(s);
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    for (int j = 0; j < 32; j += 8) {
      _mm256_storeu_ps(a + i + j,
                       _mm256_fmadd_ps(vs, _mm256_loadu_ps(c + i + j), _mm256_loadu_ps(b + i + j)));
    }
  }
  for (; i < n; ++i) a[i] = b[i] + s * c[i];
}

float SumAvx2(const float* p, int64_t n) {
  // Four streams a quarter of the range apart: one sequential stream per core reads at 13-18 GB/s
  // on the Zen 3 host, four to eight at 20-25 GB/s, the rate oneDNN's sgemv streams weights at.
  constexpr int kStreams = 4;
  const int64_t len = n / kStreams - (n / kStreams) % 16;
  __m256 s[2 * kStreams];
  for (__m256& v : s) v = _mm256_setzero_ps();
  for (int64_t i = 0; i < len; i += 16) {
    for (int j = 0; j < kStreams; ++j) {
      const float* q = p + j * len + i;
      _mm_prefetch(reinterpret_cast<const char*>(q + 128), _MM_HINT_T0);
      s[2 * j] = _mm256_add_ps(s[2 * j], _mm256_loadu_ps(q));
      s[2 * j + 1] = _mm256_add_ps(s[2 * j + 1], _mm256_loadu_ps(q + 8));
    }
  }
  __m256 t = s[0];
  for (int j = 1; j < 2 * kStreams; ++j) t = _mm256_add_ps(t, s[j]);
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, t);
  float sum = 0.0f;
  for (float v : lanes) sum += v;
  for (int64_t i = kStreams * len; i < n; ++i) sum += p[i];
  return sum;
}

}  // namespace awq
