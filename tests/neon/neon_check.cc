// Runs the NEON int8-activation GEMV natively on AArch64 (built by tests/neon/run.sh with the
// cross compiler, run under qemu-aarch64 on x86 hosts) against the scalar oracle, over awkward
// shapes, group widths and thread counts. No GoogleTest: the cross build links only the kernel
// sources. Exits non-zero on the first mismatch.
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "awq/half.h"
#include "awq/int4_kernels.h"
#include "awq/quantizer.h"
#include "awq/thread_pool.h"
#include "kernels/cpu/int4_layout.h"

namespace {

awq::QuantizedLinear RandomQuantized(int64_t out, int64_t in, int64_t group_size, bool zero_point,
                                     std::mt19937& rng) {
  std::uniform_int_distribution<int> code(0, 15);
  std::uniform_real_distribution<float> scale(1e-3f, 5e-2f);
  awq::QuantizedLinear q;
  q.out = out;
  q.in = in;
  q.params = awq::QuantParams{4, group_size, zero_point};
  q.q.resize(out * in);
  for (auto& c : q.q) c = static_cast<uint8_t>(code(rng));
  q.scales.resize(out * q.n_groups());
  for (auto& s : q.scales) s = awq::Fp16ToFp32(awq::Fp32ToFp16(scale(rng)));
  if (zero_point) {
    q.zeros.resize(out * q.n_groups());
    for (auto& z : q.zeros) z = static_cast<uint8_t>(code(rng));
  }
  return q;
}

}  // namespace

int main() {
  struct Shape {
    int64_t out, in, group_size;
  };
  const Shape shapes[] = {{1, 72, 8},    {7, 200, 8},    {33, 200, -1},  {7, 160, 32},
                          {33, 192, 64}, {1, 384, 128},  {33, 384, 128}, {16, 72, -1},
                          {300, 264, 8}, {65, 1024, 64}, {576, 576, 64}, {1000, 512, 128}};
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  int cases = 0;
  for (const Shape& s : shapes) {
    for (int threads : {1, 3}) {
      for (bool zp : {true, false}) {
        for (bool acc : {false, true}) {
          const awq::QuantizedLinear q = RandomQuantized(s.out, s.in, s.group_size, zp, rng);
          const awq::Int4Matrix w = awq::PackInt4(q);
          const int64_t m = 2;
          std::vector<float> x(m * s.in), y0(m * s.out);
          for (auto& v : x) v = u(rng);
          for (auto& v : y0) v = u(rng);
          std::vector<float> ref = y0, got = y0;
          awq::ThreadPool pool(threads);
          awq::Int4LinearInt8Ref(w, x.data(), s.in, m, ref.data(), s.out, acc, pool);
          awq::Int4LinearInt8Neon(w, x.data(), s.in, m, got.data(), s.out, acc, pool);
          for (size_t i = 0; i < ref.size(); ++i) {
            // Both sum exact integer dots scaled in fp32, in another order: relative 1e-5 of
            // the largest partial (|y| <= in * 15 * 0.05 here) is far above that rounding.
            const double tol = 1e-5 * (1.0 + s.in * 0.75);
            if (!(std::fabs(got[i] - ref[i]) <= tol)) {
              std::printf(
                  "FAIL out=%lld in=%lld g=%lld zp=%d acc=%d threads=%d at %zu: neon %.9g, "
                  "reference %.9g\n",
                  static_cast<long long>(s.out), static_cast<long long>(s.in),
                  static_cast<long long>(s.group_size), zp, acc, threads, i, got[i], ref[i]);
              return 1;
            }
          }
          ++cases;
        }
      }
    }
  }
  std::printf("neon-int8 matches reference-int8 in %d cases\n", cases);
  return 0;
}
