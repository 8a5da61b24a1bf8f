// The whole-model quantization pipeline. AWQ runs block by block: capture the inputs of every
// linear while running the ORIGINAL block, search one scale vector per group against the
// original weights, fold them, search clipping, quantize, and hand the original block output to
// the next block (AWQ.md section 1), so only one block's activations are live at a time. GPTQ
// (and the GPTQ rounding of awq+gptq) instead feeds each block the output of the blocks already
// quantized and quantizes the block's linears in order (docs/GPTQ.md).
#include "awq/quantize.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <optional>
#include <string>

#include "awq/awq_search.h"
#include "awq/gptq.h"
#include "awq/model.h"
#include "awq/thread_pool.h"
#include "awq/tokenizer.h"
#include "kernels/cpu/sgemm.h"

namespace awq {

namespace {

using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// A linear of the current block: a row range of one of the model's (fused) weight tensors.
struct LinearRef {
  std::string name;    // "model.layers.3.self_attn.q_proj"
  float* w = nullptr;  // [rows, in]
  int64_t rows = 0;
  int64_t in = 0;
  std::optional<QuantParams> params;  // nullopt: not converted
};

struct BlockLinears {
  LinearRef q, k, v, o, gate, up, down;
};

BlockLinears Linears(Model& model, int64_t layer, const QuantConfig& qc) {
  const ModelConfig& c = model.config();
  LayerWeights& lw = model.weights().layers[static_cast<size_t>(layer)];
  const int64_t d = c.hidden_size, hd = c.head_dim, qd = c.num_attention_heads * hd,
                kvd = c.num_key_value_heads * hd, inter = c.intermediate_size;
  const std::string p = "model.layers." + std::to_string(layer) + ".";
  float* qkv = lw.wqkv.data<float>();
  float* gu = lw.w_gate_up.data<float>();
  BlockLinears b;
  b.q = {p + "self_attn.q_proj", qkv, qd, d, {}};
  b.k = {p + "self_attn.k_proj", qkv + qd * d, kvd, d, {}};
  b.v = {p + "self_attn.v_proj", qkv + (qd + kvd) * d, kvd, d, {}};
  b.o = {p + "self_attn.o_proj", lw.wo.data<float>(), d, qd, {}};
  b.gate = {p + "mlp.gate_proj", gu, inter, d, {}};
  b.up = {p + "mlp.up_proj", gu + inter * d, inter, d, {}};
  b.down = {p + "mlp.down_proj", lw.w_down.data<float>(), d, inter, {}};
  for (LinearRef* r : {&b.q, &b.k, &b.v, &b.o, &b.gate, &b.up, &b.down}) {
    r->params = qc.ParamsFor(r->name);
    // A group size that does not divide the width is a user error naming the layer.
    if (r->params) {
      try {
        GroupSize(*r->params, r->in);
      } catch (const Error& e) {
        throw Error(r->name + ": " + e.what() + " (set q_group_size to a divisor of " +
                    std::to_string(r->in) + ", or -1 for one group per row)");
      }
    }
  }
  return b;
}

// out [n, rows] = x [n, in] * w [rows, in]^T
void LinearF32Into(const float* x, const float* w, float* out, int64_t n, int64_t rows,
                   int64_t in) {
  LinearF32(x, in, w, in, out, rows, n, rows, in, false, ThreadPool::Global());
}

double MeanSquaredError(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double e = static_cast<double>(a[i]) - b[i];
    s += e * e;
  }
  return s / static_cast<double>(a.size());
}

// Candidate weights for one linear: Q(W diag(s)) diag(s)^-1, or W itself when not converted.
void CandidateWeights(const LinearRef& r, const std::vector<float>& s, float* out) {
  if (r.params) {
    ScaleQuantizeUnscale(r.w, out, r.rows, r.in, s, *r.params);
  } else {
    std::memcpy(out, r.w, static_cast<size_t>(r.rows * r.in) * sizeof(float));
  }
}

void ScaleColumns(float* w, int64_t rows, int64_t in, const std::vector<float>& s) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < in; ++c) w[r * in + c] *= s[static_cast<size_t>(c)];
  }
}
void DivideRows(float* w, int64_t rows, int64_t in, const std::vector<float>& s) {
  for (int64_t r = 0; r < rows; ++r) {
    const float inv = 1.0f / s[static_cast<size_t>(r)];
    for (int64_t c = 0; c < in; ++c) w[r * in + c] *= inv;
  }
}
void DivideColumns(float* x, int64_t n, int64_t d, const std::vector<float>& s) {
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t c = 0; c < d; ++c) x[t * d + c] /= s[static_cast<size_t>(c)];
  }
}

