// The ordered sgemm's register tiles with 512-bit FMAs: 12 rows by 32 columns (24 accumulators)
// and 1 row by 128 columns (8); transposed B is packed, and one-row products with it run, by
// the AVX2 code (reading W, not the FMA width, bounds those).
//
// The same source is compiled a second time against SIMDe's portable AVX-512 (AWQ_EMULATE_SIMD,
// into namespace awq::sgemm_tile::emulated), so tests/sgemm_test.cc checks its bytes on CPUs
// without AVX-512.
#if defined(AWQ_EMULATE_SIMD)
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
#else
#include <immintrin.h>
#endif

#include "kernels/cpu/sgemm_tile.h"

namespace awq::sgemm_tile {
#if defined(AWQ_EMULATE_SIMD)
namespace emulated {
#endif

namespace {
struct Avx512Vec {
  static constexpr int kLanes = 16;
  __m512 v;
  static Avx512Vec Zero() { return {_mm512_setzero_ps()}; }
  static Avx512Vec Load(const float* p) { return {_mm512_loadu_ps(p)}; }
  static Avx512Vec Broadcast(const float* p) { return {_mm512_set1_ps(*p)}; }
  static void Store(float* p, const Avx512Vec& a) { _mm512_storeu_ps(p, a.v); }
  static Avx512Vec Fma(const Avx512Vec& a, const Avx512Vec& b, const Avx512Vec& c) {
    return {_mm512_fmadd_ps(a.v, b.v, c.v)};
  }
};
}  // namespace

TileSet Avx512Tiles() {
#if defined(AWQ_EMULATE_SIMD)
  const PackBTransFn pack = &PackBTransScalar;  // any CPU
  const GemvTransFn gemv = &GemvTransScalar;
#else
  const PackBTransFn pack = &PackBTransAvx2;
  const GemvTransFn gemv = &GemvTransAvx2;
#endif
  return {MakeTileKernel<Avx512Vec, 12, 2>(), MakeTileKernel<Avx512Vec, 1, 8>(), pack, gemv};
}

#if defined(AWQ_EMULATE_SIMD)
}  // namespace emulated
#endif
}  // namespace awq::sgemm_tile
