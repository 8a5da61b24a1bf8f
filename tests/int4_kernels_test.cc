// Int4Matrix layout round trips and Int4Linear kernels against the scalar oracle and against
// DequantizeLinear + a double-precision product, on awkward shapes and misaligned buffers.
#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "awq/error.h"
#include "awq/half.h"
#include "awq/int4_kernels.h"
#include "awq/quantizer.h"
#include "awq/thread_pool.h"
#include "kernels/cpu/int4_layout.h"
#include "kernels/cpu/kernel_race.h"
#include "test_util.h"

namespace awq {
namespace {

// Every kernel's result is a sum of k fp32 products (q - z) * s * x, accumulated in some order
// (sequentially, in 8 interleaved partial sums, or group by group as s * sum(q * x) - z * s *
// sum(x)). Any such evaluation is within (k + c) * u * sum|terms| of the exact value (u =
// FLT_EPSILON / 2; the classic bound for recursive summation, which also covers tree-shaped
// orders). Where a kernel factors out the zero, its terms are x * q * s and x * z * s, so the
// bound is stated over A = sum |x| * (q + z) * s >= sum |x * w|. kSumBound = 1 covers
// (k + 2) * u <= k * eps for k >= 2 with the extra rounding of the scale and zero multiplies.
constexpr double kSumBound = 1.0;
// Adding the product to an existing y (accumulate) rounds once more: eps * |y_new|.
constexpr double kAccumulateBound = 1.0;

struct Shape {
  int64_t out, in, group_size;
};

// A random 4-bit QuantizedLinear: uniform codes and zeros, fp16-exact scales in [1e-3, 5e-2].
QuantizedLinear RandomQuantized(int64_t out, int64_t in, int64_t group_size, bool zero_point,
                                uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> code(0, 15);
  std::uniform_real_distribution<float> scale(1e-3f, 5e-2f);
  QuantizedLinear q;
  q.out = out;
  q.in = in;
  q.params = QuantParams{4, group_size, zero_point};
  const int64_t ng = q.n_groups();
  q.q.resize(out * in);
  for (auto& c : q.q) c = static_cast<uint8_t>(code(rng));
  q.scales.resize(out * ng);
  for (auto& s : q.scales) s = Fp16ToFp32(Fp32ToFp16(scale(rng)));
  if (zero_point) {
    q.zeros.resize(out * ng);
    for (auto& z : q.zeros) z = static_cast<uint8_t>(code(rng));
  }
  return q;
}

std::vector<float> RandomVector(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& e : v) e = u(rng);
  return v;
}

TEST(Int4Layout, RoundTripsAndPadsWithZeros) {
  for (const Shape& s : {Shape{1, 8, 8}, Shape{7, 72, 8}, Shape{33, 200, -1}, Shape{16, 256, 128},
                         Shape{9, 192, 64}}) {
    for (bool zp : {true, false}) {
      const QuantizedLinear q = RandomQuantized(s.out, s.in, s.group_size, zp, 7);
      const Int4Matrix w = PackInt4(q);
      EXPECT_EQ(w.out, s.out);
      EXPECT_EQ(w.in, s.in);
      EXPECT_EQ(w.group_size, s.group_size == -1 ? s.in : s.group_size);
      // 4 bits per padded weight plus 4 bytes (fp16 scale + zero) per padded row and group.
      EXPECT_EQ(w.bytes(), w.row_blocks() * 8 * (s.in / 2 + 4 * w.n_groups()));
      const QuantizedLinear back = UnpackInt4(w);
      EXPECT_EQ(back.params.group_size, s.group_size);
      EXPECT_EQ(back.params.zero_point, zp);
      EXPECT_EQ(back.q, q.q);
      EXPECT_EQ(back.scales, q.scales);
      EXPECT_EQ(back.zeros, q.zeros);
      // Rows past `out` in the last row block dequantize to exactly zero.
      const int64_t last = w.row_blocks() - 1;
      for (int64_t r = s.out - last * 8; r < 8; ++r) {
        const Int4GroupHeader h = w.Header(last, 0);
        EXPECT_EQ(h.scale[r], 0);
        EXPECT_EQ(h.zero[r], 0);
      }
    }
  }
}

TEST(Int4Layout, DrawnBitOrder) {
  // Row r, input j of a single 8x8 slot holds (r + j) % 16: word r nibble j, as drawn in the
  // header.
  QuantizedLinear q = RandomQuantized(8, 8, 8, true, 1);
  for (int r = 0; r < 8; ++r) {
    for (int j = 0; j < 8; ++j) q.q[r * 8 + j] = static_cast<uint8_t>((r + j) % 16);
  }
  const Int4Matrix w = PackInt4(q);
  ASSERT_EQ(w.slots.size(), 2u);
  EXPECT_EQ(w.slots[1].row[0], 0x76543210u);
  EXPECT_EQ(w.slots[1].row[3], 0xA9876543u);
  const Int4GroupHeader h = w.Header(0, 0);
  EXPECT_EQ(Fp16ToFp32(h.scale[5]), q.scales[5]);
  EXPECT_EQ(Fp16ToFp32(h.zero[5]), q.zeros[5]);
}

TEST(Int4Layout, RejectsWhatItCannotHold) {
  QuantizedLinear q3 = RandomQuantized(4, 64, 32, true, 2);
  q3.params.bits = 3;
  test::ExpectError([&] { PackInt4(q3); }, {"bits", "3"});
  const QuantizedLinear g4 = RandomQuantized(4, 64, 4, true, 3);
  test::ExpectError([&] { PackInt4(g4); }, {"group width", "4"});
  const QuantizedLinear odd = RandomQuantized(4, 12, -1, false, 4);
  test::ExpectError([&] { PackInt4(odd); }, {"group width", "12"});
}

TEST(Int4Layout, PacksTheQuantizerOutput) {
  const std::vector<float> wf = RandomVector(40 * 256, 5);
  const QuantizedLinear q = QuantizeLinear(wf.data(), 40, 256, QuantParams{4, 64, true});
  const QuantizedLinear back = UnpackInt4(PackInt4(q));
  std::vector<float> a(wf.size()), b(wf.size());
  DequantizeLinear(q, a.data());
  DequantizeLinear(back, b.data());
  EXPECT_EQ(a, b);
}

// One Int4Linear case: x [m, in] at row stride ldx, y [m, out] at row stride ldy, both starting
// `misalign` floats past a 32-byte boundary.
struct Case {
  Shape shape;
  int64_t m;
  bool zero_point, accumulate, misalign;
  int threads;
  std::string Name() const {
    return "out=" + std::to_string(shape.out) + " in=" + std::to_string(shape.in) +
           " g=" + std::to_string(shape.group_size) + " m=" + std::to_string(m) +
           " zp=" + std::to_string(zero_point) + " acc=" + std::to_string(accumulate) +
           " misalign=" + std::to_string(misalign) + " threads=" + std::to_string(threads);
  }
};

struct Result {
  std::vector<double> exact;  // [m, out] y0 + x * dequant(W)^T in double
  std::vector<double> bound;  // [m, out] allowed |error| of any kernel
};

Result Exact(const QuantizedLinear& q, const float* x, int64_t ldx, int64_t m, const float* y0,
             int64_t ldy, bool accumulate) {
  std::vector<float> wd(q.out * q.in);
  DequantizeLinear(q, wd.data());
  const int64_t gs = GroupSize(q.params, q.in), ng = q.n_groups();
  Result r;
  r.exact.resize(m * q.out);
  r.bound.resize(m * q.out);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t o = 0; o < q.out; ++o) {
      double sum = 0, a = 0;
      for (int64_t k = 0; k < q.in; ++k) {
        const double xk = x[i * ldx + k];
        sum += xk * wd[o * q.in + k];
        const double s = q.scales[o * ng + k / gs];
        a += std::fabs(xk) * (q.q[o * q.in + k] + q.zero(o, k / gs)) * s;
      }
      const double y_init = accumulate ? y0[i * ldy + o] : 0.0;
      r.exact[i * q.out + o] = y_init + sum;
      r.bound[i * q.out + o] = kSumBound * q.in * FLT_EPSILON * a +
                               kAccumulateBound * FLT_EPSILON * (std::fabs(y_init) + a);
    }
  }
  return r;
}

