// The recurrent families' blocks (Mamba's selective state-space mixer, RWKV-4's time-mix and
// channel-mix) and their forward pass, with the per-layer state in the KvCache taking the place of
// keys and values. Each block reports its linears' inputs to a LinearInputObserver, the hook
// quantization uses (src/quant/quantize_recurrent.cc).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "awq/error.h"
#include "awq/model.h"
#include "awq/thread_pool.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/recurrent_ops.h"
#include "kernels/cpu/sgemm.h"
#include "model/arch.h"
#include "model/recurrent.h"

namespace awq {

namespace {

// transformers' RwkvModel.ln_out is nn.LayerNorm(hidden_size): torch's default epsilon, whatever
// layer_norm_epsilon says (which the blocks' LayerNorms use).
constexpr float kRwkvOutEps = 1e-5f;
// The WKV running maximum before any token: exp(-1e38 - x) is 0 for every finite x, so the
// empty sums add nothing (transformers' rwkv_linear_attention_cpu starts from the same value).
constexpr float kWkvInitialMax = -1e38f;

const float* W(const LayerWeights& lw, const char* name) {
  const auto it = lw.recurrent.find(name);
  AWQ_CHECK(it != lw.recurrent.end() && "recurrent tensor not loaded");
  return it->second.data<float>();
}
// The tensor when the layer has it (optional biases), else null.
const float* Optional(const LayerWeights& lw, const char* name) {
  const auto it = lw.recurrent.find(name);
  return it == lw.recurrent.end() ? nullptr : it->second.data<float>();
}

void AddBias(float* y, const float* b, int64_t n, int64_t width) {
  if (b == nullptr) return;
  for (int64_t t = 0; t < n; ++t) AddInPlace(y + t * width, b, width);
}

inline void Tell(const LinearInputObserver* observe, int linear, int64_t row0, const float* rows,
                 int64_t n, int64_t width) {
  if (observe != nullptr) (*observe)(linear, row0, rows, n, width);
}

// torch.nn.functional.softplus with its default threshold: x above 20 is returned as is.
inline float Softplus(float x) { return x > 20.0f ? x : std::log1p(std::exp(x)); }
inline float Sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

// Runs fn(c0, c1) over channels [0, channels): split across the pool for a prompt, inline for a
// few tokens (decode), where waking the workers would cost more than the scan.
template <class Fn>
void ForChannels(ThreadPool& pool, int64_t n_tokens, int64_t channels, Fn fn) {
  if (n_tokens < 32) return fn(int64_t{0}, channels);
  pool.ParallelFor(
      channels, [&](int64_t c0, int64_t c1, int) { fn(c0, c1); }, 16);
}

// A layer's state at its start: Mamba's and the shift rows and WKV sums zero, the WKV maximum
// kWkvInitialMax.
void InitState(const RecurrentSpec& spec, const ModelConfig& c, float* state) {
  const int64_t floats = RecurrentStateFloats(spec, c);
  std::fill(state, state + floats, 0.0f);
  if (spec.kind == RecurrentKind::kRwkv) {
    float* max = state + 2 * c.hidden_size + 2 * c.attention_hidden_size;
    std::fill(max, max + c.attention_hidden_size, kWkvInitialMax);
  }
}

// Mamba's block on x [n, D] in place: x += out_proj(scan(conv(in_proj(norm(x))))).
// State: conv [K-1, Di] (the last inputs of the convolution), then scan h [Di, N].
// Linear inputs told: 0 in_proj (normed x), 1 x_proj (u), 2 dt_proj (dt rank rows), 3 out_proj.
void MambaBlock(const ModelConfig& c, const LayerWeights& lw, float* x, int64_t n, float* state,
                const LinearInputObserver* observe, int64_t row0, ThreadPool& pool) {
  const int64_t d = c.hidden_size, di = c.intermediate_size, ns = c.state_size,
                r = c.time_step_rank, k = c.conv_kernel, xw = r + 2 * ns;
  float* const conv_state = state;
  float* const h = state + (k - 1) * di;
  std::vector<float> normed(static_cast<size_t>(n * d)), xz(static_cast<size_t>(n * 2 * di)),
      u(static_cast<size_t>(n * di)), xdbl(static_cast<size_t>(n * xw)),
      dt(static_cast<size_t>(n * di)), y(static_cast<size_t>(n * di)),
      a(static_cast<size_t>(di * ns));

  RmsNormRows(x, d, W(lw, "norm.weight"), normed.data(), d, n, d,
              static_cast<float>(c.rms_norm_eps));
  Tell(observe, 0, row0, normed.data(), n, d);
  LinearF32(normed.data(), d, W(lw, "mixer.in_proj.weight"), d, xz.data(), 2 * di, n, 2 * di, d,
            false, pool);
  AddBias(xz.data(), Optional(lw, "mixer.in_proj.bias"), n, 2 * di);
  // Columns [0, Di) of xz feed the convolution, [Di, 2 Di) are the gate z.
  CausalConvSilu(xz.data(), 2 * di, n, di, W(lw, "mixer.conv1d.weight"),
                 Optional(lw, "mixer.conv1d.bias"), k, conv_state, u.data());
  Tell(observe, 1, row0, u.data(), n, di);
  LinearF32(u.data(), di, W(lw, "mixer.x_proj.weight"), di, xdbl.data(), xw, n, xw, di, false,
            pool);
  // dt = softplus(dt_proj(xdbl[:, :R]) + bias); B = xdbl[:, R:R+N], C = xdbl[:, R+N:].
  if (observe != nullptr) {
    std::vector<float> rank(static_cast<size_t>(n * r));
    for (int64_t t = 0; t < n; ++t) {
      std::memcpy(rank.data() + t * r, xdbl.data() + t * xw,
                  static_cast<size_t>(r) * sizeof(float));
    }
    Tell(observe, 2, row0, rank.data(), n, r);
  }
  LinearF32(xdbl.data(), xw, W(lw, "mixer.dt_proj.weight"), r, dt.data(), di, n, di, r, false,
            pool);
  const float* dt_bias = W(lw, "mixer.dt_proj.bias");
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t i = 0; i < di; ++i) dt[t * di + i] = Softplus(dt[t * di + i] + dt_bias[i]);
  }
  const float* a_log = W(lw, "mixer.A_log");
  for (int64_t i = 0; i < di * ns; ++i) a[i] = -std::exp(a_log[i]);
  const float* dskip = W(lw, "mixer.D");
  ForChannels(pool, n, di, [&](int64_t c0, int64_t c1) {
    SelectiveScan(u.data(), dt.data(), a.data(), xdbl.data() + r, xdbl.data() + r + ns, xw, dskip,
                  xz.data() + di, 2 * di, n, di, ns, c0, c1, h, y.data());
  });
  Tell(observe, 3, row0, y.data(), n, di);
  std::vector<float> out(static_cast<size_t>(n * d));
  LinearF32(y.data(), di, W(lw, "mixer.out_proj.weight"), di, out.data(), d, n, d, di, false, pool);
  AddBias(out.data(), Optional(lw, "mixer.out_proj.bias"), n, d);
  for (int64_t i = 0; i < n * d; ++i) x[i] += out[i];
}

