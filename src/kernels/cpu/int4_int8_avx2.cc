// AVX2 GEMV with int8 activations: the 4-bit codes meet the int8 activations in vpmaddubsw, so
// one 32-byte code slot (8 rows x 8 inputs) costs a handful of integer instructions instead of
// eight conversions and eight FMAs. Decode on two cores is bound by this arithmetic, not by
// memory, with fp32 activations (docs/KERNELS.md).
#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "awq/thread_pool.h"
#include "kernels/cpu/int4_avx2_util.h"
#include "kernels/cpu/int4_layout.h"
#include "kernels/cpu/int8_gemm.h"
#include "kernels/cpu/scratch.h"

namespace awq {

namespace {

// Lane r: the integer dot of row 8b + r with n_slots slots of activations (exact int32).
inline __m256i DotSlots(const __m256i* codes, const int32_t* xw, int64_t n_slots) {
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i acc = _mm256_setzero_si256();
  int64_t c = 0;
  // Two slots per step: four vpmaddubsw results (each int16 lane |.| <= 2 * 15 * 127 = 3810)
  // add without overflow or saturation before one widening vpmaddwd.
  for (; c + 2 <= n_slots; c += 2, xw += 4) {
    // The weights stream from DRAM once per token: ask for the line 2 KiB ahead (one prefetch
    // per 64-byte line, i.e. per two slots).
    _mm_prefetch(reinterpret_cast<const char*>(codes + c) + 2048, _MM_HINT_T0);
    const __m256i v0 = _mm256_load_si256(codes + c);
    const __m256i v1 = _mm256_load_si256(codes + c + 1);
    __m256i p = _mm256_maddubs_epi16(_mm256_and_si256(v0, low4), _mm256_set1_epi32(xw[0]));
    p = _mm256_add_epi16(p, _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(v0, 4), low4),
                                                 _mm256_set1_epi32(xw[1])));
    p = _mm256_add_epi16(
        p, _mm256_maddubs_epi16(_mm256_and_si256(v1, low4), _mm256_set1_epi32(xw[2])));
    p = _mm256_add_epi16(p, _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(v1, 4), low4),
                                                 _mm256_set1_epi32(xw[3])));
    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, ones));
  }
  if (c < n_slots) {
    const __m256i v0 = _mm256_load_si256(codes + c);
    __m256i p = _mm256_maddubs_epi16(_mm256_and_si256(v0, low4), _mm256_set1_epi32(xw[0]));
    p = _mm256_add_epi16(p, _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(v0, 4), low4),
                                                 _mm256_set1_epi32(xw[1])));
    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, ones));
  }
  return acc;
}

// y8[r] = sum over groups of s * (sum over blocks of x_scale * dot - z * group_sum).
__m256 GemvRowBlockInt8(const Int4Matrix& w, int64_t b, const int32_t* xw,
                        const Int8Activations& xa) {
  const int64_t gs = w.group_size, ng = w.n_groups(), bs = xa.block;
  const int64_t slots_per_block = bs / kInt4Inputs, blocks_per_group = gs / bs;
  __m256 y = _mm256_setzero_ps();
  const float* xscale = xa.scale.data();
  for (int64_t g = 0; g < ng; ++g) {
    const Int4Codes* hdr = w.group(b, g);
    const __m256i* codes = reinterpret_cast<const __m256i*>(hdr + 1);
    __m256 dot = _mm256_setzero_ps();
    for (int64_t blk = 0; blk < blocks_per_group; ++blk) {
      const __m256i d =
          DotSlots(codes + blk * slots_per_block, xw + (g * gs + blk * bs) / 4, slots_per_block);
      dot = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d), _mm256_set1_ps(*xscale++), dot);
    }
    const __m128i* h = reinterpret_cast<const __m128i*>(hdr);
    const __m256 s = _mm256_cvtph_ps(_mm_load_si128(h));
    const __m256 z = _mm256_cvtph_ps(_mm_load_si128(h + 1));
    y = _mm256_fmadd_ps(s, _mm256_fnmadd_ps(z, _mm256_set1_ps(xa.group_sum[g]), dot), y);
  }
  return y;
}

