// ggml quantizers: fp32 rows to ggml's block formats, byte-identical to llama.cpp's reference
// quantizers (ggml-quants.c: quantize_row_*_ref, and the quant_weights path of quantize_*).
//
// Byte identity is the contract, so every function below makes the same float operations in the
// same order as ggml-quants.c and narrows integers where ggml narrows them (an int stored in a
// uint8_t or int8_t wraps before it is clamped, a few lines below the store). The comments explain
// what each algorithm is after; the reference to read next to them is the llama.cpp source named
// in docs/GGUF.md. Checked against files written by ggml itself (tests/data/ggml_quant/, made by
// tools/make_ggml_quant_golden.sh).
#include "awq/ggml_quantize.h"

#include <algorithm>
#include <cfloat>
#include <climits>
#include <cmath>
#include <cstring>
#include <string>

#include "awq/error.h"
#include "awq/half.h"
#include "awq/thread_pool.h"
#include "io/ggml_blocks.h"
#include "io/ggml_iq4nl.h"

// ggml-base, where llama.cpp's quantizers live, is compiled for the baseline ISA (no -march even
// in a native build), so on x86-64 no multiply-add is ever fused there. GCC fuses a * b + c into
// an FMA whenever the target has one (C++ defaults to -ffp-contract=fast), which would change the
// last bit of the sums and with it the chosen scales; contraction is off for this file.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace awq {
namespace {

// Below this a group is treated as all zeros (ggml's GROUP_MAX_EPS).
constexpr float kGroupMaxEps = 1e-15f;

// llama.cpp's nearest_int: adding 1.5 * 2^23 leaves the rounded integer in the low mantissa bits
// (rounded half to even, the FPU's mode). Exact for |v| < 2^22; for larger values, inf and nan it
// returns the same unrelated number ggml does, which byte identity needs too.
inline int NearestInt(float v) {
  const float biased = v + 12582912.f;
  int32_t bits;
  std::memcpy(&bits, &biased, 4);
  return (bits & 0x007fffff) - 0x00400000;
}

// C's (int8_t)f and (uint8_t)f as ggml's x86-64 build computes them: cvttss2si truncates toward
// zero and gives INT32_MIN for nan and out-of-range values, and the low byte is kept. C and C++
// leave such conversions undefined; spelling the x86 result out keeps the bytes equal where a
// block's 1/d overflows to inf (a block of subnormals), not only for ordinary inputs.
inline int32_t TruncToInt32(float f) {
  if (!(f >= -2147483648.f && f < 2147483648.f)) return INT32_MIN;
  return static_cast<int32_t>(f);
}
inline int8_t TruncToInt8(float f) { return static_cast<int8_t>(TruncToInt32(f)); }
inline uint8_t TruncToUint8(float f) { return static_cast<uint8_t>(TruncToInt32(f)); }

// ggml's MAX(a, b) macro, which keeps b when a is nan (std::max keeps a).
inline float CMax(float a, float b) { return a > b ? a : b; }

// C's roundf: half away from zero.
inline float RoundHalfAway(float f) { return std::round(f); }

template <class Block>
void StoreBlock(const Block& b, uint8_t* dst) {
  std::memcpy(dst, &b, sizeof(Block));
}

// ---------------------------------------------------------------------------------------------
// Legacy formats: 32 values per block, one fp16 scale (and an fp16 offset for the _1 types).
// The reference quantizers map the block's range onto the integer range in one step, rounding by
// adding 0.5 (or 8.5 / 16.5 with the offset) and truncating.

// Q4_0 and Q5_0: the value of largest magnitude, with its sign, becomes q = 0 (d = max / -2^(b-1)),
// so the full negative half of the integer range is spent on the side of the largest value.
void QuantizeQ4_0(const float* x, int64_t nb, uint8_t* dst) {
  for (int64_t b = 0; b < nb; ++b, x += kQK, dst += sizeof(BlockQ4_0)) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < kQK; ++j) {
      if (amax < std::fabs(x[j])) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    }
    const float d = max / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    BlockQ4_0 blk;
    blk.d = Fp32ToFp16(d);
    for (int j = 0; j < kQK / 2; ++j) {
      const auto q0 = static_cast<uint8_t>(std::min(15, int{TruncToInt8(x[j] * id + 8.5f)}));
      const auto q1 =
          static_cast<uint8_t>(std::min(15, int{TruncToInt8(x[j + kQK / 2] * id + 8.5f)}));
      blk.qs[j] = static_cast<uint8_t>(q0 | q1 << 4);
    }
    StoreBlock(blk, dst);
  }
}

// Q4_1 and Q5_1: min..max spread over 0..2^b-1, d = (max - min) / (2^b - 1), m = min.
void QuantizeQ4_1(const float* x, int64_t nb, uint8_t* dst) {
  for (int64_t b = 0; b < nb; ++b, x += kQK, dst += sizeof(BlockQ4_1)) {
    float min = FLT_MAX, max = -FLT_MAX;
    for (int j = 0; j < kQK; ++j) {
      if (x[j] < min) min = x[j];
      if (x[j] > max) max = x[j];
    }
    const float d = (max - min) / 15.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    BlockQ4_1 blk;
    blk.d = Fp32ToFp16(d);
    blk.m = Fp32ToFp16(min);
    for (int j = 0; j < kQK / 2; ++j) {
      const auto q0 =
          static_cast<uint8_t>(std::min(15, int{TruncToInt8((x[j] - min) * id + 0.5f)}));
      const auto q1 =
          static_cast<uint8_t>(std::min(15, int{TruncToInt8((x[j + kQK / 2] - min) * id + 0.5f)}));
      blk.qs[j] = static_cast<uint8_t>(q0 | q1 << 4);
    }
    StoreBlock(blk, dst);
  }
}

// The fifth bits of a Q5 block's 32 codes, bit j for code j (stored little-endian in qh[4]).
void PackQ5(const uint8_t* q, uint8_t* qs, uint8_t* qh) {
  uint32_t h = 0;
  for (int j = 0; j < kQK / 2; ++j) {
    qs[j] = static_cast<uint8_t>((q[j] & 0x0f) | (q[j + kQK / 2] & 0x0f) << 4);
    h |= uint32_t{(q[j] & 0x10u) >> 4} << j;
    h |= uint32_t{(q[j + kQK / 2] & 0x10u) >> 4} << (j + kQK / 2);
  }
  for (int k = 0; k < 4; ++k) qh[k] = static_cast<uint8_t>(h >> (8 * k));
}

void QuantizeQ5_0(const float* x, int64_t nb, uint8_t* dst) {
  for (int64_t b = 0; b < nb; ++b, x += kQK, dst += sizeof(BlockQ5_0)) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < kQK; ++j) {
      if (amax < std::fabs(x[j])) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    }
    const float d = max / -16.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    uint8_t q[kQK];
    for (int j = 0; j < kQK; ++j) {
      q[j] = static_cast<uint8_t>(std::min(31, int{TruncToInt8(x[j] * id + 16.5f)}));
    }
    BlockQ5_0 blk;
    blk.d = Fp32ToFp16(d);
    PackQ5(q, blk.qs, blk.qh);
    StoreBlock(blk, dst);
  }
}

