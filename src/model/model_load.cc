// Loading a model's weights into the fused fp32 layout, from any WeightSource, by the tensor
// lists of the family's description.
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>

#include "awq/awq_checkpoint.h"
#include "awq/half.h"
#include "awq/model.h"
#include "awq/safetensors.h"
#include "awq/thread_pool.h"
#include "kernels/cpu/i8_linear.h"
#include "kernels/cpu/sgemm.h"
#include "model/arch.h"
#include "model/recurrent.h"
#include "model/rope.h"
#include "model/weight_source.h"

namespace awq {

namespace {

// Fetches a tensor and checks its shape; a mismatch names the file, the tensor and both shapes.
Tensor Fetch(const WeightSource& src, const std::string& name, const Shape& expect) {
  Tensor t = src.GetF32(name);
  if (t.shape() != expect) {
    throw Error(src.path() + ": tensor " + name + " has shape " + ShapeToString(t.shape()) +
                " but the config implies " + ShapeToString(expect));
  }
  return t;
}

// Stacks row blocks [r_i, cols] into one [sum r_i, cols] tensor.
Tensor StackRows(const std::vector<Tensor>& parts) {
  int64_t rows = 0;
  for (const Tensor& p : parts) rows += p.dim(0);
  const int64_t cols = parts[0].ndim() > 1 ? parts[0].dim(1) : 1;
  Tensor out(DType::kF32, parts[0].ndim() > 1 ? Shape{rows, cols} : Shape{rows});
  float* dst = out.data<float>();
  for (const Tensor& p : parts) {
    std::memcpy(dst, p.data<float>(), p.nbytes());
    dst += p.numel();
  }
  return out;
}

}  // namespace

namespace {

// A sparse layer's router and experts, each expert's gate and up rows stacked into one
// [2 * Ie, D] matrix as the dense MLP's are, all experts in one [E, ...] tensor; Qwen2-MoE's
// shared expert likewise.
void FetchMoe(const WeightSource& src, const ModelConfig& c, const MoeNames& names,
              const std::string& p, bool dense_linears, LayerWeights& lw) {
  const int64_t d = c.hidden_size, n_experts = c.num_experts, ie = c.moe_intermediate_size;
  if (*names.router == '\0') {
    throw Error(src.path() + ": model_type " + c.model_type +
                " has no mixture-of-experts layers, but the config sets " +
                std::to_string(n_experts) + " experts");
  }
  lw.router = Fetch(src, p + names.router + ".weight", {n_experts, d});
  const int64_t is = c.shared_expert_intermediate_size;
  if (*names.shared != '\0' && is > 0) {
    lw.shared_expert_gate = Fetch(src, p + names.shared_gate + ".weight", {1, d});
  }
  // The experts' fp32 copies (an int4 model runs them from Model::UseInt4Kernels' matrices).
  if (!dense_linears) return;
  lw.experts_gate_up = Tensor(DType::kF32, {n_experts, 2 * ie, d});
  lw.experts_down = Tensor(DType::kF32, {n_experts, d, ie});
  for (int64_t e = 0; e < n_experts; ++e) {
    const std::string x = p + names.experts + std::to_string(e) + ".";
    const Tensor gate_up = StackRows({Fetch(src, x + names.gate + ".weight", {ie, d}),
                                      Fetch(src, x + names.up + ".weight", {ie, d})});
    const Tensor down = Fetch(src, x + names.down + ".weight", {d, ie});
    std::memcpy(lw.experts_gate_up.data<float>() + e * 2 * ie * d, gate_up.data<float>(),
                gate_up.nbytes());
    std::memcpy(lw.experts_down.data<float>() + e * d * ie, down.data<float>(), down.nbytes());
  }
  if (*names.shared != '\0' && is > 0) {
    const std::string s = p + names.shared + ".";
    lw.shared_gate_up = StackRows(
        {Fetch(src, s + "gate_proj.weight", {is, d}), Fetch(src, s + "up_proj.weight", {is, d})});
    lw.shared_down = Fetch(src, s + "down_proj.weight", {d, is});
  }
}

// One decoder block's tensors: norms, biases and (when `dense_linears`) the fused fp32 slot
// matrices, the slot's linears stacked in the description's order, which must tile its rows
// (q, k, v; gate, up; or one fused checkpoint tensor).
LayerWeights FetchLayer(const WeightSource& src, const ModelConfig& c, const Architecture& arch,
                        int64_t l, bool dense_linears) {
  const int64_t d = c.hidden_size, hd = c.head_dim;
  const std::string p = LayerPrefix(l);
  const auto norm = [&](const char* name, int64_t n) {
    return Fetch(src, p + name + ".weight", {n});
  };
  const auto slot = [&](Slot s, const char* suffix, bool bias) {
    std::vector<Tensor> parts;
    int64_t next_row = 0;
    for (const LinearSpec& ls : arch.linears) {
      if (ls.slot != s) continue;
      const RowRange r = SlotRows(c, s, ls.part);
      AWQ_CHECK(r.row0 == next_row);
      next_row += r.rows;
      parts.push_back(Fetch(src, p + ls.name + suffix, bias ? Shape{r.rows} : Shape{r.rows, r.in}));
    }
    AWQ_CHECK(next_row == SlotRows(c, s, Part::kAll).rows);
    return parts.size() == 1 ? parts[0] : StackRows(parts);
  };
  LayerWeights lw;
  lw.attn_norm = norm(arch.norms.attn_in, d);
  lw.ffn_norm = norm(arch.norms.mlp_in, d);
  if (arch.recipe.post_norms) {
    lw.post_attn_norm = norm(arch.norms.attn_out, d);
    lw.post_ffn_norm = norm(arch.norms.mlp_out, d);
  }
  if (arch.recipe.qk_norm) {
    lw.q_norm = norm(arch.norms.q, hd);
    lw.k_norm = norm(arch.norms.k, hd);
  }
  const bool moe = c.IsMoeLayer(l);
  if (dense_linears) {
    lw.wqkv = slot(Slot::kQkv, ".weight", false);
    lw.wo = slot(Slot::kO, ".weight", false);
    if (!moe) {
      lw.w_gate_up = slot(Slot::kGateUp, ".weight", false);
      lw.w_down = slot(Slot::kDown, ".weight", false);
    }
  }
  if (moe) FetchMoe(src, c, arch.moe, p, dense_linears, lw);
  if (c.attention_bias) lw.bqkv = slot(Slot::kQkv, ".bias", true);
  return lw;
}

}  // namespace

Model Model::FromSource(const WeightSource& src) { return Build(src, true); }

Model Model::Build(const WeightSource& src, bool dense_linears) {
  Model m;
  m.config_ = src.config();
  const ModelConfig& c = m.config_;
  if (const RecurrentSpec* rec = ArchitectureOf(c).recurrent) {
    FetchRecurrentWeights(src, *rec, m.weights_);
    m.InitRuntime();
    return m;
  }
  const int64_t d = c.hidden_size, v = c.vocab_size;
  m.weights_.embed = Fetch(src, "model.embed_tokens.weight", {v, d});
  m.weights_.final_norm = Fetch(src, "model.norm.weight", {d});
  if (src.Has("lm_head.weight")) {
    m.weights_.lm_head = Fetch(src, "lm_head.weight", {v, d});
  } else if (c.tie_word_embeddings) {
    m.weights_.lm_head = m.weights_.embed;
  } else {
    throw Error(src.path() + ": tensor lm_head.weight is missing and tie_word_embeddings is false");
  }
  const Architecture& arch = ArchitectureOf(c);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    m.weights_.layers.push_back(FetchLayer(src, c, arch, l, dense_linears));
  }
  m.InitRuntime();
  return m;
}

