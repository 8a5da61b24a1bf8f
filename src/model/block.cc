// The shared blocks (norms, attention with q/k norms, RoPE, windows and query scale, gated MLP)
// and the one block walk every family runs, configured by its description (model/arch.h);
// observers see its activations through BlockPoint callbacks.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "awq/half.h"
#include "awq/model.h"
#include "awq/thread_pool.h"
#include "kernels/cpu/f16_linear.h"
#include "kernels/cpu/i8_linear.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/sgemm.h"
#include "model/arch.h"
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
  std::vector<float> normed, qkv, attn, gate_up, act, out, side;
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

namespace {

// The norm weights the kernel multiplies by: w itself, or 1 + w for Gemma's form (computed per
// call: quantization folds scales into the stored w between calls).
const float* NormWeights(NormKind kind, const float* w, int64_t d, std::vector<float>& scratch) {
  if (kind == NormKind::kRms) return w;
  float* p = Grow(scratch, d);
  for (int64_t i = 0; i < d; ++i) p[i] = 1.0f + w[i];
  return p;
}

void NormRowsOf(NormKind kind, const float* x, int64_t ldx, const float* w, float* y, int64_t ldy,
                int64_t n, int64_t d, float eps, ThreadPool& pool) {
  thread_local std::vector<float> scratch;
  const float* wk = NormWeights(kind, w, d, scratch);
  ForRows(pool, n, [&](int64_t t0, int64_t t1) {
    RmsNormRows(x + t0 * ldx, ldx, wk, y + t0 * ldy, ldy, t1 - t0, d, eps);
  });
}

// y [n, d] += x [n, d]
void AddRows(float* y, const float* x, int64_t n, int64_t d, ThreadPool& pool) {
  ForRows(pool, n,
          [&](int64_t t0, int64_t t1) { AddInPlace(y + t0 * d, x + t0 * d, (t1 - t0) * d); });
}

}  // namespace

void Model::Norm(const float* x, const float* w, int64_t n, float* y) const {
  const int64_t d = config_.hidden_size;
  NormRowsOf(arch_->recipe.norm, x, d, w, y, d, n, d, static_cast<float>(config_.rms_norm_eps),
             *pool_);
}