void QuantizeQ5_1(const float* x, int64_t nb, uint8_t* dst) {
  for (int64_t b = 0; b < nb; ++b, x += kQK, dst += sizeof(BlockQ5_1)) {
    float min = FLT_MAX, max = -FLT_MAX;
    for (int j = 0; j < kQK; ++j) {
      if (x[j] < min) min = x[j];
      if (x[j] > max) max = x[j];
    }
    const float d = (max - min) / 31.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    uint8_t q[kQK];
    // No clamp to 31 here (ggml has none): (x - min) * id + 0.5 stays below 32 for finite input.
    for (int j = 0; j < kQK; ++j) q[j] = TruncToUint8((x[j] - min) * id + 0.5f);
    BlockQ5_1 blk;
    blk.d = Fp32ToFp16(d);
    blk.m = Fp32ToFp16(min);
    PackQ5(q, blk.qs, blk.qh);
    StoreBlock(blk, dst);
  }
}

// Q8_0: symmetric, d = amax / 127, codes rounded half away from zero.
void QuantizeQ8_0(const float* x, int64_t nb, uint8_t* dst) {
  for (int64_t b = 0; b < nb; ++b, x += kQK, dst += sizeof(BlockQ8_0)) {
    float amax = 0.0f;
    for (int j = 0; j < kQK; ++j) amax = CMax(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    BlockQ8_0 blk;
    blk.d = Fp32ToFp16(d);
    for (int j = 0; j < kQK; ++j) blk.qs[j] = TruncToInt8(RoundHalfAway(x[j] * id));
    StoreBlock(blk, dst);
  }
}

// ---------------------------------------------------------------------------------------------
// Scale searches shared by the K formats (ggml's make_*_quants). Each returns a group's scale and
// writes its integer codes to L; the K formats then quantize the group scales themselves to 4, 6
// or 8 bits against one fp16 super-block scale and re-derive the codes from the stored scales.

// make_qx_quants with rmse_type 1, the only kind the quantizers use: symmetric codes in
// [-nmax, nmax - 1] (stored in L offset by nmax), scale chosen among 19 candidates around
// -nmax / max as the least-squares one under weights qw (x^2 when qw is null). An all-zero group
// gives L = 0 (not nmax) and scale 0.
float MakeQxQuants(int n, int nmax, const float* x, int8_t* L, const float* qw) {
  float max = 0.0f, amax = 0.0f;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < kGroupMaxEps) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.0f;
  }
  // The weights once (the same floats ggml recomputes in every loop); n is at most 32.
  float w_buf[32];
  AWQ_CHECK(n <= 32);
  for (int i = 0; i < n; ++i) w_buf[i] = qw != nullptr ? qw[i] : x[i] * x[i];
  const auto fnmax = static_cast<float>(nmax);
  float iscale = -fnmax / max;
  float sumlx = 0.0f, suml2 = 0.0f;
  for (int i = 0; i < n; ++i) {
    const int l = std::max(-nmax, std::min(nmax - 1, NearestInt(iscale * x[i])));
    L[i] = static_cast<int8_t>(l + nmax);
    const float w = w_buf[i];
    const auto fl = static_cast<float>(l);
    sumlx += w * x[i] * fl;
    suml2 += w * fl * fl;
  }
  float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -(fnmax + 0.1f * static_cast<float>(is)) / max;
    sumlx = suml2 = 0.0f;
    for (int i = 0; i < n; ++i) {
      const int l = std::max(-nmax, std::min(nmax - 1, NearestInt(iscale * x[i])));
      const float w = w_buf[i];
      const auto fl = static_cast<float>(l);
      sumlx += w * x[i] * fl;
      suml2 += w * fl * fl;
    }
    // sumlx^2 / suml2 is the error reduction of the least-squares scale; compared without the
    // division, as ggml does.
    if (suml2 > 0.0f && sumlx * sumlx > best * suml2) {
      for (int i = 0; i < n; ++i) {
        const int l = NearestInt(iscale * x[i]);
        L[i] = static_cast<int8_t>(nmax + std::max(-nmax, std::min(nmax - 1, l)));
      }
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

// make_q3_quants with do_rmse (Q3_K's only use): codes in [-nmax, nmax - 1] weighted by x^2,
// then up to 5 passes of coordinate descent, each code moved to its best value given the others
// when that raises sumlx^2 / suml2. L is offset by nmax at the end (an all-zero group: L = 0).
float MakeQ3Quants(int n, int nmax, const float* x, int8_t* L) {
  float max = 0.0f, amax = 0.0f;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < kGroupMaxEps) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.0f;
  }
  const float iscale = -static_cast<float>(nmax) / max;
  float sumlx = 0.0f, suml2 = 0.0f;
  for (int i = 0; i < n; ++i) {
    const int l = std::max(-nmax, std::min(nmax - 1, NearestInt(iscale * x[i])));
    L[i] = static_cast<int8_t>(l);
    const float w = x[i] * x[i];
    const auto fl = static_cast<float>(l);
    sumlx += w * x[i] * fl;
    suml2 += w * fl * fl;
  }
  for (int itry = 0; itry < 5; ++itry) {
    int n_changed = 0;
    for (int i = 0; i < n; ++i) {
      const float w = x[i] * x[i];
      const auto li = static_cast<float>(L[i]);
      float slx = sumlx - w * x[i] * li;
      if (slx > 0.0f) {
        float sl2 = suml2 - w * li * li;
        int new_l = NearestInt(x[i] * sl2 / slx);
        new_l = std::max(-nmax, std::min(nmax - 1, new_l));
        if (new_l != L[i]) {
          const auto fl = static_cast<float>(new_l);
          slx += w * x[i] * fl;
          sl2 += w * fl * fl;
          if (sl2 > 0.0f && slx * slx * suml2 > sumlx * sumlx * sl2) {
            L[i] = static_cast<int8_t>(new_l);
            sumlx = slx;
            suml2 = sl2;
            ++n_changed;
          }
        }
      }
    }
    if (n_changed == 0) break;
  }
  for (int i = 0; i < n; ++i) L[i] = static_cast<int8_t>(L[i] + nmax);
  return sumlx / suml2;
}

