// Attention: blocked causal attention for prompts (per head and row block, one sgemm for the
// scores, softmax, one for the output) and split-position attention over the fp16 cache for
// decode.
#include "model/attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "awq/half.h"
#include "awq/thread_pool.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/decode_attention.h"
#include "kernels/cpu/f16_linear.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/sgemm.h"

namespace awq {

namespace {
// Query rows per task: large enough for sgemm efficiency, small enough that the causal skip
// saves most of the masked half and the tasks balance across threads.
constexpr int64_t kRowBlock = 64;
}  // namespace

float AttentionScale(const AttentionShape& shape) {
  return shape.scale > 0 ? shape.scale : 1.0f / std::sqrt(static_cast<float>(shape.head_dim));
}

void CausalAttention(const float* q, int64_t ldq, const float* keys, const float* values,
                     int64_t ldkv, float* out, int64_t ldo, int64_t n_rows, int64_t pos0,
                     const AttentionShape& shape, ThreadPool& pool) {
  const int64_t hd = shape.head_dim;
  const int64_t group = shape.n_heads / shape.n_kv_heads;
  const int64_t n_blocks = (n_rows + kRowBlock - 1) / kRowBlock;
  const float scale = AttentionScale(shape);
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
      // The block's rows see keys [k0, k1): from the first row's window start to the last row.
      const int64_t k0 = FirstVisibleKey(shape, pos0 + r0), k1 = pos0 + r1;
      const int64_t n_keys = k1 - k0;
      // scores[rows, n_keys] = scale * Q_h[r0:r1] K_kvh[k0:k1]^T
      SgemmSerial(false, true, rows, n_keys, hd, scale, q + r0 * ldq + h * hd, ldq,
                  keys + k0 * ldkv + kvh * hd, ldkv, 0.0f, s.data(), n_keys);
      for (int64_t i = 0; i < rows; ++i) {
        float* row = s.data() + i * n_keys;
        const int64_t t = pos0 + r0 + i;
        const int64_t lo = FirstVisibleKey(shape, t) - k0, hi = t + 1 - k0;
        for (int64_t j = 0; j < lo; ++j) row[j] = 0.0f;
        SoftmaxRow(row + lo, hi - lo);
        for (int64_t j = hi; j < n_keys; ++j) row[j] = 0.0f;
      }
      // out[r0:r1, h] = scores V_kvh[k0:k1]
      SgemmSerial(false, false, rows, hd, n_keys, 1.0f, s.data(), n_keys,
                  values + k0 * ldkv + kvh * hd, ldkv, 0.0f, out + r0 * ldo + h * hd, ldo);
    }
  });
}

void DecodeAttention(const float* q, const uint16_t* keys, const uint16_t* values,
                     int64_t head_stride, int64_t n_keys, float* out, const AttentionShape& shape,
                     ThreadPool& pool) {
  const int64_t hd = shape.head_dim, n_kv = shape.n_kv_heads;
  const int group = static_cast<int>(shape.n_heads / n_kv);
  // Split positions so that there are at least two tasks per thread, but keep every range long
  // enough (>= 64 keys) that the merge costs nothing next to it.
  const int64_t want = (2 * pool.size() + n_kv - 1) / n_kv;
  const int64_t splits = std::max<int64_t>(1, std::min(want, n_keys / 64));
  const int64_t span = (n_keys + splits - 1) / splits;
  const int64_t tasks = n_kv * splits;
  const int64_t part = group * (hd + 2);  // per task: m, l and o for every head of the group
  // Buffers reused across calls (one call per layer per token): the partials belong to the
  // calling thread (the workers write through `partials`, as naming a thread_local in the task
  // would give each worker its own), the score scratch to each worker.
  thread_local std::vector<float> partial_buffer;
  partial_buffer.resize(static_cast<size_t>(tasks * part));
  float* const partials = partial_buffer.data();
  const float scale = AttentionScale(shape);
  // Tasks one at a time from a shared counter: a thread the host slows down takes fewer.
  pool.ParallelForDynamic(
      tasks,
      [&](int64_t begin, int64_t end, int) {
        thread_local std::vector<float> scores;
        if (scores.size() < static_cast<size_t>(group * span)) {
          scores.resize(static_cast<size_t>(group * span));
        }
        for (int64_t task = begin; task < end; ++task) {
          const int64_t h = task / splits, j0 = (task % splits) * span;
          const int64_t n = std::min(span, n_keys - j0);
          float* p = partials + task * part;
          if (n <= 0) {
            for (int i = 0; i < group; ++i) p[i] = -INFINITY;
            continue;
          }
          const int64_t offset = h * head_stride + j0 * hd;
          AttendPartial({q + h * group * hd, group, keys + offset, values + offset, hd, n, scale},
                        scores.data(), p, p + group, p + 2 * group);
        }
      },
      1, static_cast<int>(tasks));
  for (int64_t h = 0; h < n_kv; ++h) {
    for (int i = 0; i < group; ++i) {
      float mx = -INFINITY;
      for (int64_t s = 0; s < splits; ++s) mx = std::max(mx, partials[(h * splits + s) * part + i]);
      float* o = out + (h * group + i) * hd;
      for (int64_t c = 0; c < hd; ++c) o[c] = 0.0f;
      float l = 0.0f;
      for (int64_t s = 0; s < splits; ++s) {
        const float* p = partials + (h * splits + s) * part;
        if (p[i] == -INFINITY) continue;
        const float w = std::exp(p[i] - mx);
        l += w * p[group + i];
        const float* po = p + 2 * group + i * hd;
        for (int64_t c = 0; c < hd; ++c) o[c] += w * po[c];
      }
      const float inv = 1.0f / l;
      for (int64_t c = 0; c < hd; ++c) o[c] *= inv;
    }
  }
}

void StoreKvRows(const float* src, int64_t ld, int64_t n, int64_t pos0, uint16_t* cache,
                 int64_t head_stride, const AttentionShape& shape) {
  const int64_t hd = shape.head_dim;
  const bool f16c = CpuHasAvx2Fma16();
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t h = 0; h < shape.n_kv_heads; ++h) {
      const float* s = src + t * ld + h * hd;
      uint16_t* d = cache + h * head_stride + (pos0 + t) * hd;
#if defined(__x86_64__)
      if (f16c) {
        NarrowF16Avx2(s, d, hd);
        continue;
      }
#endif
      for (int64_t c = 0; c < hd; ++c) d[c] = Fp32ToFp16(s[c]);
    }
  }
}

void LoadKvRows(const uint16_t* cache, int64_t head_stride, int64_t n, float* dst,
                const AttentionShape& shape) {
  const int64_t hd = shape.head_dim, kv_dim = shape.n_kv_heads * hd;
  const bool f16c = CpuHasAvx2Fma16();
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t h = 0; h < shape.n_kv_heads; ++h) {
      const uint16_t* s = cache + h * head_stride + t * hd;
      float* d = dst + t * kv_dim + h * hd;
#if defined(__x86_64__)
      if (f16c) {
        WidenF16Avx2(s, d, hd);
        continue;
      }
#endif
      for (int64_t c = 0; c < hd; ++c) d[c] = Fp16ToFp32(s[c]);
    }
  }
}

}  // namespace awq
