// Helpers shared by the AVX-512 int4 kernels (int4_int8_avx512.cc, int4_bf16_avx512.cc).
// Each of those sources is compiled twice, against <immintrin.h> and against SIMDe (into
// namespace awq::emulated), so, like Highway's per-target headers, this file has no includes or
// namespace of its own: a kernel source includes it inside its (anonymous) namespace, after its
// intrinsics header and kernels/cpu/int4_layout.h.

// 16 lanes from two 8-lane halves.
inline __m512 Join(__m256 lo, __m256 hi) {
  return _mm512_castpd_ps(
      _mm512_insertf64x4(_mm512_castps_pd(_mm512_castps256_ps512(lo)), _mm256_castps_pd(hi), 1));
}
inline __m512i Join(__m256i lo, __m256i hi) {
  return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

// Stores (or adds) the 16 outputs of row blocks b and b + 1 (where it exists) to one row of y.
inline void StoreRowBlocks(__m512 r, float* y, int64_t b, int64_t out, bool accumulate) {
  alignas(64) float tmp[2 * kInt4Rows];
  _mm512_store_ps(tmp, r);
  const int64_t valid = std::min<int64_t>(2 * kInt4Rows, out - b * kInt4Rows);
  float* yb = y + b * kInt4Rows;
  for (int64_t i = 0; i < valid; ++i) yb[i] = accumulate ? yb[i] + tmp[i] : tmp[i];
}
