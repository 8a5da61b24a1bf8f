// IQ4_NL, llama.cpp's non-linear 4-bit type: quantization and dequantization of rows, both
// byte-identical to ggml (ggml-quants.c). Private to src/.
//
// A block holds 32 values:
//   d       fp16 scale
//   qs[16]  byte j = idx[j] (low nibble) | idx[j + 16] << 4 (high nibble)
// and value j is d * kIq4NlValues[idx[j]]. The table is non-uniform (denser near zero, like the
// quantiles of a bell-shaped distribution) and asymmetric: -127 has no +127 partner, so the
// quantizer tries both signs of the scale.
//
// llama-quantize writes IQ4_NL for the tensors of a Q2_K/Q3_K file whose rows are not a multiple
// of 256 (the K types' super-block), which is most tensors of small models such as SmolLM2-135M
// (576 columns) and Gemma-3-270M (640 columns).
#pragma once

#include <cstdint>

namespace awq {

constexpr int kIq4NlBlockElems = 32;
constexpr int kIq4NlBlockBytes = 18;

// The 16 reconstruction levels, in units of the block's scale (ggml-common.h: kvalues_iq4nl).
// Sorted ascending: the quantizer's nearest-level search relies on it.
inline constexpr int8_t kIq4NlValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                            1,    13,   25,  38,  53,  69,  89,  113};

struct BlockIq4Nl {
  uint16_t d;
  uint8_t qs[kIq4NlBlockElems / 2];
};
static_assert(sizeof(BlockIq4Nl) == kIq4NlBlockBytes, "IQ4_NL block must be 18 bytes");

// Quantizes one row of n values (n a multiple of 32, else awq::Error naming n) into n / 32 * 18
// bytes at dst (any alignment), as llama.cpp's quantize_iq4_nl with quant_weights = NULL does,
// which is what ggml_quantize_chunk(GGML_TYPE_IQ4_NL, ..., imatrix = NULL) and llama-quantize
// without --imatrix run. Each block is quantized on its own.
void QuantizeIq4NlRow(const float* x, int64_t n, uint8_t* dst);

// The same with an importance matrix (llama-quantize --imatrix): `importance` holds one
// non-negative weight per value of the row; null gives QuantizeIq4NlRow's bytes. A block whose 32
// weights are all zero gets a nan scale, as llama.cpp gives it.
void QuantizeIq4NlRowWeighted(const float* x, int64_t n, const float* importance, uint8_t* dst);

// n / 32 blocks at src (any alignment) to n floats, bit-identical to ggml's
// dequantize_row_iq4_nl. n not a multiple of 32 is an awq::Error.
void DequantizeIq4NlRow(const uint8_t* src, float* y, int64_t n);

}  // namespace awq