void Model::Attention(int64_t layer, const float* wqkv, const float* wo, const float* x, int64_t n,
                      int64_t pos0, KvCache* cache, float* ctx, float* out, bool accumulate) const {
  const ModelConfig& c = config_;
  const BlockRecipe& recipe = arch_->recipe;
  const LayerWeights& w = weights_.layers[static_cast<size_t>(layer)];
  const int64_t d = c.hidden_size, hd = c.head_dim, h = c.num_attention_heads,
                kv = c.num_key_value_heads;
  const int64_t q_dim = h * hd, kv_dim = kv * hd, qkv_dim = q_dim + 2 * kv_dim;
  const float eps = static_cast<float>(c.rms_norm_eps);
  ThreadPool& pool = *pool_;
  AWQ_CHECK(pos0 + n <= rope_positions_);
  BlockBuffers& buf = ThreadBlockBuffers();
  float* const qkv = Grow(buf.qkv, n * qkv_dim);
  if (ctx == nullptr) ctx = Grow(buf.attn, n * q_dim);
  if (static_cast<int64_t>(buf.pos.size()) < n) buf.pos.resize(static_cast<size_t>(n));
  int64_t* const pos = buf.pos.data();
  for (int64_t t = 0; t < n; ++t) pos[t] = pos0 + t;

  // q, k, v from one fused product (explicit weights: quantization's candidates).
  if (wqkv != nullptr) {
    LinearF32(x, d, wqkv, d, qkv, qkv_dim, n, qkv_dim, d, false, pool);
  } else {
    Linear(w.qkv4.get(), w.wqkv, x, d, qkv, qkv_dim, n, false, pool, int4_kernel_);
  }
  if (!w.bqkv.empty()) {
    for (int64_t t = 0; t < n; ++t) AddInPlace(qkv + t * qkv_dim, w.bqkv.data<float>(), qkv_dim);
  }
  // Per-head q/k norms (rows of hd inside each token's q and k), then RoPE with the layer's base.
  const bool local = c.IsSlidingLayer(layer) && !rope_cos_[1].empty();
  const float* cos_t = rope_cos_[local ? 1 : 0].data();
  const float* sin_t = rope_sin_[local ? 1 : 0].data();
  ForRows(pool, n, [&](int64_t t0, int64_t t1) {
    if (recipe.qk_norm) {
      thread_local std::vector<float> qw, kw;
      const float* qn = NormWeights(recipe.norm, w.q_norm.data<float>(), hd, qw);
      const float* kn = NormWeights(recipe.norm, w.k_norm.data<float>(), hd, kw);
      for (int64_t t = t0; t < t1; ++t) {
        float* q = qkv + t * qkv_dim;
        RmsNormRows(q, hd, qn, q, hd, h, hd, eps);
        RmsNormRows(q + q_dim, hd, kn, q + q_dim, hd, kv, hd, eps);
      }
    }
    float* q = qkv + t0 * qkv_dim;
    ApplyRope(q, qkv_dim, t1 - t0, h, hd, pos + t0, cos_t, sin_t);
    ApplyRope(q + q_dim, qkv_dim, t1 - t0, kv, hd, pos + t0, cos_t, sin_t);
  });
  AttentionShape shape{h, kv, hd};
  if (c.IsSlidingLayer(layer)) shape.window = c.sliding_window;
  if (c.query_pre_attn_scalar > 0) {
    shape.scale = static_cast<float>(1.0 / std::sqrt(c.query_pre_attn_scalar));
  }
  if (cache == nullptr) {
    // A sequence from position 0 without a cache (calibration batches, module forwards).
    AWQ_CHECK(pos0 == 0);
    CausalAttention(qkv, qkv_dim, qkv + q_dim, qkv + q_dim + kv_dim, qkv_dim, ctx, q_dim, n, 0,
                    shape, pool);
  } else {
    // The new keys and values go to the fp16 cache. A prompt at the start of the cache attends to
    // them in fp32 straight from the fused buffer; a single token (decode) reads the fp16 cache;
    // a later prompt reads the cache widened back to fp32.
    uint16_t* keys = cache->keys(layer);
    uint16_t* values = cache->values(layer);
    const int64_t head_stride = cache->head_stride();
    ForRows(pool, n, [&](int64_t t0, int64_t t1) {
      const float* k = qkv + t0 * qkv_dim + q_dim;
      StoreKvRows(k, qkv_dim, t1 - t0, pos0 + t0, keys, head_stride, shape);
      StoreKvRows(k + kv_dim, qkv_dim, t1 - t0, pos0 + t0, values, head_stride, shape);
    });
    if (n == 1) {
      // The window, if any, is the visible range of the cache.
      const int64_t first = FirstVisibleKey(shape, pos0);
      DecodeAttention(qkv, keys + first * hd, values + first * hd, head_stride, pos0 + 1 - first,
                      ctx, shape, pool);
    } else if (pos0 == 0) {
      CausalAttention(qkv, qkv_dim, qkv + q_dim, qkv + q_dim + kv_dim, qkv_dim, ctx, q_dim, n, 0,
                      shape, pool);
    } else {
      std::vector<float> k32(static_cast<size_t>((pos0 + n) * kv_dim)), v32(k32.size());
      LoadKvRows(keys, head_stride, pos0 + n, k32.data(), shape);
      LoadKvRows(values, head_stride, pos0 + n, v32.data(), shape);
      CausalAttention(qkv, qkv_dim, k32.data(), v32.data(), kv_dim, ctx, q_dim, n, pos0, shape,
                      pool);
    }
  }
  if (wo != nullptr) {
    LinearF32(ctx, q_dim, wo, q_dim, out, d, n, d, q_dim, accumulate, pool);
  } else {
    Linear(w.o4.get(), w.wo, ctx, q_dim, out, d, n, accumulate, pool, int4_kernel_);
  }
}

