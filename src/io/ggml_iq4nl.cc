// IQ4_NL quantization and dequantization, byte-identical to llama.cpp (ggml-quants.c:
// quantize_iq4_nl / quantize_row_iq4_nl_impl with ntry = 7, dequantize_row_iq4_nl).
//
// Byte identity is the contract, so the code makes the same float operations in the same order
// as ggml (w * q * x is (w * q) * x; the levels are converted from int8 to float where ggml's C
// converts them) and chooses a scale and indices under the same ties. docs/GGUF.md ("IQ4_NL")
// says how it is checked: tests/iq4nl_test.cc against a file written by ggml itself.
#include "io/ggml_iq4nl.h"

#include <cmath>
#include <cstring>
#include <string>

#include "awq/error.h"
#include "awq/half.h"

// ggml-base, which holds llama.cpp's quantizers, is compiled for the baseline ISA, so x86-64
// llama.cpp never fuses a multiply-add there; a fused sum would move the last bit of the
// least-squares sums and with it the chosen scale. Same reasoning as in ggml_quantize.cc.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace awq {
namespace {

// A block whose largest magnitude is below this is stored as all zeros (ggml's GROUP_MAX_EPS).
constexpr float kGroupMaxEps = 1e-15f;

// quantize_iq4_nl tries the 2 * 7 + 1 candidate scales (-127 + t) / max, t = -7 ... 7, besides
// the least-squares refit of max / 127.
constexpr int kScaleTries = 7;

// Index of the level nearest to x, in units of the scale (ggml's best_index_int8). Binary search
// over the sorted table; an exact midpoint goes to the upper level, as in ggml, and nan, for which
// every comparison is false, ends on the top level.
int NearestLevel(float x) {
  const int8_t* v = kIq4NlValues;
  if (x <= static_cast<float>(v[0])) return 0;
  if (x >= static_cast<float>(v[15])) return 15;
  int lo = 0, hi = 15;
  while (hi - lo > 1) {
    const int mid = (lo + hi) / 2;
    if (x < static_cast<float>(v[mid])) {
      hi = mid;
    } else {
      lo = mid;
    }
  }
  return x - static_cast<float>(v[hi - 1]) < static_cast<float>(v[hi]) - x ? hi - 1 : hi;
}

// Weighted least-squares sums of the fit x ~ d * level(inv_scale * x): sum w q x and sum w q^2,
// whose ratio is the best d for those levels and whose sumqx^2 / sumq2 is the error reduction.
void FitSums(const float* x, const float* weight, float inv_scale, float* sumqx, float* sumq2) {
  float sqx = 0, sq2 = 0;
  for (int j = 0; j < kIq4NlBlockElems; ++j) {
    const float q = static_cast<float>(kIq4NlValues[NearestLevel(inv_scale * x[j])]);
    const float w = weight[j];
    sqx += w * q * x[j];
    sq2 += w * q * q;
  }
  *sumqx = sqx;
  *sumq2 = sq2;
}

// The block's scale: the weighted least-squares refit of the plain scale max / 127, replaced by
// the refit of any of the 15 candidates (-127 + t) / max that explains more of the weighted
// energy. The candidates have the opposite sign, mapping the largest value onto -127, the one
// level without a mirror image. `max` is the block's value of largest magnitude (non-zero).
float SearchScale(const float* x, const float* weight, float max) {
  float d = -max / static_cast<float>(kIq4NlValues[0]);
  float sumqx, sumq2;
  FitSums(x, weight, 1 / d, &sumqx, &sumq2);
  // 0 / 0 = nan when every weight is zero (an importance block of zeros); ggml keeps it.
  d = sumqx / sumq2;
  float best = d * sumqx;
  for (int t = -kScaleTries; t <= kScaleTries; ++t) {
    const float inv_scale = static_cast<float>(t + kIq4NlValues[0]) / max;
    FitSums(x, weight, inv_scale, &sumqx, &sumq2);
    if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
      d = sumqx / sumq2;
      best = d * sumqx;
    }
  }
  return d;
}

