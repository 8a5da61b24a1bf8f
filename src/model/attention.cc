// Blocked causal attention: per (head, row block) one sgemm for scores, softmax, one for output.
#include "model/attention.h"

#include <cmath>
#include <vector>

#include "awq/thread_pool.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/sgemm.h"

namespace awq {

namespace {
// Query rows per task: large enough for sgemm efficiency, small enough that the causal skip
// saves most of the masked half and the tasks balance across threads.
constexpr int64_t kRowBlock = 64;
}  // namespace

void CausalAttention(const float* q, int64_t ldq, const float* keys, const float* values,
                     int64_t ldkv, float* out, int64_t ldo, int64_t n_rows, int64_t pos0,
                     const AttentionShape& shape, ThreadPool& pool) {
  const int64_t hd = shape.head_dim;
  const int64_t group = shape.n_heads / shape.n_kv_heads;
  const int64_t n_blocks = (n_rows + kRowBlock - 1) / kRowBlock;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const int64_t max_keys = pos0 + n_rows;
  // One score buffer per thread, reused across its tasks.
  std::vector<std::vector<float>> scratch(static_cast<size_t>(pool.size()));
  pool.ParallelFor(shape.n_heads * n_blocks, [&](int64_t begin, int64_t end, int thread) {
    std::vector<float>& s = scratch[static_cast<size_t>(thread)];
    s.resize(static_cast<size_t>(kRowBlock * max_keys));
    for (int64_t task = begin; task < end; ++task) {
      const int64_t h = task / n_blocks, b = task % n_blocks;
      const int64_t kvh = h / group;
      const int64_t r0 = b * kRowBlock, r1 = std::min(n_rows, r0 + kRowBlock);
      const int64_t rows = r1 - r0;
      const int64_t n_keys = pos0 + r1;  // the last row of the block sees this many keys
      // scores[rows, n_keys] = scale * Q_h[r0:r1] K_kvh[0:n_keys]^T
      SgemmSerial(false, true, rows, n_keys, hd, scale, q + r0 * ldq + h * hd, ldq, keys + kvh * hd,
                  ldkv, 0.0f, s.data(), n_keys);
      for (int64_t i = 0; i < rows; ++i) {
        float* row = s.data() + i * n_keys;
        const int64_t visible = pos0 + r0 + i + 1;
        SoftmaxRow(row, visible);
        for (int64_t j = visible; j < n_keys; ++j) row[j] = 0.0f;
      }
      // out[r0:r1, h] = scores V_kvh[0:n_keys]
      SgemmSerial(false, false, rows, hd, n_keys, 1.0f, s.data(), n_keys, values + kvh * hd, ldkv,
                  0.0f, out + r0 * ldo + h * hd, ldo);
    }
  });
}

}  // namespace awq