void Model::Mlp(int64_t layer, const float* w_gate_up, const float* w_down, const float* x,
                int64_t n, float* act, float* out, bool accumulate) const {
  const ModelConfig& c = config_;
  const LayerWeights& w = weights_.layers[static_cast<size_t>(layer)];
  const int64_t d = c.hidden_size, inter = c.intermediate_size;
  ThreadPool& pool = *pool_;
  BlockBuffers& buf = ThreadBlockBuffers();
  float* const gate_up = Grow(buf.gate_up, n * 2 * inter);
  if (act == nullptr) act = Grow(buf.act, n * inter);
  if (w_gate_up != nullptr) {
    LinearF32(x, d, w_gate_up, d, gate_up, 2 * inter, n, 2 * inter, d, false, pool);
  } else {
    Linear(w.gate_up4.get(), w.w_gate_up, x, d, gate_up, 2 * inter, n, false, pool, int4_kernel_);
  }
  const Activation a = arch_->recipe.activation;
  ForRows(pool, n, [&](int64_t t0, int64_t t1) {
    if (a == Activation::kGeluTanh) {
      GeluTanhMulRows(gate_up + t0 * 2 * inter, 2 * inter, act + t0 * inter, inter, t1 - t0, inter);
    } else {
      SiluMulRows(gate_up + t0 * 2 * inter, 2 * inter, act + t0 * inter, inter, t1 - t0, inter);
    }
  });
  if (w_down != nullptr) {
    LinearF32(act, inter, w_down, inter, out, d, n, d, inter, accumulate, pool);
  } else {
    Linear(w.down4.get(), w.w_down, act, inter, out, d, n, accumulate, pool, int4_kernel_);
  }
}

MoeRouting Model::RouteExperts(int64_t layer, const float* x, int64_t n) const {
  const ModelConfig& c = config_;
  const LayerWeights& w = weights_.layers[static_cast<size_t>(layer)];
  const int64_t d = c.hidden_size, n_experts = c.num_experts, k = c.num_experts_per_tok;
  // Softmax over the experts' logits, the k most probable experts per token (equal
  // probabilities: the lower expert, as torch.topk returns them), their probabilities divided by
  // their sum when the family renormalises.
  std::vector<float> logits(static_cast<size_t>(n * n_experts));
  LinearF32(x, d, w.router.data<float>(), d, logits.data(), n_experts, n, n_experts, d, false,
            *pool_);
  MoeRouting r;
  r.rows.resize(static_cast<size_t>(n_experts));
  r.weights.resize(static_cast<size_t>(n_experts));
  std::vector<int64_t> order(static_cast<size_t>(n_experts));
  for (int64_t t = 0; t < n; ++t) {
    float* p = logits.data() + t * n_experts;
    const float mx = *std::max_element(p, p + n_experts);
    float sum = 0;
    for (int64_t e = 0; e < n_experts; ++e) sum += (p[e] = std::exp(p[e] - mx));
    for (int64_t e = 0; e < n_experts; ++e) p[e] /= sum;
    for (int64_t e = 0; e < n_experts; ++e) order[static_cast<size_t>(e)] = e;
    std::partial_sort(order.begin(), order.begin() + k, order.end(),
                      [p](int64_t a, int64_t b) { return p[a] > p[b] || (p[a] == p[b] && a < b); });
    float top = 0;
    for (int64_t i = 0; i < k; ++i) top += p[order[static_cast<size_t>(i)]];
    for (int64_t i = 0; i < k; ++i) {
      const auto e = static_cast<size_t>(order[static_cast<size_t>(i)]);
      r.rows[e].push_back(t);
      r.weights[e].push_back(c.norm_topk_prob ? p[e] / top : p[e]);
    }
  }
  return r;
}

void Model::ExpertActivation(int64_t layer, int64_t expert, const float* x, int64_t m,
                             float* act) const {
  const ModelConfig& c = config_;
  const LayerWeights& w = weights_.layers[static_cast<size_t>(layer)];
  const int64_t d = c.hidden_size;
  const bool shared = expert < 0;
  const int64_t width = shared ? c.shared_expert_intermediate_size : c.moe_intermediate_size;
  const float* wgu = shared ? w.shared_gate_up.data<float>()
                            : w.experts_gate_up.data<float>() + expert * 2 * width * d;
  std::vector<float> gate_up(static_cast<size_t>(m * 2 * width));
  LinearF32(x, d, wgu, d, gate_up.data(), 2 * width, m, 2 * width, d, false, *pool_);
  SiluMulRows(gate_up.data(), 2 * width, act, width, m, width);
}

