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

// Mamba's block on n_seq sequences of seq_len tokens, x [n_seq * seq_len, D] in place:
// x += out_proj(scan(conv(in_proj(norm(x))))). The products run once over every row; the
// convolution and the scan run per sequence, sequence s continuing from state + s * `floats`:
// conv [K-1, Di] (the last inputs of the convolution), then scan h [Di, N].
// Linear inputs told: 0 in_proj (normed x), 1 x_proj (u), 2 dt_proj (dt rank rows), 3 out_proj.
void MambaBlock(const ModelConfig& c, const LayerWeights& lw, float* x, int64_t n_seq,
                int64_t seq_len, float* state, int64_t floats, const LinearInputObserver* observe,
                int64_t row0, ThreadPool& pool) {
  const int64_t d = c.hidden_size, di = c.intermediate_size, ns = c.state_size,
                r = c.time_step_rank, k = c.conv_kernel, xw = r + 2 * ns;
  const int64_t n = n_seq * seq_len;
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
  for (int64_t q = 0; q < n_seq; ++q) {
    CausalConvSilu(xz.data() + q * seq_len * 2 * di, 2 * di, seq_len, di,
                   W(lw, "mixer.conv1d.weight"), Optional(lw, "mixer.conv1d.bias"), k,
                   state + q * floats, u.data() + q * seq_len * di);
  }
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
  for (int64_t q = 0; q < n_seq; ++q) {
    const int64_t t0 = q * seq_len;
    float* h = state + q * floats + (k - 1) * di;
    ForChannels(pool, seq_len, di, [&](int64_t c0, int64_t c1) {
      SelectiveScan(u.data() + t0 * di, dt.data() + t0 * di, a.data(), xdbl.data() + t0 * xw + r,
                    xdbl.data() + t0 * xw + r + ns, xw, dskip, xz.data() + t0 * 2 * di + di, 2 * di,
                    seq_len, di, ns, c0, c1, h, y.data() + t0 * di);
    });
  }
  Tell(observe, 3, row0, y.data(), n, di);
  std::vector<float> out(static_cast<size_t>(n * d));
  LinearF32(y.data(), di, W(lw, "mixer.out_proj.weight"), di, out.data(), d, n, d, di, false, pool);
  AddBias(out.data(), Optional(lw, "mixer.out_proj.bias"), n, d);
  for (int64_t i = 0; i < n * d; ++i) x[i] += out[i];
}

