// Saving a quantized in-memory model as a Hugging Face folder in the AutoAWQ layout, tensor
// names and row ranges from the family's description.
#include <algorithm>
#include <cstring>
#include <memory>
#include <optional>
#include <string>

#include "awq/awq_checkpoint.h"
#include "awq/model.h"
#include "awq/quantize.h"
#include "model/arch.h"
#include "model/recurrent.h"
#include "quant/quantize_block.h"
#include "quant/quantize_recurrent.h"

namespace awq {

namespace {

// Rows [r.row0, r.row0 + r.rows) of a matrix (or of a vector when r.in is 0) as a new tensor.
Tensor CopyRows(const Tensor& t, const RowRange& r, bool vector) {
  Tensor out(DType::kF32, vector ? Shape{r.rows} : Shape{r.rows, r.in});
  const int64_t width = vector ? 1 : r.in;
  std::memcpy(out.data<float>(), t.data<float>() + r.row0 * width, out.nbytes());
  return out;
}

}  // namespace

std::array<std::pair<const char*, const Tensor*>, 6> BlockNorms(const Architecture& arch,
                                                                const LayerWeights& lw) {
  return {{{arch.norms.attn_in, &lw.attn_norm},
           {arch.norms.mlp_in, &lw.ffn_norm},
           {arch.norms.attn_out, &lw.post_attn_norm},
           {arch.norms.mlp_out, &lw.post_ffn_norm},
           {arch.norms.q, &lw.q_norm},
           {arch.norms.k, &lw.k_norm}}};
}

void AddBlockTensors(AwqCheckpointWriter& w, const Model& model, int64_t l,
                     const std::map<std::string, QuantizedLinear>& linears) {
  const ModelConfig& c = model.config();
  const Architecture& arch = ArchitectureOf(c);
  if (arch.recurrent != nullptr) return AddRecurrentBlockTensors(w, model, l, linears);
  const LayerWeights& lw = model.weights().layers[static_cast<size_t>(l)];
  const std::string p = LayerPrefix(l);
  for (const auto& [name, t] : BlockNorms(arch, lw)) {
    if (*name != '\0' && !t->empty()) w.AddTensor(p + name + ".weight", *t);
  }
  const Tensor* slots[] = {&lw.wqkv, &lw.wo, &lw.w_gate_up, &lw.w_down};
  const bool moe = c.IsMoeLayer(l);
  for (const LinearSpec& spec : arch.linears) {
    if (moe && (spec.slot == Slot::kGateUp || spec.slot == Slot::kDown)) continue;
    const std::string name = p + spec.name;
    const RowRange rows = SlotRows(c, spec.slot, spec.part);
    auto it = linears.find(name);
    if (it != linears.end()) {
      w.AddQuantized(name, it->second);
    } else {
      // A linear the config left in full precision: its rows of the fused matrix.
      w.AddTensor(name + ".weight", CopyRows(*slots[static_cast<size_t>(spec.slot)], rows, false));
    }
    if (spec.slot == Slot::kQkv && !lw.bqkv.empty()) {
      w.AddTensor(name + ".bias", CopyRows(lw.bqkv, rows, true));
    }
  }
  if (!moe) return;
  // A mixture of experts: the router, each expert's linears, the shared expert and its gate.
  w.AddTensor(p + arch.moe.router + ".weight", lw.router);
  for (const ExpertLinearSpec& e : ExpertLinears(c, l)) {
    auto it = linears.find(e.name);
    if (it != linears.end()) {
      w.AddQuantized(e.name, it->second);
      continue;
    }
    Tensor t(DType::kF32, {e.rows, e.in});
    std::memcpy(t.data<float>(), ExpertRows(lw, c, e), t.nbytes());
    w.AddTensor(e.name + ".weight", t);
  }
  if (!lw.shared_expert_gate.empty()) {
    w.AddTensor(p + arch.moe.shared_gate + ".weight", lw.shared_expert_gate);
  }
}

void AddStagedBlock(AwqCheckpointWriter& w, const ModelConfig& c, int64_t l, const QuantConfig& qc,
                    const std::shared_ptr<const SafetensorsFile>& f) {
  const Architecture& arch = ArchitectureOf(c);
  const std::string p = LayerPrefix(l);
  // The order of AddBlockTensors, the tensors read from what the staged file holds.
  for (const char* name : {arch.norms.attn_in, arch.norms.mlp_in, arch.norms.attn_out,
                           arch.norms.mlp_out, arch.norms.q, arch.norms.k}) {
    if (*name != '\0' && f->Find(p + name + ".weight") != nullptr) {
      w.AddStaged(p + name + ".weight", f);
    }
  }
  for (const LinearSpec& spec : arch.linears) {
    if (c.IsMoeLayer(l) && (spec.slot == Slot::kGateUp || spec.slot == Slot::kDown)) continue;
    const std::string name = p + spec.name;
    const RowRange rows = SlotRows(c, spec.slot, spec.part);
    if (f->Find(name + ".qweight") != nullptr) {
      const std::optional<QuantParams> params = qc.ParamsFor(name);
      if (!params) throw Error(f->source() + ": " + name + " is quantized but the config says not");
      w.AddStagedQuantized(name, *params, rows.rows, rows.in, f);
    } else {
      w.AddStaged(name + ".weight", f);
    }
    if (f->Find(name + ".bias") != nullptr) w.AddStaged(name + ".bias", f);
  }
  if (!c.IsMoeLayer(l)) return;
  w.AddStaged(p + arch.moe.router + ".weight", f);
  for (const ExpertLinearSpec& e : ExpertLinears(c, l)) {
    if (f->Find(e.name + ".qweight") != nullptr) {
      const std::optional<QuantParams> params = qc.ParamsFor(e.name);
      if (!params) {
        throw Error(f->source() + ": " + e.name + " is quantized but the config says not");
      }
      w.AddStagedQuantized(e.name, *params, e.rows, e.in, f);
    } else {
      w.AddStaged(e.name + ".weight", f);
    }
  }
  if (f->Find(p + arch.moe.shared_gate + ".weight") != nullptr) {
    w.AddStaged(p + arch.moe.shared_gate + ".weight", f);
  }
}

QuantConfig WithFamilyExclusions(QuantConfig qc, const ModelConfig& c) {
  // Readers match modules_to_not_convert as substrings of module names: "mlp.gate" would also
  // keep a dense layer's mlp.gate_proj (Qwen's mlp_only_layers) in full precision. Where the
  // short name would catch a linear, each sparse layer's module is listed by its full name.
  std::vector<std::string> linears;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    for (std::string& n : LinearNames(c, l)) linears.push_back(std::move(n));
    for (const ExpertLinearSpec& e : ExpertLinears(c, l)) linears.push_back(e.name);
  }
  std::vector<std::string>& list = qc.modules_to_not_convert;
  const auto add = [&](const std::string& m) {
    if (std::find(list.begin(), list.end(), m) == list.end()) list.push_back(m);
  };
  const Architecture& arch = ArchitectureOf(c);
  for (const std::string& m : arch.default_not_convert) {
    const bool catches_linear = std::any_of(linears.begin(), linears.end(), [&](const auto& n) {
      return n.find(m) != std::string::npos;
    });
    if (!catches_linear) {
      add(m);
      continue;
    }
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
      if (c.IsMoeLayer(l)) add(LayerPrefix(l) + m);
    }
  }
  if (arch.recurrent != nullptr && c.num_hidden_layers > 0) {
    const std::vector<RecurrentTensor> tensors = arch.recurrent->tensors(c, 0);
    for (const RecurrentLinear& l : arch.recurrent->linears) {
      if (!l.narrow_input) continue;
      const std::string weight = std::string(l.name) + ".weight";
      const auto t = std::find_if(tensors.begin(), tensors.end(),
                                  [&](const RecurrentTensor& rt) { return rt.name == weight; });
      const std::optional<QuantParams> p =
          qc.ParamsFor(RecurrentLayerPrefix(*arch.recurrent, 0) + l.name);
      if (t == tensors.end() || !p || p->group_size == -1 || t->shape[1] % p->group_size == 0) {
        continue;
      }
      if (qc.version == kLayoutPacked) {
        std::string pattern;
        for (const char* ch = l.name; *ch != '\0'; ++ch) {
          if (*ch == '.') pattern += '\\';
          pattern += *ch;
        }
        LayerOverride o;
        o.pattern = pattern + "$";
        o.group_size = -1;
        qc.overrides.push_back(std::move(o));
      } else {
        add(l.name);
      }
    }
  }
  return qc;
}