void Model::MoeBatch(int64_t layer, const MoeRouting& routing, const float* experts_gate_up,
                     const float* shared_gate_up, const float* x, int64_t n, float* out) const {
  AWQ_CHECK(config_.IsMoeLayer(layer));
  MoeApply(layer, routing, experts_gate_up, shared_gate_up, x, n, out, false);
}

void Model::MoeMlp(int64_t layer, const float* x, int64_t n, float* out, bool accumulate) const {
  MoeApply(layer, RouteExperts(layer, x, n), nullptr, nullptr, x, n, out, accumulate);
}

void Model::MoeApply(int64_t layer, const MoeRouting& routing, const float* experts_gate_up,
                     const float* shared_gate_up, const float* x, int64_t n, float* out,
                     bool accumulate) const {
  const ModelConfig& c = config_;
  const LayerWeights& w = weights_.layers[static_cast<size_t>(layer)];
  const int64_t d = c.hidden_size, n_experts = c.num_experts, ie = c.moe_intermediate_size;
  ThreadPool& pool = *pool_;
  if (!accumulate) std::fill(out, out + n * d, 0.0f);
  // The layer's own expert weights run on the int4 kernels when the model has them there.
  const bool gate_up4 = experts_gate_up == nullptr && !w.experts_gate_up4.empty();
  const bool down4 = !w.experts_down4.empty();
  if (experts_gate_up == nullptr && !gate_up4) experts_gate_up = w.experts_gate_up.data<float>();

  // out[token] += weight * down_e(silu(gate_e x) * up_e x), expert by expert: each expert runs
  // one product over the rows it received (decode: k products of one row).
  const int64_t rows = std::max<int64_t>(ie, c.shared_expert_intermediate_size);
  std::vector<float> xin, gate_up(static_cast<size_t>(n * 2 * rows)),
      act(static_cast<size_t>(n * rows)), y(static_cast<size_t>(n * d));
  for (int64_t e = 0; e < n_experts; ++e) {
    const std::vector<int64_t>& r = routing.rows[static_cast<size_t>(e)];
    const std::vector<float>& rw = routing.weights[static_cast<size_t>(e)];
    const int64_t m = static_cast<int64_t>(r.size());
    if (m == 0) continue;
    xin.resize(static_cast<size_t>(m * d));
    for (int64_t i = 0; i < m; ++i) {
      std::memcpy(xin.data() + i * d, x + r[static_cast<size_t>(i)] * d,
                  static_cast<size_t>(d) * sizeof(float));
    }
    if (gate_up4) {
      Int4Linear(*w.experts_gate_up4[static_cast<size_t>(e)], xin.data(), d, m, gate_up.data(),
                 2 * ie, false, pool, int4_kernel_);
    } else {
      LinearF32(xin.data(), d, experts_gate_up + e * 2 * ie * d, d, gate_up.data(), 2 * ie, m,
                2 * ie, d, false, pool);
    }
    SiluMulRows(gate_up.data(), 2 * ie, act.data(), ie, m, ie);
    if (down4) {
      Int4Linear(*w.experts_down4[static_cast<size_t>(e)], act.data(), ie, m, y.data(), d, false,
                 pool, int4_kernel_);
    } else {
      LinearF32(act.data(), ie, w.experts_down.data<float>() + e * d * ie, ie, y.data(), d, m, d,
                ie, false, pool);
    }
    for (int64_t i = 0; i < m; ++i) {
      const float weight = rw[static_cast<size_t>(i)];
      float* o = out + r[static_cast<size_t>(i)] * d;
      const float* yi = y.data() + i * d;
      for (int64_t j = 0; j < d; ++j) o[j] += weight * yi[j];
    }
  }

  // Qwen2-MoE's shared expert: out += sigmoid(g . x) * down(silu(gate x) * up x) on every token.
  if (!w.shared_expert_gate.empty()) {
    const int64_t is = c.shared_expert_intermediate_size;
    if (shared_gate_up == nullptr && w.shared_gate_up4 != nullptr) {
      Int4Linear(*w.shared_gate_up4, x, d, n, gate_up.data(), 2 * is, false, pool, int4_kernel_);
    } else {
      if (shared_gate_up == nullptr) shared_gate_up = w.shared_gate_up.data<float>();
      LinearF32(x, d, shared_gate_up, d, gate_up.data(), 2 * is, n, 2 * is, d, false, pool);
    }
    SiluMulRows(gate_up.data(), 2 * is, act.data(), is, n, is);
    if (w.shared_down4 != nullptr) {
      Int4Linear(*w.shared_down4, act.data(), is, n, y.data(), d, false, pool, int4_kernel_);
    } else {
      LinearF32(act.data(), is, w.shared_down.data<float>(), is, y.data(), d, n, d, is, false,
                pool);
    }
    const float* g = w.shared_expert_gate.data<float>();
    for (int64_t t = 0; t < n; ++t) {
      float dot = 0;
      for (int64_t j = 0; j < d; ++j) dot += g[j] * x[t * d + j];
      const float s = 1.0f / (1.0f + std::exp(-dot));
      for (int64_t j = 0; j < d; ++j) out[t * d + j] += s * y[t * d + j];
    }
  }
}