// RWKV-4's block on n_seq sequences of seq_len tokens, x [n_seq * seq_len, D] in place (layer 0
// first replaces x by pre_ln(x)); the products run once over every row, the token shifts and the
// WKV per sequence, sequence s continuing from state + s * `floats`:
//   x += output(sigmoid(receptance(xr)) * wkv(key(xk), value(xv))),  xk/xv/xr token-shift mixes
//        of ln1(x);
//   x += sigmoid(receptance(xr')) * value(relu(key(xk'))^2),  mixes of ln2(x);
// output and value scaled by 2^-(layer / rescale_every), x halved after every rescale_every-th
// layer, as transformers' inference does (exactly: a power of two commutes with fp32 rounding).
// State: time-mix shift row [D], channel-mix shift row [D], WKV num, den, max [A] each.
// Linear inputs told: 0-2 attention key/value/receptance, 3 attention.output, 4 feed_forward.key,
// 5 feed_forward.receptance, 6 feed_forward.value.
void RwkvBlock(const ModelConfig& c, const LayerWeights& lw, int64_t layer, float* x, int64_t n_seq,
               int64_t seq_len, float* state, int64_t floats, const LinearInputObserver* observe,
               int64_t row0, ThreadPool& pool) {
  const int64_t d = c.hidden_size, att = c.attention_hidden_size, ffn = c.intermediate_size;
  const int64_t n = n_seq * seq_len;
  const float eps = static_cast<float>(c.rms_norm_eps);
  // Sequence q's parts of the state.
  const auto att_shift = [&](int64_t q) { return state + q * floats; };
  const auto ffn_shift = [&](int64_t q) { return state + q * floats + d; };
  const auto wkv_state = [&](int64_t q) { return state + q * floats + 2 * d; };
  // x [n, D] token-shift mixed per sequence with the shift rows `shift(q)`.
  const auto shift_mix = [&](const float* rows, auto shift, const float* mix, float* out) {
    for (int64_t q = 0; q < n_seq; ++q) {
      TokenShiftMix(rows + q * seq_len * d, shift(q), mix, seq_len, d, out + q * seq_len * d);
    }
  };
  // The last row of each sequence becomes its shift row.
  const auto keep_last = [&](const float* rows, auto shift) {
    for (int64_t q = 0; q < n_seq; ++q) {
      std::memcpy(shift(q), rows + ((q + 1) * seq_len - 1) * d,
                  static_cast<size_t>(d) * sizeof(float));
    }
  };
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
    shift_mix(normed.data(), att_shift, W(lw, att_mix[i]), m);
    Tell(observe, i, row0, m, n, d);
    LinearF32(m, d, W(lw, att_lin[i]), d, kvr.data() + i * n * att, att, n, att, d, false, pool);
  }
  keep_last(normed.data(), att_shift);
  const float* kk = kvr.data();
  const float* vv = kk + n * att;
  float* rr = kvr.data() + 2 * n * att;
  std::vector<float> decay(static_cast<size_t>(att));
  const float* time_decay = W(lw, "attention.time_decay");
  for (int64_t i = 0; i < att; ++i) decay[i] = -std::exp(time_decay[i]);
  const float* first = W(lw, "attention.time_first");
  for (int64_t q = 0; q < n_seq; ++q) {
    const int64_t t0 = q * seq_len;
    float* num = wkv_state(q);
    ForChannels(pool, seq_len, att, [&](int64_t c0, int64_t c1) {
      WkvScan(kk + t0 * att, vv + t0 * att, decay.data(), first, seq_len, att, c0, c1, num,
              num + att, num + 2 * att, wkv.data() + t0 * att);
    });
  }
  for (int64_t i = 0; i < n * att; ++i) wkv[i] = Sigmoid(rr[i]) * wkv[i];
  Tell(observe, 3, row0, wkv.data(), n, att);
  LinearF32(wkv.data(), att, W(lw, "attention.output.weight"), att, out.data(), d, n, d, att, false,
            pool);
  for (int64_t i = 0; i < n * d; ++i) x[i] += out[i] * out_scale;

  // Channel-mix.
  LayerNormRows(x, W(lw, "ln2.weight"), W(lw, "ln2.bias"), normed.data(), n, d, eps);
  float* const mk = mixed.data();
  float* const mr = mixed.data() + n * d;
  shift_mix(normed.data(), ffn_shift, W(lw, "feed_forward.time_mix_key"), mk);
  shift_mix(normed.data(), ffn_shift, W(lw, "feed_forward.time_mix_receptance"), mr);
  keep_last(normed.data(), ffn_shift);
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

namespace {

// Runs layer `layer`'s block on n_seq sequences, each continuing from its state.
void RunBlock(const RecurrentSpec& spec, const ModelConfig& c, const LayerWeights& lw,
              int64_t layer, float* x, int64_t n_seq, int64_t seq_len, float* state,
              const LinearInputObserver* observe, int64_t row0, ThreadPool& pool) {
  const int64_t floats = RecurrentStateFloats(spec, c);
  switch (spec.kind) {
    case RecurrentKind::kMamba:
      return MambaBlock(c, lw, x, n_seq, seq_len, state, floats, observe, row0, pool);
    case RecurrentKind::kRwkv:
      return RwkvBlock(c, lw, layer, x, n_seq, seq_len, state, floats, observe, row0, pool);
    case RecurrentKind::kCount:
      break;
  }
  AWQ_CHECK(false && "invalid recurrent kind");
}

// Tokens per block call of RecurrentBlockBatch (whole sequences, at least one): the products run
// on batches this wide, and Mamba's buffers hold about 6 d_inner floats per token, ~250 MiB at
// Mamba-2.8B's d_inner 5120.
constexpr int64_t kBatchTokens = 2048;

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
  RunBlock(spec, config_, weights_.layers[static_cast<size_t>(layer)], layer, x, 1, n, state,
           observe, row0, *pool_);
}

void Model::RecurrentBlockBatch(int64_t layer, float* x, int64_t n_seq, int64_t seq_len,
                                const LinearInputObserver* observe) const {
  AWQ_CHECK(arch_->recurrent != nullptr);
  const RecurrentSpec& spec = *arch_->recurrent;
  const int64_t d = config_.hidden_size, floats = RecurrentStateFloats(spec, config_);
  const int64_t per_call = std::max<int64_t>(1, kBatchTokens / std::max<int64_t>(1, seq_len));
  std::vector<float> states;
  for (int64_t s0 = 0; s0 < n_seq; s0 += per_call) {
    const int64_t m = std::min(per_call, n_seq - s0);
    states.resize(static_cast<size_t>(m * floats));
    for (int64_t q = 0; q < m; ++q) InitState(spec, config_, states.data() + q * floats);
    RunBlock(spec, config_, weights_.layers[static_cast<size_t>(layer)], layer,
             x + s0 * seq_len * d, m, seq_len, states.data(), observe, s0 * seq_len, *pool_);
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