// A kernel entry point with Int4Linear's arguments (less the kernel choice).
using KernelFn = std::function<void(const Int4Matrix&, const float*, int64_t, int64_t, float*,
                                    int64_t, bool, ThreadPool&)>;

std::vector<float> Run(const KernelFn& fn, const Int4Matrix& w, const Case& c, const float* x,
                       int64_t ldx, const std::vector<float>& y0, int64_t ldy) {
  ThreadPool pool(c.threads);
  std::vector<float> ybuf(8 + c.m * ldy);
  float* y = ybuf.data() + (c.misalign ? 1 : 0);
  std::copy(y0.begin(), y0.end(), y);
  fn(w, x, ldx, c.m, y, ldy, c.accumulate, pool);
  // Padding between rows (ldy > out) must be untouched.
  for (int64_t i = 0; i < c.m; ++i) {
    for (int64_t o = c.shape.out; o < ldy; ++o) EXPECT_EQ(y[i * ldy + o], y0[i * ldy + o]);
  }
  return std::vector<float>(y, y + c.m * ldy);
}

std::vector<float> Run(Int4Kernel kernel, const Int4Matrix& w, const Case& c, const float* x,
                       int64_t ldx, const std::vector<float>& y0, int64_t ldy) {
  return Run(
      [kernel](const Int4Matrix& w, const float* x, int64_t ldx, int64_t m, float* y, int64_t ldy,
               bool acc, ThreadPool& pool) { Int4Linear(w, x, ldx, m, y, ldy, acc, pool, kernel); },
      w, c, x, ldx, y0, ldy);
}

// Every int8-activation GEMV this build can run: the native ones this CPU supports, and the
// AVX-512 and NEON sources compiled against SIMDe's portable intrinsics (where SIMDe was found),
// so both are checked on any CPU.
// Int4Linear with kernel k, under its name.
std::pair<std::string, KernelFn> Named(Int4Kernel k) {
  return {Int4KernelName(k),
          [k](const Int4Matrix& w, const float* x, int64_t ldx, int64_t m, float* y, int64_t ldy,
              bool acc, ThreadPool& pool) { Int4Linear(w, x, ldx, m, y, ldy, acc, pool, k); }};
}

std::vector<std::pair<std::string, KernelFn>> Int8Kernels() {
  std::vector<std::pair<std::string, KernelFn>> ks;
  for (const Int4Kernel k :
       {Int4Kernel::kAvx2Int8, Int4Kernel::kAvx512Int8, Int4Kernel::kNeonInt8}) {
    if (Int4KernelAvailable(k)) ks.push_back(Named(k));
  }
#if defined(AWQ_HAVE_SIMDE)
  ks.emplace_back("avx512-int8 (SIMDe)", emulated::Int4LinearInt8Avx512);
  ks.emplace_back("neon-int8 (SIMDe)", emulated::Int4LinearInt8Neon);
#endif
  return ks;
}

