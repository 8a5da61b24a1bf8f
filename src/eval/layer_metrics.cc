// Per-linear comparison of a quantized model with its reference, invariant to AWQ's scale
// folding: recover the folded scales, compare unfolded weights, and compare outputs with each
// model fed its own input on the reference hidden state (docs/METRICS.md).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "awq/calibration.h"
#include "awq/error.h"
#include "awq/metrics.h"
#include "awq/model.h"
#include "awq/quantize.h"
#include "awq/thread_pool.h"
#include "kernels/cpu/sgemm.h"

namespace awq {

namespace {

// Tokens per chunk of the per-block pass (the activations of one chunk are alive at a time).
constexpr int64_t kChunkTokens = 2048;

// s_j = ref_norm_j / quant_norm_j; 1 where either is 0 (nothing to recover).
std::vector<float> ScalesFromNorms(const float* ref, const float* quant, int64_t d) {
  std::vector<float> s(static_cast<size_t>(d), 1.0f);
  for (int64_t j = 0; j < d; ++j) {
    if (ref[j] != 0 && quant[j] != 0) s[static_cast<size_t>(j)] = ref[j] / quant[j];
    if (!std::isfinite(s[static_cast<size_t>(j)]) || s[static_cast<size_t>(j)] <= 0) {
      s[static_cast<size_t>(j)] = 1.0f;
    }
  }
  return s;
}

// Least squares per column: s_j = <w_hat[:,j], w[:,j]> / ||w[:,j]||^2 (1 for a zero column).
std::vector<float> ScalesFromFit(const float* w, const float* w_hat, int64_t out, int64_t in) {
  std::vector<double> num(static_cast<size_t>(in), 0.0), den(num.size(), 0.0);
  for (int64_t o = 0; o < out; ++o) {
    for (int64_t j = 0; j < in; ++j) {
      const double a = w[o * in + j], b = w_hat[o * in + j];
      num[static_cast<size_t>(j)] += a * b;
      den[static_cast<size_t>(j)] += a * a;
    }
  }
  std::vector<float> s(num.size(), 1.0f);
  for (size_t j = 0; j < s.size(); ++j) {
    const double v = den[j] > 0 ? num[j] / den[j] : 1.0;
    s[j] = std::isfinite(v) && v > 0 ? static_cast<float>(v) : 1.0f;
  }
  return s;
}

// diag(row_s) w_hat diag(1/col_s), into a new buffer; row_s empty means ones.
std::vector<float> Unfold(const float* w_hat, int64_t out, int64_t in,
                          const std::vector<float>& col_s, const std::vector<float>& row_s) {
  std::vector<float> u(static_cast<size_t>(out * in));
  for (int64_t o = 0; o < out; ++o) {
    const float r = row_s.empty() ? 1.0f : row_s[static_cast<size_t>(o)];
    for (int64_t j = 0; j < in; ++j) {
      u[static_cast<size_t>(o * in + j)] = w_hat[o * in + j] / col_s[static_cast<size_t>(j)] * r;
    }
  }
  return u;
}

// One linear during the pass: its reference and quantized weights, unfolded copy, accumulator.
struct LinearState {
  LinearComparison result;
  const float* w = nullptr;      // reference [out, in]
  const float* w_hat = nullptr;  // quantized, as stored (folded) [out, in]
  std::vector<float> unfolded;   // diag(row_s) w_hat diag(1/s)
  std::vector<float> row_s;      // output rows divided by the next linear's scale (up, v), or empty
  int64_t out = 0, in = 0;
  bool own_input = false;  // "norm": the quantized side gets its own normed input
  TensorMetricsAccumulator acc;
};

void AccumulateOutputs(LinearState& st, const float* x, const float* x_hat, int64_t n,
                       std::vector<float>& y, std::vector<float>& y_hat) {
  y.resize(static_cast<size_t>(n * st.out));
  y_hat.resize(y.size());
  LinearF32(x, st.in, st.w, st.in, y.data(), st.out, n, st.out, st.in, false, ThreadPool::Global());
  if (st.own_input) {
    LinearF32(x_hat, st.in, st.w_hat, st.in, y_hat.data(), st.out, n, st.out, st.in, false,
              ThreadPool::Global());
    // Undo the 1/s folded into this linear's output rows (what the next linear multiplies back).
    if (!st.row_s.empty()) {
      for (int64_t t = 0; t < n; ++t) {
        for (int64_t o = 0; o < st.out; ++o)
          y_hat[static_cast<size_t>(t * st.out + o)] *= st.row_s[static_cast<size_t>(o)];
      }
    }
  } else {
    LinearF32(x, st.in, st.unfolded.data(), st.in, y_hat.data(), st.out, n, st.out, st.in, false,
              ThreadPool::Global());
  }
  st.acc.Add(y.data(), y_hat.data(), n * st.out);
}

void CheckSame(const char* field, int64_t a, int64_t b) {
  if (a != b) {
    throw Error(std::string("the reference and the quantized model differ in ") + field + ": " +
                std::to_string(a) + " vs " + std::to_string(b));
  }
}

}  // namespace

std::vector<LinearComparison> CompareLinears(const Model& reference, const Model& quantized,
                                             const CalibrationBatch& batch) {
  reference.RequireFp32Weights("comparing linears (reference model)");
  quantized.RequireFp32Weights("comparing linears (quantized model)");
  const ModelConfig& c = reference.config();
  const ModelConfig& cq = quantized.config();
  CheckSame("num_hidden_layers", c.num_hidden_layers, cq.num_hidden_layers);
  CheckSame("hidden_size", c.hidden_size, cq.hidden_size);
  CheckSame("intermediate_size", c.intermediate_size, cq.intermediate_size);
  CheckSame("num_attention_heads", c.num_attention_heads, cq.num_attention_heads);
  CheckSame("num_key_value_heads", c.num_key_value_heads, cq.num_key_value_heads);
  CheckSame("head_dim", c.head_dim, cq.head_dim);
  const int64_t seq_len = batch.seq_len, n_seq_total = batch.n_blocks;
  if (n_seq_total <= 0 || seq_len <= 0) throw Error("comparing linears needs calibration tokens");
  const int64_t d = c.hidden_size, hd = c.head_dim, qd = c.num_attention_heads * hd,
                kvd = c.num_key_value_heads * hd, inter = c.intermediate_size;
  const int64_t n_total = n_seq_total * seq_len;
  const ModelWeights& rw = reference.weights();
  const ModelWeights& qw = quantized.weights();
  const int64_t vocab = rw.embed.dim(0);

  // The reference hidden state of every calibration token [n_total, D], advanced block by block.
  std::vector<float> x(static_cast<size_t>(n_total * d));
  for (int64_t t = 0; t < n_total; ++t) {
    const int32_t id = batch.tokens[static_cast<size_t>(t)];
    if (id < 0 || id >= vocab) {
      throw Error("calibration token " + std::to_string(id) + " is outside the vocabulary");
    }
    std::memcpy(x.data() + t * d, rw.embed.data<float>() + static_cast<int64_t>(id) * d,
                static_cast<size_t>(d) * sizeof(float));
  }
  const int64_t seqs_per_chunk = std::max<int64_t>(1, kChunkTokens / seq_len);
  const int64_t max_n = std::min(seqs_per_chunk, n_seq_total) * seq_len;
  std::vector<float> in_ref(static_cast<size_t>(max_n * d)), in_q(in_ref.size()),
      tmp(in_ref.size()), ctx(static_cast<size_t>(max_n * qd)),
      act(static_cast<size_t>(max_n * inter)), y, y_hat;

  std::vector<LinearComparison> results;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const LayerWeights& lr = rw.layers[static_cast<size_t>(l)];
    const LayerWeights& lq = qw.layers[static_cast<size_t>(l)];
    const std::vector<std::string> names = LinearNames(l);
    // Row offsets into the fused tensors, LinearNames order: q, k, v, o, gate, up, down.
    struct Part {
      const Tensor* ref;
      const Tensor* quant;
      int64_t row0, rows, in;
    };
    const Part parts[7] = {{&lr.wqkv, &lq.wqkv, 0, qd, d},
                           {&lr.wqkv, &lq.wqkv, qd, kvd, d},
                           {&lr.wqkv, &lq.wqkv, qd + kvd, kvd, d},
                           {&lr.wo, &lq.wo, 0, d, qd},
                           {&lr.w_gate_up, &lq.w_gate_up, 0, inter, d},
                           {&lr.w_gate_up, &lq.w_gate_up, inter, inter, d},
                           {&lr.w_down, &lq.w_down, 0, d, inter}};
    const std::vector<float> s_attn =
        ScalesFromNorms(lr.attn_norm.data<float>(), lq.attn_norm.data<float>(), d);
    const std::vector<float> s_ffn =
        ScalesFromNorms(lr.ffn_norm.data<float>(), lq.ffn_norm.data<float>(), d);
    // Column scales per linear: the norms' for q/k/v and gate/up, fitted for o and down. The
    // row scales: up_proj's rows carry 1/s_down, v_proj's 1/s_o (only when v and o have the same
    // width: with grouped-query attention AWQ never scales that pair).
    std::vector<LinearState> st(7);
    for (size_t i = 0; i < 7; ++i) {
      const Part& p = parts[i];
      st[i].out = p.rows;
      st[i].in = p.in;
      st[i].w = p.ref->data<float>() + p.row0 * p.in;
      st[i].w_hat = p.quant->data<float>() + p.row0 * p.in;
      st[i].own_input = i != 3 && i != 6;
    }
    // With grouped-query attention (v narrower than o's input) AWQ cannot fold into v, so o_proj
    // is known to be unscaled: s_o = 1 exactly instead of a fit that would absorb noise.
    const bool o_folded = kvd == qd;
    const std::vector<float> s_o = o_folded ? ScalesFromFit(st[3].w, st[3].w_hat, d, qd)
                                            : std::vector<float>(static_cast<size_t>(qd), 1.0f);
    const std::vector<float> s_down = ScalesFromFit(st[6].w, st[6].w_hat, d, inter);
    if (o_folded) st[2].row_s = s_o;
    st[5].row_s = s_down;
    for (size_t i = 0; i < 7; ++i) {
      LinearState& s = st[i];
      const std::vector<float>& scales = i < 3 ? s_attn : i == 3 ? s_o : i < 6 ? s_ffn : s_down;
      s.unfolded = Unfold(s.w_hat, s.out, s.in, scales, s.row_s);
      s.result.module = names[i];
      s.result.unfold = s.own_input ? "norm" : (i == 3 && !o_folded) ? "none" : "fit";
      const auto [mn, mx] = std::minmax_element(scales.begin(), scales.end());
      s.result.scale_min = *mn;
      s.result.scale_max = *mx;
      s.result.weight = CompareTensors(s.w, s.unfolded.data(), s.out * s.in);
    }
    const float* bqkv = lr.bqkv.empty() ? nullptr : lr.bqkv.data<float>();
    for (int64_t s0 = 0; s0 < n_seq_total; s0 += seqs_per_chunk) {
      const int64_t n_seq = std::min(seqs_per_chunk, n_seq_total - s0);
      const int64_t n = n_seq * seq_len;
      float* xc = x.data() + s0 * seq_len * d;
      reference.Norm(xc, lr.attn_norm.data<float>(), n, in_ref.data());
      quantized.Norm(xc, lq.attn_norm.data<float>(), n, in_q.data());
      for (size_t i = 0; i < 3; ++i)
        AccumulateOutputs(st[i], in_ref.data(), in_q.data(), n, y, y_hat);
      reference.AttentionBatch(lr.wqkv.data<float>(), bqkv, lr.wo.data<float>(), in_ref.data(),
                               n_seq, seq_len, ctx.data(), tmp.data());
      AccumulateOutputs(st[3], ctx.data(), nullptr, n, y, y_hat);
      for (int64_t i = 0; i < n * d; ++i) xc[i] += tmp[static_cast<size_t>(i)];
      reference.Norm(xc, lr.ffn_norm.data<float>(), n, in_ref.data());
      quantized.Norm(xc, lq.ffn_norm.data<float>(), n, in_q.data());
      for (size_t i = 4; i < 6; ++i)
        AccumulateOutputs(st[i], in_ref.data(), in_q.data(), n, y, y_hat);
      reference.MlpBatch(lr.w_gate_up.data<float>(), lr.w_down.data<float>(), in_ref.data(), n,
                         act.data(), tmp.data());
      AccumulateOutputs(st[6], act.data(), nullptr, n, y, y_hat);
      for (int64_t i = 0; i < n * d; ++i) xc[i] += tmp[static_cast<size_t>(i)];
    }
    for (LinearState& s : st) {
      s.result.output = s.acc.Result();
      results.push_back(std::move(s.result));
    }
  }
  return results;
}

}  // namespace awq
