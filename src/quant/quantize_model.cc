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
#include <initializer_list>
#include <optional>
#include <string>

#include "awq/awq_search.h"
#include "awq/gptq.h"
#include "awq/model.h"
#include "awq/thread_pool.h"
#include "awq/tokenizer.h"
#include "model/arch.h"

namespace awq {

namespace {

using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// A linear of the current block: a row range of one of the model's fused slot matrices.
struct LinearRef {
  std::string name;  // "model.layers.3.self_attn.q_proj"
  Slot slot = Slot::kQkv;
  float* w = nullptr;  // [rows, in]
  int64_t rows = 0;
  int64_t in = 0;
  std::optional<QuantParams> params;  // nullopt: not converted
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

// The layer's linears in the description's checkpoint order, with their quantization settings.
std::vector<LinearRef> Linears(Model& model, int64_t layer, const QuantConfig& qc) {
  const ModelConfig& c = model.config();
  LayerWeights& lw = model.weights().layers[static_cast<size_t>(layer)];
  const std::string p = LayerPrefix(layer);
  std::vector<LinearRef> out;
  for (const LinearSpec& spec : ArchitectureOf(c).linears) {
    const RowRange r = SlotRows(c, spec.slot, spec.part);
    LinearRef ref;
    ref.name = p + spec.name;
    ref.slot = spec.slot;
    ref.w = SlotTensor(lw, spec.slot).data<float>() + r.row0 * r.in;
    ref.rows = r.rows;
    ref.in = r.in;
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
    out.push_back(std::move(ref));
  }
  return out;
}

std::vector<LinearRef*> InSlot(std::vector<LinearRef>& lins, Slot s) {
  std::vector<LinearRef*> out;
  for (LinearRef& r : lins) {
    if (r.slot == s) out.push_back(&r);
  }
  return out;
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

// Runs layer `layer`'s block walk over x [n_seq * seq_len, D] in place, copying the rows of the
// requested points into `cap` (sized on first sight).
void WalkAndCapture(const Model& model, int64_t layer, std::vector<float>& x, int64_t n_seq,
                    int64_t seq_len, std::initializer_list<BlockPoint> points, Captures& cap) {
  const int64_t n = n_seq * seq_len;
  bool want[static_cast<size_t>(BlockPoint::kCount)] = {};
  for (BlockPoint p : points) want[static_cast<size_t>(p)] = true;
  const BlockObserver observe = [&](BlockPoint p, int64_t row0, const float* rows, int64_t rn,
                                    int64_t width) {
    if (!want[static_cast<size_t>(p)]) return;
    std::vector<float>& dst = cap[p];
    if (dst.size() != static_cast<size_t>(n * width)) dst.resize(static_cast<size_t>(n * width));
    std::memcpy(dst.data() + row0 * width, rows, static_cast<size_t>(rn * width) * sizeof(float));
  };
  model.BlockForwardBatch(layer, x.data(), n_seq, seq_len, &observe);
}

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
// quantized so far compute it, and every slot's Hessian comes from its input as the block walk
// computes it with the slots before it already quantized (q/k/v, then o, then gate/up, then
// down): one walk per slot, observed at that slot's input. On return x is the block's output
// with every weight quantized: the next block's input.
void GptqBlock(Model& model, int64_t layer, std::vector<LinearRef>& lins, std::vector<float>& x,
               int64_t n_seq, int64_t seq_len, const GptqOptions& go, QuantizeResult& result,
               BlockReport& report) {
  const int64_t n = n_seq * seq_len;
  for (Slot s : {Slot::kQkv, Slot::kO, Slot::kGateUp, Slot::kDown}) {
    auto t0 = Clock::now();
    std::vector<float> scratch = x;
    Captures cap;
    WalkAndCapture(model, layer, scratch, n_seq, seq_len, {SlotInput(s)}, cap);
    result.seconds.capture += Since(t0);
    const std::vector<LinearRef*> group = InSlot(lins, s);
    GptqGroup(group, cap[SlotInput(s)].data(), n, group[0]->in, go, result, report);
  }
  const auto t0 = Clock::now();
  model.BlockForwardBatch(layer, x.data(), n_seq, seq_len, nullptr);
  result.seconds.capture += Since(t0);
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
      return fold_norm(lw.ffn_norm);
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

QuantizeResult QuantizeModel(Model& model, const Tokenizer& tokenizer,
                             const QuantizeOptions& options) {
  const QuantConfig& qc = options.config;
  qc.Validate();
  model.RequireFp32Weights("quantization");
  const ModelConfig& c = model.config();
  const Architecture& arch = ArchitectureOf(c);
  const int64_t n_layers = c.num_hidden_layers, d = c.hidden_size;
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
    model.EmbedTokens(batch.tokens.data(), n_seq * seq_len, x.data());
    result.seconds.calibration = Since(t0);
  }
  const int64_t n = n_seq * seq_len;

  for (int64_t l = 0; l < n_layers; ++l) {
    std::vector<LinearRef> lins = Linears(model, l, qc);
    BlockReport report;
    report.layer = l;
    // awq+gptq: the AWQ searches below run on this block's input, and GPTQ then starts again
    // from it with the scaled and clipped weights.
    std::vector<float> block_in;
    if (awq && gptq) block_in = x;
    if (awq) {
      // 1. Run the original block (the one walk, observed), recording every slot's input and
      // the attention and MLP outputs; x becomes the next block's input.
      auto t0 = Clock::now();
      Captures cap;
      WalkAndCapture(model, l, x, n_seq, seq_len,
                     {BlockPoint::kAttnIn, BlockPoint::kAttnCtx, BlockPoint::kAttnOut,
                      BlockPoint::kMlpIn, BlockPoint::kMlpAct, BlockPoint::kMlpOut},
                     cap);
      result.seconds.capture += Since(t0);

      // 2. Scale search, every group of the description against the original weights.
      t0 = Clock::now();
      LayerWeights& lw = model.weights().layers[static_cast<size_t>(l)];
      std::vector<std::vector<float>> scales(arch.awq_groups.size());
      for (size_t gi = 0; gi < arch.awq_groups.size(); ++gi) {
        const AwqGroupSpec& g = arch.awq_groups[gi];
        const std::vector<LinearRef*> group = InSlot(lins, g.slot);
        const int64_t in_dim = group[0]->in;
        // v -> o only without grouped-query attention: the scaled rows must be o's inputs.
        if (g.needs_matching_rows && OwnerWidth(c, g.owner) != in_dim) continue;
        const std::vector<float>& inputs = cap[SlotInput(g.slot)];
        ScaleSearchResult r;
        if (g.inspect == Inspect::kOwnOutput) {
          // A linear inspected at its own output: the library's search (awq_search.h).
          std::vector<GroupLinear> own;
          for (const LinearRef* lr : group) own.push_back({lr->w, lr->rows, lr->params, lr->name});
          r = SearchOwnOutputScales(own, in_dim, inputs.data(), n, qc);
        } else {
          std::vector<const float*> ws;
          std::vector<int64_t> rows;
          int64_t slot_rows = 0;
          for (const LinearRef* lr : group) {
            ws.push_back(lr->w);
            rows.push_back(lr->rows);
            slot_rows += lr->rows;
          }
          const std::vector<float> x_mean = ChannelMeanAbs(inputs.data(), n, in_dim);
          const std::vector<float> w_mean = WeightMeanNormalized(ws, rows, in_dim, qc.q_group_size);
          // The reference output of the inspected module with the original weights.
          const std::vector<float>& reference = g.inspect == Inspect::kAttention
                                                    ? cap[BlockPoint::kAttnOut]
                                                    : cap[BlockPoint::kMlpOut];
          // The candidate slot matrix (the group's linears are its rows, in order).
          std::vector<float> cand(static_cast<size_t>(slot_rows * in_dim));
          std::vector<float> out(reference.size());
          auto loss = [&](const std::vector<float>& sv) {
            float* p = cand.data();
            for (const LinearRef* lr : group) {
              CandidateWeights(*lr, sv, p);
              p += lr->rows * in_dim;
            }
            if (g.inspect == Inspect::kAttention) {
              model.AttentionBatch(l, cand.data(), lw.wo.data<float>(), inputs.data(), n_seq,
                                   seq_len, nullptr, out.data());
            } else {
              model.MlpBatch(l, cand.data(), lw.w_down.data<float>(), inputs.data(), n, nullptr,
                             out.data());
            }
            return MeanSquaredError(reference, out);
          };
          // Including s = 1 guards against duo scaling's r = 0 not being the identity (AWQ.md).
          r = SearchScales(x_mean, w_mean, qc.n_grid, qc.duo_scaling, /*include_identity=*/true,
                           loss);
        }
        BlockReport::Group rep;
        rep.name = g.name;
        rep.best_index = r.best_index;
        rep.best_loss = r.best_loss;
        rep.identity_loss = r.losses.back();
        report.groups.push_back(rep);
        scales[gi] = r.scales;
      }
      result.seconds.scale_search += Since(t0);

      // 3. Fold the scales: the owner divided (through its norm form), the slot's input columns
      // multiplied, and the captured inputs divided (they feed the clip search).
      for (size_t gi = 0; gi < arch.awq_groups.size(); ++gi) {
        if (scales[gi].empty()) continue;
        const AwqGroupSpec& g = arch.awq_groups[gi];
        FoldIntoOwner(model, l, g.owner, scales[gi]);
        for (LinearRef* r : InSlot(lins, g.slot)) ScaleColumns(r->w, r->rows, r->in, scales[gi]);
        std::vector<float>& inputs = cap[SlotInput(g.slot)];
        DivideColumns(inputs.data(), n, static_cast<int64_t>(scales[gi].size()), scales[gi]);
      }

      // 4. Clip search on the scaled weights (q/k skipped: their error goes through q.k).
      if (qc.apply_clip) {
        t0 = Clock::now();
        for (LinearRef& r : lins) {
          if (!r.params || ClipSkipped(r.name)) continue;
          const std::vector<float>& inputs = cap[SlotInput(r.slot)];
          const std::vector<float> max_val =
              SearchClip(r.w, r.rows, r.in, inputs.data(), n, *r.params, qc.n_grid, qc.max_shrink,
                         qc.n_sample_token);
          ApplyClip(r.w, r.rows, r.in, max_val, GroupSize(*r.params, r.in));
        }
        result.seconds.clip_search += Since(t0);
      }
    }

    // 5. Quantize every converted linear; the model keeps the dequantized weights.
    if (gptq) {
      if (awq) x = std::move(block_in);
      GptqBlock(model, l, lins, x, n_seq, seq_len, options.gptq, result, report);
    } else {
      const auto t0 = Clock::now();
      for (LinearRef& r : lins) {
        if (!r.params) continue;
        QuantizedLinear ql = QuantizeLinear(r.w, r.rows, r.in, *r.params);
        DequantizeLinear(ql, r.w);
        result.linears.emplace(r.name, std::move(ql));
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
