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
#include "awq/thread_pool.h"
#include "kernels/cpu/sgemm.h"
#include "model/arch.h"

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

// The weights a norm multiplies by: w, or 1 + w for Gemma's form.
std::vector<float> EffectiveNorm(NormKind kind, const Tensor& w) {
  std::vector<float> e(w.data<float>(), w.data<float>() + w.numel());
  if (kind == NormKind::kRmsOnePlus) {
    for (float& v : e) v += 1.0f;
  }
  return e;
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
  if (ArchitectureOf(c).recurrent != nullptr) {
    throw Error("comparing linears: model_type " + c.model_type +
                " is recurrent, and its layers have none of the attention and MLP points "
                "observed (docs/RECURRENT.md)");
  }
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

  const Architecture& arch = ArchitectureOf(c);
  const NormKind kind = arch.recipe.norm;
  const RowRange v_rows = SlotRows(c, Slot::kQkv, Part::kV);
  const RowRange up_rows = SlotRows(c, Slot::kGateUp, Part::kUp);

  // The reference hidden state of every calibration token [n_total, D], advanced block by block.
  for (int64_t t = 0; t < n_total; ++t) {
    const int32_t id = batch.tokens[static_cast<size_t>(t)];
    if (id < 0 || id >= vocab) {
      throw Error("calibration token " + std::to_string(id) + " is outside the vocabulary");
    }
  }
  std::vector<float> x(static_cast<size_t>(n_total * d));
  reference.EmbedTokens(batch.tokens.data(), n_total, x.data());
  const int64_t seqs_per_chunk = std::max<int64_t>(1, kChunkTokens / seq_len);
  std::vector<float> in_q, y, y_hat;

  std::vector<LinearComparison> results;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const LayerWeights& lr = rw.layers[static_cast<size_t>(l)];
    const LayerWeights& lq = qw.layers[static_cast<size_t>(l)];
    const std::vector<std::string> names = LinearNames(c, l);
    const Tensor* ref_slots[] = {&lr.wqkv, &lr.wo, &lr.w_gate_up, &lr.w_down};
    const Tensor* q_slots[] = {&lq.wqkv, &lq.wo, &lq.w_gate_up, &lq.w_down};
    // The norms' effective weights (w, or Gemma's 1 + w) give the folded scales s = ref / quant
    // and turn the reference's normed input into the quantized model's.
    const std::vector<float> ra = EffectiveNorm(kind, lr.attn_norm),
                             qa = EffectiveNorm(kind, lq.attn_norm);
    const std::vector<float> rf = EffectiveNorm(kind, lr.ffn_norm),
                             qf = EffectiveNorm(kind, lq.ffn_norm);
    const std::vector<float> s_attn = ScalesFromNorms(ra.data(), qa.data(), d);
    const std::vector<float> s_ffn = ScalesFromNorms(rf.data(), qf.data(), d);
    // With grouped-query attention (v narrower than o's input) AWQ cannot fold into v, so o_proj
    // is known to be unscaled: s_o = 1 exactly instead of a fit that would absorb noise.
    const bool o_folded = kvd == qd;
    const std::vector<float> s_o =
        o_folded ? ScalesFromFit(lr.wo.data<float>(), lq.wo.data<float>(), d, qd)
                 : std::vector<float>(static_cast<size_t>(qd), 1.0f);
    const std::vector<float> s_down =
        ScalesFromFit(lr.w_down.data<float>(), lq.w_down.data<float>(), d, inter);
    const std::vector<float>* col_scales[] = {&s_attn, &s_o, &s_ffn, &s_down};
    std::vector<LinearState> st(arch.linears.size());
    for (size_t i = 0; i < st.size(); ++i) {
      const LinearSpec& spec = arch.linears[i];
      const RowRange r = SlotRows(c, spec.slot, spec.part);
      const size_t si = static_cast<size_t>(spec.slot);
      LinearState& s = st[i];
      s.out = r.rows;
      s.in = r.in;
      s.w = ref_slots[si]->data<float>() + r.row0 * r.in;
      s.w_hat = q_slots[si]->data<float>() + r.row0 * r.in;
      s.own_input = spec.slot == Slot::kQkv || spec.slot == Slot::kGateUp;
      // Rows that carry the next linear's 1/s: v's (s_o) and up's (s_down), wherever they sit.
      const auto rows_of = [&](const RowRange& owner, const std::vector<float>& sv) {
        for (int64_t o = 0; o < r.rows; ++o) {
          const int64_t row = r.row0 + o - owner.row0;
          if (row < 0 || row >= owner.rows) continue;
          if (s.row_s.empty()) s.row_s.assign(static_cast<size_t>(r.rows), 1.0f);
          s.row_s[static_cast<size_t>(o)] = sv[static_cast<size_t>(row)];
        }
      };
      if (spec.slot == Slot::kQkv && o_folded) rows_of(v_rows, s_o);
      if (spec.slot == Slot::kGateUp) rows_of(up_rows, s_down);
      const std::vector<float>& scales = *col_scales[si];
      s.unfolded = Unfold(s.w_hat, s.out, s.in, scales, s.row_s);
      s.result.module = names[i];
      s.result.unfold = s.own_input                            ? "norm"
                        : (spec.slot == Slot::kO && !o_folded) ? "none"
                                                               : "fit";
      const auto [mn, mx] = std::minmax_element(scales.begin(), scales.end());
      s.result.scale_min = *mn;
      s.result.scale_max = *mx;
      s.result.weight = CompareTensors(s.w, s.unfolded.data(), s.out * s.in);
    }
    // The reference's block walk, observed: each linear compared on its slot's input, the
    // quantized side of q/k/v and gate/up fed its own norm's output of the same hidden state.
    const BlockObserver observe = [&](BlockPoint p, int64_t, const float* rows, int64_t n,
                                      int64_t width) {
      Slot slot;
      const std::vector<float>* rq = nullptr;  // the norms: reference, quantized
      const std::vector<float>* qq = nullptr;
      switch (p) {
        case BlockPoint::kAttnIn:
          slot = Slot::kQkv, rq = &ra, qq = &qa;
          break;
        case BlockPoint::kAttnCtx:
          slot = Slot::kO;
          break;
        case BlockPoint::kMlpIn:
          slot = Slot::kGateUp, rq = &rf, qq = &qf;
          break;
        case BlockPoint::kMlpAct:
          slot = Slot::kDown;
          break;
        default:
          return;
      }
      if (rq != nullptr) {
        // norm_q(h) = norm_ref(h) * w_q / w_ref, per channel.
        in_q.resize(static_cast<size_t>(n * width));
        for (int64_t t = 0; t < n; ++t) {
          for (int64_t j = 0; j < width; ++j) {
            const float wr = (*rq)[static_cast<size_t>(j)];
            in_q[static_cast<size_t>(t * width + j)] =
                wr != 0 ? rows[t * width + j] / wr * (*qq)[static_cast<size_t>(j)] : 0.0f;
          }
        }
      }
      for (size_t i = 0; i < st.size(); ++i) {
        if (arch.linears[i].slot != slot) continue;
        AccumulateOutputs(st[i], rows, rq != nullptr ? in_q.data() : nullptr, n, y, y_hat);
      }
    };
    for (int64_t s0 = 0; s0 < n_seq_total; s0 += seqs_per_chunk) {
      const int64_t n_seq = std::min(seqs_per_chunk, n_seq_total - s0);
      reference.BlockForwardBatch(l, x.data() + s0 * seq_len * d, n_seq, seq_len, &observe);
    }
    for (LinearState& s : st) {
      s.result.output = s.acc.Result();
      results.push_back(std::move(s.result));
    }
  }
  return results;
}

}  // namespace awq
