// AVX2 + FMA + F16C kernels for Int4Linear: a weight-streaming GEMV (m == 1); a GEMM over packed x
// that dequantizes panels of W once into per-thread fp32 buffers for a 6x16 register-blocked FMA
// micro-kernel (m > 1); and the dequantize-into-oneDNN-sgemm GEMM (kAvx2Sgemm).
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "awq/thread_pool.h"
#include "kernels/cpu/int4_avx2_util.h"
#include "kernels/cpu/int4_layout.h"
#include "kernels/cpu/scratch.h"
#include "kernels/cpu/sgemm.h"
#include "kernels/cpu/transpose_avx2.h"

namespace awq {

namespace {

// Unpacking without shifts: lane r of a code slot holds 8 nibbles; (v & (0xF << 4j)) is
// q_j * 16^j, an integer of at most 4 significant bits, so its conversion to float is exact and
// q_j * 16^j * (a * 16^-j) == q_j * a exactly (powers of two), for any a that does not
// underflow. So the kernels mask, convert and multiply by an operand pre-scaled by 16^-j: one
// shift per nibble saved. Nibble 7 is shifted down instead (masked in place it would set the
// sign bit of the int32 and convert negative), so its factor is 1.
constexpr float kNibbleFactor[8] = {1.0f,         1.0f / 16,      1.0f / 256,      1.0f / 4096,
                                    1.0f / 65536, 1.0f / 1048576, 1.0f / 16777216, 1.0f};

struct NibbleMasks {
  __m256i m[7];
  NibbleMasks() {
    for (int j = 0; j < 7; ++j) m[j] = _mm256_set1_epi32(0xF << (4 * j));
  }
};

// Nibble j of every lane of v, as q_j * 16^j (j < 7) or q_7 (j == 7), in fp32.
template <int J>
inline __m256 Nibble(__m256i v, const NibbleMasks& nm) {
  if constexpr (J == 7) {
    return _mm256_cvtepi32_ps(_mm256_srli_epi32(v, 28));
  } else {
    return _mm256_cvtepi32_ps(_mm256_and_si256(v, nm.m[J]));
  }
}

// Scales and zeros of one group header as fp32 vectors (lane r = row 8b + r).
inline void LoadHeader(const Int4Codes* hdr, __m256* s, __m256* z) {
  const __m128i* h = reinterpret_cast<const __m128i*>(hdr);
  *s = _mm256_cvtph_ps(_mm_load_si128(h));
  *z = _mm256_cvtph_ps(_mm_load_si128(h + 1));
}

// ---- GEMV ----------------------------------------------------------------------------------

// y8[r] = sum_k x[k] * w[8b + r, k] for one row block. Per group the codes are dotted with the
// pre-scaled activations xs (xs[k] = x[k] * kNibbleFactor[k % 8]) into 8 independent
// accumulators (one per nibble, so the FMA latency chain is one FMA per slot), then
// y += s * dot(q, x) - (z * s) * sum(x over the group).
__m256 GemvRowBlock(const Int4Matrix& w, int64_t b, const float* xs, const float* xsum,
                    const NibbleMasks& nm) {
  const int64_t gs = w.group_size, ng = w.n_groups(), n_slots = gs / kInt4Inputs;
  __m256 y = _mm256_setzero_ps();
  for (int64_t g = 0; g < ng; ++g) {
    const Int4Codes* hdr = w.group(b, g);
    const __m256i* codes = reinterpret_cast<const __m256i*>(hdr + 1);
    const float* xg = xs + g * gs;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    for (int64_t c = 0; c < n_slots; ++c, xg += kInt4Inputs) {
      const __m256i v = _mm256_load_si256(codes + c);
      a0 = _mm256_fmadd_ps(Nibble<0>(v, nm), _mm256_broadcast_ss(xg + 0), a0);
      a1 = _mm256_fmadd_ps(Nibble<1>(v, nm), _mm256_broadcast_ss(xg + 1), a1);
      a2 = _mm256_fmadd_ps(Nibble<2>(v, nm), _mm256_broadcast_ss(xg + 2), a2);
      a3 = _mm256_fmadd_ps(Nibble<3>(v, nm), _mm256_broadcast_ss(xg + 3), a3);
      a4 = _mm256_fmadd_ps(Nibble<4>(v, nm), _mm256_broadcast_ss(xg + 4), a4);
      a5 = _mm256_fmadd_ps(Nibble<5>(v, nm), _mm256_broadcast_ss(xg + 5), a5);
      a6 = _mm256_fmadd_ps(Nibble<6>(v, nm), _mm256_broadcast_ss(xg + 6), a6);
      a7 = _mm256_fmadd_ps(Nibble<7>(v, nm), _mm256_broadcast_ss(xg + 7), a7);
    }
    const __m256 dot = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                                     _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
    __m256 s, z;
    LoadHeader(hdr, &s, &z);
    y = _mm256_fmadd_ps(s, dot, y);
    y = _mm256_fnmadd_ps(_mm256_mul_ps(z, s), _mm256_broadcast_ss(xsum + g), y);
  }
  return y;
}

void Gemv(const Int4Matrix& w, const float* x, float* y, bool accumulate, ThreadPool& pool) {
  const int64_t gs = w.group_size, ng = w.n_groups();
  // Pre-scaled activations and group sums, shared read-only by every thread.
  std::vector<float> xs(static_cast<size_t>(w.in)), xsum(static_cast<size_t>(ng));
  for (int64_t g = 0; g < ng; ++g) {
    float sum = 0.0f;
    for (int64_t k = g * gs; k < (g + 1) * gs; ++k) {
      xs[k] = x[k] * kNibbleFactor[k % kInt4Inputs];
      sum += x[k];
    }
    xsum[g] = sum;
  }
  const NibbleMasks nm;
  pool.ParallelFor(
      w.row_blocks(),
      [&](int64_t b0, int64_t b1, int) {
        for (int64_t b = b0; b < b1; ++b) {
          StoreRowBlock(GemvRowBlock(w, b, xs.data(), xsum.data(), nm), y, b, w.out, accumulate);
        }
      },
      2);
}

// ---- GEMM ----------------------------------------------------------------------------------

// Blocking of the packed GEMM (BLIS's for Haswell/Zen, the same 6x16 register tile): a [kKc][16]
// panel of dequantized weights (16 KiB) stays in L1 while the micro-kernel sweeps kMcPanels row
// panels of packed x ([kKc][6] each, 72 KiB in all, from L2); kNcUnits such panels (256 KiB) are
// dequantized together per block of inputs, so each block of x is read once per 256 columns.
constexpr int kMr = 6;        // rows of x per micro-kernel call: 6 x 2 accumulators + 2 B + 1 A
constexpr int kNr = 16;       // output columns per micro-kernel call: two row blocks
constexpr int64_t kKc = 256;  // inputs per panel
constexpr int64_t kMcPanels = 12;  // row panels of x per L2 block
constexpr int64_t kNcUnits = 8;    // 16-column panels dequantized per block of inputs
static_assert(kKc % kInt4Inputs == 0, "panels hold whole code slots");

// Dequantizes W[16u .. 16u+16, k0 .. k0+kc) into p[kc][16] (p[k][c] = w[16u + c, k0 + k]);
// rows past the last row block are zero.
void DequantPanel(const Int4Matrix& w, int64_t u, int64_t k0, int64_t kc, float* p,
                  const NibbleMasks& nm) {
  const int64_t gs = w.group_size;
  for (int half = 0; half < 2; ++half) {
    const int64_t b = 2 * u + half;
    float* ph = p + half * kInt4Rows;
    if (b >= w.row_blocks()) {
      for (int64_t k = 0; k < kc; ++k) _mm256_store_ps(ph + k * kNr, _mm256_setzero_ps());
      continue;
    }
    int64_t g_cur = -1;
    __m256 sj[8], mn = _mm256_setzero_ps();
    for (int64_t k = k0; k < k0 + kc; k += kInt4Inputs) {
      const int64_t g = k / gs;
      const Int4Codes* hdr = w.group(b, g);
      if (g != g_cur) {
        __m256 s, z;
        LoadHeader(hdr, &s, &z);
        for (int j = 0; j < 8; ++j) sj[j] = _mm256_mul_ps(s, _mm256_set1_ps(kNibbleFactor[j]));
        mn = _mm256_mul_ps(_mm256_sub_ps(_mm256_setzero_ps(), z), s);  // -z * s, exact
        g_cur = g;
      }
      const __m256i v =
          _mm256_load_si256(reinterpret_cast<const __m256i*>(hdr + 1 + (k - g * gs) / kInt4Inputs));
      float* dst = ph + (k - k0) * kNr;
      // fma(q * 16^j, s * 16^-j, -z * s) rounds (q - z) * s, which fp32 holds exactly.
      _mm256_store_ps(dst + 0 * kNr, _mm256_fmadd_ps(Nibble<0>(v, nm), sj[0], mn));
      _mm256_store_ps(dst + 1 * kNr, _mm256_fmadd_ps(Nibble<1>(v, nm), sj[1], mn));
      _mm256_store_ps(dst + 2 * kNr, _mm256_fmadd_ps(Nibble<2>(v, nm), sj[2], mn));
      _mm256_store_ps(dst + 3 * kNr, _mm256_fmadd_ps(Nibble<3>(v, nm), sj[3], mn));
      _mm256_store_ps(dst + 4 * kNr, _mm256_fmadd_ps(Nibble<4>(v, nm), sj[4], mn));
      _mm256_store_ps(dst + 5 * kNr, _mm256_fmadd_ps(Nibble<5>(v, nm), sj[5], mn));
      _mm256_store_ps(dst + 6 * kNr, _mm256_fmadd_ps(Nibble<6>(v, nm), sj[6], mn));
      _mm256_store_ps(dst + 7 * kNr, _mm256_fmadd_ps(Nibble<7>(v, nm), sj[7], mn));
    }
  }
}

// ---- GEMM over packed x ---------------------------------------------------------------------

// x rearranged into row panels of kMr rows, [panel][in][kMr] (rows past m are zero), so a
// micro-kernel reads its A operand as one sequential stream instead of kMr strided rows.
void PackX(const float* x, int64_t ldx, int64_t m, int64_t in, float* xp, ThreadPool& pool) {
  const int64_t panels = (m + kMr - 1) / kMr;
  pool.ParallelFor(panels, [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) {
      float* dst = xp + r * in * kMr;
      const int rows = static_cast<int>(std::min<int64_t>(kMr, m - r * kMr));
      const float* src = x + r * kMr * ldx;
      int64_t k = 0;
      // 8 inputs of the 6 rows at a time: an 8x8 transpose (rows 6 and 7 zero) gives the 8
      // [6]-vectors in the low lanes; each store's 2 spare lanes are overwritten by the next,
      // the last one writes only its 6 lanes, so nothing past the panel is touched (a masked
      // store, vmaskmovps, is microcoded and slow on AMD).
      for (; k + kInt4Inputs <= in; k += kInt4Inputs) {
        __m256 t[8];
        for (int i = 0; i < 8; ++i) {
          t[i] = i < rows ? _mm256_loadu_ps(src + i * ldx + k) : _mm256_setzero_ps();
        }
        Transpose8x8(t);
        float* d = dst + k * kMr;
        for (int j = 0; j < 7; ++j) _mm256_storeu_ps(d + j * kMr, t[j]);
        _mm_storeu_ps(d + 7 * kMr, _mm256_castps256_ps128(t[7]));
        _mm_storel_pi(reinterpret_cast<__m64*>(d + 7 * kMr + 4), _mm256_extractf128_ps(t[7], 1));
      }
      for (; k < in; ++k) {
        for (int i = 0; i < kMr; ++i) dst[k * kMr + i] = i < rows ? src[i * ldx + k] : 0.0f;
      }
    }
  });
}

// c[MR, 16] (+)= xp[kc][kMr] (first MR columns) * p[kc][16], accumulators in registers.
template <int MR>
void PackedKernel(int64_t kc, const float* xp, const float* p, float* c, int64_t ldc, bool load_c) {
  __m256 acc[MR][2];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
    acc[i][0] = load_c ? _mm256_loadu_ps(c + i * ldc) : _mm256_setzero_ps();
    acc[i][1] = load_c ? _mm256_loadu_ps(c + i * ldc + 8) : _mm256_setzero_ps();
  }
#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; ++k, p += kNr, xp += kMr) {
    const __m256 b0 = _mm256_load_ps(p), b1 = _mm256_load_ps(p + 8);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const __m256 a = _mm256_broadcast_ss(xp + i);
      acc[i][0] = _mm256_fmadd_ps(a, b0, acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps(a, b1, acc[i][1]);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
    _mm256_storeu_ps(c + i * ldc, acc[i][0]);
    _mm256_storeu_ps(c + i * ldc + 8, acc[i][1]);
  }
}