Model Model::OpenStreaming(const std::string& path) {
  Model m;
  m.source_ = OpenWeights(path);
  const WeightSource& src = *m.source_;
  m.config_ = src.config();
  const ModelConfig& c = m.config_;
  if (const RecurrentSpec* rec = ArchitectureOf(c).recurrent) {
    // Recurrent models are small enough to read whole (QuantizeToFolder quantizes them in memory);
    // the layers are then loaded and LoadBlock re-reads one.
    FetchRecurrentWeights(src, *rec, m.weights_);
    m.InitRuntime();
    return m;
  }
  const Shape vd = {c.vocab_size, c.hidden_size};
  m.weights_.embed = src.GetStored("model.embed_tokens.weight");
  if (m.weights_.embed.shape() != vd) {
    throw Error(src.path() + ": tensor model.embed_tokens.weight has shape " +
                ShapeToString(m.weights_.embed.shape()) + " but the config implies " +
                ShapeToString(vd));
  }
  m.weights_.final_norm = Fetch(src, "model.norm.weight", {c.hidden_size});
  if (!src.Has("lm_head.weight") && !c.tie_word_embeddings) {
    throw Error(src.path() + ": tensor lm_head.weight is missing and tie_word_embeddings is false");
  }
  m.weights_.layers.resize(static_cast<size_t>(c.num_hidden_layers));
  m.InitRuntime();
  return m;
}