// The inputs of one case: random codes (packed), x and the initial y at the case's strides and
// misalignment, and the exact product.
struct CaseData {
  QuantizedLinear q;
  Int4Matrix w;
  int64_t ldx, ldy;
  std::vector<float> xbuf;
  const float* x;
  std::vector<float> y0;
  Result exact;
  CaseData(const Case& c, uint32_t seed)
      : q(RandomQuantized(c.shape.out, c.shape.in, c.shape.group_size, c.zero_point, seed)),
        w(PackInt4(q)),
        ldx(c.shape.in + 3),
        ldy(c.shape.out + 2),
        xbuf(RandomVector(8 + c.m * ldx, seed + 1)),
        x(xbuf.data() + (c.misalign ? 1 : 0)),
        y0(RandomVector(c.m * ldy, seed + 2)),
        exact(Exact(q, x, ldx, c.m, y0.data(), ldy, c.accumulate)) {}
};

void CheckCase(const Case& c, uint32_t seed) {
  SCOPED_TRACE(c.Name());
  const CaseData d(c, seed);
  const Int4Matrix& w = d.w;
  const int64_t ldx = d.ldx, ldy = d.ldy;
  const float* x = d.x;
  const std::vector<float>& y0 = d.y0;
  const Result& exact = d.exact;
  const std::vector<float> ref = Run(Int4Kernel::kReference, w, c, x, ldx, y0, ldy);
  std::vector<Int4Kernel> fast;
  for (const Int4Kernel k : {Int4Kernel::kAvx2, Int4Kernel::kAvx2Sgemm}) {
    if (Int4KernelAvailable(k)) fast.push_back(k);
  }
  std::vector<std::vector<float>> got;
  for (Int4Kernel k : fast) got.push_back(Run(k, w, c, x, ldx, y0, ldy));
  int failures = 0;
  for (int64_t i = 0; i < c.m && failures < 5; ++i) {
    for (int64_t o = 0; o < c.shape.out && failures < 5; ++o) {
      const double e = exact.exact[i * c.shape.out + o], b = exact.bound[i * c.shape.out + o];
      const double r = ref[i * ldy + o];
      if (!(std::fabs(r - e) <= b)) {
        ++failures;
        ADD_FAILURE() << "reference at (" << i << ", " << o << "): " << r << " vs exact " << e;
      }
      for (size_t f = 0; f < fast.size(); ++f) {
        const double v = got[f][i * ldy + o];
        // Against the oracle: both are within b of the exact value.
        if (!(std::fabs(v - e) <= b && std::fabs(v - r) <= 2 * b)) {
          ++failures;
          ADD_FAILURE() << Int4KernelName(fast[f]) << " at (" << i << ", " << o << "): " << v
                        << " vs reference " << r << ", exact " << e << ", bound " << b;
        }
      }
    }
  }
}

TEST(Int4Linear, MatchesOracleOnAwkwardShapes) {
  // Inputs not a multiple of the 128-wide GEMM panel; outputs not a multiple of the 8-row block
  // or the 16-column tile; every supported group width.
  const std::vector<Shape> shapes = {{1, 72, 8},    {7, 200, 8},   {33, 200, -1},  {7, 160, 32},
                                     {33, 192, 64}, {1, 384, 128}, {33, 384, 128}, {16, 72, -1}};
  uint32_t seed = 100;
  int variant = 0;
  for (const Shape& s : shapes) {
    for (int64_t m : {1, 3, 17, 118}) {
      for (bool zp : {true, false}) {
        for (bool acc : {false, true}) {
          // Misalignment and thread count alternate so each appears with every other setting.
          const bool misalign = (variant & 1) != 0;
          const int threads = (variant & 2) ? 2 : 1;
          ++variant;
          CheckCase(Case{s, m, zp, acc, misalign, threads}, seed++);
        }
      }
    }
  }
}

TEST(Int4Linear, MatchesOracleAcrossPanelsAndThreads) {
  // Packed GEMM (avx2): more 16-column panels per thread than one 256-column block holds, every
  // micro-kernel height (m % 6 = 1..5), 1 and 2 threads.
  for (int64_t m : {2, 4, 5, 7, 13}) {
    for (int threads : {1, 2}) {
      CheckCase(Case{Shape{300, 264, 8}, m, true, m % 2 == 0, m % 3 == 0, threads},
                static_cast<uint32_t>(m * 10 + threads));
    }
  }
  CheckCase(Case{Shape{600, 256, 128}, 1, false, true, true, 2}, 5);
  // More rows than one L2 block of x (72), inputs in blocks of 256, 256 and 8.
  CheckCase(Case{Shape{300, 520, 8}, 80, true, true, true, 1}, 9);
  // avx2-sgemm: m >= 32 takes the sgemm path: several 256-column panels, a partial last one, 1 and
  // 2 threads.
  CheckCase(Case{Shape{600, 264, 8}, 40, true, false, true, 2}, 6);
  CheckCase(Case{Shape{521, 136, 8}, 33, false, true, false, 1}, 7);
  // A thread's share over 32 MB of fp32 (1032 x 8192) is multiplied in input slices: 63 groups,
  // then 1, the second slice accumulating into y.
  CheckCase(Case{Shape{1032, 8192, 128}, 32, true, false, false, 1}, 8);
}