namespace {
// Calls the observer when there is one.
inline void Tell(const BlockObserver* observe, BlockPoint p, int64_t row0, const float* rows,
                 int64_t n, int64_t width) {
  if (observe != nullptr) (*observe)(p, row0, rows, n, width);
}
}  // namespace

void Model::BlockForward(int64_t layer, float* x, int64_t n, int64_t pos0, KvCache& cache,
                         const BlockObserver* observe) const {
  Walk(layer, x, n, pos0, &cache, observe, 0);
}

void Model::BlockForwardBatch(int64_t layer, float* x, int64_t n_seq, int64_t seq_len,
                              const BlockObserver* observe) const {
  const int64_t d = config_.hidden_size;
  for (int64_t s = 0; s < n_seq; ++s) {
    Walk(layer, x + s * seq_len * d, seq_len, 0, nullptr, observe, s * seq_len);
  }
}

void Model::Walk(int64_t layer, float* x, int64_t n, int64_t pos0, KvCache* cache,
                 const BlockObserver* observe, int64_t row0) const {
  // Recurrent blocks have no BlockPoints; their observer is RecurrentBlockBatch's.
  if (arch_->recurrent != nullptr) return RecurrentWalk(layer, x, n, pos0, cache, nullptr, row0);
  const ModelConfig& c = config_;
  const BlockRecipe& recipe = arch_->recipe;
  const LayerWeights& w = weights_.layers[static_cast<size_t>(layer)];
  const int64_t d = c.hidden_size, q_dim = c.num_attention_heads * c.head_dim,
                inter = c.intermediate_size;
  const float eps = static_cast<float>(c.rms_norm_eps);
  ThreadPool& pool = *pool_;
  BlockBuffers& buf = ThreadBlockBuffers();
  float* const normed = Grow(buf.normed, n * d);
  // Without post-norms or an observer, the products accumulate straight into x (decode's path).
  const bool direct = !recipe.post_norms && observe == nullptr;
  float* const out = direct ? x : Grow(buf.out, n * d);
  float* side = nullptr;  // o_proj's or down_proj's input, kept for the observer

  // Attention: x += [post-norm](o_proj(attention(norm(x)))).
  NormRowsOf(recipe.norm, x, d, w.attn_norm.data<float>(), normed, d, n, d, eps, pool);
  Tell(observe, BlockPoint::kAttnIn, row0, normed, n, d);
  if (observe != nullptr) {
    side = Grow(buf.side, n * std::max(q_dim, inter));
  }
  Attention(layer, nullptr, nullptr, normed, n, pos0, cache, side, out, direct);
  Tell(observe, BlockPoint::kAttnCtx, row0, side, n, q_dim);
  Tell(observe, BlockPoint::kAttnOut, row0, out, n, d);
  if (!direct) {
    if (recipe.post_norms) {
      NormRowsOf(recipe.norm, out, d, w.post_attn_norm.data<float>(), out, d, n, d, eps, pool);
    }
    AddRows(x, out, n, d, pool);
  }

  // MLP: x += [post-norm](down(act(gate(x')) * up(x'))), x' = norm(x).
  NormRowsOf(recipe.norm, x, d, w.ffn_norm.data<float>(), normed, d, n, d, eps, pool);
  Tell(observe, BlockPoint::kMlpIn, row0, normed, n, d);
  if (c.IsMoeLayer(layer)) {
    // No single down_proj input to observe: kMlpAct is not told.
    MoeMlp(layer, normed, n, out, direct);
  } else {
    Mlp(layer, nullptr, nullptr, normed, n, side, out, direct);
    Tell(observe, BlockPoint::kMlpAct, row0, side, n, inter);
  }
  Tell(observe, BlockPoint::kMlpOut, row0, out, n, d);
  if (!direct) {
    if (recipe.post_norms) {
      NormRowsOf(recipe.norm, out, d, w.post_ffn_norm.data<float>(), out, d, n, d, eps, pool);
    }
    AddRows(x, out, n, d, pool);
  }
}

