// Scalar oracle for Int4Linear (also the fallback on CPUs without AVX2): dequantize one output
// row to fp32 as (q - z) * s, then plain sequential fp32 dot products with every input row.
#include <algorithm>
#include <cmath>
#include <vector>

#include "awq/half.h"
#include "awq/thread_pool.h"
#include "kernels/cpu/int4_layout.h"

namespace awq {

void Int4LinearRef(const Int4Matrix& w, const float* x, int64_t ldx, int64_t m, float* y,
                   int64_t ldy, bool accumulate, ThreadPool& pool) {
  const int64_t gs = w.group_size, ng = w.n_groups();
  pool.ParallelFor(
      w.out,
      [&](int64_t o0, int64_t o1, int) {
        std::vector<float> row(static_cast<size_t>(w.in));
        for (int64_t o = o0; o < o1; ++o) {
          const int64_t b = o / kInt4Rows;
          const int r = static_cast<int>(o % kInt4Rows);
          for (int64_t g = 0; g < ng; ++g) {
            const Int4GroupHeader h = w.Header(b, g);
            const float s = Fp16ToFp32(h.scale[r]);
            const int z = static_cast<int>(Fp16ToFp32(h.zero[r]));
            for (int64_t k = g * gs; k < (g + 1) * gs; ++k) {
              row[k] = static_cast<float>(Int4Code(w, b, r, k) - z) * s;  // exact in fp32
            }
          }
          for (int64_t i = 0; i < m; ++i) {
            const float* xi = x + i * ldx;
            float acc = 0.0f;
            for (int64_t k = 0; k < w.in; ++k) acc += xi[k] * row[k];
            y[i * ldy + o] = accumulate ? y[i * ldy + o] + acc : acc;
          }
        }
      },
      kInt4Rows);
}

namespace {
// Round to nearest, ties to even (nearbyint in the default rounding mode), exact for |v| < 2^22:
// adding 1.5 * 2^23 pushes the fraction out of the mantissa. nearbyint itself is a libm call per
// element where the baseline ISA lacks SSE4.1's roundss, and was most of the decode-time
// activation quantization's cost.
inline float RoundNearest(float v) {
  constexpr float kMagic = 12582912.0f;  // 1.5 * 2^23
  return (v + kMagic) - kMagic;
}
}  // namespace

void QuantizeActivationsInt8(const float* x, int64_t in, int64_t group_size, Int8Activations* a) {
  const int64_t bs = Int8BlockFor(group_size), nb = in / bs;
  a->block = bs;
  a->q.resize(static_cast<size_t>(in));
  a->scale.resize(static_cast<size_t>(nb));
  a->q_sum.resize(static_cast<size_t>(nb));
  a->group_sum.assign(static_cast<size_t>(in / group_size), 0.0f);
  for (int64_t blk = 0; blk < nb; ++blk) {
    float amax = 0.0f;
    for (int64_t k = blk * bs; k < (blk + 1) * bs; ++k) amax = std::max(amax, std::fabs(x[k]));
    const float scale = amax / 127.0f;
    const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
    int32_t sum = 0;
    for (int64_t k = blk * bs; k < (blk + 1) * bs; ++k) {
      const int q = static_cast<int>(std::clamp(RoundNearest(x[k] * inv), -127.0f, 127.0f));
      a->q[static_cast<size_t>(k)] = static_cast<int8_t>(q);
      sum += q;
    }
    a->scale[static_cast<size_t>(blk)] = scale;
    a->q_sum[static_cast<size_t>(blk)] = sum;
    a->group_sum[static_cast<size_t>(blk * bs / group_size)] += scale * static_cast<float>(sum);
  }
}

namespace {
// yi[o] (+)= value(b, r) for every output o = 8b + r, the rows split over the pool.
template <class Value>
void StoreOutputs(const Int4Matrix& w, float* yi, bool accumulate, ThreadPool& pool, Value value) {
  pool.ParallelFor(
      w.out,
      [&](int64_t o0, int64_t o1, int) {
        for (int64_t o = o0; o < o1; ++o) {
          const float v = value(o / kInt4Rows, static_cast<int>(o % kInt4Rows));
          yi[o] = accumulate ? yi[o] + v : v;
        }
      },
      kInt4Rows);
}
}  // namespace

void Int4LinearInt8Ref(const Int4Matrix& w, const float* x, int64_t ldx, int64_t m, float* y,
                       int64_t ldy, bool accumulate, ThreadPool& pool) {
  const int64_t gs = w.group_size, ng = w.n_groups();
  Int8Activations xa;
  for (int64_t i = 0; i < m; ++i) {
    QuantizeActivationsInt8(x + i * ldx, w.in, gs, &xa);
    StoreOutputs(w, y + i * ldy, accumulate, pool, [&](int64_t b, int r) {
      float acc = 0.0f;
      const int64_t bs = xa.block;
      for (int64_t g = 0; g < ng; ++g) {
        const Int4GroupHeader h = w.Header(b, g);
        // sum over blocks of scale * (exact integer dot), then the zero's term.
        float dot = 0.0f;
        for (int64_t blk = g * gs / bs; blk < (g + 1) * gs / bs; ++blk) {
          int32_t d = 0;
          for (int64_t k = blk * bs; k < (blk + 1) * bs; ++k) {
            d += Int4Code(w, b, r, k) * xa.q[static_cast<size_t>(k)];
          }
          dot += xa.scale[static_cast<size_t>(blk)] * static_cast<float>(d);
        }
        const float z = Fp16ToFp32(h.zero[r]);
        acc += Fp16ToFp32(h.scale[r]) * (dot - z * xa.group_sum[static_cast<size_t>(g)]);
      }
      return acc;
    });
  }
}

void Int4LinearBf16Ref(const Int4Matrix& w, const float* x, int64_t ldx, int64_t m, float* y,
                       int64_t ldy, bool accumulate, ThreadPool& pool) {
  const int64_t gs = w.group_size, ng = w.n_groups();
  std::vector<float> xb(static_cast<size_t>(w.in)), gsum(static_cast<size_t>(ng));
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t g = 0; g < ng; ++g) {
      float sum = 0.0f;
      for (int64_t k = g * gs; k < (g + 1) * gs; ++k) {
        xb[static_cast<size_t>(k)] = Bf16ToFp32(Fp32ToBf16(x[i * ldx + k]));
        sum += xb[static_cast<size_t>(k)];
      }
      gsum[static_cast<size_t>(g)] = sum;
    }
    StoreOutputs(w, y + i * ldy, accumulate, pool, [&](int64_t b, int r) {
      float acc = 0.0f;
      for (int64_t g = 0; g < ng; ++g) {
        const Int4GroupHeader h = w.Header(b, g);
        float dot = 0.0f;  // every product q * x_bf16 is exact in fp32
        for (int64_t k = g * gs; k < (g + 1) * gs; ++k) {
          dot += static_cast<float>(Int4Code(w, b, r, k)) * xb[static_cast<size_t>(k)];
        }
        const float z = Fp16ToFp32(h.zero[r]);
        acc += Fp16ToFp32(h.scale[r]) * (dot - z * gsum[static_cast<size_t>(g)]);
      }
      return acc;
    });
  }
}