void PackedTile(int mr, int64_t kc, const float* xp, const float* p, float* y, int64_t ldy,
                int64_t n_valid, bool load_c) {
  float tile[kMr * kNr];
  float* c = y;
  int64_t ldc = ldy;
  if (n_valid < kNr) {
    c = tile;
    ldc = kNr;
    if (load_c) {
      for (int i = 0; i < mr; ++i)
        std::memcpy(tile + i * kNr, y + i * ldy, n_valid * sizeof(float));
    }
  }
  switch (mr) {
    case 1:
      PackedKernel<1>(kc, xp, p, c, ldc, load_c);
      break;
    case 2:
      PackedKernel<2>(kc, xp, p, c, ldc, load_c);
      break;
    case 3:
      PackedKernel<3>(kc, xp, p, c, ldc, load_c);
      break;
    case 4:
      PackedKernel<4>(kc, xp, p, c, ldc, load_c);
      break;
    case 5:
      PackedKernel<5>(kc, xp, p, c, ldc, load_c);
      break;
    default:
      PackedKernel<6>(kc, xp, p, c, ldc, load_c);
      break;
  }
  if (n_valid < kNr) {
    for (int i = 0; i < mr; ++i) std::memcpy(y + i * ldy, tile + i * kNr, n_valid * sizeof(float));
  }
}