void Model::AttentionBatch(int64_t layer, const float* wqkv, const float* wo, const float* x,
                           int64_t n_seq, int64_t seq_len, float* ctx, float* out) const {
  const int64_t d = config_.hidden_size, q_dim = config_.num_attention_heads * config_.head_dim;
  AWQ_CHECK(seq_len <= rope_positions_);
  for (int64_t s = 0; s < n_seq; ++s) {
    const int64_t r = s * seq_len;
    Attention(layer, wqkv, wo, x + r * d, seq_len, 0, nullptr,
              ctx == nullptr ? nullptr : ctx + r * q_dim, out + r * d, false);
  }
}

void Model::MlpBatch(int64_t layer, const float* w_gate_up, const float* w_down, const float* x,
                     int64_t n, float* act, float* out) const {
  AWQ_CHECK(!config_.IsMoeLayer(layer));
  Mlp(layer, w_gate_up, w_down, x, n, act, out, false);
}

void Model::Forward(const int32_t* tokens, int64_t n, KvCache& cache, float* hidden) const {
  if (arch_->recurrent != nullptr) return RecurrentForward(tokens, n, cache, hidden);
  const int64_t d = config_.hidden_size;
  const int64_t pos0 = cache.size();
  if (pos0 + n > cache.capacity()) {
    throw Error("KV cache full: " + std::to_string(pos0) + " + " + std::to_string(n) +
                " tokens exceed its capacity of " + std::to_string(cache.capacity()));
  }
  std::vector<float> x(static_cast<size_t>(n * d));
  EmbedTokens(tokens, n, x.data());
  for (int64_t l = 0; l < config_.num_hidden_layers; ++l) {
    BlockForward(l, x.data(), n, pos0, cache);
  }
  cache.Advance(n);
  Norm(x.data(), weights_.final_norm.data<float>(), n, hidden);
}

void Model::EmbedTokens(const int32_t* tokens, int64_t n, float* x) const {
  const int64_t d = config_.hidden_size;
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
      for (int64_t i = 0; i < d; ++i) x[t * d + i] = Fp16ToFp32(e[i]);
    } else if (embed.dtype() == DType::kBF16) {  // a streaming model's view of the file
      const uint16_t* e = embed.data<uint16_t>() + row;
      for (int64_t i = 0; i < d; ++i) x[t * d + i] = Bf16ToFp32(e[i]);
    } else {
      std::memcpy(x + t * d, embed.data<float>() + row, static_cast<size_t>(d) * sizeof(float));
    }
  }
  if (arch_->recipe.scale_embedding) {
    // Gemma: embeddings times sqrt(hidden_size), the factor rounded to fp32 first as
    // transformers' embed_scale tensor is.
    const float scale = static_cast<float>(std::sqrt(static_cast<double>(d)));
    for (int64_t i = 0; i < n * d; ++i) x[i] *= scale;
  }
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