// Blocks of 16 inputs (two slots), the default: rows 8b..8b+15 of two row blocks at once. The
// activation broadcasts and block scales are shared by both, and each 16-input block is one
// straight-line step, so the loop spends its instructions on the codes (twice the throughput of
// the generic loop above, which is compute-bound on two cores).
inline __m256i Dot16(__m256i v0, __m256i v1, __m256i x0, __m256i x1, __m256i x2, __m256i x3) {
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  __m256i p = _mm256_maddubs_epi16(_mm256_and_si256(v0, low4), x0);
  p = _mm256_add_epi16(p,
                       _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(v0, 4), low4), x1));
  __m256i q = _mm256_maddubs_epi16(_mm256_and_si256(v1, low4), x2);
  q = _mm256_add_epi16(q,
                       _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(v1, 4), low4), x3));
  return _mm256_madd_epi16(_mm256_add_epi16(p, q), _mm256_set1_epi16(1));
}

// Loops over the R row blocks must be unrolled so that dot[] and y[] stay in registers (-O2 left
// them in memory: a store-to-load chain per step that halved the throughput).
#define AWQ_UNROLL _Pragma("GCC unroll 8")

// Row blocks b, b + step, ..., b + (R - 1) * step at once (R = 1, 2 or 4). The activations are
// the compact words (xw, in / 4) and block scales (xs, in / 16), broadcast to vectors by the
// loads themselves (vpbroadcastd and vbroadcastss from memory cost what a vector load costs):
// 4 KiB of words for 4096 inputs stay in L1 beside the code streams. Vectors broadcast in memory
// beforehand were 8x that (32-88 KiB for 4096-11008 inputs), spilled from L1 to L2, and their
// refills shared the line-fill buffers with the weight streams: the GEMV read its weights from
// DRAM at 82-86% of the read loop that way, at 92-97% this way (same run, interleaved).
template <int R>
void GemvRowBlocksInt8Block16(const Int4Matrix& w, int64_t b, int64_t step, const int32_t* xw,
                              const float* xs, const float* group_sum, int64_t prefetch,
                              __m256* y) {
  const int64_t gs = w.group_size, ng = w.n_groups(), steps = gs / 16;
  const int64_t block_stride = w.slots_per_block() * step;
  AWQ_UNROLL for (int r = 0; r < R; ++r) y[r] = _mm256_setzero_ps();
  const Int4Codes* hdr = w.group(b, 0);
  for (int64_t g = 0; g < ng; ++g, hdr += w.slots_per_group()) {
    const __m256i* codes = reinterpret_cast<const __m256i*>(hdr + 1);
    __m256 dot[R];
    AWQ_UNROLL for (int r = 0; r < R; ++r) dot[r] = _mm256_setzero_ps();
    for (int64_t k = 0; k < steps; ++k, xw += 4, ++xs, codes += 2) {
      AWQ_UNROLL for (int r = 0; r < R; ++r) {
        _mm_prefetch(reinterpret_cast<const char*>(codes + r * block_stride) + prefetch,
                     _MM_HINT_T0);
      }
      const __m256i x0 = _mm256_set1_epi32(xw[0]), x1 = _mm256_set1_epi32(xw[1]);
      const __m256i x2 = _mm256_set1_epi32(xw[2]), x3 = _mm256_set1_epi32(xw[3]);
      const __m256 scale = _mm256_broadcast_ss(xs);
      AWQ_UNROLL for (int r = 0; r < R; ++r) {
        const __m256i* c = codes + r * block_stride;
        const __m256i d = Dot16(_mm256_load_si256(c), _mm256_load_si256(c + 1), x0, x1, x2, x3);
        dot[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d), scale, dot[r]);
      }
    }
    const __m256 gsum = _mm256_set1_ps(group_sum[g]);
    AWQ_UNROLL for (int r = 0; r < R; ++r) {
      const __m128i* h = reinterpret_cast<const __m128i*>(hdr + r * block_stride);
      const __m256 s = _mm256_cvtph_ps(_mm_load_si128(h));
      const __m256 z = _mm256_cvtph_ps(_mm_load_si128(h + 1));
      y[r] = _mm256_fmadd_ps(s, _mm256_fnmadd_ps(z, gsum, dot[r]), y[r]);
    }
  }
}

