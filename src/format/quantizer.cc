// Group-wise round-to-nearest quantization (AWQ.md section 4): codes, dequantization and the
// fused fake-quantization used by the scale/clip searches. One kernel per group is shared by all
// three so that FakeQuantize stays bit-identical to QuantizeLinear + DequantizeLinear.
#include "awq/quantizer.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "awq/error.h"
#include "awq/half.h"
#include "awq/thread_pool.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace awq {

namespace {

// Round half to even (torch.round, rint under the default rounding mode) for |x| <= 2^22:
// adding 1.5 * 2^23 pushes the fraction bits out of the mantissa, and the FPU rounds that
// addition to nearest-even. Inlined and vectorisable, unlike a libm call on baseline x86-64.
// Callers clamp x to +-kRintLimit first; every code and zero is clamped to [0, 255] afterwards,
// so clamping a larger quotient to 2^22 cannot change a result.
constexpr float kRintMagic = 12582912.0f;  // 1.5 * 2^23
constexpr float kRintLimit = 4194304.0f;   // 2^22
inline float RoundHalfEven(float x) {
  x = x < -kRintLimit ? -kRintLimit : x;
  x = x > kRintLimit ? kRintLimit : x;
  return (x + kRintMagic) - kRintMagic;
}

// The floor AutoAWQ puts under a group's range (clamp(min=1e-5)) so that a constant group does
// not divide by zero.
constexpr float kMinRange = 1e-5f;
// Largest finite fp16; a group whose scale would overflow fp16 (a weight range above
// ~65504 * max_int, which no trained model has) is given this scale and its codes saturate.
constexpr float kMaxFp16 = 65504.0f;

// Rounds a positive scale to the nearest fp16 value, kept in fp32.
inline float ScaleToFp16(float scale) { return std::min(Fp16ToFp32(Fp32ToFp16(scale)), kMaxFp16); }

// The quantization grid of one group.
struct GroupFit {
  float scale = 0;  // fp16-representable
  float zero = 0;   // integer in [0, max_int] (zero point on); 0 in symmetric mode
  float lo = 0;     // smallest code minus zero, as a float: -zero or -2^(bits-1)
  float hi = 0;     // largest code minus zero: max_int - zero or 2^(bits-1) - 1
  bool finite = true;
};

// The group scan works on blocks of kLanes weights with a fixed-length inner loop, which GCC
// vectorizes at -O2; the encoding loops use SSE2 (baseline on x86-64) because GCC kept them
// scalar (5-6 ns per weight). Remainders (group sizes that are not a multiple of 8, allowed
// below the config level) and other ISAs use the scalar form of the same arithmetic.
constexpr int kLanes = 8;

// Per-lane minimum, maximum and a finiteness probe of w[0, n): probe stays 0 while every w is
// finite (w - w == 0) and becomes NaN on the first NaN or infinity.
struct Extremes {
  float mn, mx, amax;
  bool finite;
};
inline Extremes ScanGroup(const float* w, int64_t n) {
  float mn[kLanes], mx[kLanes], am[kLanes], probe[kLanes];
  for (int j = 0; j < kLanes; ++j) mn[j] = mx[j] = w[0], am[j] = 0, probe[j] = 0;
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) {
      const float x = w[i + j];
      mn[j] = x < mn[j] ? x : mn[j];
      mx[j] = x > mx[j] ? x : mx[j];
      const float a = std::fabs(x);
      am[j] = a > am[j] ? a : am[j];
      probe[j] += x - x;
    }
  }
  for (; i < n; ++i) {
    const float x = w[i];
    mn[0] = x < mn[0] ? x : mn[0];
    mx[0] = x > mx[0] ? x : mx[0];
    const float a = std::fabs(x);
    am[0] = a > am[0] ? a : am[0];
    probe[0] += x - x;
  }
  // min/max do not depend on the order of comparison (up to the sign of zero, which no result
  // below depends on), so lanes can be combined in any order.
  Extremes e{mn[0], mx[0], am[0], true};
  float p = probe[0];
  for (int j = 1; j < kLanes; ++j) {
    e.mn = std::min(e.mn, mn[j]);
    e.mx = std::max(e.mx, mx[j]);
    e.amax = std::max(e.amax, am[j]);
    p += probe[j];
  }
  e.finite = p == 0.0f;
  return e;
}

