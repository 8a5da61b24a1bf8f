// Quantization of the recurrent families' layers (Mamba, RWKV; docs/RECURRENT.md): AWQ scales
// for the linears whose input is a norm's output channel for channel (folded into that norm's
// weight and bias), clipping and round-to-nearest for every quantized linear. The block walk is
// the inference one (Model::RecurrentBlockBatch), observed at every linear's input.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "awq/awq_checkpoint.h"
#include "awq/awq_search.h"
#include "awq/error.h"
#include "awq/model.h"
#include "awq/thread_pool.h"
#include "kernels/cpu/sgemm.h"
#include "model/arch.h"
#include "model/recurrent.h"
#include "quant/quantize_block.h"
#include "quant/quantize_recurrent.h"

namespace awq {

namespace {

using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// The searches look at most this many calibration rows: the clip search at every step-th input
// row of each linear (the mean |x| of the scale search sums all rows), the scale search at the
// layer's output on the first 8192 / seq_len sequences. A sample of 8192 tokens already ranks
// the 20 candidates as the whole batch does, and the samples of every linear of a layer are held
// at once.
constexpr int64_t kMaxSampleRows = 8192;

// A linear of the current layer: its weight in the model and its settings.
struct RecLinear {
  std::string name;  // "backbone.layers.3.mixer.in_proj"
  const RecurrentLinear* spec = nullptr;
  float* w = nullptr;  // [rows, in]
  int64_t rows = 0, in = 0;
  std::optional<QuantParams> params;  // nullopt: stays in full precision
};

std::vector<RecLinear> LayerLinears(const ModelConfig& c, const RecurrentSpec& spec,
                                    LayerWeights* lw, int64_t layer, const QuantConfig& qc) {
  const std::vector<RecurrentTensor> tensors = spec.tensors(c, layer);
  std::vector<RecLinear> out;
  for (const RecurrentLinear& l : spec.linears) {
    RecLinear r;
    r.name = RecurrentLayerPrefix(spec, layer) + l.name;
    r.spec = &l;
    const std::string weight = std::string(l.name) + ".weight";
    const auto t = std::find_if(tensors.begin(), tensors.end(),
                                [&](const RecurrentTensor& rt) { return rt.name == weight; });
    AWQ_CHECK(t != tensors.end() && t->shape.size() == 2);
    r.rows = t->shape[0];
    r.in = t->shape[1];
    if (lw != nullptr) r.w = lw->recurrent.at(weight).data<float>();
    r.params = qc.ParamsFor(r.name);
    if (r.params) {
      try {
        GroupSize(*r.params, r.in);
      } catch (const Error& e) {
        throw Error(r.name + ": " + e.what() + " (set q_group_size to a divisor of " +
                    std::to_string(r.in) + ", or -1 for one group per row)");
      }
    }
    out.push_back(std::move(r));
  }
  return out;
}

// One linear's inputs over the calibration batch: sum of |x| per channel over every row, and
// rows 0, step, 2 step, ... kept.
struct InputStats {
  int64_t width = 0, step = 1, kept = 0;
  std::vector<double> abs_sum;
  std::vector<float> rows;  // [kept, width]