// Row blocks [b0, b1) on blocks of 16 inputs, t.streams streams per core.
void GemvRangeInt8Block16(const Int4Matrix& w, int64_t b0, int64_t b1, const int32_t* xw,
                          const float* xs, const float* group_sum, float* y, bool accumulate,
                          GemvTuning t) {
  ForRowBlocksInStreams(t.streams, w, b0, b1, y, accumulate,
                        [&](auto rows, int64_t b, int64_t step, float(*out)[kInt4Rows]) {
                          __m256 r[rows];
                          GemvRowBlocksInt8Block16<rows>(w, b, step, xw, xs, group_sum,
                                                         t.prefetch_bytes, r);
                          for (int j = 0; j < rows; ++j) _mm256_store_ps(out[j], r[j]);
                        });
}

// Blocks other than 16 inputs (weight groups that are not a multiple of 16): one row block at a
// time from the interleaved words.
void GemvRangeInt8Generic(const Int4Matrix& w, int64_t b0, int64_t b1, const int32_t* xw,
                          const Int8Activations& xa, float* y, bool accumulate) {
  for (int64_t b = b0; b < b1; ++b) {
    StoreRowBlock(GemvRowBlockInt8(w, b, xw, xa), y, b, w.out, accumulate);
  }
}

}  // namespace

namespace {

// One block of 16 inputs quantized with the scalar quantizer's arithmetic, lane by lane (the same
// scale and inverse, the product rounded to nearest with ties to even, clamped to [-127, 127]):
// returns the block's 4 words in the nibbles' order (InterleaveForSlots), its scale and the sum
// of its codes.
inline __m128i QuantizeBlock16(const float* p, float* scale, int32_t* code_sum) {
  const __m256 sign = _mm256_set1_ps(-0.0f), lim = _mm256_set1_ps(127.0f);
  const __m256 a = _mm256_loadu_ps(p), b = _mm256_loadu_ps(p + 8);
  const __m256 m = _mm256_max_ps(_mm256_andnot_ps(sign, a), _mm256_andnot_ps(sign, b));
  __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
  h = _mm_max_ps(h, _mm_movehl_ps(h, h));
  const float amax = _mm_cvtss_f32(_mm_max_ss(h, _mm_movehdup_ps(h)));
  *scale = amax / 127.0f;
  const __m256 inv = _mm256_set1_ps(amax > 0.0f ? 127.0f / amax : 0.0f);
  constexpr int kRound = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
  const __m256 qa = _mm256_round_ps(_mm256_mul_ps(a, inv), kRound);
  const __m256 qb = _mm256_round_ps(_mm256_mul_ps(b, inv), kRound);
  const __m256i ia = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(qa, -lim), lim));
  const __m256i ib = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(qb, -lim), lim));
  const __m256i ab = _mm256_add_epi32(ia, ib);
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(ab), _mm256_extracti128_si256(ab, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  *code_sum = _mm_cvtsi128_si32(s);
  // Within a slot of 8 inputs the even ones first; after the two packs the block's words sit at
  // dwords 0, 4, 1, 5.
  const __m256i even_odd = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
  const __m256i p16 = _mm256_packs_epi32(_mm256_permutevar8x32_epi32(ia, even_odd),
                                         _mm256_permutevar8x32_epi32(ib, even_odd));
  const __m256i w = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(p16, p16),
                                                _mm256_setr_epi32(0, 4, 1, 5, 2, 3, 6, 7));
  return _mm256_castsi256_si128(w);
}

// gsum + scale * code_sum as the scalar quantizer computes it: mul_ss then add_ss, never
// contracted into an FMA, so group sums match bit for bit.
inline __m128 AddBlockSum(__m128 gsum, float scale, int32_t code_sum) {
  return _mm_add_ss(gsum, _mm_mul_ss(_mm_set_ss(scale), _mm_set_ss(static_cast<float>(code_sum))));
}