// Reports (up to a total of five failures) outputs where the oracle is farther from the exact
// product than activation_bound(i, o) (its rounding of x) plus b, the exact product's fp32
// bound, or a kernel is farther from the oracle than 2 b: the kernels and their oracle do the
// same arithmetic in another order.
void ExpectKernelsNearOracle(const std::string& oracle, const Case& c, const Result& exact,
                             const std::vector<float>& ref, int64_t ldy,
                             const std::vector<std::pair<std::string, KernelFn>>& kernels,
                             const std::vector<std::vector<float>>& got,
                             const std::function<double(int64_t, int64_t)>& activation_bound,
                             int failures) {
  for (int64_t i = 0; i < c.m && failures < 5; ++i) {
    for (int64_t o = 0; o < c.shape.out && failures < 5; ++o) {
      const double e = exact.exact[i * c.shape.out + o], b = exact.bound[i * c.shape.out + o];
      const double r = ref[i * ldy + o], a = activation_bound(i, o);
      if (!(std::fabs(r - e) <= a * 1.001 + b)) {
        ++failures;
        ADD_FAILURE() << oracle << " at (" << i << ", " << o << "): " << r << " vs exact " << e
                      << ", bound " << a + b;
      }
      for (size_t f = 0; f < kernels.size(); ++f) {
        const double v = got[f][i * ldy + o];
        if (!(std::fabs(v - r) <= 2 * b)) {
          ++failures;
          ADD_FAILURE() << kernels[f].first << " at (" << i << ", " << o << "): " << v << " vs "
                        << oracle << " " << r << ", bound " << 2 * b;
        }
      }
    }
  }
}

// The int8-activation kernels: the scalar oracle is within the activation-rounding bound of the
// exact fp32 product (each x_k moves by at most half its block's step max|x| / 127), and the
// SIMD kernels (AVX2, AVX-512 VNNI, NEON sdot) equal the oracle up to fp32 rounding (every
// integer dot is exact).
void CheckInt8Case(const Case& c, uint32_t seed) {
  SCOPED_TRACE(c.Name());
  const CaseData d(c, seed);
  const QuantizedLinear& q = d.q;
  const Int4Matrix& w = d.w;
  const int64_t ldx = d.ldx, ldy = d.ldy;
  const float* x = d.x;
  const std::vector<float>& y0 = d.y0;
  const Result& exact = d.exact;
  const int64_t gs = w.group_size;
  std::vector<float> wd(q.out * q.in);
  DequantizeLinear(q, wd.data());
  const std::vector<float> ref = Run(Int4Kernel::kReferenceInt8, w, c, x, ldx, y0, ldy);
  const auto kernels = Int8Kernels();
  std::vector<std::vector<float>> got;
  for (const auto& k : kernels) got.push_back(Run(k.second, w, c, x, ldx, y0, ldy));
  int failures = 0;
  // The AVX-512 VNNI kernels (GEMV, and the GEMM for prompts on blocks of 16) do the AVX2 ones'
  // arithmetic lane for lane, so the two give the same bits (native or SIMDe, wherever the AVX2
  // kernels run): decode and prompts are the same on every x86-64 CPU. The NEON GEMV does the
  // AVX2 GEMV's arithmetic too, so decode is the same on AArch64; its prompts run one GEMV per
  // row, which sums in another order than the GEMMs on blocks of 16.
  const bool gemm = c.m >= 2 && Int8BlockFor(gs) == 16;
  if (Int4KernelAvailable(Int4Kernel::kAvx2Int8)) {
    const std::vector<float> avx2 = Run(Int4Kernel::kAvx2Int8, w, c, x, ldx, y0, ldy);
    for (size_t f = 0; f < kernels.size(); ++f) {
      const bool same = kernels[f].first.rfind("avx512-int8", 0) == 0 ||
                        (kernels[f].first.rfind("neon-int8", 0) == 0 && !gemm);
      if (!same) continue;
      for (int64_t i = 0; i < c.m && failures < 5; ++i) {
        for (int64_t o = 0; o < c.shape.out && failures < 5; ++o) {
          if (got[f][i * ldy + o] != avx2[i * ldy + o]) {
            ++failures;
            ADD_FAILURE() << kernels[f].first << " at (" << i << ", " << o
                          << "): " << got[f][i * ldy + o] << " vs avx2-int8 " << avx2[i * ldy + o];
          }
        }
      }
    }
  }
  // Half a step of each input's block, max |x| / 127, times the weight.
  const int64_t bs = Int8BlockFor(gs);
  std::vector<double> step(c.m * (q.in / bs));
  for (int64_t i = 0; i < c.m; ++i) {
    for (int64_t blk = 0; blk < q.in / bs; ++blk) {
      double amax = 0;
      for (int64_t k = blk * bs; k < (blk + 1) * bs; ++k) {
        amax = std::max(amax, std::fabs(double{x[i * ldx + k]}));
      }
      step[i * (q.in / bs) + blk] = amax / 127.0;
    }
  }
  ExpectKernelsNearOracle(
      "reference-int8", c, exact, ref, ldy, kernels, got,
      [&](int64_t i, int64_t o) {
        double bound = 0;
        for (int64_t k = 0; k < q.in; ++k) {
          bound += std::fabs(wd[o * q.in + k]) * step[i * (q.in / bs) + k / bs] * 0.5;
        }
        return bound;
      },
      failures);
}

// check(case, seed) for every shape, m = 1, 3 and 17, with and without zero points; the
// accumulate flag, misalignment and thread count (1, 2) cycle so each meets every other setting.
void ForEachVariant(const std::vector<Shape>& shapes, uint32_t seed,
                    void (*check)(const Case&, uint32_t)) {
  int variant = 0;
  for (const Shape& s : shapes) {
    for (int64_t m : {1, 3, 17}) {
      for (bool zp : {true, false}) {
        const bool misalign = (variant & 1) != 0, acc = (variant & 2) != 0;
        const int threads = (variant & 4) ? 2 : 1;
        ++variant;
        check(Case{s, m, zp, acc, misalign, threads}, seed++);
      }
    }
  }
}

