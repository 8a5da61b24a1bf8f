// fp32 transformer row kernels: simple loops the compiler vectorises, and AVX2 versions of the
// two whose cost is exp (ops_avx2.cc).
#include "kernels/cpu/ops.h"

#include "kernels/cpu/cpu_features.h"

#include <cmath>

namespace awq {

void RmsNormRows(const float* x, int64_t ldx, const float* w, float* y, int64_t ldy, int64_t n_rows,
                 int64_t d, float eps) {
  for (int64_t t = 0; t < n_rows; ++t) {
    const float* xr = x + t * ldx;
    float* yr = y + t * ldy;
    double ss = 0.0;
    for (int64_t i = 0; i < d; ++i) ss += static_cast<double>(xr[i]) * xr[i];
    const float inv = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(d) + eps));
    for (int64_t i = 0; i < d; ++i) yr[i] = xr[i] * inv * w[i];
  }
}

void ApplyRope(float* x, int64_t ldx, int64_t n_rows, int64_t n_heads, int64_t hd,
               const int64_t* positions, const float* cos_table, const float* sin_table) {
  const int64_t half = hd / 2;
  for (int64_t t = 0; t < n_rows; ++t) {
    const float* c = cos_table + positions[t] * half;
    const float* s = sin_table + positions[t] * half;
    for (int64_t h = 0; h < n_heads; ++h) {
      float* v = x + t * ldx + h * hd;
      for (int64_t i = 0; i < half; ++i) {
        const float a = v[i], b = v[i + half];
        v[i] = a * c[i] - b * s[i];
        v[i + half] = b * c[i] + a * s[i];
      }
    }
  }
}

void SiluMulRows(const float* gate_up, int64_t ld, float* out, int64_t ldo, int64_t n_rows,
                 int64_t d) {
#if defined(__x86_64__)
  if (CpuHasAvx2Fma()) return SiluMulRowsAvx2(gate_up, ld, out, ldo, n_rows, d);
#endif
  for (int64_t t = 0; t < n_rows; ++t) {
    const float* g = gate_up + t * ld;
    const float* u = g + d;
    float* o = out + t * ldo;
    for (int64_t j = 0; j < d; ++j) o[j] = g[j] / (1.0f + std::exp(-g[j])) * u[j];
  }
}

void GeluTanhMulRows(const float* gate_up, int64_t ld, float* out, int64_t ldo, int64_t n_rows,
                     int64_t d) {
  // 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))), in fp32 as PyTorch's CPU kernel.
  constexpr float kBeta = 0.7978845608028654f;  // sqrt(2 / pi)
  constexpr float kKappa = 0.044715f;
  for (int64_t t = 0; t < n_rows; ++t) {
    const float* g = gate_up + t * ld;
    const float* u = g + d;
    float* o = out + t * ldo;
    for (int64_t j = 0; j < d; ++j) {
      const float x = g[j];
      const float inner = kBeta * (x + kKappa * x * x * x);
      o[j] = 0.5f * x * (1.0f + std::tanh(inner)) * u[j];
    }
  }
}

double SoftmaxRow(float* x, int64_t n) {
#if defined(__x86_64__)
  if (CpuHasAvx2Fma()) return SoftmaxRowAvx2(x, n);
#endif
  float mx = -INFINITY;
  for (int64_t i = 0; i < n; ++i) mx = x[i] > mx ? x[i] : mx;
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const float e = std::exp(x[i] - mx);
    x[i] = e;
    sum += e;
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
  return std::log(sum) + mx;
}

double LogSumExpRow(const float* x, int64_t n) {
  float mx = -INFINITY;
  for (int64_t i = 0; i < n; ++i) mx = x[i] > mx ? x[i] : mx;
  // Each term is in (0, 1]; float exp is exact enough and several times faster than double,
  // which matters over 49152-entry vocabularies at every evaluated position.
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(x[i] - mx);
  return std::log(sum) + mx;
}

void AddInPlace(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

}  // namespace awq
