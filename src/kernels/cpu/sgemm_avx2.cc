// The ordered sgemm's register tiles with 256-bit FMAs: 6 rows by 16 columns (12 accumulators),
// 1 row by 64 columns (8), and the packing of transposed B through 8x8 register transposes.
#include <immintrin.h>

#include "kernels/cpu/sgemm_tile.h"
#include "kernels/cpu/transpose_avx2.h"

namespace awq::sgemm_tile {

namespace {
struct Avx2Vec {
  static constexpr int kLanes = 8;
  __m256 v;
  static Avx2Vec Zero() { return {_mm256_setzero_ps()}; }
  static Avx2Vec Load(const float* p) { return {_mm256_loadu_ps(p)}; }
  static Avx2Vec Broadcast(const float* p) { return {_mm256_broadcast_ss(p)}; }
  static void Store(float* p, const Avx2Vec& a) { _mm256_storeu_ps(p, a.v); }
  static Avx2Vec Fma(const Avx2Vec& a, const Avx2Vec& b, const Avx2Vec& c) {
    return {_mm256_fmadd_ps(a.v, b.v, c.v)};
  }
};
}  // namespace

void PackBTransAvx2(const float* b, int64_t ldb, int64_t kc, int64_t cols, int nb, float* bp) {
  int64_t j = 0;
  for (; j + 8 <= cols; j += 8) {
    const float* src = b + j * ldb;
    int64_t p = 0;
    for (; p + 8 <= kc; p += 8) {
      __m256 r[8];
      for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * ldb + p);
      Transpose8x8(r);
      for (int q = 0; q < 8; ++q) _mm256_storeu_ps(bp + (p + q) * nb + j, r[q]);
    }
    for (; p < kc; ++p) {
      for (int i = 0; i < 8; ++i) bp[p * nb + j + i] = src[i * ldb + p];
    }
  }
  for (; j < nb; ++j) {
    for (int64_t p = 0; p < kc; ++p) bp[p * nb + j] = j < cols ? b[j * ldb + p] : 0.0f;
  }
}

namespace {
// acc (lane i: row i of the 8 at src) += inputs [p, p + 8) of those rows, in order: the 8 x 8 block
// transposed in registers, then one fma per input.
inline __m256 Step8(const float* x, const float* src, int64_t ldb, int64_t p, __m256 acc) {
  __m256 r[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * ldb + p);
  Transpose8x8(r);
  for (int q = 0; q < 8; ++q) acc = _mm256_fmadd_ps(_mm256_set1_ps(x[p + q]), r[q], acc);
  return acc;
}

// Outputs [j0, j0 + 8): 8 rows of B, one chain each (lane i: row j0 + i). One group of 8 rows at
// a time measured fastest on Zen 3: two or four groups in flight (16 or 32 row streams, staggered
// or not) ran at 0.4 to 0.7 times its speed.
void GemvRows(const float* x, const float* b, int64_t ldb, int64_t j0, int64_t k, float* y,
              bool load) {
  const float* rows = b + j0 * ldb;
  __m256 acc = load ? _mm256_loadu_ps(y + j0) : _mm256_setzero_ps();
  int64_t p = 0;
  for (; p + 8 <= k; p += 8) acc = Step8(x, rows, ldb, p, acc);
  for (; p < k; ++p) {
    const float* src = rows + p;
    const __m256 col = _mm256_setr_ps(src[0], src[ldb], src[2 * ldb], src[3 * ldb], src[4 * ldb],
                                      src[5 * ldb], src[6 * ldb], src[7 * ldb]);
    acc = _mm256_fmadd_ps(_mm256_set1_ps(x[p]), col, acc);
  }
  _mm256_storeu_ps(y + j0, acc);
}
}  // namespace

void GemvTransAvx2(const float* x, const float* b, int64_t ldb, int64_t n, int64_t k, float* y,
                   bool load) {
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) GemvRows(x, b, ldb, j, k, y, load);
  if (j < n) GemvTransScalar(x, b + j * ldb, ldb, n - j, k, y + j, load);
}

TileSet Avx2Tiles() {
  return {MakeTileKernel<Avx2Vec, 6, 2>(), MakeTileKernel<Avx2Vec, 1, 8>(), &PackBTransAvx2,
          &GemvTransAvx2};
}

}  // namespace awq::sgemm_tile
