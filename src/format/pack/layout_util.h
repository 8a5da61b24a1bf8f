// Checks and conversions shared by the on-disk layouts of quantized linears (pack/*.cc).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "awq/error.h"
#include "awq/half.h"
#include "awq/quantizer.h"
#include "awq/tensor.h"

namespace awq::pack {

// Throws awq::Error unless `t` is a 2-D tensor of `dtype`.
inline void Require2D(const Tensor& t, DType dtype, const std::string& module,
                      const char* tensor_name) {
  if (t.empty() || t.ndim() != 2 || t.dtype() != dtype) {
    throw Error(module + "." + tensor_name + ": expected a 2-D " + DTypeName(dtype) +
                " tensor, got " + (t.empty() ? std::string("none") : DTypeName(t.dtype())) + " " +
                ShapeToString(t.shape()));
  }
}

// The common preamble of the 4-bit layouts' readers: bits must be 4 and qweight / qzeros 2-D
// I32 tensors. `layout` names the layout in the message ("GEMM", "GEMV").
inline void RequireInt4Words(const Tensor& qweight, const Tensor& qzeros, int bits,
                             const char* layout, const std::string& module) {
  if (bits != 4) {
    throw Error(module + ": the " + layout + " layout holds 4-bit codes only, the config says " +
                "bits = " + std::to_string(bits));
  }
  Require2D(qweight, DType::kI32, module, "qweight");
  Require2D(qzeros, DType::kI32, module, "qzeros");
}

inline void RequireShape(const Tensor& t, const Shape& want, const std::string& module,
                         const char* tensor_name) {
  if (t.shape() != want) {
    throw Error(module + "." + tensor_name + ": shape " + ShapeToString(t.shape()) + ", expected " +
                ShapeToString(want));
  }
}

// The [in/g, out] scales tensor of either layout, as fp32 [in/g, out]. Accepts F16 (what we and
// AutoAWQ write), BF16 and F32 (a checkpoint saved in another dtype).
inline Tensor ScalesToF32(const Tensor& scales, const std::string& module) {
  if (scales.empty() || scales.ndim() != 2 ||
      (scales.dtype() != DType::kF16 && scales.dtype() != DType::kBF16 &&
       scales.dtype() != DType::kF32)) {
    throw Error(module + ".scales: expected a 2-D F16, BF16 or F32 tensor, got " +
                (scales.empty() ? std::string("none") : DTypeName(scales.dtype())) + " " +
                ShapeToString(scales.shape()));
  }
  return scales.ToF32();
}

// The number of groups along `in` that `group_size` implies (-1: one), checking that the
// stored scales have that many rows.
inline int64_t CheckGroups(int64_t in, int64_t group_size, int64_t scale_rows,
                           const std::string& module) {
  if (in <= 0) throw Error(module + ".qweight: input width " + std::to_string(in) + " is empty");
  if (group_size != -1 && (group_size <= 0 || in % group_size != 0)) {
    throw Error(module + ": group size " + std::to_string(group_size) +
                " does not divide input width " + std::to_string(in));
  }
  const int64_t ng = group_size == -1 ? 1 : in / group_size;
  if (scale_rows != ng) {
    throw Error(module + ".scales: " + std::to_string(scale_rows) + " groups, but input width " +
                std::to_string(in) + " with group size " + std::to_string(group_size) + " has " +
                std::to_string(ng));
  }
  return ng;
}

// Scales [out, ng] of the quantizer -> F16 [ng, out] (both layouts store them transposed).
inline Tensor TransposedScalesF16(const QuantizedLinear& q) {
  const int64_t ng = q.n_groups();
  Tensor t(DType::kF16, {ng, q.out});
  uint16_t* d = t.data<uint16_t>();
  for (int64_t o = 0; o < q.out; ++o) {
    for (int64_t g = 0; g < ng; ++g) d[g * q.out + o] = Fp32ToFp16(q.scales[o * ng + g]);
  }
  return t;
}

// The zero points to store, [out, ng]: the quantizer's, or with zero points off the implicit
// 2^(bits-1) everywhere (both layouts store qzeros either way, as AutoAWQ does).
inline std::vector<uint8_t> StoredZeros(const QuantizedLinear& q) {
  if (q.params.zero_point) return q.zeros;
  return std::vector<uint8_t>(static_cast<size_t>(q.out * q.n_groups()), q.ImplicitZero());
}

// Fills q->scales [out, ng] from fp32 scales [ng, out], and with zero points off checks that
// every stored zero is the implicit 2^(bits-1) and drops them.
inline void FinishUnpack(const Tensor& scales_f32, QuantizedLinear* q, const std::string& module) {
  const int64_t ng = scales_f32.dim(0);
  const float* s = scales_f32.data<float>();
  q->scales.resize(static_cast<size_t>(q->out * ng));
  for (int64_t g = 0; g < ng; ++g) {
    for (int64_t o = 0; o < q->out; ++o) q->scales[o * ng + g] = s[g * q->out + o];
  }
  if (!q->params.zero_point) {
    const int implicit = 1 << (q->params.bits - 1);
    for (size_t i = 0; i < q->zeros.size(); ++i) {
      if (q->zeros[i] != implicit) {
        throw Error(module + ".qzeros: zero_point is off but output row " + std::to_string(i / ng) +
                    ", group " + std::to_string(i % ng) + " stores " + std::to_string(q->zeros[i]) +
                    " instead of " + std::to_string(implicit));
      }
    }
    q->zeros.clear();
  }
}

}  // namespace awq::pack