void Model::LoadBlock(int64_t layer) {
  AWQ_CHECK(source_ != nullptr && layer >= 0 && layer < config_.num_hidden_layers);
  weights_.layers[static_cast<size_t>(layer)] =
      arch_->recurrent != nullptr ? FetchRecurrentLayer(*source_, *arch_->recurrent, layer)
                                  : FetchLayer(*source_, config_, *arch_, layer, true);
}

void Model::ReleaseBlock(int64_t layer) {
  AWQ_CHECK(source_ != nullptr && layer >= 0 && layer < config_.num_hidden_layers);
  weights_.layers[static_cast<size_t>(layer)] = LayerWeights{};
}

void Model::InitRuntime() {
  pool_ = &ThreadPool::Global();
  arch_ = &ArchitectureOf(config_);
  if (arch_->recurrent != nullptr) return;  // no attention, no RoPE tables
  RopeTables rope = BuildRopeTables(config_, config_.max_position_embeddings);
  rope_cos_[0] = std::move(rope.cos);
  rope_sin_[0] = std::move(rope.sin);
  rope_positions_ = rope.max_positions;
  if (config_.rope_local_theta > 0 && config_.sliding_window > 0) {
    RopeTables local = BuildRopeTables(config_, config_.max_position_embeddings, true);
    rope_cos_[1] = std::move(local.cos);
    rope_sin_[1] = std::move(local.sin);
  }
}

void CheckFiniteWeights(const std::string& file, const std::string& name, const Tensor& t) {
  // A float is NaN or infinite exactly when its exponent bits are all ones; OR-ing the masked
  // words first keeps the common, clean case one vectorizable pass.
  const auto first_bad = [&t](auto word, auto mask) -> int64_t {
    using W = decltype(word);
    const W* p = static_cast<const W*>(t.raw());
    const int64_t n = t.numel();
    W any = 0;
    for (int64_t i = 0; i < n; ++i) any |= static_cast<W>((p[i] & mask) == mask);
    if (!any) return -1;
    for (int64_t i = 0; i < n; ++i) {
      if ((p[i] & mask) == mask) return i;
    }
    return -1;
  };
  int64_t bad = -1;
  float value = 0;
  switch (t.dtype()) {
    case DType::kF32:
      bad = first_bad(uint32_t{0}, uint32_t{0x7f800000});
      if (bad >= 0) value = t.data<float>()[bad];
      break;
    case DType::kF16:
      bad = first_bad(uint16_t{0}, uint16_t{0x7c00});
      if (bad >= 0) value = Fp16ToFp32(t.data<uint16_t>()[bad]);
      break;
    case DType::kBF16:
      bad = first_bad(uint16_t{0}, uint16_t{0x7f80});
      if (bad >= 0) value = Bf16ToFp32(t.data<uint16_t>()[bad]);
      break;
    default:
      return;
  }
  if (bad < 0) return;
  std::string where = "element " + std::to_string(bad);
  if (t.ndim() == 2) {
    where += " (row " + std::to_string(bad / t.dim(1)) + ", column " +
             std::to_string(bad % t.dim(1)) + ")";
  }
  const std::string what = std::isnan(value) ? "NaN" : (value > 0 ? "+inf" : "-inf");
  throw Error(file + ": tensor " + name + " holds " + what + " at " + where + " (shape " +
              ShapeToString(t.shape()) +
              "); awq.cpp refuses non-finite weights: the checkpoint is damaged or was saved in "
              "a dtype that overflowed");
}

std::unique_ptr<WeightSource> OpenWeights(const std::string& path) {
  if (std::filesystem::is_directory(path)) return OpenHfWeights(path);
  return OpenGgufWeights(path);
}

namespace {

// The 4-bit linears of an AWQ folder that can run on the int4 kernels, by module name; empty when
// the folder is not a 4-bit AWQ checkpoint.
std::map<std::string, QuantizedLinear> ReadInt4Linears(const std::string& path,
                                                       const SafetensorsCheckpoint& ckpt,
                                                       const ModelConfig& src_config) {
  const int64_t n_layers = src_config.num_hidden_layers;
  std::map<std::string, QuantizedLinear> linears;
  const std::optional<QuantConfig> qc = ReadAwqQuantConfig(path);
  if (!qc || (qc->w_bit != 4 && qc->overrides.empty())) return linears;
  for (int64_t l = 0; l < n_layers; ++l) {
    std::vector<std::string> names = LinearNames(src_config, l);
    for (const ExpertLinearSpec& e : ExpertLinears(src_config, l)) names.push_back(e.name);
    for (const std::string& name : names) {
      if (!ckpt.Has(name + ".qweight")) return {};
      linears.emplace(name, ReadAwqLinear(ckpt, name, *qc));
    }
  }
  return linears;
}

// The checkpoint's tensor in place (a view of the mapped file) when it is stored as fp16 with
// the expected shape; empty otherwise.
Tensor F16View(const SafetensorsCheckpoint& ckpt, const std::string& name, const Shape& shape) {
  if (!ckpt.Has(name) || ckpt.dtype(name) != DType::kF16 || ckpt.shape(name) != shape) return {};
  return ckpt.Get(name);
}

}  // namespace

