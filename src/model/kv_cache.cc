// KV cache storage.
#include "awq/kv_cache.h"

namespace awq {

KvCache::KvCache(int64_t n_layers, int64_t max_tokens, int64_t n_kv_heads, int64_t head_dim)
    : max_tokens_(max_tokens), n_kv_heads_(n_kv_heads), head_dim_(head_dim) {
  for (int64_t l = 0; l < n_layers; ++l) {
    k_.emplace_back(DType::kF16, Shape{n_kv_heads, max_tokens, head_dim});
    v_.emplace_back(DType::kF16, Shape{n_kv_heads, max_tokens, head_dim});
  }
}

KvCache KvCache::Recurrent(int64_t n_layers, int64_t max_tokens, int64_t state_floats) {
  KvCache c;
  c.max_tokens_ = max_tokens;
  for (int64_t l = 0; l < n_layers; ++l) c.state_.emplace_back(DType::kF32, Shape{state_floats});
  return c;
}

void KvCache::Advance(int64_t n) {
  AWQ_CHECK(size_ + n <= max_tokens_);
  size_ += n;
}

}  // namespace awq
