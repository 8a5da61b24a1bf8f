// Packing and unpacking of AutoAWQ's GEMM layout (drawn in awq_gemm.h and docs/LAYOUTS.md).
#include "format/pack/awq_gemm.h"

#include <cstring>
#include <string>

#include "awq/awq_checkpoint.h"
#include "awq/error.h"
#include "awq/thread_pool.h"
#include "format/pack/layout_util.h"

namespace awq {

namespace {

// Packs rows of `out` codes (row-major [rows, out], logical order) into int32 words [rows, out/8].
// The codes are the quantizer's [out, in] transposed, so `stride_o` walks along output columns.
// Word columns are split over the thread pool; within one, the 8 source rows are read
// sequentially.
void PackRows(const uint8_t* codes, int64_t rows, int64_t out, int64_t stride_row, int64_t stride_o,
              int32_t* words) {
  ThreadPool::Global().ParallelFor(out / 8, [&](int64_t begin, int64_t end, int) {
    uint8_t col[8];
    for (int64_t c = begin; c < end; ++c) {
      for (int64_t r = 0; r < rows; ++r) {
        for (int j = 0; j < 8; ++j) col[j] = codes[r * stride_row + (8 * c + j) * stride_o];
        const uint32_t w = pack::PackGemmWord(col);
        std::memcpy(&words[r * (out / 8) + c], &w, 4);
      }
    }
  });
}

// The inverse of PackRows: words [rows, out/8] -> codes[r * stride_row + o * stride_o].
void UnpackRows(const int32_t* words, int64_t rows, int64_t out, int64_t stride_row,
                int64_t stride_o, uint8_t* codes) {
  ThreadPool::Global().ParallelFor(out / 8, [&](int64_t begin, int64_t end, int) {
    uint8_t col[8];
    for (int64_t c = begin; c < end; ++c) {
      for (int64_t r = 0; r < rows; ++r) {
        pack::UnpackGemmWord(static_cast<uint32_t>(words[r * (out / 8) + c]), col);
        for (int j = 0; j < 8; ++j) codes[r * stride_row + (8 * c + j) * stride_o] = col[j];
      }
    }
  });
}

}  // namespace

AwqGemmTensors PackAwqGemm(const QuantizedLinear& q) {
  if (q.params.bits != 4) {
    throw Error("GEMM layout: stores 4-bit codes only, got bits = " +
                std::to_string(q.params.bits) + " (use version 'awqcpp_packed')");
  }
  if (q.out % 8 != 0) {
    throw Error("GEMM layout: output width " + std::to_string(q.out) +
                " is not a multiple of 8 (8 output columns share one int32)");
  }
  const int64_t ng = q.n_groups();
  AWQ_CHECK(q.q.size() == static_cast<size_t>(q.out * q.in));
  AwqGemmTensors t;
  t.qweight = Tensor(DType::kI32, {q.in, q.out / 8});
  // Code of (output o, input i) is q.q[o * in + i]: rows are input positions (stride 1), output
  // columns stride `in`.
  PackRows(q.q.data(), q.in, q.out, 1, q.in, t.qweight.data<int32_t>());
  t.qzeros = Tensor(DType::kI32, {ng, q.out / 8});
  const std::vector<uint8_t> zeros = pack::StoredZeros(q);
  PackRows(zeros.data(), ng, q.out, 1, ng, t.qzeros.data<int32_t>());
  t.scales = pack::TransposedScalesF16(q);
  return t;
}

QuantizedLinear UnpackAwqGemm(const Tensor& qweight, const Tensor& qzeros, const Tensor& scales,
                              int bits, int64_t group_size, const std::string& name_for_errors,
                              bool zero_point) {
  const std::string& m = name_for_errors;
  pack::RequireInt4Words(qweight, qzeros, bits, "GEMM", m);
  const Tensor s = pack::ScalesToF32(scales, m);
  const int64_t in = qweight.dim(0);
  const int64_t out = s.dim(1);
  if (out % 8 != 0 || out == 0) {
    throw Error(m + ".scales: output width " + std::to_string(out) +
                " is not a positive multiple of 8");
  }
  pack::RequireShape(qweight, {in, out / 8}, m, "qweight");
  const int64_t ng = pack::CheckGroups(in, group_size, s.dim(0), m);
  pack::RequireShape(qzeros, {ng, out / 8}, m, "qzeros");

  QuantizedLinear q;
  q.out = out;
  q.in = in;
  q.params = {bits, group_size, zero_point};
  q.q.resize(static_cast<size_t>(out * in));
  q.zeros.resize(static_cast<size_t>(out * ng));
  UnpackRows(qweight.data<int32_t>(), in, out, 1, in, q.q.data());
  UnpackRows(qzeros.data<int32_t>(), ng, out, 1, ng, q.zeros.data());
  pack::FinishUnpack(s, &q, m);
  return q;
}

}  // namespace awq
