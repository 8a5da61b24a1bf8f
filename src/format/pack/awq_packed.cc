// Packing and unpacking of our bit-stream layout for 2..8-bit linears (drawn in awq_packed.h
// and docs/LAYOUTS.md).
#include "format/pack/awq_packed.h"

#include <string>
#include <vector>

#include "awq/awq_checkpoint.h"
#include "awq/error.h"
#include "awq/thread_pool.h"
#include "format/pack/layout_util.h"

namespace awq {

namespace {

// codes[r * stride_row + o * stride_o] -> words [rows, W], one bit stream per row.
void PackRows(const uint8_t* codes, int64_t rows, int64_t out, int bits, int64_t stride_row,
              int64_t stride_o, int32_t* words) {
  const int64_t w = pack::PackedWords(out, bits);
  ThreadPool::Global().ParallelFor(rows, [&](int64_t begin, int64_t end, int) {
    for (int64_t r = begin; r < end; ++r) {
      // Tensor storage is at least 4-byte aligned, so the int32 words can be addressed as uint32.
      uint32_t* row = reinterpret_cast<uint32_t*>(words + r * w);
      for (int64_t k = 0; k < w; ++k) row[k] = 0;
      for (int64_t o = 0; o < out; ++o) {
        pack::PutCode(row, o, bits, codes[r * stride_row + o * stride_o]);
      }
    }
  });
}

void UnpackRows(const int32_t* words, int64_t rows, int64_t out, int bits, int64_t stride_row,
                int64_t stride_o, uint8_t* codes) {
  const int64_t w = pack::PackedWords(out, bits);
  ThreadPool::Global().ParallelFor(rows, [&](int64_t begin, int64_t end, int) {
    for (int64_t r = begin; r < end; ++r) {
      const uint32_t* row = reinterpret_cast<const uint32_t*>(words + r * w);
      for (int64_t o = 0; o < out; ++o) {
        codes[r * stride_row + o * stride_o] = static_cast<uint8_t>(pack::GetCode(row, o, bits));
      }
    }
  });
}

void CheckPackedBits(int bits, const std::string& where) {
  if (bits < 2 || bits > 8) {
    throw Error(where + ": bits = " + std::to_string(bits) + " is not supported (2..8)");
  }
}

}  // namespace

AwqPackedTensors PackAwqPacked(const QuantizedLinear& q) {
  CheckPackedBits(q.params.bits, "packed layout");
  const int64_t ng = q.n_groups();
  AWQ_CHECK(q.q.size() == static_cast<size_t>(q.out * q.in));
  const int64_t w = pack::PackedWords(q.out, q.params.bits);
  AwqPackedTensors t;
  t.qweight = Tensor(DType::kI32, {q.in, w});
  PackRows(q.q.data(), q.in, q.out, q.params.bits, 1, q.in, t.qweight.data<int32_t>());
  t.qzeros = Tensor(DType::kI32, {ng, w});
  const std::vector<uint8_t> zeros = pack::StoredZeros(q);
  PackRows(zeros.data(), ng, q.out, q.params.bits, 1, ng, t.qzeros.data<int32_t>());
  t.scales = pack::TransposedScalesF16(q);
  return t;
}

QuantizedLinear UnpackAwqPacked(const Tensor& qweight, const Tensor& qzeros, const Tensor& scales,
                                int bits, int64_t group_size, const std::string& name_for_errors,
                                bool zero_point) {
  const std::string& m = name_for_errors;
  CheckPackedBits(bits, m);
  pack::Require2D(qweight, DType::kI32, m, "qweight");
  pack::Require2D(qzeros, DType::kI32, m, "qzeros");
  const Tensor s = pack::ScalesToF32(scales, m);
  const int64_t in = qweight.dim(0);
  const int64_t out = s.dim(1);
  if (out <= 0) throw Error(m + ".scales: output width " + std::to_string(out) + " is empty");
  const int64_t w = pack::PackedWords(out, bits);
  pack::RequireShape(qweight, {in, w}, m, "qweight");
  const int64_t ng = pack::CheckGroups(in, group_size, s.dim(0), m);
  pack::RequireShape(qzeros, {ng, w}, m, "qzeros");

  QuantizedLinear q;
  q.out = out;
  q.in = in;
  q.params = {bits, group_size, zero_point};
  q.q.resize(static_cast<size_t>(out * in));
  q.zeros.resize(static_cast<size_t>(out * ng));
  UnpackRows(qweight.data<int32_t>(), in, out, bits, 1, in, q.q.data());
  UnpackRows(qzeros.data<int32_t>(), ng, out, bits, 1, ng, q.zeros.data());
  pack::FinishUnpack(s, &q, m);
  return q;
}

}  // namespace awq