// The captured activations of one block (all rows = calibration tokens).
struct Captures {
  std::vector<float> in_attn;   // [N, D]    input of q/k/v
  std::vector<float> ctx;       // [N, H*hd] input of o_proj
  std::vector<float> attn_out;  // [N, D]    self-attention output
  std::vector<float> in_mlp;    // [N, D]    input of gate/up
  std::vector<float> act;       // [N, I]    input of down_proj
  std::vector<float> mlp_out;   // [N, D]    MLP output
};

// Quantizes the converted linears among `lins`, which all read `inputs` [n, in_dim], with GPTQ
// on one shared Hessian; the model keeps the dequantized weights.
void GptqGroup(const std::vector<LinearRef*>& lins, const float* inputs, int64_t n, int64_t in_dim,
               const GptqOptions& go, QuantizeResult& result, BlockReport& report) {
  std::string names;
  for (const LinearRef* r : lins) {
    if (!r->params) continue;
    names += (names.empty() ? "" : ", ") + r->name;
  }
  if (names.empty()) return;  // every linear of the group stays in full precision
  const auto t0 = Clock::now();
  HessianAccumulator acc(in_dim);
  acc.Add(inputs, n);
  const GptqFactor f = PrepareGptqHessian(acc.Hessian(), in_dim, go, names);
  for (LinearRef* r : lins) {
    if (!r->params) continue;
    GptqResult g = GptqQuantize(r->w, r->rows, r->in, f, *r->params, go, r->name);
    DequantizeLinear(g.q, r->w);
    report.gptq.push_back({r->name, g.loss});
    result.linears.emplace(r->name, std::move(g.q));
  }
  result.seconds.gptq += Since(t0);
}

// GPTQ over one decoder block, "true sequential": x [N, D] is the block's input as the blocks
// quantized so far compute it, and every linear's Hessian comes from its input recomputed with
// the linears before it already quantized (q/k/v, then o, then gate/up, then down). On return x
// is the block's output with every weight quantized: the next block's input.
void GptqBlock(Model& model, int64_t layer, BlockLinears& b, std::vector<float>& x, int64_t n_seq,
               int64_t seq_len, const GptqOptions& go, QuantizeResult& result,
               BlockReport& report) {
  const ModelConfig& c = model.config();
  const int64_t d = c.hidden_size, qd = c.num_attention_heads * c.head_dim,
                inter = c.intermediate_size, n = n_seq * seq_len;
  LayerWeights& lw = model.weights().layers[static_cast<size_t>(layer)];
  const float* bqkv = lw.bqkv.empty() ? nullptr : lw.bqkv.data<float>();
  std::vector<float> normed(static_cast<size_t>(n * d)), out(static_cast<size_t>(n * d));

  auto t0 = Clock::now();
  model.Norm(x.data(), lw.attn_norm.data<float>(), n, normed.data());
  result.seconds.capture += Since(t0);
  GptqGroup({&b.q, &b.k, &b.v}, normed.data(), n, d, go, result, report);

  t0 = Clock::now();
  std::vector<float> ctx(static_cast<size_t>(n * qd));
  model.AttentionBatch(lw.wqkv.data<float>(), bqkv, lw.wo.data<float>(), normed.data(), n_seq,
                       seq_len, ctx.data(), out.data());
  result.seconds.capture += Since(t0);
  GptqGroup({&b.o}, ctx.data(), n, qd, go, result, report);

  t0 = Clock::now();
  LinearF32Into(ctx.data(), b.o.w, out.data(), n, d, qd);  // attention with quantized o_proj
  for (size_t i = 0; i < x.size(); ++i) x[i] += out[i];
  ctx.clear();
  ctx.shrink_to_fit();
  model.Norm(x.data(), lw.ffn_norm.data<float>(), n, normed.data());
  result.seconds.capture += Since(t0);
  GptqGroup({&b.gate, &b.up}, normed.data(), n, d, go, result, report);

  t0 = Clock::now();
  std::vector<float> act(static_cast<size_t>(n * inter));
  model.MlpBatch(lw.w_gate_up.data<float>(), lw.w_down.data<float>(), normed.data(), n, act.data(),
                 out.data());
  result.seconds.capture += Since(t0);
  GptqGroup({&b.down}, act.data(), n, inter, go, result, report);

  t0 = Clock::now();
  LinearF32Into(act.data(), b.down.w, out.data(), n, d, inter);
  for (size_t i = 0; i < x.size(); ++i) x[i] += out[i];
  result.seconds.capture += Since(t0);
}

}  // namespace