// The step that cuts n into the fewest blocks of at most max_step, all about equal (a multiple of
// `multiple`), so no block is a small remainder that reuses its operands little.
int64_t EvenStep(int64_t n, int64_t max_step, int64_t multiple) {
  const int64_t blocks = (n + max_step - 1) / max_step;
  const int64_t step = (n + blocks - 1) / blocks;
  return (step + multiple - 1) / multiple * multiple;
}

void GemmPacked(const Int4Matrix& w, const float* x, int64_t ldx, int64_t m, float* y, int64_t ldy,
                bool accumulate, ThreadPool& pool) {
  const int64_t panels = (m + kMr - 1) / kMr;
  float* xp = ThreadScratch<1>(static_cast<size_t>(panels * w.in * kMr));
  PackX(x, ldx, m, w.in, xp, pool);
  const int64_t units = (w.row_blocks() + 1) / 2;
  const NibbleMasks nm;
  pool.ParallelFor(units, [&](int64_t u0, int64_t u1, int) {
    float* panel = ThreadScratch(static_cast<size_t>(kNcUnits * kKc * kNr));
    const int64_t nc = EvenStep(u1 - u0, kNcUnits, 1), kc_step = EvenStep(w.in, kKc, kInt4Inputs);
    for (int64_t pu = u0; pu < u1; pu += nc) {
      const int64_t pu1 = std::min(u1, pu + nc);
      for (int64_t k0 = 0; k0 < w.in; k0 += kc_step) {
        const int64_t kc = std::min(kc_step, w.in - k0);
        const bool load_c = accumulate || k0 > 0;
        for (int64_t u = pu; u < pu1; ++u)
          DequantPanel(w, u, k0, kc, panel + (u - pu) * kc * kNr, nm);
        for (int64_t r0 = 0; r0 < panels; r0 += kMcPanels) {
          const int64_t r1 = std::min(panels, r0 + kMcPanels);
          for (int64_t u = pu; u < pu1; ++u) {
            const int64_t col = u * kNr, n_valid = std::min<int64_t>(kNr, w.out - col);
            for (int64_t r = r0; r < r1; ++r) {
              const int mr = static_cast<int>(std::min<int64_t>(kMr, m - r * kMr));
              // The rows of y the next call reads, so that this call's k loop hides their fetch
              // from L3: with two threads, waiting for them had cost the GEMM 10-20%. (Also
              // fetching the next column panel's first tile measured slower.)
              if (r + 1 < r1) {
                const float* next = y + (r + 1) * kMr * ldy + col;
                const int next_mr = static_cast<int>(std::min<int64_t>(kMr, m - (r + 1) * kMr));
                for (int i = 0; i < next_mr; ++i) {
                  _mm_prefetch(reinterpret_cast<const char*>(next + i * ldy), _MM_HINT_T0);
                }
              }
              PackedTile(mr, kc, xp + (r * w.in + k0) * kMr, panel + (u - pu) * kc * kNr,
                         y + r * kMr * ldy + col, ldy, n_valid, load_c);
            }
          }
        }
      }
    }
  });
}

