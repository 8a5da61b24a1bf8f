// Causal grouped-query attention over a KV cache, with an optional sliding window and query
// scale (the shared attention block of every family).
#pragma once

#include <cstdint>

namespace awq {

class ThreadPool;

struct AttentionShape {
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;
  int64_t head_dim = 0;
  // > 0: a query at position t sees keys j with t - window < j <= t (Mistral, Gemma's local
  // layers), as transformers' sliding-window mask does.
  int64_t window = 0;
  // Scores are scale * q.k; 0 means 1 / sqrt(head_dim).
  float scale = 0;
};

// The query scale of a shape (its scale, or 1 / sqrt(head_dim)).
float AttentionScale(const AttentionShape& shape);
// The first key position a query at position t sees.
inline int64_t FirstVisibleKey(const AttentionShape& shape, int64_t t) {
  return shape.window > 0 && t + 1 > shape.window ? t + 1 - shape.window : 0;
}

// For query rows t < n_rows at positions pos0 + t, attends to keys/values
// [FirstVisibleKey(pos0 + t), pos0 + t] of the cache: out[t, h*hd:(h+1)*hd] =
// softmax(scale * q_h k^T, causal) v. q is [n_rows, H*hd]
// (row stride ldq), keys/values are [>= pos0 + n_rows, KV*hd] (row stride ldkv), out is
// [n_rows, H*hd] (row stride ldo). Work is split over (head, block of query rows) and each
// block's score matrix only spans the keys it may see, so causal attention costs half of full.
void CausalAttention(const float* q, int64_t ldq, const float* keys, const float* values,
                     int64_t ldkv, float* out, int64_t ldo, int64_t n_rows, int64_t pos0,
                     const AttentionShape& shape, ThreadPool& pool);

// One query token (decode) attending to positions [0, n_keys) of a head-major fp16 cache (kv head
// h's position j at h * head_stride + j * head_dim): out[h*hd:(h+1)*hd] = softmax(scale * q_h
// k^T) v. (A window is applied by the caller, which passes the visible range.) Work is split over
// (kv head, range of positions), each range's partial softmax merged at the end, so few kv heads
// still keep every thread busy.
void DecodeAttention(const float* q, const uint16_t* keys, const uint16_t* values,
                     int64_t head_stride, int64_t n_keys, float* out, const AttentionShape& shape,
                     ThreadPool& pool);

// Rows t < n of src ([n, n_kv_heads * head_dim], row stride ld) to positions pos0 + t of one
// head-major fp16 cache tensor.
void StoreKvRows(const float* src, int64_t ld, int64_t n, int64_t pos0, uint16_t* cache,
                 int64_t head_stride, const AttentionShape& shape);
// Positions [0, n) of a head-major fp16 cache tensor as fp32 rows [n, n_kv_heads * head_dim].
void LoadKvRows(const uint16_t* cache, int64_t head_stride, int64_t n, float* dst,
                const AttentionShape& shape);

}  // namespace awq