void SaveQuantizedModel(const Model& model, const QuantizeResult& r, const QuantConfig& qc,
                        const Tokenizer* tokenizer, const std::string& dir,
                        uint64_t max_shard_bytes, bool overwrite) {
  AwqCheckpointWriter w;
  w.method = QuantMethodName(r.method);
  const ModelWeights& mw = model.weights();
  const ModelConfig& c = model.config();
  if (const RecurrentSpec* rec = ArchitectureOf(c).recurrent) {
    w.AddTensor(rec->embed, mw.embed);
    w.AddTensor(std::string(rec->final_norm) + ".weight", mw.final_norm);
    if (!mw.final_norm_bias.empty()) {
      w.AddTensor(std::string(rec->final_norm) + ".bias", mw.final_norm_bias);
    }
    if (!c.tie_word_embeddings) w.AddTensor(rec->lm_head, mw.lm_head);
  } else {
    w.AddTensor("model.embed_tokens.weight", mw.embed);
    w.AddTensor("model.norm.weight", mw.final_norm);
    if (!c.tie_word_embeddings) w.AddTensor("lm_head.weight", mw.lm_head);
  }
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) AddBlockTensors(w, model, l, r.linears);
  w.Write(dir, HfConfigToJson(c), WithFamilyExclusions(qc, c), tokenizer, max_shard_bytes,
          overwrite);
}

}  // namespace awq