// Fits the grid of w[0, n). The symmetric form works on c = q - 2^(bits-1) directly so both
// modes share EncodeOffset(): code - zero = clamp(rint(w / s), lo, hi) for the zero-point form
// too, because clamp(rint(x) + z, 0, max_int) - z == clamp(rint(x), -z, max_int - z).
inline GroupFit FitGroup(const float* w, int64_t n, int bits, bool zero_point) {
  GroupFit f;
  const Extremes e = ScanGroup(w, n);
  f.finite = e.finite;
  if (!f.finite) return f;
  if (zero_point) {
    const float max_int = static_cast<float>((1 << bits) - 1);
    const float range = std::max(e.mx - e.mn, kMinRange);
    f.scale = ScaleToFp16(range / max_int);
    f.zero = std::min(std::max(-RoundHalfEven(e.mn / f.scale), 0.0f), max_int);
    // 0 - zero rather than -zero: a zero of 0 must give lo = +0, or clamping a negative
    // quotient would produce -0 * s, which differs in sign from the (q - z) * s of dequantization.
    f.lo = 0.0f - f.zero;
    f.hi = max_int - f.zero;
  } else {
    const float max_int = static_cast<float>((1 << (bits - 1)) - 1);
    f.scale = ScaleToFp16(std::max(e.amax, kMinRange) / max_int);
    f.zero = 0;
    f.lo = -static_cast<float>(1 << (bits - 1));
    f.hi = max_int;
  }
  return f;
}

// code - zero for one weight, as an exact small integer in a float.
inline float EncodeOffset(float w, const GroupFit& f) {
  const float x = RoundHalfEven(w / f.scale);
  const float lo_clamped = x < f.lo ? f.lo : x;
  return lo_clamped > f.hi ? f.hi : lo_clamped;
}

#if defined(__SSE2__)
// EncodeOffset on 4 weights. min/max_ps differ from the scalar ternaries only for NaN inputs,
// which never get here: groups with a non-finite weight are handled before encoding, and a
// finite weight over a positive scale is finite or +-inf, which the first clamp absorbs.
inline __m128 EncodeOffset4(__m128 w, const GroupFit& f) {
  __m128 x = _mm_div_ps(w, _mm_set1_ps(f.scale));
  x = _mm_min_ps(_mm_max_ps(x, _mm_set1_ps(-kRintLimit)), _mm_set1_ps(kRintLimit));
  const __m128 magic = _mm_set1_ps(kRintMagic);
  x = _mm_sub_ps(_mm_add_ps(x, magic), magic);
  return _mm_min_ps(_mm_max_ps(x, _mm_set1_ps(f.lo)), _mm_set1_ps(f.hi));
}
#endif

// out[i] = EncodeOffset(w[i]) * scale, the fake-quantized weights (out may alias w).
inline void FakeQuantizeGroup(const float* w, int64_t n, const GroupFit& f, float* out) {
  int64_t i = 0;
#if defined(__SSE2__)
  const __m128 scale = _mm_set1_ps(f.scale);
  for (; i + 4 <= n; i += 4) {
    _mm_storeu_ps(out + i, _mm_mul_ps(EncodeOffset4(_mm_loadu_ps(w + i), f), scale));
  }
#endif
  for (; i < n; ++i) out[i] = EncodeOffset(w[i], f) * f.scale;
}

// codes[i] = EncodeOffset(w[i]) + offset (the stored code).
inline void EncodeGroup(const float* w, int64_t n, const GroupFit& f, float offset,
                        uint8_t* codes) {
  int64_t i = 0;
#if defined(__SSE2__)
  const __m128 off = _mm_set1_ps(offset);
  for (; i + 8 <= n; i += 8) {
    const __m128i a = _mm_cvttps_epi32(_mm_add_ps(EncodeOffset4(_mm_loadu_ps(w + i), f), off));
    const __m128i b = _mm_cvttps_epi32(_mm_add_ps(EncodeOffset4(_mm_loadu_ps(w + i + 4), f), off));
    // Codes are in [0, 255]: the saturating packs are exact.
    const __m128i bytes = _mm_packus_epi16(_mm_packs_epi32(a, b), _mm_setzero_si128());
    _mm_storel_epi64(reinterpret_cast<__m128i*>(codes + i), bytes);
  }
#endif
  for (; i < n; ++i) {
    codes[i] = static_cast<uint8_t>(static_cast<int>(EncodeOffset(w[i], f) + offset));
  }
}

void CheckBits(int bits) {
  if (bits < 2 || bits > 8) {
    throw Error("quantizer: bits = " + std::to_string(bits) + " is not supported (2..8)");
  }
}

// Below this many weights a matrix is fake-quantized on the calling thread: waking the pool
// costs more than the work.
constexpr int64_t kMinParallelWeights = 1 << 16;

}  // namespace

int64_t QuantizedLinear::n_groups() const { return in / GroupSize(params, in); }

int64_t GroupSize(const QuantParams& p, int64_t in) {
  if (in <= 0) throw Error("quantizer: input width " + std::to_string(in) + " is not positive");
  if (p.group_size == -1) return in;
  if (p.group_size <= 0) {
    throw Error("quantizer: group size " + std::to_string(p.group_size) +
                " is not positive (use -1 for one group per row)");
  }
  if (in % p.group_size != 0) {
    throw Error("quantizer: group size " + std::to_string(p.group_size) +
                " does not divide input width " + std::to_string(in));
  }
  return p.group_size;
}