TEST(Int4Linear, Int8ActivationsMatchTheirOracle) {
  const std::vector<Shape> shapes = {{1, 72, 8},    {7, 200, 8},   {33, 200, -1},  {7, 160, 32},
                                     {33, 192, 64}, {1, 384, 128}, {33, 384, 128}, {16, 72, -1},
                                     {300, 264, 8}, {65, 1024, 64}};
  // m >= 2 runs the GEMMs (panels of 5 rows for AVX2 and 8 for AVX-512; 17 leaves a partial one
  // in both).
  ForEachVariant(shapes, 500, CheckInt8Case);
}

// The bf16-activation kernels: the scalar oracle is within bf16's rounding of x (each x_k moves
// by at most 2^-9 |x_k|) of the exact fp32 product, and the AVX-512 BF16 kernel (native where the
// CPU has AVX512_BF16, and its SIMDe build on any CPU) equals the oracle up to fp32 rounding:
// every product of a code and a bf16 activation is exact, only the order of the sums differs.
void CheckBf16Case(const Case& c, uint32_t seed) {
  SCOPED_TRACE(c.Name());
  const CaseData d(c, seed);
  const QuantizedLinear& q = d.q;
  const Int4Matrix& w = d.w;
  const int64_t ldx = d.ldx, ldy = d.ldy;
  const float* x = d.x;
  const std::vector<float>& y0 = d.y0;
  const Result& exact = d.exact;
  std::vector<float> wd(q.out * q.in);
  DequantizeLinear(q, wd.data());
  const std::vector<float> ref = Run(Int4Kernel::kReferenceBf16, w, c, x, ldx, y0, ldy);
  std::vector<std::pair<std::string, KernelFn>> kernels;
  if (Int4KernelAvailable(Int4Kernel::kAvx512Bf16))
    kernels.push_back(Named(Int4Kernel::kAvx512Bf16));
#if defined(AWQ_HAVE_SIMDE) && defined(__x86_64__)
  kernels.emplace_back("avx512-bf16 (SIMDe)", emulated::Int4LinearBf16Avx512);
#endif
  std::vector<std::vector<float>> got;
  for (const auto& k : kernels) got.push_back(Run(k.second, w, c, x, ldx, y0, ldy));
  // bf16 moves each input by at most 2^-9 of itself.
  ExpectKernelsNearOracle(
      "reference-bf16", c, exact, ref, ldy, kernels, got,
      [&](int64_t i, int64_t o) {
        double bound = 0;
        for (int64_t k = 0; k < q.in; ++k) {
          bound += std::fabs(wd[o * q.in + k]) * std::fabs(double{x[i * ldx + k]}) / 512.0;
        }
        return bound;
      },
      0);
}

TEST(Int4Linear, Bf16ActivationsMatchTheirOracle) {
  // Every group width; outputs that leave a lone last row block (odd row-block counts) and a
  // partial one; m = 1 (panels of one row), 3 and 17 (panels of 8, a partial last one).
  const std::vector<Shape> shapes = {{1, 72, 8},    {7, 200, 8},   {33, 200, -1},  {7, 160, 32},
                                     {33, 192, 64}, {1, 384, 128}, {24, 384, 128}, {300, 264, 8}};
  ForEachVariant(shapes, 900, CheckBf16Case);
}

// Rounding to bf16 is to nearest with ties to even, and the kernels see the same values as the
// oracle: an input exactly between two bf16 values goes to the even one.
TEST(Int4Linear, Bf16RoundsToNearestEven) {
  EXPECT_EQ(Fp32ToBf16(1.0f + 1.0f / 256), 0x3F80);          // tie, 1.0 is even
  EXPECT_EQ(Fp32ToBf16(1.0f + 3.0f / 256), 0x3F82);          // tie, rounds up to even
  EXPECT_EQ(Fp32ToBf16(1.0f + 1.0f / 256 + 1e-6f), 0x3F81);  // above the tie
}

// The decode GEMV hands out one chunk of row blocks per 512 KiB of weights per thread (up to
// four, docs/KERNELS.md): a 4.7 MB matrix takes several chunks per thread, each starting its own
// four streams, with a partial row block at the end (4101 rows).
TEST(Int4Linear, Int8GemvAcrossChunksMatchesItsOracle) {
  uint32_t seed = 700;
  for (const int threads : {2, 3}) {
    CheckInt8Case(Case{Shape{4101, 2048, 64}, 1, true, threads == 3, threads == 2, threads},
                  seed++);
  }
}

