// Causal grouped-query attention over a KV cache (the shared attention block of the Llama family).
#pragma once

#include <cstdint>

namespace awq {

class ThreadPool;

struct AttentionShape {
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;
  int64_t head_dim = 0;
};

// For query rows t < n_rows at positions pos0 + t, attends to keys/values [0, pos0 + t] of the
// cache: out[t, h*hd:(h+1)*hd] = softmax(q_h k^T / sqrt(hd), causal) v. q is [n_rows, H*hd]
// (row stride ldq), keys/values are [>= pos0 + n_rows, KV*hd] (row stride ldkv), out is
// [n_rows, H*hd] (row stride ldo). Work is split over (head, block of query rows) and each
// block's score matrix only spans the keys it may see, so causal attention costs half of full.
void CausalAttention(const float* q, int64_t ldq, const float* keys, const float* values,
                     int64_t ldkv, float* out, int64_t ldo, int64_t n_rows, int64_t pos0,
                     const AttentionShape& shape, ThreadPool& pool);

// One query token (decode) attending to positions [0, n_keys) of a head-major fp16 cache (kv head
// h's position j at h * head_stride + j * head_dim): out[h*hd:(h+1)*hd] = softmax(q_h k^T /
// sqrt(hd)) v. Work is split over (kv head, range of positions), each range's partial softmax
// merged at the end, so few kv heads still keep every thread busy.
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
