// 4-bit group-quantized linears on the CPU: a SIMD-friendly weight layout (Int4Matrix) and the
// product y (+)= x * dequant(W)^T with fp32 activations, with a scalar oracle and AVX2 paths.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "awq/quant_config.h"
#include "awq/quantizer.h"

namespace awq {

class ThreadPool;

// ---------------------------------------------------------------------------------------------
// Layout (docs/KERNELS.md). Output rows are taken 8 at a time ("row blocks"; `out` is padded to
// a multiple of 8 with all-zero rows), input positions group by group. For every row block b
// and group g there is one header slot followed by group_size / 8 code slots, all 32 bytes:
//
//   row block b:  [hdr g0][codes k0..7][codes k8..15]...[hdr g1][codes ...]...[hdr g_last]...
//
// Int4GroupHeader (32 bytes): scale[r] and zero[r] of row 8b + r for this group, both fp16. The
// zero is a small integer (0..15), exact in fp16; with zero_point off it is the implicit 8.
//
// Int4Codes (32 bytes): the codes of the 8 rows at 8 consecutive inputs k0..k0+7 of the group,
// one 32-bit word per row, input k0 + j in nibble j (bits 4j..4j+3):
//
//   word r (row 8b + r), r = 0..7, one per 32-bit lane of a __m256i:
//    bit 31  28 27  24 23  20 19  16 15  12 11   8 7    4 3    0
//       +------+------+------+------+------+------+------+------+
//       | k0+7 | k0+6 | k0+5 | k0+4 | k0+3 | k0+2 | k0+1 | k0+0 |
//       +------+------+------+------+------+------+------+------+
//
// One aligned 256-bit load therefore gives the codes of 8 consecutive output rows in its 8
// lanes, and (v & (0xF << 4j)) isolates input k0 + j for all of them: the kernels accumulate
// 8 output rows per vector with no horizontal sums, and dequantize with one FMA,
// w = q * s + (-z * s). The weight stream of one row block is contiguous (codes and their
// scales interleaved), so a GEMV reads every byte once, front to back.
// ---------------------------------------------------------------------------------------------

// fp16 scale and zero of the 8 rows of a row block for one group.
struct alignas(32) Int4GroupHeader {
  uint16_t scale[8];  // fp16 bits
  uint16_t zero[8];   // fp16 bits of an integer in [0, 15]
};
static_assert(sizeof(Int4GroupHeader) == 32, "one header is one 256-bit load");

// The codes of 8 rows at 8 consecutive inputs: word r nibble j = q[8b + r, k0 + j].
struct alignas(32) Int4Codes {
  uint32_t row[8];
};
static_assert(sizeof(Int4Codes) == 32, "one code slot is one 256-bit load");

// Rows per row block and inputs per code slot.
inline constexpr int64_t kInt4Rows = 8;
inline constexpr int64_t kInt4Inputs = 8;

struct Int4Matrix {
  int64_t out = 0;         // logical output rows
  int64_t in = 0;          // inputs, a multiple of group_size
  int64_t group_size = 0;  // effective group width (never -1), a multiple of 8
  QuantParams params;      // as quantized (group_size may be -1), for UnpackInt4
  // [row_blocks(), n_groups(), 1 + group_size / 8] slots of 32 bytes: a header then the codes.
  // A header slot holds an Int4GroupHeader's bytes (read it with Header()).
  std::vector<Int4Codes> slots;

