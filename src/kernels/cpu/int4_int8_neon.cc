// NEON GEMV with int8 activations for AArch64 with the dot-product extension (ARMv8.2 sdot,
// `asimddp`): a code slot is two 16-byte registers (rows 0-3 and 4-7, 4 bytes = 8 codes per
// row), and vdotq_s32 adds four code x activation products into each row's int32 lane.
//
// Built natively only for AArch64 (-march=armv8.2-a+dotprod). The same source is compiled a
// second time against SIMDe's portable NEON (AWQ_EMULATE_SIMD, into namespace awq::emulated), so
// the test suite checks it against the scalar oracle on x86 (tests/simd_emulated_test.cc), and
// tests/neon/ cross-compiles it for AArch64 and runs it under qemu where those tools exist.
#if defined(AWQ_EMULATE_SIMD)
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/arm/neon.h>
#else
#include <arm_neon.h>
#endif

#include "awq/thread_pool.h"
#include "kernels/cpu/int4_layout.h"

namespace awq {
#if defined(AWQ_EMULATE_SIMD)
namespace emulated {
#endif

namespace {

// Loops over the R row blocks must be unrolled so that the accumulators stay in registers.
#define AWQ_UNROLL _Pragma("GCC unroll 8")

// acc += the 4 rows' codes in v (both nibbles of each byte) . activations `even` / `odd`.
inline int32x4_t DotNibbles(int32x4_t acc, uint8x16_t v, int8x16_t even, int8x16_t odd) {
  const int8x16_t lo = vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(0x0F)));
  const int8x16_t hi = vreinterpretq_s8_u8(vshrq_n_u8(v, 4));
  return vdotq_s32(vdotq_s32(acc, lo, even), hi, odd);
}

// fp16 scales or zeros of rows 4h .. 4h+3 of a group header.
inline float32x4_t HeaderHalf(const uint16_t* p) {
  return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p)));
}

// y[r][0..1] (rows 0-3 and 4-7) for row blocks b, b + step, ..., b + (R - 1) * step.
template <int R>
void RowBlocks(const Int4Matrix& w, int64_t b, int64_t step, const int32_t* xw,
               const Int8Activations& xa, float32x4_t (*y)[2]) {
  const int64_t gs = w.group_size, ng = w.n_groups(), bs = xa.block;
  const int64_t slots = bs / kInt4Inputs, blocks = gs / bs;
  const int64_t stride = w.slots_per_block() * step;  // between the R row blocks, in slots
  AWQ_UNROLL for (int r = 0; r < R; ++r) y[r][0] = y[r][1] = vdupq_n_f32(0.0f);
  const float* xscale = xa.scale.data();
  const Int4Codes* hdr = w.group(b, 0);
  for (int64_t g = 0; g < ng; ++g, hdr += w.slots_per_group()) {
    const Int4Codes* codes = hdr + 1;
    float32x4_t dot[R][2];
    AWQ_UNROLL for (int r = 0; r < R; ++r) dot[r][0] = dot[r][1] = vdupq_n_f32(0.0f);
    for (int64_t blk = 0; blk < blocks; ++blk) {
      int32x4_t acc[R][2];
      AWQ_UNROLL for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = vdupq_n_s32(0);
      for (int64_t c = 0; c < slots; ++c, xw += 2) {
        const int8x16_t even = vreinterpretq_s8_s32(vdupq_n_s32(xw[0]));
        const int8x16_t odd = vreinterpretq_s8_s32(vdupq_n_s32(xw[1]));
        AWQ_UNROLL for (int r = 0; r < R; ++r) {
          const uint8_t* p = reinterpret_cast<const uint8_t*>(codes + r * stride + c);
          acc[r][0] = DotNibbles(acc[r][0], vld1q_u8(p), even, odd);
          acc[r][1] = DotNibbles(acc[r][1], vld1q_u8(p + 16), even, odd);
        }
      }
      codes += slots;
      const float sc = *xscale++;
      AWQ_UNROLL for (int r = 0; r < R; ++r) {
        dot[r][0] = vfmaq_n_f32(dot[r][0], vcvtq_f32_s32(acc[r][0]), sc);
        dot[r][1] = vfmaq_n_f32(dot[r][1], vcvtq_f32_s32(acc[r][1]), sc);
      }
    }
    const float gsum = xa.group_sum[g];
    AWQ_UNROLL for (int r = 0; r < R; ++r) {
      const auto* h = reinterpret_cast<const uint16_t*>(hdr + r * stride);
      for (int half = 0; half < 2; ++half) {
        const float32x4_t s = HeaderHalf(h + 4 * half), z = HeaderHalf(h + 8 + 4 * half);
        // y += s * (dot - z * sum(x over the group))
        y[r][half] = vfmaq_f32(y[r][half], s, vfmaq_f32(dot[r][half], z, vdupq_n_f32(-gsum)));
      }
    }
  }
}

// Row blocks [b0, b1), four streams per core.
void Range(const Int4Matrix& w, int64_t b0, int64_t b1, const int32_t* xw,
           const Int8Activations& xa, float* y, bool accumulate) {
  ForRowBlocksInLockstep<4>(w, b0, b1, y, accumulate,
                            [&](auto rows, int64_t b, int64_t step, float(*out)[kInt4Rows]) {
                              float32x4_t r[rows][2];
                              RowBlocks<rows>(w, b, step, xw, xa, r);
                              for (int j = 0; j < rows; ++j) {
                                vst1q_f32(out[j], r[j][0]);
                                vst1q_f32(out[j] + 4, r[j][1]);
                              }
                            });
}

}  // namespace

void Int4LinearInt8Neon(const Int4Matrix& w, const float* x, int64_t ldx, int64_t m, float* y,
                        int64_t ldy, bool accumulate, ThreadPool& pool) {
  GemvInt8Rows(w, x, ldx, m, y, ldy, accumulate, pool, Range);
}

#if defined(AWQ_EMULATE_SIMD)
}  // namespace emulated
#endif
}  // namespace awq