// ---- GEMM through sgemm -----------------------------------------------------------------------

// The smallest share of output columns a thread takes in GemmSgemm.
constexpr int64_t kSgemmCols = 256;
static_assert(kSgemmCols % kInt4Rows == 0, "panels hold whole row blocks");
// From this many rows of x on, Int4LinearAvx2Sgemm calls GemmSgemm; below, oneDNN's packing of x
// is not amortised.
constexpr int64_t kSgemmMinRows = 32;

// Dequantizes row blocks [b0, b1) and groups [g0, g1) of W into p[rows][ld], ld = (g1 - g0) *
// group_size (p[c][k] = w[8 b0 + c, g0 * group_size + k]): the row-major [out, in] layout of fp32
// weights, so the product is the very sgemm call LinearF32 makes. Each code slot gives 8 nibble
// vectors (lane = row), transposed in registers to 8 rows of 8 inputs.
void DequantRows(const Int4Matrix& w, int64_t b0, int64_t b1, int64_t g0, int64_t g1, float* p,
                 const NibbleMasks& nm) {
  const int64_t gs = w.group_size, n_slots = gs / kInt4Inputs, in = (g1 - g0) * gs;
  for (int64_t b = b0; b < b1; ++b) {
    float* pb = p + (b - b0) * kInt4Rows * in - g0 * gs;
    for (int64_t g = g0; g < g1; ++g) {
      const Int4Codes* hdr = w.group(b, g);
      __m256 s, z;
      LoadHeader(hdr, &s, &z);
      __m256 sj[8];
      for (int j = 0; j < 8; ++j) sj[j] = _mm256_mul_ps(s, _mm256_set1_ps(kNibbleFactor[j]));
      const __m256 mn = _mm256_mul_ps(_mm256_sub_ps(_mm256_setzero_ps(), z), s);
      const __m256i* codes = reinterpret_cast<const __m256i*>(hdr + 1);
      for (int64_t c = 0; c < n_slots; ++c) {
        const __m256i v = _mm256_load_si256(codes + c);
        __m256 r[8] = {_mm256_fmadd_ps(Nibble<0>(v, nm), sj[0], mn),
                       _mm256_fmadd_ps(Nibble<1>(v, nm), sj[1], mn),
                       _mm256_fmadd_ps(Nibble<2>(v, nm), sj[2], mn),
                       _mm256_fmadd_ps(Nibble<3>(v, nm), sj[3], mn),
                       _mm256_fmadd_ps(Nibble<4>(v, nm), sj[4], mn),
                       _mm256_fmadd_ps(Nibble<5>(v, nm), sj[5], mn),
                       _mm256_fmadd_ps(Nibble<6>(v, nm), sj[6], mn),
                       _mm256_fmadd_ps(Nibble<7>(v, nm), sj[7], mn)};
        Transpose8x8(r);
        float* dst = pb + g * gs + c * kInt4Inputs;
        for (int row = 0; row < 8; ++row) _mm256_storeu_ps(dst + row * in, r[row]);
      }
    }
  }
}