// Quantizes x[0, in) block by block (group_size % 16 == 0): block(blk, words, scale) for every
// block of 16 inputs, then group(g, group sum) at the end of every weight group.
template <class Block, class Group>
void QuantizeBlocks16(const float* x, int64_t in, int64_t group_size, Block block, Group group) {
  const int64_t blocks_per_group = group_size / 16;
  for (int64_t g = 0; g < in / group_size; ++g) {
    __m128 gsum = _mm_setzero_ps();
    for (int64_t j = 0; j < blocks_per_group; ++j) {
      const int64_t blk = g * blocks_per_group + j;
      float scale;
      int32_t code_sum;
      const __m128i words = QuantizeBlock16(x + blk * 16, &scale, &code_sum);
      gsum = AddBlockSum(gsum, scale, code_sum);
      block(blk, words, scale);
    }
    group(g, _mm_cvtss_f32(gsum));
  }
}

}  // namespace

void QuantizeInt8Block16Avx2(const float* x, int64_t in, int64_t group_size, int32_t* words,
                             float* scales, float* group_sums) {
  QuantizeBlocks16(
      x, in, group_size,
      [&](int64_t blk, __m128i w4, float scale) {
        _mm_storeu_si128(reinterpret_cast<__m128i*>(words + 4 * blk), w4);
        scales[blk] = scale;
      },
      [&](int64_t g, float group_sum) { group_sums[g] = group_sum; });
}

// ---- GEMM: many rows of x ------------------------------------------------------------------

namespace {

// Rows of x per micro-kernel call. Five accumulators (8 weight rows each), the four nibble
// vectors of a 16-input step and the group scale fit the 16 registers; six spilled one
// accumulator to the stack.
constexpr int kMt = 5;

// Lane r of out[t] = row 8b + r of W times row t of the panel: per 16-input block, the four nibble
// vectors of two code slots meet each row's four word broadcasts in vpmaddubsw, the int32 dot
// is scaled by (group scale * block scale); per group, minus z * s * group sum.
void KernelInt8Panel(const Int4Matrix& w, int64_t b, const Int8Panel<kMt>& p, __m256* out) {
  const __m256i low4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
  __m256 acc[kMt];
  AWQ_UNROLL for (int t = 0; t < kMt; ++t) acc[t] = _mm256_setzero_ps();
  const int32_t* xw = p.words;
  const float* xs = p.scales;
  const Int4Codes* hdr = w.group(b, 0);
  const int64_t blocks_per_group = w.group_size / 16;
  for (int64_t g = 0; g < w.n_groups(); ++g, hdr += w.slots_per_group()) {
    const __m128i* h = reinterpret_cast<const __m128i*>(hdr);
    const __m256 s = _mm256_cvtph_ps(_mm_load_si128(h));
    const __m256i* codes = reinterpret_cast<const __m256i*>(hdr + 1);
    for (int64_t j = 0; j < blocks_per_group; ++j, codes += 2, xw += 4 * kMt, xs += kMt) {
      const __m256i v0 = _mm256_load_si256(codes), v1 = _mm256_load_si256(codes + 1);
      const __m256i n0 = _mm256_and_si256(v0, low4);
      const __m256i n1 = _mm256_and_si256(_mm256_srli_epi16(v0, 4), low4);
      const __m256i n2 = _mm256_and_si256(v1, low4);
      const __m256i n3 = _mm256_and_si256(_mm256_srli_epi16(v1, 4), low4);
      AWQ_UNROLL for (int t = 0; t < kMt; ++t) {
        // Four products of at most 2 * 15 * 127 each: no int16 overflow before vpmaddwd.
        __m256i q = _mm256_maddubs_epi16(n0, _mm256_set1_epi32(xw[t]));
        q = _mm256_add_epi16(q, _mm256_maddubs_epi16(n1, _mm256_set1_epi32(xw[kMt + t])));
        q = _mm256_add_epi16(q, _mm256_maddubs_epi16(n2, _mm256_set1_epi32(xw[2 * kMt + t])));
        q = _mm256_add_epi16(q, _mm256_maddubs_epi16(n3, _mm256_set1_epi32(xw[3 * kMt + t])));
        const __m256 d = _mm256_cvtepi32_ps(_mm256_madd_epi16(q, ones));
        acc[t] = _mm256_fmadd_ps(d, _mm256_mul_ps(s, _mm256_set1_ps(xs[t])), acc[t]);
      }
    }
    const __m256 zs = _mm256_mul_ps(_mm256_cvtph_ps(_mm_load_si128(h + 1)), s);
    AWQ_UNROLL for (int t = 0; t < kMt; ++t) {
      acc[t] = _mm256_fnmadd_ps(zs, _mm256_set1_ps(p.group_sums[g * kMt + t]), acc[t]);
    }
  }
  AWQ_UNROLL for (int t = 0; t < kMt; ++t) out[t] = acc[t];
}

// One unit of the shared driver is one row block.
void GemmInt8(const Int4Matrix& w, const float* x, int64_t ldx, int64_t m, float* y, int64_t ldy,
              bool accumulate, ThreadPool& pool) {
  GemmInt8Panels<kMt, 3>(w, x, ldx, m, w.row_blocks(), pool,
                         [&](int64_t b, int64_t row0, int rows, const Int8Panel<kMt>& panel) {
                           __m256 out[kMt];
                           KernelInt8Panel(w, b, panel, out);
                           for (int t = 0; t < rows; ++t) {
                             StoreRowBlock(out[t], y + (row0 + t) * ldy, b, w.out, accumulate);
                           }
                         });
}

}  // namespace