namespace {
void ApplyInt8Head(ModelWeights& w) {
  const Tensor& h = w.lm_head;
  w.lm_head8 = std::make_shared<const Int8Rows>(
      h.dtype() == DType::kF16
          ? QuantizeRowsInt8(h.data<uint16_t>(), h.dim(0), h.dim(1), ThreadPool::Global())
          : QuantizeRowsInt8(h.data<float>(), h.dim(0), h.dim(1), ThreadPool::Global()));
}
}  // namespace

Model Model::Load(const std::string& path, const LoadOptions& options) {
  Model m = LoadWeights(path, options);
  if (options.int8_lm_head) ApplyInt8Head(m.weights_);
  return m;
}

Model Model::LoadWeights(const std::string& path, const LoadOptions& options) {
  ActiveSgemmPath();  // a bad AWQ_SGEMM is an error here, not in a pool worker's first product
  const std::unique_ptr<WeightSource> src = OpenWeights(path);
  // The recurrent families have no int4 path: their linears run in fp32 (dequantized at load).
  if (ArchitectureOf(src->config()).recurrent != nullptr) return Build(*src, true);
  const char* env = std::getenv("AWQ_INT4");
  const bool int4 = options.int4 && (env == nullptr || std::string(env) != "0");
  if (!int4 || !std::filesystem::is_directory(path)) {
    return Build(*src, true);
  }

  const SafetensorsCheckpoint ckpt = SafetensorsCheckpoint::Open(path);
  const std::map<std::string, QuantizedLinear> linears = ReadInt4Linears(path, ckpt, src->config());
  if (linears.empty()) return Build(*src, true);
  Model m = Build(*src, false);
  if (!m.UseInt4Kernels(linears)) return Build(*src, true);
  // AutoAWQ keeps the embedding and LM head in fp16; reading them as stored halves the LM head's
  // bytes per token and changes no value (fp16 widens to fp32 exactly).
  const Shape vd = {m.config_.vocab_size, m.config_.hidden_size};
  if (Tensor e = F16View(ckpt, "model.embed_tokens.weight", vd); !e.empty()) {
    const bool tied = m.weights_.lm_head.raw() == m.weights_.embed.raw();
    m.weights_.embed = e;
    if (tied) m.weights_.lm_head = e;
  }
  if (Tensor h = F16View(ckpt, "lm_head.weight", vd); !h.empty()) m.weights_.lm_head = h;
  return m;
}

int64_t ParameterCount(const ModelConfig& c) {
  const Architecture& arch = ArchitectureOf(c);
  if (arch.recurrent != nullptr) return RecurrentParameterCount(*arch.recurrent, c);
  const int64_t d = c.hidden_size;
  int64_t n = c.vocab_size * d * (c.tie_word_embeddings ? 1 : 2) + d;
  int64_t per_layer =
      2 * d + (arch.recipe.post_norms ? 2 * d : 0) + (arch.recipe.qk_norm ? 2 * c.head_dim : 0);
  for (Slot s : {Slot::kQkv, Slot::kO}) {
    const RowRange r = SlotRows(c, s, Part::kAll);
    per_layer += r.rows * r.in + (s == Slot::kQkv && c.attention_bias ? r.rows : 0);
  }
  n += per_layer * c.num_hidden_layers;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    if (!c.IsMoeLayer(l)) {
      n += 3 * d * c.intermediate_size;
      continue;
    }
    n += c.num_experts * (d + 3 * d * c.moe_intermediate_size);  // router rows and experts
    if (*arch.moe.shared != '\0') n += 3 * d * c.shared_expert_intermediate_size + d;
  }
  return n;
}

