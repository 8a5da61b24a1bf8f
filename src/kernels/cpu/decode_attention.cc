// Decode attention: the scalar reference and the dispatch.
#include "kernels/cpu/decode_attention.h"

#include <algorithm>
#include <cmath>

#include "awq/half.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/f16_linear.h"

namespace awq {

void AttendPartialRef(const AttendArgs& a, float* scores, float* m, float* l, float* o) {
  const int64_t hd = a.hd, n = a.n;
  for (int i = 0; i < a.group; ++i) {
    const float* q = a.q + i * hd;
    float* s = scores + i * n;
    float mx = -INFINITY;
    for (int64_t j = 0; j < n; ++j) {
      float dot = 0.0f;
      for (int64_t c = 0; c < hd; ++c) dot += q[c] * Fp16ToFp32(a.k[j * hd + c]);
      s[j] = a.scale * dot;
      mx = std::max(mx, s[j]);
    }
    float sum = 0.0f;
    float* oi = o + i * hd;
    for (int64_t c = 0; c < hd; ++c) oi[c] = 0.0f;
    for (int64_t j = 0; j < n; ++j) {
      const float p = std::exp(s[j] - mx);
      sum += p;
      for (int64_t c = 0; c < hd; ++c) oi[c] += p * Fp16ToFp32(a.v[j * hd + c]);
    }
    m[i] = mx;
    l[i] = sum;
  }
}

void AttendPartial(const AttendArgs& a, float* scores, float* m, float* l, float* o) {
#if defined(__x86_64__)
  if (a.hd % 8 == 0 && CpuHasAvx2Fma16()) return AttendPartialAvx2(a, scores, m, l, o);
#endif
  AttendPartialRef(a, scores, m, l, o);
}

}  // namespace awq
