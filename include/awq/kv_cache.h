// Key/value cache of a decoder: per layer, keys and values of every position seen so far.
#pragma once

#include <cstdint>
#include <vector>

#include "awq/tensor.h"

namespace awq {

class KvCache {
 public:
  KvCache() = default;
  // Room for max_tokens positions of n_layers layers with kv_dim = n_kv_heads * head_dim.
  KvCache(int64_t n_layers, int64_t max_tokens, int64_t kv_dim);

  int64_t size() const { return size_; }  // positions filled
  int64_t capacity() const { return max_tokens_; }
  int64_t kv_dim() const { return kv_dim_; }
  void Clear() { size_ = 0; }
  // Marks n more positions as filled (after every layer wrote them).
  void Advance(int64_t n);

  float* keys(int64_t layer) {
    return k_[static_cast<size_t>(layer)].data<float>();
  }  // [max_tokens, kv_dim]
  float* values(int64_t layer) {
    return v_[static_cast<size_t>(layer)].data<float>();
  }  // [max_tokens, kv_dim]

 private:
  int64_t max_tokens_ = 0;
  int64_t kv_dim_ = 0;
  int64_t size_ = 0;
  std::vector<Tensor> k_, v_;
};

}  // namespace awq
