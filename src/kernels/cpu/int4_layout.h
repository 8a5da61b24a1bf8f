// Internal view of the Int4Matrix layout shared by the packer, the scalar oracle and the SIMD
// kernels, and the per-ISA entry points that int4_dispatch.cc chooses between.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "awq/int4_kernels.h"

namespace awq {

// Code of row 8b + r at input k (k relative to the row's start) of matrix w.
inline int Int4Code(const Int4Matrix& w, int64_t b, int r, int64_t k) {
  const int64_t g = k / w.group_size, c = (k % w.group_size) / kInt4Inputs;
  const Int4Codes& slot = w.group(b, g)[1 + c];
  return static_cast<int>((slot.row[r] >> (4 * (k % kInt4Inputs))) & 0xF);
}

// Activations quantized to int8 for the integer-dot GEMV (Int4Kernel::kAvx2Int8), in blocks of
// kInt8Block inputs (the whole group when the group is not a multiple of it), symmetric:
// x ~= q * scale with q = rint(x / scale) in [-127, 127], scale = max |x| / 127 over the block
// (0 for an all-zero block, whose q are 0). Blocks of 16: SmolLM2's activations have outlier
// channels (max |x| ~ 470 at down_proj inputs) that coarsen every neighbour in their block;
// measured on the RTN w4 g64 model, 512 tokens: perplexity +0.75% with blocks of 32 (llama.cpp's
// Q8_0 choice), +0.54% with 64, +0.06% with 16.
inline constexpr int64_t kInt8Block = 16;
struct Int8Activations {
  int64_t block = 0;             // inputs per block; divides the weight group
  std::vector<int8_t> q;         // [in]
  std::vector<float> scale;      // [in / block]
  std::vector<int32_t> q_sum;    // [in / block]: sum of q over the block
  std::vector<float> group_sum;  // [in / group]: sum of the dequantized x over the weight group
};
// The block size for a weight group width.
inline int64_t Int8BlockFor(int64_t group_size) {
  return group_size % kInt8Block == 0 ? kInt8Block : group_size;
}
void QuantizeActivationsInt8(const float* x, int64_t in, int64_t group_size, Int8Activations* a);
// The int8 activations as 32-bit words for the SIMD GEMVs: for the 8 inputs k0..k0+7 of slot c,
// word 2c holds inputs k0, k0+2, k0+4, k0+6 (bytes 0..3) and word 2c+1 inputs k0+1, k0+3, k0+5,
// k0+7, the inputs that the low and the high nibbles of each code byte hold. One broadcast of a
// word then meets 4 rows x 4 codes in an integer 4-way dot product (vpmaddubsw, vpdpbusd, sdot).
void InterleaveForSlots(const Int8Activations& xa, std::vector<int32_t>* words);
// Runs row blocks [b0, b1) of a GEMV as kStreams equal parts of the range in lockstep, then the
// remainder one at a time: kStreams weight streams per core, each front to back (one stream per
// core reads about 15 GB/s on the Zen 3 host, four 20-25 GB/s; neighbouring row blocks of a
// narrow matrix are only a few KiB apart, which the prefetchers see as one stream).
// blocks(R, b, step, out) computes row blocks b, b + step, ..., b + (R - 1) * step (R = kStreams
// or 1, a std::integral_constant) into out[R][8]; their rows are stored (or added) to y, the last
// block clipped to w.out.
template <int kStreams, class Blocks>
void ForRowBlocksInLockstep(const Int4Matrix& w, int64_t b0, int64_t b1, float* y, bool accumulate,
                            Blocks blocks) {
  const auto store = [&](const float* r, int64_t b) {
    float* yb = y + b * kInt4Rows;
    const int64_t valid = std::min<int64_t>(kInt4Rows, w.out - b * kInt4Rows);
    for (int64_t i = 0; i < valid; ++i) yb[i] = accumulate ? yb[i] + r[i] : r[i];
  };
  alignas(32) float r[kStreams][kInt4Rows];
  const int64_t q = (b1 - b0) / kStreams;
  for (int64_t i = 0; i < q; ++i) {
    blocks(std::integral_constant<int, kStreams>{}, b0 + i, q, r);
    for (int j = 0; j < kStreams; ++j) store(r[j], b0 + i + j * q);
  }
  for (int64_t b = b0 + kStreams * q; b < b1; ++b) {
    blocks(std::integral_constant<int, 1>{}, b, 0, r);
    store(r[0], b);
  }
}
// ForRowBlocksInLockstep with the number of streams chosen at run time (2 or 4).
template <class Blocks>
void ForRowBlocksInStreams(int streams, const Int4Matrix& w, int64_t b0, int64_t b1, float* y,
                           bool accumulate, Blocks blocks) {
  if (streams == 2) return ForRowBlocksInLockstep<2>(w, b0, b1, y, accumulate, blocks);
  ForRowBlocksInLockstep<4>(w, b0, b1, y, accumulate, blocks);
}

// The driver of the SIMD int8 GEMVs: for each row i of x, quantizes it and interleaves its words,
// then runs range(w, b0, b1, words, xa, y_i, accumulate) over chunks of row blocks
// (ParallelForDynamic, so a core the host slows takes fewer).
using Int8RangeKernel = void (*)(const Int4Matrix& w, int64_t b0, int64_t b1, const int32_t* xw,
                                 const Int8Activations& xa, float* y, bool accumulate);
void GemvInt8Rows(const Int4Matrix& w, const float* x, int64_t ldx, int64_t m, float* y,
                  int64_t ldy, bool accumulate, ThreadPool& pool, Int8RangeKernel range);

// How a decode GEMV on blocks of 16 walks its weights: each chunk of row blocks is read as
// `streams` parts in lockstep (2 or 4: ForRowBlocksInLockstep), each stream prefetched
// `prefetch_bytes` ahead. Every row gets the same arithmetic in the same order under every tuning,
// so the results' bits do not depend on it; the speed does, by host. The default, 4 streams and
// 512 bytes, was measured on the Zen 3 host with the AVX2 GEMV and compact activations: 256-1024
// bytes all streamed at 92-98% of the read loop from DRAM, 2 KiB at 84-91% (the distance tuned
// while the activations were 8x larger); two streams per core read 5-10% slower in decode. An
// automatic choice races tunings on the first decode calls (KernelRace, int4_dispatch.cc).
struct GemvTuning {
  int streams = 4;
  int prefetch_bytes = 512;
};

// The m == 1 driver of the int8 GEMVs on blocks of 16 inputs (AVX2 and AVX-512; needs AVX2 + FMA
// + F16C and Int8BlockFor(w.group_size) == 16): quantizes x with QuantizeInt8Block16Avx2 into the
// calling thread's reused scratch (compact words [in / 4], block scales [in / 16], group sums
// [n_groups]), then runs range(w, b0, b1, words, scales, group_sums, y, accumulate, t) over
// chunks of row blocks (one per 512 KiB of weights per thread, up to four, ParallelForDynamic),
// having asked for the first t.prefetch_bytes of each chunk's t.streams streams together.
using Int8Block16RangeKernel = void (*)(const Int4Matrix& w, int64_t b0, int64_t b1,
                                        const int32_t* xw, const float* xs, const float* group_sum,
                                        float* y, bool accumulate, GemvTuning t);
void GemvInt8Block16(const Int4Matrix& w, const float* x, float* y, bool accumulate,
                     ThreadPool& pool, Int8Block16RangeKernel range, GemvTuning t);

// The implementations; arguments already checked by Int4Linear.
void Int4LinearRef(const Int4Matrix& w, const float* x, int64_t ldx, int64_t m, float* y,
                   int64_t ldy, bool accumulate, ThreadPool& pool);
void Int4LinearAvx2(const Int4Matrix& w, const float* x, int64_t ldx, int64_t m, float* y,
                    int64_t ldy, bool accumulate, ThreadPool& pool);
void Int4LinearAvx2Sgemm(const Int4Matrix& w, const float* x, int64_t ldx, int64_t m, float* y,
                         int64_t ldy, bool accumulate, ThreadPool& pool);
// The int8-activation kernels on AVX-512 VNNI (x86-64 builds) and on NEON with sdot (AArch64
// builds). Both GEMVs do the AVX2 GEMV's arithmetic per row (the exact integer dot of each
// activation block, then the same fp32 FMAs in the same order) and give its bits; on blocks of 16
// the AVX-512 one multiplies prompts (m >= 2) with a VNNI GEMM that gives the AVX2 int8 GEMM's
// bits, while NEON runs its GEMV per prompt row.
void Int4LinearInt8Avx512(const Int4Matrix& w, const float* x, int64_t ldx, int64_t m, float* y,
                          int64_t ldy, bool accumulate, ThreadPool& pool);
void Int4LinearInt8Neon(const Int4Matrix& w, const float* x, int64_t ldx, int64_t m, float* y,
                        int64_t ldy, bool accumulate, ThreadPool& pool);
// bf16 activations on AVX-512 BF16 (x86-64 builds; int4_bf16_avx512.cc): x rounded to bf16 (to
// nearest even), the codes exact, fp32 accumulation; y = sum_g s_g * (q.x_bf16 - z * sum x_bf16).
void Int4LinearBf16Avx512(const Int4Matrix& w, const float* x, int64_t ldx, int64_t m, float* y,
                          int64_t ldy, bool accumulate, ThreadPool& pool);
// The same arithmetic in scalar code, one row of x at a time: the oracle of the bf16 kernels
// (equal up to fp32 rounding order).
void Int4LinearBf16Ref(const Int4Matrix& w, const float* x, int64_t ldx, int64_t m, float* y,
                       int64_t ldy, bool accumulate, ThreadPool& pool);
// The same two sources built against SIMDe's portable intrinsics, for the tests on any CPU
// (tests/simd_emulated_test.cc links them; the library does not).
namespace emulated {
void Int4LinearInt8Avx512(const Int4Matrix& w, const float* x, int64_t ldx, int64_t m, float* y,
                          int64_t ldy, bool accumulate, ThreadPool& pool);
void Int4LinearInt8Neon(const Int4Matrix& w, const float* x, int64_t ldx, int64_t m, float* y,
                        int64_t ldy, bool accumulate, ThreadPool& pool);
void Int4LinearBf16Avx512(const Int4Matrix& w, const float* x, int64_t ldx, int64_t m, float* y,
                          int64_t ldy, bool accumulate, ThreadPool& pool);
}  // namespace emulated
// One row of x at a time through int8 activations: y = sum_g s_g * xs_g * (q.x_q - z * sum x_q),
// the integer dot exact. The scalar version is its oracle (equal up to fp32 rounding order).
void Int4LinearInt8Ref(const Int4Matrix& w, const float* x, int64_t ldx, int64_t m, float* y,
                       int64_t ldy, bool accumulate, ThreadPool& pool);
// The AVX2 GEMV's quantizer for blocks of 16 (group_size % 16 == 0): the words, block scales and
// group sums of QuantizeActivationsInt8 + InterleaveForSlots, bit for bit (words: in / 4,
// scales: in / 16, group_sums: in / group_size).
void QuantizeInt8Block16Avx2(const float* x, int64_t in, int64_t group_size, int32_t* words,
                             float* scales, float* group_sums);
void Int4LinearInt8Avx2(const Int4Matrix& w, const float* x, int64_t ldx, int64_t m, float* y,
                        int64_t ldy, bool accumulate, ThreadPool& pool);
// The two int8 kernels with the decode GEMV's tuning given (used where m == 1 on blocks of 16;
// the plain entry points run the default GemvTuning).
void Int4LinearInt8Avx2Tuned(const Int4Matrix& w, const float* x, int64_t ldx, int64_t m, float* y,
                             int64_t ldy, bool accumulate, ThreadPool& pool, GemvTuning t);
void Int4LinearInt8Avx512Tuned(const Int4Matrix& w, const float* x, int64_t ldx, int64_t m,
                               float* y, int64_t ldy, bool accumulate, ThreadPool& pool,
                               GemvTuning t);
namespace emulated {
void Int4LinearInt8Avx512Tuned(const Int4Matrix& w, const float* x, int64_t ldx, int64_t m,
                               float* y, int64_t ldy, bool accumulate, ThreadPool& pool,
                               GemvTuning t);
}  // namespace emulated

}  // namespace awq
