// The ordered sgemm: every tile (scalar, AVX2, AVX-512 natively or through SIMDe) gives the bytes
// of the formula in sgemm.h computed by a plain triple loop, over shapes that hit every edge of
// the blocking, both transposes, strides, alpha and beta; LinearF32 gives the same bytes on 1, 2
// and 3 threads. These are what make a checkpoint the same on AVX2 and AVX-512 hosts.
#include "kernels/cpu/sgemm.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "awq/thread_pool.h"
#include "kernels/cpu/sgemm_tile.h"

#if defined(AWQ_HAVE_SIMDE)
namespace awq::sgemm_tile::emulated {
TileSet Avx512Tiles();
}
#endif

namespace awq {
namespace {

struct Shape {
  int64_t m, n, k;
};

struct Operands {
  bool ta, tb;
  int64_t m, n, k, lda, ldb, ldc;
  std::vector<float> a, b, c;
};

Operands Make(const Shape& s, bool ta, bool tb, std::mt19937& rng) {
  std::normal_distribution<float> nd(0.0f, 1.0f);
  Operands o{ta, tb, s.m, s.n, s.k, 0, 0, s.n + 3, {}, {}, {}};
  // Row-major op(A) is m x k: stored k x m when transposed. Strides pad each row.
  o.lda = (ta ? s.m : s.k) + 2;
  o.ldb = (tb ? s.k : s.n) + 1;
  o.a.resize(static_cast<size_t>((ta ? s.k : s.m) * o.lda));
  o.b.resize(static_cast<size_t>((tb ? s.n : s.k) * o.ldb));
  o.c.resize(static_cast<size_t>(s.m * o.ldc));
  for (float& v : o.a) v = nd(rng);
  for (float& v : o.b) v = nd(rng);
  for (float& v : o.c) v = nd(rng);
  return o;
}

// The definition in sgemm.h, one element at a time.
std::vector<float> Formula(const Operands& o, float alpha, float beta) {
  std::vector<float> c = o.c;
  for (int64_t i = 0; i < o.m; ++i) {
    for (int64_t j = 0; j < o.n; ++j) {
      float acc = 0.0f;
      for (int64_t p = 0; p < o.k; ++p) {
        const float a = o.ta ? o.a[p * o.lda + i] : o.a[i * o.lda + p];
        const float b = o.tb ? o.b[j * o.ldb + p] : o.b[p * o.ldb + j];
        acc = std::fma(alpha * a, b, acc);
      }
      c[i * o.ldc + j] = beta == 0.0f ? acc : std::fma(beta, c[i * o.ldc + j], acc);
    }
  }
  return c;
}

std::vector<std::pair<std::string, sgemm_tile::TileSet>> Tiles() {
  std::vector<std::pair<std::string, sgemm_tile::TileSet>> tiles;
  tiles.emplace_back("scalar", sgemm_tile::ScalarTiles());
#if defined(__x86_64__)
  if (SgemmPathSupported(SgemmPath::kAvx2)) {
    tiles.emplace_back("avx2", sgemm_tile::Avx2Tiles());
  }
  if (SgemmPathSupported(SgemmPath::kAvx512)) {
    tiles.emplace_back("avx512", sgemm_tile::Avx512Tiles());
  }
#endif
#if defined(AWQ_HAVE_SIMDE)
  tiles.emplace_back("avx512 (SIMDe)", sgemm_tile::emulated::Avx512Tiles());
#endif
  return tiles;
}

// Shapes across every edge: rows below, at and past a tile and past a block of rows (144); columns
// past a tile and past a 4096-column panel; inputs past the 256-input block; k = 0.
const Shape kShapes[] = {{1, 1, 1},      {1, 33, 300},   {2, 17, 7},     {5, 64, 256},
                         {6, 16, 257},   {7, 31, 513},   {12, 32, 40},   {13, 65, 1},
                         {144, 48, 96},  {145, 50, 300}, {300, 97, 260}, {3, 4100, 20},
                         {150, 4130, 9}, {4, 9, 0},      {1, 70, 37},    {1, 130, 1030}};

TEST(OrderedSgemm, EveryTileGivesTheFormulasBytes) {
  std::mt19937 rng(11);
  const auto tiles = Tiles();
  ASSERT_GE(tiles.size(), 1u);
  int checked = 0;
  for (const Shape& s : kShapes) {
    for (const bool ta : {false, true}) {
      for (const bool tb : {false, true}) {
        const Operands o = Make(s, ta, tb, rng);
        for (const auto& [alpha, beta] : {std::pair{1.0f, 0.0f}, std::pair{1.0f, 1.0f},
                                          std::pair{-1.0f, 1.0f}, std::pair{0.125f, 0.5f}}) {
          const std::vector<float> want = Formula(o, alpha, beta);
          for (const auto& [name, tile] : tiles) {
            std::vector<float> got = o.c;
            sgemm_tile::SgemmOrdered(tile, ta, tb, s.m, s.n, s.k, alpha, o.a.data(), o.lda,
                                     o.b.data(), o.ldb, beta, got.data(), o.ldc);
            ASSERT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0)
                << name << " m=" << s.m << " n=" << s.n << " k=" << s.k << " ta=" << ta
                << " tb=" << tb << " alpha=" << alpha << " beta=" << beta;
            ++checked;
          }
        }
      }
    }
  }
  EXPECT_EQ(checked, static_cast<int>(std::size(kShapes) * 16 * tiles.size()));
}

TEST(OrderedSgemm, BetaZeroIgnoresWhatCHeld) {
  // beta = 0 overwrites C: NaN there must not leak into the result.
  std::mt19937 rng(3);
  Operands o = Make({9, 40, 300}, false, true, rng);
  for (float& v : o.c) v = std::nanf("");
  const std::vector<float> want = Formula(o, 1.0f, 0.0f);
  for (const auto& [name, tile] : Tiles()) {
    std::vector<float> got = o.c;
    sgemm_tile::SgemmOrdered(tile, false, true, o.m, o.n, o.k, 1.0f, o.a.data(), o.lda, o.b.data(),
                             o.ldb, 0.0f, got.data(), o.ldc);
    for (int64_t i = 0; i < o.m; ++i) {
      for (int64_t j = 0; j < o.n; ++j) {
        ASSERT_EQ(got[i * o.ldc + j], want[i * o.ldc + j]) << name;
        ASSERT_FALSE(std::isnan(got[i * o.ldc + j])) << name;
      }
    }
  }
}

TEST(OrderedSgemm, CloseToDoubleAndToOneDnn) {
  // The order is fixed, not worse: a 4096-long dot product in fp32 chains stays within 1e-5 of the
  // norm-scaled double result, as oneDNN's does.
  std::mt19937 rng(5);
  const Operands o = Make({20, 70, 4096}, false, true, rng);
  std::vector<float> ordered = o.c, onednn = o.c;
  SgemmSerial(false, true, o.m, o.n, o.k, 1.0f, o.a.data(), o.lda, o.b.data(), o.ldb, 0.0f,
              ordered.data(), o.ldc);
  SgemmSerialOn(SgemmPath::kOneDnn, false, true, o.m, o.n, o.k, 1.0f, o.a.data(), o.lda, o.b.data(),
                o.ldb, 0.0f, onednn.data(), o.ldc);
  double worst_ordered = 0, worst_onednn = 0;
  for (int64_t i = 0; i < o.m; ++i) {
    for (int64_t j = 0; j < o.n; ++j) {
      double exact = 0;
      for (int64_t p = 0; p < o.k; ++p) {
        exact += static_cast<double>(o.a[i * o.lda + p]) * o.b[j * o.ldb + p];
      }
      const double scale = std::sqrt(static_cast<double>(o.k));  // |a||b| of unit normals
      worst_ordered = std::max(worst_ordered, std::abs(ordered[i * o.ldc + j] - exact) / scale);
      worst_onednn = std::max(worst_onednn, std::abs(onednn[i * o.ldc + j] - exact) / scale);
    }
  }
  EXPECT_LT(worst_ordered, 1e-5);
  EXPECT_LT(worst_onednn, 1e-5);
}

TEST(OrderedSgemm, LinearIsTheSameOnOneTwoAndThreeThreads) {
  std::mt19937 rng(9);
  const Operands o = Make({37, 1000, 300}, false, true, rng);
  std::vector<std::vector<float>> outs;
  for (const int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    std::vector<float> y = o.c;
    LinearF32(o.a.data(), o.lda, o.b.data(), o.ldb, y.data(), o.ldc, o.m, o.n, o.k, true, pool);
    outs.push_back(std::move(y));
  }
  EXPECT_EQ(outs[0], outs[1]);
  EXPECT_EQ(outs[0], outs[2]);
  EXPECT_EQ(outs[0], Formula(o, 1.0f, 1.0f));
}

TEST(OrderedSgemm, AccumulatingEqualsAddingTheProduct) {
  // The block walk adds o_proj's and down_proj's products into the residual directly, or keeps
  // them apart for an observer and adds after: both must give the same bytes.
  std::mt19937 rng(13);
  const Operands o = Make({70, 130, 600}, false, true, rng);
  std::vector<float> direct = o.c, product(o.c.size()), added = o.c;
  LinearF32(o.a.data(), o.lda, o.b.data(), o.ldb, direct.data(), o.ldc, o.m, o.n, o.k, true,
            ThreadPool::Global());
  LinearF32(o.a.data(), o.lda, o.b.data(), o.ldb, product.data(), o.ldc, o.m, o.n, o.k, false,
            ThreadPool::Global());
  for (int64_t i = 0; i < o.m; ++i) {
    for (int64_t j = 0; j < o.n; ++j) added[i * o.ldc + j] += product[i * o.ldc + j];
  }
  EXPECT_EQ(direct, added);
}

TEST(OrderedSgemm, PathNamesAndSupport) {
  EXPECT_STREQ(SgemmPathName(SgemmPath::kScalar), "scalar");
  EXPECT_STREQ(SgemmPathName(SgemmPath::kOneDnn), "onednn");
  EXPECT_TRUE(SgemmPathSupported(SgemmPath::kScalar));
  EXPECT_TRUE(SgemmPathSupported(ActiveSgemmPath()));
}

}  // namespace
}  // namespace awq