  int64_t n_groups() const { return in / group_size; }
  int64_t row_blocks() const { return (out + kInt4Rows - 1) / kInt4Rows; }
  int64_t slots_per_group() const { return 1 + group_size / kInt4Inputs; }
  int64_t slots_per_block() const { return n_groups() * slots_per_group(); }
  // The header slot of (row block b, group g); its codes follow it.
  const Int4Codes* group(int64_t b, int64_t g) const {
    return slots.data() + b * slots_per_block() + g * slots_per_group();
  }
  Int4GroupHeader Header(int64_t b, int64_t g) const;
  // Bytes of weights a product reads (codes, scales and zeros; padding rows included).
  int64_t bytes() const { return static_cast<int64_t>(slots.size() * sizeof(Int4Codes)); }
};

// Packs a 4-bit QuantizedLinear. Throws awq::Error when bits != 4 or the group width is not a
// multiple of 8 (naming the value). Any `out` is accepted.
Int4Matrix PackInt4(const QuantizedLinear& q);
// The exact inverse of PackInt4.
QuantizedLinear UnpackInt4(const Int4Matrix& w);

// Which implementation runs Int4Linear.
enum class Int4Kernel {
  kAuto,           // the fastest one this CPU supports (see Int4Linear)
  kReference,      // scalar, plain dequantize-and-dot in fp32: the oracle and the fallback
  kAvx2,           // AVX2 + FMA + F16C, fp32 activations; many rows: our packed 6x16 GEMM
  kAvx2Sgemm,      // as kAvx2, but 32+ rows dequantize panels for oneDNN's sgemm (AVX-512 CPUs)
  kReferenceInt8,  // scalar oracle of the int8-activation path
  kAvx2Int8,       // AVX2: activations quantized to int8 per group, integer dot (vpmaddubsw)
  kAvx512Int8,     // the same on AVX-512 VNNI (vpdpbusd, two code slots per 512-bit load)
  kNeonInt8,       // the same on AArch64 NEON with the dot-product extension (sdot)
  kAutoInt8,       // as kAuto, but prompts (m > 1) also through int8 activations where a GEMM
                   // for them exists (AVX2, AVX-512 VNNI): the fastest choice, for generation
  kReferenceBf16,  // scalar oracle of the bf16-activation path
  kAvx512Bf16,     // AVX-512 BF16: activations rounded to bf16, exact codes, vdpbf16ps into fp32
};
// True when `k` is compiled in and this CPU can run it (kAuto and kReference always are).
bool Int4KernelAvailable(Int4Kernel k);
const char* Int4KernelName(Int4Kernel k);

// The kernel Int4Linear runs for `requested` and m rows of x, never kAuto or kAutoInt8: a concrete
// `requested` is kept; for kAuto and kAutoInt8, `override_kernel` takes the automatic choice's
// place unless it is kAuto (AWQ_INT4_KERNEL=auto-int8 makes every automatic choice kAutoInt8's),
// then the automatic choice is made for this CPU (see Int4Linear).
Int4Kernel ResolveInt4Kernel(Int4Kernel requested, int64_t m, Int4Kernel override_kernel);
// The same with AWQ_INT4_KERNEL as the override. Throws awq::Error naming the variable when it
// holds an unknown name or a kernel this CPU cannot run.
Int4Kernel ResolveInt4Kernel(Int4Kernel requested, int64_t m);

// Parses "auto", "reference", "avx2", "avx2-sgemm", "reference-int8", "avx2-int8",
// "avx512-int8", "neon-int8", "auto-int8", "reference-bf16", "avx512-bf16" (Int4KernelName's
// names);
// anything else is an awq::Error listing them.
Int4Kernel ParseInt4Kernel(const std::string& name);

// y[m, out] (+)= x[m, in] * dequant(W)^T, W dequantized as (q - z) * s. Row strides ldx >= in
// and ldy >= out are in floats; no alignment is required.
//  - fp32 activations (kReference, kAvx2, kAvx2Sgemm): m == 1 runs a GEMV that streams the
//    weights once with the rows split over the pool's threads; m > 1 dequantizes panels of W
//    (once each) for a 6x16 register-blocked FMA kernel over packed x, faster than fp32 sgemm
//    on AVX2 CPUs; kAvx2Sgemm instead multiplies the dequantized panels with oneDNN's serial
//    sgemm from m >= 32, which wins where oneDNN has 512-bit FMAs.
//  - int8 activations (kReferenceInt8, kAvx2Int8, kAvx512Int8, kNeonInt8): each row of x is
//    quantized to int8 per block of 16 inputs (symmetric, max |x| / 127; the whole group when
//    the group is not a multiple of 16) and dotted with the codes in integers; one GEMV per row,
//    except kAvx2Int8 and kAvx512Int8 with m >= 2 on blocks of 16, which run GEMMs over panels
//    of rows. Faster, at a small accuracy cost (docs/KERNELS.md has the perplexity figures).
//    kAvx2Int8, kAvx512Int8 and (for m == 1) kNeonInt8 give the same bits.
//  - bf16 activations (kReferenceBf16, kAvx512Bf16): each row of x is rounded to bf16 and
//    multiplied with the exact codes in fp32 (vdpbf16ps), any m. Never an automatic choice: a
//    prefill candidate to measure against the VNNI GEMM on CPUs with AVX512_BF16.
// kAuto runs, for m == 1, kAvx512Int8 where AVX-512 VNNI exists, else kAvx2Int8, and kNeonInt8 on
// AArch64 with sdot; for m > 1, kAvx2Sgemm where AVX-512F exists, else kAvx2; kReference where none
// of these runs. kAutoInt8 is kAuto for m == 1 and, for m > 1, kAvx512Int8 where VNNI exists, else
// kAvx2Int8 where AVX2 runs (else kAuto's choice). An automatic choice races ways of computing
// the same bits on the first calls (each matrix's first call untimed, 32 timed calls per arm) and
// the fastest runs from then on (Int4KernelRaces): for m == 1 the int8 GEMV's streams per core
// and prefetch distance, with kAvx512Int8 against kAvx2Int8 where both run; for m > 1 the two
// int8 GEMMs where both run. Results do not depend on it. The environment variable AWQ_INT4_KERNEL
// (a name above) replaces the automatic choice of kAuto and kAutoInt8 for every m
// (ResolveInt4Kernel); a kernel passed explicitly is run as given. Call it from outside the pool's
// tasks (the pool is not re-entrant).
void Int4Linear(const Int4Matrix& w, const float* x, int64_t ldx, int64_t m, float* y, int64_t ldy,
                bool accumulate, ThreadPool& pool, Int4Kernel kernel = Int4Kernel::kAuto);

// The state of the races ("decode avx2-int8 (4 streams, 512 B ahead) over avx512-int8 (4
// streams, 512 B ahead), median cost 0.91x (...); prompts avx2-int8 over avx512-int8 ..."; the
// prompt race only where VNNI runs), or "" on a CPU without the AVX2 int8 kernels.
std::string Int4KernelRaces();

}  // namespace awq
