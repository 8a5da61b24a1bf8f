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
  __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    // Prefetching 2 KiB ahead lifts one-stream reads from 21 to 24 GB/s on the Zen 3 host.
    _mm_prefetch(reinterpret_cast<const char*>(p + i + 512), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(p + i + 528), _MM_HINT_T0);
    s0 = _mm256_add_ps(s0, _mm256_loadu_ps(p + i));
    s1 = _mm256_add_ps(s1, _mm256_loadu_ps(p + i + 8));
    s2 = _mm256_add_ps(s2, _mm256_loadu_ps(p + i + 16));
    s3 = _mm256_add_ps(s3, _mm256_loadu_ps(p + i + 24));
  }
  alignas(32) float t[8];
  _mm256_store_ps(t, _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
  float sum = t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
  for (; i < n; ++i) sum += p[i];
  return sum;
}

}  // namespace awq