// RWKV-4's block on x [n, D] in place (layer 0 first replaces x by pre_ln(x)):
//   x += output(sigmoid(receptance(xr)) * wkv(key(xk), value(xv))),  xk/xv/xr token-shift mixes
//        of ln1(x);
//   x += sigmoid(receptance(xr')) * value(relu(key(xk'))^2),  mixes of ln2(x);
// output and value scaled by 2^-(layer / rescale_every), x halved after every rescale_every-th
// layer, as transformers' inference does (exactly: a power of two commutes with fp32 rounding).
// State: time-mix shift row [D], channel-mix shift row [D], WKV num, den, max [A] each.
// Linear inputs told: 0-2 attention key/value/receptance, 3 attention.output, 4 feed_forward.key,
// 5 feed_forward.receptance, 6 feed_forward.value.
void RwkvBlock(const ModelConfig& c, const LayerWeights& lw, int64_t layer, float* x, int64_t n,
               float* state, const LinearInputObserver* observe, int64_t row0, ThreadPool& pool) {
  const int64_t d = c.hidden_size, att = c.attention_hidden_size, ffn = c.intermediate_size;
  const float eps = static_cast<float>(c.rms_norm_eps);
  float* const att_shift = state;
  float* const ffn_shift = state + d;
  float* const num = state + 2 * d;
  float* const den = num + att;
  float* const max = den + att;
  const float out_scale =
      c.rescale_every > 0 ? std::ldexp(1.0f, -static_cast<int>(layer / c.rescale_every)) : 1.0f;

  if (layer == 0) LayerNormRows(x, W(lw, "pre_ln.weight"), W(lw, "pre_ln.bias"), x, n, d, eps);
  std::vector<float> normed(static_cast<size_t>(n * d)), mixed(static_cast<size_t>(3 * n * d)),
      kvr(static_cast<size_t>(3 * n * att)), wkv(static_cast<size_t>(n * att)),
      out(static_cast<size_t>(n * d));

  // Time-mix.
  LayerNormRows(x, W(lw, "ln1.weight"), W(lw, "ln1.bias"), normed.data(), n, d, eps);
  const char* const att_mix[] = {"attention.time_mix_key", "attention.time_mix_value",
                                 "attention.time_mix_receptance"};
  const char* const att_lin[] = {"attention.key.weight", "attention.value.weight",
                                 "attention.receptance.weight"};
  for (int i = 0; i < 3; ++i) {
    float* m = mixed.data() + i * n * d;
    TokenShiftMix(normed.data(), att_shift, W(lw, att_mix[i]), n, d, m);
    Tell(observe, i, row0, m, n, d);
    LinearF32(m, d, W(lw, att_lin[i]), d, kvr.data() + i * n * att, att, n, att, d, false, pool);
  }
  std::memcpy(att_shift, normed.data() + (n - 1) * d, static_cast<size_t>(d) * sizeof(float));
  const float* kk = kvr.data();
  const float* vv = kk + n * att;
  float* rr = kvr.data() + 2 * n * att;
  std::vector<float> decay(static_cast<size_t>(att));
  const float* time_decay = W(lw, "attention.time_decay");
  for (int64_t i = 0; i < att; ++i) decay[i] = -std::exp(time_decay[i]);
  const float* first = W(lw, "attention.time_first");
  ForChannels(pool, n, att, [&](int64_t c0, int64_t c1) {
    WkvScan(kk, vv, decay.data(), first, n, att, c0, c1, num, den, max, wkv.data());
  });
  for (int64_t i = 0; i < n * att; ++i) wkv[i] = Sigmoid(rr[i]) * wkv[i];
  Tell(observe, 3, row0, wkv.data(), n, att);
  LinearF32(wkv.data(), att, W(lw, "attention.output.weight"), att, out.data(), d, n, d, att, false,
            pool);
  for (int64_t i = 0; i < n * d; ++i) x[i] += out[i] * out_scale;

  // Channel-mix.
  LayerNormRows(x, W(lw, "ln2.weight"), W(lw, "ln2.bias"), normed.data(), n, d, eps);
  float* const mk = mixed.data();
  float* const mr = mixed.data() + n * d;
  TokenShiftMix(normed.data(), ffn_shift, W(lw, "feed_forward.time_mix_key"), n, d, mk);
  TokenShiftMix(normed.data(), ffn_shift, W(lw, "feed_forward.time_mix_receptance"), n, d, mr);
  std::memcpy(ffn_shift, normed.data() + (n - 1) * d, static_cast<size_t>(d) * sizeof(float));
  Tell(observe, 4, row0, mk, n, d);
  Tell(observe, 5, row0, mr, n, d);
  std::vector<float> key(static_cast<size_t>(n * ffn)), rec(static_cast<size_t>(n * d));
  LinearF32(mk, d, W(lw, "feed_forward.key.weight"), d, key.data(), ffn, n, ffn, d, false, pool);
  for (float& v : key) v = v > 0 ? v * v : 0.0f;  // torch.square(torch.relu(k))
  Tell(observe, 6, row0, key.data(), n, ffn);
  LinearF32(mr, d, W(lw, "feed_forward.receptance.weight"), d, rec.data(), d, n, d, d, false, pool);
  LinearF32(key.data(), ffn, W(lw, "feed_forward.value.weight"), ffn, out.data(), d, n, d, ffn,
            false, pool);
  for (int64_t i = 0; i < n * d; ++i) x[i] += Sigmoid(rec[i]) * (out[i] * out_scale);
  if (c.rescale_every > 0 && (layer + 1) % c.rescale_every == 0) {
    for (int64_t i = 0; i < n * d; ++i) x[i] *= 0.5f;
  }
}

}  // namespace