// make_qkx2_quants (reference path) and make_qkx3_quants (importance path), which differ only in
// where their weights come from: asymmetric codes in [0, nmax] with x ~ scale * L - the_min.
// Starting from min..max over nmax steps, it tries nstep + 1 stretched grids
// (nmax + rmin + rdelta * is steps over the range), fits scale and min to each grid's codes by
// weighted least squares (min clamped to <= 0), and keeps the one of least weighted error
// (absolute with use_mad, else squared). Returns the scale; *the_min gets -min >= 0.
float MakeQkxQuants(int n, int nmax, const float* x, const float* weights, uint8_t* L,
                    float* the_min, uint8_t* Laux, float rmin, float rdelta, int nstep,
                    bool use_mad) {
  float min = x[0], max = x[0];
  float sum_w = weights[0];
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    const float w = weights[i];
    sum_w += w;
    sum_x += w * x[i];
  }
  if (min > 0.0f) min = 0.0f;
  if (max == min) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    *the_min = -min;
    return 0.0f;
  }
  const auto fnmax = static_cast<float>(nmax);
  float iscale = fnmax / (max - min);
  float scale = 1.0f / iscale;
  float best_error = 0.0f;
  for (int i = 0; i < n; ++i) {
    const int l = NearestInt(iscale * (x[i] - min));
    L[i] = static_cast<uint8_t>(std::max(0, std::min(nmax, l)));
    float diff = scale * static_cast<float>(L[i]) + min - x[i];
    diff = use_mad ? std::fabs(diff) : diff * diff;
    best_error += weights[i] * diff;
  }
  if (nstep < 1) {
    *the_min = -min;
    return scale;
  }
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * static_cast<float>(is) + fnmax) / (max - min);
    float sum_l = 0.0f, sum_l2 = 0.0f, sum_xl = 0.0f;
    for (int i = 0; i < n; ++i) {
      const int l = std::max(0, std::min(nmax, NearestInt(iscale * (x[i] - min))));
      Laux[i] = static_cast<uint8_t>(l);
      const float w = weights[i];
      const auto fl = static_cast<float>(l);
      sum_l += w * fl;
      sum_l2 += w * fl * fl;
      sum_xl += w * fl * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0.0f) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0.0f) {
        this_min = 0.0f;
        this_scale = sum_xl / sum_l2;
      }
      float cur_error = 0.0f;
      for (int i = 0; i < n; ++i) {
        float diff = this_scale * static_cast<float>(Laux[i]) + this_min - x[i];
        diff = use_mad ? std::fabs(diff) : diff * diff;
        cur_error += weights[i] * diff;
      }
      if (cur_error < best_error) {
        for (int i = 0; i < n; ++i) L[i] = Laux[i];
        best_error = cur_error;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *the_min = -min;
  return scale;
}

// make_qp_quants: codes in [0, nmax] for non-negative values (the group scales or mins of a
// super-block), scale picked among 9 grids by weighted squared error, then refined by coordinate
// descent like MakeQ3Quants. Only the importance path quantizes its scales this way.
float MakeQpQuants(int n, int nmax, const float* x, uint8_t* L, const float* quant_weights) {
  float max = 0.0f;
  for (int i = 0; i < n; ++i) max = CMax(max, x[i]);
  if (max == 0.0f) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.0f;
  }
  const auto fnmax = static_cast<float>(nmax);
  float iscale = fnmax / max;
  for (int i = 0; i < n; ++i) L[i] = static_cast<uint8_t>(NearestInt(iscale * x[i]));
  const float scale = 1.0f / iscale;
  float best_mse = 0.0f;
  for (int i = 0; i < n; ++i) {
    const float diff = x[i] - scale * static_cast<float>(L[i]);
    best_mse += quant_weights[i] * diff * diff;
  }
  for (int is = -4; is <= 4; ++is) {
    if (is == 0) continue;
    const float iscale_is = (0.1f * static_cast<float>(is) + fnmax) / max;
    const float scale_is = 1.0f / iscale_is;
    float mse = 0.0f;
    for (int i = 0; i < n; ++i) {
      const int l = std::min(nmax, NearestInt(iscale_is * x[i]));
      const float diff = x[i] - scale_is * static_cast<float>(l);
      mse += quant_weights[i] * diff * diff;
    }
    if (mse < best_mse) {
      best_mse = mse;
      iscale = iscale_is;
    }
  }
  float sumlx = 0.0f, suml2 = 0.0f;
  for (int i = 0; i < n; ++i) {
    const int l = std::min(nmax, NearestInt(iscale * x[i]));
    L[i] = static_cast<uint8_t>(l);
    const float w = quant_weights[i];
    const auto fl = static_cast<float>(l);
    sumlx += w * x[i] * fl;
    suml2 += w * fl * fl;
  }
  for (int itry = 0; itry < 5; ++itry) {
    int n_changed = 0;
    for (int i = 0; i < n; ++i) {
      const float w = quant_weights[i];
      const auto li = static_cast<float>(L[i]);
      float slx = sumlx - w * x[i] * li;
      float sl2 = suml2 - w * li * li;
      if (slx > 0.0f && sl2 > 0.0f) {
        const int new_l = std::min(nmax, NearestInt(x[i] * sl2 / slx));
        if (new_l != L[i]) {
          const auto fl = static_cast<float>(new_l);
          slx += w * x[i] * fl;
          sl2 += w * fl * fl;
          if (slx * slx * suml2 > sumlx * sumlx * sl2) {
            L[i] = static_cast<uint8_t>(new_l);
            sumlx = slx;
            suml2 = sl2;
            ++n_changed;
          }
        }
      }
    }
    if (n_changed == 0) break;
  }
  return sumlx / suml2;
}

// ---------------------------------------------------------------------------------------------
// Packing of codes into the K blocks (layouts drawn in ggml_blocks.h).

// 2-bit codes L[256] into qs[64] (Q2_K, and Q3_K's low bits): byte l of half h holds the codes
// of values 128h + l, +32, +64, +96 in bits 0-1, 2-3, 4-5, 6-7.
void Pack2Bit(const uint8_t* L, uint8_t* qs) {
  for (int j = 0; j < kQKK; j += 128) {
    for (int l = 0; l < 32; ++l) {
      qs[j / 4 + l] = static_cast<uint8_t>(L[j + l] | L[j + l + 32] << 2 | L[j + l + 64] << 4 |
                                           L[j + l + 96] << 6);
    }
  }
}

// Q3_K's sixteen 6-bit scales (0..63, 32 = zero) into scales[12]; `scales` must start zeroed.
void PackQ3KScale(uint8_t* scales, int j, int l) {
  if (j < 8) {
    scales[j] = static_cast<uint8_t>(l & 0xf);
  } else {
    scales[j - 8] = static_cast<uint8_t>(scales[j - 8] | (l & 0xf) << 4);
  }
  l >>= 4;
  scales[j % 4 + 8] = static_cast<uint8_t>(scales[j % 4 + 8] | l << (2 * (j / 4)));
}

// Q4_K/Q5_K's eight 6-bit scales and mins into scales[12] in group order (j = 0..7), as ggml
// writes them: groups 4..7 OR their top bits into bytes 0..7, which groups 0..3 wrote before.
void PackK4ScaleMin(uint8_t* scales, int j, uint8_t ls, uint8_t lm) {
  if (j < 4) {
    scales[j] = ls;
    scales[j + 4] = lm;
  } else {
    scales[j + 4] = static_cast<uint8_t>((ls & 0xf) | (lm & 0xf) << 4);
    scales[j - 4] = static_cast<uint8_t>(scales[j - 4] | (ls >> 4) << 6);
    scales[j] = static_cast<uint8_t>(scales[j] | (lm >> 4) << 6);
  }
}

