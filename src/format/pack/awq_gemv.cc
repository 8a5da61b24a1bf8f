// AutoAWQ's GEMV layout for 4-bit linears (WQLinear_GEMV), rows = output channels:
//
//   qweight [out, in/8] int32: word (o, c) holds input 8c + n of row o in nibble n (bits 4n..4n+3),
//                              in order, no interleave
//   qzeros  [out, W] int32:    the zero of group 8w + n in nibble n of word (o, w); W = ZerosWidth
//   scales  [out, 8W] fp16:    the scale of group g in column g; columns past the last group 0
//
// W is ceil(groups / 8), rounded up to a multiple of 2 for group size 64 and of 4 for 32 (the
// CUDA kernel reads zeros in wider chunks); padding words and scales are zero.
#include <cstring>
#include <string>

#include "awq/awq_checkpoint.h"
#include "awq/error.h"
#include "format/pack/layout_util.h"

namespace awq {

namespace {
uint32_t PackSequential(const uint8_t* codes, int n) {
  uint32_t w = 0;
  for (int j = 0; j < n; ++j) w |= static_cast<uint32_t>(codes[j] & 0xF) << (4 * j);
  return w;
}
}  // namespace

int64_t AwqGemvZerosWidth(int64_t in, int64_t group_size) {
  const int64_t g = group_size == -1 ? in : group_size;
  const int64_t multiple = g >= 128 ? 1 : (g == 64 ? 2 : (g == 32 ? 4 : 1));
  const int64_t base = (in / g + 7) / 8;
  return (base + multiple - 1) / multiple * multiple;
}

AwqGemvTensors PackAwqGemv(const QuantizedLinear& q) {
  if (q.params.bits != 4) {
    throw Error("GEMV layout: stores 4-bit codes only, got bits = " +
                std::to_string(q.params.bits) + " (use version 'awqcpp_packed')");
  }
  if (q.in % 8 != 0) {
    throw Error("GEMV layout: input width " + std::to_string(q.in) +
                " is not a multiple of 8 (8 inputs share one int32)");
  }
  const int64_t ng = q.n_groups(), gs = GroupSize(q.params, q.in);
  const int64_t width = AwqGemvZerosWidth(q.in, gs);
  AwqGemvTensors t;
  t.qweight = Tensor(DType::kI32, {q.out, q.in / 8});
  int32_t* qw = t.qweight.data<int32_t>();
  for (int64_t o = 0; o < q.out; ++o) {
    for (int64_t c = 0; c < q.in / 8; ++c) {
      const uint32_t w = PackSequential(q.q.data() + o * q.in + 8 * c, 8);
      std::memcpy(qw + o * (q.in / 8) + c, &w, 4);
    }
  }
  const std::vector<uint8_t> zeros = pack::StoredZeros(q);  // [out, ng]
  t.qzeros = Tensor(DType::kI32, {q.out, width});           // zero-initialised: padding
  t.scales = Tensor(DType::kF16, {q.out, 8 * width});
  int32_t* qz = t.qzeros.data<int32_t>();
  uint16_t* sc = t.scales.data<uint16_t>();
  for (int64_t o = 0; o < q.out; ++o) {
    for (int64_t w = 0; w * 8 < ng; ++w) {
      const int n = static_cast<int>(std::min<int64_t>(8, ng - 8 * w));
      const uint32_t word = PackSequential(zeros.data() + o * ng + 8 * w, n);
      std::memcpy(qz + o * width + w, &word, 4);
    }
    for (int64_t g = 0; g < ng; ++g) sc[o * 8 * width + g] = Fp32ToFp16(q.scales[o * ng + g]);
  }
  return t;
}

QuantizedLinear UnpackAwqGemv(const Tensor& qweight, const Tensor& qzeros, const Tensor& scales,
                              int bits, int64_t group_size, const std::string& name_for_errors,
                              bool zero_point) {
  const std::string& m = name_for_errors;
  pack::RequireInt4Words(qweight, qzeros, bits, "GEMV", m);
  const Tensor s = pack::ScalesToF32(scales, m);  // [out, >= ng]
  const int64_t out = qweight.dim(0), in = qweight.dim(1) * 8;
  if (out == 0 || in == 0)
    throw Error(m + ".qweight: empty shape " + ShapeToString(qweight.shape()));
  if (group_size != -1 && (group_size <= 0 || in % group_size != 0)) {
    throw Error(m + ": group size " + std::to_string(group_size) + " does not divide input width " +
                std::to_string(in));
  }
  const int64_t ng = group_size == -1 ? 1 : in / group_size;
  // Readers differ in padding; anything wide enough is accepted.
  if (qzeros.dim(0) != out || qzeros.dim(1) * 8 < ng) {
    throw Error(m + ".qzeros: shape " + ShapeToString(qzeros.shape()) + ", expected [" +
                std::to_string(out) + ", >= " + std::to_string((ng + 7) / 8) + "]");
  }
  if (s.dim(0) != out || s.dim(1) < ng) {
    throw Error(m + ".scales: shape " + ShapeToString(scales.shape()) + ", expected [" +
                std::to_string(out) + ", >= " + std::to_string(ng) + "]");
  }
  QuantizedLinear q;
  q.out = out;
  q.in = in;
  q.params = {bits, group_size, zero_point};
  q.q.resize(static_cast<size_t>(out * in));
  q.zeros.resize(static_cast<size_t>(out * ng));
  const int32_t* qw = qweight.data<int32_t>();
  const int32_t* qz = qzeros.data<int32_t>();
  for (int64_t o = 0; o < out; ++o) {
    for (int64_t c = 0; c < in / 8; ++c) {
      const uint32_t w = static_cast<uint32_t>(qw[o * (in / 8) + c]);
      for (int j = 0; j < 8; ++j)
        q.q[o * in + 8 * c + j] = static_cast<uint8_t>((w >> (4 * j)) & 0xF);
    }
    for (int64_t g = 0; g < ng; ++g) {
      const uint32_t w = static_cast<uint32_t>(qz[o * qzeros.dim(1) + g / 8]);
      q.zeros[o * ng + g] = static_cast<uint8_t>((w >> (4 * (g % 8))) & 0xF);
    }
  }
  // FinishUnpack takes the GEMM orientation [ng, out].
  Tensor st(DType::kF32, {ng, out});
  const float* sp = s.data<float>();
  for (int64_t o = 0; o < out; ++o) {
    for (int64_t g = 0; g < ng; ++g) st.data<float>()[g * out + o] = sp[o * s.dim(1) + g];
  }
  pack::FinishUnpack(st, &q, m);
  return q;
}

}  // namespace awq
