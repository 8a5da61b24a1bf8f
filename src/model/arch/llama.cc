// The Llama-family forward pass (Llama, Mistral, Qwen2, SmolLM): pre-norm blocks with RMSNorm,
// rotary grouped-query attention and a SwiGLU MLP, built from the shared kernels.
#include <cstring>
#include <vector>

#include "awq/half.h"
#include "awq/model.h"
#include "awq/thread_pool.h"
#include "kernels/cpu/f16_linear.h"
#include "kernels/cpu/i8_linear.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/sgemm.h"
#include "model/attention.h"

namespace awq {

namespace {
// y [n, rows] (+)= x [n, in] W^T through the int4 kernel when the layer has one, else fp32.
void Linear(const Int4Matrix* w4, const Tensor& w, const float* x, int64_t ldx, float* y,
            int64_t ldy, int64_t n, bool accumulate, ThreadPool& pool, Int4Kernel kernel) {
  if (w4 != nullptr) {
    Int4Linear(*w4, x, ldx, n, y, ldy, accumulate, pool, kernel);
  } else {
    LinearF32(x, ldx, w.data<float>(), w.dim(1), y, ldy, n, w.dim(0), w.dim(1), accumulate, pool);
  }
}
}  // namespace

namespace {

// BlockForward's work buffers, one set per calling thread, grown on demand: fresh vectors per
// layer cost a zeroing pass each and, above malloc's mmap threshold, page faults on every call.
struct BlockBuffers {
  std::vector<float> normed, qkv, attn, gate_up, act;
  std::vector<int64_t> pos;
};

BlockBuffers& ThreadBlockBuffers() {
  static thread_local BlockBuffers buffers;
  return buffers;
}

// Runs fn(t0, t1) over rows [0, n): split across the pool for a prompt, inline for a few rows
// (decode), where handing off would cost more than the work. For the row-wise kernels that would
// otherwise leave the other cores waiting between the parallel products.
template <class Fn>
void ForRows(ThreadPool& pool, int64_t n, Fn fn) {
  if (n < 32) return fn(int64_t{0}, n);
  pool.ParallelFor(
      n, [&](int64_t t0, int64_t t1, int) { fn(t0, t1); }, 8);
}

float* Grow(std::vector<float>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
  return v.data();
}

}  // namespace

void Model::BlockForward(int64_t layer, float* x, int64_t n, int64_t pos0, KvCache& cache) const {
  const ModelConfig& c = config_;
  const LayerWeights& w = weights_.layers[static_cast<size_t>(layer)];
  uint16_t* keys = cache.keys(layer);
  uint16_t* values = cache.values(layer);
  const int64_t d = c.hidden_size, hd = c.head_dim, h = c.num_attention_heads,
                kv = c.num_key_value_heads, inter = c.intermediate_size;
  const int64_t q_dim = h * hd, kv_dim = kv * hd, qkv_dim = q_dim + 2 * kv_dim;
  const float eps = static_cast<float>(c.rms_norm_eps);
  ThreadPool& pool = *pool_;
  AWQ_CHECK(pos0 + n <= rope_positions_);

  // Work buffers reused across layers and calls (contents are overwritten before use).
  BlockBuffers& buf = ThreadBlockBuffers();
  float* const normed = Grow(buf.normed, n * d);
  float* const qkv = Grow(buf.qkv, n * qkv_dim);
  float* const attn = Grow(buf.attn, n * q_dim);
  if (static_cast<int64_t>(buf.pos.size()) < n) buf.pos.resize(static_cast<size_t>(n));
  int64_t* const pos = buf.pos.data();
  for (int64_t t = 0; t < n; ++t) pos[t] = pos0 + t;

  // Attention: x += o_proj(attn(rope(q), rope(k), v)) with q, k, v from one fused product.
  ForRows(pool, n, [&](int64_t t0, int64_t t1) {
    RmsNormRows(x + t0 * d, d, w.attn_norm.data<float>(), normed + t0 * d, d, t1 - t0, d, eps);
  });
  Linear(w.qkv4.get(), w.wqkv, normed, d, qkv, qkv_dim, n, false, pool, int4_kernel_);
  if (!w.bqkv.empty()) {
    for (int64_t t = 0; t < n; ++t) AddInPlace(qkv + t * qkv_dim, w.bqkv.data<float>(), qkv_dim);
  }
  ForRows(pool, n, [&](int64_t t0, int64_t t1) {
    float* q = qkv + t0 * qkv_dim;
    ApplyRope(q, qkv_dim, t1 - t0, h, hd, pos + t0, rope_cos_.data(), rope_sin_.data());
    ApplyRope(q + q_dim, qkv_dim, t1 - t0, kv, hd, pos + t0, rope_cos_.data(), rope_sin_.data());
  });
  // The new keys and values go to the fp16 cache. A prompt at the start of the cache attends to
  // them in fp32 straight from the fused buffer; a single token (decode) reads the fp16 cache;
  // a later prompt reads the cache widened back to fp32.
  const AttentionShape shape{h, kv, hd};
  const int64_t head_stride = cache.head_stride();
  ForRows(pool, n, [&](int64_t t0, int64_t t1) {
    const float* k = qkv + t0 * qkv_dim + q_dim;
    StoreKvRows(k, qkv_dim, t1 - t0, pos0 + t0, keys, head_stride, shape);
    StoreKvRows(k + kv_dim, qkv_dim, t1 - t0, pos0 + t0, values, head_stride, shape);
  });
  if (n == 1) {
    DecodeAttention(qkv, keys, values, head_stride, pos0 + 1, attn, shape, pool);
  } else if (pos0 == 0) {
    CausalAttention(qkv, qkv_dim, qkv + q_dim, qkv + q_dim + kv_dim, qkv_dim, attn, q_dim, n, 0,
                    shape, pool);
  } else {
    std::vector<float> k32(static_cast<size_t>((pos0 + n) * kv_dim)), v32(k32.size());
    LoadKvRows(keys, head_stride, pos0 + n, k32.data(), shape);
    LoadKvRows(values, head_stride, pos0 + n, v32.data(), shape);
    CausalAttention(qkv, qkv_dim, k32.data(), v32.data(), kv_dim, attn, q_dim, n, pos0, shape,
                    pool);
  }
  Linear(w.o4.get(), w.wo, attn, q_dim, x, d, n, true, pool, int4_kernel_);

  // MLP: x += down(silu(gate(x')) * up(x')), gate and up from one fused product.
  ForRows(pool, n, [&](int64_t t0, int64_t t1) {
    RmsNormRows(x + t0 * d, d, w.ffn_norm.data<float>(), normed + t0 * d, d, t1 - t0, d, eps);
  });
  float* const gate_up = Grow(buf.gate_up, n * 2 * inter);
  float* const act = Grow(buf.act, n * inter);
  Linear(w.gate_up4.get(), w.w_gate_up, normed, d, gate_up, 2 * inter, n, false, pool,
         int4_kernel_);
  ForRows(pool, n, [&](int64_t t0, int64_t t1) {
    SiluMulRows(gate_up + t0 * 2 * inter, 2 * inter, act + t0 * inter, inter, t1 - t0, inter);
  });
  Linear(w.down4.get(), w.w_down, act, inter, x, d, n, true, pool, int4_kernel_);
}

void Model::AttentionBatch(const float* wqkv, const float* bqkv, const float* wo, const float* x,
                           int64_t n_seq, int64_t seq_len, float* ctx, float* out) const {
  const ModelConfig& c = config_;
  const int64_t d = c.hidden_size, hd = c.head_dim, h = c.num_attention_heads,
                kv = c.num_key_value_heads;
  const int64_t q_dim = h * hd, kv_dim = kv * hd, qkv_dim = q_dim + 2 * kv_dim;
  const int64_t n = n_seq * seq_len;
  AWQ_CHECK(seq_len <= rope_positions_);
  ThreadPool& pool = *pool_;
  std::vector<float> qkv(static_cast<size_t>(n * qkv_dim));
  std::vector<float> ctx_local;
  if (ctx == nullptr) {
    ctx_local.resize(static_cast<size_t>(n * q_dim));
    ctx = ctx_local.data();
  }
  LinearF32(x, d, wqkv, d, qkv.data(), qkv_dim, n, qkv_dim, d, false, pool);
  if (bqkv != nullptr) {
    for (int64_t t = 0; t < n; ++t) AddInPlace(qkv.data() + t * qkv_dim, bqkv, qkv_dim);
  }
  std::vector<int64_t> pos(static_cast<size_t>(n));
  for (int64_t t = 0; t < n; ++t) pos[static_cast<size_t>(t)] = t % seq_len;
  ApplyRope(qkv.data(), qkv_dim, n, h, hd, pos.data(), rope_cos_.data(), rope_sin_.data());
  ApplyRope(qkv.data() + q_dim, qkv_dim, n, kv, hd, pos.data(), rope_cos_.data(), rope_sin_.data());
  // Keys and values are read in place from the fused buffer (row stride qkv_dim).
  for (int64_t s = 0; s < n_seq; ++s) {
    const float* base = qkv.data() + s * seq_len * qkv_dim;
    CausalAttention(base, qkv_dim, base + q_dim, base + q_dim + kv_dim, qkv_dim,
                    ctx + s * seq_len * q_dim, q_dim, seq_len, 0, {h, kv, hd}, pool);
  }
  LinearF32(ctx, q_dim, wo, q_dim, out, d, n, d, q_dim, false, pool);
}

void Model::MlpBatch(const float* w_gate_up, const float* w_down, const float* x, int64_t n,
                     float* act, float* out) const {
  const int64_t d = config_.hidden_size, inter = config_.intermediate_size;
  ThreadPool& pool = *pool_;
  std::vector<float> gate_up(static_cast<size_t>(n * 2 * inter));
  std::vector<float> act_local;
  if (act == nullptr) {
    act_local.resize(static_cast<size_t>(n * inter));
    act = act_local.data();
  }
  LinearF32(x, d, w_gate_up, d, gate_up.data(), 2 * inter, n, 2 * inter, d, false, pool);
  SiluMulRows(gate_up.data(), 2 * inter, act, inter, n, inter);
  LinearF32(act, inter, w_down, inter, out, d, n, d, inter, false, pool);
}

void Model::Norm(const float* x, const float* w, int64_t n, float* y) const {
  const int64_t d = config_.hidden_size;
  RmsNormRows(x, d, w, y, d, n, d, static_cast<float>(config_.rms_norm_eps));
}

void Model::Forward(const int32_t* tokens, int64_t n, KvCache& cache, float* hidden) const {
  const int64_t d = config_.hidden_size;
  const int64_t pos0 = cache.size();
  if (pos0 + n > cache.capacity()) {
    throw Error("KV cache full: " + std::to_string(pos0) + " + " + std::to_string(n) +
                " tokens exceed its capacity of " + std::to_string(cache.capacity()));
  }
  std::vector<float> x(static_cast<size_t>(n * d));
  const Tensor& embed = weights_.embed;
  for (int64_t t = 0; t < n; ++t) {
    const int32_t id = tokens[t];
    if (id < 0 || id >= config_.vocab_size) {
      throw Error("token id " + std::to_string(id) + " is outside the vocabulary of " +
                  std::to_string(config_.vocab_size));
    }
    const int64_t row = static_cast<int64_t>(id) * d;
    if (embed.dtype() == DType::kF16) {
      const uint16_t* e = embed.data<uint16_t>() + row;
      for (int64_t i = 0; i < d; ++i) x[static_cast<size_t>(t * d + i)] = Fp16ToFp32(e[i]);
    } else {
      std::memcpy(x.data() + t * d, embed.data<float>() + row,
                  static_cast<size_t>(d) * sizeof(float));
    }
  }
  for (int64_t l = 0; l < config_.num_hidden_layers; ++l) {
    BlockForward(l, x.data(), n, pos0, cache);
  }
  cache.Advance(n);
  RmsNormRows(x.data(), d, weights_.final_norm.data<float>(), hidden, d, n, d,
              static_cast<float>(config_.rms_norm_eps));
}

void Model::Logits(const float* hidden, int64_t n, float* logits) const {
  const int64_t d = config_.hidden_size, v = config_.vocab_size;
  const Tensor& head = weights_.lm_head;
  if (weights_.lm_head8 != nullptr) {
    LinearI8(hidden, d, *weights_.lm_head8, logits, v, n, *pool_);
  } else if (head.dtype() == DType::kF16) {
    LinearF16(hidden, d, head.data<uint16_t>(), d, logits, v, n, v, d, false, *pool_);
  } else {
    LinearF32(hidden, d, head.data<float>(), d, logits, v, n, v, d, false, *pool_);
  }
}

}  // namespace awq