void Model::RecurrentWalk(int64_t layer, float* x, int64_t n, int64_t pos0, KvCache* cache,
                          const LinearInputObserver* observe, int64_t row0) const {
  const RecurrentSpec& spec = *arch_->recurrent;
  std::vector<float> fresh;
  float* state = nullptr;
  if (cache != nullptr) {
    state = cache->state(layer);
  } else {
    fresh.resize(static_cast<size_t>(RecurrentStateFloats(spec, config_)));
    state = fresh.data();
  }
  if (cache == nullptr || pos0 == 0) InitState(spec, config_, state);
  if (n == 0) return;
  const LayerWeights& lw = weights_.layers[static_cast<size_t>(layer)];
  switch (spec.kind) {
    case RecurrentKind::kMamba:
      return MambaBlock(config_, lw, x, n, state, observe, row0, *pool_);
    case RecurrentKind::kRwkv:
      return RwkvBlock(config_, lw, layer, x, n, state, observe, row0, *pool_);
    case RecurrentKind::kCount:
      break;
  }
  AWQ_CHECK(false && "invalid recurrent kind");
}

void Model::RecurrentBlockBatch(int64_t layer, float* x, int64_t n_seq, int64_t seq_len,
                                const LinearInputObserver* observe) const {
  AWQ_CHECK(arch_->recurrent != nullptr);
  const int64_t d = config_.hidden_size;
  for (int64_t s = 0; s < n_seq; ++s) {
    RecurrentWalk(layer, x + s * seq_len * d, seq_len, 0, nullptr, observe, s * seq_len);
  }
}

