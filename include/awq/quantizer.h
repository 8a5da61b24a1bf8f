// The group-wise integer quantizer of AWQ (round-to-nearest per group; AWQ.md section 4), its
// inverse, and the fused fake-quantization the scale and clip searches call in their loops.
#pragma once

#include <cstdint>
#include <vector>

#include "awq/quant_config.h"

namespace awq {

// Threads: QuantizeLinear, DequantizeLinear and FakeQuantize split matrices of 65536 weights or
// more over ThreadPool::Global(), so call them from outside that pool's tasks (the pool cannot
// be entered from one of its workers); smaller ones run on the calling thread.

// One quantized linear in logical (unpacked) form; the on-disk layouts are in awq_checkpoint.h.
//
// Codes are always unsigned, in [0, 2^bits):
//  - zero_point on: q = clamp(rint(w / s) + z, 0, 2^bits - 1), w_hat = (q - z) * s, with one
//    integer zero z in [0, 2^bits) per group.
//  - zero_point off (symmetric): the signed code c = clamp(rint(w / s), -2^(bits-1),
//    2^(bits-1) - 1) is stored as q = c + 2^(bits-1), so w_hat = (q - 2^(bits-1)) * s. `zeros`
//    is empty and the implicit zero is 2^(bits-1) (ImplicitZero()); this is also what the
//    checkpoint writes as qzeros, so readers that compute (q - z) * s need no special case.
struct QuantizedLinear {
  int64_t out = 0;
  int64_t in = 0;
  QuantParams params;
  std::vector<uint8_t> q;      // [out, in] codes
  std::vector<float> scales;   // [out, n_groups], every value exactly representable in fp16
  std::vector<uint8_t> zeros;  // [out, n_groups] (zero_point on), empty otherwise

  int64_t n_groups() const;
  // 2^(bits-1): the zero every group uses when params.zero_point is off.
  int ImplicitZero() const { return 1 << (params.bits - 1); }
  // The zero of (row, group), explicit or implicit.
  int zero(int64_t row, int64_t group) const {
    return params.zero_point ? zeros[row * n_groups() + group] : ImplicitZero();
  }
};

// The group width for an input width: `in` when p.group_size is -1. Throws awq::Error when the
// group size does not divide `in` ("group size 128 does not divide input width 576") or is not
// positive.
int64_t GroupSize(const QuantParams& p, int64_t in);

// Quantizes w [out, in] (row-major fp32) group by group along the input dimension, exactly as
// AWQ.md section 4 with one deliberate change: each scale is rounded to fp16 before the zero and
// the codes are computed from it, so a checkpoint (which stores fp16 scales) reproduces exactly
// the weights the search evaluated. Rounding is round-half-to-even (torch.round). Throws
// awq::Error for bits outside 2..8, a bad group size, or a non-finite weight (naming its row and
// column).
QuantizedLinear QuantizeLinear(const float* w, int64_t out, int64_t in, const QuantParams& p);

// The grid of one group exactly as QuantizeLinear fits it, for quantizers that fit groups one at
// a time while they change the weights (GPTQ): a weight w maps to the offset
// o = clamp(rint(w / scale), lo, hi), its code is o + zero and its dequantized value o * scale.
struct GroupGrid {
  float scale = 0;  // fp16-representable
  int zero = 0;     // the stored zero: explicit (zero point on) or 2^(bits-1) (off)
  float lo = 0;     // smallest offset: -zero, or -2^(bits-1) when symmetric
  float hi = 0;     // largest offset: 2^bits - 1 - zero, or 2^(bits-1) - 1 when symmetric
};
// Fits the grid of w[0, n) with p.bits and p.zero_point (p.group_size is not used). Throws
// awq::Error for bad bits or a non-finite weight in the group.
GroupGrid FitGroupGrid(const float* w, int64_t n, const QuantParams& p);
// o = clamp(rint(w / g.scale), g.lo, g.hi) as an exact small integer in a float, the same
// arithmetic QuantizeLinear encodes with.
float GridOffset(float w, const GroupGrid& g);

// w [out, in] = (q - z) * s, in fp32.
void DequantizeLinear(const QuantizedLinear& q, float* w);

// w <- DequantizeLinear(QuantizeLinear(w)) in place, bit-identical for finite inputs, without
// materialising codes; rows are split over ThreadPool::Global(). A group holding a NaN or an
// infinity becomes all NaN (so a search candidate that overflowed has a NaN loss and loses)
// instead of throwing. Throws awq::Error for bad bits or group size.
void FakeQuantize(float* w, int64_t out, int64_t in, const QuantParams& p);

}  // namespace awq