void Int4LinearInt8Avx2Tuned(const Int4Matrix& w, const float* x, int64_t ldx, int64_t m, float* y,
                             int64_t ldy, bool accumulate, ThreadPool& pool, GemvTuning t) {
  if (Int8BlockFor(w.group_size) != 16) {
    return GemvInt8Rows(w, x, ldx, m, y, ldy, accumulate, pool, GemvRangeInt8Generic);
  }
  // Two or more rows: the GEMM reads each weight row block once per panel chunk instead of once
  // per row of x.
  if (m >= 2) return GemmInt8(w, x, ldx, m, y, ldy, accumulate, pool);
  GemvInt8Block16(w, x, y, accumulate, pool, GemvRangeInt8Block16, t);
}

void Int4LinearInt8Avx2(const Int4Matrix& w, const float* x, int64_t ldx, int64_t m, float* y,
                        int64_t ldy, bool accumulate, ThreadPool& pool) {
  Int4LinearInt8Avx2Tuned(w, x, ldx, m, y, ldy, accumulate, pool, GemvTuning{});
}

void GemvInt8Block16(const Int4Matrix& w, const float* x, float* y, bool accumulate,
                     ThreadPool& pool, Int8Block16RangeKernel range, GemvTuning t) {
  // The quantizer writes into this thread's reused scratch: the scalar quantizer and a fresh
  // allocation per call had cost 3 us per 576 inputs, a few percent of SmolLM2's decode.
  const int64_t n_words = w.in / 4, n_blocks = w.in / 16;
  float* buf = ThreadScratch<2>(static_cast<size_t>(n_words + n_blocks + w.n_groups()));
  int32_t* xw = reinterpret_cast<int32_t*>(buf);
  float* xs = buf + n_words;
  float* group_sum = xs + n_blocks;
  // Chunks of row blocks per thread: up to 4, so that a core the host slows takes fewer, but none
  // under ~512 KiB of weights. Each chunk starts four cold streams, a fixed cost that small
  // matrices felt: SmolLM2's 960x576 and 576x576 GEMVs, weights from DRAM, ran 1.2-1.3x faster
  // with one chunk per thread than with four (interleaved probe, docs/KERNELS.md).
  const int chunks_per_thread = static_cast<int>(
      std::clamp<int64_t>(w.bytes() / (static_cast<int64_t>(pool.size()) * (512 << 10)), 1, 4));
  QuantizeInt8Block16Avx2(x, w.in, w.group_size, xw, xs, group_sum);
  pool.ParallelForDynamic(
      w.row_blocks(),
      [&](int64_t b0, int64_t b1, int) {
        // The first lines of the chunk's streams (ForRowBlocksInLockstep's parts), requested
        // together rather than each after the previous stream's first load.
        const int64_t part = (b1 - b0) / t.streams;
        for (int j = 0; j < t.streams; ++j) {
          const char* p = reinterpret_cast<const char*>(w.group(b0 + j * part, 0));
          for (int l = 0; l < t.prefetch_bytes; l += 64) _mm_prefetch(p + l, _MM_HINT_T0);
        }
        range(w, b0, b1, xw, xs, group_sum, y, accumulate, t);
      },
      2, chunks_per_thread);
}

}  // namespace awq