// get_scale_min_k4: the inverse of PackK4ScaleMin.
void UnpackK4ScaleMin(const uint8_t* q, int j, uint8_t* d, uint8_t* m) {
  if (j < 4) {
    *d = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *d = static_cast<uint8_t>((q[j + 4] & 0xf) | (q[j - 4] >> 6) << 4);
    *m = static_cast<uint8_t>((q[j + 4] >> 4) | (q[j] >> 6) << 4);
  }
}

// The signed 6-bit scale of Q3_K group j back from scales[12] (as the requantization reads it).
int8_t UnpackQ3KScale(const uint8_t* scales, int j) {
  int8_t sc = static_cast<int8_t>(j < 8 ? scales[j] & 0xf : scales[j - 8] >> 4);
  sc = static_cast<int8_t>((sc | ((scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4) - 32);
  return sc;
}

// Q3_K's codes L[256] in 0..7: bit 2 into hmask (bit j/32 of byte j%32), bits 0-1 into qs.
void PackQ3K(uint8_t* L, BlockQ3K* blk) {
  std::memset(blk->hmask, 0, sizeof(blk->hmask));
  for (int j = 0; j < kQKK; ++j) {
    if (L[j] > 3) {
      blk->hmask[j % 32] = static_cast<uint8_t>(blk->hmask[j % 32] | 1 << (j / 32));
      L[j] = static_cast<uint8_t>(L[j] - 4);
    }
  }
  Pack2Bit(L, blk->qs);
}

// Q5_K's codes L[256] in 0..31: the fifth bits into qh, the low nibbles into qs.
void PackQ5K(const uint8_t* L, BlockQ5K* blk) {
  std::memset(blk->qh, 0, sizeof(blk->qh));
  uint8_t* ql = blk->qs;
  uint8_t m1 = 1, m2 = 2;
  for (int n = 0; n < kQKK; n += 64, ql += 32, m1 <<= 2, m2 <<= 2) {
    for (int j = 0; j < 32; ++j) {
      int l1 = L[n + j];
      if (l1 > 15) {
        l1 -= 16;
        blk->qh[j] |= m1;
      }
      int l2 = L[n + j + 32];
      if (l2 > 15) {
        l2 -= 16;
        blk->qh[j] |= m2;
      }
      ql[j] = static_cast<uint8_t>(l1 | l2 << 4);
    }
  }
}

// Q6_K's codes L[256] in 0..63: low nibbles into ql, high 2 bits into qh.
void PackQ6K(const uint8_t* L, BlockQ6K* blk) {
  uint8_t* ql = blk->ql;
  uint8_t* qh = blk->qh;
  for (int j = 0; j < kQKK; j += 128, ql += 64, qh += 32) {
    for (int l = 0; l < 32; ++l) {
      const int q1 = L[j + l] & 0xf;
      const int q2 = L[j + l + 32] & 0xf;
      const int q3 = L[j + l + 64] & 0xf;
      const int q4 = L[j + l + 96] & 0xf;
      ql[l] = static_cast<uint8_t>(q1 | q3 << 4);
      ql[l + 32] = static_cast<uint8_t>(q2 | q4 << 4);
      qh[l] = static_cast<uint8_t>(L[j + l] >> 4 | (L[j + l + 32] >> 4) << 2 |
                                   (L[j + l + 64] >> 4) << 4 | (L[j + l + 96] >> 4) << 6);
    }
  }
}

// Re-derives asymmetric codes from the stored (rounded) scales and mins of Q2_K/Q4_K/Q5_K:
// group j of `group` values gets q = round((x + dm) / d) in [0, nmax]; a group whose stored scale
// is zero keeps the codes of the search.
template <int kGroups>
void RequantizeAsym(const float* x, int group, int nmax, const float* d_group, const float* m_group,
                    uint8_t* L) {
  for (int j = 0; j < kGroups; ++j) {
    const float d = d_group[j];
    if (d == 0.0f) continue;
    const float dm = m_group[j];
    for (int ii = 0; ii < group; ++ii) {
      const int l = NearestInt((x[group * j + ii] + dm) / d);
      L[group * j + ii] = static_cast<uint8_t>(std::max(0, std::min(nmax, l)));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Q2_K: 16 groups of 16 with 4-bit scales and 4-bit mins against fp16 d and dmin.

// Stores the scales and mins of Q2_K given the group scales and mins, and re-derives the codes.
void FinishQ2K(const float* x, uint8_t* L, BlockQ2K* blk) {
  const float d_all = Fp16ToFp32(blk->d);
  const float m_all = Fp16ToFp32(blk->dmin);
  float d_group[16], m_group[16];
  for (int j = 0; j < 16; ++j) {
    d_group[j] = d_all * static_cast<float>(blk->scales[j] & 0xf);
    m_group[j] = m_all * static_cast<float>(blk->scales[j] >> 4);
  }
  RequantizeAsym<16>(x, 16, 3, d_group, m_group, L);
  Pack2Bit(L, blk->qs);
}

// quantize_row_q2_K_ref: each group's scale and min by MakeQkxQuants (weights |x|, absolute
// error), then both quantized to 4 bits against the largest of each (d = max_scale / 15).
void QuantizeQ2K(const float* x, int64_t nb, uint8_t* dst) {
  for (int64_t b = 0; b < nb; ++b, x += kQKK, dst += sizeof(BlockQ2K)) {
    uint8_t L[kQKK], Laux[16];
    float weights[16], mins[16], scales[16];
    float max_scale = 0.0f, max_min = 0.0f;  // scales are positive: the min was taken out
    for (int j = 0; j < 16; ++j) {
      for (int l = 0; l < 16; ++l) weights[l] = std::fabs(x[16 * j + l]);
      scales[j] = MakeQkxQuants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.5f, 0.1f,
                                15, true);
      if (scales[j] > max_scale) max_scale = scales[j];
      if (mins[j] > max_min) max_min = mins[j];
    }
    BlockQ2K blk;
    if (max_scale > 0.0f) {
      const float iscale = 15.0f / max_scale;
      for (int j = 0; j < 16; ++j)
        blk.scales[j] = static_cast<uint8_t>(NearestInt(iscale * scales[j]));
      blk.d = Fp32ToFp16(max_scale / 15.0f);
    } else {
      for (int j = 0; j < 16; ++j) blk.scales[j] = 0;
      blk.d = Fp32ToFp16(0.0f);
    }
    if (max_min > 0.0f) {
      const float iscale = 15.0f / max_min;
      for (int j = 0; j < 16; ++j) {
        const int l = NearestInt(iscale * mins[j]);
        blk.scales[j] = static_cast<uint8_t>(blk.scales[j] | l << 4);
      }
      blk.dmin = Fp32ToFp16(max_min / 15.0f);
    } else {
      blk.dmin = Fp32ToFp16(0.0f);
    }
    FinishQ2K(x, L, &blk);
    StoreBlock(blk, dst);
  }
}

// quantize_row_q2_K_impl: group weights qw * sqrt(sigma^2 + x^2) with squared error over a finer
// grid, and the scales and mins quantized by MakeQpQuants weighted by each group's total weight.
void QuantizeQ2KWeighted(const float* x, int64_t nb, const float* qw, uint8_t* dst) {
  for (int64_t b = 0; b < nb; ++b, x += kQKK, qw += kQKK, dst += sizeof(BlockQ2K)) {
    uint8_t L[kQKK], Laux[16], Ls[16], Lm[16];
    float mins[16], scales[16], sw[16] = {}, weight[16];
    float sumx2 = 0.0f;
    for (int j = 0; j < kQKK; ++j) sumx2 += x[j] * x[j];
    const float sigma2 = sumx2 / static_cast<float>(kQKK);
    for (int j = 0; j < 16; ++j) {
      for (int l = 0; l < 16; ++l) {
        weight[l] = qw[16 * j + l] * std::sqrt(sigma2 + x[16 * j + l] * x[16 * j + l]);
      }
      for (int l = 0; l < 16; ++l) sw[j] += weight[l];
      scales[j] = MakeQkxQuants(16, 3, x + 16 * j, weight, L + 16 * j, &mins[j], Laux, -0.9f, 0.05f,
                                36, false);
    }
    const float dm = MakeQpQuants(16, 15, scales, Ls, sw);
    const float mm = MakeQpQuants(16, 15, mins, Lm, sw);
    BlockQ2K blk;
    blk.d = Fp32ToFp16(dm);
    blk.dmin = Fp32ToFp16(mm);
    for (int j = 0; j < 16; ++j) blk.scales[j] = static_cast<uint8_t>(Ls[j] | Lm[j] << 4);
    FinishQ2K(x, L, &blk);
    StoreBlock(blk, dst);
  }
}

// ---------------------------------------------------------------------------------------------
// Q3_K: 16 groups of 16, symmetric 3-bit codes, 6-bit signed group scales against fp16 d.

// Re-derives the codes from the stored scales (a group whose stored scale is zero keeps L as
// the search left it) and packs them.
void FinishQ3K(const float* x, int8_t* L, BlockQ3K* blk) {
  const float d_all = Fp16ToFp32(blk->d);
  for (int j = 0; j < 16; ++j) {
    const float d = d_all * static_cast<float>(UnpackQ3KScale(blk->scales, j));
    if (d == 0.0f) continue;
    for (int ii = 0; ii < 16; ++ii) {
      const int l = std::max(-4, std::min(3, NearestInt(x[16 * j + ii] / d)));
      L[16 * j + ii] = static_cast<int8_t>(l + 4);
    }
  }
  uint8_t codes[kQKK];
  for (int j = 0; j < kQKK; ++j) codes[j] = static_cast<uint8_t>(L[j]);
  PackQ3K(codes, blk);
}

// quantize_row_q3_K_ref: group scales by MakeQ3Quants, then quantized to 6 bits against the
// scale of largest magnitude (which maps to -32).
void QuantizeQ3K(const float* x, int64_t nb, uint8_t* dst) {
  for (int64_t b = 0; b < nb; ++b, x += kQKK, dst += sizeof(BlockQ3K)) {
    int8_t L[kQKK];
    float scales[16];
    float max_scale = 0.0f, amax = 0.0f;
    for (int j = 0; j < 16; ++j) {
      scales[j] = MakeQ3Quants(16, 4, x + 16 * j, L + 16 * j);
      const float scale = std::fabs(scales[j]);
      if (scale > amax) {
        amax = scale;
        max_scale = scales[j];
      }
    }
    BlockQ3K blk;
    std::memset(blk.scales, 0, sizeof(blk.scales));
    if (max_scale != 0.0f) {
      const float iscale = -32.0f / max_scale;
      for (int j = 0; j < 16; ++j) {
        // ggml stores nearest_int into an int8_t before clamping.
        const auto l8 = static_cast<int8_t>(NearestInt(iscale * scales[j]));
        const auto l = static_cast<int8_t>(std::max(-32, std::min(31, int{l8})) + 32);
        PackQ3KScale(blk.scales, j, l);
      }
      blk.d = Fp32ToFp16(1.0f / iscale);
    } else {
      blk.d = Fp32ToFp16(0.0f);
    }
    FinishQ3K(x, L, &blk);
    StoreBlock(blk, dst);
  }
}

// quantize_row_q3_K_impl: codes and scales by MakeQxQuants under weights qw * sqrt(sigma^2 + x^2)
// (sigma^2 twice the block's mean square), the scales weighted by each group's total weight.
void QuantizeQ3KWeighted(const float* x, int64_t nb, const float* qw, uint8_t* dst) {
  for (int64_t b = 0; b < nb; ++b, x += kQKK, qw += kQKK, dst += sizeof(BlockQ3K)) {
    int8_t L[kQKK], Ls[16];
    float scales[16], weight[16], sw[16];
    float sumx2 = 0.0f;
    for (int j = 0; j < kQKK; ++j) sumx2 += x[j] * x[j];
    const float sigma2 = 2.0f * sumx2 / static_cast<float>(kQKK);
    for (int j = 0; j < 16; ++j) {
      for (int l = 0; l < 16; ++l) {
        weight[l] = qw[16 * j + l] * std::sqrt(sigma2 + x[16 * j + l] * x[16 * j + l]);
      }
      float sumw = 0.0f;
      for (int l = 0; l < 16; ++l) sumw += weight[l];
      sw[j] = sumw;
      scales[j] = MakeQxQuants(16, 4, x + 16 * j, L + 16 * j, weight);
    }
    BlockQ3K blk;
    std::memset(blk.scales, 0, sizeof(blk.scales));
    const float d_block = MakeQxQuants(16, 32, scales, Ls, sw);
    for (int j = 0; j < 16; ++j) PackQ3KScale(blk.scales, j, Ls[j]);
    blk.d = Fp32ToFp16(d_block);
    FinishQ3K(x, L, &blk);
    StoreBlock(blk, dst);
  }
}

// ---------------------------------------------------------------------------------------------
// Q4_K and Q5_K: 8 groups of 32, asymmetric codes, 6-bit scales and mins against fp16 d, dmin.

// Re-derives the codes from the stored scales and mins (groups with a zero scale keep L).
void RequantizeK4(const float* x, const uint8_t* packed, uint16_t d16, uint16_t dmin16, int nmax,
                  uint8_t* L) {
  const float d_all = Fp16ToFp32(d16);
  const float m_all = Fp16ToFp32(dmin16);
  float d_group[8], m_group[8];
  for (int j = 0; j < 8; ++j) {
    uint8_t sc, m;
    UnpackK4ScaleMin(packed, j, &sc, &m);
    d_group[j] = d_all * static_cast<float>(sc);
    m_group[j] = m_all * static_cast<float>(m);
  }
  RequantizeAsym<8>(x, 32, nmax, d_group, m_group, L);
}

// quantize_row_q4_K_ref / q5_K_ref: each group's scale and min by MakeQkxQuants with weights
// rms(group) + |x| and squared error, then both quantized to 6 bits against the largest of each.
// Writes the packed scales, d and dmin, and the codes L in [0, nmax].
void QuantizeK4Ref(const float* x, int nmax, float rmin, int nstep, uint8_t* packed, uint16_t* d16,
                   uint16_t* dmin16, uint8_t* L) {
  uint8_t Laux[32];
  float weights[32], mins[8], scales[8];
  float max_scale = 0.0f, max_min = 0.0f;
  for (int j = 0; j < 8; ++j) {
    float sum_x2 = 0.0f;
    for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
    const float av_x = std::sqrt(sum_x2 / 32.0f);
    for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(x[32 * j + l]);
    scales[j] = MakeQkxQuants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, rmin, 0.1f,
                              nstep, false);
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  const float inv_scale = max_scale > 0.0f ? 63.0f / max_scale : 0.0f;
  const float inv_min = max_min > 0.0f ? 63.0f / max_min : 0.0f;
  for (int j = 0; j < 8; ++j) {
    const auto ls = static_cast<uint8_t>(NearestInt(inv_scale * scales[j]));
    const auto lm = static_cast<uint8_t>(NearestInt(inv_min * mins[j]));
    PackK4ScaleMin(packed, j, std::min<uint8_t>(63, ls), std::min<uint8_t>(63, lm));
  }
  *d16 = Fp32ToFp16(max_scale / 63.0f);
  *dmin16 = Fp32ToFp16(max_min / 63.0f);
  RequantizeK4(x, packed, *d16, *dmin16, nmax, L);
}

// quantize_row_q4_K_impl / q5_K_impl: weights qw * sqrt(sigma^2 + x^2) (sigma^2 twice the
// block's mean square), a finer grid, and scales and mins quantized by MakeQpQuants weighted by
// each group's total weight. Q5_K clamps the 6-bit codes to 63 before packing, Q4_K does not.
void QuantizeK4Weighted(const float* x, const float* qw, int nmax, bool clamp_scales,
                        uint8_t* packed, uint16_t* d16, uint16_t* dmin16, uint8_t* L) {
  uint8_t Laux[32], Ls[8], Lm[8];
  float weights[32], sw[8], mins[8], scales[8];
  float sum_x2 = 0.0f;
  for (int l = 0; l < kQKK; ++l) sum_x2 += x[l] * x[l];
  const float sigma2 = 2.0f * sum_x2 / static_cast<float>(kQKK);
  for (int j = 0; j < 8; ++j) {
    for (int l = 0; l < 32; ++l) {
      weights[l] = qw[32 * j + l] * std::sqrt(sigma2 + x[32 * j + l] * x[32 * j + l]);
    }
    float sumw = 0.0f;
    for (int l = 0; l < 32; ++l) sumw += weights[l];
    sw[j] = sumw;
    scales[j] = MakeQkxQuants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -0.9f,
                              0.05f, 36, false);
  }
  const float d_block = MakeQpQuants(8, 63, scales, Ls, sw);
  const float m_block = MakeQpQuants(8, 63, mins, Lm, sw);
  for (int j = 0; j < 8; ++j) {
    uint8_t ls = Ls[j], lm = Lm[j];
    if (clamp_scales) {
      ls = std::min<uint8_t>(63, ls);
      lm = std::min<uint8_t>(63, lm);
    }
    PackK4ScaleMin(packed, j, ls, lm);
  }
  *d16 = Fp32ToFp16(d_block);
  *dmin16 = Fp32ToFp16(m_block);
  RequantizeK4(x, packed, *d16, *dmin16, nmax, L);
}

void PackQ4K(const uint8_t* L, BlockQ4K* blk) {
  uint8_t* q = blk->qs;
  for (int j = 0; j < kQKK; j += 64, q += 32) {
    for (int l = 0; l < 32; ++l) q[l] = static_cast<uint8_t>(L[j + l] | L[j + l + 32] << 4);
  }
}

void QuantizeQ4K(const float* x, int64_t nb, uint8_t* dst) {
  for (int64_t b = 0; b < nb; ++b, x += kQKK, dst += sizeof(BlockQ4K)) {
    BlockQ4K blk;
    uint8_t L[kQKK];
    QuantizeK4Ref(x, 15, -1.0f, 20, blk.scales, &blk.d, &blk.dmin, L);
    PackQ4K(L, &blk);
    StoreBlock(blk, dst);
  }
}

void QuantizeQ4KWeighted(const float* x, int64_t nb, const float* qw, uint8_t* dst) {
  for (int64_t b = 0; b < nb; ++b, x += kQKK, qw += kQKK, dst += sizeof(BlockQ4K)) {
    BlockQ4K blk;
    uint8_t L[kQKK];
    QuantizeK4Weighted(x, qw, 15, false, blk.scales, &blk.d, &blk.dmin, L);
    PackQ4K(L, &blk);
    StoreBlock(blk, dst);
  }
}

void QuantizeQ5K(const float* x, int64_t nb, uint8_t* dst) {
  for (int64_t b = 0; b < nb; ++b, x += kQKK, dst += sizeof(BlockQ5K)) {
    BlockQ5K blk;
    uint8_t L[kQKK];
    QuantizeK4Ref(x, 31, -0.5f, 15, blk.scales, &blk.d, &blk.dmin, L);
    PackQ5K(L, &blk);
    StoreBlock(blk, dst);
  }
}

void QuantizeQ5KWeighted(const float* x, int64_t nb, const float* qw, uint8_t* dst) {
  for (int64_t b = 0; b < nb; ++b, x += kQKK, qw += kQKK, dst += sizeof(BlockQ5K)) {
    BlockQ5K blk;
    uint8_t L[kQKK];
    QuantizeK4Weighted(x, qw, 31, true, blk.scales, &blk.d, &blk.dmin, L);
    PackQ5K(L, &blk);
    StoreBlock(blk, dst);
  }
}

// ---------------------------------------------------------------------------------------------
// Q6_K: 16 groups of 16, symmetric 6-bit codes, int8 group scales against fp16 d.

// Both paths: group scales by MakeQxQuants (weights x^2, or qw), quantized to int8 against the
// scale of largest magnitude (which maps to -128), codes re-derived from the stored scales.
void QuantizeQ6KBlock(const float* x, const float* qw, uint8_t* dst) {
  int8_t L[kQKK];
  float scales[16];
  float max_scale = 0.0f, max_abs_scale = 0.0f;
  for (int ib = 0; ib < 16; ++ib) {
    const float scale =
        MakeQxQuants(16, 32, x + 16 * ib, L + 16 * ib, qw != nullptr ? qw + 16 * ib : nullptr);
    scales[ib] = scale;
    const float abs_scale = std::fabs(scale);
    if (abs_scale > max_abs_scale) {
      max_abs_scale = abs_scale;
      max_scale = scale;
    }
  }
  BlockQ6K blk;
  if (max_abs_scale < kGroupMaxEps) {
    std::memset(&blk, 0, sizeof(blk));
    blk.d = Fp32ToFp16(0.0f);
    StoreBlock(blk, dst);
    return;
  }
  const float iscale = -128.0f / max_scale;
  blk.d = Fp32ToFp16(1.0f / iscale);
  for (int ib = 0; ib < 16; ++ib) {
    blk.scales[ib] = static_cast<int8_t>(std::min(127, NearestInt(iscale * scales[ib])));
  }
  const float d_all = Fp16ToFp32(blk.d);
  for (int j = 0; j < 16; ++j) {
    const float d = d_all * static_cast<float>(blk.scales[j]);
    if (d == 0.0f) continue;
    for (int ii = 0; ii < 16; ++ii) {
      const int l = std::max(-32, std::min(31, NearestInt(x[16 * j + ii] / d)));
      L[16 * j + ii] = static_cast<int8_t>(l + 32);
    }
  }
  uint8_t codes[kQKK];
  for (int j = 0; j < kQKK; ++j) codes[j] = static_cast<uint8_t>(L[j]);
  PackQ6K(codes, &blk);
  StoreBlock(blk, dst);
}

void QuantizeQ6K(const float* x, int64_t nb, uint8_t* dst) {
  for (int64_t b = 0; b < nb; ++b, x += kQKK, dst += sizeof(BlockQ6K)) {
    QuantizeQ6KBlock(x, nullptr, dst);
  }
}

void QuantizeQ6KWeighted(const float* x, int64_t nb, const float* qw, uint8_t* dst) {
  for (int64_t b = 0; b < nb; ++b, x += kQKK, qw += kQKK, dst += sizeof(BlockQ6K)) {
    QuantizeQ6KBlock(x, qw, dst);
  }
}

// ---------------------------------------------------------------------------------------------
// Importance paths of the legacy formats (quantize_row_q4_0_impl ... q5_1_impl). Their weights
// qw * sqrt(sigma^2 + x^2) use sigma^2 = the mean square of the whole row, so they take the row.

float RowMeanSquare(const float* x, int64_t n) {
  float sum_x2 = 0.0f;
  for (int64_t j = 0; j < n; ++j) sum_x2 += x[j] * x[j];
  return sum_x2 / static_cast<float>(n);
}

void LegacyWeights(const float* xb, const float* qw, float sigma2, float* weight) {
  for (int j = 0; j < kQK; ++j) weight[j] = qw[j] * std::sqrt(sigma2 + xb[j] * xb[j]);
}

// Q4_0 / Q5_0: symmetric codes by MakeQxQuants with nmax 8 / 16.
void QuantizeQ4_0Weighted(const float* x, int64_t nb, const float* qw, uint8_t* dst) {
  const float sigma2 = RowMeanSquare(x, nb * kQK);
  for (int64_t b = 0; b < nb; ++b, x += kQK, qw += kQK, dst += sizeof(BlockQ4_0)) {
    float weight[kQK];
    int8_t L[kQK];
    LegacyWeights(x, qw, sigma2, weight);
    BlockQ4_0 blk;
    blk.d = Fp32ToFp16(MakeQxQuants(kQK, 8, x, L, weight));
    for (int j = 0; j < kQK / 2; ++j) blk.qs[j] = static_cast<uint8_t>(L[j] | L[j + 16] << 4);
    StoreBlock(blk, dst);
  }
}

void QuantizeQ5_0Weighted(const float* x, int64_t nb, const float* qw, uint8_t* dst) {
  const float sigma2 = RowMeanSquare(x, nb * kQK);
  for (int64_t b = 0; b < nb; ++b, x += kQK, qw += kQK, dst += sizeof(BlockQ5_0)) {
    float weight[kQK];
    int8_t L[kQK];
    LegacyWeights(x, qw, sigma2, weight);
    BlockQ5_0 blk;
    blk.d = Fp32ToFp16(MakeQxQuants(kQK, 16, x, L, weight));
    uint8_t q[kQK];
    for (int j = 0; j < kQK; ++j) q[j] = static_cast<uint8_t>(L[j]);
    PackQ5(q, blk.qs, blk.qh);
    StoreBlock(blk, dst);
  }
}

// Q4_1 / Q5_1: asymmetric codes by MakeQkxQuants with nmax 15 / 31; m is the fitted -min.
void QuantizeQ4_1Weighted(const float* x, int64_t nb, const float* qw, uint8_t* dst) {
  const float sigma2 = RowMeanSquare(x, nb * kQK);
  for (int64_t b = 0; b < nb; ++b, x += kQK, qw += kQK, dst += sizeof(BlockQ4_1)) {
    float weight[kQK], min;
    uint8_t L[kQK], Laux[kQK];
    LegacyWeights(x, qw, sigma2, weight);
    const float d = MakeQkxQuants(kQK, 15, x, weight, L, &min, Laux, -0.9f, 0.05f, 36, false);
    BlockQ4_1 blk;
    blk.d = Fp32ToFp16(d);
    blk.m = Fp32ToFp16(-min);
    for (int j = 0; j < kQK / 2; ++j) blk.qs[j] = static_cast<uint8_t>(L[j] | L[j + 16] << 4);
    StoreBlock(blk, dst);
  }
}

void QuantizeQ5_1Weighted(const float* x, int64_t nb, const float* qw, uint8_t* dst) {
  const float sigma2 = RowMeanSquare(x, nb * kQK);
  for (int64_t b = 0; b < nb; ++b, x += kQK, qw += kQK, dst += sizeof(BlockQ5_1)) {
    float weight[kQK], min;
    uint8_t L[kQK], Laux[kQK];
    LegacyWeights(x, qw, sigma2, weight);
    const float d = MakeQkxQuants(kQK, 31, x, weight, L, &min, Laux, -0.9f, 0.05f, 36, false);
    BlockQ5_1 blk;
    blk.d = Fp32ToFp16(d);
    blk.m = Fp32ToFp16(-min);
    PackQ5(L, blk.qs, blk.qh);
    StoreBlock(blk, dst);
  }
}

// ---------------------------------------------------------------------------------------------
// Float types: F32 is copied, F16 and BF16 round to nearest even (ggml_fp32_to_fp16_row and
// ggml_fp32_to_bf16_row_ref; nan stays nan).

void QuantizeF32(const float* x, int64_t n, uint8_t* dst) {
  std::memcpy(dst, x, static_cast<size_t>(n) * sizeof(float));
}

void QuantizeF16(const float* x, int64_t n, uint8_t* dst) {
  for (int64_t i = 0; i < n; ++i) {
    const uint16_t h = Fp32ToFp16(x[i]);
    std::memcpy(dst + 2 * i, &h, 2);
  }
}

void QuantizeBF16(const float* x, int64_t n, uint8_t* dst) {
  for (int64_t i = 0; i < n; ++i) {
    const uint16_t h = Fp32ToBf16(x[i]);
    std::memcpy(dst + 2 * i, &h, 2);
  }
}

// ---------------------------------------------------------------------------------------------
// Dispatch.

// Block quantizers take a count of blocks (elements for the float types, whose block is 1).
using QuantizeFn = void (*)(const float* x, int64_t blocks, uint8_t* dst);
using WeightedFn = void (*)(const float* x, int64_t blocks, const float* qw, uint8_t* dst);

// IQ4_NL (src/io/ggml_iq4nl.cc) takes a row of values.
void QuantizeIq4Nl(const float* x, int64_t blocks, uint8_t* dst) {
  QuantizeIq4NlRow(x, blocks * kIq4NlBlockElems, dst);
}
void QuantizeIq4NlWeighted(const float* x, int64_t blocks, const float* qw, uint8_t* dst) {
  QuantizeIq4NlRowWeighted(x, blocks * kIq4NlBlockElems, qw, dst);
}

struct Quantizer {
  GgmlType type;
  QuantizeFn ref;
  WeightedFn weighted;  // null: the type ignores importance weights
};

constexpr Quantizer kQuantizers[] = {
    {GgmlType::kF32, QuantizeF32, nullptr},
    {GgmlType::kF16, QuantizeF16, nullptr},
    {GgmlType::kBF16, QuantizeBF16, nullptr},
    {GgmlType::kQ4_0, QuantizeQ4_0, QuantizeQ4_0Weighted},
    {GgmlType::kQ4_1, QuantizeQ4_1, QuantizeQ4_1Weighted},
    {GgmlType::kQ5_0, QuantizeQ5_0, QuantizeQ5_0Weighted},
    {GgmlType::kQ5_1, QuantizeQ5_1, QuantizeQ5_1Weighted},
    {GgmlType::kQ8_0, QuantizeQ8_0, nullptr},
    {GgmlType::kQ2_K, QuantizeQ2K, QuantizeQ2KWeighted},
    {GgmlType::kQ3_K, QuantizeQ3K, QuantizeQ3KWeighted},
    {GgmlType::kQ4_K, QuantizeQ4K, QuantizeQ4KWeighted},
    {GgmlType::kQ5_K, QuantizeQ5K, QuantizeQ5KWeighted},
    {GgmlType::kQ6_K, QuantizeQ6K, QuantizeQ6KWeighted},
    {GgmlType::kIQ4_NL, QuantizeIq4Nl, QuantizeIq4NlWeighted},
};

const Quantizer* FindQuantizer(GgmlType t) {
  for (const Quantizer& q : kQuantizers) {
    if (q.type == t) return &q;
  }
  return nullptr;
}

// The quantizer of t with its block layout, after checking that t can be written and that n
// fills whole blocks; `what` names the calling function in the error.
struct Plan {
  const Quantizer* q;
  int64_t block_elems;
  int64_t block_bytes;
};

Plan PlanFor(GgmlType t, int64_t n, const char* what) {
  const Quantizer* q = FindQuantizer(t);
  if (q == nullptr) {
    throw Error(std::string(what) + ": awq.cpp cannot quantize to ggml type " + GgmlTypeName(t) +
                " (supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, "
                "Q5_K, Q6_K, IQ4_NL)");
  }
  Plan p{q, 0, 0};
  AWQ_CHECK(GgmlTypeLayout(t, &p.block_elems, &p.block_bytes));
  if (n < 0 || n % p.block_elems != 0) {
    throw Error(std::string(what) + ": a row of " + GgmlTypeName(t) + " holds whole blocks of " +
                std::to_string(p.block_elems) + " values, got n = " + std::to_string(n));
  }
  return p;
}

void CheckRows(int64_t rows, const char* what) {
  if (rows < 0) throw Error(std::string(what) + ": negative row count " + std::to_string(rows));
}

}  // namespace

bool GgmlCanQuantize(GgmlType t) { return FindQuantizer(t) != nullptr; }

int64_t GgmlRowBytes(GgmlType t, int64_t n) {
  int64_t block_elems = 0, block_bytes = 0;
  if (!GgmlTypeLayout(t, &block_elems, &block_bytes)) {
    throw Error("GgmlRowBytes: unknown ggml type " + GgmlTypeName(t));
  }
  if (n < 0 || n % block_elems != 0) {
    throw Error("GgmlRowBytes: a row of " + GgmlTypeName(t) + " holds whole blocks of " +
                std::to_string(block_elems) + " values, got n = " + std::to_string(n));
  }
  return n / block_elems * block_bytes;
}

void QuantizeGgmlRow(GgmlType t, const float* x, int64_t n, uint8_t* dst) {
  const Plan p = PlanFor(t, n, "QuantizeGgmlRow");
  p.q->ref(x, n / p.block_elems, dst);
}

void QuantizeGgmlRows(GgmlType t, const float* x, int64_t rows, int64_t n, uint8_t* dst) {
  const Plan p = PlanFor(t, n, "QuantizeGgmlRows");
  CheckRows(rows, "QuantizeGgmlRows");
  const int64_t blocks = n / p.block_elems;
  const int64_t row_bytes = blocks * p.block_bytes;
  ThreadPool::Global().ParallelFor(rows, [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) p.q->ref(x + r * n, blocks, dst + r * row_bytes);
  });
}

void QuantizeGgmlRowWeighted(GgmlType t, const float* x, int64_t n, const float* importance,
                             uint8_t* dst) {
  const Plan p = PlanFor(t, n, "QuantizeGgmlRowWeighted");
  if (importance != nullptr && p.q->weighted != nullptr) {
    p.q->weighted(x, n / p.block_elems, importance, dst);
  } else {
    p.q->ref(x, n / p.block_elems, dst);
  }
}

void QuantizeGgmlRowsWeighted(GgmlType t, const float* x, int64_t rows, int64_t n,
                              const float* importance, uint8_t* dst) {
  const Plan p = PlanFor(t, n, "QuantizeGgmlRowsWeighted");
  CheckRows(rows, "QuantizeGgmlRowsWeighted");
  const int64_t blocks = n / p.block_elems;
  const int64_t row_bytes = blocks * p.block_bytes;
  const bool weighted = importance != nullptr && p.q->weighted != nullptr;
  ThreadPool::Global().ParallelFor(rows, [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) {
      if (weighted) {
        p.q->weighted(x + r * n, blocks, importance, dst + r * row_bytes);
      } else {
        p.q->ref(x + r * n, blocks, dst + r * row_bytes);
      }
    }
  });
}