#if defined(__x86_64__)
// The AVX2 GEMV's vector quantizer writes the scalar quantizer's words, scales and group sums bit
// for bit: random blocks, an all-zero block, ties, a
// block whose max |x| is a negative value, misaligned input.
TEST(Int4Linear, Int8VectorQuantizerEqualsTheScalarOne) {
  if (!Int4KernelAvailable(Int4Kernel::kAvx2Int8)) GTEST_SKIP() << "no AVX2 on this CPU";
  for (const int64_t gs : {16, 64, 128}) {
    for (const int64_t in : {gs, 3 * gs, int64_t{1024}}) {
      if (in % gs != 0) continue;
      SCOPED_TRACE("in " + std::to_string(in) + ", group " + std::to_string(gs));
      std::vector<float> buf = RandomVector(static_cast<size_t>(in + 1), 900 + in + gs);
      float* x = buf.data() + 1;
      for (int64_t k = 0; k < 16; ++k) x[k] = 0.0f;  // block 0: all zero
      if (in >= 32) {
        x[16] = -127.0f;  // block 1: step 1, so halves are ties
        x[17] = 2.5f;
        x[18] = -3.5f;
        x[19] = 0.5f;
      }
      for (int64_t k = 32; k < in; k += 97) x[k] *= 300.0f;  // outlier channels
      Int8Activations a;
      QuantizeActivationsInt8(x, in, gs, &a);
      std::vector<int32_t> words;
      InterleaveForSlots(a, &words);
      // One element past the front: the quantizer must not assume aligned outputs.
      std::vector<int32_t> wv(static_cast<size_t>(in / 4 + 1));
      std::vector<float> sv(static_cast<size_t>(in / 16 + 1)), gsum(static_cast<size_t>(in / gs));
      QuantizeInt8Block16Avx2(x, in, gs, wv.data() + 1, sv.data() + 1, gsum.data());
      int bad = 0;
      for (int64_t j = 0; j < in / 4; ++j) {
        if (wv[static_cast<size_t>(j + 1)] != words[static_cast<size_t>(j)] && bad++ < 5) {
          ADD_FAILURE() << "word " << j << ": " << std::hex << wv[static_cast<size_t>(j + 1)]
                        << " vs " << words[static_cast<size_t>(j)];
        }
      }
      for (int64_t b = 0; b < in / 16; ++b) {
        ASSERT_EQ(sv[static_cast<size_t>(b + 1)], a.scale[static_cast<size_t>(b)]) << b;
      }
      for (int64_t g = 0; g < in / gs; ++g) {
        EXPECT_EQ(gsum[static_cast<size_t>(g)], a.group_sum[static_cast<size_t>(g)]) << g;
      }
    }
  }
}
#endif

TEST(Int4Linear, Int8ActivationsOfZerosAndExtremes) {
  // An all-zero block has scale 0 and codes 0; a block's max |x| maps to exactly +-127; blocks
  // are 16 wide inside a 64-wide group, and the whole group when it is not a multiple of 16.
  std::vector<float> x(64, 0.0f);
  x[40] = -3.0f;
  x[41] = 1.0f;
  Int8Activations a;
  QuantizeActivationsInt8(x.data(), 64, 64, &a);
  EXPECT_EQ(a.block, kInt8Block);
  ASSERT_EQ(kInt8Block, 16);
  EXPECT_EQ(a.scale[0], 0.0f);
  EXPECT_EQ(a.q_sum[0], 0);
  EXPECT_EQ(a.q[40], -127);
  EXPECT_EQ(a.q[41], 42);  // 1 / (3 / 127) = 42.33
  EXPECT_EQ(a.q_sum[2], -85);
  EXPECT_FLOAT_EQ(a.group_sum[0], -85 * 3.0f / 127);
  QuantizeActivationsInt8(x.data(), 48, 24, &a);
  EXPECT_EQ(a.block, 24);
  // Rounding is to nearest with ties to even, as nearbyint: with max |x| = 127 the step is 1.
  std::vector<float> t(16, 0.0f);
  t[0] = 127.0f;
  t[1] = 2.5f;
  t[2] = 3.5f;
  t[3] = -2.5f;
  t[4] = -0.5f;
  t[5] = 0.49f;
  t[6] = -126.5f;
  QuantizeActivationsInt8(t.data(), 16, 16, &a);
  EXPECT_EQ(a.q[1], 2);
  EXPECT_EQ(a.q[2], 4);
  EXPECT_EQ(a.q[3], -2);
  EXPECT_EQ(a.q[4], 0);
  EXPECT_EQ(a.q[5], 0);
  EXPECT_EQ(a.q[6], -126);
}

TEST(Int4Linear, KernelNamesParse) {
  for (const Int4Kernel k :
       {Int4Kernel::kAuto, Int4Kernel::kReference, Int4Kernel::kAvx2, Int4Kernel::kAvx2Sgemm,
        Int4Kernel::kReferenceInt8, Int4Kernel::kAvx2Int8, Int4Kernel::kAvx512Int8,
        Int4Kernel::kNeonInt8, Int4Kernel::kAutoInt8, Int4Kernel::kReferenceBf16,
        Int4Kernel::kAvx512Bf16}) {
    EXPECT_EQ(ParseInt4Kernel(Int4KernelName(k)), k);
  }
  test::ExpectError([] { ParseInt4Kernel("avx9"); }, {"avx9", "avx2-int8"});
}

