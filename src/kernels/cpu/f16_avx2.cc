// AVX2 + FMA + F16C GEMV with fp16 weights: one row at a time, 32 weights per step.
#include <immintrin.h>

#include "awq/half.h"
#include "kernels/cpu/f16_linear.h"

namespace awq {

namespace {
// Software prefetch distance, 512 bytes as in the int8 GEMVs. On SmolLM2's head (49152 x 576, rows
// of 1152 bytes) 256 B to 4 KiB were within noise (Zen 3). On Llama-2-7B's (32000 x 4096, 262 MB,
// a fifth of a decode step's bytes) 512 against 256 raised the 7B-shaped decode's token-paired
// share of the read loop from 86.7% to 89.5% (means of 6 interleaved pairs of `awq bench` runs,
// 5 of them in favour; Zen 3, 2026-12-05); 1024 read as 512 did, and SmolLM2's decode did not move.
constexpr int64_t kPrefetchBytes = 512;

inline float HorizontalSum(__m256 v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));
}
inline __m256 Widen(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
}  // namespace

namespace {
// Dot products of x with rows w[r_j], j < S, one accumulator set per row; the rows are S
// sequential streams.
template <int S>
inline void DotRows(const float* x, const uint16_t* const* rows, int64_t k, float* out) {
  const int64_t k16 = k - k % 16;
  __m256 a[S][2];
  for (int j = 0; j < S; ++j) a[j][0] = a[j][1] = _mm256_setzero_ps();
  for (int64_t i = 0; i < k16; i += 16) {
    const __m256 x0 = _mm256_loadu_ps(x + i), x1 = _mm256_loadu_ps(x + i + 8);
#pragma GCC unroll 4
    for (int j = 0; j < S; ++j) {
      _mm_prefetch(reinterpret_cast<const char*>(rows[j] + i) + kPrefetchBytes, _MM_HINT_T0);
      a[j][0] = _mm256_fmadd_ps(Widen(rows[j] + i), x0, a[j][0]);
      a[j][1] = _mm256_fmadd_ps(Widen(rows[j] + i + 8), x1, a[j][1]);
    }
  }
  for (int j = 0; j < S; ++j) {
    float s = HorizontalSum(_mm256_add_ps(a[j][0], a[j][1]));
    for (int64_t i = k16; i < k; ++i) s += x[i] * Fp16ToFp32(rows[j][i]);
    out[j] = s;
  }
}
}  // namespace

void GemvF16Avx2(const float* x, const uint16_t* w, int64_t ldw, float* y, int64_t n0, int64_t n1,
                 int64_t k, bool accumulate) {
  // Four streams: the range's quarters walked in lockstep, each front to back. One stream per
  // core reads at about 15 GB/s on the Zen 3 host, four at 20-25 GB/s.
  constexpr int kStreams = 4;
  const int64_t len = (n1 - n0) / kStreams;
  float out[kStreams];
  const uint16_t* rows[kStreams];
  for (int64_t i = 0; i < len; ++i) {
    for (int j = 0; j < kStreams; ++j) rows[j] = w + (n0 + j * len + i) * ldw;
    DotRows<kStreams>(x, rows, k, out);
    for (int j = 0; j < kStreams; ++j) {
      float* yr = y + n0 + j * len + i;
      *yr = accumulate ? *yr + out[j] : out[j];
    }
  }
  for (int64_t r = n0 + kStreams * len; r < n1; ++r) {
    rows[0] = w + r * ldw;
    DotRows<1>(x, rows, k, out);
    y[r] = accumulate ? y[r] + out[0] : out[0];
  }
}

void NarrowF16Avx2(const float* src, uint16_t* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
  }
  for (; i < n; ++i) dst[i] = Fp32ToFp16(src[i]);
}

void WidenF16Avx2(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, Widen(src + i));
  for (; i < n; ++i) dst[i] = Fp16ToFp32(src[i]);
}

}  // namespace awq