  void Init(int64_t w, int64_t n_rows) {
    width = w;
    step = std::max<int64_t>(1, (n_rows + kMaxSampleRows - 1) / kMaxSampleRows);
    kept = (n_rows + step - 1) / step;
    abs_sum.assign(static_cast<size_t>(w), 0.0);
    rows.assign(static_cast<size_t>(kept * w), 0.0f);
  }
  void Add(int64_t row0, const float* x, int64_t n) {
    for (int64_t t = 0; t < n; ++t) {
      const float* r = x + t * width;
      for (int64_t c = 0; c < width; ++c) abs_sum[static_cast<size_t>(c)] += std::fabs(r[c]);
      const int64_t g = row0 + t;
      if (g % step == 0) {
        std::memcpy(rows.data() + (g / step) * width, r,
                    static_cast<size_t>(width) * sizeof(float));
      }
    }
  }
};

// The layer's input and ORIGINAL output on the first calibration sequences, against which a
// group's candidates are scored (the recurrence runs over whole sequences, so rows cannot be
// sampled as for the statistics).
struct Inspection {
  Model* model = nullptr;
  int64_t layer = 0;
  int64_t n_seq = 0, seq_len = 0;
  std::vector<float> x;  // [n_seq * seq_len, D] the layer's input
  std::vector<float> y;  // the same rows of its original output
};

// AWQ's scale search for the linears of one norm (their inputs differ, RWKV's token-shift mixes,
// but all scale with the norm's output): x_mean over every input row of the group, w_mean over
// its stacked rows; each candidate s puts Q(W diag(s)) diag(s)^-1 in place of every linear of the
// group and is scored by the mean squared error of the layer's output against the original's,
// as AutoAWQ scores a group at the module it feeds (the gate, the convolution and the scan, or
// the WKV, see the linears' errors through what they feed). Folds the winner and divides the
// samples; returns the report entry.
BlockReport::Group ScaleGroup(const RecurrentSpec& spec, LayerWeights& lw, const std::string& norm,
                              const std::vector<RecLinear*>& group, std::vector<InputStats>& stats,
                              const std::vector<int>& index, int64_t n_rows,
                              const Inspection& inspect, const QuantConfig& qc) {
  const int64_t in = group[0]->in;
  std::vector<float> x_mean(static_cast<size_t>(in), 0.0f);
  for (int i : index) {
    for (int64_t c = 0; c < in; ++c) {
      x_mean[static_cast<size_t>(c)] +=
          static_cast<float>(stats[static_cast<size_t>(i)].abs_sum[static_cast<size_t>(c)] /
                             static_cast<double>(n_rows * static_cast<int64_t>(index.size())));
    }
  }
  std::vector<const float*> ws;
  std::vector<int64_t> rows;
  std::vector<std::vector<float>> original(group.size());
  for (size_t g = 0; g < group.size(); ++g) {
    const RecLinear* r = group[g];
    ws.push_back(r->w);
    rows.push_back(r->rows);
    original[g].assign(r->w, r->w + r->rows * in);
  }
  const std::vector<float> w_mean = WeightMeanNormalized(ws, rows, in, qc.q_group_size);
  std::vector<float> out;
  const auto loss = [&](const std::vector<float>& s) {
    for (size_t g = 0; g < group.size(); ++g) {
      const RecLinear& r = *group[g];
      if (r.params) ScaleQuantizeUnscale(original[g].data(), r.w, r.rows, in, s, *r.params);
    }
    out = inspect.x;
    inspect.model->RecurrentBlockBatch(inspect.layer, out.data(), inspect.n_seq, inspect.seq_len,
                                       nullptr);
    double sse = 0;
    for (size_t i = 0; i < out.size(); ++i) {
      const double e = static_cast<double>(out[i]) - inspect.y[i];
      sse += e * e;
    }
    return sse / static_cast<double>(out.size());
  };
  const ScaleSearchResult res =
      SearchScales(x_mean, w_mean, qc.n_grid, qc.duo_scaling, /*include_identity=*/true, loss);
  for (size_t g = 0; g < group.size(); ++g) {
    std::copy(original[g].begin(), original[g].end(), group[g]->w);
  }
  FoldRecurrentScale(spec, lw, norm, res.scales);
  for (size_t g = 0; g < group.size(); ++g) {
    InputStats& st = stats[static_cast<size_t>(index[g])];
    for (int64_t t = 0; t < st.kept; ++t) {
      for (int64_t c = 0; c < in; ++c) st.rows[t * in + c] /= res.scales[static_cast<size_t>(c)];
    }
  }
  BlockReport::Group rep;
  rep.name = norm;
  rep.best_index = res.best_index;
  rep.best_loss = res.best_loss;
  rep.identity_loss = res.losses.back();
  return rep;
}

}  // namespace

void FoldRecurrentScale(const RecurrentSpec& spec, LayerWeights& lw, const std::string& norm,
                        const std::vector<float>& s) {
  // The norm's output (weight and bias divided) is x / s channel for channel; RWKV's token-shift
  // mixes x * mix + shifted * (1 - mix) are per-channel linear in two rows of that output, so
  // they are divided by s too, and columns multiplied by s undo it exactly.
  for (const char* part : {".weight", ".bias"}) {
    const auto it = lw.recurrent.find(norm + part);
    if (it == lw.recurrent.end()) continue;
    float* v = it->second.data<float>();
    for (int64_t i = 0; i < it->second.numel(); ++i) v[i] /= s[static_cast<size_t>(i)];
  }
  for (const RecurrentLinear& l : spec.linears) {
    if (norm != l.scale_norm) continue;
    Tensor& t = lw.recurrent.at(std::string(l.name) + ".weight");
    const int64_t rows = t.dim(0), in = t.dim(1);
    float* w = t.data<float>();
    for (int64_t o = 0; o < rows; ++o) {
      for (int64_t c = 0; c < in; ++c) w[o * in + c] *= s[static_cast<size_t>(c)];
    }
  }
}

void CheckRecurrentQuantize(const ModelConfig& c, const QuantizeOptions& options) {
  const RecurrentSpec& spec = *ArchitectureOf(c).recurrent;
  if (options.method != QuantMethod::kAwq && options.method != QuantMethod::kRtn) {
    throw Error(std::string("--method ") + QuantMethodName(options.method) + ": model_type " +
                c.model_type + " is recurrent; awq.cpp quantizes it with awq or rtn");
  }
  if (!options.ggml_types.empty()) {
    throw Error("model_type " + c.model_type + " is recurrent: awq.cpp writes no GGUF for it");
  }
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    LayerLinears(c, spec, nullptr, l, WithFamilyExclusions(options.config, c));
  }
}