// Every automatic choice, under every value AWQ_INT4_KERNEL can take, ends at a kernel that runs
// here, and a decode step (m = 1) on an AVX2 CPU never lands on a scalar reference unless one was
// asked for: AWQ_INT4_KERNEL=auto-int8 once sent every product to the fp32 reference (0.35 tok/s).
TEST(Int4Linear, AutomaticChoiceIsAConcreteFastKernel) {
  const std::vector<Int4Kernel> all = {
      Int4Kernel::kAuto,          Int4Kernel::kAutoInt8,   Int4Kernel::kReference,
      Int4Kernel::kAvx2,          Int4Kernel::kAvx2Sgemm,  Int4Kernel::kReferenceInt8,
      Int4Kernel::kAvx2Int8,      Int4Kernel::kAvx512Int8, Int4Kernel::kNeonInt8,
      Int4Kernel::kReferenceBf16, Int4Kernel::kAvx512Bf16};
  const bool avx2 = Int4KernelAvailable(Int4Kernel::kAvx2Int8);
  for (const Int4Kernel env : all) {
    if (!Int4KernelAvailable(env)) continue;
    for (const Int4Kernel requested : {Int4Kernel::kAuto, Int4Kernel::kAutoInt8}) {
      for (const int64_t m : {1, 2, 5, 512}) {
        SCOPED_TRACE(std::string(Int4KernelName(requested)) +
                     " under AWQ_INT4_KERNEL=" + Int4KernelName(env) + ", m " + std::to_string(m));
        const Int4Kernel k = ResolveInt4Kernel(requested, m, env);
        EXPECT_NE(k, Int4Kernel::kAuto);
        EXPECT_NE(k, Int4Kernel::kAutoInt8);
        EXPECT_TRUE(Int4KernelAvailable(k)) << Int4KernelName(k);
        const bool automatic = env == Int4Kernel::kAuto || env == Int4Kernel::kAutoInt8;
        if (automatic && avx2) {
          EXPECT_NE(k, Int4Kernel::kReference) << Int4KernelName(k);
          EXPECT_NE(k, Int4Kernel::kReferenceInt8) << Int4KernelName(k);
          // Decode always runs int8 activations; prompts do when either side asked for int8.
          const bool int8 =
              m == 1 || requested == Int4Kernel::kAutoInt8 || env == Int4Kernel::kAutoInt8;
          EXPECT_EQ(k == Int4Kernel::kAvx2Int8 || k == Int4Kernel::kAvx512Int8, int8)
              << Int4KernelName(k);
        }
        if (!automatic) {
          EXPECT_EQ(k, env);
        }
      }
    }
  }
  // A kernel named by the caller is run as named, whatever the environment says.
  EXPECT_EQ(ResolveInt4Kernel(Int4Kernel::kReference, 1, Int4Kernel::kAutoInt8),
            Int4Kernel::kReference);
}

TEST(Int4Linear, KernelThisCpuCannotRunIsRefusedByName) {
  const Int4Matrix w = PackInt4(RandomQuantized(8, 64, 32, true, 9));
  std::vector<float> x(64, 1.0f), y(8);
  for (const Int4Kernel k : {Int4Kernel::kAvx512Int8, Int4Kernel::kNeonInt8, Int4Kernel::kAvx2,
                             Int4Kernel::kAvx512Bf16}) {
    if (Int4KernelAvailable(k)) continue;
    test::ExpectError(
        [&] { Int4Linear(w, x.data(), 64, 1, y.data(), 8, false, ThreadPool::Global(), k); },
        {Int4KernelName(k), "needs", "run here", "reference"});
  }
}

TEST(Int4Linear, ZeroRowsLeaveYAlone) {
  const Int4Matrix w = PackInt4(RandomQuantized(8, 64, 32, true, 9));
  float y = 42.0f;
  Int4Linear(w, nullptr, 64, 0, &y, 8, false, ThreadPool::Global());
  EXPECT_EQ(y, 42.0f);
}

// Races between ways of computing the same bits: each matrix's first call runs arm 0 untimed;
// later calls rotate through the arms per matrix, neighbouring matrices starting at different arms.
std::vector<RaceArm> Arms(int n) {
  std::vector<RaceArm> arms;
  for (int i = 0; i < n; ++i) {
    arms.push_back({i % 2 == 0 ? Int4Kernel::kAvx512Int8 : Int4Kernel::kAvx2Int8,
                    GemvTuning{4, 256 << (i / 2)}});
  }
  return arms;
}

TEST(KernelRace, FirstCallUntimedThenRotating) {
  KernelRace race(Arms(3));
  const int a = 0, b = 0;
  bool timed = true;
  EXPECT_EQ(race.Next(&a, &timed), 0);
  EXPECT_FALSE(timed);
  EXPECT_EQ(race.Next(&b, &timed), 0);
  EXPECT_FALSE(timed);
  EXPECT_EQ(race.Next(&a, &timed), 0);
  EXPECT_TRUE(timed);
  EXPECT_EQ(race.Next(&b, &timed), 1);
  EXPECT_TRUE(timed);
  EXPECT_EQ(race.Next(&a, &timed), 1);
  EXPECT_EQ(race.Next(&b, &timed), 2);
  EXPECT_EQ(race.Next(&a, &timed), 2);
  EXPECT_EQ(race.Next(&b, &timed), 0);
  EXPECT_FALSE(race.Decided());
  EXPECT_NE(race.Summary().find("3 arms: 0 of 96 timed calls"), std::string::npos)
      << race.Summary();
}

// Decode-like use: a token calls `matrices` matrices of `shapes` shapes in turn (7 of 7: every
// matrix its own shape; 120 of 4: SmolLM2's 30 layers, where each matrix gets one or two timed
// calls before the choice), costs per byte differing by shape up to 2.2x, the host slowing by 1%
// per token and noise of +-10% per call; one arm costs 0.93x the others (or, with two arms,
// 1.07x). The race must pick the cheapest after 32 timed calls each, then run it untimed.
TEST(KernelRace, CheapestArmWinsDespiteDriftAndNoise) {
  struct Case {
    int arms, cheap;
    double ratio;
    int matrices, shapes;
  };
  for (const Case c :
       {Case{2, 1, 0.93, 7, 7}, Case{2, 1, 1.07, 7, 7}, Case{5, 3, 0.93, 7, 7},
        Case{10, 7, 0.93, 7, 7}, Case{5, 3, 0.93, 120, 4}, Case{10, 7, 0.93, 128, 4}}) {
    KernelRace race(Arms(c.arms));
    std::mt19937 rng(7);
    std::uniform_real_distribution<double> noise(0.9, 1.1);
    std::vector<int> keys(static_cast<size_t>(c.matrices));
    int token = 0;
    for (; !race.Decided() && token < 200; ++token) {
      for (int i = 0; i < c.matrices; ++i) {
        bool timed = false;
        const int arm = race.Next(&keys[static_cast<size_t>(i)], &timed);
        const int shape = i % c.shapes;
        const double cost = (1.0 + 0.2 * shape) * (1.0 + 0.01 * token) * noise(rng) *
                            (arm == c.cheap ? c.ratio : 1.0);
        if (timed) race.Record(shape, arm, cost);
      }
    }
    SCOPED_TRACE(std::to_string(c.arms) + " arms, " + std::to_string(c.matrices) +
                 " matrices, ratio " + std::to_string(c.ratio) + ": " + race.Summary());
    ASSERT_TRUE(race.Decided());
    // 32 timed calls per arm after one untimed call per matrix.
    EXPECT_LE(token, 1 + (KernelRace::kSamples * c.arms + c.matrices - 1) / c.matrices + 1);
    const int winner = c.ratio < 1 ? c.cheap : 0;
    EXPECT_EQ(race.Current().kernel, race.arm(winner).kernel);
    EXPECT_EQ(race.Current().tuning.prefetch_bytes, race.arm(winner).tuning.prefetch_bytes);
    bool timed = true;
    EXPECT_EQ(race.Next(&keys[0], &timed), winner);
    EXPECT_FALSE(timed);
    // Two arms of Arms() differ only in the kernel, and are named by it alone.
    std::string name = Int4KernelName(race.arm(winner).kernel);
    if (c.arms > 2) {
      name +=
          " (4 streams, " + std::to_string(race.arm(winner).tuning.prefetch_bytes) + " B ahead)";
    }
    EXPECT_EQ(race.Summary().find(name + " over"), 0u);
  }
}