void Model::RecurrentForward(const int32_t* tokens, int64_t n, KvCache& cache,
                             float* hidden) const {
  const int64_t d = config_.hidden_size;
  const int64_t pos0 = cache.size();
  if (pos0 + n > cache.capacity()) {
    throw Error("KV cache full: " + std::to_string(pos0) + " + " + std::to_string(n) +
                " tokens exceed its capacity of " + std::to_string(cache.capacity()));
  }
  AWQ_CHECK(cache.state_floats() == RecurrentStateFloats(*arch_->recurrent, config_));
  std::vector<float> x(static_cast<size_t>(n * d));
  EmbedTokens(tokens, n, x.data());
  for (int64_t l = 0; l < config_.num_hidden_layers; ++l) {
    RecurrentWalk(l, x.data(), n, pos0, &cache, nullptr, 0);
  }
  cache.Advance(n);
  if (arch_->recurrent->final_norm_bias) {
    LayerNormRows(x.data(), weights_.final_norm.data<float>(),
                  weights_.final_norm_bias.data<float>(), hidden, n, d, kRwkvOutEps);
  } else {
    RmsNormRows(x.data(), d, weights_.final_norm.data<float>(), hidden, d, n, d,
                static_cast<float>(config_.rms_norm_eps));
  }
}

}  // namespace awq