void QuantizeRecurrentBlock(Model& model, int64_t layer, const QuantizeOptions& options,
                            CalibrationActivations& acts,
                            std::map<std::string, QuantizedLinear>& linears,
                            QuantizeResult& result) {
  const ModelConfig& c = model.config();
  const QuantConfig qc = WithFamilyExclusions(options.config, c);
  const RecurrentSpec& spec = *ArchitectureOf(c).recurrent;
  LayerWeights& lw = model.weights().layers[static_cast<size_t>(layer)];
  std::vector<RecLinear> lins = LayerLinears(c, spec, &lw, layer, qc);
  BlockReport report;
  report.layer = layer;

  if (options.method == QuantMethod::kAwq) {
    // 1. The ORIGINAL block over the batch, every linear's inputs observed; acts.x becomes its
    // output, the next block's input.
    auto t0 = Clock::now();
    const int64_t n_rows = acts.n_seq * acts.seq_len;
    std::vector<InputStats> stats(lins.size());
    for (size_t i = 0; i < lins.size(); ++i) stats[i].Init(lins[i].in, n_rows);
    const LinearInputObserver observe = [&](int linear, int64_t row0, const float* rows, int64_t n,
                                            int64_t width) {
      AWQ_CHECK(width == stats[static_cast<size_t>(linear)].width);
      stats[static_cast<size_t>(linear)].Add(row0, rows, n);
    };
    Inspection inspect;
    inspect.model = &model;
    inspect.layer = layer;
    inspect.seq_len = acts.seq_len;
    inspect.n_seq = std::min(acts.n_seq, std::max<int64_t>(1, kMaxSampleRows / acts.seq_len));
    const size_t inspected = static_cast<size_t>(inspect.n_seq * acts.seq_len * c.hidden_size);
    inspect.x.assign(acts.x.begin(), acts.x.begin() + static_cast<std::ptrdiff_t>(inspected));
    model.RecurrentBlockBatch(layer, acts.x.data(), acts.n_seq, acts.seq_len, &observe);
    inspect.y.assign(acts.x.begin(), acts.x.begin() + static_cast<std::ptrdiff_t>(inspected));
    result.seconds.capture += Since(t0);

    // 2. One scale per norm that feeds linears, folded into it.
    t0 = Clock::now();
    std::vector<std::string> norms;
    for (const RecLinear& r : lins) {
      const std::string n = r.spec->scale_norm;
      if (!n.empty() && std::find(norms.begin(), norms.end(), n) == norms.end()) norms.push_back(n);
    }
    for (const std::string& norm : norms) {
      std::vector<RecLinear*> group;
      std::vector<int> index;
      bool any = false;
      for (size_t i = 0; i < lins.size(); ++i) {
        if (lins[i].spec->scale_norm != norm) continue;
        group.push_back(&lins[i]);
        index.push_back(static_cast<int>(i));
        any = any || lins[i].params.has_value();
      }
      if (!any) continue;  // nothing of the group is quantized: no scale to search
      report.groups.push_back(ScaleGroup(spec, lw, norm, group, stats, index, n_rows, inspect, qc));
    }
    result.seconds.scale_search += Since(t0);

    // 3. Clipping on the scaled weights and inputs.
    if (qc.apply_clip) {
      t0 = Clock::now();
      for (size_t i = 0; i < lins.size(); ++i) {
        RecLinear& r = lins[i];
        if (!r.params || ClipSkipped(r.name)) continue;
        const InputStats& st = stats[i];
        const std::vector<float> max_val = SearchClip(r.w, r.rows, r.in, st.rows.data(), st.kept,
                                                      *r.params, qc.n_grid, qc.max_shrink, st.kept);
        ApplyClip(r.w, r.rows, r.in, max_val, GroupSize(*r.params, r.in));
      }
      result.seconds.clip_search += Since(t0);
    }
  }

  // 4. Round to nearest; the model keeps the dequantized weights.
  const auto t0 = Clock::now();
  for (RecLinear& r : lins) {
    if (!r.params) continue;
    QuantizedLinear q = QuantizeLinear(r.w, r.rows, r.in, *r.params);
    DequantizeLinear(q, r.w);
    linears.emplace(r.name, std::move(q));
  }
  result.seconds.quantize += Since(t0);
  result.blocks.push_back(std::move(report));
}

void AddRecurrentBlockTensors(AwqCheckpointWriter& w, const Model& model, int64_t layer,
                              const std::map<std::string, QuantizedLinear>& linears) {
  const ModelConfig& c = model.config();
  const RecurrentSpec& spec = *ArchitectureOf(c).recurrent;
  const LayerWeights& lw = model.weights().layers[static_cast<size_t>(layer)];
  const std::string p = RecurrentLayerPrefix(spec, layer);
  for (const RecurrentTensor& t : spec.tensors(c, layer)) {
    // A quantized linear's weight is written as its codes, under the module name.
    static const std::string kWeight = ".weight";
    if (t.name.size() > kWeight.size() &&
        t.name.compare(t.name.size() - kWeight.size(), kWeight.size(), kWeight) == 0) {
      const auto it = linears.find(p + t.name.substr(0, t.name.size() - kWeight.size()));
      if (it != linears.end()) {
        w.AddQuantized(it->first, it->second);
        continue;
      }
    }
    w.AddTensor(p + t.name, lw.recurrent.at(t.name));
  }
}

}  // namespace awq