// y (+)= x W^T for many rows of x: each thread dequantizes its share of W's columns into an fp32
// panel and multiplies it with the tuned serial sgemm, so prefill runs at fp32 BLAS speed while
// reading 4-bit weights (the dequantization is amortised over the m rows). Every sgemm call packs
// its slice of x, so a thread makes one call over all of its columns, as LinearF32 does, and bounds
// the panel by slicing the inputs instead (k-slices add only a pass over y each). Measured at
// m = 512 in one benchmark run: panels of at most 8 MB of columns (a call, and a repacking of x,
// per 512 columns of 4096 inputs) ran 4096x4096 at 0.80x and 11008x4096 at 0.73x of LinearF32;
// one call per thread at 1.00x and 0.95x.
void GemmSgemm(const Int4Matrix& w, const float* x, int64_t ldx, int64_t m, float* y, int64_t ldy,
               bool accumulate, ThreadPool& pool) {
  const NibbleMasks nm;
  constexpr int64_t kMaxPanelBytes = 32 << 20;
  const int64_t min_blocks = kSgemmCols / kInt4Rows;
  pool.ParallelFor(
      w.row_blocks(),
      [&](int64_t b0, int64_t b1, int) {
        const int64_t col0 = b0 * kInt4Rows;
        const int64_t cols = std::min(b1 * kInt4Rows, w.out) - col0;
        const int64_t row_bytes = (b1 - b0) * kInt4Rows * w.group_size *
                                  static_cast<int64_t>(sizeof(float));  // per group of inputs
        const int64_t per_slice = std::clamp<int64_t>(kMaxPanelBytes / row_bytes, 1, w.n_groups());
        float* panel =
            ThreadScratch(static_cast<size_t>((b1 - b0) * kInt4Rows * per_slice * w.group_size));
        for (int64_t g0 = 0; g0 < w.n_groups(); g0 += per_slice) {
          const int64_t g1 = std::min(w.n_groups(), g0 + per_slice);
          const int64_t k0 = g0 * w.group_size, ks = (g1 - g0) * w.group_size;
          DequantRows(w, b0, b1, g0, g1, panel, nm);
          const bool add = accumulate || g0 > 0;
          SgemmSerial(false, true, m, cols, ks, 1.0f, x + k0, ldx, panel, ks, add ? 1.0f : 0.0f,
                      y + col0, ldy);
        }
      },
      min_blocks);
}

}  // namespace

void Int4LinearAvx2(const Int4Matrix& w, const float* x, int64_t ldx, int64_t m, float* y,
                    int64_t ldy, bool accumulate, ThreadPool& pool) {
  if (m == 1) return Gemv(w, x, y, accumulate, pool);
  GemmPacked(w, x, ldx, m, y, ldy, accumulate, pool);
}

void Int4LinearAvx2Sgemm(const Int4Matrix& w, const float* x, int64_t ldx, int64_t m, float* y,
                         int64_t ldy, bool accumulate, ThreadPool& pool) {
  if (m == 1) return Gemv(w, x, y, accumulate, pool);
  if (m >= kSgemmMinRows) return GemmSgemm(w, x, ldx, m, y, ldy, accumulate, pool);
  GemmPacked(w, x, ldx, m, y, ldy, accumulate, pool);
}

}  // namespace awq
