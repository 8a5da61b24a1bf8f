// The register tile of the ordered sgemm (sgemm.cc), written once over a vector type so the
// scalar, AVX2 and AVX-512 builds run the same arithmetic: every element of C is one chain of
// fused multiply-adds over k in ascending order, whatever the vector width, tile shape or
// blocking. Included by sgemm.cc (scalar lanes) and by the per-ISA files, each with its flags.
#pragma once

#include <cmath>
#include <cstdint>

// Every loop over the tile's rows and vectors is unrolled so the accumulators live in registers
// (GCC 12 keeps them in memory otherwise, at a third of the FMA rate).
#define AWQ_TILE_UNROLL _Pragma("GCC unroll 32")

namespace awq::sgemm_tile {

// The scalar "vector": L lanes of std::fma, the reference every SIMD build must equal bit for bit.
template <int L>
struct ScalarVec {
  static constexpr int kLanes = L;
  float v[L];
  static ScalarVec Zero() {
    ScalarVec r;
    for (int i = 0; i < L; ++i) r.v[i] = 0.0f;
    return r;
  }
  static ScalarVec Load(const float* p) {
    ScalarVec r;
    for (int i = 0; i < L; ++i) r.v[i] = p[i];
    return r;
  }
  static ScalarVec Broadcast(const float* p) {
    ScalarVec r;
    for (int i = 0; i < L; ++i) r.v[i] = *p;
    return r;
  }
  static void Store(float* p, const ScalarVec& a) {
    for (int i = 0; i < L; ++i) p[i] = a.v[i];
  }
  // a * b + c, rounded once.
  static ScalarVec Fma(const ScalarVec& a, const ScalarVec& b, const ScalarVec& c) {
    ScalarVec r;
    for (int i = 0; i < L; ++i) r.v[i] = std::fma(a.v[i], b.v[i], c.v[i]);
    return r;
  }
};

// C[R, NV * V::kLanes] (row stride ldc) = (load ? C : 0) + the sum over p < kc, in order, of
// ap[p * MR + i] * bp[p * NB + j], one fma per term: ap is an A panel packed MR rows wide
// (k-major), of which the first R rows are used; bp a B panel packed NB columns wide (k-major).
template <class V, int MR, int R, int NV>
inline void Tile(int64_t kc, const float* ap, const float* bp, float* c, int64_t ldc, bool load) {
  constexpr int NB = NV * V::kLanes;
  V acc[R][NV];
  AWQ_TILE_UNROLL
  for (int i = 0; i < R; ++i) {
    AWQ_TILE_UNROLL
    for (int j = 0; j < NV; ++j) {
      acc[i][j] = load ? V::Load(c + i * ldc + j * V::kLanes) : V::Zero();
    }
  }
  for (int64_t p = 0; p < kc; ++p) {
    V b[NV];
    AWQ_TILE_UNROLL
    for (int j = 0; j < NV; ++j) b[j] = V::Load(bp + p * NB + j * V::kLanes);
    AWQ_TILE_UNROLL
    for (int i = 0; i < R; ++i) {
      const V a = V::Broadcast(ap + p * MR + i);
      AWQ_TILE_UNROLL
      for (int j = 0; j < NV; ++j) acc[i][j] = V::Fma(a, b[j], acc[i][j]);
    }
  }
  AWQ_TILE_UNROLL
  for (int i = 0; i < R; ++i) {
    AWQ_TILE_UNROLL
    for (int j = 0; j < NV; ++j) V::Store(c + i * ldc + j * V::kLanes, acc[i][j]);
  }
}

// Tile for the first `rows` (1..MR) rows of the panel.
template <class V, int MR, int NV, int R = MR>
inline void TileRows(int rows, int64_t kc, const float* ap, const float* bp, float* c, int64_t ldc,
                     bool load) {
  if constexpr (R > 1) {
    if (rows < R) return TileRows<V, MR, NV, R - 1>(rows, kc, ap, bp, c, ldc, load);
  }
  Tile<V, MR, R, NV>(kc, ap, bp, c, ldc, load);
}

// One instruction set's tile: MR rows by NB columns of C.
struct TileKernel {
  int mr;
  int nb;
  void (*run)(int rows, int64_t kc, const float* ap, const float* bp, float* c, int64_t ldc,
              bool load);
};

template <class V, int MR, int NV>
TileKernel MakeTileKernel() {
  return {MR, NV * V::kLanes, &TileRows<V, MR, NV>};
}

// Packs columns [0, cols) (cols <= nb) and inputs [0, kc) of op(B) = B^T, B row-major from `b`
// (b[j * ldb + p]), as one panel nb wide: bp[p * nb + j], columns past cols zero.
using PackBTransFn = void (*)(const float* b, int64_t ldb, int64_t kc, int64_t cols, int nb,
                              float* bp);
void PackBTransScalar(const float* b, int64_t ldb, int64_t kc, int64_t cols, int nb, float* bp);

// A one-row product with op(B) = B^T, unpacked: y[j] = chain over p < k of fma(x[p], b[j * ldb +
// p], acc), acc starting at y[j] when load, else 0.
using GemvTransFn = void (*)(const float* x, const float* b, int64_t ldb, int64_t n, int64_t k,
                             float* y, bool load);
void GemvTransScalar(const float* x, const float* b, int64_t ldb, int64_t n, int64_t k, float* y,
                     bool load);

// What an instruction set brings: a tile for blocks of many rows, a wide single-row tile for
// GEMV-shaped products (enough independent chains to hide the FMA latency), the transposing B
// packer, and the one-row x W^T that transposes in registers instead of packing. None of them
// changes the arithmetic.
struct TileSet {
  TileKernel wide;
  TileKernel narrow;
  PackBTransFn pack_b_trans;
  GemvTransFn gemv_trans;
};

// The ordered sgemm of sgemm.h on tile set `t` (tests run every set through the one driver).
void SgemmOrdered(const TileSet& t, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                  float alpha, const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
                  float* c, int64_t ldc);

TileSet ScalarTiles();  // 4 x 8, narrow 1 x 32
#if defined(__x86_64__)
TileSet Avx2Tiles();    // sgemm_avx2.cc: 6 x 16, narrow 1 x 64
TileSet Avx512Tiles();  // sgemm_avx512.cc: 12 x 32, narrow 1 x 128
void PackBTransAvx2(const float* b, int64_t ldb, int64_t kc, int64_t cols, int nb, float* bp);
void GemvTransAvx2(const float* x, const float* b, int64_t ldb, int64_t n, int64_t k, float* y,
                   bool load);
#endif

}  // namespace awq::sgemm_tile
