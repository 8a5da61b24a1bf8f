// PackInt4 / UnpackInt4: QuantizedLinear (4-bit) <-> the Int4Matrix CPU layout.
#include "kernels/cpu/int4_layout.h"

#include <cstring>
#include <string>

#include "awq/error.h"
#include "awq/half.h"

namespace awq {

Int4GroupHeader Int4Matrix::Header(int64_t b, int64_t g) const {
  Int4GroupHeader h;
  std::memcpy(&h, group(b, g), sizeof(h));
  return h;
}

Int4Matrix PackInt4(const QuantizedLinear& q) {
  if (q.params.bits != 4) {
    throw Error("int4 layout: bits " + std::to_string(q.params.bits) + " is not 4");
  }
  const int64_t gs = GroupSize(q.params, q.in);
  if (gs % kInt4Inputs != 0) {
    throw Error("int4 layout: group width " + std::to_string(gs) + " is not a multiple of 8");
  }
  AWQ_CHECK(q.out > 0);
  AWQ_CHECK(q.q.size() == static_cast<size_t>(q.out * q.in));
  Int4Matrix w;
  w.out = q.out;
  w.in = q.in;
  w.group_size = gs;
  w.params = q.params;
  const int64_t ng = w.n_groups();
  AWQ_CHECK(q.scales.size() == static_cast<size_t>(q.out * ng));
  w.slots.assign(static_cast<size_t>(w.row_blocks() * w.slots_per_block()), Int4Codes{});
  for (int64_t b = 0; b < w.row_blocks(); ++b) {
    for (int64_t g = 0; g < ng; ++g) {
      Int4Codes* slot = w.slots.data() + b * w.slots_per_block() + g * w.slots_per_group();
      Int4GroupHeader h{};  // padding rows: scale 0, zero 0, codes 0 -> weight 0
      for (int r = 0; r < kInt4Rows; ++r) {
        const int64_t row = b * kInt4Rows + r;
        if (row >= q.out) break;
        h.scale[r] = Fp32ToFp16(q.scales[row * ng + g]);
        h.zero[r] = Fp32ToFp16(static_cast<float>(q.zero(row, g)));
        AWQ_CHECK(Fp16ToFp32(h.scale[r]) == q.scales[row * ng + g]);  // scales are fp16-exact
        const uint8_t* codes = q.q.data() + row * q.in + g * gs;
        for (int64_t c = 0; c < gs / kInt4Inputs; ++c) {
          uint32_t word = 0;
          for (int j = 0; j < kInt4Inputs; ++j) {
            const uint32_t code = codes[c * kInt4Inputs + j];
            AWQ_CHECK(code < 16);
            word |= code << (4 * j);
          }
          slot[1 + c].row[r] = word;
        }
      }
      std::memcpy(slot, &h, sizeof(h));
    }
  }
  return w;
}

QuantizedLinear UnpackInt4(const Int4Matrix& w) {
  QuantizedLinear q;
  q.out = w.out;
  q.in = w.in;
  q.params = w.params;
  const int64_t ng = w.n_groups();
  q.q.resize(static_cast<size_t>(w.out * w.in));
  q.scales.resize(static_cast<size_t>(w.out * ng));
  if (w.params.zero_point) q.zeros.resize(q.scales.size());
  for (int64_t row = 0; row < w.out; ++row) {
    const int64_t b = row / kInt4Rows;
    const int r = static_cast<int>(row % kInt4Rows);
    for (int64_t g = 0; g < ng; ++g) {
      const Int4GroupHeader h = w.Header(b, g);
      q.scales[row * ng + g] = Fp16ToFp32(h.scale[r]);
      if (w.params.zero_point) q.zeros[row * ng + g] = static_cast<uint8_t>(Fp16ToFp32(h.zero[r]));
    }
    for (int64_t k = 0; k < w.in; ++k)
      q.q[row * w.in + k] = static_cast<uint8_t>(Int4Code(w, b, r, k));
  }
  return q;
}

}  // namespace awq
