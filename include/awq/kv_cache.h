// Key/value cache of a decoder: per layer, keys and values of every position seen so far, in
// fp16 (half the bytes that decode streams per token; llama.cpp's default too) and head-major, so
// that one kv head's keys are one contiguous run that decode attention reads front to back.
#pragma once

#include <cstdint>
#include <vector>

#include "awq/tensor.h"

namespace awq {

class KvCache {
 public:
  KvCache() = default;
  // Room for max_tokens positions of n_layers layers with n_kv_heads heads of head_dim values.
  KvCache(int64_t n_layers, int64_t max_tokens, int64_t n_kv_heads, int64_t head_dim);

  int64_t size() const { return size_; }  // positions filled
  int64_t capacity() const { return max_tokens_; }
  int64_t n_kv_heads() const { return n_kv_heads_; }
  int64_t head_dim() const { return head_dim_; }
  // Elements between the starts of two kv heads: max_tokens * head_dim.
  int64_t head_stride() const { return max_tokens_ * head_dim_; }
  void Clear() { size_ = 0; }
  // Marks n more positions as filled (after every layer wrote them).
  void Advance(int64_t n);

  // fp16 bits, [n_kv_heads, max_tokens, head_dim]: position j of kv head h at
  // (h * head_stride() + j * head_dim()).
  uint16_t* keys(int64_t layer) { return k_[static_cast<size_t>(layer)].data<uint16_t>(); }
  uint16_t* values(int64_t layer) { return v_[static_cast<size_t>(layer)].data<uint16_t>(); }

  // A recurrent model's cache (Mamba, RWKV): no keys or values, but `state_floats` fp32 of state
  // per layer that summarise every position seen (src/model/recurrent.h says what they hold).
  // The model resets a layer's state when a forward starts at position 0, so Clear() resets it.
  static KvCache Recurrent(int64_t n_layers, int64_t max_tokens, int64_t state_floats);
  float* state(int64_t layer) { return state_[static_cast<size_t>(layer)].data<float>(); }
  int64_t state_floats() const { return state_.empty() ? 0 : state_[0].numel(); }

 private:
  int64_t max_tokens_ = 0;
  int64_t n_kv_heads_ = 0;
  int64_t head_dim_ = 0;
  int64_t size_ = 0;
  std::vector<Tensor> k_, v_;
  std::vector<Tensor> state_;  // recurrent models: [state_floats] fp32 per layer
};

}  // namespace awq