TEST(KernelRace, TieKeepsTheFirstArm) {
  KernelRace race(Arms(4));
  for (int i = 0; i < KernelRace::kSamples; ++i) {
    for (int a = 3; a >= 0; --a) race.Record(0, a, 1.0);
  }
  EXPECT_TRUE(race.Decided());
  EXPECT_EQ(race.Current().kernel, Int4Kernel::kAvx512Int8);
  EXPECT_EQ(race.Current().tuning.prefetch_bytes, 256);
}

// Arms that differ only in the kernel are named by the kernel alone (the prompt race).
TEST(KernelRace, TuningNamedOnlyWhereArmsDifferInIt) {
  KernelRace race({{Int4Kernel::kAvx512Int8, GemvTuning{}}, {Int4Kernel::kAvx2Int8, GemvTuning{}}});
  for (int i = 0; i < KernelRace::kSamples; ++i) {
    race.Record(0, 0, 2.0);
    race.Record(0, 1, 1.0);
  }
  EXPECT_EQ(race.Summary(),
            "avx2-int8 over avx512-int8, median cost 0.50x (32 + 32 timed calls, 2 arms)");
}

// Decode races wherever the AVX2 int8 GEMV runs; prompts race where VNNI runs too; bench prints
// nothing elsewhere.
TEST(KernelRace, RacesWhereTheInt8KernelsRun) {
  const std::string races = Int4KernelRaces();
  if (Int4KernelAvailable(Int4Kernel::kAvx2Int8)) {
    EXPECT_EQ(races.find("decode "), 0u) << races;
    EXPECT_EQ(races.find("prompts") != std::string::npos,
              Int4KernelAvailable(Int4Kernel::kAvx512Int8))
        << races;
  } else {
    EXPECT_EQ(races, "");
  }
}

// Every decode tuning gives the default's bits, on the AVX2 GEMV and on the VNNI one (natively
// where the CPU has it, else through SIMDe): row counts that leave remainders after 2 and 4
// streams, one and several chunks per thread, accumulate on and off.
TEST(Int4Linear, GemvTuningsGiveTheSameBits) {
  if (!Int4KernelAvailable(Int4Kernel::kAvx2Int8)) GTEST_SKIP() << "no AVX2";
  using Fn = void (*)(const Int4Matrix&, const float*, int64_t, int64_t, float*, int64_t, bool,
                      ThreadPool&, GemvTuning);
  std::vector<std::pair<std::string, Fn>> kernels = {
      {"avx2-int8", Int4LinearInt8Avx2Tuned},
      {"avx512-int8 (SIMDe)", emulated::Int4LinearInt8Avx512Tuned}};
  if (Int4KernelAvailable(Int4Kernel::kAvx512Int8)) {
    kernels.push_back({"avx512-int8", Int4LinearInt8Avx512Tuned});
  }
  ThreadPool pool(2);
  for (const auto& [name, fn] : kernels) {
    for (const int64_t out : {8, 56, 200, 1208}) {
      for (const int64_t gs : {16, 64, 128}) {
        const int64_t in = 512;
        const Int4Matrix w = PackInt4(RandomQuantized(out, in, gs, true, 11));
        const std::vector<float> x = RandomVector(in, 12);
        for (const bool acc : {false, true}) {
          std::vector<float> want(static_cast<size_t>(out), 0.5f);
          fn(w, x.data(), in, 1, want.data(), out, acc, pool, GemvTuning{});
          for (const GemvTuning t : {GemvTuning{4, 256}, GemvTuning{4, 1024}, GemvTuning{4, 2048},
                                     GemvTuning{2, 512}, GemvTuning{2, 64}}) {
            std::vector<float> y(static_cast<size_t>(out), 0.5f);
            fn(w, x.data(), in, 1, y.data(), out, acc, pool, t);
            SCOPED_TRACE(name + " " + std::to_string(out) + "x" + std::to_string(in) + " g" +
                         std::to_string(gs) + " streams " + std::to_string(t.streams) + ", " +
                         std::to_string(t.prefetch_bytes) + " B");
            EXPECT_EQ(0, std::memcmp(y.data(), want.data(), y.size() * sizeof(float)));
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace awq
