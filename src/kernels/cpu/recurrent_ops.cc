// Scalar kernels of the recurrent families; see recurrent_ops.h for the formulas.
#include "kernels/cpu/recurrent_ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

namespace awq {

namespace {
// torch's silu: x * sigmoid(x).
inline float Silu(float x) { return x / (1.0f + std::exp(-x)); }
}  // namespace

void LayerNormRows(const float* x, const float* w, const float* b, float* y, int64_t n_rows,
                   int64_t d, float eps) {
  for (int64_t t = 0; t < n_rows; ++t) {
    const float* xr = x + t * d;
    float* yr = y + t * d;
    double sum = 0;
    for (int64_t i = 0; i < d; ++i) sum += xr[i];
    const double mean = sum / static_cast<double>(d);
    double sq = 0;
    for (int64_t i = 0; i < d; ++i) {
      const double e = xr[i] - mean;
      sq += e * e;
    }
    const float rstd = static_cast<float>(1.0 / std::sqrt(sq / static_cast<double>(d) + eps));
    const float m = static_cast<float>(mean);
    for (int64_t i = 0; i < d; ++i) yr[i] = (xr[i] - m) * rstd * w[i] + b[i];
  }
}

void CausalConvSilu(const float* x, int64_t ldx, int64_t n, int64_t channels, const float* w,
                    const float* bias, int64_t k, float* state, float* u) {
  const int64_t past = k - 1;
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t c = 0; c < channels; ++c) {
      float acc = bias != nullptr ? bias[c] : 0.0f;
      for (int64_t j = 0; j < k; ++j) {
        const int64_t s = t - past + j;
        const float in = s >= 0 ? x[s * ldx + c] : state[(past + s) * channels + c];
        acc += w[c * k + j] * in;
      }
      u[t * channels + c] = Silu(acc);
    }
  }
  // The last K-1 inputs, oldest first: the previous state shifted by n, then this call's rows.
  if (past == 0) return;
  std::vector<float> next(static_cast<size_t>(past * channels));
  for (int64_t r = 0; r < past; ++r) {
    const int64_t s = n - past + r;  // position relative to this call
    const float* src = s >= 0 ? x + s * ldx : state + (past + s) * channels;
    std::memcpy(next.data() + r * channels, src, static_cast<size_t>(channels) * sizeof(float));
  }
  std::memcpy(state, next.data(), next.size() * sizeof(float));
}

void SelectiveScan(const float* u, const float* dt, const float* a, const float* b,
                   const float* c_mat, int64_t ldbc, const float* d, const float* z, int64_t ldz,
                   int64_t n, int64_t channels, int64_t n_state, int64_t c0, int64_t c1, float* h,
                   float* y) {
  for (int64_t c = c0; c < c1; ++c) {
    float* hc = h + c * n_state;
    const float* ac = a + c * n_state;
    for (int64_t t = 0; t < n; ++t) {
      const float dtc = dt[t * channels + c], uc = u[t * channels + c];
      const float* bt = b + t * ldbc;
      const float* ct = c_mat + t * ldbc;
      float acc = 0;
      for (int64_t s = 0; s < n_state; ++s) {
        hc[s] = std::exp(dtc * ac[s]) * hc[s] + (dtc * bt[s]) * uc;
        acc += hc[s] * ct[s];
      }
      y[t * channels + c] = (acc + uc * d[c]) * Silu(z[t * ldz + c]);
    }
  }
}

void WkvScan(const float* k, const float* v, const float* w, const float* u, int64_t n,
             int64_t channels, int64_t c0, int64_t c1, float* num, float* den, float* max,
             float* out) {
  for (int64_t c = c0; c < c1; ++c) {
    float nc = num[c], dc = den[c], mc = max[c];
    for (int64_t t = 0; t < n; ++t) {
      const float kt = k[t * channels + c], vt = v[t * channels + c];
      const float ww = kt + u[c];
      float p = std::max(mc, ww);
      float e1 = std::exp(mc - p), e2 = std::exp(ww - p);
      out[t * channels + c] = (e1 * nc + e2 * vt) / (e1 * dc + e2);
      const float decayed = mc + w[c];
      p = std::max(decayed, kt);
      e1 = std::exp(decayed - p);
      e2 = std::exp(kt - p);
      nc = e1 * nc + e2 * vt;
      dc = e1 * dc + e2;
      mc = p;
    }
    num[c] = nc;
    den[c] = dc;
    max[c] = mc;
  }
}

void TokenShiftMix(const float* x, const float* shift, const float* mix, int64_t n, int64_t d,
                   float* out) {
  for (int64_t t = 0; t < n; ++t) {
    const float* prev = t == 0 ? shift : x + (t - 1) * d;
    for (int64_t i = 0; i < d; ++i) {
      out[t * d + i] = x[t * d + i] * mix[i] + prev[i] * (1.0f - mix[i]);
    }
  }
}

}  // namespace awq
