// ggml quantizers: fp32 rows to ggml's tensor types, byte-identical to llama.cpp's reference
// quantizers, so that awq.cpp can write GGUF files llama.cpp loads (docs/GGUF.md, "Quantizers").
#pragma once

#include <cstdint>

#include "awq/gguf.h"

namespace awq {

// True when awq.cpp can write type t: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K,
// Q4_K, Q5_K, Q6_K, IQ4_NL.
bool GgmlCanQuantize(GgmlType t);

// Bytes of one row of n values of type t. Throws awq::Error naming the type and n when n is not a
// multiple of the type's block size or the type's layout is unknown.
int64_t GgmlRowBytes(GgmlType t, int64_t n);

// Quantizes one row of n values (n a multiple of the type's block size, else awq::Error naming
// the type and n) into GgmlRowBytes(t, n) bytes at dst (any alignment), as llama.cpp's reference
// quantizer without an importance matrix does (quantize_row_*_ref, which is what
// ggml_quantize_chunk(..., imatrix = NULL) and llama-quantize without --imatrix run): the same
// bytes, checked by tests/ggml_quantize_test.cc against files written by ggml itself. Every block
// is quantized on its own. Types GgmlCanQuantize() rejects are an awq::Error.
void QuantizeGgmlRow(GgmlType t, const float* x, int64_t n, uint8_t* dst);

// rows x n values (row-major, rows independent) into rows * GgmlRowBytes(t, n) bytes, in
// parallel over rows on ThreadPool::Global(). Same bytes as QuantizeGgmlRow row by row.
void QuantizeGgmlRows(GgmlType t, const float* x, int64_t rows, int64_t n, uint8_t* dst);

// Quantizes then dequantizes rows x n values into `out` (the values a reader of the quantized
// tensor sees: DequantizeRow of QuantizeGgmlRow's bytes, bit for bit). `out` may not alias `x`.
// Parallel over rows; no heap allocation (blocks go through a buffer on the stack).
void RoundTripGgmlRows(GgmlType t, const float* x, int64_t rows, int64_t n, float* out);

// The importance-weighted quantizer llama.cpp runs with an importance matrix (llama-quantize
// --imatrix: quantize_*(..., quant_weights) with its row-level *_impl functions), byte-identical.
// `importance` holds n non-negative weights, one per value of the row (the imatrix entry of each
// column); null gives QuantizeGgmlRow's output, as ggml_quantize_chunk does with no imatrix.
// Q8_0, F32, F16 and BF16 ignore the weights, as llama.cpp does. The row is the unit here: the
// legacy types (Q4_0 ... Q5_1) scale their weights by the whole row's mean square.
void QuantizeGgmlRowWeighted(GgmlType t, const float* x, int64_t n, const float* importance,
                             uint8_t* dst);

// rows x n values with one importance vector of n weights shared by every row (an imatrix is per
// column), in parallel over rows; same bytes as QuantizeGgmlRowWeighted row by row.
void QuantizeGgmlRowsWeighted(GgmlType t, const float* x, int64_t rows, int64_t n,
                              const float* importance, uint8_t* dst);

}  // namespace awq