const char* QuantMethodName(QuantMethod m) {
  switch (m) {
    case QuantMethod::kRtn:
      return "rtn";
    case QuantMethod::kAwq:
      return "awq";
    case QuantMethod::kGptq:
      return "gptq";
    case QuantMethod::kAwqGptq:
      return "awq+gptq";
    case QuantMethod::kCount:
      break;
  }
  AWQ_CHECK(false && "invalid method");
  return "";
}

QuantMethod ParseQuantMethod(const std::string& name) {
  for (int i = 0; i < static_cast<int>(QuantMethod::kCount); ++i) {
    if (name == QuantMethodName(static_cast<QuantMethod>(i))) return static_cast<QuantMethod>(i);
  }
  throw Error("--method '" + name + "' is not supported; choose rtn, awq, gptq or awq+gptq");
}

std::vector<std::string> LinearNames(int64_t layer) {
  const std::string p = "model.layers." + std::to_string(layer) + ".";
  return {p + "self_attn.q_proj", p + "self_attn.k_proj", p + "self_attn.v_proj",
          p + "self_attn.o_proj", p + "mlp.gate_proj",    p + "mlp.up_proj",
          p + "mlp.down_proj"};
}

int64_t PeakRssBytes() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::atoll(line.c_str() + 6) * 1024;
  }
  return 0;
}

