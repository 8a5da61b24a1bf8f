// The whole-model quantization pipeline. AWQ runs block by block: capture the inputs of every
// linear while running the ORIGINAL block, search one scale vector per group against the
// original weights, fold them, search clipping, quantize, and hand the original block output to
// the next block (AWQ.md section 1), so only one block's activations are live at a time. GPTQ
// (and the GPTQ rounding of awq+gptq) instead feeds each block the output of the blocks already
// quantized and quantizes the block's linears in order (docs/GPTQ.md).
#include "awq/quantize.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>

#include "awq/awq_search.h"
#include "awq/calibration.h"
#include "awq/ggml_quantize.h"
#include "awq/gptq.h"
#include "awq/model.h"
#include "awq/thread_pool.h"
#include "awq/tokenizer.h"
#include "kernels/cpu/sgemm.h"
#include "model/arch.h"
#include "quant/quantize_block.h"
#include "quant/quantize_recurrent.h"

namespace awq {

namespace {

using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// ggml types that store blocks of integers (not F32, F16, BF16).
bool IsBlockQuantized(GgmlType t) {
  return t != GgmlType::kF32 && t != GgmlType::kF16 && t != GgmlType::kBF16;
}

// The inputs that share one scale in a ggml type: the clip search's groups. The k-quants with
// 16-value sub-blocks (Q2_K, Q3_K, Q6_K) scale every 16; the others every 32.
int64_t GgmlScaleBlock(GgmlType t) {
  return t == GgmlType::kQ2_K || t == GgmlType::kQ3_K || t == GgmlType::kQ6_K ? 16 : 32;
}

// A ggml type's round trip in place (RoundTripGgmlRows writes to another buffer).
void RoundTripGgmlInPlace(GgmlType t, float* w, int64_t rows, int64_t in) {
  thread_local std::vector<float> copy;
  copy.assign(w, w + rows * in);
  RoundTripGgmlRows(t, copy.data(), rows, in, w);
}

// A linear of the current block: a row range of one of the model's fused slot matrices.
struct LinearRef {
  std::string name;  // "model.layers.3.self_attn.q_proj"
  Slot slot = Slot::kQkv;
  float* w = nullptr;  // [rows, in]
  int64_t rows = 0;
  int64_t in = 0;
  std::optional<QuantParams> params;  // awq.cpp's group-wise integers
  std::optional<GgmlType> ggml;       // or a ggml type (GGUF output); neither: not converted
  // A mixture of experts' linear: its expert (0..E-1, or kSharedExpert) and part (kGate, kUp,
  // kAll for down_proj); kDense for the attention and dense MLP linears.
  int64_t expert = kDense;
  Part part = Part::kAll;
  static constexpr int64_t kDense = -2;