int64_t Model::ParameterCount() const {
  int64_t n =
      weights_.embed.numel() + weights_.final_norm.numel() + weights_.final_norm_bias.numel();
  if (weights_.lm_head.raw() != weights_.embed.raw()) n += weights_.lm_head.numel();
  for (const LayerWeights& l : weights_.layers) {
    for (const auto& [name, t] : l.recurrent) n += t.numel();
    n += l.attn_norm.numel() + l.bqkv.numel() + l.ffn_norm.numel() + l.q_norm.numel() +
         l.k_norm.numel() + l.post_attn_norm.numel() + l.post_ffn_norm.numel();
    n += l.router.numel() + l.experts_gate_up.numel() + l.experts_down.numel() +
         l.shared_gate_up.numel() + l.shared_down.numel() + l.shared_expert_gate.numel();
    if (l.qkv4 != nullptr) {
      for (const Int4Matrix* w : {l.qkv4.get(), l.o4.get(), l.gate_up4.get(), l.down4.get(),
                                  l.shared_gate_up4.get(), l.shared_down4.get()}) {
        if (w != nullptr) n += w->out * w->in;
      }
      for (const auto& w : l.experts_gate_up4) n += w->out * w->in;
      for (const auto& w : l.experts_down4) n += w->out * w->in;
    } else {
      n += l.wqkv.numel() + l.wo.numel() + l.w_gate_up.numel() + l.w_down.numel();
    }
  }
  return n;
}

bool Model::has_dense_linears() const {
  return !weights_.layers.empty() &&
         (!weights_.layers[0].wqkv.empty() || !weights_.layers[0].recurrent.empty());
}

void Model::RequireFp32Weights(const std::string& what) const {
  if (!has_dense_linears() || weights_.embed.dtype() != DType::kF32) {
    throw Error(what + " needs the model's fp32 weights, but this model holds 4-bit or fp16 ones " +
                "(load it with LoadOptions{.int4 = false})");
  }
}

int64_t Model::DecodeWeightBytes() const {
  int64_t n = static_cast<int64_t>(weights_.final_norm.nbytes());
  if (weights_.lm_head8 != nullptr) {
    n += static_cast<int64_t>(weights_.lm_head8->q.size() + 4 * weights_.lm_head8->scale.size());
  } else {
    n += static_cast<int64_t>(weights_.lm_head.nbytes());
  }
  n += static_cast<int64_t>(weights_.final_norm_bias.nbytes());
  for (const LayerWeights& l : weights_.layers) {
    for (const auto& [name, t] : l.recurrent) n += static_cast<int64_t>(t.nbytes());
    n += static_cast<int64_t>(l.attn_norm.nbytes() + l.bqkv.nbytes() + l.ffn_norm.nbytes() +
                              l.q_norm.nbytes() + l.k_norm.nbytes() + l.post_attn_norm.nbytes() +
                              l.post_ffn_norm.nbytes());
    if (l.qkv4 != nullptr) {
      for (const Int4Matrix* w : {l.qkv4.get(), l.o4.get(), l.gate_up4.get(), l.down4.get()}) {
        if (w != nullptr) n += w->bytes();  // a sparse layer has no dense MLP
      }
    } else {
      n += static_cast<int64_t>(l.wqkv.nbytes() + l.wo.nbytes() + l.w_gate_up.nbytes() +
                                l.w_down.nbytes());
    }
    // A mixture of experts reads its router and shared expert and, per token, k of its E experts.
    n += static_cast<int64_t>(l.router.nbytes() + l.shared_gate_up.nbytes() +
                              l.shared_down.nbytes() + l.shared_expert_gate.nbytes());
    for (const Int4Matrix* w : {l.shared_gate_up4.get(), l.shared_down4.get()}) {
      if (w != nullptr) n += w->bytes();
    }
    int64_t experts = static_cast<int64_t>(l.experts_gate_up.nbytes() + l.experts_down.nbytes());
    for (const auto& w : l.experts_gate_up4) experts += w->bytes();
    for (const auto& w : l.experts_down4) experts += w->bytes();
    if (experts > 0) n += experts * config_.num_experts_per_tok / config_.num_experts;
  }
  return n;
}

KvCache Model::NewCache(int64_t max_tokens) const {
  if (arch_->recurrent != nullptr) {
    // A fixed-size state, whatever the context: max_tokens only bounds Forward's positions.
    return KvCache::Recurrent(config_.num_hidden_layers, max_tokens,
                              RecurrentStateFloats(*arch_->recurrent, config_));
  }
  if (max_tokens > rope_positions_) {
    throw Error("context of " + std::to_string(max_tokens) + " tokens exceeds the model's " +
                "max_position_embeddings " + std::to_string(rope_positions_));
  }
  return KvCache(config_.num_hidden_layers, max_tokens, config_.num_key_value_heads,
                 config_.head_dim);
}

}  // namespace awq