// One block of 32 values. qw: the block's 32 importance weights, or null for ggml's plain path,
// which weights each value by x^2.
void QuantizeBlock(const float* x, const float* qw, BlockIq4Nl* out) {
  float weight[kIq4NlBlockElems];
  if (qw != nullptr) {
    // Twice the block's mean square: a floor so that small values keep some weight.
    float sigma2 = 0;
    for (int j = 0; j < kIq4NlBlockElems; ++j) sigma2 += x[j] * x[j];
    sigma2 *= 2.f / kIq4NlBlockElems;
    for (int j = 0; j < kIq4NlBlockElems; ++j) weight[j] = qw[j] * std::sqrt(sigma2 + x[j] * x[j]);
  } else {
    for (int j = 0; j < kIq4NlBlockElems; ++j) weight[j] = x[j] * x[j];
  }
  // The first value of largest magnitude, with its sign.
  float amax = 0, max = 0;
  for (int j = 0; j < kIq4NlBlockElems; ++j) {
    const float ax = std::fabs(x[j]);
    if (ax > amax) {
      amax = ax;
      max = x[j];
    }
  }
  const float d = amax < kGroupMaxEps ? 0.f : SearchScale(x, weight, max);

  // The indices are taken against the fp32 scale, not the fp16 one stored. A zero scale maps
  // every value to 0, whose nearest level is 1 (index 8), as in ggml.
  out->d = Fp32ToFp16(d);
  const float inv_scale = d != 0 ? 1 / d : 0.f;
  uint8_t idx[kIq4NlBlockElems];
  for (int j = 0; j < kIq4NlBlockElems; ++j) {
    idx[j] = static_cast<uint8_t>(NearestLevel(inv_scale * x[j]));
  }
  for (int j = 0; j < kIq4NlBlockElems / 2; ++j) {
    out->qs[j] = static_cast<uint8_t>(idx[j] | idx[j + kIq4NlBlockElems / 2] << 4);
  }
}

void CheckRowLength(const char* fn, int64_t n) {
  if (n < 0 || n % kIq4NlBlockElems != 0) {
    throw Error(std::string(fn) + ": IQ4_NL rows hold whole blocks of " +
                std::to_string(kIq4NlBlockElems) + " values, got n = " + std::to_string(n));
  }
}

void QuantizeRow(const char* fn, const float* x, int64_t n, const float* importance, uint8_t* dst) {
  CheckRowLength(fn, n);
  for (int64_t b = 0; b < n / kIq4NlBlockElems; ++b) {
    const int64_t off = b * kIq4NlBlockElems;
    BlockIq4Nl block;
    QuantizeBlock(x + off, importance != nullptr ? importance + off : nullptr, &block);
    std::memcpy(dst + b * kIq4NlBlockBytes, &block, kIq4NlBlockBytes);
  }
}

}  // namespace

void QuantizeIq4NlRow(const float* x, int64_t n, uint8_t* dst) {
  QuantizeRow("QuantizeIq4NlRow", x, n, nullptr, dst);
}

void QuantizeIq4NlRowWeighted(const float* x, int64_t n, const float* importance, uint8_t* dst) {
  QuantizeRow("QuantizeIq4NlRowWeighted", x, n, importance, dst);
}

void DequantizeIq4NlRow(const uint8_t* src, float* y, int64_t n) {
  CheckRowLength("DequantizeIq4NlRow", n);
  for (int64_t b = 0; b < n / kIq4NlBlockElems; ++b) {
    BlockIq4Nl block;
    std::memcpy(&block, src + b * kIq4NlBlockBytes, kIq4NlBlockBytes);
    const float d = Fp16ToFp32(block.d);
    float* out = y + b * kIq4NlBlockElems;
    for (int j = 0; j < kIq4NlBlockElems / 2; ++j) {
      out[j] = d * static_cast<float>(kIq4NlValues[block.qs[j] & 0xf]);
      out[j + kIq4NlBlockElems / 2] = d * static_cast<float>(kIq4NlValues[block.qs[j] >> 4]);
    }
  }
}

}  // namespace awq