  bool converted() const { return params.has_value() || ggml.has_value(); }
  RoundTrip round_trip() const {
    if (params) return RoundTripOf(*params);
    const GgmlType t = *ggml;
    return [t](float* w, int64_t rows, int64_t in) { RoundTripGgmlInPlace(t, w, rows, in); };
  }
  // The clip search's groups: the integer groups, or the ggml type's scale blocks.
  int64_t clip_group() const { return params ? GroupSize(*params, in) : GgmlScaleBlock(*ggml); }
};

// The slot's fp32 matrix of a layer.
Tensor& SlotTensor(LayerWeights& lw, Slot s) {
  switch (s) {
    case Slot::kQkv:
      return lw.wqkv;
    case Slot::kO:
      return lw.wo;
    case Slot::kGateUp:
      return lw.w_gate_up;
    case Slot::kDown:
      return lw.w_down;
    case Slot::kCount:
      break;
  }
  AWQ_CHECK(false && "invalid slot");
  return lw.wqkv;
}

float* ExpertWeights(LayerWeights& lw, const ModelConfig& c, const ExpertLinearSpec& e) {
  return const_cast<float*>(ExpertRows(lw, c, e));
}

// out [rows.size(), d] = the rows of x [n, d] listed in `rows`, in order (the tokens the router
// sent one expert).
void GatherRows(const float* x, int64_t d, const std::vector<int64_t>& rows,
                std::vector<float>& out) {
  out.resize(rows.size() * static_cast<size_t>(d));
  for (size_t i = 0; i < rows.size(); ++i) {
    std::memcpy(out.data() + i * static_cast<size_t>(d), x + rows[i] * d,
                static_cast<size_t>(d) * sizeof(float));
  }
}

// The layer's linears in the description's checkpoint order (a sparse layer: its attention
// linears, then ExpertLinears), with their quantization settings (`ggml_types` non-empty: the
// ggml type of each converted linear, QuantizeOptions::ggml_types); `lw` null checks the shapes
// only (no weight pointers).
std::vector<LinearRef> Linears(const ModelConfig& c, LayerWeights* lw, int64_t layer,
                               const QuantConfig& qc,
                               const std::map<std::string, GgmlType>& ggml_types) {
  const std::string p = LayerPrefix(layer);
  const bool moe = c.IsMoeLayer(layer);
  std::vector<LinearRef> out;
  for (const LinearSpec& spec : ArchitectureOf(c).linears) {
    // A sparse layer has experts where a dense one has its MLP linears.
    if (moe && (spec.slot == Slot::kGateUp || spec.slot == Slot::kDown)) continue;
    const RowRange r = SlotRows(c, spec.slot, spec.part);
    LinearRef ref;
    ref.name = p + spec.name;
    ref.slot = spec.slot;
    if (lw != nullptr) ref.w = SlotTensor(*lw, spec.slot).data<float>() + r.row0 * r.in;
    ref.rows = r.rows;
    ref.in = r.in;
    out.push_back(std::move(ref));
  }
  for (const ExpertLinearSpec& e : ExpertLinears(c, layer)) {
    LinearRef ref;
    ref.name = e.name;
    ref.slot = e.part == Part::kAll ? Slot::kDown : Slot::kGateUp;
    ref.expert = e.expert;
    ref.part = e.part;
    if (lw != nullptr) ref.w = ExpertWeights(*lw, c, e);
    ref.rows = e.rows;
    ref.in = e.in;
    out.push_back(std::move(ref));
  }
  for (LinearRef& ref : out) {
    if (!ggml_types.empty()) {
      const auto it = ggml_types.find(ref.name);
      if (it != ggml_types.end() && IsBlockQuantized(it->second)) {
        if (!GgmlCanQuantize(it->second)) {
          throw Error(ref.name + ": awq.cpp cannot write ggml type " + GgmlTypeName(it->second));
        }
        ref.ggml = it->second;
        int64_t block = 0, bytes = 0;
        GgmlTypeLayout(it->second, &block, &bytes);
        if (ref.in % block != 0) {
          throw Error(ref.name + ": rows of " + std::to_string(ref.in) + " values are not whole " +
                      GgmlTypeName(it->second) + " blocks of " + std::to_string(block));
        }
      }
      continue;
    }
    ref.params = qc.ParamsFor(ref.name);
    // A group size that does not divide the width is a user error naming the layer.
    if (ref.params) {
      try {
        GroupSize(*ref.params, ref.in);
      } catch (const Error& e) {
        throw Error(ref.name + ": " + e.what() + " (set q_group_size to a divisor of " +
                    std::to_string(ref.in) + ", or -1 for one group per row)");
      }
    }
  }
  return out;
}

// The dense linears of a slot (experts excluded).
std::vector<LinearRef*> InSlot(std::vector<LinearRef>& lins, Slot s) {
  std::vector<LinearRef*> out;
  for (LinearRef& r : lins) {
    if (r.slot == s && r.expert == LinearRef::kDense) out.push_back(&r);
  }
  return out;
}

// Candidate weights for one linear: Q(W diag(s)) diag(s)^-1, or W itself when not converted.
void CandidateWeights(const LinearRef& r, const std::vector<float>& s, float* out) {
  if (r.params) {
    ScaleQuantizeUnscale(r.w, out, r.rows, r.in, s, *r.params);
  } else if (r.ggml) {
    ScaleQuantizeUnscale(r.w, out, r.rows, r.in, s, r.round_trip());
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

// The activations of one block's walk over the calibration batch (rows = tokens), as the
// observer records them.
struct Captures {
  std::vector<float> at[static_cast<size_t>(BlockPoint::kCount)];
  std::vector<float>& operator[](BlockPoint p) { return at[static_cast<size_t>(p)]; }
};

// The walk's point whose rows are a slot's inputs.
BlockPoint SlotInput(Slot s) {
  switch (s) {
    case Slot::kQkv:
      return BlockPoint::kAttnIn;
    case Slot::kO:
      return BlockPoint::kAttnCtx;
    case Slot::kGateUp:
      return BlockPoint::kMlpIn;
    case Slot::kDown:
      return BlockPoint::kMlpAct;
    case Slot::kCount:
      break;
  }
  AWQ_CHECK(false && "invalid slot");
  return BlockPoint::kAttnIn;
}

// Folds an AWQ scale vector into the op that absorbs it (the output side), as the family's
// description names it: a norm (through its form: w / s, or (1 + w) / s - 1) or the last rows
// (and bias) of a slot.
void FoldIntoOwner(Model& model, int64_t layer, ScaleOwner owner, const std::vector<float>& s) {
  const ModelConfig& c = model.config();
  LayerWeights& lw = model.weights().layers[static_cast<size_t>(layer)];
  const NormKind kind = ArchitectureOf(c).recipe.norm;
  auto fold_norm = [&](Tensor& t) {
    float* w = t.data<float>();
    for (int64_t i = 0; i < t.numel(); ++i) {
      const float si = s[static_cast<size_t>(i)];
      // Gemma's norm multiplies by (1 + w): dividing w by s would not divide the output by s.
      w[i] = kind == NormKind::kRmsOnePlus ? (1.0f + w[i]) / si - 1.0f : w[i] / si;
    }
  };
  auto fold_rows = [&](Slot slot, Part part) {
    const RowRange r = SlotRows(c, slot, part);
    DivideRows(SlotTensor(lw, slot).data<float>() + r.row0 * r.in, r.rows, r.in, s);
    if (slot == Slot::kQkv && !lw.bqkv.empty()) {
      float* b = lw.bqkv.data<float>() + r.row0;
      for (int64_t i = 0; i < r.rows; ++i) b[i] /= s[static_cast<size_t>(i)];
    }
  };
  switch (owner) {
    case ScaleOwner::kAttnInNorm:
      return fold_norm(lw.attn_norm);
    case ScaleOwner::kMlpInNorm:
      fold_norm(lw.ffn_norm);
      // The norm's readers that stay in full precision, a mixture of experts' router and shared-
      // expert gate, take s into their columns, so they see the same input as before.
      for (Tensor* t : {&lw.router, &lw.shared_expert_gate}) {
        if (!t->empty()) ScaleColumns(t->data<float>(), t->dim(0), t->dim(1), s);
      }
      return;
    case ScaleOwner::kVRows:
      return fold_rows(Slot::kQkv, Part::kV);
    case ScaleOwner::kUpRows:
      return fold_rows(Slot::kGateUp, Part::kUp);
    case ScaleOwner::kCount:
      break;
  }
  AWQ_CHECK(false && "invalid scale owner");
}

// How many output rows of its owner a scale vector would divide (the inputs it must match).
int64_t OwnerWidth(const ModelConfig& c, ScaleOwner owner) {
  switch (owner) {
    case ScaleOwner::kVRows:
      return SlotRows(c, Slot::kQkv, Part::kV).rows;
    case ScaleOwner::kUpRows:
      return SlotRows(c, Slot::kGateUp, Part::kUp).rows;
    default:
      return c.hidden_size;
  }
}

}  // namespace

const float* ExpertRows(const LayerWeights& lw, const ModelConfig& c, const ExpertLinearSpec& e) {
  const int64_t d = c.hidden_size;
  if (e.expert == kSharedExpert) {
    const int64_t is = c.shared_expert_intermediate_size;
    if (e.part == Part::kAll) return lw.shared_down.data<float>();
    return lw.shared_gate_up.data<float>() + (e.part == Part::kUp ? is * d : 0);
  }
  const int64_t ie = c.moe_intermediate_size;
  if (e.part == Part::kAll) return lw.experts_down.data<float>() + e.expert * d * ie;
  return lw.experts_gate_up.data<float>() + e.expert * 2 * ie * d +
         (e.part == Part::kUp ? ie * d : 0);
}

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

int64_t PeakRssBytes() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::atoll(line.c_str() + 6) * 1024;
  }
  return 0;
}

namespace {

// Floats per calibration token that a chunk's walk and searches hold: the six observed points,
// the walk's own copy of the rows, and a candidate's attention or MLP output with its
// intermediate.
int64_t FloatsPerToken(const ModelConfig& c) {
  const int64_t d = c.hidden_size, q_dim = c.num_attention_heads * c.head_dim;
  // A mixture of experts: each token's k experts' down_proj inputs and the shared expert's,
  // computed per chunk for the searches.
  const int64_t i = std::max(c.intermediate_size, c.num_experts_per_tok * c.moe_intermediate_size +
                                                      c.shared_expert_intermediate_size);
  return 6 * d + 2 * q_dim + 2 * i;
}

// Calls fn(s0, s1) for the chunks of `per_chunk` sequences that tile [0, n_seq).
template <typename F>
void ForEachChunk(int64_t n_seq, int64_t per_chunk, F&& fn) {
  for (int64_t s0 = 0; s0 < n_seq; s0 += per_chunk) fn(s0, std::min(n_seq, s0 + per_chunk));
}

// The per-channel statistics and clip samples of one slot's inputs, accumulated over the
// calibration rows in order (so a chunked pass sums exactly as one pass over all rows would).
struct SlotStats {
  int64_t width = 0;
  std::vector<double> abs_sum;  // [width]
  int64_t step = 1;             // the clip search's sampling step over all n rows
  int64_t t_used = 0;           // sampled rows
  std::vector<float> samples;   // [t_used, width]: rows 0, step, 2 step, ...

  void Init(int64_t w, int64_t n, int64_t n_sample_token) {
    width = w;
    abs_sum.assign(static_cast<size_t>(w), 0.0);
    step = std::max<int64_t>(1, n / n_sample_token);
    t_used = (n + step - 1) / step;
    samples.assign(static_cast<size_t>(t_used * w), 0.0f);
  }
  // Rows [row0, row0 + rn) of the batch.
  void Add(const float* rows, int64_t row0, int64_t rn) {
    ThreadPool::Global().ParallelFor(
        width,
        [&](int64_t c0, int64_t c1, int) {
          for (int64_t t = 0; t < rn; ++t) {
            const float* row = rows + t * width;
            for (int64_t c = c0; c < c1; ++c) abs_sum[c] += std::fabs(row[c]);
          }
        },
        /*grain=*/16);
    for (int64_t t = 0; t < rn; ++t) {
      const int64_t g = row0 + t;
      if (g % step != 0) continue;
      std::memcpy(samples.data() + (g / step) * width, rows + t * width,
                  static_cast<size_t>(width) * sizeof(float));
    }
  }
  std::vector<float> Mean(int64_t n) const {
    std::vector<float> m(static_cast<size_t>(width));
    for (int64_t c = 0; c < width; ++c) {
      m[c] = static_cast<float>(abs_sum[c] / static_cast<double>(n));
    }
    return m;
  }
};

// A sparse layer's per-expert statistics over the calibration rows, accumulated in row order:
// the tokens the router sends each expert, mean |x| of each expert's down_proj input over its
// tokens, and clip samples of its gate/up and down_proj inputs (every `stride`-th of its
// tokens, the step each expert would take under balanced routing, so a chunked pass samples as
// one pass does); the shared expert's down_proj input over every row.
struct MoeStats {
  int64_t stride = 1;
  std::vector<int64_t> tokens;
  std::vector<std::vector<double>> act_abs;
  std::vector<std::vector<float>> x_samples, act_samples;
  SlotStats shared;