QuantizedLinear QuantizeLinear(const float* w, int64_t out, int64_t in, const QuantParams& p) {
  CheckBits(p.bits);
  const int64_t gs = GroupSize(p, in);
  if (out <= 0) throw Error("quantizer: output width " + std::to_string(out) + " is not positive");
  for (int64_t i = 0; i < out * in; ++i) {
    if (!std::isfinite(w[i])) {
      throw Error("quantizer: weight at row " + std::to_string(i / in) + ", column " +
                  std::to_string(i % in) + " is " + std::to_string(w[i]) +
                  " (the model has non-finite weights)");
    }
  }
  QuantizedLinear q;
  q.out = out;
  q.in = in;
  q.params = p;
  const int64_t ng = in / gs;
  q.q.resize(static_cast<size_t>(out * in));
  q.scales.resize(static_cast<size_t>(out * ng));
  if (p.zero_point) q.zeros.resize(static_cast<size_t>(out * ng));
  // Symmetric codes c are stored as c + 2^(bits-1); zero-point codes as (code - zero) + zero.
  const float stored_zero_sym = static_cast<float>(1 << (p.bits - 1));
  const auto rows = [&](int64_t begin, int64_t end, int) {
    for (int64_t r = begin; r < end; ++r) {
      for (int64_t g = 0; g < ng; ++g) {
        const float* wg = w + r * in + g * gs;
        const GroupFit f = FitGroup(wg, gs, p.bits, p.zero_point);
        q.scales[r * ng + g] = f.scale;
        if (p.zero_point) q.zeros[r * ng + g] = static_cast<uint8_t>(f.zero);
        const float offset = p.zero_point ? f.zero : stored_zero_sym;
        EncodeGroup(wg, gs, f, offset, q.q.data() + r * in + g * gs);
      }
    }
  };
  if (out * in < kMinParallelWeights) {
    rows(0, out, 0);
  } else {
    ThreadPool::Global().ParallelFor(out, rows);
  }
  return q;
}

GroupGrid FitGroupGrid(const float* w, int64_t n, const QuantParams& p) {
  CheckBits(p.bits);
  AWQ_CHECK(n > 0);
  const GroupFit f = FitGroup(w, n, p.bits, p.zero_point);
  if (!f.finite) throw Error("quantizer: a group holds a non-finite weight");
  GroupGrid g;
  g.scale = f.scale;
  g.zero = p.zero_point ? static_cast<int>(f.zero) : 1 << (p.bits - 1);
  g.lo = f.lo;
  g.hi = f.hi;
  return g;
}

float GridOffset(float w, const GroupGrid& g) {
  GroupFit f;
  f.scale = g.scale;
  f.lo = g.lo;
  f.hi = g.hi;
  return EncodeOffset(w, f);
}

void DequantizeLinear(const QuantizedLinear& q, float* w) {
  const int64_t gs = GroupSize(q.params, q.in);
  const int64_t ng = q.in / gs;
  AWQ_CHECK(q.q.size() == static_cast<size_t>(q.out * q.in));
  AWQ_CHECK(q.scales.size() == static_cast<size_t>(q.out * ng));
  AWQ_CHECK(!q.params.zero_point || q.zeros.size() == q.scales.size());
  const auto rows = [&](int64_t begin, int64_t end, int) {
    for (int64_t r = begin; r < end; ++r) {
      for (int64_t g = 0; g < ng; ++g) {
        const float s = q.scales[r * ng + g];
        const int z = q.zero(r, g);
        const uint8_t* qg = q.q.data() + r * q.in + g * gs;
        float* wg = w + r * q.in + g * gs;
        for (int64_t i = 0; i < gs; ++i) wg[i] = static_cast<float>(qg[i] - z) * s;
      }
    }
  };
  if (q.out * q.in < kMinParallelWeights) {
    rows(0, q.out, 0);
  } else {
    ThreadPool::Global().ParallelFor(q.out, rows);
  }
}

void FakeQuantize(float* w, int64_t out, int64_t in, const QuantParams& p) {
  CheckBits(p.bits);
  const int64_t gs = GroupSize(p, in);
  const int64_t ng = in / gs;
  const auto rows = [&](int64_t begin, int64_t end, int) {
    for (int64_t r = begin; r < end; ++r) {
      for (int64_t g = 0; g < ng; ++g) {
        float* wg = w + r * in + g * gs;
        const GroupFit f = FitGroup(wg, gs, p.bits, p.zero_point);
        if (!f.finite) {
          std::fill(wg, wg + gs, std::numeric_limits<float>::quiet_NaN());
          continue;
        }
        FakeQuantizeGroup(wg, gs, f, wg);
      }
    }
  };
  if (out * in < kMinParallelWeights) {
    rows(0, out, 0);
  } else {
    ThreadPool::Global().ParallelFor(out, rows);
  }
}

}  // namespace awq