QuantizeResult QuantizeModel(Model& model, const Tokenizer& tokenizer,
                             const QuantizeOptions& options) {
  const QuantConfig& qc = options.config;
  qc.Validate();
  model.RequireFp32Weights("quantization");
  const ModelConfig& c = model.config();
  const int64_t n_layers = c.num_hidden_layers, d = c.hidden_size;
  const int64_t qd = c.num_attention_heads * c.head_dim, inter = c.intermediate_size;
  const auto t_start = Clock::now();
  QuantizeResult result;
  result.method = options.method;
  const bool awq = options.method == QuantMethod::kAwq || options.method == QuantMethod::kAwqGptq;
  const bool gptq = options.method == QuantMethod::kGptq || options.method == QuantMethod::kAwqGptq;
  if (gptq) options.gptq.Validate();
  // Check every layer's shapes against the config before any work.
  for (int64_t l = 0; l < n_layers; ++l) Linears(model, l, qc);

  // Calibration: the embedded token blocks [n_seq * seq_len, D].
  std::vector<float> x;
  int64_t n_seq = 0, seq_len = 0;
  if (awq || gptq) {
    auto t0 = Clock::now();
    if (options.calib_data.empty()) {
      throw Error(std::string(QuantMethodName(options.method)) +
                  " needs calibration text: pass --calib-data");
    }
    CalibrationOptions co;
    co.max_samples = qc.max_calib_samples;
    co.seq_len = qc.max_calib_seq_len;
    const CalibrationBatch batch =
        BuildCalibrationBatch(LoadCalibrationTexts(options.calib_data), tokenizer, co);
    n_seq = batch.n_blocks;
    seq_len = batch.seq_len;
    result.calib_blocks = n_seq;
    result.calib_tokens = n_seq * seq_len;
    x.resize(static_cast<size_t>(n_seq * seq_len * d));
    const float* embed = model.weights().embed.data<float>();
    for (int64_t t = 0; t < n_seq * seq_len; ++t) {
      std::memcpy(x.data() + t * d,
                  embed + static_cast<int64_t>(batch.tokens[static_cast<size_t>(t)]) * d,
                  static_cast<size_t>(d) * sizeof(float));
    }
    result.seconds.calibration = Since(t0);
  }
  const int64_t n = n_seq * seq_len;

  for (int64_t l = 0; l < n_layers; ++l) {
    BlockLinears b = Linears(model, l, qc);
    LayerWeights& lw = model.weights().layers[static_cast<size_t>(l)];
    BlockReport report;
    report.layer = l;
    // awq+gptq: the AWQ searches below run on this block's input, and GPTQ then starts again
    // from it with the scaled and clipped weights.
    std::vector<float> block_in;
    if (awq && gptq) block_in = x;
    if (awq) {
      // 1. Run the original block, recording every linear's input.
      auto t0 = Clock::now();
      Captures cap;
      cap.in_attn.resize(static_cast<size_t>(n * d));
      cap.ctx.resize(static_cast<size_t>(n * qd));
      cap.attn_out.resize(static_cast<size_t>(n * d));
      cap.in_mlp.resize(static_cast<size_t>(n * d));
      cap.act.resize(static_cast<size_t>(n * inter));
      cap.mlp_out.resize(static_cast<size_t>(n * d));
      const float* bqkv = lw.bqkv.empty() ? nullptr : lw.bqkv.data<float>();
      model.Norm(x.data(), lw.attn_norm.data<float>(), n, cap.in_attn.data());
      model.AttentionBatch(lw.wqkv.data<float>(), bqkv, lw.wo.data<float>(), cap.in_attn.data(),
                           n_seq, seq_len, cap.ctx.data(), cap.attn_out.data());
      for (size_t i = 0; i < x.size(); ++i) x[i] += cap.attn_out[i];  // x = h (residual)
      model.Norm(x.data(), lw.ffn_norm.data<float>(), n, cap.in_mlp.data());
      model.MlpBatch(lw.w_gate_up.data<float>(), lw.w_down.data<float>(), cap.in_mlp.data(), n,
                     cap.act.data(), cap.mlp_out.data());
      for (size_t i = 0; i < x.size(); ++i) x[i] += cap.mlp_out[i];  // next block's input
      result.seconds.capture += Since(t0);

      // 2. Scale search, every group against the original weights.
      t0 = Clock::now();
      const int64_t group = qc.q_group_size;
      auto search = [&](const std::string& name, const std::vector<LinearRef*>& lins,
                        const std::vector<float>& inputs, int64_t in_dim,
                        const std::function<void(const std::vector<std::vector<float>>&,
                                                 std::vector<float>&)>& run,
                        const std::vector<float>& reference) {
        std::vector<const float*> ws;
        std::vector<int64_t> rows;
        for (LinearRef* r : lins) {
          ws.push_back(r->w);
          rows.push_back(r->rows);
        }
        const std::vector<float> x_mean = ChannelMeanAbs(inputs.data(), n, in_dim);
        const std::vector<float> w_mean = WeightMeanNormalized(ws, rows, in_dim, group);
        std::vector<std::vector<float>> cand(lins.size());
        for (size_t i = 0; i < lins.size(); ++i) {
          cand[i].resize(static_cast<size_t>(lins[i]->rows * in_dim));
        }
        std::vector<float> out(reference.size());
        auto loss = [&](const std::vector<float>& s) {
          for (size_t i = 0; i < lins.size(); ++i) CandidateWeights(*lins[i], s, cand[i].data());
          run(cand, out);
          return MeanSquaredError(reference, out);
        };
        // Including s = 1 guards against duo scaling's r = 0 not being the identity (AWQ.md).
        const ScaleSearchResult r = SearchScales(x_mean, w_mean, qc.n_grid, qc.duo_scaling,
                                                 /*include_identity=*/true, loss);
        BlockReport::Group g;
        g.name = name;
        g.best_index = r.best_index;
        g.best_loss = r.best_loss;
        g.identity_loss = r.losses.back();
        report.groups.push_back(g);
        return r.scales;
      };
      // Group 1: input_layernorm -> q, k, v; compare the self-attention output.
      const std::vector<float> s_qkv = search(
          "qkv", {&b.q, &b.k, &b.v}, cap.in_attn, d,
          [&](const std::vector<std::vector<float>>& w, std::vector<float>& out) {
            std::vector<float> fused(static_cast<size_t>((b.q.rows + 2 * b.k.rows) * d));
            float* p = fused.data();
            for (const auto& part : w) {
              std::memcpy(p, part.data(), part.size() * sizeof(float));
              p += part.size();
            }
            model.AttentionBatch(fused.data(), bqkv, lw.wo.data<float>(), cap.in_attn.data(), n_seq,
                                 seq_len, nullptr, out.data());
          },
          cap.attn_out);
      // Group 2: v_proj -> o_proj, only without grouped-query attention (shapes must match).
      std::vector<float> s_o;
      if (b.v.rows == b.o.in) {
        std::vector<float> o_ref(static_cast<size_t>(n * d));
        LinearF32Into(cap.ctx.data(), b.o.w, o_ref.data(), n, d, qd);
        s_o = search(
            "o", {&b.o}, cap.ctx, qd,
            [&](const std::vector<std::vector<float>>& w, std::vector<float>& out) {
              LinearF32Into(cap.ctx.data(), w[0].data(), out.data(), n, d, qd);
            },
            o_ref);
      }
      // Group 3: post_attention_layernorm -> gate, up; compare the MLP output.
      const std::vector<float> s_gu = search(
          "gate_up", {&b.gate, &b.up}, cap.in_mlp, d,
          [&](const std::vector<std::vector<float>>& w, std::vector<float>& out) {
            std::vector<float> fused(static_cast<size_t>(2 * inter * d));
            std::memcpy(fused.data(), w[0].data(), w[0].size() * sizeof(float));
            std::memcpy(fused.data() + w[0].size(), w[1].data(), w[1].size() * sizeof(float));
            model.MlpBatch(fused.data(), lw.w_down.data<float>(), cap.in_mlp.data(), n, nullptr,
                           out.data());
          },
          cap.mlp_out);
      // Group 4: up_proj -> down_proj; compare down_proj's output (which is the MLP output).
      const std::vector<float> s_down = search(
          "down", {&b.down}, cap.act, inter,
          [&](const std::vector<std::vector<float>>& w, std::vector<float>& out) {
            LinearF32Into(cap.act.data(), w[0].data(), out.data(), n, d, inter);
          },
          cap.mlp_out);
      result.seconds.scale_search += Since(t0);

      // 3. Fold the scales: the absorbing op is divided, the consuming linears' input columns
      // multiplied, and the captured inputs divided (they feed the clip search).
      float* attn_norm = lw.attn_norm.data<float>();
      for (int64_t i = 0; i < d; ++i) attn_norm[i] /= s_qkv[static_cast<size_t>(i)];
      for (LinearRef* r : {&b.q, &b.k, &b.v}) ScaleColumns(r->w, r->rows, r->in, s_qkv);
      DivideColumns(cap.in_attn.data(), n, d, s_qkv);
      if (!s_o.empty()) {
        DivideRows(b.v.w, b.v.rows, b.v.in, s_o);
        ScaleColumns(b.o.w, b.o.rows, b.o.in, s_o);
        DivideColumns(cap.ctx.data(), n, qd, s_o);
      }
      float* ffn_norm = lw.ffn_norm.data<float>();
      for (int64_t i = 0; i < d; ++i) ffn_norm[i] /= s_gu[static_cast<size_t>(i)];
      for (LinearRef* r : {&b.gate, &b.up}) ScaleColumns(r->w, r->rows, r->in, s_gu);
      DivideColumns(cap.in_mlp.data(), n, d, s_gu);
      DivideRows(b.up.w, b.up.rows, b.up.in, s_down);
      ScaleColumns(b.down.w, b.down.rows, b.down.in, s_down);
      DivideColumns(cap.act.data(), n, inter, s_down);

      // 4. Clip search on the scaled weights (q/k skipped: their error goes through q.k).
      if (qc.apply_clip) {
        t0 = Clock::now();
        const std::pair<LinearRef*, const std::vector<float>*> clip_inputs[] = {
            {&b.v, &cap.in_attn},
            {&b.o, &cap.ctx},
            {&b.gate, &cap.in_mlp},
            {&b.up, &cap.in_mlp},
            {&b.down, &cap.act}};
        for (const auto& [r, inputs] : clip_inputs) {
          if (!r->params || ClipSkipped(r->name)) continue;
          const std::vector<float> max_val =
              SearchClip(r->w, r->rows, r->in, inputs->data(), n, *r->params, qc.n_grid,
                         qc.max_shrink, qc.n_sample_token);
          ApplyClip(r->w, r->rows, r->in, max_val, GroupSize(*r->params, r->in));
        }
        result.seconds.clip_search += Since(t0);
      }
    }

    // 5. Quantize every converted linear; the model keeps the dequantized weights.
    if (gptq) {
      if (awq) x = std::move(block_in);
      GptqBlock(model, l, b, x, n_seq, seq_len, options.gptq, result, report);
    } else {
      const auto t0 = Clock::now();
      for (LinearRef* r : {&b.q, &b.k, &b.v, &b.o, &b.gate, &b.up, &b.down}) {
        if (!r->params) continue;
        QuantizedLinear ql = QuantizeLinear(r->w, r->rows, r->in, *r->params);
        DequantizeLinear(ql, r->w);
        result.linears.emplace(r->name, std::move(ql));
      }
      result.seconds.quantize += Since(t0);
    }
    result.blocks.push_back(std::move(report));
    if (options.progress) options.progress(l + 1, n_layers);
  }
  result.seconds.total = Since(t_start);
  result.peak_rss_bytes = PeakRssBytes();
  return result;
}

}  // namespace awq