void RoundTripGgmlRows(GgmlType t, const float* x, int64_t rows, int64_t n, float* out) {
  const Plan p = PlanFor(t, n, "RoundTripGgmlRows");
  CheckRows(rows, "RoundTripGgmlRows");
  // The reference quantizers treat every block on its own, so a row can go through a small
  // buffer a few blocks at a time: 2048 values are 8 super-blocks or 64 legacy blocks, at most
  // 8 KiB (F32) on the stack.
  constexpr int64_t kChunkElems = 2048;
  constexpr int64_t kChunkBytes = kChunkElems * 4;
  static_assert(kChunkElems % kQKK == 0 && kChunkElems % kQK == 0, "chunk holds whole blocks");
  AWQ_CHECK(kChunkElems / p.block_elems * p.block_bytes <= kChunkBytes);
  ThreadPool::Global().ParallelFor(rows, [&](int64_t r0, int64_t r1, int) {
    alignas(64) uint8_t buf[kChunkBytes];
    for (int64_t r = r0; r < r1; ++r) {
      for (int64_t i = 0; i < n; i += kChunkElems) {
        const int64_t len = std::min(kChunkElems, n - i);
        p.q->ref(x + r * n + i, len / p.block_elems, buf);
        DequantizeRow(t, buf, out + r * n + i, len);
      }
    }
  });
}

}  // namespace awq