void InterleaveForSlots(const Int8Activations& xa, std::vector<int32_t>* words) {
  const int64_t in = static_cast<int64_t>(xa.q.size());
  words->resize(static_cast<size_t>(in / 4));
  auto* bytes = reinterpret_cast<int8_t*>(words->data());
  for (int64_t k0 = 0; k0 < in; k0 += kInt4Inputs) {
    for (int i = 0; i < 4; ++i) {
      bytes[k0 + i] = xa.q[static_cast<size_t>(k0 + 2 * i)];
      bytes[k0 + 4 + i] = xa.q[static_cast<size_t>(k0 + 2 * i + 1)];
    }
  }
}

void GemvInt8Rows(const Int4Matrix& w, const float* x, int64_t ldx, int64_t m, float* y,
                  int64_t ldy, bool accumulate, ThreadPool& pool, Int8RangeKernel range) {
  Int8Activations xa;
  std::vector<int32_t> xw;
  for (int64_t i = 0; i < m; ++i) {
    QuantizeActivationsInt8(x + i * ldx, w.in, w.group_size, &xa);
    InterleaveForSlots(xa, &xw);
    float* yi = y + i * ldy;
    pool.ParallelForDynamic(
        w.row_blocks(),
        [&](int64_t b0, int64_t b1, int) { range(w, b0, b1, xw.data(), xa, yi, accumulate); }, 2);
  }
}

}  // namespace awq