  void Init(const ModelConfig& c, int64_t n, int64_t n_sample_token) {
    const auto e = static_cast<size_t>(c.num_experts);
    const int64_t per_expert = n * c.num_experts_per_tok / std::max<int64_t>(1, c.num_experts);
    stride = std::max<int64_t>(1, per_expert / n_sample_token);
    tokens.assign(e, 0);
    act_abs.assign(e, std::vector<double>(static_cast<size_t>(c.moe_intermediate_size), 0.0));
    x_samples.assign(e, {});
    act_samples.assign(e, {});
    if (c.shared_expert_intermediate_size > 0) {
      shared.Init(c.shared_expert_intermediate_size, n, n_sample_token);
    }
  }
  // Rows [row0, row0 + rn) of the batch, x the layer's normed MLP input.
  void Add(const Model& model, int64_t layer, const float* x, int64_t row0, int64_t rn) {
    const ModelConfig& c = model.config();
    const int64_t d = c.hidden_size, ie = c.moe_intermediate_size;
    const MoeRouting routing = model.RouteExperts(layer, x, rn);
    std::vector<float> xin, act;
    for (int64_t e = 0; e < c.num_experts; ++e) {
      const std::vector<int64_t>& rows = routing.rows[static_cast<size_t>(e)];
      const auto m = static_cast<int64_t>(rows.size());
      if (m == 0) continue;
      GatherRows(x, d, rows, xin);
      act.resize(static_cast<size_t>(m * ie));
      model.ExpertActivation(layer, e, xin.data(), m, act.data());
      std::vector<double>& abs_sum = act_abs[static_cast<size_t>(e)];
      int64_t& seen = tokens[static_cast<size_t>(e)];
      for (int64_t i = 0; i < m; ++i) {
        const float* a = act.data() + i * ie;
        for (int64_t j = 0; j < ie; ++j) abs_sum[static_cast<size_t>(j)] += std::fabs(a[j]);
        if ((seen + i) % stride != 0) continue;
        std::vector<float>& xs = x_samples[static_cast<size_t>(e)];
        xs.insert(xs.end(), xin.begin() + i * d, xin.begin() + (i + 1) * d);
        std::vector<float>& as = act_samples[static_cast<size_t>(e)];
        as.insert(as.end(), a, a + ie);
      }
      seen += m;
    }
    if (shared.width > 0) {
      act.resize(static_cast<size_t>(rn * shared.width));
      model.ExpertActivation(layer, kSharedExpert, x, rn, act.data());
      shared.Add(act.data(), row0, rn);
    }
  }
  std::vector<float> ActMean(int64_t e) const {
    const std::vector<double>& a = act_abs[static_cast<size_t>(e)];
    const double count = static_cast<double>(std::max<int64_t>(1, tokens[static_cast<size_t>(e)]));
    std::vector<float> m(a.size());
    for (size_t j = 0; j < a.size(); ++j) m[j] = static_cast<float>(a[j] / count);
    return m;
  }
};

// Sum of squared differences of a and b [n], accumulated in order onto `acc`.
void AddSquaredError(const float* a, const float* b, int64_t n, double& acc) {
  for (int64_t i = 0; i < n; ++i) {
    const double e = static_cast<double>(a[i]) - b[i];
    acc += e * e;
  }
}

// Walks sequences [s0, s1) of the batch through the block, in place on `rows` (a copy of the
// chunk, or the batch itself), recording the wanted points into `cap` (chunk-sized) and
// telling `stats` (indexed by slot) about slot inputs.
void WalkChunk(const Model& model, int64_t layer, float* rows, int64_t s0, int64_t s1,
               int64_t seq_len, const std::vector<BlockPoint>& points, Captures* cap,
               SlotStats* stats) {
  const int64_t n_chunk = (s1 - s0) * seq_len;
  bool want[static_cast<size_t>(BlockPoint::kCount)] = {};
  for (BlockPoint p : points) want[static_cast<size_t>(p)] = true;
  const BlockObserver observe = [&](BlockPoint p, int64_t row0, const float* r, int64_t rn,
                                    int64_t width) {
    if (stats != nullptr) {
      for (Slot s : {Slot::kQkv, Slot::kO, Slot::kGateUp, Slot::kDown}) {
        if (SlotInput(s) == p) stats[static_cast<size_t>(s)].Add(r, s0 * seq_len + row0, rn);
      }
    }
    if (cap == nullptr || !want[static_cast<size_t>(p)]) return;
    std::vector<float>& dst = (*cap)[p];
    if (dst.size() != static_cast<size_t>(n_chunk * width)) {
      dst.resize(static_cast<size_t>(n_chunk * width));
    }
    std::memcpy(dst.data() + row0 * width, r, static_cast<size_t>(rn * width) * sizeof(float));
  };
  model.BlockForwardBatch(layer, rows, s1 - s0, seq_len, &observe);
}

// The candidates (grid indices 0..n_grid-1, then the identity at n_grid) that pass `pass` of
// the scale search scores. step <= 1: every one in pass 0. Otherwise pass 0 takes every
// step-th ratio and the identity, pass 1 the unscored ratios within step - 1 of pass 0's best
// ratio.
void SelectPass(const std::vector<char>& scored, const std::vector<double>& sse, int n_grid,
                int step, int pass, std::vector<char>& active) {
  active.assign(static_cast<size_t>(n_grid) + 1, 0);
  if (step <= 1 || pass == 0) {
    for (int i = 0; i <= n_grid; ++i) active[i] = step <= 1 || i == n_grid || i % step == 0;
    return;
  }
  int best = -1;
  for (int i = 0; i < n_grid; ++i) {
    if (scored[i] && (best < 0 || sse[i] < sse[best])) best = i;
  }
  if (best < 0) return;
  for (int i = std::max(0, best - step + 1); i <= std::min(n_grid - 1, best + step - 1); ++i) {
    active[i] = !scored[i];
  }
}

// The scored candidate with the strictly smallest finite loss, earliest on ties.
int BestScored(const std::vector<char>& scored, const std::vector<double>& sse,
               const std::string& group) {
  int best = -1;
  for (size_t k = 0; k < sse.size(); ++k) {
    if (scored[k] && std::isfinite(sse[k]) && (best < 0 || sse[k] < sse[best])) {
      best = static_cast<int>(k);
    }
  }
  if (best < 0) {
    std::string list;
    for (size_t k = 0; k < sse.size(); ++k) {
      if (scored[k]) list += (list.empty() ? "" : ", ") + std::to_string(sse[k]);
    }
    throw Error("scale search of group " + group +
                ": no candidate gave a finite loss (losses: " + list + ")");
  }
  return best;
}

// AWQ on one block (AWQ.md section 1), the calibration batch walked in chunks of sequences:
//  1. statistics: mean |x| of every slot's input and the clip search's sampled rows, from a walk
//     of the ORIGINAL block over every chunk (folded into step 2 when one chunk holds the batch);
//  2. losses: each chunk walked again with its points captured, every group's candidates scored
//     on it and their squared errors summed in row order, so the losses equal one pass's; the
//     walk's output is the next block's input (unless `update_x` is false);
//  3. the winners folded, the sampled rows divided, the clip searched and applied.
// A sparse layer searches, besides its attention groups, AutoAWQ's mixture-of-experts groups
// (awq/models/mixtral.py, qwen3_moe.py): one scale for every expert's gate/up (and the shared
// expert's), folded into the MLP-input norm and scored through the whole mixture; then one per
// expert for its down_proj, folded into its up rows and scored on its own output over the
// tokens the router sent it. Experts below QuantizeOptions::min_expert_tokens are not searched.
void AwqBlock(Model& model, int64_t l, std::vector<LinearRef>& lins, CalibrationActivations& acts,
              const QuantizeOptions& options, bool update_x, QuantizeResult& result,
              BlockReport& report) {
  const QuantConfig& qc = options.config;
  const ModelConfig& c = model.config();
  const Architecture& arch = ArchitectureOf(c);
  const int64_t d = c.hidden_size, n_seq = acts.n_seq, seq_len = acts.seq_len;
  const int64_t n = n_seq * seq_len;
  const int64_t per_chunk = ChunkSequences(c, options, n_seq, seq_len);
  const bool one_chunk = per_chunk >= n_seq;
  const int grid_step = options.grid_step;
  if (grid_step < 0 || grid_step > qc.n_grid) {
    throw Error("quantize: grid_step " + std::to_string(grid_step) + " is outside 0.." +
                std::to_string(qc.n_grid));
  }
  // Sequences whose tokens score the candidates: all, or the first search_samples.
  const int64_t loss_seqs =
      options.search_samples > 0 ? std::min(options.search_samples, n_seq) : n_seq;
  LayerWeights& lw = model.weights().layers[static_cast<size_t>(l)];

  SlotStats stats[static_cast<size_t>(Slot::kCount)];
  for (Slot s : {Slot::kQkv, Slot::kO, Slot::kGateUp, Slot::kDown}) {
    stats[static_cast<size_t>(s)].Init(SlotRows(c, s, Part::kAll).in, n, qc.n_sample_token);
  }
  const bool moe = c.IsMoeLayer(l);
  MoeStats moe_stats;
  if (moe) moe_stats.Init(c, n, qc.n_sample_token);
  const auto below_min = [&](int64_t e) {
    return e >= 0 && moe_stats.tokens[static_cast<size_t>(e)] <
                         std::max<int64_t>(1, options.min_expert_tokens);
  };
  auto t0 = Clock::now();
  std::vector<float> rows;
  // When only the first chunks are scored, the statistics walk also produces the next block's
  // input in place, and the scoring walk runs on a copy of just the scored chunks' input: one
  // walk over the batch instead of two.
  const int64_t scored_seqs = std::min(n_seq, (loss_seqs + per_chunk - 1) / per_chunk * per_chunk);
  const bool out_in_stats = !one_chunk && update_x && scored_seqs < n_seq;
  std::vector<float> scored_input;
  if (out_in_stats) {
    scored_input.assign(acts.x.begin(), acts.x.begin() + scored_seqs * seq_len * d);
  }
  if (!one_chunk) {
    ForEachChunk(n_seq, per_chunk, [&](int64_t s0, int64_t s1) {
      float* walk_rows = acts.x.data() + s0 * seq_len * d;
      if (!out_in_stats) {
        rows.assign(acts.x.begin() + s0 * seq_len * d, acts.x.begin() + s1 * seq_len * d);
        walk_rows = rows.data();
      }
      Captures stat_cap;
      WalkChunk(model, l, walk_rows, s0, s1, seq_len,
                moe ? std::vector<BlockPoint>{BlockPoint::kMlpIn} : std::vector<BlockPoint>{},
                moe ? &stat_cap : nullptr, stats);
      if (moe) {
        moe_stats.Add(model, l, stat_cap[BlockPoint::kMlpIn].data(), s0 * seq_len,
                      (s1 - s0) * seq_len);
      }
    });
  }
  result.seconds.capture += Since(t0);

  // The groups this block searches, their candidates and running squared errors.
  struct GroupState {
    std::string name;
    ScaleOwner owner = ScaleOwner::kCount;
    Slot slot = Slot::kQkv;
    Inspect inspect = Inspect::kOwnOutput;
    // Mixture-of-experts groups: every expert's gate/up (moe_in), or one expert's down_proj
    // (expert >= 0 or kSharedExpert; its scale folds into up_rows).
    bool moe_in = false;
    int64_t expert = LinearRef::kDense;
    LinearRef* up_rows = nullptr;
    bool skip = false;      // an expert below min_expert_tokens: no search, identity scale
    int64_t loss_rows = 0;  // rows its losses summed over
    std::vector<LinearRef*> lins;
    int64_t in = 0, rows = 0, out_width = 0;
    std::vector<float> x_mean, w_mean;
    std::vector<std::vector<float>> candidates;  // the grid's scales, then the identity
    std::vector<double> sse;
    std::vector<char> active;  // candidates scored in the current pass
    std::vector<char> scored;  // candidates scored in any pass
    // An own-output group scored through the Gram matrix of its inputs (GramIsCheaper).
    std::unique_ptr<HessianAccumulator> gram;
  };
  std::vector<GroupState> groups;
  const auto add_group = [&](GroupState st) {
    for (const LinearRef* r : st.lins) st.rows += r->rows;
    st.in = st.lins[0]->in;
    st.out_width = st.inspect == Inspect::kOwnOutput ? st.rows : d;
    // The Gram matrix (summed in double) must also fit the activation budget: a 7B model's
    // down_proj would need 1.5 GB.
    const uint64_t gram_bytes = static_cast<uint64_t>(st.in * st.in) * 12;
    if (st.inspect == Inspect::kOwnOutput && gram_bytes <= options.activation_budget_bytes &&
        GramIsCheaper(st.rows, st.in, loss_seqs * seq_len, qc.n_grid + 1)) {
      st.gram = std::make_unique<HessianAccumulator>(st.in);
    }
    groups.push_back(std::move(st));
  };
  for (const AwqGroupSpec& g : arch.awq_groups) {
    // A sparse layer's MLP groups are its experts' (below).
    if (moe && (g.slot == Slot::kGateUp || g.slot == Slot::kDown)) continue;
    GroupState st;
    st.name = g.name;
    st.owner = g.owner;
    st.slot = g.slot;
    st.inspect = g.inspect;
    st.lins = InSlot(lins, g.slot);
    // v -> o only without grouped-query attention: the scaled rows must be o's inputs.
    if (g.needs_matching_rows && OwnerWidth(c, g.owner) != st.lins[0]->in) continue;
    add_group(std::move(st));
  }
  if (moe) {
    GroupState in;
    in.name = "experts.gate_up";
    in.owner = ScaleOwner::kMlpInNorm;
    in.slot = Slot::kGateUp;
    in.inspect = Inspect::kMlp;
    in.moe_in = true;
    // gate_0, up_0, gate_1, ..., then the shared expert's: the rows of experts_gate_up followed
    // by shared_gate_up, so one candidate buffer holds both tensors.
    for (LinearRef& r : lins) {
      if (r.expert != LinearRef::kDense && r.part != Part::kAll) in.lins.push_back(&r);
    }
    add_group(std::move(in));
    for (LinearRef& r : lins) {
      if (r.expert == LinearRef::kDense || r.part != Part::kAll) continue;
      GroupState down;
      down.name = r.expert == kSharedExpert ? "shared_expert.down"
                                            : "experts." + std::to_string(r.expert) + ".down";
      down.slot = Slot::kDown;
      down.inspect = Inspect::kOwnOutput;
      down.expert = r.expert;
      down.lins = {&r};
      for (LinearRef& u : lins) {
        if (u.expert == r.expert && u.part == Part::kUp) down.up_rows = &u;
      }
      add_group(std::move(down));
    }
  }
  // Candidate scales from the statistics (CandidateScales over SearchScales' grid).
  // One candidate's forward over nl rows: the group's products, plus the module's other linear
  // and attention's score and value products (causal: half the positions).
  const auto CandidateFlops = [&](const ModelConfig& cfg, const GroupState& g, int64_t nl) {
    const double rows = static_cast<double>(nl);
    double f = 2.0 * rows * g.rows * g.in;
    if (g.inspect == Inspect::kAttention) {
      const double q_dim = static_cast<double>(cfg.num_attention_heads * cfg.head_dim);
      f += 2.0 * rows * q_dim * d + 2.0 * rows * static_cast<double>(seq_len) * q_dim;
    } else if (g.moe_in) {
      // Only the routed share of the experts runs, then their down_proj.
      f = 2.0 * rows * d *
          (3.0 * static_cast<double>(cfg.num_experts_per_tok * cfg.moe_intermediate_size) +
           3.0 * static_cast<double>(cfg.shared_expert_intermediate_size));
    } else if (g.inspect == Inspect::kMlp) {
      f += 2.0 * rows * static_cast<double>(cfg.intermediate_size) * d;
    }
    return f;
  };
  const auto make_candidates = [&] {
    for (GroupState& g : groups) {
      if (below_min(g.expert)) {
        g.skip = true;
        continue;
      }
      std::vector<const float*> ws;
      std::vector<int64_t> row_counts;
      for (const LinearRef* r : g.lins) {
        ws.push_back(r->w);
        row_counts.push_back(r->rows);
      }
      if (g.expert >= 0) {
        g.x_mean = moe_stats.ActMean(g.expert);
      } else if (g.expert == kSharedExpert) {
        g.x_mean = moe_stats.shared.Mean(n);
      } else {
        g.x_mean = stats[static_cast<size_t>(g.slot)].Mean(n);
      }
      // Weights normalised per quantization group: the integer groups, or the ggml type's scale
      // blocks.
      // Linears left in full precision (a GGUF file's F16 fallback, modules_to_not_convert)
      // normalise over whole rows.
      const int64_t w_group = g.lins[0]->ggml     ? g.lins[0]->clip_group()
                              : g.lins[0]->params ? qc.q_group_size
                                                  : g.in;
      g.w_mean = WeightMeanNormalized(ws, row_counts, g.in, w_group);
      for (int i = 0; i < qc.n_grid; ++i) {
        const float ratio = static_cast<float>(i) / static_cast<float>(qc.n_grid);
        g.candidates.push_back(CandidateScales(g.x_mean, g.w_mean, ratio, qc.duo_scaling));
      }
      // Including s = 1 guards against duo scaling's r = 0 not being the identity (AWQ.md).
      g.candidates.emplace_back(static_cast<size_t>(g.in), 1.0f);
      g.sse.assign(g.candidates.size(), 0.0);
      g.scored.assign(g.candidates.size(), 0);
      SelectPass(g.scored, g.sse, qc.n_grid, grid_step, 0, g.active);
    }
  };
  if (!one_chunk) make_candidates();

  // 2. Losses, chunk by chunk; with a coarse-to-fine grid, twice (the second pass scores the
  // refined candidates; one chunk keeps its captures, several are walked again on copies).
  std::vector<float> cand, out, reference;
  Captures cap;  // reused by every chunk (resized only for a shorter last one)
  const int passes = grid_step > 1 ? 2 : 1;
  for (int pass = 0; pass < passes; ++pass) {
    if (pass > 0) {
      for (GroupState& g : groups) {
        if (!g.skip) SelectPass(g.scored, g.sse, qc.n_grid, grid_step, pass, g.active);
      }
    }
    // The walk that writes the next block's input: the only walk of one chunk, else the last.
    const bool writes_x = update_x && (one_chunk ? pass == 0 : pass == passes - 1);
    ForEachChunk(n_seq, per_chunk, [&](int64_t s0, int64_t s1) {
      const int64_t ls1 = std::min(s1, loss_seqs);
      auto t1 = Clock::now();
      if (!(one_chunk && pass > 0)) {
        float* walk_rows;
        if (out_in_stats) {
          if (s0 >= scored_seqs) return;  // the next block's input is already written
          rows.assign(scored_input.begin() + s0 * seq_len * d,
                      scored_input.begin() + s1 * seq_len * d);
          walk_rows = rows.data();
        } else if (writes_x) {
          walk_rows = acts.x.data() + s0 * seq_len * d;
        } else {
          if (s0 >= ls1) return;  // neither scored nor written
          rows.assign(acts.x.begin() + s0 * seq_len * d, acts.x.begin() + s1 * seq_len * d);
          walk_rows = rows.data();
        }
        WalkChunk(model, l, walk_rows, s0, s1, seq_len,
                  {BlockPoint::kAttnIn, BlockPoint::kAttnCtx, BlockPoint::kAttnOut,
                   BlockPoint::kMlpIn, BlockPoint::kMlpAct, BlockPoint::kMlpOut},
                  &cap, one_chunk && pass == 0 ? stats : nullptr);
        if (one_chunk && pass == 0 && moe) {
          moe_stats.Add(model, l, cap[BlockPoint::kMlpIn].data(), 0, n);
        }
        result.seconds.capture += Since(t1);
        if (one_chunk && pass == 0) make_candidates();
      }
      if (s0 >= ls1) return;
      t1 = Clock::now();
      const int64_t nl = (ls1 - s0) * seq_len;  // scored rows of this chunk
      // A sparse layer: the scored rows' routing and each searched expert's down_proj inputs.
      MoeRouting routing;
      std::vector<std::vector<float>> expert_act;
      if (moe) {
        const float* x_mlp = cap[BlockPoint::kMlpIn].data();
        routing = model.RouteExperts(l, x_mlp, nl);
        expert_act.resize(static_cast<size_t>(c.num_experts) + 1);  // [E]: the shared expert
        std::vector<float> xin;
        for (const GroupState& g : groups) {
          if (g.skip || g.expert == LinearRef::kDense) continue;
          const bool shared = g.expert == kSharedExpert;
          std::vector<float>& act =
              expert_act[static_cast<size_t>(shared ? c.num_experts : g.expert)];
          const float* x_rows = x_mlp;
          int64_t m = nl;
          if (!shared) {
            const std::vector<int64_t>& rows = routing.rows[static_cast<size_t>(g.expert)];
            m = static_cast<int64_t>(rows.size());
            GatherRows(x_mlp, d, rows, xin);
            x_rows = xin.data();
          }
          act.resize(static_cast<size_t>(m * g.in));
          if (m > 0) model.ExpertActivation(l, g.expert, x_rows, m, act.data());
        }
      }
      for (GroupState& g : groups) {
        if (g.skip) continue;
        const float* inputs = nullptr;
        int64_t rows_n = nl;
        if (g.expert == LinearRef::kDense) {
          inputs = cap[SlotInput(g.slot)].data();
        } else {
          const auto i = static_cast<size_t>(g.expert == kSharedExpert ? c.num_experts : g.expert);
          inputs = expert_act[i].data();
          rows_n = static_cast<int64_t>(expert_act[i].size()) / g.in;
        }
        if (pass == 0) g.loss_rows += rows_n;
        if (rows_n == 0) continue;
        if (g.gram) {
          if (pass == 0) {
            g.gram->Add(inputs, rows_n);
            result.search_flops += 2.0 * static_cast<double>(rows_n) * g.in * g.in;
          }
          continue;
        }
        cand.resize(static_cast<size_t>(g.rows * g.in));
        out.resize(static_cast<size_t>(rows_n * g.out_width));
        const float* ref = nullptr;
        if (g.inspect == Inspect::kOwnOutput) {
          // The group's own output with the original weights (its linears are consecutive rows
          // of one slot matrix).
          reference.resize(out.size());
          LinearF32(inputs, g.in, g.lins[0]->w, g.in, reference.data(), g.rows, rows_n, g.rows,
                    g.in, false, ThreadPool::Global());
          ref = reference.data();
        } else {
          ref = cap[g.inspect == Inspect::kAttention ? BlockPoint::kAttnOut : BlockPoint::kMlpOut]
                    .data();
        }
        int64_t n_active = 0;
        for (size_t k = 0; k < g.candidates.size(); ++k) {
          if (!g.active[k]) continue;
          ++n_active;
          float* p = cand.data();
          for (const LinearRef* r : g.lins) {
            CandidateWeights(*r, g.candidates[k], p);
            p += r->rows * g.in;
          }
          switch (g.inspect) {
            case Inspect::kAttention:
              model.AttentionBatch(l, cand.data(), lw.wo.data<float>(), inputs, ls1 - s0, seq_len,
                                   nullptr, out.data());
              break;
            case Inspect::kMlp:
              if (g.moe_in) {
                // The experts' rows, then the shared expert's (see the group's order above).
                const int64_t experts_rows = c.num_experts * 2 * c.moe_intermediate_size;
                model.MoeBatch(l, routing, cand.data(),
                               lw.shared_gate_up.empty() ? nullptr : cand.data() + experts_rows * d,
                               inputs, nl, out.data());
              } else {
                model.MlpBatch(l, cand.data(), lw.w_down.data<float>(), inputs, nl, nullptr,
                               out.data());
              }
              break;
            case Inspect::kOwnOutput:
              LinearF32(inputs, g.in, cand.data(), g.in, out.data(), g.rows, rows_n, g.rows, g.in,
                        false, ThreadPool::Global());
              break;
            case Inspect::kCount:
              AWQ_CHECK(false && "invalid inspect");
          }
          AddSquaredError(ref, out.data(), rows_n * g.out_width, g.sse[k]);
        }
        result.search_flops += static_cast<double>(n_active) * CandidateFlops(c, g, rows_n);
      }
      result.seconds.scale_search += Since(t1);
    });
    for (GroupState& g : groups) {
      if (g.gram || g.skip) continue;
      for (size_t k = 0; k < g.scored.size(); ++k) g.scored[k] |= g.active[k];
    }
  }

  // Gram-scored groups: the candidates against the accumulated inputs, in the same passes.
  auto t1 = Clock::now();
  for (GroupState& g : groups) {
    if (!g.gram || g.skip) continue;
    const std::vector<float> gram(g.gram->Sum().begin(), g.gram->Sum().end());
    g.gram.reset();
    cand.resize(static_cast<size_t>(g.rows * g.in));
    for (int pass = 0; pass < passes; ++pass) {
      SelectPass(g.scored, g.sse, qc.n_grid, grid_step, pass, g.active);
      for (size_t k = 0; k < g.candidates.size(); ++k) {
        if (!g.active[k]) continue;
        float* p = cand.data();
        for (const LinearRef* r : g.lins) {
          CandidateWeights(*r, g.candidates[k], p);
          p += r->rows * g.in;
        }
        g.sse[k] = GramSquaredError(g.lins[0]->w, cand.data(), g.rows, g.in, gram);
        g.scored[k] = 1;
        result.search_flops += 2.0 * static_cast<double>(g.rows) * g.in * g.in;
      }
    }
  }
  // The winners: SearchScales' rule (strictly smallest loss, earliest on ties, the identity
  // last) over the scored candidates.
  std::vector<std::vector<float>> scales;
  for (GroupState& g : groups) {
    // An expert the scored sequences never reach keeps the identity; one below the threshold
    // has no scale at all.
    if (!g.skip && g.loss_rows == 0) {
      g.skip = true;
    }
    if (g.skip) {
      scales.emplace_back();
      continue;
    }
    const double denom = static_cast<double>(g.loss_rows * g.out_width);
    const int best = BestScored(g.scored, g.sse, g.name);
    BlockReport::Group rep;
    rep.name = g.name;
    rep.best_index = best == qc.n_grid ? -1 : best;
    rep.best_loss = g.sse[static_cast<size_t>(best)] / denom;
    rep.identity_loss = g.sse.back() / denom;
    report.groups.push_back(rep);
    scales.push_back(g.candidates[static_cast<size_t>(best)]);
  }
  result.seconds.scale_search += Since(t1);

  // 3. Fold the scales: the owner divided (through its norm form), the slot's input columns
  // multiplied, and the sampled inputs divided (they feed the clip search).
  for (size_t gi = 0; gi < groups.size(); ++gi) {
    const GroupState& g = groups[gi];
    const std::vector<float>& s = scales[gi];
    if (g.skip) continue;
    for (LinearRef* r : g.lins) ScaleColumns(r->w, r->rows, r->in, s);
    if (g.expert == LinearRef::kDense) {
      FoldIntoOwner(model, l, g.owner, s);
      SlotStats& st = stats[static_cast<size_t>(g.slot)];
      DivideColumns(st.samples.data(), st.t_used, st.width, s);
      if (g.moe_in) {
        for (std::vector<float>& xs : moe_stats.x_samples) {
          DivideColumns(xs.data(), static_cast<int64_t>(xs.size()) / d, d, s);
        }
      }
    } else {
      DivideRows(g.up_rows->w, g.up_rows->rows, g.up_rows->in, s);
      if (g.expert == kSharedExpert) {
        DivideColumns(moe_stats.shared.samples.data(), moe_stats.shared.t_used, g.in, s);
      } else {
        std::vector<float>& as = moe_stats.act_samples[static_cast<size_t>(g.expert)];
        DivideColumns(as.data(), static_cast<int64_t>(as.size()) / g.in, g.in, s);
      }
    }
  }
  if (moe) {
    report.expert_tokens = moe_stats.tokens;
    for (int64_t e = 0; e < c.num_experts; ++e) {
      if (below_min(e)) report.rtn_experts.push_back(e);
    }
  }

  // 4. Clip search on the scaled weights (q/k skipped: their error goes through q.k).
  if (qc.apply_clip) {
    t1 = Clock::now();
    for (LinearRef& r : lins) {
      if (!r.converted() || ClipSkipped(r.name) || below_min(r.expert)) continue;
      // An expert's linears are clipped on the tokens routed to it (AutoAWQ's hooks see those).
      const float* samples = nullptr;
      int64_t t_used = 0;
      if (r.expert >= 0) {
        const std::vector<float>& v =
            (r.part == Part::kAll ? moe_stats.act_samples
                                  : moe_stats.x_samples)[static_cast<size_t>(r.expert)];
        samples = v.data();
        t_used = static_cast<int64_t>(v.size()) / r.in;
      } else {
        const SlotStats& st = r.expert == kSharedExpert && r.part == Part::kAll
                                  ? moe_stats.shared
                                  : stats[static_cast<size_t>(r.slot)];
        samples = st.samples.data();
        t_used = st.t_used;
      }
      if (t_used == 0) continue;
      // The rows are already the sample: step 1 over them.
      const std::vector<float> max_val =
          SearchClip(r.w, r.rows, r.in, samples, t_used, r.clip_group(), r.round_trip(), qc.n_grid,
                     qc.max_shrink, t_used);
      ApplyClip(r.w, r.rows, r.in, max_val, r.clip_group());
    }
    result.seconds.clip_search += Since(t1);
  }
}

// Quantizes the converted linears among `lins`, which all read the slot's input, with GPTQ on
// one shared Hessian; the model keeps the dequantized weights.
void GptqGroup(const std::vector<LinearRef*>& lins, const HessianAccumulator& acc,
               const GptqOptions& go, std::map<std::string, QuantizedLinear>& linears,
               QuantizeResult& result, BlockReport& report) {
  std::string names;
  for (const LinearRef* r : lins) {
    if (!r->params) continue;
    names += (names.empty() ? "" : ", ") + r->name;
  }
  if (names.empty()) return;  // every linear of the group stays in full precision
  const auto t0 = Clock::now();
  const GptqFactor f = PrepareGptqHessian(acc.Hessian(), acc.in(), go, names);
  for (LinearRef* r : lins) {
    if (!r->params) continue;
    GptqResult g = GptqQuantize(r->w, r->rows, r->in, f, *r->params, go, r->name);
    DequantizeLinear(g.q, r->w);
    report.gptq.push_back({r->name, g.loss});
    linears.emplace(r->name, std::move(g.q));
  }
  result.seconds.gptq += Since(t0);
}

// GPTQ on a sparse layer's experts, after its attention: every expert's gate/up on a Hessian of
// the MLP inputs the router sends it, then (a second walk, with those quantized) its down_proj
// on its activations; the shared expert's on every token. Experts below min_expert_tokens are
// rounded to nearest. The Hessians of as many experts as the activation budget holds are
// accumulated per walk.
void GptqExperts(Model& model, int64_t layer, std::vector<LinearRef>& lins,
                 CalibrationActivations& acts, const QuantizeOptions& options,
                 std::map<std::string, QuantizedLinear>& linears, QuantizeResult& result,
                 BlockReport& report) {
  const ModelConfig& c = model.config();
  const int64_t d = c.hidden_size, seq_len = acts.seq_len, n_experts = c.num_experts;
  const int64_t per_chunk = ChunkSequences(c, options, acts.n_seq, seq_len);
  const bool has_shared = c.shared_expert_intermediate_size > 0;
  const int64_t members = n_experts + (has_shared ? 1 : 0);  // member n_experts: the shared one
  std::vector<int64_t> tokens(static_cast<size_t>(n_experts), 0);
  std::vector<float> rows, xin, act;
  for (int stage = 0; stage < 2; ++stage) {
    const bool down = stage == 1;
    const auto width = [&](int64_t m) {
      if (!down) return d;
      return m < n_experts ? c.moe_intermediate_size : c.shared_expert_intermediate_size;
    };
    const uint64_t per = static_cast<uint64_t>(width(0) * width(0)) * sizeof(double);
    const int64_t batch = std::max<int64_t>(
        1, static_cast<int64_t>(options.activation_budget_bytes / std::max<uint64_t>(per, 1)));
    for (int64_t b0 = 0; b0 < members; b0 += batch) {
      const int64_t b1 = std::min(members, b0 + batch);
      std::vector<std::unique_ptr<HessianAccumulator>> acc;
      for (int64_t m = b0; m < b1; ++m)
        acc.push_back(std::make_unique<HessianAccumulator>(width(m)));
      auto t0 = Clock::now();
      Captures cap;
      ForEachChunk(acts.n_seq, per_chunk, [&](int64_t s0, int64_t s1) {
        rows.assign(acts.x.begin() + s0 * seq_len * d, acts.x.begin() + s1 * seq_len * d);
        WalkChunk(model, layer, rows.data(), s0, s1, seq_len, {BlockPoint::kMlpIn}, &cap, nullptr);
        const float* x = cap[BlockPoint::kMlpIn].data();
        const int64_t nn = (s1 - s0) * seq_len;
        const MoeRouting routing = model.RouteExperts(layer, x, nn);
        if (stage == 0 && b0 == 0) {
          for (int64_t e = 0; e < n_experts; ++e) {
            tokens[static_cast<size_t>(e)] +=
                static_cast<int64_t>(routing.rows[static_cast<size_t>(e)].size());
          }
        }
        for (int64_t m = b0; m < b1; ++m) {
          const float* in = x;
          int64_t mr = nn;
          if (m < n_experts) {
            const std::vector<int64_t>& r = routing.rows[static_cast<size_t>(m)];
            mr = static_cast<int64_t>(r.size());
            GatherRows(x, d, r, xin);
            in = xin.data();
          }
          if (mr == 0) continue;
          if (down) {
            act.resize(static_cast<size_t>(mr * width(m)));
            model.ExpertActivation(layer, m < n_experts ? m : kSharedExpert, in, mr, act.data());
            in = act.data();
          }
          acc[static_cast<size_t>(m - b0)]->Add(in, mr);
        }
      });
      result.seconds.capture += Since(t0);
      for (int64_t m = b0; m < b1; ++m) {
        const int64_t e = m < n_experts ? m : kSharedExpert;
        std::vector<LinearRef*> group;
        for (LinearRef& r : lins) {
          if (r.expert == e && (r.part == Part::kAll) == down) group.push_back(&r);
        }
        const HessianAccumulator& h = *acc[static_cast<size_t>(m - b0)];
        if (e >= 0 &&
            tokens[static_cast<size_t>(e)] < std::max<int64_t>(1, options.min_expert_tokens)) {
          t0 = Clock::now();
          for (LinearRef* r : group) {
            if (!r->params) continue;
            QuantizedLinear q = QuantizeLinear(r->w, r->rows, r->in, *r->params);
            DequantizeLinear(q, r->w);
            linears.emplace(r->name, std::move(q));
          }
          result.seconds.quantize += Since(t0);
          continue;
        }
        GptqGroup(group, h, options.gptq, linears, result, report);
      }
    }
  }
  report.expert_tokens = tokens;
  report.rtn_experts.clear();
  for (int64_t e = 0; e < n_experts; ++e) {
    if (tokens[static_cast<size_t>(e)] < std::max<int64_t>(1, options.min_expert_tokens)) {
      report.rtn_experts.push_back(e);
    }
  }
}

// GPTQ over one decoder block, "true sequential": acts.x is the block's input as the blocks
// quantized so far compute it, and every slot's Hessian comes from its input as the block walk
// computes it with the slots before it already quantized (q/k/v, then o, then gate/up, then
// down): one walk per slot, chunk by chunk. On return acts.x is the block's output with every
// weight quantized: the next block's input.
void GptqBlock(Model& model, int64_t layer, std::vector<LinearRef>& lins,
               CalibrationActivations& acts, const QuantizeOptions& options,
               std::map<std::string, QuantizedLinear>& linears, QuantizeResult& result,
               BlockReport& report) {
  const int64_t d = model.config().hidden_size, seq_len = acts.seq_len;
  const int64_t per_chunk = ChunkSequences(model.config(), options, acts.n_seq, seq_len);
  std::vector<float> rows;
  for (Slot s : {Slot::kQkv, Slot::kO, Slot::kGateUp, Slot::kDown}) {
    const std::vector<LinearRef*> group = InSlot(lins, s);
    if (group.empty()) continue;  // a sparse layer's MLP: its experts, below
    HessianAccumulator acc(group[0]->in);
    auto t0 = Clock::now();
    Captures cap;
    ForEachChunk(acts.n_seq, per_chunk, [&](int64_t s0, int64_t s1) {
      rows.assign(acts.x.begin() + s0 * seq_len * d, acts.x.begin() + s1 * seq_len * d);
      WalkChunk(model, layer, rows.data(), s0, s1, seq_len, {SlotInput(s)}, &cap, nullptr);
      acc.Add(cap[SlotInput(s)].data(), (s1 - s0) * seq_len);
    });
    result.seconds.capture += Since(t0);
    GptqGroup(group, acc, options.gptq, linears, result, report);
  }
  if (model.config().IsMoeLayer(layer)) {
    GptqExperts(model, layer, lins, acts, options, linears, result, report);
  }
  const auto t0 = Clock::now();
  ForEachChunk(acts.n_seq, per_chunk, [&](int64_t s0, int64_t s1) {
    model.BlockForwardBatch(layer, acts.x.data() + s0 * seq_len * d, s1 - s0, seq_len, nullptr);
  });
  result.seconds.capture += Since(t0);
}

uint64_t Fnv1a64(const void* data, size_t n) {
  const auto* p = static_cast<const uint8_t*>(data);
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

}  // namespace

void CheckLinearShapes(const ModelConfig& config, const QuantizeOptions& options) {
  if (ArchitectureOf(config).recurrent != nullptr) return CheckRecurrentQuantize(config, options);
  // Every quantization entry (QuantizeModel, QuantizeToFolder, QuantizeToGguf) passes here first.
  for (int64_t l = 0; l < config.num_hidden_layers; ++l) {
    Linears(config, nullptr, l, options.config, options.ggml_types);
  }
}

int64_t ChunkSequences(const ModelConfig& config, const QuantizeOptions& options, int64_t n_seq,
                       int64_t seq_len) {
  const uint64_t per_seq = static_cast<uint64_t>(FloatsPerToken(config) * seq_len) * 4;
  const int64_t fit = static_cast<int64_t>(options.activation_budget_bytes / per_seq);
  return std::max<int64_t>(1, std::min(fit, n_seq));
}

CalibrationActivations BuildCalibration(const ModelConfig& config, const Tokenizer& tokenizer,
                                        const QuantizeOptions& options) {
  const QuantConfig& qc = options.config;
  if (options.calib_data.empty()) {
    throw Error(std::string(QuantMethodName(options.method)) +
                " needs calibration text: pass --calib-data");
  }
  CalibrationOptions co;
  co.max_samples = qc.max_calib_samples;
  co.seq_len = qc.max_calib_seq_len;
  CalibrationBatch batch = LoadCalibrationBatch(options.calib_data, tokenizer, co);
  if (batch.max_token_id >= config.vocab_size) {
    throw Error(options.calib_data + ": token id " + std::to_string(batch.max_token_id) +
                " is outside the model's vocabulary of " + std::to_string(config.vocab_size));
  }
  CalibrationActivations a;
  a.n_seq = batch.n_blocks;
  a.seq_len = batch.seq_len;
  a.token_hash = Fnv1a64(batch.tokens.data(), batch.tokens.size() * sizeof(int32_t));
  a.tokens = std::move(batch.tokens);
  return a;
}

CalibrationActivations StartCalibration(const ModelConfig& config, const Tokenizer& tokenizer,
                                        const QuantizeOptions& options, QuantizeResult& result) {
  CalibrationActivations acts;
  if (options.method == QuantMethod::kRtn) return acts;
  const auto t0 = Clock::now();
  acts = BuildCalibration(config, tokenizer, options);
  result.calib_blocks = acts.n_seq;
  result.calib_tokens = acts.n_seq * acts.seq_len;
  result.seconds.calibration = Since(t0);
  return acts;
}

void EmbedCalibration(const Model& model, CalibrationActivations& a) {
  const int64_t d = model.config().hidden_size;
  a.x.resize(static_cast<size_t>(a.n_seq * a.seq_len * d));
  model.EmbedTokens(a.tokens.data(), a.n_seq * a.seq_len, a.x.data());
}

void QuantizeBlock(Model& model, int64_t l, const QuantizeOptions& options,
                   CalibrationActivations& acts, std::map<std::string, QuantizedLinear>& linears,
                   QuantizeResult& result) {
  if (ArchitectureOf(model.config()).recurrent != nullptr) {
    return QuantizeRecurrentBlock(model, l, options, acts, linears, result);
  }
  const QuantConfig& qc = options.config;
  const bool awq = options.method == QuantMethod::kAwq || options.method == QuantMethod::kAwqGptq;
  const bool gptq = options.method == QuantMethod::kGptq || options.method == QuantMethod::kAwqGptq;
  std::vector<LinearRef> lins = Linears(
      model.config(), &model.weights().layers[static_cast<size_t>(l)], l, qc, options.ggml_types);
  BlockReport report;
  report.layer = l;
  // awq+gptq: the AWQ searches run on this block's input, and GPTQ then starts again from it
  // with the scaled and clipped weights.
  if (awq) AwqBlock(model, l, lins, acts, options, /*update_x=*/!gptq, result, report);
  if (gptq) {
    GptqBlock(model, l, lins, acts, options, linears, result, report);
  } else {
    const auto t0 = Clock::now();
    for (LinearRef& r : lins) {
      if (r.ggml) {
        // The stored blocks, and the model left with what they dequantize to.
        GgmlTensor& g = result.ggml_linears[r.name];
        g.type = *r.ggml;
        g.bytes.resize(static_cast<size_t>(r.rows * GgmlRowBytes(g.type, r.in)));
        QuantizeGgmlRows(g.type, r.w, r.rows, r.in, g.bytes.data());
        const int64_t row_bytes = GgmlRowBytes(g.type, r.in);
        ThreadPool::Global().ParallelFor(r.rows, [&](int64_t r0, int64_t r1, int) {
          for (int64_t i = r0; i < r1; ++i) {
            DequantizeRow(g.type, g.bytes.data() + i * row_bytes, r.w + i * r.in, r.in);
          }
        });
        continue;
      }
      if (!r.params) continue;
      QuantizedLinear ql = QuantizeLinear(r.w, r.rows, r.in, *r.params);
      DequantizeLinear(ql, r.w);
      linears.emplace(r.name, std::move(ql));
    }
    result.seconds.quantize += Since(t0);
  }
  result.blocks.push_back(std::move(report));
}

QuantizeResult QuantizeModel(Model& model, const Tokenizer& tokenizer,
                             const QuantizeOptions& options) {
  const QuantConfig& qc = options.config;
  qc.Validate();
  model.RequireFp32Weights("quantization");
  const ModelConfig& c = model.config();
  const auto t_start = Clock::now();
  QuantizeResult result;
  result.method = options.method;
  if (options.method != QuantMethod::kAwq && options.method != QuantMethod::kRtn) {
    options.gptq.Validate();
  }
  if (!options.ggml_types.empty() && options.method != QuantMethod::kAwq &&
      options.method != QuantMethod::kRtn) {
    throw Error(std::string("--method ") + QuantMethodName(options.method) +
                " cannot write ggml types; GGUF output takes awq or rtn");
  }
  CheckLinearShapes(c, options);
  CalibrationActivations acts;
  if (options.method != QuantMethod::kRtn) {
    const auto t0 = Clock::now();
    acts = BuildCalibration(c, tokenizer, options);
    EmbedCalibration(model, acts);
    result.calib_blocks = acts.n_seq;
    result.calib_tokens = acts.n_seq * acts.seq_len;
    result.seconds.calibration = Since(t0);
  }
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    QuantizeBlock(model, l, options, acts, result.linears, result);
    if (options.progress) options.progress(l + 1, c.num_hidden_layers);
  }
  result.seconds.total = Since(t_start);
  result.peak_rss_bytes = PeakRssBytes();
  return result;
}

}  // namespace awq
