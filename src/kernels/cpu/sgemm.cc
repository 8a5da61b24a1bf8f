// The ordered sgemm: BLIS-style blocking (packed A blocks and B panels, a register tile from
// sgemm_tile.h) in which every output is one fma chain over k in ascending order. Blocks of k
// store their partial sums in C and the next block reloads them, which is exact, so neither the
// block sizes nor the tile shape nor the vector width changes a bit of the result. oneDNN's sgemm
// stays selectable; each calling thread pins oneDNN's OpenMP team to one thread.
#include "kernels/cpu/sgemm.h"

#include <dnnl.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>

#include "awq/error.h"
#include "awq/thread_pool.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/scratch.h"
#include "kernels/cpu/sgemm_tile.h"

extern "C" void omp_set_num_threads(int);  // libgomp, already a dependency of libdnnl

namespace awq {

namespace {

// oneDNN reads the calling thread's OpenMP team size; one per thread keeps its workers idle.
void PinOpenMpToOneThread() {
  static thread_local bool pinned = [] {
    omp_set_num_threads(1);
    return true;
  }();
  (void)pinned;
}

// Columns per thread chunk are kept a multiple of this so every thread gets whole tiles.
constexpr int64_t kColumnGrain = 32;

// Block sizes: kc inputs per pass (a B micro-panel of kc x 32 floats, 32 KiB, stays in L1), a
// block of A of at most kMc x kc (144 KiB) in L2, a B panel of kc x kNc (4 MiB) in L3.
constexpr int64_t kKc = 256, kMc = 144, kNc = 4096;
// Products of at most this many rows take the set's narrow tile.
constexpr int64_t kNarrowMaxRows = 2;
constexpr int kMaxTile = 12 * 128;  // room for the largest tile, for edge columns

const sgemm_tile::TileSet& TilesFor(SgemmPath path) {
  static const sgemm_tile::TileSet scalar = sgemm_tile::ScalarTiles();
#if defined(__x86_64__)
  static const sgemm_tile::TileSet avx2 = sgemm_tile::Avx2Tiles();
  static const sgemm_tile::TileSet avx512 = sgemm_tile::Avx512Tiles();
  if (path == SgemmPath::kAvx2) return avx2;
  if (path == SgemmPath::kAvx512) return avx512;
#endif
  return scalar;
}

// Rows [i0, i0 + rows) and inputs [p0, p0 + kc) of alpha * op(A), as panels of mr rows:
// ap[(r / mr) * kc * mr + p * mr + r % mr], rows past the end zero.
void PackA(bool trans, const float* a, int64_t lda, int64_t i0, int64_t rows, int64_t p0,
           int64_t kc, float alpha, int mr, float* ap) {
  for (int64_t r0 = 0; r0 < rows; r0 += mr) {
    float* dst = ap + r0 * kc;
    const int live = static_cast<int>(std::min<int64_t>(mr, rows - r0));
    if (trans) {  // op(A)'s rows are columns of a: each input's mr values are adjacent
      for (int64_t p = 0; p < kc; ++p) {
        const float* src = a + (p0 + p) * lda + i0 + r0;
        for (int i = 0; i < mr; ++i) dst[p * mr + i] = i < live ? alpha * src[i] : 0.0f;
      }
      continue;
    }
    for (int i = 0; i < mr; ++i) {
      if (i >= live) {
        for (int64_t p = 0; p < kc; ++p) dst[p * mr + i] = 0.0f;
        continue;
      }
      const float* src = a + (i0 + r0 + i) * lda + p0;
      for (int64_t p = 0; p < kc; ++p) dst[p * mr + i] = alpha * src[p];
    }
  }
}

// Columns [j0, j0 + cols) (cols <= nb) and inputs [p0, p0 + kc) of op(B) as one panel nb wide:
// bp[p * nb + j], columns past the end zero.
void PackB(bool trans, const float* b, int64_t ldb, int64_t p0, int64_t kc, int64_t j0,
           int64_t cols, int nb, sgemm_tile::PackBTransFn pack_trans, float* bp) {
  if (trans) return pack_trans(b + j0 * ldb + p0, ldb, kc, cols, nb, bp);
  for (int64_t p = 0; p < kc; ++p) {
    const float* src = b + (p0 + p) * ldb + j0;
    float* dst = bp + p * nb;
    std::memcpy(dst, src, static_cast<size_t>(cols) * sizeof(float));
    for (int64_t j = cols; j < nb; ++j) dst[j] = 0.0f;
  }
}

}  // namespace

void sgemm_tile::PackBTransScalar(const float* b, int64_t ldb, int64_t kc, int64_t cols, int nb,
                                  float* bp) {
  for (int64_t j = 0; j < nb; ++j) {
    for (int64_t p = 0; p < kc; ++p) bp[p * nb + j] = j < cols ? b[j * ldb + p] : 0.0f;
  }
}

void sgemm_tile::GemvTransScalar(const float* x, const float* b, int64_t ldb, int64_t n, int64_t k,
                                 float* y, bool load) {
  for (int64_t j = 0; j < n; ++j) {
    float acc = load ? y[j] : 0.0f;
    for (int64_t p = 0; p < k; ++p) acc = std::fma(x[p], b[j * ldb + p], acc);
    y[j] = acc;
  }
}

sgemm_tile::TileSet sgemm_tile::ScalarTiles() {
  return {MakeTileKernel<ScalarVec<8>, 4, 1>(), MakeTileKernel<ScalarVec<8>, 1, 4>(),
          &PackBTransScalar, &GemvTransScalar};
}

void sgemm_tile::SgemmOrdered(const TileSet& set, bool trans_a, bool trans_b, int64_t m, int64_t n,
                              int64_t k, float alpha, const float* a, int64_t lda, const float* b,
                              int64_t ldb, float beta, float* c, int64_t ldc) {
  if (beta != 0.0f) {
    // The product's chains start from 0 and C is added after, as BLAS defines beta: accumulating
    // into C then gives the bytes of computing the product and adding it, which the block walk's
    // two paths (residual added by the product, or kept apart for an observer) rely on.
    float* t = ThreadScratch<6>(static_cast<size_t>(m * n));
    SgemmOrdered(set, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, 0.0f, t, n);
    for (int64_t i = 0; i < m; ++i) {
      float* ci = c + i * ldc;
      const float* ti = t + i * n;
      for (int64_t j = 0; j < n; ++j) ci[j] = std::fma(beta, ci[j], ti[j]);
    }
    return;
  }
  if (k == 0) {
    for (int64_t i = 0; i < m; ++i) std::fill(c + i * ldc, c + i * ldc + n, 0.0f);
    return;
  }
  if (m == 1 && trans_b) {
    // One row times W^T: the row scaled by alpha, then each output's chain straight from W.
    float* xa = ThreadScratch<4>(static_cast<size_t>(k));
    for (int64_t p = 0; p < k; ++p) xa[p] = alpha * (trans_a ? a[p * lda] : a[p]);
    set.gemv_trans(xa, b, ldb, n, k, c, false);
    return;
  }
  const TileKernel& t = m <= kNarrowMaxRows ? set.narrow : set.wide;
  const int64_t mc = (kMc / t.mr) * t.mr;
  // With at most one block of rows each B micro-panel is used by one pass over the rows, so it is
  // packed just before into an L1-sized buffer; with more, a whole B panel is packed once and
  // reused by every block of rows.
  const bool one_row_block = m <= mc;
  float* ap = ThreadScratch<4>(static_cast<size_t>(mc * kKc));
  float* bp = ThreadScratch<5>(static_cast<size_t>(kKc * (one_row_block ? t.nb : kNc)));
  alignas(64) float edge[kMaxTile];
  for (int64_t jc = 0; jc < n; jc += kNc) {
    const int64_t ncols = std::min(kNc, n - jc);
    for (int64_t pc = 0; pc < k; pc += kKc) {
      const int64_t kc = std::min(kKc, k - pc);
      const bool load = pc > 0;
      if (!one_row_block) {
        for (int64_t jr = 0; jr < ncols; jr += t.nb) {
          PackB(trans_b, b, ldb, pc, kc, jc + jr, std::min<int64_t>(t.nb, ncols - jr), t.nb,
                set.pack_b_trans, bp + jr * kc);
        }
      }
      for (int64_t ic = 0; ic < m; ic += mc) {
        const int64_t rows_blk = std::min(mc, m - ic);
        PackA(trans_a, a, lda, ic, rows_blk, pc, kc, alpha, t.mr, ap);
        for (int64_t jr = 0; jr < ncols; jr += t.nb) {
          const int64_t cols = std::min<int64_t>(t.nb, ncols - jr);
          const float* bq = bp + jr * kc;
          if (one_row_block) {
            PackB(trans_b, b, ldb, pc, kc, jc + jr, cols, t.nb, set.pack_b_trans, bp);
            bq = bp;
          }
          for (int64_t ir = 0; ir < rows_blk; ir += t.mr) {
            const int rows = static_cast<int>(std::min<int64_t>(t.mr, rows_blk - ir));
            float* cij = c + (ic + ir) * ldc + jc + jr;
            if (cols == t.nb) {
              t.run(rows, kc, ap + ir * kc, bq, cij, ldc, load);
              continue;
            }
            for (int i = 0; i < rows && load; ++i) {
              std::memcpy(edge + i * t.nb, cij + i * ldc, static_cast<size_t>(cols) * 4);
            }
            t.run(rows, kc, ap + ir * kc, bq, edge, t.nb, load);
            for (int i = 0; i < rows; ++i) {
              std::memcpy(cij + i * ldc, edge + i * t.nb, static_cast<size_t>(cols) * 4);
            }
          }
        }
      }
    }
  }
}

namespace {

SgemmPath ParsePath(const std::string& s) {
  for (SgemmPath p :
       {SgemmPath::kScalar, SgemmPath::kAvx2, SgemmPath::kAvx512, SgemmPath::kOneDnn}) {
    if (s == SgemmPathName(p)) return p;
  }
  throw Error("AWQ_SGEMM=" + s + ": unknown sgemm path (scalar, avx2, avx512, onednn)");
}

}  // namespace

const char* SgemmPathName(SgemmPath path) {
  switch (path) {
    case SgemmPath::kScalar:
      return "scalar";
    case SgemmPath::kAvx2:
      return "avx2";
    case SgemmPath::kAvx512:
      return "avx512";
    case SgemmPath::kOneDnn:
      return "onednn";
  }
  return "?";
}

bool SgemmPathSupported(SgemmPath path) {
  switch (path) {
    case SgemmPath::kAvx2:
      return CpuHasAvx2Fma();
    case SgemmPath::kAvx512:
      return CpuHasAvx512() && CpuHasAvx2Fma();
    default:
      return true;
  }
}

SgemmPath ActiveSgemmPath() {
  static const SgemmPath path = [] {
    const char* env = std::getenv("AWQ_SGEMM");
    if (env != nullptr && *env != 0) {
      const SgemmPath p = ParsePath(env);
      if (!SgemmPathSupported(p)) {
        throw Error(std::string("AWQ_SGEMM=") + env + ": this CPU cannot run that path");
      }
      return p;
    }
    if (SgemmPathSupported(SgemmPath::kAvx512)) return SgemmPath::kAvx512;
    if (SgemmPathSupported(SgemmPath::kAvx2)) return SgemmPath::kAvx2;
    return SgemmPath::kScalar;
  }();
  return path;
}

void SgemmSerialOn(SgemmPath path, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                   float alpha, const float* a, int64_t lda, const float* b, int64_t ldb,
                   float beta, float* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  AWQ_CHECK(SgemmPathSupported(path));
  if (path == SgemmPath::kOneDnn) {
    PinOpenMpToOneThread();
    const dnnl_status_t st = dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, alpha, a,
                                        lda, b, ldb, beta, c, ldc);
    AWQ_CHECK(st == dnnl_success);
    return;
  }
  sgemm_tile::SgemmOrdered(TilesFor(path), trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta,
                           c, ldc);
}

void SgemmSerial(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                 const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                 int64_t ldc) {
  SgemmSerialOn(ActiveSgemmPath(), trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void LinearF32(const float* x, int64_t ldx, const float* w, int64_t ldw, float* y, int64_t ldy,
               int64_t m, int64_t n, int64_t k, bool accumulate, ThreadPool& pool) {
  LinearF32On(ActiveSgemmPath(), x, ldx, w, ldw, y, ldy, m, n, k, accumulate, pool);
}

void LinearF32On(SgemmPath path, const float* x, int64_t ldx, const float* w, int64_t ldw, float* y,
                 int64_t ldy, int64_t m, int64_t n, int64_t k, bool accumulate, ThreadPool& pool) {
  pool.ParallelFor(
      n,
      [&](int64_t n0, int64_t n1, int) {
        SgemmSerialOn(path, false, true, m, n1 - n0, k, 1.0f, x, ldx, w + n0 * ldw, ldw,
                      accumulate ? 1.0f : 0.0f, y + n0, ldy);
      },
      kColumnGrain);
}

}  // namespace awq
