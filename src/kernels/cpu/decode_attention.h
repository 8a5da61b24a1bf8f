// One query token attending to an fp16 KV cache (decode): the partial softmax of the query heads
// that share one key/value head, over a range of cached positions. The caller splits positions
// across threads and merges the partials (flash-decoding); see DecodeAttention in
// model/attention.h.
#pragma once

#include <cstdint>

namespace awq {

// For the `group` query heads q[i * hd, (i + 1) * hd) that share one kv head, over keys j in
// [0, n) (fp16 rows of hd values, row stride hd):
//   s_ij = scale * q_i . k_j,  m_i = max_j s_ij,  l_i = sum_j exp(s_ij - m_i),
//   o_i  = sum_j exp(s_ij - m_i) v_j          (o is [group, hd], not yet divided by l).
// `scores` is scratch of group * n floats. n >= 1.
struct AttendArgs {
  const float* q;
  int group;
  const uint16_t* k;
  const uint16_t* v;
  int64_t hd;
  int64_t n;
  float scale;
};
void AttendPartialRef(const AttendArgs& a, float* scores, float* m, float* l, float* o);
// AVX2 + FMA + F16C; needs hd % 8 == 0. Equal to the reference up to fp32 rounding order and
// an exp accurate to a few ulp.
void AttendPartialAvx2(const AttendArgs& a, float* scores, float* m, float* l, float* o);
// The AVX2 version where the CPU and hd allow it, else the reference.
void AttendPartial(const AttendArgs& a, float* scores, float* m, float* l, float* o);

}  // namespace awq
