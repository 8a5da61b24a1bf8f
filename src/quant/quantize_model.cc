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

// The layer's linears in the description's checkpoint order, with their quantization settings
// (`ggml_types` non-empty: the ggml type of each converted linear, QuantizeOptions::ggml_types);
// `lw` null checks the shapes only (no weight pointers).
std::vector<LinearRef> Linears(const ModelConfig& c, LayerWeights* lw, int64_t layer,
                               const QuantConfig& qc,
                               const std::map<std::string, GgmlType>& ggml_types) {
  const std::string p = LayerPrefix(layer);
  std::vector<LinearRef> out;
  for (const LinearSpec& spec : ArchitectureOf(c).linears) {
    const RowRange r = SlotRows(c, spec.slot, spec.part);
    LinearRef ref;
    ref.name = p + spec.name;
    ref.slot = spec.slot;
    if (lw != nullptr) ref.w = SlotTensor(*lw, spec.slot).data<float>() + r.row0 * r.in;
    ref.rows = r.rows;
    ref.in = r.in;
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
      out.push_back(std::move(ref));
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

namespace {

// Floats per calibration token that a chunk's walk and searches hold: the six observed points,
// the walk's own copy of the rows, and a candidate's attention or MLP output with its
// intermediate.
int64_t FloatsPerToken(const ModelConfig& c) {
  const int64_t d = c.hidden_size, q_dim = c.num_attention_heads * c.head_dim;
  const int64_t i = c.intermediate_size;
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
      WalkChunk(model, l, walk_rows, s0, s1, seq_len, {}, nullptr, stats);
    });
  }
  result.seconds.capture += Since(t0);

  // The groups this block searches, their candidates and running squared errors.
  struct GroupState {
    const AwqGroupSpec* spec = nullptr;
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
  for (const AwqGroupSpec& g : arch.awq_groups) {
    GroupState st;
    st.spec = &g;
    st.lins = InSlot(lins, g.slot);
    st.in = st.lins[0]->in;
    // v -> o only without grouped-query attention: the scaled rows must be o's inputs.
    if (g.needs_matching_rows && OwnerWidth(c, g.owner) != st.in) continue;
    for (const LinearRef* r : st.lins) st.rows += r->rows;
    st.out_width = g.inspect == Inspect::kOwnOutput ? st.rows : d;
    // The Gram matrix (summed in double) must also fit the activation budget: a 7B model's
    // down_proj would need 1.5 GB.
    const uint64_t gram_bytes = static_cast<uint64_t>(st.in * st.in) * 12;
    if (g.inspect == Inspect::kOwnOutput && gram_bytes <= options.activation_budget_bytes &&
        GramIsCheaper(st.rows, st.in, loss_seqs * seq_len, qc.n_grid + 1)) {
      st.gram = std::make_unique<HessianAccumulator>(st.in);
    }
    groups.push_back(std::move(st));
  }
  // Candidate scales from the statistics (CandidateScales over SearchScales' grid).
  // One candidate's forward over nl rows: the group's products, plus the module's other linear
  // and attention's score and value products (causal: half the positions).
  const auto CandidateFlops = [&](const ModelConfig& cfg, const GroupState& g, int64_t nl) {
    const double rows = static_cast<double>(nl);
    double f = 2.0 * rows * g.rows * g.in;
    if (g.spec->inspect == Inspect::kAttention) {
      const double q_dim = static_cast<double>(cfg.num_attention_heads * cfg.head_dim);
      f += 2.0 * rows * q_dim * d + 2.0 * rows * static_cast<double>(seq_len) * q_dim;
    } else if (g.spec->inspect == Inspect::kMlp) {
      f += 2.0 * rows * static_cast<double>(cfg.intermediate_size) * d;
    }
    return f;
  };
  const auto make_candidates = [&] {
    for (GroupState& g : groups) {
      std::vector<const float*> ws;
      std::vector<int64_t> row_counts;
      for (const LinearRef* r : g.lins) {
        ws.push_back(r->w);
        row_counts.push_back(r->rows);
      }
      g.x_mean = stats[static_cast<size_t>(g.spec->slot)].Mean(n);
      // Weights normalised per quantization group: the integer groups, or the ggml type's scale
      // blocks.
      const int64_t w_group = g.lins[0]->ggml ? g.lins[0]->clip_group() : qc.q_group_size;
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
      for (GroupState& g : groups)
        SelectPass(g.scored, g.sse, qc.n_grid, grid_step, pass, g.active);
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
        result.seconds.capture += Since(t1);
        if (one_chunk && pass == 0) make_candidates();
      }
      if (s0 >= ls1) return;
      t1 = Clock::now();
      const int64_t nl = (ls1 - s0) * seq_len;  // scored rows of this chunk
      for (GroupState& g : groups) {
        const float* inputs = cap[SlotInput(g.spec->slot)].data();
        if (g.gram) {
          if (pass == 0) {
            g.gram->Add(inputs, nl);
            result.search_flops += 2.0 * static_cast<double>(nl) * g.in * g.in;
          }
          continue;
        }
        cand.resize(static_cast<size_t>(g.rows * g.in));
        out.resize(static_cast<size_t>(nl * g.out_width));
        const float* ref = nullptr;
        if (g.spec->inspect == Inspect::kOwnOutput) {
          // The group's own output with the original weights (its linears are consecutive rows
          // of one slot matrix).
          reference.resize(out.size());
          LinearF32(inputs, g.in, g.lins[0]->w, g.in, reference.data(), g.rows, nl, g.rows, g.in,
                    false, ThreadPool::Global());
          ref = reference.data();
        } else {
          ref = cap[g.spec->inspect == Inspect::kAttention ? BlockPoint::kAttnOut
                                                           : BlockPoint::kMlpOut]
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
          switch (g.spec->inspect) {
            case Inspect::kAttention:
              model.AttentionBatch(l, cand.data(), lw.wo.data<float>(), inputs, ls1 - s0, seq_len,
                                   nullptr, out.data());
              break;
            case Inspect::kMlp:
              model.MlpBatch(l, cand.data(), lw.w_down.data<float>(), inputs, nl, nullptr,
                             out.data());
              break;
            case Inspect::kOwnOutput:
              LinearF32(inputs, g.in, cand.data(), g.in, out.data(), g.rows, nl, g.rows, g.in,
                        false, ThreadPool::Global());
              break;
            case Inspect::kCount:
              AWQ_CHECK(false && "invalid inspect");
          }
          AddSquaredError(ref, out.data(), nl * g.out_width, g.sse[k]);
        }
        result.search_flops += static_cast<double>(n_active) * CandidateFlops(c, g, nl);
      }
      result.seconds.scale_search += Since(t1);
    });
    for (GroupState& g : groups) {
      if (g.gram) continue;
      for (size_t k = 0; k < g.scored.size(); ++k) g.scored[k] |= g.active[k];
    }
  }

  // Gram-scored groups: the candidates against the accumulated inputs, in the same passes.
  auto t1 = Clock::now();
  for (GroupState& g : groups) {
    if (!g.gram) continue;
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
    const double denom = static_cast<double>(loss_seqs * seq_len * g.out_width);
    const int best = BestScored(g.scored, g.sse, g.spec->name);
    BlockReport::Group rep;
    rep.name = g.spec->name;
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
    FoldIntoOwner(model, l, g.spec->owner, scales[gi]);
    for (LinearRef* r : g.lins) ScaleColumns(r->w, r->rows, r->in, scales[gi]);
    SlotStats& st = stats[static_cast<size_t>(g.spec->slot)];
    DivideColumns(st.samples.data(), st.t_used, st.width, scales[gi]);
  }

  // 4. Clip search on the scaled weights (q/k skipped: their error goes through q.k).
  if (qc.apply_clip) {
    t1 = Clock::now();
    for (LinearRef& r : lins) {
      if (!r.converted() || ClipSkipped(r.name)) continue;
      const SlotStats& st = stats[static_cast<size_t>(r.slot)];
      // The rows are already the sample: step 1 over them.
      const std::vector<float> max_val =
          SearchClip(r.w, r.rows, r.in, st.samples.data(), st.t_used, r.clip_group(),
                     r.round_trip(), qc.n_grid, qc.max_shrink, st.t_used);
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
  // Mixture-of-experts models are refused: the families describe no AWQ groups for experts, so
  // an expert would be left unquantized or quantized without its scales.
  if (config.num_experts > 0) {
    throw Error("model_type " + config.model_type + " (" + config.architecture + ") is a " +
                "mixture of experts (" + std::to_string(config.num_experts) +
                " experts): awq.cpp runs it in fp32 but cannot quantize it yet");
  }
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
